"""The one Ray Tune trainable every trial runs: build the domain's task and run the shared loop
(``orchestrator.trial_loop``) in the trial's own process, or, for a model that trains on several data-parallel
workers, drive a Ray Train run of them (``orchestrator.data_parallel``).
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

    def evaluate(self, task: Task) -> dict[str, float]:
        return task.evaluate()

    def report(self, result: dict[str, Any], saved: dict[str, Any] | None) -> None:
        if saved is None:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(saved, Path(tmp) / STATE_FILE)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))

    def wait_committed(self) -> None:
        """Nothing to wait for: ``tune.report`` returns only once Tune has taken the result and its checkpoint."""


def run_trial(config: dict[str, Any], prepared_refs: Mapping[str, ray.ObjectRef]) -> None:
    """Tune function trainable. ``config["trial"]`` is an ``orchestrator.plan.TrialPlan`` as a dict."""
    began = time.time()  # this attempt's wall-clock start, model building included (the results' placement)
    plan = config["trial"]
    if plan.get("workers", 1) > 1:  # data-parallel: this trial only drives a Ray Train run of its workers
        run_data_parallel(config, prepared_refs)
        return
    quiet_ray_logs()
    task = build_trial_task(plan, prepared_refs, "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
    train_loop(plan, task, TuneIO(), began=began)
