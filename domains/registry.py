"""Find domains through the ``scaling_sweep.domains`` entry-point group, so other packages can add some.

Tests and notebooks can add a domain without packaging it: ``register_domain(name, "module:attr")`` records it in
the environment variable ``SCALING_SWEEP_DOMAINS``, which the processes started afterwards inherit (a local Ray
started later, its workers, Ray Train workers), so a sweep's trials find it as the driver does.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from domains.base import Domain

ENTRY_POINT_GROUP = "scaling_sweep.domains"
REGISTERED_ENV = "SCALING_SWEEP_DOMAINS"  # JSON {name: "module:attr"} of domains added by register_domain


class UnknownDomainError(KeyError):
    """A spec or request named a domain that no installed package provides."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def installed_domains() -> dict[str, EntryPoint]:
    """Entry points by domain name (not loaded: loading imports torch), registered ones included."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for name, target in _registered().items():
        found[name] = EntryPoint(name=name, value=target, group=ENTRY_POINT_GROUP)
    return found


def register_domain(name: str, target: str) -> None:
    """Add the domain at ``target`` ("package.module:Class", importable wherever trials run) as ``name``, for
    this process and the processes it starts from now on. Installed packages use the entry-point group instead."""
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ValueError(f"register_domain target must look like 'package.module:Class', got {target!r}")
    os.environ[REGISTERED_ENV] = json.dumps({**_registered(), name: target}, sort_keys=True)


def _registered() -> dict[str, str]:
    raw = os.environ.get(REGISTERED_ENV)
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise ValueError(f"{REGISTERED_ENV} must be a JSON object of name -> 'module:attr', got {raw!r}")
    return found


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
