"""Fits the service serves, memoized on the version of the rows they came from.

A (domain, family, metric, form) is refitted only when its group's rows changed; concurrent requests for the
same key wait for one fit instead of each running it. Fitting itself is ``fitting.curves.fit_family``; this
module adds the extrapolation check the service reports next to each fit.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fitting.aggregate import usable_trials
from fitting.curves import CurveFit, Interval, fit_family, predict
from fitting.laws import MIN_POINTS
from fitting.service.cache import GroupRows

FitKey = tuple[str, str, str | None, str]  # (domain, family, metric or None for the primary one, form)


@dataclass
class ExtrapolationCheck:
    """The fit judged on data it did not see: fitted without the largest shard, asked to predict that shard."""

    held_out_size: float
    measured: float  # best error measured at the held-out shard
    predicted: float
    interval: Interval | None  # bootstrap interval of the prediction
    log_error: float  # log(predicted / measured): > 0 means the fit was pessimistic
    within_interval: bool | None
    n_points: int  # shards the reduced fit used
    beta_g: float | None  # the reduced fit's exponent
    form: str | None


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


def extrapolation_check(frame: pd.DataFrame, fit: CurveFit, form: str, n_boot: int,
                        seed: int = 0) -> tuple[ExtrapolationCheck | None, str]:
    """Refit without the largest shard and compare its prediction there with the measurement.

    Needs one shard more than a fit does (``MIN_POINTS`` + 1). Returns (check, "") or (None, reason).
    """
    if fit.fit is None:
        return None, f"no fit: {fit.reason}"
    shards = sorted({p.train_size for p in (*fit.points, *fit.excluded) if p.best_error > 0})
    if len(shards) < MIN_POINTS + 1:
        return None, (f"{len(shards)} usable shard(s): the check needs {MIN_POINTS + 1} "
                      f"({MIN_POINTS} to fit, the largest to predict)")
    largest = shards[-1]
    measured = next(p.best_error for p in fit.points if p.train_size == largest)
    sizes = pd.to_numeric(frame["train_size"], errors="coerce").to_numpy(float)
    reduced = fit_family(frame[sizes < largest], metric=fit.metric, form=form, n_boot=n_boot, seed=seed)
    if reduced.fit is None:
        return None, f"fit without the largest shard failed: {reduced.reason}"
    pred = predict(reduced, size=largest)
    within = None if pred.interval is None else bool(pred.interval[0] <= measured <= pred.interval[1])
    log_error = math.log(pred.error / measured) if pred.error > 0 else math.nan
    return ExtrapolationCheck(largest, measured, pred.error, pred.interval, log_error, within,
                              len(reduced.points), reduced.beta_g, reduced.form), ""


def _trial_ids(frame: pd.DataFrame) -> dict[str, str]:
    if "trial_id" not in frame.columns:
        return {}
    return {str(k): str(v) for k, v in zip(frame["trial_key"], frame["trial_id"], strict=True) if v is not None}


class FitCache:
    """Memoized :class:`FamilyFit` per (domain, family, metric, form), replaced when the rows' version moves."""

    def __init__(self, n_boot: int = 500, seed: int = 0,
                 on_fit: Callable[[str, float], None] | None = None) -> None:
        self.n_boot = n_boot
        self.seed = seed
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
            curve = fit_family(rows.frame, metric=metric, form=form, n_boot=self.n_boot, seed=self.seed)
        except ValueError as exc:  # e.g. only errored trials, which carry no metric name
            curve = CurveFit(domain, key[1], metric or "", None, None, reason=str(exc))
        check, reason = extrapolation_check(rows.frame, curve, form, self.n_boot, self.seed)
        trials = usable_trials(rows.frame, curve.metric).frame[["train_size", "value"]] if curve.metric \
            else pd.DataFrame({"train_size": np.array([]), "value": np.array([])})
        seconds = time.perf_counter() - t0
        if self._on_fit is not None:
            self._on_fit(domain, seconds)
        return FamilyFit(curve, check, reason, trials, _trial_ids(rows.frame), rows.version, seconds)
