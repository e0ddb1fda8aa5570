"""Real sweeps on real Ray with real LSTM training on tiny real text: rows, divergence, retries, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from domains.lm.offline_corpus import TRAIN_GLOB, VALID_GLOB
from fitting.store import ResultsStore
from orchestrator.plan import plan_trials, resolve_domains
from orchestrator.runner import load_saved_spec, run_sweep, save_spec
from orchestrator.spec import parse_spec
from tests.orchestrator.dies_once import NAME as DIES_ONCE

pytestmark = pytest.mark.slow


def spec_data(corpus: Path, storage: Path, name: str, **domain: Any) -> dict[str, Any]:
    lm = {
        "data": {"train": str(corpus / TRAIN_GLOB), "valid": str(corpus / VALID_GLOB), "vocab_size": 1000,
                 "max_valid_words": 1500, "max_valid_chars": 6000},
        "families": ["word"],
        "shards": {"base": 2, "from": -2, "to": 0},
        "widths": [8, 16],
        "hparams": {"batch_size": 8, "bptt": 16},
        "early_stopping": {"grace_period": 10, "reduction_factor": 2, "max_steps": 40, "eval_every": 10,
                           "patience": 3},
    }
    lm.update(domain)
    return {"name": name, "storage": str(storage), "domains": {"lm": lm}}


def stored(storage: Path) -> list[dict[str, Any]]:
    return ResultsStore(str(storage)).read_results().to_pylist()


def test_sweep_records_every_trial_including_diverged(corpus_dir: Path, ray_session: None, tmp_path: Path) -> None:
    # lr 1e9 with plain SGD and no clipping blows the weights up: that trial must be recorded as diverged
    data = spec_data(corpus_dir, tmp_path, "e2e",
                     hparams={"batch_size": 8, "bptt": 16, "optimizer": "sgd", "clip": 0.0,
                              "lr": {"grid": [1.0, 1.0e9]}})
    spec = parse_spec(data)
    planned = plan_trials(spec, resolve_domains(spec))
    outcome = run_sweep(spec, progress=False)
    assert outcome.ran == len(planned) == 12

    rows = stored(tmp_path)
    assert sorted(r["trial_key"] for r in rows) == sorted(t.trial_key for t in planned)
    by_lr: dict[float, list[dict[str, Any]]] = {}
    for r in rows:
        by_lr.setdefault(json.loads(r["hparams"])["lr"], []).append(r)
    assert {r["status"] for r in by_lr[1.0e9]} == {"diverged"}
    assert all(r["best_value"] is None and r["stop_reason"] == "diverged" for r in by_lr[1.0e9])
    healthy = by_lr[1.0]
    assert {r["status"] for r in healthy} <= {"completed", "stopped"}
    assert all(r["best_value"] > 0 and r["num_params"] > 0 and r["steps"] > 0 for r in healthy)
    assert all(r["stop_reason"] in {"max_steps", "patience", "asha"} for r in healthy)
    # train size in words grows with the shard; the same shard has the same size for every trial
    sizes = {(r["fraction"], r["train_size"]) for r in rows}
    assert len(sizes) == 3 and sorted(s for _, s in sizes) == [s for _, s in sorted(sizes)]
    # per-iteration history is stored, keyed by our own monotonic step counter
    history = ResultsStore(str(tmp_path)).read_history(healthy[0]["trial_key"]).to_pylist()
    assert [h["steps"] for h in history] == [10 * (i + 1) for i in range(len(history))]
    assert all(json.loads(h["train_extra"])["epochs"] > 0 for h in history)  # the task's own counters too

    # running the same spec again finds everything stored and runs nothing
    again = run_sweep(spec, progress=False)
    assert again.ran == 0 and again.skipped == 12
    assert len(stored(tmp_path)) == 12


def test_gpu_requests_run_on_cpu_when_the_local_machine_has_no_gpu(corpus_dir: Path, ray_session: None,
                                                                 tmp_path: Path) -> None:
    data = spec_data(corpus_dir, tmp_path, "gpu-spec", shards=[1.0], widths=[8, 16],
                     resources={"cpu": 1, "gpu": 0.5, "rules": [{"min_width": 16, "gpu": 1, "cpu": 1}]},
                     early_stopping={"grace_period": 10, "max_steps": 10, "eval_every": 10, "patience": None})
    outcome = run_sweep(parse_spec(data), progress=False)
    assert outcome.ran == 2 and {r["status"] for r in stored(tmp_path)} == {"completed"}


def test_trial_killed_mid_run_resumes_from_its_checkpoint(corpus_dir: Path, ray_session: None,
                                                          tmp_path: Path) -> None:
    marker = tmp_path / "die.fail"  # the first trial at its 2nd checkpoint takes it and its process dies
    data = spec_data(corpus_dir, tmp_path, "retry", shards=[1.0], widths=[8],
                     hparams={"batch_size": 8, "bptt": 16, "lr": {"grid": [0.003, 0.01]},
                              "fail_marker": str(marker)},
                     early_stopping={"grace_period": 10, "max_steps": 50, "eval_every": 10, "patience": None,
                                     "enabled": False})
    data["domains"] = {DIES_ONCE: data["domains"]["lm"]}
    spec = parse_spec(data)
    planned = plan_trials(spec, resolve_domains(spec))
    marker.touch()
    run_sweep(spec, progress=False)

    assert marker.with_suffix(".failed").exists() and not marker.exists()  # it really crashed, once
    rows = {r["trial_key"]: r for r in stored(tmp_path)}
    assert set(rows) == {t.trial_key for t in planned}
    (victim,) = [key for key, r in rows.items() if r["restores"] == 1]
    (survivor,) = set(rows) - {victim}
    assert rows[victim]["status"] == "completed"
    assert rows[victim]["steps"] == 50 and rows[victim]["iterations"] == 5  # resumed at step 20, not from 0
    assert rows[survivor]["restores"] == 0
    history = ResultsStore(str(tmp_path)).read_history(victim).to_pylist()
    assert [h["iteration"] for h in history] == [1, 2, 3, 4, 5]


def test_sweep_on_object_storage(corpus_dir: Path, ray_session: None) -> None:
    """Results, history, checkpoints and Tune's experiment state all go to an s3:// URI."""
    from tests.s3_server import s3_bucket

    with s3_bucket() as template:
        uri = template.format(prefix="sweeps/s3")
        data = spec_data(corpus_dir, Path("/unused"), "on-s3", shards=[0.5, 1.0], widths=[8],
                         early_stopping={"grace_period": 10, "max_steps": 20, "eval_every": 10, "patience": None})
        data["storage"] = uri
        spec = parse_spec(data)
        assert spec.storage_uri() == uri
        outcome = run_sweep(spec, progress=False)
        assert outcome.ran == 2
        store = ResultsStore(uri)
        rows = store.read_results().to_pylist()
        assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"}
        assert store.read_history(rows[0]["trial_key"]).num_rows == 2
        assert run_sweep(spec, progress=False).ran == 0  # resumable from the bucket alone


def test_saved_spec_is_what_resume_runs(corpus_dir: Path, tmp_path: Path) -> None:
    spec = parse_spec(spec_data(corpus_dir, tmp_path / "storage", "saved", hparams={"lr": {"grid": [0.003, 0.01]}}))
    save_spec(spec, str(tmp_path / "storage"))
    saved = load_saved_spec(str(tmp_path / "storage"))  # what `scaling-sweep resume STORAGE` runs
    assert saved.model_dump(exclude={"storage"}) == spec.model_dump(exclude={"storage"})
    assert saved.storage == str(tmp_path / "storage")
