"""Parametric learning-curve families for extrapolation, each ε(x) = c + A·h(x; θ) with a floor c ≥ 0.

x is the training size divided by the largest fitted size, so parameters do not depend on units and x = 1 is
the edge of the data. Families (names as in the LCDB papers, Mohr & van Rijn; Viering & Loog's survey):

* ``pow2``  h = x^−b, c = 0                         (pure power law, OLS in log space: the M1 baseline)
* ``pow3``  h = x^−b                                (power law + floor, the M2 baseline)
* ``pow4``  h = ((x + d) / (1 + d))^−b              (POW4 c + a·(m + d)^−b: a small-data bend)
* ``mmf4``  h = 1 / (1 + (x / s)^d)                 (MMF4 (a·b + c·m^d)/(b + m^d): a sigmoid in log m)
* ``wbl4``  h = exp(−(x / s)^d)                     (WBL4, Weibull: approaches its floor faster)

Fitting: given θ the law is linear in (c, A), so a grid over θ with a closed-form weighted least squares for
(c, A) (weights 1/ε² make it match the log-space objective to first order) finds the basin, and one
``scipy.optimize.least_squares`` polish with a robust (soft-L1) loss on log residuals finishes it. Bounds:
0 ≤ c ≤ (1 − 10⁻³)·min ε (a floor strictly below every observed error), A > 0, exponents in (0, 6].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from fitting.laws import F_SCALE, GAMMA_MARGIN, ols_line, robust_cost

EXP_MAX = 6.0  # largest decay exponent b (pow3/pow4) or shape d (mmf4/wbl4)
POLISH_TOL = 1e-5  # the grid start is close: on 47 LCDB curves 1e-5 and ≤ 30 evaluations changed the mean held-out
# RMSLE by 1e-5 against scipy's defaults and 60, and took ~30 % less time
Basis = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x (n,), θ (G, k)) -> h (G, n)


def _pow3(x: np.ndarray, th: np.ndarray) -> np.ndarray:
    return x[None, :] ** -th[:, :1]


def _pow4(x: np.ndarray, th: np.ndarray) -> np.ndarray:
    d = th[:, 1:2]
    return ((x[None, :] + d) / (1.0 + d)) ** -th[:, :1]


def _mmf4(x: np.ndarray, th: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + (x[None, :] / th[:, :1]) ** th[:, 1:2])


def _wbl4(x: np.ndarray, th: np.ndarray) -> np.ndarray:
    return np.exp(-((x[None, :] / th[:, :1]) ** th[:, 1:2]))


def _grad(name: str, x: np.ndarray, th: np.ndarray, h: np.ndarray) -> np.ndarray:
    """∂h/∂θ at one θ (columns), for the analytic Jacobian of the polish."""
    if name in ("pow2", "pow3"):
        return (-np.log(x) * h)[:, None]
    if name == "pow4":
        b, d = th
        return np.column_stack([-np.log((x + d) / (1.0 + d)) * h, -b * h * (1.0 / (x + d) - 1.0 / (1.0 + d))])
    s, d = th
    u = (x / s) ** d
    outer = h * h * u if name == "mmf4" else h * u  # mmf4: h = 1/(1+u); wbl4: h = exp(−u)
    return np.column_stack([outer * d / s, -outer * np.log(x / s)])


@dataclass(frozen=True)
class Family:
    """One family: its basis h(x; θ), the θ grid (given the smallest x) and θ's bounds."""

    name: str
    basis: Basis
    grid: Callable[[float], np.ndarray]  # x_min -> (G, k) starting θ values
    bounds: Callable[[float], tuple[list[float], list[float]]]  # x_min -> (lower, upper) for θ


_B = np.geomspace(0.02, EXP_MAX, 28)
_SHAPE = np.geomspace(0.1, EXP_MAX, 14)


def _pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.stack(np.meshgrid(a, b, indexing="ij"), -1).reshape(-1, 2)


FAMILIES: dict[str, Family] = {
    "pow2": Family("pow2", _pow3, lambda xm: _B[:, None], lambda xm: ([-EXP_MAX], [EXP_MAX])),
    "pow3": Family("pow3", _pow3, lambda xm: _B[:, None], lambda xm: ([1e-4], [EXP_MAX])),
    "pow4": Family("pow4", _pow4, lambda xm: _pairs(_B, xm * np.array([0.0, 0.5, 1.5, 4.0, 12.0])),
                   lambda xm: ([1e-4, 0.0], [EXP_MAX, 50.0 * xm])),
    "mmf4": Family("mmf4", _mmf4, lambda xm: _pairs(np.geomspace(xm / 4, 4.0, 16), _SHAPE),
                   lambda xm: ([xm / 100, 0.05], [1e3, EXP_MAX])),
    "wbl4": Family("wbl4", _wbl4, lambda xm: _pairs(np.geomspace(xm / 4, 30.0, 16), _SHAPE),
                   lambda xm: ([xm / 100, 0.05], [1e4, EXP_MAX])),
}


