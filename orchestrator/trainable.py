"""The one Ray Tune trainable every trial runs: train a domain's task on its shard, evaluate, report.

``run_trial`` rebuilds the trial's ``TrialPlan`` from Tune's config once and runs the shared training loop
(``orchestrator.trial_loop``) with Tune as its ``TrialIO``; a trial whose model trains on several data-parallel
workers drives a Ray Train run instead, whose workers run the same loop (``orchestrator.data_parallel``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from domains.base import Task, TrainStats
from orchestrator.contract import TrialPlan, TrialReport
from orchestrator.data_parallel import run_data_parallel
from orchestrator.trial_loop import STATE_FILE, build_trial_task, quiet_ray_logs, train_loop


class TuneIO:
    """A trial that trains in its own process: checkpoints and results go straight through Tune."""

    lead = True

    def restore(self) -> dict[str, Any] | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as d:
            return torch.load(Path(d) / STATE_FILE, weights_only=False)

    def train(self, task: Task, steps: int) -> TrainStats:
        return task.train(steps)

    def step_flops(self, task: Task) -> float | None:
        return getattr(task, "flops_per_step", None)

    def evaluate(self, task: Task) -> dict[str, float]:
        return task.evaluate()

    def report(self, report: TrialReport, saved: dict[str, Any] | None) -> None:
        if saved is None:
            tune.report(report.to_result())
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(saved, Path(tmp) / STATE_FILE)
            tune.report(report.to_result(), checkpoint=tune.Checkpoint.from_directory(tmp))

    def wait_committed(self) -> None:
        """Nothing to wait for: ``tune.report`` returns only once Tune has taken the result and its checkpoint."""


def run_trial(config: dict[str, Any], prepared_refs: Mapping[str, ray.ObjectRef]) -> None:
    """Tune function trainable; ``config`` holds the trial's ``TrialPlan`` (``TrialPlan.of``)."""
    began = time.time()  # this attempt's wall-clock start, model building included
    plan = TrialPlan.of(config)
    if plan.data_parallel:  # this trial only drives a Ray Train run of its workers
        run_data_parallel(plan, prepared_refs)
        return
    quiet_ray_logs()
    task = build_trial_task(plan, prepared_refs, "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
    train_loop(plan, task, TuneIO(), began=began)
