"""Placement and GPU-slot utilization from hand-made trial intervals, and from a real results store with old rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fitting.store import ResultsStore
from orchestrator.utilization import (
    Span,
    busy_fraction,
    oversubscribed,
    peak_gpu_load,
    peak_node_occupancy,
    queued_window,
    spans,
    started_per_second,
)


def span(node: str, gpu_ids: str, gpu: float, start: float, end: float) -> Span:
    return Span(node=node, gpu_ids=tuple(gpu_ids.split(",")) if gpu_ids else (), gpu=gpu, start=start, end=end)


def test_four_quarter_gpu_trials_fill_one_gpu_and_a_fifth_would_not_fit() -> None:
    quarters = [span("a", "0", 0.25, 0, 10) for _ in range(4)]
    assert peak_gpu_load(quarters) == {("a", "0"): 1.0}
    assert peak_node_occupancy(quarters) == {"a": 1.0}
    assert oversubscribed(quarters, {"a": 1}) == []
    fifth = [*quarters, span("a", "0", 0.25, 9, 12)]
    assert peak_gpu_load(fifth)[("a", "0")] == pytest.approx(1.25)
    assert oversubscribed(fifth, {"a": 1}) == ["GPU 0 of node a peaked at 1.250", "node a peaked at 1.250 GPUs of 1"]


def test_back_to_back_trials_do_not_overlap() -> None:
    # one ends at t=5 exactly when the next starts: a whole-GPU trial after four quarters is fine
    items = [*(span("a", "0", 0.25, 0, 5) for _ in range(4)), span("a", "0", 1.0, 5, 9)]
    assert peak_gpu_load(items)[("a", "0")] == 1.0
    assert oversubscribed(items, {"a": 1}) == []


def test_node_occupancy_sums_its_gpus_and_whole_gpu_trials_need_whole_ids() -> None:
    items = [span("a", "0", 1.0, 0, 4), span("a", "1", 0.5, 1, 3), span("a", "1", 0.5, 2, 6),
             span("b", "0,1", 2.0, 0, 4)]
    assert peak_node_occupancy(items) == {"a": 2.0, "b": 2.0}
    assert peak_gpu_load(items) == {("a", "0"): 1.0, ("a", "1"): 1.0, ("b", "0"): 1.0, ("b", "1"): 1.0}
    assert oversubscribed(items, {"a": 2, "b": 2}) == []
    assert oversubscribed(items, {"a": 1, "b": 2}) == ["node a peaked at 2.000 GPUs of 1"]
    wrong = [span("c", "0", 2.0, 0, 1), span("c", "", 0.25, 0, 1), span("c", "0,1", 0.5, 2, 3)]
    assert oversubscribed(wrong, {"c": 2}) == [
        "GPU 0 of node c peaked at 2.000", "node c peaked at 2.250 GPUs of 2",
        "trial on node c asked for 2.0 GPUs and got ids ['0']",
        "trial on node c asked for 0.25 GPU and got no GPU id",
        "trial on node c asked for 0.5 GPU and got ids ['0', '1']",
    ]


def test_busy_fraction_counts_gpu_seconds_while_trials_are_queued() -> None:
    # 2 GPUs; trials start at 0, 0, 10 and 10 (the window is [0, 10]); the second GPU idles from 6 to 10
    items = [span("a", "0", 1.0, 0, 10), span("b", "0", 0.5, 0, 6), span("b", "0", 0.5, 0, 10),
             span("a", "0", 1.0, 10, 20)]
    assert queued_window(items) == (0, 10)
    assert started_per_second(items) == pytest.approx(3 / 10)  # 4 starts in 10 s: 3 after the first
    # held: 10 (GPU a) + 3 + 5 (GPU b) of 2 x 10 GPU-seconds; the trial starting at 10 adds nothing
    assert busy_fraction(items, total_gpus=2) == pytest.approx(18 / 20)
    assert busy_fraction(items, total_gpus=2, window=(10, 20)) == pytest.approx(10 / 20)
    with pytest.raises(ValueError, match="empty window"):
        busy_fraction(items[:2], total_gpus=2)
    with pytest.raises(ValueError, match="no trial"):
        busy_fraction([], total_gpus=2)


def test_a_gap_between_trials_lowers_utilization_by_its_share() -> None:
    # one slot, ten 9-second trials with a 1-second gap between them: 90 % while queued
    items = [span("a", "0", 1.0, 10.0 * i, 10.0 * i + 9) for i in range(10)]
    assert busy_fraction(items, total_gpus=1) == pytest.approx(81 / 90)


def _row(key: str, **placement: object) -> dict:
    now = datetime.now(tz=UTC)
    return {"trial_key": key, "config_key": "c", "trial_id": key, "sweep": "s", "domain": "lm", "family": "word",
            "fraction": 1.0, "train_size": 100.0, "size_unit": "words", "width": 8, "num_params": 10, "hparams": {},
            "seed": 0, "status": "completed", "stop_reason": "max_steps", "metric": "val_xent", "best_value": 1.0,
            "best_metrics": {}, "final_metrics": {}, "steps": 10, "samples": 10.0, "iterations": 1, "restores": 0,
            "wall_seconds": 1.0, "started_at": now, "finished_at": now, "code_version": "t", "error": None,
            **placement}


def test_rows_from_the_store_old_files_without_placement_read_as_nulls_and_are_left_out(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    def at(seconds: float) -> datetime:
        return datetime.fromtimestamp(1_800_000_000 + seconds, tz=UTC)

    store.write_trial(_row("new-a", node_id="n1", gpu_ids=["0"], run_started_at=at(0), run_ended_at=at(10)))
    store.write_trial(_row("new-b", node_id="n1", gpu_ids=["0"], run_started_at=at(5), run_ended_at=at(10.5)))
    # a file written before the placement columns existed
    store.write_trial(_row("old"))
    old = pq.read_table(tmp_path / "results" / "old.parquet")
    old = old.drop_columns(["node_id", "gpu_ids", "run_started_at", "run_ended_at"])
    pq.write_table(old, tmp_path / "results" / "old.parquet")
    assert "node_id" not in pq.read_schema(tmp_path / "results" / "old.parquet").names

    table = store.read_results()
    assert table.num_rows == 3 and table.schema.field("gpu_ids").type == pa.list_(pa.string())
    rows = {r["trial_key"]: r for r in table.to_pylist()}
    assert rows["old"]["node_id"] is None and rows["old"]["run_started_at"] is None
    assert rows["new-b"]["gpu_ids"] == ["0"]
    items = sorted(spans(rows.values(), lambda row: 0.5), key=lambda s: s.start)
    assert [s.end - s.start for s in items] == [10.0, 5.5]  # sub-second times survive the round trip
    assert peak_gpu_load(items) == {("n1", "0"): 1.0}
    # window [0, 5]: only the first half-GPU trial holds the GPU until the second starts
    assert busy_fraction(items, total_gpus=1) == pytest.approx(0.5)
