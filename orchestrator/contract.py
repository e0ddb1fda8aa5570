"""The trial contract: what a trial is told (``TrialPlan``) and what it reports (``TrialReport``).

A ``TrialPlan`` travels in Tune's config as plain data (``to_config``; Tune pickles and snapshots configs, and
storages written before these types existed hold the same dicts) and is rebuilt once per trial with ``of``.
A ``TrialReport`` is the single definition of a trial's result keys: the trainable builds one and reports
``to_result()``; the recorder, per-group ASHA, the progress display and the dashboard metrics read results back
with ``TrialReport.from_result``. No other module names a result key or reads a plan by string.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

PLAN_KEY = "trial"  # Tune config: {"trial": TrialPlan.to_config()}


def _known(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{what} has unknown fields {unknown}; allowed: {', '.join(sorted(names))}")
    return dict(data)


@dataclass(frozen=True)
class TrialStopping:
    """When a trial stops itself: after ``max_steps`` optimizer steps, or after ``patience`` evaluations (every
    ``eval_every`` steps) that did not improve the watched metric by ``min_delta`` (relative), never before
    ``patience_after`` steps (the trial's grace period: the first steps' transient is no plateau)."""

    max_steps: int
    eval_every: int
    patience: int | None = None
    min_delta: float = 0.0
    patience_after: int = 0
    asha_grace: int | None = None  # ASHA's grace period and max_t in steps for the trial's whole group (budgets in
    asha_max_t: int | None = None  # epochs differ by shard); None: the sweep-wide values


@dataclass(frozen=True)
class TrialPlan:
    """One trial, decided before Ray starts (``orchestrator.plan.plan_trials``)."""

    trial_key: str  # deterministic from domain, family, fraction, width, hparams, seed: the store's file name
    config_key: str  # the same without the seed
    sweep: str
    domain: str
    family: str
    fraction: float
    width: int
    hparams: dict[str, Any]
    seed: int
    metric: str  # the metric ASHA and patience watch (lower is better)
    primary_metric: str  # the family's fitted metric
    size_unit: str
    stopping: TrialStopping
    threads: int
    resources: dict[str, float]  # what the trial asks Ray for: {"cpu": ..., "gpu": ...}, per worker
    workers: int = 1  # > 1: data-parallel on that many workers (orchestrator.data_parallel)
    train_size: float | None = None  # filled in once the domain's data is prepared

    def to_config(self) -> dict[str, Any]:
        """The plan as Tune's config holds it (plain data)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialPlan:
        """A plan from ``to_config``'s dict (also one written by an older version of the code)."""
        values = _known(cls, data, "trial plan")
        stopping = values.get("stopping")
        if isinstance(stopping, Mapping):
            values["stopping"] = TrialStopping(**_known(TrialStopping, stopping, "trial plan stopping"))
        return cls(**values)

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> TrialPlan:
        """The plan in a trial's Tune config (``trial.config`` on the driver, the trainable's ``config``)."""
        plan = config[PLAN_KEY]
        return plan if isinstance(plan, TrialPlan) else cls.from_dict(plan)

    @property
    def label(self) -> str:
        """Readable name for the dashboard and logs: domain/family/shard/width/seed."""
        return f"{self.domain}/{self.family}/f={self.fraction:.4g}/w={self.width}/s{self.seed}"

    @property
    def data_parallel(self) -> bool:
        return self.workers > 1


NOT_FINITE_OBJECTIVE = 1e30  # what ASHA sees for a diverged evaluation: it needs a number


