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
from tests.domains.test_flops import lstm_lm_hand_count, mlp_hand_count
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


def check_cost_and_convergence(storage: Path, rows: list[dict[str, Any]]) -> None:
    """Every trial stores its parameters with and without embeddings, its training FLOPs (FLOPs per step x
    steps, also per history row) and ``converged`` where the trial judged it (completed trials only)."""
    store = ResultsStore(str(storage))
    for r in rows:
        assert 0 < r["non_embedding_params"] <= r["num_params"], r["trial_key"]
        assert r["flops_per_step"] > 0 and r["train_flops"] == r["flops_per_step"] * r["steps"], r["trial_key"]
        if r["stop_reason"] == "patience":
            assert r["converged"] is True, r["trial_key"]
        elif r["stop_reason"] == "max_steps" and r["iterations"] >= 2:
            assert isinstance(r["converged"], bool), r["trial_key"]
        else:  # stopped by ASHA, diverged, errored, or evaluated once: not judged
            assert r["converged"] is None, r["trial_key"]
        history = store.read_history(r["trial_key"]).to_pylist()
        assert [h["train_flops"] for h in history] == [r["flops_per_step"] * h["steps"] for h in history]


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
    check_cost_and_convergence(tmp_path, rows)
    for r in healthy:  # 1-layer LSTM LMs: the non-embedding part and a step's FLOPs by hand
        w = r["width"]
        assert r["non_embedding_params"] == 8 * w * w + 8 * w  # LSTM: W_ih, W_hh (4w x w each), two 4w biases
        vocab = (r["num_params"] - r["non_embedding_params"]) // (2 * w + 1)  # embedding, untied softmax + bias
        assert r["flops_per_step"] == lstm_lm_hand_count(8, 16, w, vocab)

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


def test_every_domain_records_flops_parameters_and_convergence(ray_session: None, tmp_path: Path) -> None:
    """One small trial per family of every other domain (the LM's are checked above), the tests' MLP domain
    included: the cost and convergence columns are filled for each."""
    stopping = {"grace_period": 10, "max_steps": 20, "eval_every": 10, "patience": None, "enabled": False}
    domains = {
        "digits-mlp": {"data": {"valid_fraction": 0.25}, "families": {"mlp": {"widths": [8]}}, "shards": [0.5]},
        "image": {"data": {"train": "builtin:digits", "hflip": False}, "families": {"resnet": {"widths": [4]}},
                  "hparams": {"depth": 10, "batch_size": 16}, "shards": [0.25]},
        "nmt": {"data": {"train": "builtin:offline-de-en", "max_pairs": 300, "vocab_size": 500, "max_tokens": 48,
                         "max_dropped_fraction": 0.9, "max_valid_pairs": 20, "bleu_pairs": 4},
                "families": {"lstm": {"widths": [16]}, "transformer": {"widths": [16]}},
                "hparams": {"layers": 1, "batch_size": 8}, "shards": [0.5]},
        "speech": {"data": {"train": "builtin:espeak", "espeak_utterances": 16, "espeak_valid_utterances": 4,
                            "espeak_max_words": 3, "n_mels": 16},
                   "families": {"ds2": {"widths": [16], "hparams": {"rnn_layers": 1, "conv_channels": 4}},
                                "attention": {"widths": [16], "hparams": {"enc_layers": 1, "dec_layers": 1,
                                                                          "conv_channels": 4, "conv_kernel": 3}}},
                   "hparams": {"batch_size": 4}, "shards": [1.0]},
    }
    spec = parse_spec({"name": "every-domain", "storage": str(tmp_path), "domains": {
        name: {**part, "early_stopping": stopping, "resources": {"cpu": 1}} for name, part in domains.items()}})
    outcome = run_sweep(spec, progress=False)
    rows = stored(tmp_path)
    assert outcome.ran == len(rows) == 6 and {r["status"] for r in rows} == {"completed"}
    check_cost_and_convergence(tmp_path, rows)
    by_family = {r["family"]: r for r in rows}
    for family in ("mlp", "resnet"):  # no vocabulary
        assert by_family[family]["non_embedding_params"] == by_family[family]["num_params"]
    assert by_family["mlp"]["flops_per_step"] == mlp_hand_count(32, 64, 8, 10)  # the default batch of 32
    for family in ("lstm", "transformer", "ds2", "attention"):  # vocabulary tables and softmax layers left out
        assert by_family[family]["non_embedding_params"] < by_family[family]["num_params"]
