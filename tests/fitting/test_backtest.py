"""Backtests on synthetic sweeps with a known law: how far each refit extrapolated, how wrong, inside or not."""

from __future__ import annotations

import json

import pytest

from fitting.backtest import Backtest, backtest_summary
from fitting.curves import fit_family
from tests.fitting.synthetic import SIZES, floor, power, sweep


@pytest.mark.parametrize("law", [power, floor])
def test_backtests_hold_out_the_largest_one_two_three_shards(law) -> None:
    fit = fit_family(sweep(law, seed=4), n_boot=0)
    assert [bt.held_out for bt in fit.backtest] == [1, 2, 3]
    for bt in fit.backtest:
        assert bt.size == SIZES[-1] and bt.n_fit == len(fit.points) - bt.held_out
        assert bt.size_ratio == pytest.approx(2.0**bt.held_out)  # shards double
        assert bt.measured == pytest.approx(fit.points[-1].best_error)
        assert abs(bt.log_error) < 0.1 and bt.inside
        assert bt.interval[0] <= bt.predicted <= bt.interval[1] and bt.n_inside >= bt.held_out - 1
    json.dumps(fit.to_dict()["backtest"], allow_nan=False)
    assert backtest_summary(fit.backtest).startswith("8× ")


def test_backtests_need_three_points_left() -> None:
    fit = fit_family(sweep(power, SIZES[:4]), n_boot=0)
    assert [bt.held_out for bt in fit.backtest] == [1]
    assert backtest_summary([]) == "–"


def test_summary_reads_the_longest_backtest() -> None:
    short = Backtest(1, 7, 2.0, 2.0, 1.0, 1.01, (0.9, 1.1), 0.9, 0.00995, True, 0.00995, 1)
    long = Backtest(3, 5, 8.0, 8.0, 1.0, 1.31, (1.1, 1.5), 0.9, 0.27, False, 0.2, 1)
    assert backtest_summary([short, long]) == "8× 31% out"


def test_service_check_is_the_first_backtest_not_a_second_refit() -> None:
    from fitting.service.fits import extrapolation_check

    rows = sweep(power, seed=4)
    fit = fit_family(rows, n_boot=0)
    check, reason = extrapolation_check(fit)
    bt = fit.backtest[0]
    assert reason == "" and check is not None
    assert (check.held_out_size, check.predicted, check.interval, check.within_interval, check.n_points) == (
        bt.size, bt.predicted, bt.interval, bt.inside, bt.n_fit)
    assert check.beta_g == pytest.approx(-0.3, abs=0.03) and check.form == "averaged"
    few = fit_family(sweep(power, SIZES[:3]), n_boot=0)
    assert few.ok and extrapolation_check(few) == (None, "3 usable shard(s): the check needs 4 "
                                                               "(3 to fit, the largest to predict)")
