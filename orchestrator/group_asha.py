"""ASHA that only compares trials inside their group.

Ray's ``AsyncHyperBandScheduler`` ranks every trial against every other at the same resource level. In a
learning-curve sweep that is wrong: a trial on a 1/256 shard always loses to one on the full set, and a small
model loses to a large one early in training, yet both are exactly the points the curve needs. This
scheduler keeps one unmodified ``AsyncHyperBandScheduler`` per group (default key: domain, family, shard
fraction, width) and routes each trial's events to its group's instance, so within a group the decisions
are Ray's own.

Tune does not save scheduler state with the experiment (``Tuner.restore`` starts schedulers fresh), so the
rungs are persisted to ``state_path`` whenever they change and reloaded when the scheduler is unpickled by
``Tuner.restore``.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

log = logging.getLogger(__name__)

GroupFn = Callable[[dict[str, Any]], Hashable]


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
        self._state_path = state_path
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
        sched = self._scheduler_for(trial)
        if trial.trial_id not in sched._trial_info:  # a restored trial keeps its bracket and rungs
            sched.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        sched = self._scheduler_for(trial)
        if trial.trial_id not in sched._trial_info:
            sched.on_trial_add(tune_controller, trial)
        action = sched.on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        self._save()
        return action

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict) -> None:
        sched = self._scheduler_for(trial)
        if trial.trial_id in sched._trial_info:
            sched.on_trial_complete(tune_controller, trial, result)
        self._save()

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        sched = self._scheduler_for(trial)
        sched._trial_info.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        self._scheduler_for(trial)._trial_info.pop(trial.trial_id, None)

    # --- introspection ---------------------------------------------------------------------------------
    def group_count(self) -> int:
        return len(self._groups)

    def debug_string(self) -> str:
        return f"GroupedASHA: {len(self._groups)} groups, {self._num_stopped} trials stopped"

    # --- persistence (Tune does not restore scheduler state by itself) ---------------------------------
    def _state(self) -> dict[str, Any]:
        return {"groups": {k: s.__dict__ for k, s in self._groups.items()},
                "group_of_trial": self._group_of_trial, "num_stopped": self._num_stopped}

    def _save(self) -> None:
        if self._state_path is None:
            return
        path = Path(self._state_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            pickle.dump(self._state(), f)
        tmp.replace(path)

    def _load(self) -> None:
        if self._state_path is None or not Path(self._state_path).is_file():
            return
        with open(self._state_path, "rb") as f:
            state = pickle.load(f)
        self._groups = {}
        for key, attrs in state["groups"].items():
            sched = AsyncHyperBandScheduler(metric=self._metric or "_", mode=self._mode or "min",
                                            **self._asha_kwargs)
            sched.__dict__.update(attrs)
            self._groups[key] = sched
        self._group_of_trial = state["group_of_trial"]
        self._num_stopped = state["num_stopped"]
        log.info("restored per-group ASHA state: %d groups from %s", len(self._groups), self._state_path)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self._state(), f)

    def restore(self, checkpoint_path: str) -> None:
        self._state_path, old = checkpoint_path, self._state_path
        try:
            self._load()
        finally:
            self._state_path = old

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Tuner.restore unpickles the scheduler as it was when the sweep started; bring back the rungs.
        self.__dict__.update(state)
        self._load()
