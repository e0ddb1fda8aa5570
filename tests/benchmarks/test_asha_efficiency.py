"""The oracle bound benchmarks/asha_efficiency.py prints: the least compute any rank-consistent early stopping needs
to keep a shard's eventual best, from stored learning curves."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from benchmarks.asha_efficiency import rank_bound


def _history(values: list[float]) -> pa.Table:
    return pa.table({"steps": [1, 2, 3, 4], "metrics": [json.dumps({"val_xent": v}) for v in values]})


def _rows(params: dict[str, int]) -> list[dict[str, object]]:
    return [{"fraction": 1.0, "trial_key": k, "config_key": k, "metric": "val_xent", "num_params": n}
            for k, n in params.items()]


def test_a_late_winner_keeps_everything_above_it_running_until_it_leads() -> None:
    curves = {"fast": _history([5.0, 4.0, 3.9, 3.9]), "slow": _history([6.0, 4.5, 3.5, 3.0])}
    bound = rank_bound(_rows({"fast": 1, "slow": 1}), {1.0: "slow"}, curves.__getitem__)
    assert bound == {1.0: pytest.approx((2 * 2 + 1 * 2, 8))}  # both run to step 2, then the winner alone


def test_a_winner_that_leads_throughout_needs_only_itself_weighted_by_parameters() -> None:
    curves = {"small": _history([5.0, 4.0, 3.9, 3.9]), "big": _history([4.0, 3.5, 3.2, 3.0]),
              "bad": _history([float("nan"), 9.0, 8.0, 7.0])}
    used, full = rank_bound(_rows({"small": 1, "big": 3, "bad": 1}), {1.0: "big"}, curves.__getitem__)[1.0]
    assert (used, full) == (pytest.approx(3 * 4), pytest.approx(5 * 4))
