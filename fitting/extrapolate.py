"""Extrapolating a learning curve beyond its largest measured size, with a calibrated predictive interval.

Why not one law: on LCDB's held-out larger sizes no single family wins everywhere (a power law with a floor
flattens too early on curves that keep falling, a pure power law falls too far on curves that flatten), and
unguarded 4-parameter fits blow up 8× beyond the data. So five families are fitted (:mod:`fitting.forms`:
pure power law, power + floor, POW4, MMF4, and a pure power law through the last 4 points), each judged by
*backtests inside the fitted range* (refit without the largest 1–3 points, predict them), and averaged in log
space with weights exp(−(backtest RMSE − best) / τ). Guards, beyond the largest fitted size M only:

* slope: in log-log a family never falls faster than its own slope at M (4-parameter sigmoids that steepen
  beyond the data were the blow-ups) nor than the data's slope over the last 4 points (learning curves
  flatten);
* level: no prediction rises above the smallest observed error (floors stay in [0, min ε)), unless the
  data's slope guard holds it higher: a curve whose last points rose stays near its edge value.

Measured on LCDB dev (fit ≤ max/8; choice made on half A of the curves): the slope guard took the average of
pow2/pow3/pow4/mmf4 from 0.148 to 0.141 mean RMSLE on half A, the tail family to 0.137 (half B 0.130); WBL4
made it worse (0.145) and is left out. ``benchmarks/fit_extrapolation.py`` has the full table.

Interval (log space): prediction ± q·σ(m), with
σ(m)² = k_fit·(n / 8)^−a·s_fit² + k_spread·s_forms(m)² + (d·(k_n / n + k_val·s_val / d_val))², d = ln(m / M) ≥ 0:
s_fit the in-sample log RMSE, s_forms the weighted spread of the families at m, n the number of fitted points
(capped at 16 in the first term), s_val the backtest log RMSE of the average and d_val the log distance of those
backtests. Why the k_n / n term: the earlier model (a least σ of 0.1 beyond the data, growth from s_val only) was
calibrated on LCDB curves fitted on √2-spaced sizes; on curves with sizes that double, fitted on 4–9 points and
read 2–8× beyond, it covered 83.6 % (half A) and 80 % of the NMT backtests. Why (n / 8)^−a (a = 4.6): five
families of 2–4 parameters averaged over few points fit the noise, so s_fit understates it most when n is small;
with a constant k_fit (0.14) the interval was right on average but not given s_fit: on half B, curves in the
noisiest fifth (s_fit > 0.054) were covered 85.4 %, the smoothest fifth 93.6 % (thinned curves 82.6 % / 95.5 %;
4-point fits of noisy curves 58 %). With the n-dependent weight: 90.3–91.6 % in every fifth (details and the
remaining miss, smooth curves read 8× beyond the data, in ``benchmarks/pi_calibration.py``). The weights and
the quantiles q were fitted once, on half A of the LCDB dev curves (``benchmarks/pi_calibration.py``: held-out
sizes ≤ 8× beyond the data, backtests inside the fitted range, and such thinned curves, weighted alike); half B
and the NMT curves check them.

Fits on prefixes are shared: the backtests that weigh the families and the backtests users see
(:mod:`fitting.backtest`) refit the same prefixes, so everything costs one fit per (family, prefix length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fitting.forms import FAMILIES, FormFit, fit_form
from fitting.laws import jsonable, ols_line

FAMILY_NAMES = ("pow2", "pow3", "pow4", "mmf4", "tail")  # averaged (see module doc)
TAIL_POINTS = 4  # "tail": a pure power law through the last 4 points; also the window of the slope guard
MIN_SIZE = {"pow2": 2, "tail": 4, "pow3": 4, "pow4": 4, "mmf4": 4, "wbl4": 4}  # fewest points to fit each
VAL_HOLDOUTS = (1, 2, 3)  # backtests inside the fitted range that weigh the families
MIN_VAL_FIT = 4  # a family's weighing backtest needs this many points left to fit
TAU = 0.1  # weight temperature, log units (0.03: 0.1501 on half A, 0.1: 0.1476, 0.2: 0.1472, no slope guard)
# σ's weights (see module doc), fitted by benchmarks/pi_calibration.py on LCDB half A: maximum likelihood of a
# Laplace scale model of the log errors of three populations weighted alike (held-out sizes ≤ 8× beyond fits on
# sizes ≤ max/8: 5,204 points; the product's backtests inside those fit ranges: 4,872; curves thinned to sizes
# that double, fitted on each prefix of ≥ 4 points and read 2×, 4×, 8× beyond it: 9,843). A constant growth per
# unit distance, a least σ beyond the data (the previous model's c₀ = 0.1) and a floor under the n-dependent
# in-sample weight all fitted to 0 and are left out. "fit_n": the in-sample term's weight falls as
# (n / N_REF)^−fit_n, n capped at N_CAP (the calibration curves have 3–29 points; the cap keeps the noise term
# for longer sweeps; uncapped, half A's mean log-likelihood gains 0.0005 and the tables do not change).
SIGMA_WEIGHTS = {"fit": 0.46, "fit_n": 4.6, "spread": 0.18, "per_point": 0.18, "backtest": 0.61}
N_REF, N_CAP = 8, 16
# Quantiles of |log error| / σ over the same three populations (each weighted alike).
QUANTILES = {0.8: 1.427, 0.9: 2.132, 0.95: 3.047}
PI_LEVEL = 0.9
METHOD = ("average of power law, power+floor, POW4, MMF4 and last-4-points power law fits, weighted by backtests "
          "inside the fitted range, slope- and level-guarded beyond it; interval from the residuals (weighted more "
          "when fewer points were fitted), the spread "
          "of the families and the backtest errors, growing with log extrapolation distance, faster when fewer "
          "points were fitted; calibrated on half of the LCDB learning curves (larger sizes, backtests, and the "
          "curves thinned to few points)")


@dataclass
class Extrapolation:
    """The averaged learning curve fitted to (sizes, errors), readable at any size with an interval."""

    sizes: list[float]
    errors: list[float]
    forms: dict[str, FormFit]
    weights: dict[str, float]
    guard: float  # predictions never exceed this (the smallest observed error)
    slopes: dict[str, tuple[float, float]]  # per family: its own edge slope, the data's last-4-points slope (≤ 0)
    s_fit: float  # in-sample RMSE of log error
    s_val: float  # backtest RMSE of log error inside the fitted range (0 when none)
    d_val: float  # mean log distance of those backtests
    method: str = METHOD
    notes: list[str] = field(default_factory=list)

    @property
    def m_max(self) -> float:
        return self.sizes[-1]

    def _log_forms(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        names = [n for n, w in self.weights.items() if w > 0]
        w = np.array([self.weights[n] for n in names])
        lp = np.array([guarded_log(self.forms[n], m, self.m_max, *self.slopes[n], self.guard) for n in names])
        return lp, w / w.sum()

    def log_predict(self, m: np.ndarray | float) -> np.ndarray:
        lp, w = self._log_forms(np.atleast_1d(np.asarray(m, float)))
        return w @ lp

    def predict(self, m: np.ndarray | float) -> np.ndarray | float:
        """Predicted error at size(s) m."""
        out = np.exp(self.log_predict(m))
        return float(out[0]) if np.ndim(m) == 0 else out

    def sigma_parts(self, m: np.ndarray | float) -> dict[str, np.ndarray]:
        """The terms σ(m) is built from (see module doc), per size: the families' weighted spread² and the log
        distance d beyond the data; the curve's s_fit, s_val, d_val and number of fitted points n."""
        mm = np.atleast_1d(np.asarray(m, float))
        lp, w = self._log_forms(mm)
        center = w @ lp
        ones = np.ones_like(mm)
        return {"spread2": w @ (lp - center) ** 2, "d": np.maximum(np.log(mm / self.m_max), 0.0),
                "s_fit": self.s_fit * ones, "s_val": self.s_val * ones, "d_val": self.d_val * ones,
                "n": len(self.sizes) * ones}

    def log_sigma(self, m: np.ndarray | float) -> np.ndarray:
        """σ(m) of the log error (see module doc)."""
        return combine_sigma(self.sigma_parts(m))

    def interval(self, m: np.ndarray | float, level: float = PI_LEVEL) -> tuple[Any, Any]:
        """(lo, hi) of the predicted error at size(s) m."""
        q = quantile(level)
        center, s = self.log_predict(m), self.log_sigma(m)
        lo, hi = np.exp(center - q * s), np.exp(center + q * s)
        if np.ndim(m) == 0:
            return float(lo[0]), float(hi[0])
        return lo, hi

    def size_for(self, error: float, band: float = 0.0) -> float:
        """Size where the prediction (shifted by ``band``·σ in log space) falls to ``error``: inf if not within
        a million times the largest fitted size, the smallest fitted size if reached there already."""
        target = math.log(error)

        def value(log_m: float) -> float:
            m = math.exp(log_m)
            return float(self.log_predict(m)[0] + band * self.log_sigma(m)[0])

        lo_x = math.log(self.sizes[0])
        if value(lo_x) <= target:
            return float(self.sizes[0])
        hi_x = math.log(self.m_max)
        while value(hi_x) > target:
            if hi_x - math.log(self.m_max) > math.log(1e6):  # a million times the data: call it unreachable
                return math.inf
            hi_x += math.log(4.0)
        for _ in range(60):
            mid = 0.5 * (lo_x + hi_x)
            lo_x, hi_x = (mid, hi_x) if value(mid) > target else (lo_x, mid)
        return math.exp(hi_x)

    def size_interval(self, error: float, level: float = PI_LEVEL) -> tuple[float, float]:
        """Sizes at which the interval's lower and upper edges reach ``error`` (inf: not reached)."""
        q = quantile(level)
        return self.size_for(error, -q), self.size_for(error, q)

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"weights": self.weights, "guard": self.guard, "slopes": self.slopes, "s_fit": self.s_fit,
                         "s_val": self.s_val,
                         "d_val": self.d_val, "method": self.method, "notes": self.notes,
                         "forms": {n: {"amplitude": f.amplitude, "theta": f.theta, "floor": f.floor,
                                       "m_ref": f.m_ref, "rss": f.rss} for n, f in self.forms.items()}})


