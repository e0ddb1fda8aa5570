"""Results store: atomic, idempotent one-file-per-trial rows; broken files are skipped, never fatal."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fitting.store import ResultsStore


def row(key: str, **over: object) -> dict:
    now = datetime.now(tz=UTC)
    base = {
        "trial_key": key, "config_key": "c1", "trial_id": "abc", "sweep": "s", "domain": "lm", "family": "word",
        "fraction": 0.5, "train_size": 1000.0, "size_unit": "words", "width": 32, "num_params": 12345,
        "hparams": {"lr": 0.01}, "seed": 0, "status": "completed", "stop_reason": "patience",
        "metric": "val_xent", "best_value": 4.2, "best_metrics": {"val_xent": 4.2, "val_ppl": 66.7},
        "final_metrics": {"val_xent": 4.3}, "steps": 300, "samples": 9000.0, "iterations": 6,
        "wall_seconds": 3.5, "started_at": now, "finished_at": now, "code_version": "test", "error": None,
    }
    base.update(over)
    return base


def test_roundtrip_and_idempotent_rewrite(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    store.check_writable()
    history = [{"iteration": i, "steps": 50 * i, "samples": 1500.0 * i, "train_loss": 5.0 - i,
                "metrics": {"val_xent": 5.0 - i / 2}, "time": float(i)} for i in range(1, 4)]
    store.write_trial(row("a"), history)
    store.write_trial(row("b", best_value=3.9))
    store.write_trial(row("a", best_value=4.0))  # a resumed trial rewrites its own row
    table = store.read_results()
    assert sorted(table["trial_key"].to_pylist()) == ["a", "b"]
    values = dict(zip(table["trial_key"].to_pylist(), table["best_value"].to_pylist(), strict=True))
    assert values == {"a": 4.0, "b": 3.9}
    assert store.read_history("a").num_rows == 3
    assert not [p for p in (tmp_path / "results").iterdir() if p.name.startswith(".")]  # no temp files left


def test_corrupt_and_foreign_files_are_skipped_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = ResultsStore(str(tmp_path))
    store.write_trial(row("good"))
    (tmp_path / "results" / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), tmp_path / "results" / "foreign.parquet")
    warnings: list[str] = []
    with caplog.at_level(logging.WARNING):
        table = store.read_results(warnings)
    assert table["trial_key"].to_pylist() == ["good"]
    assert len(warnings) == 2 and any("broken.parquet" in w for w in warnings)
    assert any("foreign.parquet" in w and "missing columns" in w for w in warnings)
    assert "broken.parquet" in caplog.text


def test_finished_keys_excludes_errored(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    store.write_trial(row("ok"))
    store.write_trial(row("div", status="diverged", best_value=None))
    store.write_trial(row("err", status="errored", error="boom"))
    assert store.finished_keys() == {"ok", "div"}


def test_bad_status_and_unwritable_storage_fail_loudly(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    with pytest.raises(ValueError, match="status must be one of"):
        store.write_trial(row("x", status="fine"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        ResultsStore(str(blocker / "storage")).check_writable()


def test_empty_store_reads_as_empty_table(tmp_path: Path) -> None:
    assert ResultsStore(str(tmp_path / "nothing-yet")).read_results().num_rows == 0


def test_cost_and_convergence_columns_round_trip_and_read_as_null_from_older_files(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fitting.store import HISTORY_SCHEMA, RESULT_SCHEMA

    store = ResultsStore(str(tmp_path))
    store.write_trial(row("new", non_embedding_params=2345, train_flops=3.0e12, flops_per_step=1.0e10,
                          converged=False),
                      [{"iteration": 1, "steps": 300, "samples": 9000.0, "train_loss": 4.0, "metrics": {},
                        "time": 1.0, "train_flops": 3.0e12}])
    # files written before these columns existed: the same row and history without them
    older = [n for n in RESULT_SCHEMA.names
             if n not in ("non_embedding_params", "train_flops", "flops_per_step", "converged")]
    old = pa.Table.from_pylist([{**row("old", hparams="{}", best_metrics="{}", final_metrics="{}")}],
                               schema=pa.schema([RESULT_SCHEMA.field(n) for n in older]))
    pq.write_table(old, tmp_path / "results" / "old.parquet")
    old_history = [{"trial_key": "old", "iteration": 1, "steps": 5, "samples": 1.0, "train_loss": 1.0,
                    "metrics": "{}", "time": 1.0}]
    pq.write_table(pa.Table.from_pylist(old_history), tmp_path / "history" / "old.parquet")
    table = store.read_results()
    assert table.schema.field("converged").type == pa.bool_() and "train_flops" in RESULT_SCHEMA.names
    rows = {r["trial_key"]: r for r in table.to_pylist()}
    assert {k: rows["new"][k] for k in ("non_embedding_params", "train_flops", "flops_per_step", "converged")} == \
        {"non_embedding_params": 2345, "train_flops": 3.0e12, "flops_per_step": 1.0e10, "converged": False}
    assert {k: rows["old"][k] for k in ("non_embedding_params", "train_flops", "flops_per_step", "converged")} == \
        {"non_embedding_params": None, "train_flops": None, "flops_per_step": None, "converged": None}
    assert store.read_history("new")["train_flops"].to_pylist() == [3.0e12]
    old_read = store.read_history("old")
    assert old_read.schema == HISTORY_SCHEMA and old_read["train_flops"].to_pylist() == [None]
