"""A driver killed mid-sweep with SIGKILL, then `scaling-sweep resume STORAGE`: real processes, real Ray, real
training. Finished trials are not run again, ASHA's per-group rungs come back, every trial ends as one row."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
import yaml

from fitting.store import ResultsStore
from orchestrator.group_asha import load_state
from orchestrator.plan import plan_trials, resolve_domains
from orchestrator.runner import TUNE_DIR, asha_state_uri, intact, restorable, snapshot_complete, state_files
from orchestrator.spec import parse_spec
from tests.orchestrator.test_sweep import spec_data
from tests.ray_cluster import cluster_env, processes

pytestmark = pytest.mark.slow

GOOD_LR, MID_LR, BAD_LR = 0.01, 0.003, 0.0001
GRACE = 20  # ASHA's first rung, in steps


def session_pids(sid: int) -> list[int]:
    """Live processes of a session. Ray's workers run in process groups of their own, but stay in the session."""
    return [p.pid for p in processes() if p.session == sid and p.state != "Z"]


def kill_session(sid: int, timeout: float = 30) -> None:
    """SIGKILL the driver, its Ray daemons and Ray's workers at once, as a lost machine would end them."""
    deadline = time.monotonic() + timeout
    while pids := session_pids(sid):
        assert time.monotonic() < deadline, f"processes of session {sid} survive SIGKILL: {pids}"
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


