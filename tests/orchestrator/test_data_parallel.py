"""Data-parallel trials: replicas that really average gradients (gloo), and real 2-worker Ray Train trials that
report, resume from their checkpoints and are stopped by ASHA."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from domains.base import TrialSetup
from domains.lm.offline_corpus import TRAIN_GLOB, VALID_GLOB
from domains.registry import get_domain
from fitting.store import ResultsStore
from orchestrator.data_parallel import DRIVER_RESOURCES, TRAIN_RUNS_DIR, GradientAverager, worker_resources
from orchestrator.plan import plan_trials, resolve_domains
from orchestrator.runner import run_sweep, trial_resources
from orchestrator.spec import parse_spec
from orchestrator.trial_loop import STATE_FILE
from tests.domains.test_flops import lstm_lm_hand_count
from tests.orchestrator.dies_once import NAME as DIES_ONCE
from tests.orchestrator.plans import make_plan
from tests.s3_server import free_port

LM_DATA = {"vocab_size": 1000, "max_valid_words": 1500, "max_valid_chars": 6000}
STEPS = 12
HPARAMS = {"optimizer": "sgd", "lr": 1.0, "batch_size": 8, "bptt": 16, "dropout": 0.0}  # linear in the gradients
NULL_IN_A_COMPLETED_ROW = {"error"}  # what a completed single-process trial's row leaves empty


def lm_prepared(corpus: Path, cache: Path) -> Any:
    domain = get_domain("lm")
    source = domain.source_model.model_validate({"train": str(corpus / TRAIN_GLOB), "valid": str(corpus / VALID_GLOB),
                                                 **LM_DATA})
    return domain.prepare(source, cache)


def setup(threads: int = 1) -> TrialSetup:
    return TrialSetup(family="word", fraction=1.0, width=16, hparams=HPARAMS, seed=3, threads=threads)


def _replica(rank: int, world_size: int, port: int, prepared: Any, out: Path) -> None:
    """One replica in its own process, joined to the others over gloo as a Ray Train worker is."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        task = get_domain("lm").build_task(prepared, setup())
        sync = GradientAverager(task.model, world_size)
        task.join_replicas(rank, world_size, sync)
        stats = task.train(STEPS)
        assert sync.calls == STEPS
        torch.save({"model": task.model.state_dict(), "loss": stats.loss, "samples": stats.samples},
                   out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_rank_share_splits_every_batch_without_leaving_a_replica_empty(corpus_dir: Path, tmp_path: Path) -> None:
    task = get_domain("lm").build_task(lm_prepared(corpus_dir, tmp_path), setup())
    batch = torch.arange(5)
    shares = []
    for rank in range(2):
        task.rank, task.world_size = rank, 2
        shares.append(task.rank_share(batch).tolist())
    assert shares == [[0, 2, 4], [1, 3]]  # disjoint, and together the whole batch
    task.rank, task.world_size = 2, 3
    assert task.rank_share([7]) == [7]  # a batch smaller than the world is lent round-robin


@pytest.mark.slow  # spawns two processes that import torch and Ray Train
def test_two_replicas_train_as_one_process_on_the_whole_batch(corpus_dir: Path, tmp_path: Path) -> None:
    """2 replicas x 4 of the 8 readers each, gradients averaged, end bitwise equal to each other and equal (to
    float rounding) to one process training on all 8: so each saw its own half and the halves were averaged."""
    prepared = lm_prepared(corpus_dir, tmp_path / "cache")
    mp.spawn(_replica, args=(2, free_port(), prepared, tmp_path), nprocs=2, join=True)
    replicas = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]

    torch.set_num_threads(1)
    alone = get_domain("lm").build_task(prepared, setup())
    stats = alone.train(STEPS)

    first, second = (r["model"] for r in replicas)
    assert all(torch.equal(first[k], second[k]) for k in first)  # the replicas never drift apart
    start = get_domain("lm").build_task(prepared, setup()).model.state_dict()
    assert any(not torch.equal(first[k], start[k]) for k in first)  # and they did train
    for k, v in alone.model.state_dict().items():
        torch.testing.assert_close(first[k], v, rtol=1e-4, atol=1e-5)
    assert replicas[0]["loss"] == replicas[1]["loss"] == pytest.approx(stats.loss, rel=1e-5)
    assert replicas[0]["samples"] + replicas[1]["samples"] == stats.samples  # each counts its own half


