"""A storage that fills up mid-sweep: a real size-limited tmpfs, filled by the test once the first trial is stored.
The driver stops with a clear message, no stored file is half-written, and `resume` after space is freed finishes
with exactly one row per trial (every ``.parquet`` readable)."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from fitting.store import ResultsStore
from orchestrator.lease import LEASE_FILE
from orchestrator.plan import plan_trials, resolve_domains
from orchestrator.spec import parse_spec
from tests.orchestrator.test_resume import cli, tail
from tests.orchestrator.test_sweep import spec_data

pytestmark = pytest.mark.slow
DISK_MB = 64


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_MB MiB (needs CAP_SYS_ADMIN, as root in the CI container; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write zeros until the filesystem has no space left."""
    block = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        while True:  # the last partial megabyte
            try:
                f.write(b"\0" * 4096)
            except OSError:
                break


def parquet_files(storage: Path) -> list[Path]:
    return sorted(p for sub in ("results", "history") for p in (storage / sub).glob("*.parquet"))


def test_full_disk_stops_the_sweep_and_resume_finishes_it(corpus_dir: Path, small_disk: Path,
                                                          tmp_path: Path) -> None:
    storage = small_disk / "storage"
    data = spec_data(corpus_dir, storage, "full", shards=[0.5, 1.0], widths=[8, 16],
                     early_stopping={"grace_period": 10, "max_steps": 30, "eval_every": 10, "patience": None,
                                     "enabled": False})
    data["max_failures"] = 0  # a trial whose checkpoint cannot be written errors at once: the test stays short
    spec_file = tmp_path / "full.yaml"
    spec_file.write_text(yaml.safe_dump(data))
    spec = parse_spec(data)
    planned = {t.trial_key for t in plan_trials(spec, resolve_domains(spec))}
    assert len(planned) == 4
    filler = small_disk / "filler"

    with cli("run", str(spec_file), "--quiet", "--num-cpus", "1", "--bootstrap", "20",
             log=tmp_path / "run.log") as driver:
        deadline = time.monotonic() + 180
        while not ResultsStore(str(storage)).list_files():
            assert driver.poll() is None, tail(tmp_path / "run.log")
            assert time.monotonic() < deadline, "no trial finished in time: " + tail(tmp_path / "run.log")
            time.sleep(0.2)
        fill(filler)
        filled = time.monotonic()
        rc = driver.wait(timeout=240)
        stopped_after = time.monotonic() - filled
    log = (tmp_path / "run.log").read_text()
    assert rc == 3, tail(tmp_path / "run.log")
    assert "error: the sweep stopped:" in log and "scaling-sweep resume" in log, tail(tmp_path / "run.log")
    assert "Traceback" not in log.split("error: the sweep stopped:")[-1]
    rows = {r["trial_key"] for r in ResultsStore(str(storage)).read_results().to_pylist()}
    assert 1 <= len(rows) < len(planned)
    for path in parquet_files(storage):  # nothing half-written: every stored file reads whole
        pq.read_table(path)

    os.remove(filler)
    with cli("resume", str(storage), "--quiet", "--num-cpus", "1", "--bootstrap", "20",
             log=tmp_path / "resume.log") as resumed:
        assert resumed.wait(timeout=300) == 0, tail(tmp_path / "resume.log")
    after = ResultsStore(str(storage)).read_results().to_pylist()
    assert sorted(r["trial_key"] for r in after) == sorted(planned)  # exactly one row per trial
    assert {r["status"] for r in after} == {"completed"}
    files = parquet_files(storage)
    assert len(files) == 2 * len(planned)
    for path in files:
        pq.read_table(path)
    assert not list((storage / "results").glob(".*.tmp")) and not (storage / LEASE_FILE).exists()
    print(f"\nfull disk: {len(rows)} rows before, driver stopped {stopped_after:.1f} s after the disk filled")
