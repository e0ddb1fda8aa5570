"""Hyperparameters from a spec to a typed dataclass, checked the same way in every domain.

A spec's hparams are YAML values: ``lr: 1e-3`` comes in as a string (YAML 1.1), ``layers: 2.0`` as a float,
``augment: "false"`` as a string. Each value is coerced to the type of its family default, and
names the family does not know or values of the wrong kind fail with the name and what is allowed, before
any trial starts (``Domain.validate_hparams`` runs these during planning).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def coerce(what: str, name: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``: bools must be bools, numbers may come as numeric strings
    (PyYAML reads ``1e-3`` as a string), ints must be whole."""
    kind = type(default)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{what} hyperparameter {name} must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (kind is int and not number.is_integer()):
            article = "an integer" if kind is int else "a number"
            raise ValueError(f"{what} hyperparameter {name} must be {article}, got {value!r}")
        return kind(number)
    if not isinstance(value, kind):
        raise ValueError(f"{what} hyperparameter {name} must be a {kind.__name__}, got {value!r}")
    return value


def resolve_hparams(cls: type[T], what: str, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> T:
    """``cls`` built from ``defaults`` overridden by ``given``, each value coerced to its default's type.

    ``what`` names the family in errors (e.g. ``"NMT transformer"``); range checks stay with each domain."""
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {what} hyperparameters {sorted(unknown)}; known: {sorted(defaults)}")
    accepted = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {name: coerce(what, name, given.get(name, default), default)
              for name, default in defaults.items() if name in accepted}
    return cls(**values)