@dataclass(frozen=True)
class FormFit:
    """One family fitted to one curve: ε(x) = c + A·h(x; θ), x = m / m_ref."""

    family: str
    amplitude: float  # A
    theta: tuple[float, ...]
    floor: float  # c
    m_ref: float  # size that x is measured in
    cost: float  # robust cost of the log residuals
    rss: float  # sum of squared log residuals
    n: int

    def predict(self, m: np.ndarray | float) -> np.ndarray:
        x = np.atleast_1d(np.asarray(m, float)) / self.m_ref
        h = FAMILIES[self.family].basis(x, np.array([self.theta]))[0]
        return self.floor + self.amplitude * h


def _linear_given_theta(h: np.ndarray, e: np.ndarray, c_max: float) -> tuple[np.ndarray, np.ndarray]:
    """(c, A) per grid row minimizing Σ((c + A·h − ε)/ε)², c clipped to [0, c_max] (A refitted then)."""
    w = 1.0 / e**2
    s1, sh, shh = w.sum(), (w * h).sum(-1), (w * h * h).sum(-1)
    se, she = (w * e).sum(), (w * h * e).sum(-1)
    den = s1 * shh - sh * sh
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(den > 0, (shh * se - sh * she) / den, 0.0)
        c = np.clip(np.nan_to_num(c), 0.0, c_max)
        amp = (she - c * sh) / shh
    return c, amp


def fit_form(name: str, m: np.ndarray, e: np.ndarray, *, loss: str = "soft_l1", f_scale: float = F_SCALE,
             polish: bool = True) -> FormFit | None:
    """Fit family ``name`` to sizes ``m`` and errors ``e`` (sorted, positive); None when nothing fits.

    ``pow2`` (pure power law, no floor) is ordinary least squares in log space, the fallback for few points.
    """
    fam = FAMILIES[name]
    m_ref = float(m[-1])
    x, y = m / m_ref, np.log(e)
    if name == "pow2":
        a, b = ols_line(np.log(x), y)
        r = y - (a + b * np.log(x))
        return FormFit(name, math.exp(float(a)), (float(-b),), 0.0, m_ref, float(robust_cost(r, loss, f_scale)),
                       float(r @ r), int(m.size))
    xm = float(x[0])
    c_max = (1.0 - GAMMA_MARGIN) * float(e.min())
    theta = fam.grid(xm)
    with np.errstate(all="ignore"):
        h = fam.basis(x, theta)
        c, amp = _linear_given_theta(h, e, c_max)
        pred = c[:, None] + amp[:, None] * h
        ok = (amp > 0) & np.all(np.isfinite(pred) & (pred > 0), axis=1)
        costs = np.where(ok, robust_cost(y - np.log(np.where(pred > 0, pred, 1.0)), loss, f_scale), np.inf)
    j = int(np.argmin(costs))
    if not np.isfinite(costs[j]):
        return None
    best = np.concatenate([[math.log(amp[j])], theta[j], [c[j]]])
    if polish:
        lo_t, hi_t = fam.bounds(xm)
        log_amp = math.log(float(e.max()))
        lb = np.array([log_amp - 30.0, *lo_t, 0.0])
        ub = np.array([log_amp + 30.0, *hi_t, c_max])

        def resid(p: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                v = p[-1] + np.exp(p[0]) * fam.basis(x, p[None, 1:-1])[0]
            return y - np.log(np.where(v > 0, v, 1e-300))

        def jac(p: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                h = fam.basis(x, p[None, 1:-1])[0]
                amp = np.exp(p[0])
                v = np.where(p[-1] + amp * h > 0, p[-1] + amp * h, 1e-300)
                cols = np.column_stack([amp * h, amp * _grad(name, x, p[1:-1], h), np.ones_like(x)])
            return np.nan_to_num(-cols / v[:, None], posinf=0.0, neginf=0.0)

        x0 = np.clip(best, lb + 1e-9 * (1 + np.abs(lb)), ub - 1e-9 * (1 + np.abs(ub)))
        try:
            sol = least_squares(resid, x0, jac=jac, bounds=(lb, ub), loss=loss, f_scale=f_scale, max_nfev=30,
                                ftol=POLISH_TOL, xtol=POLISH_TOL, gtol=POLISH_TOL)
            if np.isfinite(sol.cost) and sol.cost < costs[j]:
                best = sol.x
        except (ValueError, FloatingPointError):
            pass
    fit = FormFit(name, math.exp(best[0]), tuple(float(v) for v in best[1:-1]), float(best[-1]), m_ref,
                  0.0, 0.0, int(m.size))
    r = y - np.log(fit.predict(m))
    if not np.all(np.isfinite(r)):
        return None
    return FormFit(fit.family, fit.amplitude, fit.theta, fit.floor, m_ref,
                   float(robust_cost(r, loss, f_scale)), float(r @ r), int(m.size))
