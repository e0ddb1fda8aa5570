"""Backtests: the extrapolation refitted without the largest 1, 2 and 3 shards, judged on the shards it lost.

A user relies on the curve beyond the measured range; these say how far off that was, on this very sweep,
and whether the prediction interval held. Each backtest reuses the shared prefix fits of
:class:`fitting.extrapolate.PrefixFits`, so they cost little beside the fit itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from fitting.extrapolate import PI_LEVEL, PrefixFits
from fitting.laws import jsonable, ols_line

HOLDOUTS = (1, 2, 3)
MIN_REMAINING = 3  # a backtest runs only when this many points remain to fit


@dataclass
class Backtest:
    """The fit without the largest ``held_out`` shards, read at the largest of them."""

    held_out: int
    n_fit: int  # shards the reduced fit used
    size_ratio: float  # largest held-out size / largest size fitted
    size: float  # the largest held-out size
    measured: float
    predicted: float
    interval: tuple[float, float]  # prediction interval at ``level``
    level: float
    log_error: float  # ln(predicted / measured): > 0 means the fit was pessimistic
    inside: bool  # the measurement fell inside the interval
    rmse_log: float  # over every held-out shard
    n_inside: int  # held-out shards inside their intervals
    power_beta: float = math.nan  # the plain power-law slope (log-log least squares) of the shards fitted

    def to_dict(self) -> dict[str, Any]:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})


def run_backtests(prefix: PrefixFits, level: float = PI_LEVEL,
                  holdouts: Sequence[int] = HOLDOUTS) -> list[Backtest]:
    """One :class:`Backtest` per hold-out count that leaves ≥ 3 points to fit."""
    m, e = prefix.m, prefix.e
    out = []
    for k in holdouts:
        n_fit = m.size - k
        if n_fit < MIN_REMAINING:
            continue
        ext = prefix.extrapolation(n_fit)
        sizes, measured = m[n_fit:], e[n_fit:]
        pred = np.asarray(ext.predict(sizes), float)
        lo, hi = ext.interval(sizes, level)
        inside = (lo <= measured) & (measured <= hi)
        log_err = np.log(pred / measured)
        power_beta = float(ols_line(np.log(m[:n_fit]), np.log(e[:n_fit]))[1])
        out.append(Backtest(k, n_fit, float(sizes[-1] / m[n_fit - 1]), float(sizes[-1]), float(measured[-1]),
                            float(pred[-1]), (float(lo[-1]), float(hi[-1])), level, float(log_err[-1]),
                            bool(inside[-1]), float(np.sqrt(np.mean(log_err**2))), int(inside.sum()),
                            power_beta))
    return out


def backtest_summary(backtests: Sequence[Backtest]) -> str:
    """One table cell, from the longest backtest: "4× 3% in" = extrapolated 4× with 3 % error, inside the
    interval ("out": outside); "–" without backtests."""
    if not backtests:
        return "–"
    bt = max(backtests, key=lambda b: b.size_ratio)
    pct = 100.0 * (math.exp(abs(bt.log_error)) - 1.0)
    ratio = f"{bt.size_ratio:.1f}".removesuffix(".0")
    return f"{ratio}× {pct:.0f}% {'in' if bt.inside else 'out'}"
