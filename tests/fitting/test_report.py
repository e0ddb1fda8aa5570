"""Table and JSON output, and the paper's reference exponents they compare with."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from fitting.curves import CurveFit, fit_store
from fitting.reference import REFERENCES, reference_for
from fitting.report import format_table, to_json
from fitting.store import ResultsStore
from tests.fitting import diagnostic_sweep


def family_rows(domain: str, family: str, law, n_shards: int, seed: int) -> pd.DataFrame:
    """A small sweep: per shard 3 model sizes × 3 seeds; the middle size (∝ m^0.7) reaches the law."""
    rng = np.random.default_rng(seed)
    rows = []
    for m in 1000.0 * 2.0 ** np.arange(n_shards):
        for ratio in (0.5, 1.0, 2.0):
            key = f"{domain}-{family}-{m:g}-{ratio:g}"
            for s in range(3):
                value = float(law(m) * (1 + 0.1 * (ratio != 1.0)) * np.exp(rng.normal(0, 0.02)))
                rows.append({"trial_key": f"{key}-{s}", "config_key": key, "domain": domain, "family": family,
                             "fraction": m / 1e6, "train_size": m, "size_unit": "words",
                             "width": int(64 * ratio), "num_params": round(50 * m**0.7 * ratio), "seed": s,
                             "hparams": "{}", "status": "completed", "metric": "val_loss",
                             "best_value": value, "best_metrics": json.dumps({"val_loss": value})})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fits() -> dict[str, dict[str, CurveFit]]:
    rows = pd.concat([
        family_rows("lm", "word", lambda m: 5.0 * m**-0.3, 8, seed=0),
        family_rows("image", "resnet", lambda m: 20.0 * m**-0.5 + 0.05, 10, seed=1),
        family_rows("lm", "char_rhn", lambda m: 5.0 * m**-0.3, 2, seed=2),  # too few shards
    ], ignore_index=True)
    return fit_store(rows, form="auto", n_boot=200)


def test_format_table_has_one_row_per_family_and_the_reason_for_unfitted(fits) -> None:
    text = format_table(fits)
    lines = text.splitlines()
    header = lines[0]
    for col in ("domain", "family", "metric", "points", "β_g [95% CI]", "power β_g", "paper β_g", "α", "γ",
                "β_p [95% CI]", "paper β_p", "R²", "form", "backtest"):
        assert col in header
    word = next(line for line in lines if line.startswith("lm ") and " word " in line)
    fit = fits["lm"]["word"]
    lo, hi = fit.beta_g_ci
    assert f"{fit.beta_g:.3f} [{lo:.3f}, {hi:.3f}]" in word
    assert "-0.066" in word and "0.700" in word  # paper β_g and β_p for word LMs
    resnet = next(line for line in lines if line.startswith("image"))
    assert "-0.309" in resnet and "0.573" in resnet and " floor " in resnet
    image = fits["image"]["resnet"]
    power_beta = image.fit.candidates["power"].beta
    assert power_beta > image.beta_g and f"{power_beta:.3f}" in resnet  # the paper's kind of slope, shallower
    # 10 shards doubling: the longest backtest held out 3 shards, 8× beyond what it fitted
    assert re.search(r"  8× \d+% (in|out)  ", resnet), resnet
    assert any(line.startswith("predictions and backtests: average of") for line in lines)
    assert any(line.startswith("exponent intervals (") for line in lines)
    char = next(line for line in lines if "char_rhn" in line and line.startswith("lm"))
    assert "-0.094" in char  # reference shown even without a fit
    assert any(line.startswith("lm/char_rhn: only 2 usable shard") for line in lines)
    assert format_table([fit]).split("\n\n")[0].count("\n") == 2  # header, rule, one row; then the notes


def test_power_form_shows_a_dash_for_gamma(fits) -> None:
    fit = fits["lm"]["word"]
    if fit.form != "power":
        pytest.skip("auto chose a floor on this draw")
    row = format_table([fit]).splitlines()[2]
    assert " – " in row


def test_to_json_is_strict_json_with_the_documented_keys(fits) -> None:
    fits["lm"]["word"].r2 = math.nan  # a NaN anywhere must become null
    out = to_json(fits)
    text = json.dumps(out, allow_nan=False)
    word = out["lm"]["word"]
    for key in ("beta_g", "beta_g_ci", "alpha", "gamma", "beta_p", "beta_p_ci", "r2", "points_used", "form",
                "metric", "size_unit", "reference", "interval_method", "points"):
        assert key in word
    assert word["r2"] is None and '"r2": null' in text
    assert word["points_used"] == 8 and len(word["beta_g_ci"]) == 2
    assert word["reference"]["beta_g"] == -0.066
    char = out["lm"]["char_rhn"]
    assert char["fitted"] is False and "need 3" in char["reason"] and char["beta_g"] is None
    assert out["image"]["resnet"]["form"] == "floor"
    resnet = out["image"]["resnet"]
    assert [bt["held_out"] for bt in resnet["backtest"]] == [1, 2, 3]
    assert [bt["size_ratio"] for bt in resnet["backtest"]] == pytest.approx([2.0, 4.0, 8.0])
    assert all(isinstance(bt["inside"], bool) and bt["level"] == 0.9 for bt in resnet["backtest"])
    assert resnet["beta_g_power"] > resnet["beta_g"] and resnet["prediction_method"].startswith("average of")
    assert word["beta_g_power"] == pytest.approx(word["beta_g"]) if word["form"] == "power" else True
    assert word["reference"]["form"] == "power" and char["backtest"] == []


def test_reference_lookup() -> None:
    assert reference_for("lm", "word").beta_g == -0.066
    assert reference_for("lm", "char_rhn").beta_g == -0.094
    assert reference_for("lm", "rhn_big").beta_g == -0.066  # unknown family → word LM default
    assert reference_for("image", "resnet", "top5_error").beta_g == -0.488
    assert reference_for("image", "wide_resnet", "val_top1_err").beta_g == -0.309
    assert reference_for("image", "resnet").beta_p == 0.573
    assert reference_for("nmt", "lstm_attention", "token_xent").beta_p == 0.68
    assert reference_for("speech", "ds2", "cer").beta_g == -0.299
    assert reference_for("tabular", "mlp") is None
    assert all(ref.source for ref in REFERENCES)
    json.dumps([ref.to_dict() for ref in REFERENCES], allow_nan=False)


def test_table_and_json_show_the_diagnostics_and_their_warnings(tmp_path) -> None:
    store = ResultsStore(str(tmp_path / "storage"))
    diagnostic_sweep.write(store, diagnostic_sweep.rows())
    fits = fit_store(store.read_results(), n_boot=0, history=store.read_history)
    lines = format_table(fits).splitlines()
    assert "β_p no-emb" in lines[0] and lines[0].endswith("checks")
    row = next(line for line in lines if line.startswith("lm "))
    assert row.endswith("width max 2/5, width min 1/5, not conv 1/5, lr edge 1/5")
    assert "lm/char: best width is the largest at 2 of 5 shards: β_p is censored — add wider models" \
        in [line.removeprefix("warning: ") for line in lines if line.startswith("warning: ")]
    assert sum(line.startswith("warning: lm/char: ") for line in lines) == 4
    assert any(line.startswith("β_p no-emb (lm/char): β_p without embeddings not fitted: the store has no")
               for line in lines)
    char = to_json(fits)["lm"]["char"]
    json.dumps(char, allow_nan=False)
    assert char["warnings"] == fits["lm"]["char"].diagnostics.warnings and len(char["warnings"]) == 4
    assert char["diagnostics"]["width_at_largest"] == 2 and char["diagnostics"]["hparam_at_edge"] == {"lr": 1}
    assert char["beta_p_non_embedding"] is None and "non_embedding_params" in char["beta_p_non_embedding_reason"]
    last = char["points"][-1]
    assert (last["width_at_edge"], last["width_edge"], last["hparam_at_edge"]) == (True, "largest", {"lr": "high"})
    assert last["not_converged"] is True and last["trial_converged"] == [False]
    assert char["excluded_points"] == []


def test_checks_cell_says_ok_when_nothing_is_flagged(fits) -> None:
    fit = fits["lm"]["word"]  # three widths around the best, no searched hyperparameter, convergence unknown
    assert fit.diagnostics.width_at_largest == fit.diagnostics.width_at_smallest == 0
    n = len(fit.points)
    lines = format_table([fit]).splitlines()
    assert lines[2].endswith(f"conv ? {n}/{n}")
    assert any(line.startswith(f"conv ? (lm/word {n}/{n}): shards whose best configuration's convergence is "
                               "unknown") for line in lines)
    rows = family_rows("lm", "word", lambda m: 5.0 * m**-0.3, 5, seed=0).assign(stop_reason="patience")
    patient = fit_store(rows, n_boot=0)["lm"]["word"]  # stopped by patience: converged
    assert format_table(patient).splitlines()[2].endswith("  ok") and patient.diagnostics.warnings == []
