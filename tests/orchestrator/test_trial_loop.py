"""The trial loop's ``converged`` rule (issue 13): still improving at the step cap, stopped by patience, plateaued,
or not judged; and patience under wsd, which anneals the rate before it stops a trial."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from domains.base import Task, TrainStats, TrialSetup
from orchestrator.contract import TrialReport, TrialStopping
from orchestrator.trial_loop import train_loop, trial_converged
from tests.domains.digits_mlp import DigitsMLPDomain
from tests.orchestrator.plans import make_plan

STEPS = [50, 100, 150, 200, 250, 300, 350, 400]


def test_patience_is_converged_and_diverged_or_unjudged_is_none() -> None:
    assert trial_converged("patience", STEPS[:3], [3.0, 2.9, 2.95]) is True
    assert trial_converged("diverged", STEPS[:2], [3.0, math.nan]) is None
    assert trial_converged("max_steps", [50], [3.0]) is None  # one evaluation: nothing to judge
    assert trial_converged("max_steps", [50, 100], [math.nan, math.nan]) is None


def test_still_improving_over_the_last_quarter_of_steps_is_not_converged() -> None:
    # the last quarter of 50..400 starts at step 312.5: judged from the best up to step 300 (2.0) to the end
    falling = [4.0, 3.0, 2.5, 2.2, 2.1, 2.0, 1.99, 1.95]
    assert trial_converged("max_steps", STEPS, falling) is False  # 2.5% better than 2.0
    flat = [4.0, 3.0, 2.5, 2.2, 2.1, 2.0, 1.995, 1.99]
    assert trial_converged("max_steps", STEPS, flat) is True  # 0.5%: under the 1% default
    assert trial_converged("max_steps", STEPS, flat, min_delta=0.001) is False  # patience's own min_delta
    assert trial_converged("max_steps", STEPS, falling, min_delta=0.05) is True
    # the best-so-far is what counts: a spike after the best, then a recovery, is not an improvement
    assert trial_converged("max_steps", STEPS, [4.0, 3.0, 2.5, 2.2, 2.1, 2.0, 2.6, 2.01]) is True


def test_two_evaluations_compare_the_first_with_the_last() -> None:
    assert trial_converged("max_steps", [50, 100], [3.0, 2.5]) is False
    assert trial_converged("max_steps", [50, 100], [3.0, 3.0]) is True
    assert trial_converged("max_steps", [50, 100], [math.nan, 2.5]) is False  # first finite value at the end


class MemoryIO:
    """Where a trial reports when the loop runs in the test's own process: a list."""

    lead = True

    def __init__(self) -> None:
        self.reports: list[TrialReport] = []

    def restore(self) -> None:
        return None

    def train(self, task: Task, steps: int) -> TrainStats:
        return task.train(steps)

    def step_flops(self, task: Task) -> float | None:
        return task.flops_per_step

    def evaluate(self, task: Task) -> dict[str, float]:
        return task.evaluate()

    def report(self, report: TrialReport, saved: dict[str, Any] | None) -> None:
        self.reports.append(report)

    def wait_committed(self) -> None:
        pass


def run_until_patience(tmp_path: Path, schedule: str, patience_after: int = 0) -> tuple[list[TrialReport], Any]:
    """A real digits MLP whose every evaluation after the first fails patience (min_delta 90 %)."""
    hp = {"lr": 0.05, "schedule": schedule, "decay_steps": 100, "warmup_steps": 0}
    domain = DigitsMLPDomain()
    task = domain.build_task(domain.prepare({}, tmp_path / "cache"),
                             TrialSetup(family="mlp", fraction=0.5, width=16, hparams=hp, seed=0))
    plan = make_plan(domain="digits-mlp", family="mlp", hparams=hp, metric="val_xent", primary_metric="val_xent",
                     stopping=TrialStopping(max_steps=100, eval_every=5, patience=1, min_delta=0.9,
                                            patience_after=patience_after))
    io = MemoryIO()
    train_loop(plan, task, io)
    return io.reports, task


def test_under_wsd_patience_anneals_the_rate_before_it_stops(tmp_path: Path, ray_session: None) -> None:
    """Patience fires at step 10, in wsd's stable phase: the trial decays for 10 x 0.2 / 0.8 = 3 more steps to
    the floor, then stops as patience, converged; the same trial under cosine stops at once."""
    reports, task = run_until_patience(tmp_path, "wsd")
    assert [r.steps for r in reports] == [5, 10, 13]
    assert [r.stop_reason for r in reports] == ["", "", "patience"] and reports[-1].converged is True
    assert task.cooldown == (10, 3) and task.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.1)
    reports, _ = run_until_patience(tmp_path, "cosine")
    assert [r.steps for r in reports] == [5, 10] and reports[-1].stop_reason == "patience"


def test_patience_waits_for_the_grace_period(tmp_path: Path, ray_session: None) -> None:
    """The same trial with a grace period of 22 steps: patience has failed since step 10 but first stops it at the
    first evaluation past the grace period (step 25)."""
    reports, _ = run_until_patience(tmp_path, "cosine", patience_after=22)
    assert [r.steps for r in reports] == [5, 10, 15, 20, 25] and reports[-1].stop_reason == "patience"
