"""Is an edited spec a top-up of the sweep stored under its storage, or a different experiment?

A storage holds one curve per (domain, family). Trials are keyed by their settings, so an edited spec never
overwrites a stored row: it adds rows. That is what a top-up wants (more seeds, shards, widths, configurations)
and what an edit of the experiment must not do silently (other data, another metric, a fixed hyperparameter or
a random range changed, another step budget or ASHA schedule): old and new trials would mix in one curve.
``incompatible_changes`` lists the edits of the second kind, one line per field, for domains and families that
both specs have (adding or leaving out a domain or family is a top-up or a subset run).
"""

from __future__ import annotations

from typing import Any

from orchestrator.spec import DomainSpec, Grid, SweepSpec


def _values(space: Any) -> set[Any] | None:
    """The values a discrete hyperparameter takes (a plain value or a grid); None for a random space."""
    if isinstance(space, Grid):
        return {repr(v) for v in space.grid}
    if isinstance(space, bool | int | float | str):
        return {repr(space)}
    return None


def _show(space: Any) -> str:
    return repr(space.model_dump()) if hasattr(space, "model_dump") else repr(space)


def _hparam_changes(where: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """A hyperparameter change is a top-up when the old and new values share one (a grid edited or widened, a
    fixed value turned into a grid holding it); a fixed value changed, a disjoint grid or any edit of a random
    range alters the stored trials."""
    changes = []
    for key in sorted(set(old) | set(new)):
        if key not in new or key not in old:
            state = "removed" if key not in new else "added"
            changes.append(f"{where}.hparams.{key}: {state} ({_show(old.get(key, new.get(key)))})")
            continue
        before, after = _values(old[key]), _values(new[key])
        if before is not None and after is not None:
            if not before & after:
                changes.append(f"{where}.hparams.{key}: {_show(old[key])} -> {_show(new[key])}")
        elif old[key] != new[key]:
            changes.append(f"{where}.hparams.{key}: {_show(old[key])} -> {_show(new[key])}")
    return changes


def _domain_changes(name: str, old: DomainSpec, new: DomainSpec) -> list[str]:
    where = f"domains.{name}"
    changes = []
    if old.data != new.data:
        for key in sorted(set(old.data) | set(new.data)):
            if old.data.get(key) != new.data.get(key):
                changes.append(f"{where}.data.{key}: {old.data.get(key)!r} -> {new.data.get(key)!r}")
    asha_old = old.early_stopping.model_dump(exclude={"max_steps", "eval_every", "patience", "min_delta"})
    asha_new = new.early_stopping.model_dump(exclude={"max_steps", "eval_every", "patience", "min_delta"})
    for key in asha_old:
        if asha_old[key] != asha_new[key]:
            changes.append(f"{where}.early_stopping.{key}: {asha_old[key]!r} -> {asha_new[key]!r}")
    for family in sorted(set(old.family_specs()) & set(new.family_specs())):
        at = f"{where}.families.{family}"
        stop_old, stop_new = old.stopping_for(family), new.stopping_for(family)
        changes += [f"{at}.early_stopping.{k}: {stop_old[k]!r} -> {stop_new[k]!r}"
                    for k in stop_old if stop_old[k] != stop_new[k]]
        changes += _hparam_changes(at, old.hparams_for(family), new.hparams_for(family))
    return changes


def incompatible_changes(old: SweepSpec, new: SweepSpec) -> list[str]:
    """Edits from the stored spec ``old`` to ``new`` that would change what existing trials mean, one per line
    (``field.path: old -> new``); empty when ``new`` only tops the sweep up."""
    changes = []
    if old.seed != new.seed:
        changes.append(f"seed: {old.seed} -> {new.seed} (random hyperparameter draws and seeds change)")
    for name in sorted(set(old.domains) & set(new.domains)):
        changes += _domain_changes(name, old.domains[name], new.domains[name])
    return changes
