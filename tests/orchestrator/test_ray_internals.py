"""Contracts on the Ray internals the sweep uses (orchestrator.ray_internals): a Ray upgrade that changes one fails
here, naming the Ray version and the internal, and the accessors refuse a changed shape instead of misreading it."""

from __future__ import annotations

import json
import re

import pyarrow.fs as pafs
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler

from orchestrator import ray_internals
from orchestrator.ray_internals import (
    RAY_VERSION,
    RayInternalsChanged,
    asha_rung_entries,
    asha_trials,
    registered_checkpoints,
    state_file_kind,
)


@pytest.mark.parametrize("check", ["check_asha", "check_tune_state_files", "check_train_snapshot"])
def test_this_ray_keeps_every_internal_the_sweep_uses(check: str) -> None:
    getattr(ray_internals, check)()


def test_a_changed_scheduler_fails_loudly_naming_ray_and_the_internal() -> None:
    sched = AsyncHyperBandScheduler(time_attr="steps", metric="objective", mode="min", max_t=9)
    sched.on_trial_add(None, Trial("__fake", config={}, trial_id="a", stub=True))
    assert list(asha_trials(sched)) == ["a"] and asha_rung_entries(sched) == 0
    sched._trial_info = [("a", None)]  # as if a Ray upgrade kept trials in a list
    named = re.escape(f"Ray {RAY_VERSION} changed AsyncHyperBandScheduler._trial_info")
    with pytest.raises(RayInternalsChanged, match=named):
        asha_trials(sched)
    sched._brackets[0]._rungs = {"milestone": 1}
    with pytest.raises(RayInternalsChanged, match=r"_brackets\[i\]._rungs"):
        asha_rung_entries(sched)


def test_state_file_kinds_drop_the_session_stamp() -> None:
    assert state_file_kind("experiment_state-2026-12-06_21-05-29.json") == "experiment_state.json"
    assert state_file_kind("tuner.pkl") == "tuner.pkl"


def test_train_snapshot_is_read_or_refused(tmp_path) -> None:
    fs, path = pafs.LocalFileSystem(), f"{tmp_path}/checkpoint_manager_snapshot.json"
    assert registered_checkpoints(fs, path) == set()  # not written yet
    (tmp_path / "checkpoint_manager_snapshot.json").write_text(json.dumps(
        {"checkpoint_results": [{"checkpoint_dir_name": "checkpoint_1", "metrics": {}}]}))
    assert registered_checkpoints(fs, path) == {"checkpoint_1"}
    (tmp_path / "checkpoint_manager_snapshot.json").write_text(json.dumps({"results": [{"dir": "checkpoint_1"}]}))
    with pytest.raises(RayInternalsChanged, match=r"checkpoint_manager_snapshot\.json"):
        registered_checkpoints(fs, path)
