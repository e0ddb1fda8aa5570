"""Find domains through the ``scaling_sweep.domains`` entry-point group, so other packages can add some."""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from domains.base import Domain

ENTRY_POINT_GROUP = "scaling_sweep.domains"


class UnknownDomainError(KeyError):
    """A spec or request named a domain that no installed package provides."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def installed_domains() -> dict[str, EntryPoint]:
    """Entry points by domain name (not loaded: loading imports torch)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_domain(name: str) -> Domain:
    """The domain registered as ``name``, instantiated; unknown names list the installed ones."""
    eps = installed_domains()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "(none installed)"
        raise UnknownDomainError(f"unknown domain {name!r}; installed domains: {known}")
    return _load(eps[name])


@cache
def _load(ep: EntryPoint) -> Domain:
    obj = ep.load()
    domain = obj() if isinstance(obj, type) else obj
    if not isinstance(domain, Domain):
        raise TypeError(f"entry point {ep.value!r} for domain {ep.name!r} is not a domains.base.Domain")
    return domain
