"""A stale Ray address file (a `ray start --head --block` head killed by a signal) must not hang a local run, and a
given address that does not answer must fail within seconds, naming it. Real `ray start`, real CLI processes.

The stale head lives in a private ``RAY_TMPDIR``: Ray reads ``$RAY_TMPDIR/ray/ray_current_cluster``, so the file
this test leaves behind is never the machine's global ``/tmp/ray/ray_current_cluster``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fitting.store import ResultsStore
from orchestrator.errors import RayAddressError
from orchestrator.ray_address import choose_target, host_port, probe
from tests.orchestrator.test_job_submit import write_spec
from tests.ray_cluster import cluster_env
from tests.s3_server import free_port

RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def stale_head() -> Iterator[tuple[dict[str, str], str]]:
    """(environment with a private RAY_TMPDIR whose address file names a dead head, that head's address)."""
    tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    env = {**cluster_env(), "RAY_TMPDIR": tmp}
    port = free_port()
    ports = [f"--{name}={free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                     "metrics-export-port", "runtime-env-agent-port")]
    head = subprocess.Popen([RAY, "start", "--head", "--block", f"--port={port}", *ports, "--num-cpus=1",
                             "--include-dashboard=false", "--disable-usage-stats"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address_file = Path(tmp) / "ray" / "ray_current_cluster"
    try:
        deadline = time.monotonic() + 120
        while not address_file.exists():
            assert head.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
            time.sleep(0.5)
        address = address_file.read_text().strip()
        os.killpg(head.pid, signal.SIGKILL)  # as a container stop ends it: no `ray stop`, the file stays
        head.wait()
        time.sleep(0.5)
        assert address_file.read_text().strip() == address
        yield env, address
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def scaling_sweep(*args: str, env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    out = subprocess.run(["scaling-sweep", *args], env=env, capture_output=True, text=True, timeout=timeout)
    return out, time.monotonic() - started


@pytest.mark.slow
def test_local_run_ignores_a_stale_cluster_file(stale_head: tuple[dict[str, str], str], corpus_dir: Path,
                                                tmp_path: Path) -> None:
    env, _ = stale_head
    spec = write_spec(tmp_path / "stale.yaml", corpus_dir, tmp_path / "storage", max_steps=10, widths=[8])
    out, seconds = scaling_sweep("run", str(spec), "--quiet", "--num-cpus", "1", "--bootstrap", "20", env=env,
                                 timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert len(ResultsStore(str(tmp_path / "storage")).read_results()) == 2
    print(f"\nlocal sweep beside a stale cluster file: {seconds:.1f} s")


@pytest.mark.slow
def test_dead_address_fails_fast_naming_it(stale_head: tuple[dict[str, str], str], corpus_dir: Path,
                                           tmp_path: Path) -> None:
    env, dead = stale_head
    spec = write_spec(tmp_path / "dead.yaml", corpus_dir, tmp_path / "storage", max_steps=10, widths=[8])
    out, seconds = scaling_sweep("run", str(spec), "--quiet", env={**env, "RAY_ADDRESS": dead}, timeout=120)
    assert out.returncode == 2 and seconds < 30, (seconds, out.stderr[-3000:])
    assert f"no Ray cluster answers at {dead} (from RAY_ADDRESS)" in out.stderr
    assert "Traceback" not in out.stderr
    assert not ResultsStore(str(tmp_path / "storage")).list_files()


def test_address_choice_and_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert choose_target(None).local
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert (choose_target(None).address, choose_target(None).source) == ("10.0.0.1:6379", "RAY_ADDRESS")
    assert choose_target("ray://h:10001").source == "--address"  # the flag beats the variable
    assert host_port("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert host_port("ray://head:10001") == ("head", 10001)
    assert host_port("auto") is None
    port = free_port()
    started = time.monotonic()
    with pytest.raises(RayAddressError, match=f"127.0.0.1:{port} \\(from --address\\)"):
        probe(choose_target(f"127.0.0.1:{port}"), timeout=1.0)
    assert time.monotonic() - started < 5
