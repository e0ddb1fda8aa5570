"""Two families compared (fitting.compare): the test holds its level and finds Δβ_g = 0.05 (fast fixed-seed
version of benchmarks/compare.py), the data multiplier matches the laws, stores and bad names are handled."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.compare import BASE, LawRegime
from fitting.compare import CompareError, compare_rows, compare_store
from fitting.store import ResultsStore
from tests.fitting.synthetic import sweep_batch


def pair(delta: float, replicates: int, seed: int, **regime: int) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    shape = {**BASE, **regime}
    a = sweep_batch(LawRegime(**shape), replicates, seed=seed)
    b = sweep_batch(LawRegime(**shape, amp=4.0, exponent=-0.3 + delta), replicates, seed=seed + 1)
    return [(a.rows(i, family="a"), b.rows(i, family="b")) for i in range(replicates)]


def test_level_and_power_on_fixed_seeds() -> None:
    null = [compare_rows(a, b) for a, b in pair(0.0, 12, seed=7)]
    assert sum(c.equal_rejected for c in null) <= 2
    assert all(c.test.startswith("paired") for c in null)
    alt = [compare_rows(a, b) for a, b in pair(-0.05, 6, seed=8)]
    assert sum(c.equal_rejected for c in alt) >= 5
    assert np.mean([c.delta_beta for c in alt]) == pytest.approx(-0.05, abs=0.01)


def test_multiplier_reads_the_offset_as_data() -> None:
    a, b = pair(0.0, 1, seed=3)[0]
    c = compare_rows(a, b)
    # b = 0.8·a at every size: b reaches a's error with 0.8^(1/0.3) ≈ 0.48× the data
    assert c.multiplier == pytest.approx(0.8 ** (1 / 0.3), rel=0.15)
    lo, hi = c.multiplier_ci
    assert lo < c.multiplier < hi
    assert "b reaches a's error" in c.sentence() and "× the data" in c.sentence()
    assert c.to_dict()["equal_rejected"] == c.equal_rejected


def test_different_sizes_use_the_shared_slope_test() -> None:
    a, b = pair(0.0, 1, seed=4)[0]
    b = b[b["train_size"] > b["train_size"].min()]  # one shard fewer
    c = compare_rows(a, b)
    assert c.test.startswith("likelihood ratio") and c.dof == 8 + 7 - 4
    assert c.delta_beta_ci[0] < 0 < c.delta_beta_ci[1]


def _write(storage: Path, rows: pd.DataFrame) -> None:
    store, now = ResultsStore(str(storage)), datetime.now(tz=UTC)
    for row in rows.to_dict("records"):
        store.write_trial({**row, "started_at": now, "finished_at": now})


def test_one_storage_two_storages_and_clear_errors(tmp_path: Path) -> None:
    a, b = pair(-0.1, 1, seed=5, shards=5, widths=3, lrs=1, seeds=1)[0]  # 15 trials a family
    _write(tmp_path / "one", pd.concat([a, b]))
    _write(tmp_path / "two", b)
    same = compare_store(str(tmp_path / "one"), "a,b")
    assert same.domain == "lm" and same.equal_rejected
    across = compare_store(str(tmp_path / "one"), "a,b", storage2=str(tmp_path / "two"))
    assert across.delta_beta == pytest.approx(same.delta_beta)
    with pytest.raises(CompareError, match=r"families: 'nope' has no trials .* known: a, b"):
        compare_store(str(tmp_path / "one"), "a,nope")
    with pytest.raises(CompareError, match="exactly two"):
        compare_store(str(tmp_path / "one"), "a")
    with pytest.raises(CompareError, match="domain: family 'a' has no trials in domain 'image'"):
        compare_store(str(tmp_path / "one"), "a,b", domain="image")


def test_summary_lines_for_the_sweep_table() -> None:
    from fitting.compare import summary_lines
    from tests.fitting.surface_synthetic import Truth, surface_sweep

    rng = np.random.default_rng(2)
    rows = pd.concat([surface_sweep(Truth(), rng, family="lstm"),
                      surface_sweep(Truth(A=14.0), rng, family="transformer"),
                      surface_sweep(Truth(), rng, family="mlp", domain="image", shards=3)])
    lines = summary_lines(rows, n_boot=20)
    assert lines[0].startswith("surface")
    assert lines[1].startswith("  image/mlp: no surface: a surface needs")
    assert lines[2].startswith("  lm/lstm: β_p 0.") and "compute-optimal N_opt ∝ C^0." in lines[2]
    assert "6ND" in lines[2]
    assert lines[-1].startswith("comparison: lm: transformer vs lstm: Δβ_g")
    assert len(lines) == 5  # image has one family: no comparison line


def test_different_primary_metrics_are_refused() -> None:
    a, b = pair(0.0, 1, seed=6, shards=5, widths=3, lrs=1, seeds=1)[0]
    b = b.assign(metric="val_bpc")
    with pytest.raises(CompareError, match="metric: 'a' reports 'val_loss' and 'b' reports 'val_bpc'"):
        compare_rows(a, b)
