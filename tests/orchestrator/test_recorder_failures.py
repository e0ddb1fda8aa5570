"""Result writes that fail: retried, then the sweep is asked to stop and no further row is written. Real stores: a
local folder that is briefly unwritable, and a real S3 endpoint whose bucket is gone."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from ray.tune.experiment import Trial

from fitting.store import ResultsStore
from orchestrator import recorder
from orchestrator.contract import TrialReport
from orchestrator.recorder import ResultsRecorder, StopRequested, clear_stop, stop_reason
from tests.orchestrator.plans import make_plan, stub_trial


def finished_trial(key: str) -> tuple[Trial, dict[str, Any]]:
    report = TrialReport(iteration=1, steps=10, samples=80.0, train_loss=5.0, metrics={"val_xent": 4.0},
                         best={"val_xent": 4.0}, final=True, stop_reason="max_steps", elapsed=1.0)
    return stub_trial(make_plan(key)), report.to_result()


def record(rec: ResultsRecorder, key: str) -> None:
    trial, result = finished_trial(key)
    rec.on_trial_result(1, [trial], trial, result)
    rec.on_trial_complete(1, [trial], trial)


def test_a_failed_write_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder, "RETRY_SECONDS", 0.5)
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "results").write_text("in the way")  # results/ cannot be created until this goes
    threading.Timer(0.2, (storage / "results").unlink).start()
    rec = ResultsRecorder(str(storage))
    record(rec, "t1")
    assert rec.written == 1 and stop_reason(str(storage)) is None
    assert [r["trial_key"] for r in ResultsStore(str(storage)).read_results().to_pylist()] == ["t1"]


def test_an_object_store_that_keeps_failing_stops_the_sweep(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    from tests.s3_server import s3_bucket

    monkeypatch.setattr(recorder, "RETRY_SECONDS", 0.05)
    with s3_bucket() as template:
        healthy = template.format(prefix="sweeps/ok")
        gone = healthy.replace("@sweeps/", "@deleted-bucket/")  # as a bucket deleted (or access revoked) midway
        rec = ResultsRecorder(gone)
        try:
            with caplog.at_level(logging.WARNING, logger="orchestrator.recorder"):
                record(rec, "t1")  # no exception: the callback must not take Tune down
                reason = stop_reason(gone)
                assert reason and "trial results could not be written to s3://deleted-bucket/" in reason
                assert "test:test" not in reason  # credentials never reach messages
                assert StopRequested(gone).stop_all() and not StopRequested(healthy).stop_all()
                assert sum("retrying" in r.message for r in caplog.records) == recorder.WRITE_ATTEMPTS - 1
                record(rec, "t2")  # Tune ends the remaining trials as terminated: they must not become rows
                assert any("t2 not recorded" in r.message for r in caplog.records)
            assert rec.written == 0
        finally:
            clear_stop(gone)
        # the healthy store writes whole files; nothing half-written on the failed one
        ok = ResultsRecorder(healthy)
        record(ok, "t3")
        store = ResultsStore(healthy)
        assert [pq.read_table(i.path, filesystem=store.fs).num_rows for i in store.list_files()] == [1]


def test_cost_and_convergence_reach_the_row_and_its_history(tmp_path: Path) -> None:
    rec = ResultsRecorder(str(tmp_path))
    for key, end in (("done", rec.on_trial_complete), ("failed", rec.on_trial_error)):
        trial = stub_trial(make_plan(key))
        for iteration in (1, 2):
            report = TrialReport(iteration=iteration, steps=10 * iteration, samples=80.0 * iteration, train_loss=5.0,
                                 metrics={"val_xent": 4.0}, best={"val_xent": 4.0}, num_params=100,
                                 non_embedding_params=40, flops_per_step=1.0e6, train_flops=1.0e7 * iteration,
                                 converged=False if iteration == 2 else None, final=iteration == 2,
                                 stop_reason="max_steps" if iteration == 2 else "")
            rec.on_trial_result(iteration, [trial], trial, report.to_result())
        end(2, [trial], trial)
    store = ResultsStore(str(tmp_path))
    rows = {r["trial_key"]: r for r in store.read_results().to_pylist()}
    assert {k: rows["done"][k] for k in ("non_embedding_params", "flops_per_step", "train_flops", "converged")} == \
        {"non_embedding_params": 40, "flops_per_step": 1.0e6, "train_flops": 2.0e7, "converged": False}
    assert rows["failed"]["status"] == "errored" and rows["failed"]["converged"] is None  # not judged
    assert [h["train_flops"] for h in store.read_history("done").to_pylist()] == [1.0e7, 2.0e7]
