"""Top-1 and top-5 learning curves are fitted separately from the results store, and a real image sweep on
Ray stores what those fits need."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fitting.curves import fit_store
from fitting.reference import reference_for
from fitting.store import ResultsStore
from orchestrator.runner import run_sweep
from orchestrator.spec import parse_spec

TOP1, TOP5 = "val_top1_err", "val_top5_err"


def write_sweep_rows(storage: Path, beta1: float = -0.309, beta5: float = -0.488) -> None:
    """Trial rows as the recorder writes them: 6 shards × 3 widths × 2 seeds of a ``resnet`` family whose best
    width follows top-1 ∝ m^beta1 and top-5 ∝ m^beta5 (other widths 10 % worse), with 2 % seed noise."""
    rng = np.random.default_rng(0)
    store = ResultsStore(str(storage))
    store.check_writable()
    for k in range(6):
        m = 1000.0 * 2**k
        for width in (16, 32, 64):
            penalty = 1.0 if width == 32 else 1.1
            config = f"image-resnet-{m:g}-{width}"
            for seed in range(2):
                noise = math.exp(rng.normal(0, 0.02))
                top1, top5 = 4.0 * m**beta1 * penalty * noise, 6.0 * m**beta5 * penalty * noise
                store.write_trial({
                    "trial_key": f"{config}-s{seed}", "config_key": config, "sweep": "rows", "domain": "image",
                    "family": "resnet", "fraction": 2.0 ** (k - 5), "train_size": m, "size_unit": "images",
                    "width": width, "num_params": 11_000 * width**2, "hparams": {"lr": 0.1}, "seed": seed,
                    "status": "completed", "stop_reason": "max_steps", "metric": TOP1, "best_value": top1,
                    "best_metrics": {TOP1: top1, TOP5: top5, "val_xent": 2 * top1}, "steps": 100,
                })


def test_top1_and_top5_are_fitted_separately_with_their_own_references(tmp_path: Path) -> None:
    write_sweep_rows(tmp_path)
    table = ResultsStore(str(tmp_path)).read_results()
    top1 = fit_store(table, n_boot=100)["image"]["resnet"]  # the primary metric
    top5 = fit_store(table, metric={"image": TOP5}, n_boot=100)["image"]["resnet"]
    assert (top1.metric, top5.metric) == (TOP1, TOP5)
    assert top1.beta_g == pytest.approx(-0.309, abs=0.03) and top5.beta_g == pytest.approx(-0.488, abs=0.03)
    for fit in (top1, top5):
        lo, hi = fit.beta_g_ci
        assert lo < fit.beta_g < hi < 0
        assert fit.size_unit == "images" and fit.n_trials == 36
        assert {p.best_width for p in fit.points} == {32}
    assert top1.reference.beta_g == -0.309 and top5.reference.beta_g == -0.488
    assert reference_for("image", "resnet", TOP5).beta_g == -0.488
    assert reference_for("image", "resnet_depth", TOP1).beta_g == -0.309
    assert reference_for("image", "resnet_depth", "val_xent").beta_g == -0.309  # the domain default (top-1)


@pytest.mark.slow
def test_real_digit_sweep_stores_both_metrics(ray_session: None, tmp_path: Path) -> None:
    spec = parse_spec({
        "name": "image-e2e", "storage": str(tmp_path / "runs"),
        "domains": {"image": {
            "data": {"train": "builtin:digits", "hflip": False},
            "families": {"resnet": {"widths": [8]}},
            "hparams": {"depth": 10, "batch_size": 32, "optimizer": "adam", "lr": 0.003, "weight_decay": 0.0},
            "shards": {"base": 2, "from": -3, "to": 0},
            "early_stopping": {"grace_period": 20, "reduction_factor": 3, "max_steps": 60, "eval_every": 20,
                               "patience": 3},
        }},
    })
    outcome = run_sweep(spec, progress=False)
    assert outcome.ran == 4
    table = ResultsStore(str(tmp_path / "runs")).read_results()
    rows = table.to_pylist()
    assert {r["status"] for r in rows} <= {"completed", "stopped"}
    assert sorted({r["train_size"] for r in rows}) == [180.0, 360.0, 719.0, 1438.0]  # images
    assert all(r["size_unit"] == "images" and r["metric"] == TOP1 for r in rows)
    for r in rows:
        best = json.loads(r["best_metrics"])
        assert set(best) == {TOP1, TOP5, "val_xent"} and best[TOP5] <= best[TOP1] == r["best_value"]
    top1 = fit_store(table, n_boot=50)["image"]["resnet"]
    top5 = fit_store(table, metric={"image": TOP5}, n_boot=50)["image"]["resnet"]
    assert top1.ok and top1.metric == TOP1 and top1.reference.beta_g == -0.309
    # digits are easy: top-5 error may be 0 at the larger shards, which a log-space fit must leave out
    assert top5.metric == TOP5 and top5.reference.beta_g == -0.488
    assert top5.ok or "≤ 0" in " ".join(top5.notes) or top5.reason
