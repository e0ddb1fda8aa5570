"""Sweep metrics for the Ray dashboard (and any Prometheus scraping Ray's metrics endpoint).

Exported through ``ray.util.metrics``: trials by state per domain, the best value of the primary metric per
(domain, family, shard), and each trial's training throughput in its domain's size unit. An adaptive sweep adds
per family its live β_g and β_p with the interval's ends, and the compute spent and the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.util.metrics import Gauge

from orchestrator.contract import TrialPlan, TrialReport, trial_status

_TRIAL_STATES = ("running", "pending", "completed", "stopped", "diverged", "errored")


class LiveFit(Protocol):
    """A family's live fit as the adaptive sweep reports it (``orchestrator.adaptive.policy.FamilyStatus``)."""

    domain: str
    family: str
    beta_g: float | None
    beta_g_ci: tuple[float, float] | None
    beta_p: float | None
    beta_p_ci: tuple[float, float] | None


# () -> (live fits, compute spent, budget, budget unit)
Figures = Callable[[], tuple[Sequence[LiveFit], float, float, str]]


def exponent_values(fit: LiveFit) -> dict[tuple[str, str], float]:
    """(exponent, value|low|high) -> number, for the finite figures of one family."""
    out = {}
    for name, value, ci in (("beta_g", fit.beta_g, fit.beta_g_ci), ("beta_p", fit.beta_p, fit.beta_p_ci)):
        for bound, v in (("value", value), ("low", ci[0] if ci else None), ("high", ci[1] if ci else None)):
            if v is not None and math.isfinite(v):
                out[(name, bound)] = float(v)
    return out


class DashboardMetrics(Callback):
    """Driver-side gauges: trials per state and domain, best metric per shard, training throughput per (domain,
    family, width) from each trial's report. Why the driver sets them all: a trial's worker process ends with the
    trial, and a gauge set there is lost when its process exits before Ray's next metrics export."""

    def __init__(self, figures: Figures | None = None) -> None:
        self.figures = figures
        self._trials: Gauge | None = None
        self._best: Gauge | None = None
        self._throughput: Gauge | None = None
        self._exponents: Gauge | None = None
        self._compute: Gauge | None = None
        self._finished: dict[str, dict[str, int]] = {}
        self._best_seen: dict[tuple[str, str, str], float] = {}

    def _gauges(self) -> tuple[Gauge, Gauge, Gauge]:
        if self._trials is None or self._best is None or self._throughput is None:  # lazily: pickled with the Tuner
            self._trials = Gauge("scaling_sweep_trials", "trials by state", tag_keys=("domain", "state"))
            self._best = Gauge("scaling_sweep_best_metric", "best primary validation metric per shard",
                               tag_keys=("domain", "family", "fraction", "metric"))
            self._throughput = Gauge("scaling_sweep_samples_per_second",
                                     "training data consumed per second, in the domain's size unit",
                                     tag_keys=("domain", "family", "width"))
        return self._trials, self._best, self._throughput

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trials": None, "_best": None, "_throughput": None, "_exponents": None,
                "_compute": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_throughput": None, **state})  # callbacks pickled before the throughput gauge

    def _adaptive_gauges(self) -> tuple[Gauge, Gauge]:
        if self._exponents is None or self._compute is None:
            self._exponents = Gauge("scaling_sweep_exponent", "live fitted exponent of an adaptive sweep, with the "
                                    "ends of its 95% interval", tag_keys=("domain", "family", "exponent", "bound"))
            self._compute = Gauge("scaling_sweep_compute", "an adaptive sweep's compute spent and its budget",
                                  tag_keys=("kind", "unit"))
        return self._exponents, self._compute

    def publish_fits(self) -> None:
        """The adaptive sweep's live exponents and compute (nothing for a grid sweep)."""
        if self.figures is None:
            return
        fits, spent, budget, unit = self.figures()
        exponents, compute = self._adaptive_gauges()
        for fit in fits:
            for (name, bound), v in exponent_values(fit).items():
                exponents.set(v, tags={"domain": fit.domain, "family": fit.family, "exponent": name, "bound": bound})
        compute.set(spent, tags={"kind": "spent", "unit": unit})
        compute.set(budget, tags={"kind": "budget", "unit": unit})

    def _outcome(self, trial: Trial, status: str) -> None:
        domain = TrialPlan.of(trial.config).domain
        self._finished.setdefault(domain, dict.fromkeys(_TRIAL_STATES, 0))[status] += 1

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        plan, report = TrialPlan.of(trial.config), TrialReport.from_result(result)
        if report is not None and report.samples_per_second is not None:
            self._gauges()[2].set(report.samples_per_second, tags={"domain": plan.domain, "family": plan.family,
                                                                   "width": str(plan.width)})
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
        self.publish_fits()

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._outcome(trial, "errored")
        self._publish(trials)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if iteration % 20 == 0:  # the controller steps many times a second; states change far less often
            self._publish(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._publish(trials)
        self.publish_fits()

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
