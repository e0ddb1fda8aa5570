"""The compute-optimal frontier of a fitted surface: its exponent matches the true surface's, a budget and a
target error give the same point, and intervals come from the surface's draws."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from fitting.optimal import compute_range, frontier, optimal_point
from fitting.surface import fit_surface
from tests.fitting.surface_synthetic import Truth, surface_sweep


@pytest.fixture(scope="module")
def fit():  # type: ignore[no-untyped-def]
    return fit_surface(surface_sweep(Truth(), np.random.default_rng(5)), form="interaction", n_boot=40, seed=2)


def test_frontier_exponent_matches_the_truth(fit) -> None:  # type: ignore[no-untyped-def]
    true_fit = copy.copy(fit)
    true_fit.theta, true_fit.draws = Truth().theta(fit.n0, fit.d0), np.zeros((0, 8))
    est, true = frontier(fit), frontier(true_fit)
    assert abs(est.n_exponent - true.n_exponent) < 0.05
    assert est.d_exponent == pytest.approx(1 - est.n_exponent)
    lo, hi = est.n_exponent_ci
    assert lo < est.n_exponent < hi
    assert len(est.compute) == len(est.n_opt) == len(est.loss_band) == 25
    assert all(b is not None for b in est.n_opt_band)
    k = est.flops_per_param_sample
    assert np.allclose(np.array(est.compute), k * np.array(est.n_opt) * np.array(est.d_opt))
    assert np.all(np.diff(est.loss) < 0)  # more compute, lower optimal error
    assert "6ND" in est.compute_source


def test_budget_and_target_error_agree(fit) -> None:  # type: ignore[no-untyped-def]
    c = math.sqrt(np.prod(compute_range(fit)))
    at_budget = optimal_point(fit, compute=c)
    back = optimal_point(fit, target_error=at_budget.loss)
    assert back.compute == pytest.approx(c, rel=1e-3)
    assert back.n_opt == pytest.approx(at_budget.n_opt, rel=1e-2)
    lo, hi = at_budget.n_opt_ci
    assert lo < at_budget.n_opt < hi and not at_budget.extrapolated
    assert back.compute_ci[0] < c < back.compute_ci[1]
    never = optimal_point(fit, target_error=fit.params["E"] * 0.5)
    assert math.isinf(never.compute) and never.extrapolated


def test_bad_queries_are_refused(fit) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="exactly one"):
        optimal_point(fit)
    with pytest.raises(ValueError, match="compute must be a positive"):
        optimal_point(fit, compute=-1.0)
