"""The fast, fixed-seed version of ``benchmarks/adaptive.py``: one adaptive sweep through the real runner (Ray
Tune, the searcher, the results store) on a synthetic domain of known truth, against the grid on the same noise."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.adaptive import TARGET, grid_designs, grid_rows, run_adaptive, spec_data
from orchestrator.adaptive.policy import FamilyStatus
from orchestrator.dashboard_metrics import exponent_values
from orchestrator.spec import parse_spec

pytestmark = pytest.mark.slow

SHARDS = 7


def test_adaptive_sweep_reaches_the_target_with_less_compute_than_a_grid(
        ray_session: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        record_property: pytest.RecordProperty) -> None:
    rows = grid_rows(parse_spec(spec_data(str(tmp_path / "grid"), 0, SHARDS)))
    full = sum(r["cost"] for r in rows)
    reaching = [d for d in grid_designs(rows) if d[2] <= TARGET]
    cheapest = min(d[1] for d in reaching)

    out = run_adaptive(0, tmp_path, SHARDS, budget=full, progress=True)
    printed = capsys.readouterr().out
    assert out["stop"].startswith("targets met"), out["stop"]
    assert out["halfwidth"] <= TARGET
    lo, hi = out["ci"]
    assert lo <= out["truth"] <= hi
    assert out["compute"] <= 0.7 * cheapest, (out["compute"], cheapest)
    assert out["outcome"].ran == out["trials"] == len(out["state"]["proposed"])
    # every decision is logged with its reason; the display shows the live fit and the compute against the budget
    reasons = [d["reason"] for d in out["state"]["decisions"]]
    assert len(reasons) == out["trials"] and all(reasons)
    assert "synthetic-law/law: β_g " in printed and "samples_params" in printed and " of " in printed
    fam = FamilyStatus(**out["state"]["families"][0])
    assert set(exponent_values(fam)) >= {("beta_g", "value"), ("beta_g", "low"), ("beta_g", "high")}
    record_property("adaptive compute / cheapest grid reaching the target", round(out["compute"] / cheapest, 3))
