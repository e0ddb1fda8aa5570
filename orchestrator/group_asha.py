"""ASHA that only compares trials inside their group.

Ray's ``AsyncHyperBandScheduler`` ranks every trial against every other at the same resource level. In a
learning-curve sweep that is wrong: a trial on a 1/256 shard always loses to one on the full set, and a small
model loses to a large one early in training, yet both are exactly the points the curve needs. This
scheduler keeps one unmodified ``AsyncHyperBandScheduler`` per group (default key: domain, family, shard
fraction, width) and routes each trial's events to its group's instance, so within a group the decisions
are Ray's own, with three differences that make them judge what the fit scores, fairly:

* **Best so far.** The fit scores a trial by its best validation value, so the value a rung records is the
  trial's best so far (lowest for ``mode="min"``), not its latest: a noisy evaluation at a rung does not stop a
  trial whose best is competitive.
* **Configurations, not seeds.** ASHA's unit is a configuration (``TrialPlan.config_key``: everything but the
  seed), so the seeds of one configuration never compete with each other. A configuration's value at a rung is
  the median over its seeds' best-so-far values (each seed's latest; the first seed to reach the rung decides
  for the configuration), and a configuration stopped at a rung stops every one of its seeds there.
* **Shuffled starts.** Pending trials start in a fixed order shuffled by configuration, not the plan's. Async ASHA
  judges each arrival against those that reached the rung before it, so it assumes arrivals in random order; a
  grid is planned sorted (learning rates ascending), which in a small group lets nearly every configuration pass
  (a no-stopping LM sweep replayed offline, 12 configurations a shard: 38-54% of the compute in plan order,
  21-38% shuffled; the best configuration kept on 0-4 of 5 shards either way).

With ``synchronous=True`` a group's rungs are decided by synchronous successive halving instead
(``orchestrator.sync_halving``): a trial that reaches a rung pauses until every configuration of its group has
reached the rung or ended, then the best 1/reduction_factor of them resume and the rest stop. The group sizes come
from the plan (``group_sizes``). Async ASHA judges each arrival on the few that came before it, which with fewer
workers than configurations in a group promotes too many (see ``orchestrator.sync_halving``).

Tune does not save scheduler state with the experiment (``Tuner.restore`` starts schedulers fresh), so the
rungs, the trial-to-group map and the set of finished trials are persisted to ``state_path`` (a local path or any
pyarrow filesystem URI, e.g. ``s3://bucket/...?endpoint_override=...``) and reloaded when ``Tuner.restore``
unpickles the scheduler. A trial that had finished before the driver died, but that Tune's last (periodic)
experiment snapshot still lists as running, is marked terminated on restore instead of being trained again.
"""

from __future__ import annotations

import hashlib
import logging
import math
import pickle
import statistics
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from orchestrator.budgets import asha_rungs
from orchestrator.contract import PLAN_KEY, TrialPlan, TrialReport
from orchestrator.ray_internals import asha_restore, asha_rung_entries, asha_state, asha_trials
from orchestrator.sync_halving import HalvingGroup
from sweepstore import redact, resolve, write_atomic

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

log = logging.getLogger(__name__)

GroupFn = Callable[[dict[str, Any]], Hashable]


def configuration_of(config: dict[str, Any]) -> Hashable:
    """A trial's configuration, ASHA's unit: the plan's ``config_key`` (every coordinate but the seed)."""
    return TrialPlan.of(config).config_key


@dataclass(frozen=True)
class Configuration:
    """What a group's ``AsyncHyperBandScheduler`` sees in place of a trial: one configuration (all its seeds)."""

    trial_id: Hashable


def load_state(uri: str) -> dict[str, Any] | None:
    """The persisted scheduler state at ``uri`` (path or pyarrow URI), or None if none was saved yet."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return pickle.loads(f.read())


def _signature(sched: AsyncHyperBandScheduler) -> tuple[int, int]:
    """Changes whenever the group's membership or rungs change: ASHA only ever adds rung entries, never edits."""
    return len(asha_trials(sched)), asha_rung_entries(sched)


