"""Can a shard point be trusted? The convergence of the trials behind it and the edges of the grid it came from.

Why: the paper's method assumes that at every shard the best model reached its minimum validation error inside
the searched grid. A best configuration still improving at its budget cap overstates that shard's error (β_g
flattens, a false floor appears); a best width at the grid's largest or smallest width censors the best size
(β_p); a best hyperparameter at the edge of its searched range may have missed the shard's minimum. Each is
flagged on the point and counted per family, with a warning that says the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fitting.aggregate import ShardPoint, TrialSet, parse_json_column
from fitting.laws import jsonable

HistoryReader = Callable[[str], pa.Table]  # trial_key -> its per-iteration history (ResultsStore.read_history)

# A trial is still improving when its best-so-far value fell by more than CONVERGED_RTOL (relative) over the
# last TAIL_FRACTION of its optimizer steps.
CONVERGED_RTOL = 0.01
TAIL_FRACTION = 0.25


def still_improving(steps: np.ndarray, values: np.ndarray, *, tail: float = TAIL_FRACTION,
                    rtol: float = CONVERGED_RTOL) -> bool | None:
    """Whether the best-so-far of ``values`` (lower is better; one per evaluation at ``steps``) fell by more than
    ``rtol`` (relative) over the last ``tail`` of the run's steps, measured from the last evaluation at or before
    that tail began. A run whose first finite value came within the tail is still improving; None with fewer
    than 2 evaluations or no finite value (nothing to judge). The recorder's rule, applied to stored history."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    steps, values = steps[np.isfinite(steps)], values[np.isfinite(steps)]
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], np.where(np.isfinite(values[order]), values[order], np.inf)
    if steps.size < 2 or not np.isfinite(values).any():
        return None
    start = steps[-1] - tail * (steps[-1] - steps[0])
    ref = int(np.flatnonzero(steps <= start)[-1])
    before, end = float(values[:ref + 1].min()), float(values.min())
    if not math.isfinite(before):
        return True
    return end < before - abs(before) * rtol


def history_converged(history: pa.Table, metric: str) -> bool | None:
    """Converged (not still improving at the end) from a trial's stored history; None when it cannot tell."""
    if history.num_rows == 0 or "metrics" not in history.column_names or "steps" not in history.column_names:
        return None
    values = []
    for text in history["metrics"].to_pylist():
        try:
            v = json.loads(text).get(metric) if isinstance(text, str) else None
        except ValueError:
            v = None
        values.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan)
    steps = np.array([math.nan if s is None else float(s) for s in history["steps"].to_pylist()])
    improving = still_improving(steps, np.array(values))
    return None if improving is None else not improving


def trial_converged(row: Mapping[str, Any], read_history: HistoryReader | None = None) -> bool | None:
    """A trial's ``converged``: the stored column when set; else, for a completed trial, True when it stopped by
    patience and, when it ran to its step cap, whether its history shows it still improving at the end
    (:func:`still_improving`). None for early-stopped (ASHA) trials and whatever cannot be told."""
    stored = row.get("converged")
    if isinstance(stored, (bool, np.bool_)):
        return bool(stored)
    if row.get("status") != "completed":
        return None
    reason = row.get("stop_reason")
    if reason == "patience":
        return True
    if reason != "max_steps" or read_history is None or not row.get("trial_key"):
        return None
    try:
        history = read_history(str(row["trial_key"]))
    except (OSError, ValueError):  # no history file (or an unreadable one): unknown, not a failure
        return None
    metric = row.get("metric")
    return history_converged(history, str(metric)) if isinstance(metric, str) and metric else None


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
        and math.isfinite(float(value))


def _edge(best: Any, values: list[Any]) -> str | None:
    """"low"/"high" when ``best`` is the smallest/largest of ≥ 2 distinct ``values``, else None."""
    distinct = sorted({float(v) for v in values if _numeric(v)})
    if len(distinct) < 2 or not _numeric(best):
        return None
    if float(best) == distinct[-1]:
        return "high"
    return "low" if float(best) == distinct[0] else None


