"""`ray job submit` against a real local head started with `ray start --head`: progress in the job logs, results
in the store, and `ray job stop` stopping the trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from domains.lm.offline_corpus import TRAIN_GLOB, VALID_GLOB
from fitting.store import ResultsStore
from tests.ray_cluster import cluster_env
from tests.s3_server import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A one-node Ray cluster with the dashboard (the job server lives there); yields its job address."""
    env = cluster_env()
    dashboard = free_port()
    temp = tmp_path_factory.mktemp("ray-head")
    # every port chosen free: Ray's defaults collide with any other Ray on the machine
    ports = [f"--{name}={free_port()}" for name in ("port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                     "metrics-export-port", "runtime-env-agent-port")]
    # --block in a process group of its own: teardown kills exactly this cluster (`ray stop` would kill every
    # Ray on the machine, the test session's own included)
    proc = subprocess.Popen([RAY, "start", "--head", "--block", *ports, f"--dashboard-port={dashboard}",
                             "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                             f"--temp-dir={temp}", "--disable-usage-stats"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 180
    while job(address, "list").returncode != 0:
        assert proc.poll() is None and time.monotonic() < deadline, "ray start --head failed"
        time.sleep(1)
    try:
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:  # its state lives in tmp_path: after a few seconds of grace there is nothing left to save
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def job(address: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = cluster_env()
    command, *rest = args
    return subprocess.run([RAY, "job", command, "--address", address, *rest], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def write_spec(path: Path, corpus: Path, storage: Path, max_steps: int, widths: list[int]) -> Path:
    path.write_text(yaml.safe_dump({"name": path.stem, "storage": str(storage), "domains": {"lm": {
        "data": {"train": str(corpus / TRAIN_GLOB), "valid": str(corpus / VALID_GLOB), "vocab_size": 500,
                 "max_valid_words": 500, "max_valid_chars": 2000},
        "families": ["word"], "shards": [0.5, 1.0], "widths": widths,
        "early_stopping": {"grace_period": 10, "max_steps": max_steps, "eval_every": 10, "patience": None}}}}))
    return path


def test_job_submit_runs_the_sweep_and_logs_progress(head: str, corpus_dir: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "job.yaml", corpus_dir, tmp_path / "storage", max_steps=20, widths=[8])
    out = job(head, "submit", "--working-dir", ".", "--runtime-env", "deploy/runtime_env.yaml", "--",
              "scaling-sweep", "run", str(spec), "--bootstrap", "50")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2/2 done" in out.stdout  # the progress display, streamed from the job's logs
    assert "succeeded" in out.stdout.lower()
    rows = ResultsStore(str(tmp_path / "storage")).read_results().to_pylist()
    assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"}


def test_job_stop_stops_the_trials(head: str, corpus_dir: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "long.yaml", corpus_dir, tmp_path / "storage", max_steps=100000,
                      widths=[8, 16, 24, 32])
    out = job(head, "submit", "--no-wait", "--working-dir", ".", "--runtime-env", "deploy/runtime_env.yaml", "--",
              "scaling-sweep", "run", str(spec))
    assert out.returncode == 0, out.stderr
    job_id = next(w.strip("'") for line in out.stdout.splitlines() for w in line.split() if w.startswith("'raysubmit"))
    trial_dirs = tmp_path / "storage" / "tune" / "long"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(trial_dirs.glob("*/checkpoint_*")):
        time.sleep(1)  # wait until trials are really training
    assert list(trial_dirs.glob("*/checkpoint_*")), job(head, "logs", job_id).stdout[-3000:]
    assert job(head, "stop", job_id).returncode == 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "was stopped" not in job(head, "status", job_id).stdout:
        time.sleep(1)
    assert "was stopped" in job(head, "status", job_id).stdout
    # no trial keeps training: no new checkpoint appears (old ones are pruned, so compare names)
    time.sleep(2)
    before = {p.relative_to(trial_dirs) for p in trial_dirs.glob("*/checkpoint_*")}
    time.sleep(6)  # several checkpoint intervals of these trials (10 steps of a width-8 to 32 LSTM)
    assert {p.relative_to(trial_dirs) for p in trial_dirs.glob("*/checkpoint_*")} == before
