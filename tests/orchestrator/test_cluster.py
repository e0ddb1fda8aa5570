"""Sweeps on a simulated multi-node GPU cluster: 200 trials whose placement respects GPU fractions and which land
exactly once; and a worker node lost mid-sweep, whose trials resume elsewhere.

The cluster (``tests/ray_cluster.py``) is a CPU head plus worker nodes that declare one GPU each; the driver is
``scaling-sweep run`` with ``RAY_ADDRESS`` set, as under ``ray job submit``. Trials train real LSTMs on CPU:
torch sees no CUDA.

The 200 trials are short: the test checks placement and exactly-once delivery. How busy the queue keeps the GPU
slots is a performance figure: the test reports what it saw (at the end of pytest's output), and the target lives
in ``benchmarks/cluster.py`` (``--one-shape`` runs these same trials, longer; a mix of quarter and whole GPUs pays
once per GPU for the new shape's actors to start).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from domains.lm.offline_corpus import TRAIN_GLOB, VALID_GLOB
from fitting.store import ResultsStore
from orchestrator.plan import plan_trials, resolve_domains
from orchestrator.spec import parse_spec
from orchestrator.utilization import busy_fraction, oversubscribed, peak_gpu_load, spans, started_per_second
from tests.ray_cluster import SimulatedCluster, ray_cluster

pytestmark = pytest.mark.slow
SCALING_SWEEP = str(Path(sys.executable).parent / "scaling-sweep")
GPU_NODES = 2
CPUS_PER_NODE = 4  # one per quarter-GPU trial: CPUs never cap the GPU packing
MAX_STEPS = 20  # short trials: placement and exactly-once do not need long ones
QUARTER = {"cpu": 1, "gpu": 0.25}


def sweep_spec(corpus: Path, storage: Path, lrs: int = 25, max_steps: int = MAX_STEPS,
               widths: tuple[int, ...] = (8, 16, 32, 64), resources: dict[str, Any] = QUARTER) -> dict[str, Any]:
    """2 shards x ``widths`` x ``lrs`` learning rates, every trial ``max_steps`` long."""
    return {"name": "cluster", "storage": str(storage), "domains": {"lm": {
        "data": {"train": str(corpus / TRAIN_GLOB), "valid": str(corpus / VALID_GLOB), "vocab_size": 500,
                 "max_valid_words": 300, "max_valid_chars": 1200},
        "families": ["word"], "shards": [0.5, 1.0], "widths": list(widths),
        "hparams": {"batch_size": 8, "bptt": 16, "lr": {"grid": [round(0.001 * (i + 1), 4) for i in range(lrs)]}},
        "resources": resources,
        # one report per trial, no early stopping: every trial runs max_steps, so each is as long as the next
        "early_stopping": {"enabled": False, "max_steps": max_steps, "eval_every": max_steps, "patience": None,
                           "grace_period": max_steps},
    }}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimulatedCluster]:
    """One simulated cluster for the module: booting the nodes costs more than a small sweep."""
    with ray_cluster(gpu_nodes=GPU_NODES, gpus_per_node=1, cpus_per_node=CPUS_PER_NODE) as simulated:
        yield simulated


def driver_env(cluster: SimulatedCluster) -> dict[str, str]:
    # Tune's per-trial CSV/JSON/TensorBoard files duplicate the results store and cost the driver time
    # between trials; a platform team would switch them off
    return {**cluster.env, "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


def start_sweep(spec_data: dict[str, Any], tmp_path: Path, cluster: SimulatedCluster) -> subprocess.Popen[str]:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec_data))
    log = (tmp_path / "driver.log").open("w")
    return subprocess.Popen([SCALING_SWEEP, "run", str(spec_file), "--quiet", "--bootstrap", "20"],
                            env=driver_env(cluster), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True)


def finish(driver: subprocess.Popen[str], tmp_path: Path, cluster: SimulatedCluster, timeout: float) -> str:
    """Wait for the driver; its whole log (asserting it exited 0)."""
    try:
        rc = driver.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        driver.kill()
        raise
    log = (tmp_path / "driver.log").read_text()
    assert rc == 0, log[-6000:] + cluster.log_tail()
    return log


def test_two_hundred_trials_on_a_simulated_gpu_cluster(cluster: SimulatedCluster, corpus_dir: Path, tmp_path: Path,
                                                      record_property: Callable[[str, object], None]) -> None:
    data = sweep_spec(corpus_dir, tmp_path / "storage")
    spec = parse_spec(data)
    planned = {t.trial_key: t for t in plan_trials(spec, resolve_domains(spec))}
    assert len(planned) == 200 and {t.resources["gpu"] for t in planned.values()} == {0.25}

    gpus = dict(cluster.gpus)
    log = finish(start_sweep(data, tmp_path, cluster), tmp_path, cluster, timeout=900)
    assert "200 trials run" in log

    # (b) every planned trial finished exactly once: one row per key (rows are files named by key), no retry
    rows = ResultsStore(str(tmp_path / "storage")).read_results().to_pylist()
    assert sorted(r["trial_key"] for r in rows) == sorted(planned)
    assert {r["status"] for r in rows} == {"completed"} and {r["restores"] for r in rows} == {0}
    assert {r["steps"] for r in rows} == {MAX_STEPS}

    # (a) placement: only GPU nodes, never more than a GPU's worth on a GPU, each trial on one GPU id
    items = spans(rows, lambda row: planned[row["trial_key"]].resources["gpu"])
    assert len(items) == 200 and {s.node for s in items} == set(gpus)
    assert oversubscribed(items, gpus) == []
    assert all(len(s.gpu_ids) == 1 for s in items)
    # and really packed four to a GPU (Ray honoured the fractions, not one trial per GPU)
    assert set(peak_gpu_load(items).values()) == {1.0}, peak_gpu_load(items)
    # reported, not asserted (a speed figure, and these trials last about a second): the benchmark measures it
    record_property("trials started per second (200 x 20 steps)", round(started_per_second(items), 2))
    record_property("GPU-slot utilization while queued (200 x 20 steps)", round(busy_fraction(items, GPU_NODES), 3))


def test_trials_of_a_lost_node_resume_from_their_checkpoints_elsewhere(
        cluster: SimulatedCluster, corpus_dir: Path, tmp_path: Path,
        record_property: Callable[[str, object], None]) -> None:
    """A worker node killed outright (SIGKILL, as a lost machine) while its trials run: Tune retries them on the
    surviving nodes from their last checkpoints; the sweep finishes with one whole row and history per trial.
    Half-GPU trials run two to a GPU; the widest model, queued behind them, gets whole GPUs to itself."""
    # a trial spends ~10 s building its task while six start at once on 2 cores, then ~4 s per 100 steps: 300
    # steps left a window of only seconds in which all six have checkpointed and none has finished (on an idle
    # machine the last of the six sometimes checkpointed after the first had finished: the sweep then ran to its
    # end before the kill); 600 steps make the window ~12 s longer
    steps, every = 600, 20
    data = sweep_spec(corpus_dir, tmp_path / "storage", lrs=2, max_steps=steps, widths=(8, 16, 24),
                      resources={"cpu": 1, "gpu": 0.5, "rules": [{"min_width": 24, "gpu": 1}]})
    data["domains"]["lm"]["early_stopping"]["eval_every"] = every
    spec = parse_spec(data)
    planned = {t.trial_key: t for t in plan_trials(spec, resolve_domains(spec))}
    halves = {k for k, t in planned.items() if t.resources["gpu"] == 0.5}
    victim = cluster.add_gpu_node(num_gpus=1, num_cpus=2)  # a third node: two half-GPU trials run there
    assert len(halves) == 8 and len(planned) == 12

    driver = start_sweep(data, tmp_path, cluster)
    storage, slots = tmp_path / "storage", 2 * len(cluster.gpus)  # six half-GPU slots on three GPUs

    def running_with_checkpoints() -> set[str]:
        """Half-GPU trials that have checkpointed and have no result row yet: running, resumable elsewhere."""
        done = {row.stem for row in (storage / "results").glob("*.parquet")}
        return {k for k in halves - done if list((storage / "tune").glob(f"*/{k}_*/checkpoint_*"))}

    # kill the victim once all six slots hold such a trial (so do its two; no whole-GPU trial fits beside them).
    # Not "once the first six have checkpointed": the victim's two could finish in between
    deadline = time.monotonic() + 300
    while len(running_with_checkpoints()) < slots:
        assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "driver.log").read_text()[-4000:]
        time.sleep(0.2)
    cluster.remove_node(victim, graceful=False)  # the node and its workers are gone when this returns
    killed_at = time.time()
    log = finish(driver, tmp_path, cluster, timeout=600)
    assert f"{len(planned)} trials run" in log

    store = ResultsStore(str(storage))
    rows = {r["trial_key"]: r for r in store.read_results().to_pylist()}
    assert set(rows) == set(planned) and len(store.list_files()) == len(planned)  # none lost, none twice
    assert {(r["status"], r["steps"], r["iterations"]) for r in rows.values()} == {("completed", steps, steps // every)}
    resumed = [r for r in rows.values() if r["restores"] > 0]
    # the victim's two trials (both checkpointed; one may have finished in the instant before the kill) resumed
    # from their checkpoints on a surviving node; nothing else was retried
    assert 1 <= len(resumed) <= 2 and {r["trial_key"] for r in resumed} <= halves, rows
    assert {r["node_id"] for r in resumed} <= set(cluster.gpus)  # the survivors
    # a row from the victim is a trial that had finished there before the kill
    assert all(r["run_ended_at"].timestamp() <= killed_at for r in rows.values() if r["node_id"] == victim)
    for key, row in rows.items():  # whole histories: resumed trials kept the iterations before the loss
        history = store.read_history(key).to_pylist()
        assert [h["iteration"] for h in history] == list(range(1, row["iterations"] + 1)), key
        assert [h["steps"] for h in history] == [every * h["iteration"] for h in history]
        assert all(json.loads(h["metrics"]) for h in history)
    # mixed shapes placed as asked: halves two to a GPU, whole-GPU trials alone on theirs (only attempts that
    # finished left a row: a GPU whose second half-trial moved elsewhere shows one)
    items = spans(rows.values(), lambda row: planned[row["trial_key"]].resources["gpu"])
    assert oversubscribed(items, {**cluster.gpus, victim: 1.0}) == []
    assert max(peak_gpu_load([s for s in items if s.gpu == 0.5]).values()) == 1.0  # two halves shared a GPU
    record_property("trials resumed on other nodes after a node loss", f"{len(resumed)} of {len(rows)}")
