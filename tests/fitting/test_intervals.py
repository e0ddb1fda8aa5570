"""fitting.intervals.robust_line: the β_g interval of the power law (HC2 standard error, Bell–McCaffrey dof)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fitting.intervals import robust_line

X6 = np.log(1000.0 * 2.0 ** np.arange(6))  # 6 shards, doubling


def _coverage(x: np.ndarray, sd: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    """Coverage of the slope's 95 % interval: (robust line, pooled-variance t with n − 2 dof)."""
    rng = np.random.default_rng(seed)
    n, xc = x.size, x - x.mean()
    t_pooled = stats.t.ppf(0.975, n - 2)
    robust = pooled = 0
    for _ in range(reps):
        y = 1.0 - 0.3 * x + sd * rng.standard_normal(n)
        line = robust_line(x, y)
        assert line is not None
        half = stats.t.ppf(0.975, line.dof_b) * math.sqrt(line.cov[1, 1])
        robust += abs(line.theta[1] + 0.3) <= half
        s = math.sqrt(line.rss / (n - 2))
        pooled += abs(line.theta[1] + 0.3) <= t_pooled * s / math.sqrt(float(xc @ xc))
    return robust / reps, pooled / reps


def test_fit_and_dof_of_an_equally_spaced_design() -> None:
    y = 2.0 - 0.3 * X6 + np.array([0.01, -0.02, 0.0, 0.03, -0.01, 0.0])
    line = robust_line(X6, y)
    assert line is not None
    slope, intercept = np.polyfit(X6, y, 1)
    assert line.theta == pytest.approx([intercept, slope])
    assert line.dof_b == pytest.approx(2.41, abs=0.01)  # the pooled t would claim 4
    assert line.rss == pytest.approx(float(np.sum((y - intercept - slope * X6) ** 2)))
    assert robust_line(X6[:2], y[:2]) is None


def test_equal_variances_cover_at_the_level() -> None:
    robust, pooled = _coverage(X6, np.full(6, 0.05), reps=4000, seed=1)
    assert 0.94 <= robust <= 0.97  # 96.4 %: Bell–McCaffrey is a little conservative here (s.d. 0.35 %)
    assert 0.94 <= pooled <= 0.96  # exact here


def test_noisy_end_shards_keep_the_robust_interval_at_its_level() -> None:
    """The end shards 1.4× noisier (variance 2×), as the grid penalty made them with 3 widths."""
    sd = np.array([1.4, 1.0, 1.0, 1.0, 1.0, 1.4]) * 0.05
    robust, pooled = _coverage(X6, sd, reps=4000, seed=2)
    assert 0.935 <= robust <= 0.965
    assert pooled < robust - 0.01  # the pooled-variance t under-covers
