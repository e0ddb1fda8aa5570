"""Fits the service serves, memoized on the version of the rows they came from.

A (domain, family, metric, form) is refitted only when its group's rows changed; concurrent requests for the
same key wait for one fit instead of each running it. Fitting itself is ``fitting.curves.fit_family``; the
extrapolation check the service reports next to each fit is that fit's first backtest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fitting.aggregate import usable_trials
from fitting.curves import CurveFit, Interval, fit_family
from fitting.diagnostics import HistoryReader
from fitting.laws import MIN_POINTS
from fitting.service.cache import GroupRows

FitKey = tuple[str, str, str | None, str]  # (domain, family, metric or None for the primary one, form)


@dataclass
class ExtrapolationCheck:
    """The fit judged on data it did not see: fitted without the largest shard, asked to predict that shard."""

    held_out_size: float
    measured: float  # best error measured at the held-out shard
    predicted: float
    interval: Interval | None  # the backtest's prediction interval (its level: fitting.extrapolate.PI_LEVEL)
    log_error: float  # log(predicted / measured): > 0 means the fit was pessimistic
    within_interval: bool | None
    n_points: int  # shards the reduced fit used
    beta_g: float | None  # the reduced fit's plain power-law slope
    form: str | None  # "averaged": the extrapolation that predict() uses


@dataclass
class FamilyFit:
    """One family's fit with what the responses and plots need beside it."""

    curve: CurveFit
    check: ExtrapolationCheck | None
    check_reason: str  # why ``check`` is None
    trials: pd.DataFrame  # usable trials: train_size, value (every trial, for the faint points of the plot)
    trial_ids: dict[str, str]  # trial_key -> Ray Tune trial id
    version: int  # rows version it was fitted on
    seconds: float  # time the fit and its check took


def extrapolation_check(fit: CurveFit) -> tuple[ExtrapolationCheck | None, str]:
    """The fit's backtest with the largest shard held out (:mod:`fitting.backtest`), as the service reports it.

    Why reuse: ``fit_family`` already refits without the largest 1–3 shards (sharing its prefix fits), so a
    second refit here would double the work and could disagree with the ``backtest`` shown beside it. Needs one
    shard more than a fit does (``MIN_POINTS`` + 1). Returns (check, "") or (None, reason).
    """
    if fit.fit is None:
        return None, f"no fit: {fit.reason}"
    bt = next((b for b in fit.backtest if b.held_out == 1), None)
    if bt is None:
        shards = len({p.train_size for p in (*fit.points, *fit.excluded) if p.best_error > 0})
        return None, (f"{shards} usable shard(s): the check needs {MIN_POINTS + 1} "
                      f"({MIN_POINTS} to fit, the largest to predict)")
    return ExtrapolationCheck(bt.size, bt.measured, bt.predicted, bt.interval, bt.log_error, bt.inside,
                              bt.n_fit, bt.power_beta, "averaged"), ""


def _trial_ids(frame: pd.DataFrame) -> dict[str, str]:
    if "trial_id" not in frame.columns:
        return {}
    return {str(k): str(v) for k, v in zip(frame["trial_key"], frame["trial_id"], strict=True) if v is not None}


class FitCache:
    """Memoized :class:`FamilyFit` per (domain, family, metric, form), replaced when the rows' version moves."""

    def __init__(self, n_boot: int = 500, seed: int = 0,
                 on_fit: Callable[[str, float], None] | None = None, history: HistoryReader | None = None) -> None:
        self.n_boot = n_boot
        self.seed = seed
        self.history = history  # judges convergence of trials stored before the converged column
        self._on_fit = on_fit
        self._fits: dict[FitKey, FamilyFit] = {}
        self._locks: dict[FitKey, threading.Lock] = {}
        self._guard = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: FitKey, rows: GroupRows) -> FamilyFit:
        """The fit of ``key`` on ``rows``: cached when ``rows.version`` has not changed."""
        cached = self._fits.get(key)
        if cached is not None and cached.version == rows.version:
            self.hits += 1
            return cached
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._fits.get(key)
            if cached is not None and cached.version == rows.version:
                self.hits += 1
                return cached
            self.misses += 1
            fitted = self._fit(key, rows)
            self._fits[key] = fitted
            return fitted

    def _fit(self, key: FitKey, rows: GroupRows) -> FamilyFit:
        domain, _, metric, form = key
        t0 = time.perf_counter()
        try:
            curve = fit_family(rows.frame, metric=metric, form=form, n_boot=self.n_boot, seed=self.seed,
                               history=self.history)
        except ValueError as exc:  # e.g. only errored trials, which carry no metric name
            curve = CurveFit(domain, key[1], metric or "", None, None, reason=str(exc))
        check, reason = extrapolation_check(curve)
        trials = usable_trials(rows.frame, curve.metric).frame[["train_size", "value"]] if curve.metric \
            else pd.DataFrame({"train_size": np.array([]), "value": np.array([])})
        seconds = time.perf_counter() - t0
        if self._on_fit is not None:
            self._on_fit(domain, seconds)
        return FamilyFit(curve, check, reason, trials, _trial_ids(rows.frame), rows.version, seconds)
