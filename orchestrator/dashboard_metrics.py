"""Sweep metrics for the Ray dashboard (and any Prometheus scraping Ray's metrics endpoint).

Exported through ``ray.util.metrics``: trials by state per domain, the best value of the primary metric per
(domain, family, shard), and each trial's training throughput in its domain's size unit.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.util.metrics import Gauge

from orchestrator.contract import TrialPlan, TrialReport, trial_status

_TRIAL_STATES = ("running", "pending", "completed", "stopped", "diverged", "errored")


def samples_per_second_gauge() -> Gauge:
    """Per-trial throughput, set from inside the trial."""
    return Gauge("scaling_sweep_samples_per_second", "training data consumed per second, in the domain's size unit",
                 tag_keys=("domain", "family", "width"))


class DashboardMetrics(Callback):
    """Driver-side gauges: trials per state and domain, best metric per shard."""

    def __init__(self) -> None:
        self._trials: Gauge | None = None
        self._best: Gauge | None = None
        self._finished: dict[str, dict[str, int]] = {}
        self._best_seen: dict[tuple[str, str, str], float] = {}

    def _gauges(self) -> tuple[Gauge, Gauge]:
        if self._trials is None or self._best is None:  # created lazily: callbacks are pickled with the Tuner
            self._trials = Gauge("scaling_sweep_trials", "trials by state", tag_keys=("domain", "state"))
            self._best = Gauge("scaling_sweep_best_metric", "best primary validation metric per shard",
                               tag_keys=("domain", "family", "fraction", "metric"))
        return self._trials, self._best

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trials": None, "_best": None}

    def _outcome(self, trial: Trial, status: str) -> None:
        domain = TrialPlan.of(trial.config).domain
        self._finished.setdefault(domain, dict.fromkeys(_TRIAL_STATES, 0))[status] += 1

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        plan, report = TrialPlan.of(trial.config), TrialReport.from_result(result)
        value = report.best.get(plan.primary_metric) if report else None
        if value is None or not math.isfinite(value):
            return
        key = (plan.domain, plan.family, f"{plan.fraction:.6g}")
        if value < self._best_seen.get(key, math.inf):
            self._best_seen[key] = value
            self._gauges()[1].set(value, tags={"domain": key[0], "family": key[1], "fraction": key[2],
                                               "metric": plan.primary_metric})

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._outcome(trial, trial_status(TrialReport.from_result(trial.last_result))[0])
        self._publish(trials)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._outcome(trial, "errored")
        self._publish(trials)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if iteration % 20 == 0:  # the controller steps many times a second; states change far less often
            self._publish(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._publish(trials)

    def _publish(self, trials: list[Trial]) -> None:
        gauge = self._gauges()[0]
        live: dict[str, dict[str, int]] = {}
        for t in trials:
            state = {Trial.RUNNING: "running", Trial.PENDING: "pending", Trial.PAUSED: "pending"}.get(t.status)
            if state:
                counts = live.setdefault(TrialPlan.of(t.config).domain, {"running": 0, "pending": 0})
                counts[state] += 1
        for domain in set(live) | set(self._finished):
            counts = {**dict.fromkeys(_TRIAL_STATES, 0), **self._finished.get(domain, {}), **live.get(domain, {})}
            for state, n in counts.items():
                gauge.set(n, tags={"domain": domain, "state": state})
