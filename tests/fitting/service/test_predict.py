"""Predictions both ways, with ordered intervals; the model-size prediction of the fitting library."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import pytest

from fitting.aggregate import load_rows
from fitting.curves import fit_family, predict, predict_params
from tests.fitting.service.helpers import Live, trial_rows, write


def _ordered(ci: dict, value: float) -> None:
    assert ci["lo"] is not None and ci["hi"] is not None
    assert ci["lo"] <= value <= ci["hi"], (ci, value)


def test_size_needed_for_a_target_error_and_error_at_a_size(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows())  # ε = 5·m^-0.3, best model 20·m^0.6 parameters
    r = srv.get("/curves/lm/predict", target_error=0.1)
    assert r.status_code == 200
    (p,) = r.json()["predictions"]
    truth = (0.1 / 5.0) ** (1 / -0.3)
    assert p["given"] == "target_error" and p["error"] == 0.1 and p["reachable"] is True
    assert p["train_size"] == pytest.approx(truth, rel=0.25) and p["extrapolation"] is True
    _ordered(p["train_size_ci"], p["train_size"])
    assert p["best_params"] == pytest.approx(20.0 * truth**0.6, rel=0.3)
    _ordered(p["best_params_ci"], p["best_params"])
    assert p["size_unit"] == "words" and p["metric_unit"] == "nats/word" and p["level"] == 0.95

    (q,) = srv.get("/curves/lm/predict", train_size=1e6).json()["predictions"]
    assert q["given"] == "train_size" and q["train_size"] == 1e6
    assert q["error"] == pytest.approx(5.0 * 1e6**-0.3, rel=0.05)
    _ordered(q["error_ci"], q["error"])
    _ordered(q["best_params_ci"], q["best_params"])
    inside = srv.get("/curves/lm/predict", train_size=5000).json()["predictions"][0]
    assert inside["extrapolation"] is False


def test_target_below_the_floor_is_unreachable(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(law=lambda m: 30.0 * m**-0.5 + 0.1, noise=0.005))
    fit = srv.get("/curves/lm", form="floor").json()["families"][0]["fit"]
    assert fit["form"] == "floor" and fit["gamma"] == pytest.approx(0.1, rel=0.3)
    (p,) = srv.get("/curves/lm/predict", target_error=0.05, form="floor").json()["predictions"]
    assert p["reachable"] is False and p["train_size"] is None and "floor" in p["reason"]
    (p,) = srv.get("/curves/lm/predict", target_error=0.2, form="floor").json()["predictions"]
    assert p["reachable"] is True and p["train_size"] > 0


def test_family_filter_and_alternative_metric(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows())
    write(srv.store, trial_rows(family="char", metric="val_bpc", size_unit="characters"))
    both = srv.get("/curves/lm/predict", train_size=1e5).json()["predictions"]
    assert [p["family"] for p in both] == ["char", "word"]
    (char,) = srv.get("/curves/lm/predict", train_size=1e5, family="char").json()["predictions"]
    assert char["metric"] == "val_bpc" and char["metric_unit"] == "bits/char" and char["size_unit"] == "characters"
    (alt,) = srv.get("/curves/lm/predict", train_size=1e5, family="word", metric="val_err5").json()["predictions"]
    word = next(p for p in both if p["family"] == "word")
    assert alt["metric"] == "val_err5" and alt["error"] == pytest.approx(word["error"] / 2, rel=1e-4)


def test_predict_params_pairs_replicates_and_agrees_with_predict() -> None:
    fit = fit_family(load_rows(pd.DataFrame(trial_rows())), n_boot=300)
    at = predict_params(fit, size=2e5)
    assert at.params == pytest.approx(fit.sigma * 2e5**fit.beta_p)
    assert at.interval[0] <= at.params <= at.interval[1]
    need = predict(fit, target_error=0.12)
    params = predict_params(fit, target_error=0.12)
    assert params.train_size == pytest.approx(need.size)
    assert params.interval[0] <= params.params <= params.interval[1]
    unreachable = predict_params(fit, target_error=1e-9)
    # a power law reaches 1e-9 only ~10^32 words out: the extrapolation calls that unreachable (> 10^6× the data)
    assert unreachable.train_size == math.inf and unreachable.params == math.inf
    with pytest.raises(ValueError, match="exactly one"):
        predict_params(fit)
