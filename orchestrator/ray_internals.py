"""Every use of Ray's private internals, in one place, each with a contract check a Ray upgrade runs into.

Ray has no public API for three things the sweep needs: the rungs of an ``AsyncHyperBandScheduler`` (per-group ASHA
persists them, because Tune restores schedulers empty), the names of the files in Tune's experiment folder (a
driver killed mid-upload leaves them torn, and the resume sets torn ones aside), and Ray Train's checkpoint-manager
snapshot (a data-parallel replica waits until its checkpoint is registered there before it may die). Each accessor
checks the shape it relies on and raises ``RayInternalsChanged``, naming the Ray version and the internal, instead of
misreading a changed structure; ``check_all`` runs every check (tests/orchestrator/test_ray_internals.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import ray
from ray.tune.schedulers import AsyncHyperBandScheduler

RAY_VERSION = ray.__version__
TESTED_WITH = "2.60"  # the Ray these internals were read from (pyproject pins ray 2.60.*)


class RayInternalsChanged(RuntimeError):
    """A Ray internal the sweep relies on is not what it was: this Ray is not the one the code was written for."""

    def __init__(self, internal: str, detail: str) -> None:
        super().__init__(f"Ray {RAY_VERSION} changed {internal} (the sweep was written against Ray {TESTED_WITH}): "
                         f"{detail}. Pin ray=={TESTED_WITH}.* or update orchestrator/ray_internals.py")


# --- AsyncHyperBandScheduler (ray.tune.schedulers.async_hyperband) --------------------------------------------------
ASHA_TRIALS = "AsyncHyperBandScheduler._trial_info"
ASHA_RUNGS = "AsyncHyperBandScheduler._brackets[i]._rungs"


def asha_trials(sched: AsyncHyperBandScheduler) -> dict[str, Any]:
    """The scheduler's trial id -> bracket map (its membership), which the grouped scheduler edits in place."""
    trials = getattr(sched, "_trial_info", None)
    if not isinstance(trials, dict):
        raise RayInternalsChanged(ASHA_TRIALS, f"expected a dict of trial id -> bracket, found {type(trials).__name__}")
    return trials


def asha_rung_entries(sched: AsyncHyperBandScheduler) -> int:
    """How many results the scheduler's rungs hold (ASHA only ever adds entries: a change means state to save)."""
    brackets = getattr(sched, "_brackets", None)
    if not isinstance(brackets, list):
        raise RayInternalsChanged(ASHA_RUNGS, f"expected a list of brackets, found {type(brackets).__name__}")
    total = 0
    for bracket in brackets:
        rungs = getattr(bracket, "_rungs", None)
        if not isinstance(rungs, list) or not all(isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], dict)
                                                  for r in rungs):
            raise RayInternalsChanged(ASHA_RUNGS, f"expected a list of (milestone, {{trial id: value}}), "
                                                  f"found {rungs!r:.200}")
        total += sum(len(recorded) for _, recorded in rungs)
    return total


def asha_state(sched: AsyncHyperBandScheduler) -> dict[str, Any]:
    """Everything the scheduler knows (its attributes, brackets and rungs included), picklable."""
    asha_trials(sched)
    asha_rung_entries(sched)
    return sched.__dict__


def asha_restore(sched: AsyncHyperBandScheduler, state: dict[str, Any]) -> None:
    """Put a saved ``asha_state`` back into a freshly built scheduler."""
    missing = set(sched.__dict__) - set(state)
    if missing:
        raise RayInternalsChanged("AsyncHyperBandScheduler attributes", f"the saved ASHA state lacks {sorted(missing)} "
                                  f"(saved by another Ray version?)")
    sched.__dict__.update(state)


def check_asha() -> None:
    """A scheduler that has ranked two trials holds them in ``_trial_info`` and their results in its rungs."""
    from ray.tune.experiment import Trial

    sched = AsyncHyperBandScheduler(time_attr="steps", metric="objective", mode="min", max_t=9, grace_period=1,
                                    reduction_factor=3)
    for trial_id, value in (("a", 1.0), ("b", 2.0)):
        trial = Trial("__fake", config={}, trial_id=trial_id, stub=True)
        sched.on_trial_add(None, trial)
        sched.on_trial_result(None, trial, {"steps": 1, "objective": value})
    if set(asha_trials(sched)) != {"a", "b"}:
        raise RayInternalsChanged(ASHA_TRIALS, f"holds {sorted(asha_trials(sched))} after adding trials a and b")
    if asha_rung_entries(sched) != 2:
        raise RayInternalsChanged(ASHA_RUNGS, f"holds {asha_rung_entries(sched)} entries after 2 results at rung 1")
    fresh = AsyncHyperBandScheduler(time_attr="steps", metric="objective", mode="min", max_t=9, grace_period=1,
                                    reduction_factor=3)
    asha_restore(fresh, asha_state(sched))
    if asha_rung_entries(fresh) != 2:
        raise RayInternalsChanged(ASHA_RUNGS, "a scheduler restored from another's attributes lost its rungs")