def annotate_point(point: ShardPoint, shard: pd.DataFrame, converged: Mapping[str, bool | None]) -> None:
    """Set ``point``'s diagnostics from the usable trials of its shard (``shard``: the TrialSet frame's rows) and
    each trial's ``converged`` (by trial_key, from :func:`trial_converged`)."""
    point.trial_converged = [converged.get(k) for k in point.trial_keys]
    known = [c for c in point.trial_converged if c is not None]
    point.not_converged = (not all(known)) if known else None
    widths = pd.to_numeric(shard["width"], errors="coerce")
    best_width = point.best_width
    if widths.isna().all():  # no width column: judge the grid by parameter count
        widths, best_width = pd.to_numeric(shard["num_params"], errors="coerce"), point.best_params
    side = _edge(best_width, widths.dropna().tolist())
    point.width_at_edge = None if widths.dropna().nunique() < 2 else side is not None
    point.width_edge = {"high": "largest", "low": "smallest"}.get(side or "")
    searched: dict[str, list[Any]] = {}
    for hp in shard["hparams"]:
        for name, value in (hp or {}).items():
            searched.setdefault(name, []).append(value)
    point.hparam_at_edge = {name: side for name in sorted(searched)
                            if (side := _edge(point.hparams.get(name), searched[name])) is not None}


@dataclass
class FamilyDiagnostics:
    """Diagnostics of one family's shard points (those the fit used, or all when there is no fit)."""

    n_points: int
    not_converged: int = 0  # points whose best configuration was still improving at its budget cap
    convergence_unknown: int = 0  # points whose best configuration's convergence is unknown
    width_at_largest: int = 0  # points whose best width is the grid's largest at that shard
    width_at_smallest: int = 0
    hparam_at_edge: dict[str, int] = field(default_factory=dict)  # hyperparameter -> points at a range edge
    trials_converged: int = 0  # usable trials by convergence (stored, or derived for the best configurations)
    trials_not_converged: int = 0
    trials_unknown: int = 0
    warnings: list[str] = field(default_factory=list)  # one line per problem, with the fix

    def to_dict(self) -> dict[str, Any]:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})


def _count(points: list[ShardPoint]) -> FamilyDiagnostics:
    out = FamilyDiagnostics(len(points))
    for p in points:
        out.not_converged += p.not_converged is True
        out.convergence_unknown += p.not_converged is None
        out.width_at_largest += p.width_edge == "largest"
        out.width_at_smallest += p.width_edge == "smallest"
        for name in p.hparam_at_edge:
            out.hparam_at_edge[name] = out.hparam_at_edge.get(name, 0) + 1
    return out


def _warnings(name: str, d: FamilyDiagnostics, points: list[ShardPoint]) -> list[str]:
    n, out = d.n_points, []
    if d.width_at_largest:
        out.append(f"{name}: best width is the largest at {d.width_at_largest} of {n} shards: β_p is censored — "
                   "add wider models")
    if d.width_at_smallest:
        out.append(f"{name}: best width is the smallest at {d.width_at_smallest} of {n} shards: β_p is censored — "
                   "add narrower models")
    if d.not_converged:
        sizes = ", ".join(f"{p.train_size:.4g}" for p in points if p.not_converged)
        out.append(f"{name}: best configuration still improving at its budget cap at {d.not_converged} of {n} "
                   f"shards (sizes {sizes}): their errors are too high and β_g too shallow — raise the budget "
                   "(max_steps or epochs)")
    for hp, k in sorted(d.hparam_at_edge.items()):
        high = sum(p.hparam_at_edge.get(hp) == "high" for p in points)
        out.append(f"{name}: best {hp} at the edge of its searched range at {k} of {n} shards ({high} at the "
                   f"top, {k - high} at the bottom): the shard's minimum may lie outside — widen the {hp} range")
    return out


def diagnose(name: str, trials: TrialSet, counted: Sequence[ShardPoint], others: Sequence[ShardPoint] = (),
             read_history: HistoryReader | None = None) -> FamilyDiagnostics:
    """Annotate every point (``counted`` and ``others``) and summarize ``counted``; ``name``: "domain/family".

    ``trials`` are the family's usable trials; ``read_history`` is called once per completed max_steps trial
    stored without ``converged``.
    """
    frame = trials.frame.assign(hparams=parse_json_column(trials.frame["hparams"].tolist()))
    stored = trials.columns(("converged", "status", "stop_reason", "metric")).assign(
        trial_key=frame["trial_key"].to_numpy())
    converged = {str(rec["trial_key"]): trial_converged(rec, read_history) for rec in stored.to_dict("records")}
    shards = dict(tuple(frame.groupby("train_size", sort=False))) if len(frame) else {}
    for p in (*counted, *others):
        annotate_point(p, shards.get(p.train_size, frame.iloc[:0]), converged)
    out = _count(list(counted))
    for c in converged.values():
        if c is None:
            out.trials_unknown += 1
        elif c:
            out.trials_converged += 1
        else:
            out.trials_not_converged += 1
    out.warnings = _warnings(name, out, list(counted))
    return out
