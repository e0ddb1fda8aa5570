"""Best model size read between the widths of a fixed grid (fitting/best_size.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fitting.aggregate import usable_trials
from fitting.best_size import fit_best_size, fit_size, width_scores
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


def test_too_few_scores_for_the_noise_gives_no_law_instead_of_failing() -> None:
    """3 shards with 3, 2 and 2 widths: 7 scores for 7 parameters (a level and ℓ per shard, c) leave no dof.
    Seen on a real quickstart store still being written (some shards had only 2 widths stored); it used to
    divide by zero."""
    rows = []
    for m, widths in ((1000.0, (16, 32, 64)), (2000.0, (32, 64)), (4000.0, (32, 64))):
        ideal = np.log2(32 * (m / 1000.0) ** 0.5)
        for w in widths:
            rows.append({"train_size": m, "num_params": 100 * w, "width": w, "config_key": f"{m:g}-{w}",
                         "value": float(m**-0.3 * (1 + 0.1 * (np.log2(w) - ideal) ** 2))})
    assert fit_best_size(pd.DataFrame(rows), [1000.0, 2000.0, 4000.0]) is None


def test_fit_size_says_why_it_has_no_law() -> None:
    frame = pd.DataFrame({"width": [16, 32], "num_params": [10, 20], "non_embedding_params": [None, None]})
    assert "one model width" in fit_size(frame.iloc[:1], [1.0], [10]).reason
    missing = fit_size(frame, [1.0, 2.0], [None, None], "non_embedding_params", "β_p without embeddings")
    assert missing.fit is None and missing.reason == (
        "β_p without embeddings not fitted: the store has no non_embedding_params (trials written before it was "
        "recorded)")
    some = frame.assign(non_embedding_params=[5, None])
    assert "missing for some shards" in fit_size(some, [1.0, 2.0], [5, None], "non_embedding_params").reason
