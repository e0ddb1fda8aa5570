"""The adaptive policy as a Ray Tune ``Searcher``: Tune asks for a trial whenever it has room for one.

Being a searcher keeps everything else Tune's: ``max_concurrent_trials`` (Tune wraps it in a ConcurrencyLimiter),
per-trial resources, per-group ASHA, failure retries and ``Tuner.restore``. Each suggestion is a planned
``TrialPlan`` (``orchestrator.plan.plan_trials``), so keys stay deterministic and the store exactly-once.

State, twice, for two kinds of resume:

* Tune snapshots the searcher (``save``/``restore``) together with its experiment state, so a restored Tune run
  and its searcher agree on which trials are in flight.
* ``<storage>/tune/<sweep>.adaptive.json`` is written at every decision and every finished trial: the trials
  chosen so far, every decision with its reason, the stop reason and the live fits. A trial chosen after Tune's
  last snapshot, or a sweep whose Tune state could not be restored, is run again from there (it has no row yet);
  a trial with a row is never proposed again, because observations are read back from the results store.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow.fs as pafs
from ray.tune.search import Searcher

from fitting.store import ResultsStore
from orchestrator.adaptive.policy import AdaptivePolicy, Decision, FamilyStatus, Observation
from orchestrator.adaptive.spec import AdaptiveStrategy
from orchestrator.contract import PLAN_KEY, TrialPlan, TrialReport, trial_status
from orchestrator.spec import SweepSpec
from sweepstore import child_uri, resolve, write_atomic

log = logging.getLogger(__name__)

STATE_SUFFIX = ".adaptive.json"


def state_uri(storage: str, sweep: str) -> str:
    """Where sweep ``sweep`` keeps its adaptive state: beside Tune's experiments, not in one (top-up rounds are new
    experiments; Tune re-uploads its own folder's files on restore)."""
    return child_uri(storage, f"tune/{sweep}{STATE_SUFFIX}")


def load_state(storage: str, sweep: str) -> dict[str, Any] | None:
    """The saved adaptive state of a sweep, or None before its first decision."""
    fs, path = resolve(state_uri(storage, sweep))
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def candidate_spec(spec: SweepSpec) -> SweepSpec:
    """The spec whose planned trials an adaptive sweep picks from: its grid plus the strategy's ``extra_widths``
    (tried only past an edge). Keys come from the planner, so a trial is the one a grid sweep would run."""
    strategy = spec.strategy
    extra = list(strategy.extra_widths) if isinstance(strategy, AdaptiveStrategy) else []
    if not extra:
        return spec
    domains = {}
    for name, d in spec.domains.items():
        families = d.families if isinstance(d.families, list) else {
            f: fs.model_copy(update={"widths": sorted(set(fs.widths) | set(extra))}) if fs.widths else fs
            for f, fs in d.families.items()}
        domains[name] = d.model_copy(update={"widths": sorted(set(d.widths) | set(extra)), "families": families})
    return spec.model_copy(update={"domains": domains})


def trial_cost(unit: str, plan: TrialPlan, samples: float, num_params: float | None, seconds: float,
               flops: float | None) -> float:
    """A finished trial's cost in the budget's unit (``orchestrator.adaptive.spec.Budget``)."""
    params = float(num_params or 0)
    if unit == "samples_params":
        return float(samples) * params
    if unit == "flops":
        return float(flops) if flops is not None and math.isfinite(flops) else 6.0 * params * float(samples)
    devices = max(float(plan.resources.get("gpu", 0.0)) * plan.workers, 1.0)
    return float(seconds) * devices / 3600.0


def _flops(values: Mapping[str, Any]) -> float | None:
    for name in ("train_flops", "flops"):
        v = values.get(name)
        if isinstance(v, int | float) and math.isfinite(v):
            return float(v)
    return None