# ------------------------------------------------------------------------------------------------ on Ray
def dp_spec(corpus: Path, storage: Path, fail_marker: Path) -> dict[str, Any]:
    """Width 16 on 2 workers, three learning rates in one ASHA group (rungs at 10 and 20 steps), one at a time;
    the word LM of ``tests.orchestrator.dies_once``: the first trial to reach its 2nd checkpoint dies once."""
    return {"name": "dp", "storage": str(storage), "max_concurrent_trials": 1, "domains": {DIES_ONCE: {
        "data": {"train": str(corpus / TRAIN_GLOB), "valid": str(corpus / VALID_GLOB), **LM_DATA},
        "families": ["word"], "shards": [1.0], "widths": [16],
        "hparams": {"batch_size": 8, "bptt": 16, "lr": {"grid": [0.01, 1.0e-4, 2.0e-4]},
                    "fail_marker": str(fail_marker)},
        "early_stopping": {"grace_period": 10, "reduction_factor": 2, "max_steps": 40, "eval_every": 10,
                           "patience": None},
        "resources": {"cpu": 0.4, "rules": [{"min_width": 16, "workers": 2}]},  # 0.1 (driver) + 2 x 0.4 <= 2 CPUs
    }}}


@pytest.mark.slow
def test_workers_without_gpus_share_a_cluster_too_small_for_them(ray_session: None) -> None:
    plan = make_plan("k", workers=4, resources={"cpu": 1.0, "gpu": 0.0})
    assert worker_resources(plan) == {"CPU": 0.475}  # (2 CPUs - the driver's 0.1) / 4
    assert worker_resources(replace(plan, workers=2, resources={"cpu": 0.5, "gpu": 0.0})) == {"CPU": 0.5}
    assert worker_resources(replace(plan, resources={"cpu": 1.0, "gpu": 1.0})) == {"CPU": 1.0, "GPU": 1.0}


