"""Best model size read between the widths of a fixed grid (fitting/best_size.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fitting.aggregate import usable_trials
from fitting.best_size import fit_best_size, width_scores
from fitting.curves import fit_family
from tests.fitting.synthetic import BETA_P, Regime, sweep_batch


def test_noise_free_sweep_gives_the_true_best_size_law_between_widths() -> None:
    batch = sweep_batch(Regime(8, 4, 2, 1, 0.0, 0.0), 1, seed=3)
    trials = usable_trials(batch.rows(0)).frame
    law = fit_best_size(trials, list(batch.sizes))
    assert law is not None
    assert law.beta_p == pytest.approx(BETA_P, abs=2e-3)  # the quantized best widths alone give ±0.04
    assert law.sigma == pytest.approx(50.0, rel=0.02)
    assert law.curvature == pytest.approx(0.1 / np.log(2) ** 2, rel=0.02)
    grids, scores = width_scores(trials, list(batch.sizes))
    assert grids.shape == scores.shape == (8, 4) and np.isfinite(grids).all()


def test_best_size_beyond_the_widths_gives_no_law_and_no_interval() -> None:
    """The widest model wins at every shard: the sweep does not locate the best size, so no β_p interval."""
    batch = sweep_batch(Regime(5, 3, 1, 1, 0.0, 0.0), 1, seed=1)
    g = np.log2(batch.params[0])
    ideal = g.max() + 3 + 0.5 * np.log2(batch.sizes / batch.sizes[0])
    penalty = 1 + 0.1 * (g[None, :] - ideal[:, None]) ** 2
    batch.values[0] = (5 * batch.sizes**-0.3)[:, None, None, None] * penalty[:, :, None, None]
    rows = batch.rows(0)
    assert fit_best_size(usable_trials(rows).frame, list(batch.sizes)) is None
    fit = fit_family(rows, form="power", n_boot=200)
    assert fit.beta_p == pytest.approx(0.0, abs=1e-12) and fit.beta_p_ci is None
    assert any("same at every shard" in note for note in fit.notes)