class AdaptiveSearcher(Searcher):
    """Suggests planned trials in the order ``AdaptivePolicy`` gives them; FINISHED once it says stop."""

    def __init__(self, trials: Iterable[TrialPlan], strategy: AdaptiveStrategy, storage: str, sweep: str,
                 extra_widths: Iterable[int] = ()) -> None:
        super().__init__(metric=TrialReport.OBJECTIVE, mode="min")
        plans = list(trials)
        self.plans = {t.trial_key: t for t in plans}
        self.strategy, self.storage, self.sweep = strategy, storage, sweep
        self.policy = AdaptivePolicy(plans, strategy, extra_widths)
        self.live: dict[str, str] = {}  # Tune trial id -> trial key
        self.proposed: list[str] = []
        self.decisions: list[dict[str, Any]] = []
        self.finished: str | None = None
        self.requeue: list[str] = []
        saved = load_state(storage, sweep) or {}
        self.proposed = list(saved.get("proposed", []))
        self.decisions = list(saved.get("decisions", []))
        self._read_store()
        # chosen before the interruption and never finished: they run first (they are already decided)
        self.requeue = [k for k in self.proposed if k not in self.policy.observed and k in self.plans]
        if saved.get("finished") and not self.requeue:
            self.finished = saved["finished"]

    # --------------------------------------------------------------- observations
    def _read_store(self) -> None:
        """Every finished planned trial in the results store (the store is the truth: a row is never re-run)."""
        rows = ResultsStore(self.storage).read_results().to_pylist()
        for r in rows:
            plan = self.plans.get(r["trial_key"])
            if plan is None:
                continue
            value = r.get("best_value")
            cost = trial_cost(self.strategy.budget.unit, plan, r.get("samples") or 0.0, r.get("num_params"),
                              r.get("wall_seconds") or 0.0, _flops(r))
            self.policy.observe(plan.trial_key, Observation(
                value=float(value) if value is not None else math.nan, num_params=r.get("num_params"), cost=cost,
                status=r.get("status") or "errored"))

    def _observe_result(self, key: str, result: Mapping[str, Any] | None, error: bool) -> None:
        plan = self.plans[key]
        report = TrialReport.from_result(result)
        if report is None:
            self.policy.observe(key, Observation(math.nan, None, 0.0, "errored"))
            return
        status = "errored" if error else trial_status(report)[0]
        value = report.best.get(plan.primary_metric, math.nan)
        flops = report.train_flops if report.train_flops is not None else _flops(report.train_extra)
        cost = trial_cost(self.strategy.budget.unit, plan, report.samples, report.num_params, report.elapsed, flops)
        self.policy.observe(key, Observation(float(value), report.num_params, cost, status))

    # --------------------------------------------------------------- Tune's searcher interface
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if trial_id in self.live:  # Tune asks again for a trial it already has
            return {PLAN_KEY: self.plans[self.live[trial_id]].to_config()}
        busy = set(self.live.values())
        while self.requeue:
            key = self.requeue.pop(0)
            if key not in self.policy.observed and key not in busy:
                return self._start(trial_id, key, "chosen before the interruption; not finished then")
        if self.finished:
            return Searcher.FINISHED
        choice = self.policy.next(busy)
        if isinstance(choice, str):
            self.finished = choice
            log.warning("adaptive sweep %s stops: %s", self.sweep, choice)
            self._persist()
            return Searcher.FINISHED
        if choice is None:
            return None
        return self._start(trial_id, choice.key, choice.reason, choice)

    def _start(self, trial_id: str, key: str, reason: str, decision: Decision | None = None) -> dict[str, Any]:
        self.live[trial_id] = key
        if key not in self.proposed:
            self.proposed.append(key)
        entry = decision.to_dict() if decision else {"key": key, "reason": reason}
        entry["spent"] = self.policy.spent
        self.decisions.append(entry)
        log.warning("adaptive: %s", reason)
        self._persist()
        return {PLAN_KEY: self.plans[key].to_config()}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        key = self.live.pop(trial_id, None)
        if key is None:
            return
        if key not in self.policy.observed:  # a row read from the store stays: it is what the fit will see
            self._observe_result(key, result, error)
        self._persist()

    def get_state(self) -> dict[str, Any]:
        return {"live": dict(self.live), "proposed": list(self.proposed), "decisions": list(self.decisions),
                "finished": self.finished}

    def set_state(self, state: dict[str, Any]) -> None:
        self.live = dict(state["live"])
        snapshot = set(state["proposed"])
        persisted = load_state(self.storage, self.sweep) or {}  # newer than Tune's snapshot
        # trials chosen after Tune's snapshot are unknown to the restored Tune run: run them again (no row yet)
        later = [k for k in persisted.get("proposed", []) if k not in snapshot and k in self.plans]
        self.proposed = list(state["proposed"]) + later
        decisions = persisted.get("decisions", [])
        self.decisions = decisions if len(decisions) >= len(state["decisions"]) else list(state["decisions"])
        self._read_store()
        # a trial in flight at the snapshot but stored since is not run again (the scheduler skips it): not live
        self.live = {tid: k for tid, k in self.live.items() if k not in self.policy.observed}
        live = set(self.live.values())
        self.requeue = [k for k in later if k not in self.policy.observed and k not in live]
        self.finished = state["finished"] if not self.requeue else None

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    # --------------------------------------------------------------- what the display and dashboard read
    def statuses(self) -> list[FamilyStatus]:
        return self.policy.statuses()

    def spent(self) -> tuple[float, float, str]:
        """(spent, budget, unit)."""
        return self.policy.spent, self.policy.budget, self.strategy.budget.unit

    def figures(self) -> tuple[list[FamilyStatus], float, float, str]:
        """What the dashboard exports: the families' live fits, compute spent, the budget and its unit."""
        return (self.statuses(), *self.spent())

    def status_lines(self) -> list[str]:
        """Per family the live β_g and β_p with their intervals, then compute spent against the budget."""
        target = self.strategy.target
        lines = [s.line(target.beta_g_halfwidth, target.beta_p_halfwidth) for s in self.statuses()]
        spent, budget, unit = self.spent()
        end = f"; stopped: {self.finished}" if self.finished else ""
        lines.append(f"compute {spent:.4g} of {budget:.4g} {unit} ({spent / budget:.0%}){end}")
        return lines

    def _persist(self) -> None:
        fs, path = resolve(state_uri(self.storage, self.sweep))
        fs.create_dir(path.rpartition("/")[0], recursive=True)
        spent, budget, unit = self.spent()
        body = {"sweep": self.sweep, "proposed": self.proposed, "decisions": self.decisions,
                "finished": self.finished, "spent": spent, "budget": budget, "unit": unit,
                "families": [s.__dict__ for s in self.policy.statuses()]}
        write_atomic(fs, path, json.dumps(body, indent=1, default=str).encode())
