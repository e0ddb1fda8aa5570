"""Diagnostics of shard points on real stores: convergence (stored, or read from the history) and grid edges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fitting.curves import fit_family, fit_store
from fitting.diagnostics import CONVERGED_RTOL, history_converged, still_improving, trial_converged
from fitting.store import ResultsStore
from tests.fitting import diagnostic_sweep as sweep


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    out = ResultsStore(str(tmp_path / "storage"))
    sweep.write(out, sweep.rows())
    return out


def test_still_improving_compares_the_best_so_far_over_the_last_quarter() -> None:
    steps = np.array([100, 200, 300, 400])
    assert still_improving(steps, np.array([3.0, 2.0, 1.0, 1.0])) is False  # flat over the last quarter
    assert still_improving(steps, np.array([3.0, 2.0, 1.1, 1.0])) is True  # 9 % better at the end
    assert still_improving(steps, np.array([3.0, 2.0, 1.0, 1.2])) is False  # got worse: best-so-far is flat
    tiny = 1.0 - CONVERGED_RTOL / 2
    assert still_improving(steps, np.array([3.0, 2.0, 1.0, tiny])) is False  # within the tolerance
    assert still_improving(steps[:1], np.array([1.0])) is None
    assert still_improving(steps, np.array([np.nan, np.nan, np.nan, 1.0])) is True  # finite only at the end
    assert still_improving(steps, np.full(4, np.nan)) is None
    assert still_improving(np.array([np.nan, 200, np.nan, 400]), np.array([3.0, 1.0, 2.0, 1.0])) is False
    assert still_improving(np.array([400, 100, 300, 200]), np.array([1.0, 3.0, 1.1, 2.0])) is True  # any order


def test_trial_converged_prefers_the_stored_value_then_the_stop_reason_then_the_history(store) -> None:
    key = "lm-char-16000-64-0.01"  # the best configuration at the largest shard: still improving
    row = {"trial_key": key, "status": "completed", "stop_reason": "max_steps", "metric": "val_loss"}
    assert trial_converged(row, store.read_history) is False
    assert trial_converged({**row, "trial_key": "lm-char-16000-64-0.003"}, store.read_history) is True
    assert trial_converged({**row, "converged": True}, store.read_history) is True  # stored wins
    assert trial_converged({**row, "converged": np.bool_(False)}) is False
    assert trial_converged(row) is None  # no history to read
    assert trial_converged({**row, "trial_key": "never-written"}, store.read_history) is None
    assert trial_converged({**row, "stop_reason": "patience"}) is True
    assert trial_converged({**row, "status": "stopped", "stop_reason": "asha"}, store.read_history) is None
    assert history_converged(store.read_history(key), "no_such_metric") is None


def test_points_carry_their_flags_and_the_family_its_warnings(store) -> None:
    fit = fit_store(store.read_results(), n_boot=0, history=store.read_history)["lm"]["char"]
    assert fit.ok and len(fit.points) == 5 and not fit.excluded
    by_size = {p.train_size: p for p in fit.points}
    assert [by_size[m].width_edge for m in sweep.SIZES] == ["smallest", None, None, "largest", "largest"]
    assert [by_size[m].width_at_edge for m in sweep.SIZES] == [True, False, False, True, True]
    assert [by_size[m].hparam_at_edge for m in sweep.SIZES] == [{}, {}, {}, {}, {"lr": "high"}]  # dropout: fixed
    assert [by_size[m].not_converged for m in sweep.SIZES] == [False, False, False, False, True]
    assert by_size[sweep.SIZES[-1]].trial_converged == [False]
    d = fit.diagnostics
    assert (d.n_points, d.not_converged, d.convergence_unknown) == (5, 1, 0)
    assert (d.width_at_largest, d.width_at_smallest, d.hparam_at_edge) == (2, 1, {"lr": 1})
    assert (d.trials_converged, d.trials_not_converged, d.trials_unknown) == (44, 1, 0)
    assert d.warnings == [
        "lm/char: best width is the largest at 2 of 5 shards: β_p is censored — add wider models",
        "lm/char: best width is the smallest at 1 of 5 shards: β_p is censored — add narrower models",
        "lm/char: best configuration still improving at its budget cap at 1 of 5 shards (sizes 1.6e+04): their "
        "errors are too high and β_g too shallow — raise the budget (max_steps or epochs)",
        "lm/char: best lr at the edge of its searched range at 1 of 5 shards (1 at the top, 0 at the bottom): the "
        "shard's minimum may lie outside — widen the lr range",
    ]
    assert fit.to_dict()["diagnostics"]["warnings"] == d.warnings


def test_without_stored_convergence_or_history_it_is_unknown_not_guessed(store) -> None:
    fit = fit_store(store.read_results(), n_boot=0)["lm"]["char"]
    assert all(p.not_converged is None and p.trial_converged == [None] for p in fit.points)
    d = fit.diagnostics
    assert (d.not_converged, d.convergence_unknown, d.trials_unknown) == (0, 5, 45)
    assert not any("improving" in w for w in d.warnings)
    assert d.width_at_largest == 2  # the grid edges need no history


def test_asha_stopped_trials_count_as_unknown(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path / "s"))
    trials = sweep.rows()
    for row, _ in trials:
        if row["width"] == 16:
            row |= {"status": "stopped", "stop_reason": "asha"}
    sweep.write(store, trials)
    d = fit_store(store.read_results(), n_boot=0, history=store.read_history)["lm"]["char"].diagnostics
    assert (d.trials_converged, d.trials_not_converged, d.trials_unknown) == (29, 1, 15)


def test_beta_p_without_embeddings_is_null_with_a_reason_in_older_stores(store) -> None:
    fit = fit_store(store.read_results(), n_boot=0)["lm"]["char"]
    assert fit.beta_p is not None and fit.beta_p_non_embedding is None
    assert "no non_embedding_params" in fit.beta_p_non_embedding_reason
    assert all(p.best_params_non_embedding is None for p in fit.points)


def test_stored_columns_give_convergence_and_beta_p_without_embeddings(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path / "s"))
    sweep.write(store, sweep.rows(stored=True))
    fit = fit_store(store.read_results(), n_boot=200)["lm"]["char"]  # no history reader: the column suffices
    assert [p.not_converged for p in fit.points] == [False, False, False, False, True]
    assert fit.diagnostics.trials_unknown == 0
    assert fit.beta_p_non_embedding is not None and fit.beta_p_non_embedding_reason == ""
    assert fit.points[-1].best_params_non_embedding == 300 * 64**2
    # by construction the best width grows as m^0.6 and non-embedding parameters as width², so β_p = 1.2 on
    # them; the fixed embedding cost makes β_p on all parameters smaller
    assert fit.beta_p_non_embedding == pytest.approx(1.2, abs=0.01) and fit.beta_p < 1.15
    lo, hi = fit.intervals["beta_p_non_embedding"]
    assert lo <= fit.beta_p_non_embedding <= hi


def test_a_family_without_a_fit_still_gets_its_diagnostics(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path / "s"))
    sweep.write(store, sweep.rows(sizes=sweep.SIZES[-2:]))
    fit = fit_family(store.read_results(), n_boot=0, history=store.read_history)
    assert not fit.ok and fit.diagnostics.n_points == 2
    assert fit.diagnostics.width_at_largest == 2 and fit.diagnostics.not_converged == 1


def test_empty_hparams_and_one_width_flag_nothing(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path / "s"))
    trials = [(r | {"hparams": {}}, h) for r, h in sweep.rows() if r["width"] == 32 and r["hparams"]["lr"] == 3e-3]
    sweep.write(store, trials)
    fit = fit_family(store.read_results(), n_boot=0)
    assert all(p.width_at_edge is None and p.width_edge is None and p.hparam_at_edge == {} for p in fit.points)
    assert fit.diagnostics.warnings == []
