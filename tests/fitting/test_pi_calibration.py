"""benchmarks/pi_calibration.py on synthetic curves: the populations it caches and the σ fit it makes from them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.pi_calibration import _chunk, fit, score
from fitting.extrapolate import SIGMA_WEIGHTS


def _curves(half: str, seed: int) -> list:
    rng = np.random.default_rng(seed)
    m = 16.0 * np.sqrt(2.0) ** np.arange(16)  # √2-spaced sizes, as LCDB's
    out = []
    for i in range(6):
        e = (0.05 + 3.0 * m ** -rng.uniform(0.2, 0.6)) * np.exp(rng.normal(0.0, 0.02, m.size))
        out.append((f"{half}{i}", half, m <= m.max() / 8, m, e))
    return out


def test_populations_and_a_fit_on_half_a() -> None:
    table = pd.DataFrame(_chunk(_curves("A", 0) + _curves("B", 1), True))
    assert set(table["pop"]) == {"heldout", "bt", "thin"}
    held = table[(table["pop"] == "heldout") & (table["curve"] == "A0")]
    assert len(held) == 6 and np.all(held["d"] > 0) and np.all(held["n"] == 10)  # sizes > max/8, fitted on 10
    thin = table[(table["pop"] == "thin") & (table["curve"] == "A0")]
    assert thin["n"].min() == 4 and np.allclose(np.exp(thin["d"]).round(6).unique()[:3], [2.0, 4.0, 8.0])
    weights, quantiles = fit(table)
    assert set(weights) == set(SIGMA_WEIGHTS) and all(np.isfinite(v) and v >= 0 for v in weights.values())
    assert 0 < quantiles[0.8] < quantiles[0.9] < quantiles[0.95]
    assert "PI90 coverage" in score(table)