@pytest.mark.slow
def test_data_parallel_trials_resume_are_stopped_by_asha_and_land_in_the_store(
        corpus_dir: Path, ray_session: None, tmp_path: Path) -> None:
    """Three 2-worker trials, one at a time, in one ASHA group. The good learning rate dies once (rank 0, once
    its 2nd checkpoint is committed: the bad ones never reach it), resumes from that checkpoint and runs to the
    end; the two bad ones are
    stopped at the first rung. Each stopped trial aborts its Train run; the next reuses its actor (a trial thread
    still in trainer.fit() would make that fail), and at the end every worker's CPU is back with Ray."""
    import ray

    marker = tmp_path / "die.fail"
    spec = parse_spec(dp_spec(corpus_dir, tmp_path, marker))
    planned = plan_trials(spec, resolve_domains(spec))
    assert [(t.workers, t.hparams["lr"]) for t in planned] == [(2, 0.01), (2, 1.0e-4), (2, 2.0e-4)]
    assert trial_resources({"trial": planned[0].to_config()}) == DRIVER_RESOURCES
    marker.touch()

    outcome = run_sweep(spec, progress=False)
    assert marker.with_suffix(".failed").exists() and not marker.exists()
    assert outcome.ran == 3
    store = ResultsStore(str(tmp_path))
    rows = {r["trial_key"]: r for r in store.read_results().to_pylist()}
    assert [(rows[t.trial_key]["status"], rows[t.trial_key]["stop_reason"], rows[t.trial_key]["steps"])
            for t in planned] == [("completed", "max_steps", 40), ("stopped", "asha", 10), ("stopped", "asha", 10)]

    # the good trial: resumed, not restarted, and a row like any single-process trial's
    dp = rows[planned[0].trial_key]
    assert {k for k, v in dp.items() if v is None} == NULL_IN_A_COMPLETED_ROW
    assert dp["iterations"] == 4 and dp["restores"] == 1
    assert dp["samples"] == 40 * 8 * 16  # both workers' tokens: the whole batch per step
    assert dp["num_params"] > 0 and dp["best_value"] == json.loads(dp["best_metrics"])["val_xent"]
    # the replicas' FLOP shares summed: one step on the whole batch of 8 readers, counted by hand (before the crash
    # and carried by the checkpoint after it)
    vocab = (dp["num_params"] - dp["non_embedding_params"]) // (2 * 16 + 1)
    assert dp["flops_per_step"] == lstm_lm_hand_count(8, 16, 16, vocab)
    assert dp["train_flops"] == 40 * dp["flops_per_step"]
    assert set(json.loads(dp["final_metrics"])) == {"val_xent", "val_ppl"}
    history = store.read_history(dp["trial_key"]).to_pylist()
    assert [h["steps"] for h in history] == [10, 20, 30, 40]
    xent = [json.loads(h["metrics"])["val_xent"] for h in history]
    assert xent[-1] < xent[0] - 0.3 and history[-1]["train_loss"] < history[0]["train_loss"]  # it learned
    # every report: the two replicas' weights agree bitwise (Tune keeps each result the trial sent)
    (trial_dir,) = (tmp_path / "tune" / "dp").glob(f"{dp['trial_key']}_*")
    reports = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    assert all(r["replica_drift"] == 0.0 for r in reports)
    # it died right after its 2nd checkpoint was committed, and went on from there
    assert [(r["steps"], r["restores"]) for r in reports] == [(10, 0), (20, 0), (30, 1), (40, 1)]
    # Train's checkpoints: rank 0's whole state, rank 1's own part (its readers and RNG, not the weights)
    run = tmp_path / "tune" / TRAIN_RUNS_DIR / dp["trial_key"]
    checkpoints = sorted(p for p in run.glob("checkpoint_*") if p.is_dir())
    assert checkpoints and {p.name for p in checkpoints[-1].iterdir()} >= {STATE_FILE, "trial_state.rank1.pt"}
    own = torch.load(checkpoints[-1] / "trial_state.rank1.pt", weights_only=False)["task"]
    assert "model" not in own and own["hidden"][0].shape[1] == 4  # 4 of the 8 readers

    for stopped in planned[1:]:  # the stopped trials' workers were stopped too, long before max_steps
        run = tmp_path / "tune" / TRAIN_RUNS_DIR / stopped.trial_key
        last = max(p for p in run.glob("checkpoint_*") if p.is_dir())
        assert torch.load(last / STATE_FILE, weights_only=False)["progress"]["steps"] < 40
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]


@pytest.mark.slow
def test_data_parallel_trials_pause_at_rungs_under_synchronous_halving(
        corpus_dir: Path, ray_session: None, tmp_path: Path) -> None:
    """The same three 2-worker trials under synchronous halving, one at a time (``max_concurrent_trials: 1``, which
    Tune would count paused trials against: the group would wait at its first rung for ever). Each trial pauses at
    a rung, its Train run ends and its workers' CPUs go back to Ray, until all three reached it; then the best 2 of
    3 go on from their checkpoints, and at the second rung the best 1 of 2."""
    import ray

    data = dp_spec(corpus_dir, tmp_path, tmp_path / "never.fail")
    data["domains"][DIES_ONCE]["early_stopping"]["synchronous"] = True
    spec = parse_spec(data)
    planned = plan_trials(spec, resolve_domains(spec))
    outcome = run_sweep(spec, progress=False)
    assert outcome.ran == 3
    store = ResultsStore(str(tmp_path))
    rows = {r["trial_key"]: r for r in store.read_results().to_pylist()}
    good, worst, second = (rows[t.trial_key] for t in planned)  # learning rates 0.01, 1e-4, 2e-4
    assert [(r["status"], r["stop_reason"], r["steps"]) for r in (good, worst, second)] == [
        ("completed", "max_steps", 40), ("stopped", "asha", 10), ("stopped", "asha", 20)]
    assert good["best_value"] < second["best_value"] < worst["best_value"]
    # paused and resumed, not restarted: one contiguous history each, and at least one trial came back
    for row in (good, worst, second):
        assert [h["steps"] for h in store.read_history(row["trial_key"]).to_pylist()] == list(
            range(10, row["steps"] + 1, 10))
    assert max(r["restores"] for r in (good, worst, second)) >= 1
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]