@contextmanager
def cli(*args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``scaling-sweep ARGS`` in a session of its own (it starts its own local Ray); killed whole on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(["scaling-sweep", *args], env=cluster_env(), start_new_session=True, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        kill_session(proc.pid)
        proc.wait()


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text()[-chars:] if log.exists() else "(no log)"


def rows_by_key(storage: str) -> dict[str, dict[str, Any]]:
    return {r["trial_key"]: r for r in ResultsStore(storage).read_results().to_pylist()}


def rung_entries(state: dict[str, Any] | None) -> dict[tuple[Any, ...], float]:
    """(group, milestone, trial id) -> recorded value, over every group of a saved scheduler state."""
    return {(key, milestone, tid): value for key, attrs in (state or {"groups": {}})["groups"].items()
            for bracket in attrs["_brackets"] for milestone, recorded in bracket._rungs
            for tid, value in recorded.items()}


def group_of(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["fraction"], row["width"]


def lr_of(row: dict[str, Any]) -> float:
    return json.loads(row["hparams"])["lr"]


def tune_state_whole(experiment: Path) -> bool:
    """Whether Tune's snapshot in storage is there and whole right now. Tune uploads it with a plain copy, and a
    kill during that copy tears it; the runner then starts unfinished trials afresh (tested on its own below), which
    is not the restore this test is about, so the kill waits for a moment between uploads."""
    files = [Path(info.path) for info in state_files(str(experiment), pafs.LocalFileSystem())]
    return snapshot_complete({p.name for p in files}) and all(intact(p.read_bytes()) for p in files)


def kill_and_resume(corpus: Path, tmp_path: Path, storage: str, name: str, shards: list[float]) -> None:
    """Start the sweep, SIGKILL it once ASHA has stopped a trial, resume it from storage alone, check the rows."""
    # 2 widths x shards x 3 learning rates. Per group (shard, width) the plan lists the good rate first, so the
    # two worse ones mostly reach the first rung after it and are stopped there, before the kill or after it.
    data = spec_data(corpus, tmp_path, name, shards=shards,
                     hparams={"batch_size": 8, "bptt": 16, "lr": {"grid": [GOOD_LR, MID_LR, BAD_LR]}},
                     early_stopping={"grace_period": GRACE, "reduction_factor": 2, "max_steps": 60,
                                     "eval_every": 10, "patience": 3})
    data["storage"] = storage
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(data))
    spec = parse_spec(data)
    planned = {t.trial_key for t in plan_trials(spec, resolve_domains(spec))}
    assert len(planned) == 2 * len(shards) * 3
    state_uri = asha_state_uri(storage, name)

    with cli("run", str(spec_file), "--quiet", "--num-cpus", "2", log=tmp_path / "run.log") as driver:
        deadline = time.monotonic() + 240
        while True:  # until ASHA has stopped a trial (so rungs and a finished trial are saved), then kill at once
            assert driver.poll() is None, "the sweep ended before it could be killed: " + tail(tmp_path / "run.log")
            assert time.monotonic() < deadline, "no trial was stopped by ASHA in time: " + tail(tmp_path / "run.log")
            rows = rows_by_key(storage)
            if (any(r["stop_reason"] == "asha" for r in rows.values()) and rung_entries(load_state(state_uri))
                    and tune_state_whole(Path(storage) / TUNE_DIR / name)):
                break
            time.sleep(0.2)
        kill_session(driver.pid)
        driver.wait()
    # 3 trials a group on 2 CPUs under async ASHA: the driver said so before the first trial
    assert "early_stopping.synchronous: true" in (tmp_path / "run.log").read_text()

    before = rows_by_key(storage)  # read after the kill: nothing can change them any more
    mtimes = {i.base_name: i.mtime_ns for i in ResultsStore(storage).list_files()}
    state_before = load_state(state_uri)
    assert state_before is not None
    assert 1 <= len(before) < len(planned)
    assert {r["trial_id"] for r in before.values()} <= state_before["completed"]  # a row implies a saved end
    stopped_before = [k for k, r in before.items() if r["status"] == "stopped"]
    assert stopped_before

    with cli("resume", storage, "--quiet", "--num-cpus", "2", "--bootstrap", "20",
             log=tmp_path / "resume.log") as resumed:
        rc = resumed.wait(timeout=300)
    log = (tmp_path / "resume.log").read_text()
    assert rc == 0, tail(tmp_path / "resume.log")
    assert "resuming sweep from" in log and "restored per-group ASHA state" in log

    after = rows_by_key(storage)
    assert set(after) == planned  # keyed by trial: a set equal to the plan is exactly one row each
    assert len(ResultsStore(storage).list_files()) == len(planned)
    assert "errored" not in {r["status"] for r in after.values()}
    # every history is whole: a trial resumed from its checkpoint brings back the iterations the killed driver saw
    for key, r in after.items():
        iterations = [h["iteration"] for h in ResultsStore(storage).read_history(key).to_pylist()]
        assert iterations == list(range(1, r["iterations"] + 1)), (key, r["restores"], iterations)
    # nothing that had finished before the kill ran again: same rows, same files (ASHA's stopped ones included)
    assert {k: after[k] for k in before} == before
    assert {i.base_name: i.mtime_ns for i in ResultsStore(storage).list_files() if i.base_name in mtimes} == mtimes

    # the per-group rungs came back: every entry recorded before the kill is still there, with its value. A
    # scheduler that started afresh would have lost those of trials that had finished (they never report again).
    state_after = load_state(state_uri)
    entries_before = rung_entries(state_before)
    assert entries_before.items() <= rung_entries(state_after).items()
    assert state_before["completed"] <= state_after["completed"]
    # and they were used: the worst rate, reaching its first rung only after the resume in a group whose good
    # trial had finished before the kill, met that trial's restored entry there and was stopped at once
    finished_groups = {group_of(r) for r in before.values() if lr_of(r) == GOOD_LR}
    judged_after = [r for k, r in after.items() if k not in before and lr_of(r) == BAD_LR
                    and group_of(r) in finished_groups
                    and not any(tid == r["trial_id"] for _, _, tid in entries_before)]
    for r in judged_after:
        assert (r["status"], r["steps"]) == ("stopped", GRACE), r
    print(f"\n{name}: {len(before)} rows before the kill ({len(stopped_before)} stopped by ASHA), "
          f"{len(entries_before)} rung entries restored, {len(judged_after)} trials judged by restored rungs, "
          f"{sum(r['restores'] > 0 for r in after.values())} resumed from a checkpoint, "
          f"{log.count('not running it again')} finished after Tune's last snapshot")


def tear(path: Path) -> None:
    """Cut a file in half, as a driver killed while Tune uploads its snapshot (a plain copy) leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def check_torn_state_is_set_aside(experiment: Path, tmp_path: Path) -> None:
    """``restorable`` on copies of a real experiment folder (two driver sessions: before and after the kill)."""
    fs = pafs.LocalFileSystem()
    copy = tmp_path / "copy"
    shutil.copytree(experiment, copy)
    torn_by_kill = {p.name for p in copy.glob("*.torn")}  # rare: the kill itself cut an upload short
    snapshots = sorted(copy.glob("experiment_state-*.json"))
    searchers = sorted(copy.glob("basic-variant-state-*.json"))  # a pickle, despite its name
    assert len(snapshots) + len(torn_by_kill) >= 2 and searchers
    # Tune's own scratch file, half written when a kill or an upload caught it: Tune never reads it on restore
    scratch = copy / f".0d5e-tmp-{searchers[-1].name}"
    scratch.write_bytes(searchers[-1].read_bytes()[:10])
    assert restorable(str(copy), fs)
    assert {p.name for p in copy.glob("*.torn")} == torn_by_kill  # whole files stay as they are
    assert scratch.is_file()

    tear(searchers[-1])
    tear(snapshots[-1])
    # Tune falls back to the newest whole snapshot, the one of the first session
    assert restorable(str(copy), fs) == (len(snapshots) > 1)
    assert {p.name for p in copy.glob("*.torn")} == torn_by_kill | {f"{searchers[-1].name}.torn",
                                                                    f"{snapshots[-1].name}.torn"}
    if len(snapshots) > 1:
        tear(snapshots[0])
    assert not restorable(str(copy), fs)  # no whole snapshot left: the sweep starts a fresh Tune experiment


def test_killed_driver_resumes_from_local_storage(corpus_dir: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    kill_and_resume(corpus_dir, tmp_path, str(storage), "killed", shards=[0.25, 0.5, 1.0])
    assert (storage / TUNE_DIR / "killed.grouped_asha.pkl").is_file()
    assert not list((storage / TUNE_DIR).glob(".*.tmp"))
    check_torn_state_is_set_aside(storage / TUNE_DIR / "killed", tmp_path)
