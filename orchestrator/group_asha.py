"""ASHA that only compares trials inside their group.

Ray's ``AsyncHyperBandScheduler`` ranks every trial against every other at the same resource level. In a
learning-curve sweep that is wrong: a trial on a 1/256 shard always loses to one on the full set, and a small
model loses to a large one early in training, yet both are exactly the points the curve needs. This
scheduler keeps one unmodified ``AsyncHyperBandScheduler`` per group (default key: domain, family, shard
fraction, width) and routes each trial's events to its group's instance, so within a group the decisions
are Ray's own.

Tune does not save scheduler state with the experiment (``Tuner.restore`` starts schedulers fresh), so the
rungs, the trial-to-group map and the set of finished trials are persisted to ``state_path`` (a local path or any
pyarrow filesystem URI, e.g. ``s3://bucket/...?endpoint_override=...``) and reloaded when ``Tuner.restore``
unpickles the scheduler. A trial that had finished before the driver died, but that Tune's last (periodic)
experiment snapshot still lists as running, is marked terminated on restore instead of being trained again.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from orchestrator.ray_internals import asha_restore, asha_rung_entries, asha_state, asha_trials
from sweepstore import redact, resolve, write_atomic

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

log = logging.getLogger(__name__)

GroupFn = Callable[[dict[str, Any]], Hashable]


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
    """One ``AsyncHyperBandScheduler`` per group of trials; groups never compete."""

    def __init__(
        self,
        group_fn: GroupFn,
        *,
        time_attr: str = "steps",
        metric: str | None = None,
        mode: str | None = None,
        max_t: int = 100,
        grace_period: int = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
        state_path: str | None = None,
    ) -> None:
        super().__init__()
        self._group_fn = group_fn
        self._asha_kwargs = dict(time_attr=time_attr, max_t=max_t, grace_period=grace_period,
                                 reduction_factor=reduction_factor, brackets=brackets)
        self._metric, self._mode = metric, mode
        self._groups: dict[Hashable, AsyncHyperBandScheduler] = {}
        self._group_of_trial: dict[str, Hashable] = {}
        self._completed: set[str] = set()  # trial ids that finished: never resumed after a restore
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

    def _scheduler_for(self, trial: Trial) -> AsyncHyperBandScheduler:
        key = self._group_of_trial.get(trial.trial_id)
        if key is None:
            key = self._group_fn(trial.config)
            self._group_of_trial[trial.trial_id] = key
        if key not in self._groups:
            self._groups[key] = AsyncHyperBandScheduler(metric=self._metric, mode=self._mode,
                                                        **self._asha_kwargs)
        return self._groups[key]

    # --- trial events: routed to the trial's group -----------------------------------------------------
    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        if trial.trial_id in self._completed:
            # Finished (and recorded) before the driver died, after Tune's last snapshot: Tune would train it
            # again. The controller files the trial by its status right after this call, so this is safe here.
            if not trial.is_finished():
                log.warning("trial %s had finished before the sweep was interrupted; not running it again", trial)
                trial.set_status(Trial.TERMINATED)
            return
        sched = self._scheduler_for(trial)
        if trial.trial_id not in asha_trials(sched):  # a restored trial keeps its bracket and rungs
            sched.on_trial_add(tune_controller, trial)
        # not saved here: a trial without results needs no state, and a restore adds it again anyway

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        sched = self._scheduler_for(trial)
        before = _signature(sched)
        if trial.trial_id not in asha_trials(sched):
            sched.on_trial_add(tune_controller, trial)
        action = sched.on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        if _signature(sched) != before:  # most results fall between rungs: no write for them
            self._save()
        return action

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict) -> None:
        sched = self._scheduler_for(trial)
        if trial.trial_id in asha_trials(sched):
            sched.on_trial_complete(tune_controller, trial, result)
            asha_trials(sched).pop(trial.trial_id, None)  # ASHA keeps it when the result lacks the metric
        self._completed.add(trial.trial_id)
        self._save()  # before the results callback writes the row: a stored row implies a saved completion

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        asha_trials(self._scheduler_for(trial)).pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        asha_trials(self._scheduler_for(trial)).pop(trial.trial_id, None)

    # --- introspection ---------------------------------------------------------------------------------
    def group_count(self) -> int:
        return len(self._groups)

    def debug_string(self) -> str:
        return f"GroupedASHA: {len(self._groups)} groups, {self._num_stopped} trials stopped"

    # --- persistence (Tune does not restore scheduler state by itself) ---------------------------------
    def _state(self) -> dict[str, Any]:
        return {"groups": {k: asha_state(s) for k, s in self._groups.items()},
                "group_of_trial": self._group_of_trial, "completed": self._completed,
                "num_stopped": self._num_stopped}

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
        self.__dict__.update({"_completed": set(), "_fs": None, "_save_failed": False, **state})
        self._load()