# --- Tune's experiment folder (ray.tune.execution.tune_controller, ray.tune.impl.tuner_internal) ------------------
EXPERIMENT_STATE_PREFIX = "experiment_state-"  # TuneController.CKPT_FILE_TMPL
TUNER_STATE = "tuner.pkl"  # tuner_internal._TUNER_PKL: written when the Tuner is created
SESSION_FORMAT = "%Y-%m-%d_%H-%M-%S"  # TuneController's session string, the suffix of its state files' names
SESSION_STAMP = re.compile(r"-\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")


def state_file_kind(name: str) -> str:
    """The kind of a Tune state file (``experiment_state-2026-...json`` -> ``experiment_state.json``): Tune reads
    the newest file of each kind, by name."""
    return SESSION_STAMP.sub("", name)


def check_tune_state_files() -> None:
    """The experiment state's name template, the Tuner's state file and the session stamp are what we parse."""
    import inspect

    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.impl import tuner_internal

    template = getattr(TuneController, "CKPT_FILE_TMPL", None)
    if template != f"{EXPERIMENT_STATE_PREFIX}{{}}.json":
        raise RayInternalsChanged("TuneController.CKPT_FILE_TMPL", f"is {template!r}, not "
                                  f"'{EXPERIMENT_STATE_PREFIX}{{}}.json'")
    tuner_pkl = getattr(tuner_internal, "_TUNER_PKL", None)
    if tuner_pkl != TUNER_STATE:
        raise RayInternalsChanged("tuner_internal._TUNER_PKL", f"is {tuner_pkl!r}, not {TUNER_STATE!r}")
    if f'"{SESSION_FORMAT}"' not in inspect.getsource(TuneController.__init__):
        raise RayInternalsChanged("TuneController._session_str", f"is no longer formatted as {SESSION_FORMAT!r}, "
                                  f"which names Tune's state files")


# --- Ray Train's checkpoint-manager snapshot (ray.train.v2._internal.execution.checkpoint) -------------------------
TRAIN_SNAPSHOT = "Ray Train's checkpoint_manager_snapshot.json"


def registered_checkpoints(filesystem: Any, snapshot_path: str) -> set[str]:
    """Names of the checkpoints Ray Train's checkpoint manager has registered, from its snapshot in storage
    (``ray.train.get_context().get_storage().checkpoint_manager_snapshot_path``); empty while none is written."""
    try:
        with filesystem.open_input_stream(snapshot_path) as stream:
            snapshot = json.loads(stream.read())
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return set()
    results = snapshot.get("checkpoint_results") if isinstance(snapshot, dict) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) and "checkpoint_dir_name" in r for r in results):
        raise RayInternalsChanged(TRAIN_SNAPSHOT, f"expected checkpoint_results[].checkpoint_dir_name, found "
                                  f"{snapshot!r:.200}")
    return {r["checkpoint_dir_name"] for r in results}


def check_train_snapshot() -> None:
    """The snapshot's model has ``checkpoint_results[].checkpoint_dir_name`` and the storage context names its path."""
    from ray.train.v2._internal.execution.checkpoint import checkpoint_manager
    from ray.train.v2._internal.execution.storage import StorageContext

    state = getattr(checkpoint_manager, "_CheckpointManagerState", None)
    result = getattr(checkpoint_manager, "_TrainingResultState", None)
    fields: Callable[[Any], set[str]] = lambda model: set(getattr(model, "model_fields", {}))  # noqa: E731
    if state is None or "checkpoint_results" not in fields(state):
        raise RayInternalsChanged(TRAIN_SNAPSHOT, "_CheckpointManagerState.checkpoint_results is gone")
    if result is None or "checkpoint_dir_name" not in fields(result):
        raise RayInternalsChanged(TRAIN_SNAPSHOT, "_TrainingResultState.checkpoint_dir_name is gone")
    if not isinstance(getattr(StorageContext, "checkpoint_manager_snapshot_path", None), property):
        raise RayInternalsChanged(TRAIN_SNAPSHOT, "StorageContext.checkpoint_manager_snapshot_path is gone")


def check_all() -> None:
    """Every contract above; raises ``RayInternalsChanged`` at the first that no longer holds."""
    check_asha()
    check_tune_state_files()
    check_train_snapshot()
