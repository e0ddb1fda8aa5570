"""One driver per storage: a second `scaling-sweep run` on a storage in use is refused within seconds, naming the
holder, and the first finishes; a lease lapses by itself when its driver is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fitting.store import ResultsStore
from orchestrator.errors import LeaseHeld
from orchestrator.lease import LEASE_FILE, StorageLease, holder
from tests.orchestrator.test_job_submit import write_spec
from tests.ray_cluster import cluster_env

HOLD = """
import sys, time
from orchestrator.lease import StorageLease
StorageLease(sys.argv[1], "held", ttl=30, heartbeat=1).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_second_lease_is_refused_naming_the_holder_and_takeover_works(tmp_path: Path) -> None:
    lost_to: list[str] = []
    first = StorageLease(str(tmp_path), "first", ttl=30, heartbeat=0.2, on_lost=lost_to.append)
    first.acquire()
    record = json.loads((tmp_path / LEASE_FILE).read_text())
    assert {"owner", "host", "pid", "heartbeat_at", "expires_at"} <= set(record)
    assert record["pid"] == os.getpid() and record["expires_at"] > time.time() + 25
    time.sleep(0.5)
    assert json.loads((tmp_path / LEASE_FILE).read_text())["heartbeat_at"] > record["heartbeat_at"]  # heartbeat

    second = StorageLease(str(tmp_path), "second", ttl=30, heartbeat=0.2)
    with pytest.raises(LeaseHeld, match=f"sweep 'first' by .*pid {os.getpid()} on .*--takeover"):
        second.acquire()
    second.acquire(takeover=True)
    deadline = time.monotonic() + 5
    while not first.lost.is_set():  # the first driver's heartbeat sees it lost the storage and stops renewing
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(lost_to) == 1 and "sweep 'second'" in lost_to[0]  # the runner stops its sweep on this
    first.release()
    assert holder(str(tmp_path)).sweep == "second"  # releasing a lease one no longer holds leaves the new one
    second.release()
    assert not (tmp_path / LEASE_FILE).exists() and holder(str(tmp_path)) is None


def test_lease_on_object_storage() -> None:
    """The same on an s3:// URI (a real S3 endpoint): written whole in one PUT, read back, deleted on release."""
    from tests.s3_server import s3_bucket

    with s3_bucket() as template:
        uri = template.format(prefix="sweeps/leased")
        first = StorageLease(uri, "on-s3", ttl=30, heartbeat=0.2)
        first.acquire()
        assert holder(uri).sweep == "on-s3"
        with pytest.raises(LeaseHeld, match="s3://sweeps/sweeps/leased is in use by another driver: sweep 'on-s3'"):
            StorageLease(uri, "second").acquire()
        first.release()
        assert holder(uri) is None and first.read() is None


def test_a_lease_lapses_by_itself(tmp_path: Path) -> None:
    """A silent holder (a driver on another machine that died) blocks the storage until its expiry, not longer."""
    silent = StorageLease(str(tmp_path), "silent", ttl=1.5, heartbeat=1)
    silent.acquire()
    silent._stop.set()  # no more heartbeats, lease file left in place: as a crashed remote driver leaves it
    with pytest.raises(LeaseHeld):
        StorageLease(str(tmp_path), "next").acquire()
    time.sleep(1.6)
    successor = StorageLease(str(tmp_path), "next")
    successor.acquire()
    successor.release()


def test_a_killed_drivers_lease_lapses_at_once_on_its_host(tmp_path: Path) -> None:
    """On the holder's own host a lease whose process is gone is free at once: a killed driver can be resumed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], env=cluster_env(), stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    with pytest.raises(LeaseHeld, match=f"pid {proc.pid}"):
        StorageLease(str(tmp_path), "next").acquire()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert holder(str(tmp_path)) is None
    successor = StorageLease(str(tmp_path), "next")
    successor.acquire()
    successor.release()


@pytest.mark.slow
def test_second_driver_on_a_storage_in_use_exits_naming_the_holder(corpus_dir: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    spec = write_spec(tmp_path / "shared.yaml", corpus_dir, storage, max_steps=20, widths=[8])
    env = cluster_env()
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(["scaling-sweep", "run", str(spec), "--quiet", "--num-cpus", "1", "--bootstrap",
                                  "20"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (storage / LEASE_FILE).exists():
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.1)
        started = time.monotonic()
        second = subprocess.run(["scaling-sweep", "run", str(spec), "--quiet"], env=env, capture_output=True,
                                text=True, timeout=60)
        seconds = time.monotonic() - started
        assert first.poll() is None, "the first driver ended before the second one was refused"
        assert second.returncode == 2, second.stderr[-3000:]
        assert "is in use by another driver: sweep 'shared' by" in second.stderr
        assert f"pid {first.pid} on" in second.stderr and "--takeover" in second.stderr
        assert seconds < 20, seconds
        assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    rows = ResultsStore(str(storage)).read_results().to_pylist()
    assert len(rows) == 2 and len({r["trial_key"] for r in rows}) == 2
    assert not (storage / LEASE_FILE).exists()  # released at the end
    print(f"\nsecond driver refused after {seconds:.1f} s")