@dataclass(frozen=True)
class TrialReport:
    """One report of a trial: after every ``eval_every`` steps, and the last one marked ``final``."""

    iteration: int  # evaluations so far, this trial's own counter (survives restores, unlike Tune's)
    steps: int  # optimizer steps so far: the resource ASHA compares trials on
    samples: float  # training data consumed, in the plan's size unit
    train_loss: float
    objective: float = math.nan  # the watched metric now (NOT_FINITE_OBJECTIVE when not finite)
    best_objective: float = math.nan
    num_params: int | None = None
    non_embedding_params: int | None = None  # num_params without embedding tables and vocabulary output layers
    flops_per_step: float | None = None  # training FLOPs of one step on the global batch (domains.flops)
    train_flops: float | None = None  # training FLOPs so far: flops_per_step x steps
    converged: bool | None = None  # on a final report: False when still improving at max_steps (trial_converged)
    elapsed: float = 0.0  # training seconds over every attempt
    restores: int = 0  # times the trial resumed from its checkpoint
    final: bool = False  # the trial stopped itself with this report (stop_reason says why)
    stop_reason: str = ""  # "diverged", "max_steps" or "patience" on a final report
    metrics: dict[str, float] = field(default_factory=dict)  # validation metrics now
    best: dict[str, float] = field(default_factory=dict)  # each metric's best value so far
    train_extra: dict[str, float] = field(default_factory=dict)  # the task's own training counters
    node_id: str | None = None  # placement of the attempt that sent this report
    gpu_ids: str | None = None  # comma-separated (Tune's loggers take scalars and strings)
    run_started_at: float | None = None  # wall clock: this attempt's start
    reported_at: float | None = None
    restored_history: str | None = None  # JSON list of history rows before a restore, sent once after it
    replica_drift: float | None = None  # data-parallel: spread of a parameter checksum over the replicas
    train_placement_group: str | None = None  # data-parallel: the workers' placement group (hex), for ReleaseWorkers
    samples_per_second: float | None = None  # training throughput of the steps since the last report

    # Result keys: Tune, ASHA (TIME_ATTR, OBJECTIVE) and the loggers see these names; renaming one renames it
    # everywhere. Stored rows do not use them (orchestrator.recorder maps reports to the store's columns).
    ITERATION: ClassVar[str] = "iter"
    TIME_ATTR: ClassVar[str] = "steps"
    OBJECTIVE: ClassVar[str] = "objective"
    METRIC_PREFIX: ClassVar[str] = "val/"
    BEST_PREFIX: ClassVar[str] = "best/"
    TRAIN_PREFIX: ClassVar[str] = "train/"
    _PREFIXED: ClassVar[dict[str, str]] = {"metrics": "val/", "best": "best/", "train_extra": "train/"}
    _OPTIONAL: ClassVar[tuple[str, ...]] = ("node_id", "gpu_ids", "run_started_at", "reported_at",
                                            "restored_history", "replica_drift", "train_placement_group",
                                            "non_embedding_params", "flops_per_step", "train_flops", "converged",
                                            "samples_per_second")

    def to_result(self) -> dict[str, Any]:
        """The flat dict Tune takes (``tune.report``/``ray.train.report``)."""
        out: dict[str, Any] = {self.ITERATION: self.iteration}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "iteration" or (f.name in self._OPTIONAL and value is None):
                continue
            if f.name in self._PREFIXED:
                out.update({f"{self._PREFIXED[f.name]}{k}": float(v) for k, v in value.items()})
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_result(cls, result: Mapping[str, Any] | None) -> TrialReport | None:
        """The report in a Tune result (which also holds Tune's own keys, ignored here); None when the trial has
        not reported yet."""
        if not result or cls.ITERATION not in result:
            return None
        values: dict[str, Any] = {"iteration": int(result[cls.ITERATION])}
        for f in fields(cls):
            if f.name in cls._PREFIXED:
                prefix = cls._PREFIXED[f.name]
                values[f.name] = {k.removeprefix(prefix): float(v) for k, v in result.items()
                                  if k.startswith(prefix)}
            elif f.name != "iteration" and f.name in result:
                values[f.name] = result[f.name]
        return cls(**values)


def trial_status(report: TrialReport | None) -> tuple[str, str]:
    """(status, stop reason) of a trial that ended normally, from its last report: the trial marks its own last
    report ``final`` (patience, max_steps, diverged); a trial that ended without one was stopped by ASHA."""
    if report is None:
        return "errored", "no result reported"
    if report.final:
        return ("diverged" if report.stop_reason == "diverged" else "completed"), report.stop_reason
    return "stopped", "asha"
