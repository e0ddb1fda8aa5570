"""Best configuration per shard: median over seeds, usable statuses only, any metric, fast."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fitting.aggregate import aggregate, load_rows, usable_trials
from fitting.store import RESULT_SCHEMA, ResultsStore


def row(size: float, width: int, seed: int, value: float, *, status: str = "completed", lr: float = 1e-3,
        extra: dict[str, float] | None = None) -> dict[str, Any]:
    config = f"sw-lm-word-{size:g}-{width}-{lr:g}"
    return {
        "trial_key": f"{config}-{seed}", "config_key": config, "trial_id": f"t{seed}", "sweep": "sw",
        "domain": "lm", "family": "word", "fraction": size / 1e6, "train_size": float(size),
        "size_unit": "words", "width": width, "num_params": 10 * width * width,
        "hparams": json.dumps({"lr": lr}), "seed": seed, "status": status, "metric": "val_loss",
        "best_value": value, "best_metrics": json.dumps({"val_loss": value, **(extra or {})}),
    }


def test_median_over_seeds_picks_the_right_configuration() -> None:
    # width 64: seeds 1.0, 1.0, 5.0 → median 1.0, mean 2.33; width 128: 1.5 ×3 → median = mean = 1.5.
    # The paper's rule (median) keeps width 64; a mean would have picked width 128.
    rows = [row(1000, 64, s, v) for s, v in enumerate([1.0, 1.0, 5.0])]
    rows += [row(1000, 128, s, 1.5) for s in range(3)]
    df = pd.DataFrame(rows)
    assert df.groupby("width")["best_value"].mean().idxmin() == 128
    (point,) = aggregate(df)
    assert point.best_width == 64 and point.best_error == 1.0
    assert point.best_params == 10 * 64 * 64
    assert point.n_trials == 6 and point.n_configs == 2
    assert sorted(point.seeds) == [0, 1, 2]
    assert point.trial_keys == [f"sw-lm-word-1000-64-0.001-{s}" for s in range(3)]
    assert point.hparams == {"lr": 0.001}


def test_even_number_of_seeds_uses_the_middle_mean() -> None:
    df = pd.DataFrame([row(1000, 64, s, v) for s, v in enumerate([1.0, 2.0, 3.0, 10.0])]
                      + [row(1000, 128, s, 2.4) for s in range(2)])
    (point,) = aggregate(df)
    assert point.best_width == 128 and point.best_error == 2.4  # 64 scores (2 + 3) / 2 = 2.5


def test_diverged_errored_and_nonfinite_rows_are_ignored() -> None:
    rows = [row(1000, 64, 0, 0.9), row(1000, 64, 1, 1.1),
            row(1000, 128, 0, 0.01, status="diverged"),
            row(1000, 256, 0, 0.001, status="errored"),
            row(1000, 512, 0, math.nan), row(1000, 512, 1, math.inf),
            row(1000, 32, 0, 0.95, status="stopped")]  # ASHA-stopped trials count
    trials = usable_trials(pd.DataFrame(rows))
    assert trials.n_ignored == 4 and len(trials.frame) == 3
    (point,) = aggregate(pd.DataFrame(rows))
    assert point.best_width == 32 and point.best_error == 0.95  # median(0.9, 1.1) = 1.0 > 0.95
    assert point.n_trials == 3


def test_points_sorted_by_size_one_per_shard() -> None:
    rows = [row(size, w, s, 10 * size**-0.3 * (1 + 0.01 * (w == 128)) * (1 + 0.001 * s))
            for size in (4000, 1000, 2000) for w in (64, 128) for s in range(3)]
    points = aggregate(pd.DataFrame(rows))
    assert [p.train_size for p in points] == [1000.0, 2000.0, 4000.0]
    assert all(p.best_width == 64 for p in points)
    assert points[0].fraction == pytest.approx(1000 / 1e6)


def test_metric_selects_another_value_from_best_metrics() -> None:
    rows = [row(1000, 64, 0, 1.0, extra={"token_error": 0.6}),
            row(1000, 128, 0, 2.0, extra={"token_error": 0.4}),
            row(1000, 256, 0, 0.5)]  # no token_error: not usable for that metric
    df = load_rows(pd.DataFrame(rows))
    assert aggregate(df)[0].best_width == 256
    trials = usable_trials(df, "token_error")
    assert trials.metric == "token_error" and trials.n_ignored == 1
    (point,) = aggregate(df, metric="token_error")
    assert point.best_width == 128 and point.best_error == 0.4
    # raw JSON strings work too
    assert aggregate(pd.DataFrame(rows), metric="token_error")[0].best_width == 128


def test_load_rows_parses_json_once_from_a_store_table(tmp_path) -> None:
    store = ResultsStore(str(tmp_path))
    for r in [row(1000, 64, 0, 1.0), row(1000, 64, 1, 1.2), row(2000, 64, 0, 0.8)]:
        store.write_trial(r)
    table = store.read_results()
    assert table.schema.names == RESULT_SCHEMA.names
    df = load_rows(table)
    assert isinstance(df["hparams"].iloc[0], dict) and df["hparams"].iloc[0] == {"lr": 0.001}
    assert isinstance(df["best_metrics"].iloc[0], dict)
    assert [p.best_error for p in aggregate(df)] == [1.1, 0.8]


def test_empty_input_gives_no_points() -> None:
    assert aggregate(pd.DataFrame([row(1000, 64, 0, 1.0, status="errored")])) == []


def test_ten_thousand_rows_aggregate_to_one_point_per_shard() -> None:
    rng = np.random.default_rng(0)
    rows = [row(1000 * 2**k, 32 * 2**w, s, float(np.exp(rng.normal(0, 0.05))), lr=lr)
            for k in range(10) for w in range(5) for lr in (1e-3, 3e-3, 1e-2, 3e-2) for s in range(50)]
    assert len(rows) == 10_000
    df = load_rows(pa.Table.from_pylist(rows))
    points = aggregate(df)  # its speed is a benchmark figure: benchmarks/fit_speed.py
    assert len(points) == 10


def test_trial_frame_carries_what_the_diagnostics_read(tmp_path) -> None:
    """The store's convergence columns reach the diagnostics through TrialSet.columns, non-embedding counts the
    frame and the point."""
    store = ResultsStore(str(tmp_path))
    for r in [row(1000, 64, 0, 1.0), row(1000, 32, 0, 1.3, status="stopped")]:
        store.write_trial({**r, "stop_reason": "max_steps", "converged": False, "non_embedding_params": 7})
    trials = usable_trials(store.read_results().to_pandas())  # JSON columns still text here
    f = pd.concat([trials.frame, trials.columns(("status", "stop_reason", "converged", "metric", "nope"))],
                  axis=1).sort_values("width")
    assert f["non_embedding_params"].tolist() == [7, 7] and f["nope"].tolist() == [None, None]
    assert f["status"].tolist() == ["stopped", "completed"] and f["converged"].tolist() == [False, False]
    assert f["stop_reason"].tolist() == ["max_steps"] * 2 and f["metric"].tolist() == ["val_loss"] * 2
    (point,) = aggregate(store.read_results().to_pandas())
    assert point.best_width == 64 and point.best_params_non_embedding == 7
    assert (point.not_converged, point.width_at_edge, point.hparam_at_edge) == (None, None, {})  # not diagnosed yet
    assert list(usable_trials(pd.DataFrame(columns=["train_size", "status"]), "x").frame.columns) == \
        list(trials.frame.columns)
