"""A driver killed with SIGKILL in the middle of an adaptive sweep, then `scaling-sweep resume STORAGE`: real
processes, real Ray, the synthetic-law domain (trials that last, train nothing). The sweep continues from its
saved decisions and ends with exactly one row per chosen trial, none run twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from benchmarks.adaptive import register, spec_data
from fitting.store import ResultsStore
from orchestrator.adaptive.searcher import load_state
from tests.orchestrator.test_resume import cli, kill_session, rows_by_key, tail

pytestmark = pytest.mark.slow


def test_killed_adaptive_driver_resumes_without_repeating_a_trial(tmp_path: Path) -> None:
    register()
    storage = str(tmp_path / "storage")
    data = spec_data(storage, 0, shards=4, target=0.5, source={"seconds_per_eval": 0.25}, name="adaptive-kill")
    data["strategy"]["min_points"] = 4
    law = data["domains"]["synthetic-law"]
    law.update(widths=[32, 64, 128], hparams={"lr": 0.01}, seeds=1)  # small pool: widths bracketed, one lr
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(data))

    with cli("run", str(spec_file), "--quiet", "--num-cpus", "2", log=tmp_path / "run.log") as driver:
        deadline = time.monotonic() + 180
        while True:  # kill once a few trials are stored and more have been chosen than stored (some in flight)
            assert driver.poll() is None, "the sweep ended before it could be killed: " + tail(tmp_path / "run.log")
            assert time.monotonic() < deadline, "no progress in time: " + tail(tmp_path / "run.log")
            state = load_state(storage, "adaptive-kill") or {}
            rows = rows_by_key(storage)
            if len(rows) >= 3 and len(state.get("proposed", [])) > len(rows):
                break
            time.sleep(0.1)
        kill_session(driver.pid)
        driver.wait()

    before = rows_by_key(storage)
    mtimes = {i.base_name: i.mtime_ns for i in ResultsStore(storage).list_files()}
    chosen_before = load_state(storage, "adaptive-kill")["proposed"]
    assert not load_state(storage, "adaptive-kill")["finished"]

    with cli("resume", storage, "--quiet", "--num-cpus", "2", "--bootstrap", "20",
             log=tmp_path / "resume.log") as resumed:
        rc = resumed.wait(timeout=300)
    assert rc == 0, tail(tmp_path / "resume.log")
    state = load_state(storage, "adaptive-kill")
    after = rows_by_key(storage)
    assert state["finished"].startswith("targets met"), state["finished"]
    assert set(after) == set(state["proposed"])  # every chosen trial has exactly one row (keyed by trial) ...
    assert len(state["proposed"]) == len(set(state["proposed"]))
    assert len(ResultsStore(storage).list_files()) == len(after)  # ... and one file
    assert set(chosen_before) <= set(after)  # what was running at the kill finished after the resume
    assert {k: after[k] for k in before} == before  # nothing finished before the kill ran again
    assert {i.base_name: i.mtime_ns for i in ResultsStore(storage).list_files() if i.base_name in mtimes} == mtimes
    assert {r["status"] for r in after.values()} == {"completed"}
    print(f"\n{len(before)} rows before the kill, {len(chosen_before)} trials chosen; {len(after)} rows after the "
          f"resume; stop: {state['finished']}")
