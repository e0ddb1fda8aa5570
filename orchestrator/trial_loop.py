"""The training loop every trial runs, alone or as one replica of a data-parallel trial.

The trial owns a monotonic resource counter (optimizer steps) that survives restores, unlike Tune's
``training_iteration``; per-group ASHA compares trials on it. Each trial also stops itself when its
validation metric has not improved for ``patience`` evaluations, once past its grace period (under wsd, after
first annealing the rate from its stable phase: ``Task.start_cooldown``), and records a non-finite training loss
as divergence instead of crashing. A checkpoint goes with every report, so a retried trial resumes where it
stopped rather than from step 0. What the loop reports is a ``TrialReport`` (``orchestrator.contract``); where it
reports to is a ``TrialIO``: Tune for a trial that trains alone (``orchestrator.trainable``), Ray Train for each
replica of a data-parallel one (``orchestrator.data_parallel``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import ray
import torch

from domains.base import Task, TrainStats, TrialSetup
from domains.registry import get_domain
from fitting.diagnostics import CONVERGED_RTOL, still_improving
from orchestrator.contract import NOT_FINITE_OBJECTIVE, TrialPlan, TrialReport

STATE_FILE = "trial_state.pt"
# Checkpoints kept per trial, by Tune (single-process trials) and by Ray Train (data-parallel ones). Tune snapshots
# the experiment whenever a trial has checkpointed num_to_keep times since the last snapshot; keeping 2 halves
# those snapshots against 1 and bounds disk use.
CHECKPOINTS_KEPT = 2

_prepared_cache: dict[str, Any] = {}  # per worker process: reused actors keep the shared data


def prepared_data(refs: Mapping[str, ray.ObjectRef], domain: str) -> Any:
    """The domain's prepared data from the object store, fetched once per worker process."""
    ref = refs[domain]
    key = ref.hex()
    if key not in _prepared_cache:
        _prepared_cache.clear()
        _prepared_cache[key] = ray.get(ref)
    return _prepared_cache[key]


def _improved(value: float, best: float, min_delta: float) -> bool:
    return value < best - abs(best) * min_delta if math.isfinite(best) else math.isfinite(value)


def trial_converged(stop_reason: str, steps: Sequence[int], values: Sequence[float],
                    min_delta: float = 0.0) -> bool | None:
    """Whether a trial that stopped itself for ``stop_reason`` had reached its minimum (issue 13's ``converged``).

    True when patience stopped it. A trial that ran to ``max_steps`` is still improving (False) when the
    best-so-far of ``values`` (the watched metric at each evaluation, at ``steps``; lower is better) fell by more
    than ``min_delta`` relative (``CONVERGED_RTOL`` when 0) over the last quarter of its steps: the rule the fit
    applies to stored histories (``fitting.diagnostics.still_improving``), so the two never disagree. None for a
    diverged trial or one with fewer than 2 evaluations. Why: a shard's best configuration still improving at its
    budget cap overstates that shard's error."""
    if stop_reason == "patience":
        return True
    if stop_reason != "max_steps":
        return None
    improving = still_improving(steps, values, rtol=min_delta or CONVERGED_RTOL)
    return None if improving is None else not improving


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class _Placement:
    node_id: str
    gpu_ids: str  # comma-separated: Tune's loggers take scalars and strings, not lists
    run_started_at: float


def _placement(began: float) -> _Placement:
    """Where and when this attempt runs, so placement and GPU-slot utilization can be checked from the results
    store alone."""
    return _Placement(node_id=ray.get_runtime_context().get_node_id(),
                      gpu_ids=",".join(map(str, ray.get_gpu_ids())), run_started_at=began)