class GroupedASHAScheduler(FIFOScheduler):
    """One ``AsyncHyperBandScheduler`` per group of trials; groups never compete, nor do seeds of a configuration."""

    def __init__(
        self,
        group_fn: GroupFn,
        *,
        unit_fn: GroupFn = configuration_of,
        time_attr: str = TrialReport.TIME_ATTR,
        metric: str | None = None,
        mode: str | None = None,
        max_t: int = 100,
        grace_period: int = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
        state_path: str | None = None,
        synchronous: bool = False,
        group_sizes: dict[Hashable, int] | None = None,
        max_running: int | None = None,
    ) -> None:
        super().__init__()
        if synchronous and group_sizes is None:
            raise ValueError("synchronous per-group halving needs group_sizes: the configurations planned per group")
        self._synchronous, self._group_sizes = synchronous, dict(group_sizes or {})
        # synchronous: the most trials training at once. Tune's max_concurrent_trials cannot say it: it counts
        # paused trials as live, so a group larger than the limit would wait at its first rung for ever. Tune
        # starts every PENDING trial it has resources for, so trials not started yet are held PAUSED instead and
        # started one by one from choose_trial_to_run.
        self._max_running = max_running
        self._held: set[str] = set()  # trial ids held back by max_running, never started by this driver
        self._halving: dict[Hashable, HalvingGroup] = {}  # synchronous: each group's rungs
        self._at_rung: dict[str, int] = {}  # synchronous: trial id -> the last rung it reached
        self._resumable: set[str] = set()  # synchronous: paused trial ids whose configuration passed its rung
        self._group_fn, self._unit_fn = group_fn, unit_fn
        self._asha_kwargs = dict(time_attr=time_attr, max_t=max_t, grace_period=grace_period,
                                 reduction_factor=reduction_factor, brackets=brackets)
        self._metric, self._mode = metric, mode
        self._groups: dict[Hashable, AsyncHyperBandScheduler] = {}
        self._group_of_trial: dict[str, Hashable] = {}
        self._completed: set[str] = set()  # trial ids that finished: never resumed after a restore
        self._unit_of_trial: dict[str, Hashable] = {}  # trial id -> its configuration
        self._seeds: dict[Hashable, set[str]] = {}  # configuration -> its trials (seeds) seen so far
        self._live: dict[Hashable, set[str]] = {}  # configuration -> its trials not finished yet
        self._best: dict[str, float] = {}  # trial id -> best metric value so far
        self._stopped_at: dict[Hashable, float] = {}  # configuration -> the resource at which ASHA stopped it
        self._start_ranks: dict[str, tuple[str, str]] = {}  # trial id -> its place in the start order
        self._state_path = state_path  # a path or URI string; the filesystem is resolved lazily, never pickled
        self._fs: tuple[pafs.FileSystem, str] | None = None
        self._save_failed = False
        self._num_stopped = 0
        AsyncHyperBandScheduler(metric=metric or "_", mode=mode or "min", **self._asha_kwargs)  # validate now

    # --- configuration -------------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    @property
    def metric(self) -> str | None:
        return self._metric

    def _group_of(self, trial: Trial) -> Hashable:
        key = self._group_of_trial.get(trial.trial_id)
        if key is None:
            key = self._group_of_trial[trial.trial_id] = self._group_fn(trial.config)
        return key

    def _scheduler_for(self, trial: Trial) -> AsyncHyperBandScheduler:
        key = self._group_of(trial)
        if key not in self._groups:
            self._groups[key] = AsyncHyperBandScheduler(metric=self._metric, mode=self._mode,
                                                        **self._group_kwargs(trial))
        return self._groups[key]

    def _group_kwargs(self, trial: Trial) -> dict[str, Any]:
        """ASHA's settings for the trial's group: the plan's per-group grace period and max_t in steps when its
        budgets depend on the shard (``orchestrator.plan``: the same for every trial of a group), else the
        sweep-wide ones."""
        kwargs = dict(self._asha_kwargs)
        stopping = TrialPlan.of(trial.config).stopping if PLAN_KEY in trial.config else None
        if stopping is not None and stopping.asha_grace is not None and stopping.asha_max_t is not None:
            kwargs.update(grace_period=stopping.asha_grace, max_t=max(stopping.asha_max_t, stopping.asha_grace))
        return kwargs

    def _halving_for(self, trial: Trial) -> HalvingGroup:
        """The trial's group's synchronous rungs (created on its first trial)."""
        key = self._group_of(trial)
        if key not in self._halving:
            if key not in self._group_sizes:
                raise KeyError(f"synchronous per-group halving: group {key!r} is not in the planned group sizes")
            kw = self._group_kwargs(trial)
            rungs = asha_rungs(kw["grace_period"], kw["max_t"], kw["reduction_factor"])
            self._halving[key] = HalvingGroup(rungs, self._group_sizes[key], kw["reduction_factor"])
        return self._halving[key]

    def _unit(self, trial: Trial) -> Configuration:
        unit = self._unit_of_trial.get(trial.trial_id)
        if unit is None:
            unit = self._unit_of_trial[trial.trial_id] = self._unit_fn(trial.config)
        self._seeds.setdefault(unit, set()).add(trial.trial_id)
        return Configuration(unit)

    def _join(self, tune_controller: TuneController, sched: AsyncHyperBandScheduler, trial: Trial) -> Configuration:
        """The trial's configuration, added to its group's ASHA if it is the first of its seeds to arrive."""
        unit = self._unit(trial)
        self._live.setdefault(unit.trial_id, set()).add(trial.trial_id)
        if unit.trial_id not in asha_trials(sched):  # a restored configuration keeps its bracket and rungs
            sched.on_trial_add(tune_controller, unit)
        return unit

    def _leave(self, sched: AsyncHyperBandScheduler, trial: Trial) -> None:
        """The trial is gone; its configuration leaves ASHA with its last seed."""
        unit = self._unit(trial).trial_id
        live = self._live.get(unit, set())
        live.discard(trial.trial_id)
        if not live:
            asha_trials(sched).pop(unit, None)

    def _ranked(self, trial: Trial, result: dict) -> dict | None:
        """``result`` with the metric replaced by the configuration's value: the median over its seeds of each
        one's best so far (None when the result lacks the metric or the resource: ASHA ignores it)."""
        attr = self._asha_kwargs["time_attr"]
        if self._metric not in result or attr not in result:
            return None
        better = min if self._mode != "max" else max
        seen = [float(result[self._metric])]
        report = TrialReport.from_result(result)  # the trial's own best survives its restores
        if self._metric == TrialReport.OBJECTIVE and report is not None and math.isfinite(report.best_objective):
            seen.append(report.best_objective)
        if trial.trial_id in self._best:
            seen.append(self._best[trial.trial_id])
        self._best[trial.trial_id] = better(seen)
        return {**result, self._metric: self._value_of(self._unit_of_trial[trial.trial_id])}

    def _value_of(self, unit: Hashable) -> float:
        """A configuration's value: the median over its seeds of each one's best so far (inf before any)."""
        values = [self._best[t] for t in self._seeds.get(unit, ()) if t in self._best]
        return statistics.median(values) if values else math.inf

    @property
    def synchronous(self) -> bool:
        """Trials pause at rungs; the sweep's concurrency limit is then this scheduler's (``max_running``)."""
        return self._synchronous

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        """Pending trials start in an order shuffled by configuration (a fixed hash; seeds of one configuration
        together), not in the plan's: async ASHA assumes configurations reach a rung in random order, and a grid
        enumerated sorted is its worst case (ascending quality: every arrival beats the cut-off; descending: every
        later one is cut against the first)."""
        trials = tune_controller.get_trials()
        if self._synchronous:  # a paused trial resumes once its rung passed it, never before
            busy = (Trial.RUNNING, Trial.PENDING)  # running, or chosen and starting
            if self._max_running and sum(t.status in busy for t in trials) >= self._max_running:
                return None
            for t in trials:
                if t.status == Trial.PAUSED and t.trial_id in self._resumable:
                    return t
            held = [t for t in trials if t.status == Trial.PAUSED and t.trial_id in self._held]
            if held:
                return min(held, key=self._start_rank)
        pending = [t for t in trials if t.status == Trial.PENDING]
        if pending:
            return min(pending, key=self._start_rank)
        return None if self._synchronous else super().choose_trial_to_run(tune_controller)

    def _start_rank(self, trial: Trial) -> tuple[str, str]:
        rank = self._start_ranks.get(trial.trial_id)
        if rank is None:
            try:
                unit = str(self._unit_fn(trial.config))
            except (KeyError, TypeError, ValueError):  # a config without a plan: its own trial
                unit = trial.trial_id
            rank = self._start_ranks[trial.trial_id] = hashlib.sha256(unit.encode()).hexdigest(), trial.trial_id
        return rank

    # --- trial events: routed to the trial's group -----------------------------------------------------
    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        if trial.trial_id in self._completed:
            # Finished (and recorded) before the driver died, after Tune's last snapshot: Tune would train it
            # again. The controller files the trial by its status right after this call, so this is safe here.
            if not trial.is_finished():
                log.warning("trial %s had finished before the sweep was interrupted; not running it again", trial)
                trial.set_status(Trial.TERMINATED)
            return
        if self._synchronous:
            self._halving_for(trial)
            self._join_sync(trial)
            if self._max_running and trial.status == Trial.PENDING:
                trial.set_status(Trial.PAUSED)  # held: Tune would start it on its own; filed by this status
                self._held.add(trial.trial_id)
        else:
            self._join(tune_controller, self._scheduler_for(trial), trial)
        # not saved here: a trial without results needs no state, and a restore adds it again anyway

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        if self._synchronous:
            return self._sync_result(tune_controller, trial, result)
        sched = self._scheduler_for(trial)
        before = _signature(sched)
        unit = self._join(tune_controller, sched, trial)
        ranked = self._ranked(trial, result)
        if ranked is None:
            return TrialScheduler.CONTINUE
        resource = float(result[self._asha_kwargs["time_attr"]])
        stopped_at = self._stopped_at.get(unit.trial_id)
        if stopped_at is not None and resource >= stopped_at:
            action = TrialScheduler.STOP  # a sibling seed's rung stopped the configuration here
        else:
            action = sched.on_trial_result(tune_controller, unit, ranked)
            if action == TrialScheduler.STOP:
                self._stopped_at[unit.trial_id] = resource
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        if action == TrialScheduler.STOP or _signature(sched) != before:  # most results fall between rungs
            self._save()
        return action

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict) -> None:
        if self._synchronous:
            if result:
                self._sync_result(tune_controller, trial, result, final=True)
            self._sync_end(tune_controller, trial)
            self._completed.add(trial.trial_id)
            self._save()
            return
        sched = self._scheduler_for(trial)
        unit = self._unit(trial)
        ranked = self._ranked(trial, result)
        if ranked is not None and unit.trial_id in asha_trials(sched):
            if self._live.get(unit.trial_id, set()) <= {trial.trial_id}:  # the last seed: ASHA's own completion
                sched.on_trial_complete(tune_controller, unit, ranked)
            else:  # its final value still counts at a rung it reached
                sched.on_trial_result(tune_controller, unit, ranked)
        self._leave(sched, trial)
        self._completed.add(trial.trial_id)
        self._save()  # before the results callback writes the row: a stored row implies a saved completion

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        if self._synchronous:
            self._sync_end(tune_controller, trial)
            self._save()
        else:
            self._leave(self._scheduler_for(trial), trial)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    # --- synchronous halving: pause at a rung until the group's rung is decided ---------------------------
    def _sync_result(self, tune_controller: TuneController, trial: Trial, result: dict, final: bool = False) -> str:
        """Record the configuration at each rung its trials reached; PAUSE while the rung waits for the rest of
        the group, STOP when it cut the configuration, CONTINUE otherwise. ``final``: the trial's last result
        (it counts at a rung it reached, and nothing is paused)."""
        group = self._halving_for(trial)
        unit = self._join_sync(trial)
        self._held.discard(trial.trial_id)  # it has started
        ranked = self._ranked(trial, result)
        if ranked is None:
            return TrialScheduler.CONTINUE
        self._resumable.discard(trial.trial_id)
        step = float(result[self._asha_kwargs["time_attr"]])
        while True:
            rung = group.pending_rung(unit)
            if unit in group.stopped:
                return TrialScheduler.STOP
            if rung is None or step < group.milestones[rung]:
                return TrialScheduler.CONTINUE
            self._at_rung[trial.trial_id] = rung
            if self._seeds_at(unit, rung, self._live.get(unit) or {trial.trial_id}):
                group.record(unit, ranked[self._metric])
                self._enact(tune_controller, group.decide(), trial)
                self._save()
            # undecided, or a sibling seed has not reached the rung yet: wait
            if group.waiting(unit) or group.pending_rung(unit) == rung:
                return TrialScheduler.CONTINUE if final else TrialScheduler.PAUSE

    def _seeds_at(self, unit: Hashable, rung: int, live: set[str]) -> bool:
        """Every live seed of the configuration has reached ``rung``: its median there is final."""
        return all(self._at_rung.get(t, -1) >= rung for t in live)

    def _join_sync(self, trial: Trial) -> Hashable:
        unit = self._unit(trial).trial_id
        if trial.trial_id not in self._completed:
            self._live.setdefault(unit, set()).add(trial.trial_id)
        return unit

    def _sync_end(self, tune_controller: TuneController, trial: Trial) -> None:
        """The trial trains no more; with its last seed, its configuration stops holding up its group's rung."""
        group = self._halving_for(trial)
        unit = self._unit(trial).trial_id
        live = self._live.get(unit, set())
        live.discard(trial.trial_id)
        self._resumable.discard(trial.trial_id)
        if not live:
            group.end(unit)
        elif (rung := group.pending_rung(unit)) is not None and self._seeds_at(unit, rung, live):
            group.record(unit, self._value_of(unit))
        self._enact(tune_controller, group.decide(), trial)

    def _enact(self, tune_controller: TuneController, decided: tuple[set[Hashable], set[Hashable]],
               current: Trial) -> None:
        """Resume the paused trials of configurations a rung passed; stop the paused ones of those it cut (the
        trial whose result is being handled gets its decision through the return value).

        A trial told to pause stays RUNNING while Tune saves its checkpoint; the rung can be decided in that
        window. Such a trial is marked resumable (it resumes once paused) or stopped (Tune stops it once the save
        resolved) like a paused one: skipped, it would stay paused for ever and the sweep would never end."""
        passed, cut = decided
        if not passed and not cut:
            return
        trials = {t.trial_id: t for t in tune_controller.get_trials()}
        for unit in passed | cut:
            for tid in sorted(self._live.get(unit, ())):
                t = trials.get(tid)
                if t is None or tid == current.trial_id or t.is_finished():
                    continue
                if unit in cut:
                    self._num_stopped += 1
                    tune_controller.stop_trial(t)
                else:
                    self._resumable.add(tid)
        self._num_stopped += sum(current.trial_id in self._live.get(u, ()) for u in cut)

    # --- introspection ---------------------------------------------------------------------------------
    def group_count(self) -> int:
        return len(self._halving if self._synchronous else self._groups)

    def debug_string(self) -> str:
        kind = "synchronous halving" if self._synchronous else "ASHA"
        return f"Grouped {kind}: {self.group_count()} groups, {self._num_stopped} trials stopped"

    # --- persistence (Tune does not restore scheduler state by itself) ---------------------------------
    def _state(self) -> dict[str, Any]:
        return {"groups": {k: asha_state(s) for k, s in self._groups.items()},
                "group_of_trial": self._group_of_trial, "completed": self._completed,
                "num_stopped": self._num_stopped, "unit_of_trial": self._unit_of_trial, "seeds": self._seeds,
                "live": self._live, "best": self._best, "stopped_at": self._stopped_at,
                "halving": self._halving, "at_rung": self._at_rung, "resumable": self._resumable}

    def _location(self) -> tuple[pafs.FileSystem, str]:
        if self._fs is None:
            assert self._state_path is not None
            fs, path = resolve(self._state_path)
            fs.create_dir(path.rpartition("/")[0], recursive=True)  # once per process, not per write
            self._fs = fs, path
        return self._fs

    def _save(self) -> None:
        if self._state_path is None:
            return
        try:
            write_atomic(*self._location(), pickle.dumps(self._state()))
        except OSError:  # the sweep goes on; the next save carries the whole state again
            if not self._save_failed:
                log.warning("could not save per-group ASHA state to %s; a resumed sweep may retrain trials",
                            redact(self._state_path), exc_info=True)
            self._save_failed = True
        else:
            self._save_failed = False

    def _apply(self, state: dict[str, Any]) -> None:
        self._groups = {}
        for key, attrs in state["groups"].items():
            sched = AsyncHyperBandScheduler(metric=self._metric or "_", mode=self._mode or "min",
                                            **self._asha_kwargs)
            asha_restore(sched, attrs)
            self._groups[key] = sched
        self._group_of_trial = state["group_of_trial"]
        self._completed = set(state.get("completed", ()))
        self._num_stopped = state["num_stopped"]
        # states saved before configurations were ASHA's unit lack these: they start empty
        self._unit_of_trial = state.get("unit_of_trial", {})
        self._seeds, self._live = state.get("seeds", {}), state.get("live", {})
        self._best, self._stopped_at = state.get("best", {}), state.get("stopped_at", {})
        self._halving, self._at_rung = state.get("halving", {}), state.get("at_rung", {})
        self._resumable = set(state.get("resumable", ()))

    def _load(self) -> None:
        if self._state_path is None:
            return
        try:
            state = load_state(self._state_path)
        except (OSError, pickle.UnpicklingError, EOFError, KeyError):
            log.warning("could not read per-group ASHA state from %s; ASHA starts afresh",
                        redact(self._state_path), exc_info=True)
            return
        if state is None:
            return
        self._apply(state)
        entries = sum(_signature(s)[1] for s in self._groups.values())
        log.warning("restored per-group ASHA state from %s: %d groups, %d rung entries, %d finished trials",
                    redact(self._state_path), len(self._groups), entries, len(self._completed))

    def save(self, checkpoint_path: str) -> None:
        write_atomic(*resolve(checkpoint_path), pickle.dumps(self._state()))

    def restore(self, checkpoint_path: str) -> None:
        state = load_state(checkpoint_path)
        if state is not None:
            self._apply(state)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None}  # pyarrow filesystems hold connections and credentials

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Tuner.restore unpickles the scheduler as it was when the sweep started; bring back the rungs.
        self.__dict__.update({"_completed": set(), "_fs": None, "_save_failed": False, "_unit_fn": configuration_of,
                              "_unit_of_trial": {}, "_seeds": {}, "_live": {}, "_best": {}, "_stopped_at": {},
                              "_start_ranks": {}, "_synchronous": False, "_group_sizes": {}, "_halving": {},
                              "_at_rung": {}, "_resumable": set(), "_max_running": None, "_held": set(), **state})
        self._load()