def combine_sigma(parts: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> np.ndarray:
    """σ of the log error from the terms of :meth:`Extrapolation.sigma_parts` (see module doc); ``weights``
    other than :data:`SIGMA_WEIGHTS` only to calibrate them."""
    k = SIGMA_WEIGHTS if weights is None else weights
    d, s_val, d_val = parts["d"], parts["s_val"], parts["d_val"]
    growth = k["per_point"] / parts["n"] + k["backtest"] * np.where(d_val > 0, s_val / np.where(d_val > 0, d_val, 1.0),
                                                                    0.0)
    k_fit = k["fit"] * (np.minimum(parts["n"], N_CAP) / N_REF) ** -k["fit_n"]
    return np.sqrt(k_fit * parts["s_fit"] ** 2 + k["spread"] * parts["spread2"] + (d * growth) ** 2)


def quantile(level: float) -> float:
    """Calibrated standardized quantile for a two-sided ``level`` interval (interpolated between levels)."""
    if level in QUANTILES:
        return QUANTILES[level]
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    from scipy.stats import norm

    ref = PI_LEVEL
    return QUANTILES[ref] * float(norm.ppf(0.5 + level / 2) / norm.ppf(0.5 + ref / 2))


class PrefixFits:
    """Each family fitted to each prefix (the smallest k points) of one curve, fitted once when first asked."""

    def __init__(self, m: Sequence[float] | np.ndarray, e: Sequence[float] | np.ndarray,
                 families: Sequence[str] = FAMILY_NAMES) -> None:
        m_arr, e_arr = np.asarray(m, float), np.asarray(e, float)
        order = np.argsort(m_arr, kind="stable")
        self.m, self.e = m_arr[order], e_arr[order]
        if self.m.size < 2 or not (np.all(self.m > 0) and np.all(self.e > 0) and np.all(np.isfinite(self.e))):
            raise ValueError("an extrapolation needs ≥ 2 points with positive, finite sizes and errors")
        self.families = tuple(families)
        self._fits: dict[tuple[str, int], FormFit | None] = {}
        self._slopes: dict[tuple[FormFit, int], tuple[float, float]] = {}

    def get(self, family: str, length: int) -> FormFit | None:
        key = (family, length)
        if key not in self._fits:
            ok = length >= MIN_SIZE[family]
            lo = max(length - TAIL_POINTS, 0) if family == "tail" else 0
            name = "pow2" if family == "tail" else family
            self._fits[key] = fit_form(name, self.m[lo:length], self.e[lo:length]) if ok else None
        return self._fits[key]

    def slope_limit(self, fit: FormFit, length: int) -> tuple[float, float]:
        """Slopes that bound the fall beyond the first ``length`` points (both ≤ 0): the family's own over the
        last fitted interval, and the data's over the last ``TAIL_POINTS`` points."""
        key = (fit, length)
        if key not in self._slopes:
            m, e = self.m[:length], self.e[:length]
            own = 0.0
            if length >= 2:
                with np.errstate(all="ignore"):
                    p = np.log(np.maximum(fit.predict(m[-2:]), 1e-300))
                own = float((p[1] - p[0]) / math.log(m[-1] / m[-2]))
            lo = max(length - TAIL_POINTS, 0)
            data = float(ols_line(np.log(m[lo:]), np.log(e[lo:]))[1]) if length - lo >= 2 else 0.0
            self._slopes[key] = (min(own, 0.0) if math.isfinite(own) else 0.0,
                                 min(data, 0.0) if math.isfinite(data) else 0.0)
        return self._slopes[key]

    def log_prediction(self, fit: FormFit, length: int, m: np.ndarray, *, data_slope: bool = True) -> np.ndarray:
        """Guarded ln prediction at ``m`` of ``fit``, fitted to the first ``length`` points (``data_slope``:
        with the data-slope guard; the weighing backtests go without it, as measured)."""
        own, data = self.slope_limit(fit, length)
        return guarded_log(fit, m, float(self.m[length - 1]), own, data if data_slope else -math.inf,
                           float(self.e[:length].min()))

    def extrapolation(self, length: int | None = None) -> Extrapolation:
        """The averaged extrapolation fitted to the smallest ``length`` points (all by default)."""
        n = self.m.size if length is None else length
        m, e = self.m[:n], self.e[:n]
        forms = {f: fit for f in self.families if (fit := self.get(f, n)) is not None}
        notes: list[str] = []
        if not forms:
            forms = {"pow2": fit_form("pow2", m, e)}  # type: ignore[dict-item]
            notes.append(f"{n} points: a pure power law only (the other families need ≥ 4)")
        guard = float(e.min())
        scores, sq, dist = {}, [], []
        for name in forms:
            errs = []
            for k in VAL_HOLDOUTS:
                sub = self.get(name, n - k) if n - k >= max(MIN_SIZE[name], MIN_VAL_FIT) else None
                if sub is None:
                    continue
                lp = self.log_prediction(sub, n - k, m[n - k:], data_slope=False)
                errs.append(float(np.mean((lp - np.log(e[n - k:])) ** 2)))
            scores[name] = math.sqrt(float(np.mean(errs))) if errs else math.nan
        have = {k: v for k, v in scores.items() if math.isfinite(v)}
        if have:
            best = min(have.values())
            weights = {k: (math.exp(-(v - best) / TAU) if k in have else 0.0) for k, v in scores.items()}
        else:
            weights = dict.fromkeys(forms, 1.0)
            notes.append("too few points for backtests inside the fitted range: families weighted equally")
        slopes = {name: self.slope_limit(fit, n) for name, fit in forms.items()}
        out = Extrapolation([float(v) for v in m], [float(v) for v in e], forms, weights, guard, slopes, 0.0, 0.0,
                            0.0, notes=notes)
        resid = out.log_predict(m) - np.log(e)
        out.s_fit = float(np.sqrt(np.mean(resid**2)))
        for k in VAL_HOLDOUTS:  # the average's own backtests (weights as at the full fit)
            if n - k < 3:
                continue
            sub_forms = {f: self.get(f, n - k) for f in forms if weights[f] > 0}
            if any(v is None for v in sub_forms.values()):
                continue
            w = np.array([weights[f] for f in sub_forms])
            lp = (w / w.sum()) @ np.array([self.log_prediction(fit, n - k, m[n - k:]) for fit in sub_forms.values()])
            sq.extend((lp - np.log(e[n - k:])) ** 2)
            dist.extend(np.log(m[n - k:] / m[n - k - 1]))
        if sq:
            out.s_val, out.d_val = float(np.sqrt(np.mean(sq))), float(np.mean(dist))
        return out


def guarded_log(fit: FormFit, m: np.ndarray, m_max: float, own_slope: float, data_slope: float,
                guard: float) -> np.ndarray:
    """ln of a family's prediction with the guards of the module doc applied beyond ``m_max``, in this order:
    no steeper than its own edge slope; no higher than ``guard``; no steeper than the data's slope (so a curve
    whose last points rose stays near its edge value rather than drop to the least error seen earlier)."""
    with np.errstate(all="ignore"):
        lp = np.log(np.maximum(fit.predict(m), 1e-300))
        edge = float(np.log(max(float(fit.predict(m_max)[0]), 1e-300)))
        d = np.log(m / m_max)
        beyond = d > 0
        lp = np.where(beyond, np.minimum(np.maximum(lp, edge + own_slope * d), math.log(guard)), lp)
        return np.where(beyond, np.maximum(lp, edge + data_slope * np.maximum(d, 0.0)), lp)


def extrapolate(m: Sequence[float] | np.ndarray, e: Sequence[float] | np.ndarray) -> Extrapolation:
    """Fit the averaged extrapolation to all points (see module doc)."""
    return PrefixFits(m, e).extrapolation()


__all__ = ["FAMILIES", "Extrapolation", "PrefixFits", "extrapolate", "quantile"]