def quiet_ray_logs() -> None:
    """One INFO line per checkpoint from Ray Train and Tune would drown the progress display."""
    for name in ("ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)


class TrialIO(Protocol):
    """What the shared training loop needs from where it runs: ``orchestrator.trainable.TuneIO`` for a trial that
    trains alone, one replica's ``orchestrator.data_parallel.ReplicaIO`` for a data-parallel trial."""

    lead: bool  # the process that reports throughput and calls Task.on_checkpoint (alone, or rank 0)

    def restore(self) -> dict[str, Any] | None:
        """The saved ``{"task", "progress"}`` of an earlier attempt, or None on a fresh start."""

    def train(self, task: Task, steps: int) -> TrainStats:
        """``task.train(steps)``, with samples counted over every process that trained."""

    def step_flops(self, task: Task) -> float | None:
        """Training FLOPs of one step on the whole batch, over every process that trains (each counts its share,
        ``TrainingTask.flops_per_step``); None where the task counts none."""

    def evaluate(self, task: Task) -> dict[str, float]:
        """``task.evaluate()``, the same on every process."""

    def report(self, report: TrialReport, saved: dict[str, Any] | None) -> None:
        """Report ``report``, with a checkpoint of ``saved`` unless it is None (the trial's last report)."""

    def wait_committed(self) -> None:
        """Return once the last reported checkpoint is where a retry of the trial will look for it."""


def build_trial_task(plan: TrialPlan, prepared_refs: Mapping[str, ray.ObjectRef], device: str) -> Task:
    """The domain's task of a planned trial on ``device`` (every replica of a data-parallel trial builds one)."""
    torch.set_num_threads(plan.threads)
    setup = TrialSetup(family=plan.family, fraction=plan.fraction, width=plan.width, hparams=plan.hparams,
                       seed=plan.seed, threads=plan.threads, device=device)
    return get_domain(plan.domain).build_task(prepared_data(prepared_refs, plan.domain), setup)


def train_loop(plan: TrialPlan, task: Task, io: TrialIO, began: float | None = None) -> None:
    """Train in chunks of ``eval_every`` steps, evaluate and report (with a checkpoint) until the trial stops
    itself: diverged, ``max_steps`` or ``patience``. Every process of a trial runs it and takes the same
    decisions, so single-process and data-parallel trials keep one contract."""
    stop = plan.stopping
    # the checkpointed progress: its keys are what checkpoints of earlier attempts (and older code) hold
    state: dict[str, Any] = {"steps": 0, "samples": 0.0, "iteration": 0, "best": {}, "since_best": 0,
                             "elapsed": 0.0, "restores": 0, "history": []}
    saved = io.restore()
    if saved is not None:
        task.load_state_dict(saved["task"])
        state = {"history": [], **saved["progress"]}  # checkpoints written before history was carried lack it
        state["restores"] += 1
    # the iterations before a restore, sent once with this attempt's first report: the driver that recorded
    # them may be gone (driver killed and the experiment resumed), and the trial's history must stay whole
    restored_history = json.dumps(state["history"]) if state["history"] else None
    metric = plan.metric
    started = time.monotonic() - state["elapsed"]
    placement = _placement(time.time() if began is None else began)

    while True:
        cooldown_end = task.cooldown_end  # patience fired in wsd's stable phase: stop once the rate has annealed
        chunk = min(stop.eval_every, stop.max_steps - state["steps"],
                    (math.inf if cooldown_end is None else cooldown_end) - state["steps"])
        tick = time.monotonic()
        stats = io.train(task, chunk)
        if state.get("flops_per_step") is None:  # counted on the trial's first step; checkpoints carry it
            state["flops_per_step"] = io.step_flops(task)
        samples_per_second = stats.samples / max(time.monotonic() - tick, 1e-9)
        state["steps"] += stats.steps
        state["samples"] += stats.samples
        state["iteration"] += 1
        diverged = not math.isfinite(stats.loss)
        metrics = {k: float("nan") for k in io.evaluate(task)} if diverged else io.evaluate(task)
        diverged = diverged or not math.isfinite(metrics.get(metric, float("nan")))
        value = metrics.get(metric, float("nan"))
        if not diverged and _improved(value, state["best"].get(metric, math.inf), stop.min_delta):
            state["since_best"] = 0
        else:
            state["since_best"] += 1
        for name, v in metrics.items():
            if math.isfinite(v) and v < state["best"].get(name, math.inf):
                state["best"][name] = v
        state["elapsed"] = time.monotonic() - started

        flops = _finite(state["flops_per_step"])
        train_flops = None if flops is None else flops * state["steps"]
        state["history"].append({"iteration": state["iteration"], "steps": state["steps"],
                                 "samples": state["samples"], "train_loss": stats.loss, "metrics": metrics,
                                 "train_extra": stats.extra, "time": state["elapsed"], "train_flops": train_flops})

        reason = None
        if diverged:
            reason = "diverged"
        elif cooldown_end is not None and state["steps"] >= cooldown_end:
            reason = "patience"
        elif state["steps"] >= stop.max_steps:
            reason = "max_steps"
        elif (cooldown_end is None and stop.patience is not None and state["since_best"] >= stop.patience
              and state["steps"] >= stop.patience_after):
            reason = None if task.start_cooldown(stop.max_steps) else "patience"

        report = TrialReport(
            iteration=state["iteration"], steps=state["steps"], samples=state["samples"], train_loss=stats.loss,
            objective=value if math.isfinite(value) else NOT_FINITE_OBJECTIVE,
            best_objective=state["best"].get(metric, float("nan")), num_params=task.num_params,
            non_embedding_params=getattr(task, "non_embedding_params", None), flops_per_step=flops,
            train_flops=train_flops, converged=None if reason is None else trial_converged(
                reason, [h["steps"] for h in state["history"]],
                [h["metrics"].get(metric, math.nan) for h in state["history"]], stop.min_delta),
            elapsed=state["elapsed"], restores=state["restores"], final=reason is not None,
            stop_reason=reason or "", metrics=dict(metrics), best=dict(state["best"]),
            train_extra={k: float(v) for k, v in stats.extra.items()}, node_id=placement.node_id,
            gpu_ids=placement.gpu_ids, run_started_at=placement.run_started_at, reported_at=time.time(),
            restored_history=restored_history, samples_per_second=samples_per_second)
        restored_history = None
        if reason is not None:
            io.report(report, None)  # nothing left to resume: skip the checkpoint
            return
        io.report(report, {"task": task.state_dict(), "progress": state})
        if io.lead:
            task.on_checkpoint(state["iteration"], io.wait_committed)
