"""fit_family / fit_store on synthetic sweeps whose true exponents are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from fitting.curves import fit_family, fit_store, predict
from tests.fitting.synthetic import SIZES, floor, power, sweep


@pytest.mark.parametrize("seed", range(3))
def test_power_law_family_recovers_exponents_with_covering_intervals(seed: int) -> None:
    fit = fit_family(sweep(power, seed=seed), form="power", n_boot=500, seed=seed)
    assert fit.ok and fit.reason == ""
    assert fit.form == "power" and fit.gamma == 0.0 and fit.intervals["gamma"] is None
    assert abs(fit.beta_g + 0.3) <= 0.03
    lo, hi = fit.beta_g_ci
    assert lo < -0.3 < hi, fit.beta_g_ci  # covers the truth
    assert 0.005 < hi - lo < 0.15  # non-degenerate, yet informative
    assert fit.intervals["alpha"][0] < fit.alpha < fit.intervals["alpha"][1]
    assert fit.beta_p == pytest.approx(0.7, abs=0.01)
    plo, phi = fit.beta_p_ci
    assert plo - 1e-3 <= 0.7 <= phi + 1e-3
    assert fit.sigma == pytest.approx(50.0, rel=0.1)
    assert fit.interval_method.startswith("Student-t")
    assert fit.n_trials == 240 and len(fit.points) == 8 and fit.excluded == []
    assert fit.metric == "val_loss" and fit.size_unit == "words"
    assert fit.reference is not None and fit.reference.beta_g == -0.066
    assert fit.r2 > 0.99


def test_auto_form_on_power_law_family_keeps_the_exponent() -> None:
    fit = fit_family(sweep(power, seed=5), n_boot=200)
    assert abs(fit.beta_g + 0.3) <= 0.05, fit.form_reason
    assert fit.form in ("power", "floor") and fit.form_reason


def test_floor_family_recovers_gamma() -> None:
    sizes = 1000.0 * 2.0 ** np.arange(10)
    fit = fit_family(sweep(floor, sizes, seed=1), n_boot=300)
    assert fit.form == "floor", fit.form_reason
    assert abs(fit.beta_g + 0.5) <= 0.08
    assert fit.gamma == pytest.approx(0.05, rel=0.3)
    glo, ghi = fit.intervals["gamma"]
    assert glo < 0.05 < ghi and ghi - glo > 1e-3
    blo, bhi = fit.beta_g_ci
    assert blo < -0.5 < bhi


def test_too_few_shards_gives_no_fit_and_a_reason() -> None:
    fit = fit_family(sweep(power, SIZES[:2]))
    assert fit.fit is None and not fit.ok
    assert "2 usable shard" in fit.reason and "need 3" in fit.reason
    assert fit.beta_g is None and fit.intervals == {}
    json.dumps(fit.to_dict(), allow_nan=False)
    with pytest.raises(ValueError):
        predict(fit, size=1e6)


def test_failed_trials_leave_too_few_shards() -> None:
    df = sweep(power, SIZES[:4])
    df.loc[df["train_size"] >= SIZES[2], "status"] = "errored"
    fit = fit_family(df)
    assert fit.fit is None and fit.n_ignored == 60 and "need 3" in fit.reason


def test_diverged_errored_and_nan_rows_do_not_move_the_fit() -> None:
    clean = sweep(power, seed=2)
    bad = clean.iloc[::7].copy()
    bad["best_value"] = 1e-6  # would win every shard if counted
    bad["status"] = ["diverged", "errored"] * (len(bad) // 2) + ["diverged"] * (len(bad) % 2)
    nan = clean.iloc[::11].copy()
    nan["best_value"] = math.nan
    rows = pd.concat([clean, bad, nan.assign(trial_key=nan["trial_key"] + "-nan")], ignore_index=True)
    a, b = fit_family(clean, n_boot=0), fit_family(rows, n_boot=0)
    assert b.n_ignored == len(bad) + len(nan)
    assert b.beta_g == pytest.approx(a.beta_g, abs=1e-12)


def test_single_trial_per_shard_gets_a_t_interval() -> None:
    df = sweep(power, seeds=1, noise=0.03, seed=4)
    df = df.sort_values("best_value").drop_duplicates("train_size")  # keep one trial per shard
    fit = fit_family(df, form="power", n_boot=400)
    assert fit.interval_method.startswith("Student-t (3.4 dof, Bell–McCaffrey)")  # 8 shards: HC2 + BM dof
    lo, hi = fit.beta_g_ci
    assert lo < fit.beta_g < hi and hi - lo > 1e-3


def test_plateau_shards_are_excluded_and_reported() -> None:
    sizes = 1000.0 * 2.0 ** np.arange(10)
    fit = fit_family(sweep(lambda m: np.minimum(0.9, 0.9 * (m / sizes[3]) ** -0.4), sizes, seed=3),
                     form="power", n_boot=100)
    assert [p.train_size for p in fit.excluded] == list(sizes[:3])
    assert [p.train_size for p in fit.points] == list(sizes[3:])
    assert abs(fit.beta_g + 0.4) <= 0.03
    assert any("plateau" in note for note in fit.notes)
    # every point is diagnosed, the counts cover the fitted ones: 5 sizes around the best, lr searched over 2
    assert all(p.width_at_edge is False and p.hparam_at_edge == {"lr": "low"} for p in (*fit.points, *fit.excluded))
    assert fit.diagnostics.n_points == 7 and fit.diagnostics.hparam_at_edge == {"lr": 7}
    assert fit.to_dict()["diagnostics"]["convergence_unknown"] == 7  # no stop_reason, no history: unknown


def test_other_metric_from_best_metrics() -> None:
    fit = fit_family(sweep(power), metric="ppl", form="power", n_boot=0)
    assert fit.metric == "ppl" and fit.ok
    assert fit.points[0].best_error == pytest.approx(math.exp(power(SIZES[0])), rel=0.05)


def test_predict_error_and_size_with_intervals() -> None:
    fit = fit_family(sweep(floor, 1000.0 * 2.0 ** np.arange(10), seed=1), n_boot=300)
    at = predict(fit, size=1e7)  # 19.5× beyond the largest shard
    assert at.quantity == "error" and at.error == pytest.approx(fit.extrapolation.predict(1e7))
    assert at.interval[0] <= floor(1e7) <= at.interval[1] and at.error == pytest.approx(floor(1e7), rel=0.1)
    assert at.level == fit.level and at.method.startswith("average of")
    assert predict(fit, size=1e7, level=0.9).interval[1] < at.interval[1]
    need = predict(fit, target_error=0.08)
    assert need.quantity == "size"
    assert float(fit.extrapolation.predict(need.size)) == pytest.approx(0.08, rel=1e-6)
    assert need.interval[0] <= need.size <= need.interval[1]
    assert predict(fit, target_error=fit.gamma / 2).size == math.inf  # below the floor
    json.dumps(need.to_dict(), allow_nan=False)
    with pytest.raises(ValueError):
        predict(fit)
    with pytest.raises(ValueError, match="size"):
        predict(fit, size=-1.0)


def test_fit_store_groups_domains_and_families() -> None:
    rows = pd.concat([sweep(power), sweep(power, family="char", seed=1),
                      sweep(floor, domain="image", family="resnet", seed=2)], ignore_index=True)
    fits = fit_store(rows, n_boot=50)
    assert set(fits) == {"image", "lm"} and set(fits["lm"]) == {"char", "word"}
    assert fits["lm"]["char"].reference.beta_g == -0.094
    assert fits["image"]["resnet"].reference.beta_g == -0.309
    with pytest.raises(ValueError):
        fit_family(rows)


def test_to_dict_is_strict_json() -> None:
    fit = fit_family(sweep(floor, seed=3), n_boot=100)
    fit.r2 = math.nan  # NaN anywhere must come out as null
    text = json.dumps(fit.to_dict(), allow_nan=False)
    assert '"r2": null' in text and "replicates" not in text



def test_one_width_per_shard_fits_no_model_size_law() -> None:
    df = sweep(power, seed=5)
    fit = fit_family(df[df["width"] == 64], form="power", n_boot=100)
    assert fit.beta_g is not None and fit.beta_p is None and fit.beta_p_ci is None
    assert any("one model width" in note for note in fit.notes)
