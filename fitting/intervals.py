"""Calibrated intervals for a family's fitted parameters (α, β_g, γ, β_p, σ), from a model of the sweep's noise.

Why this model: a shard's point is the best configuration's median over seeds. Its error carries the trial
noise (through the median and the minimum over configurations), the noise shared by every trial of the shard
(a lucky shuffle, a data-loader quirk) and the quantization of the best model size to the sweep's width grid;
all of it lands on the shard point as one multiplicative error, close to independent across shards. In log
space a learning curve is then a regression with independent errors of unknown scale, so

- the pure power law (log ε = log α + β_g·log m) gets OLS's line with a Student-t interval whose standard
  error is heteroscedasticity-robust (HC2) and whose degrees of freedom are Bell–McCaffrey's (2.4 for 6
  shards, 3.4 for 8, 5.0 for 11, where the pooled-variance t has n − 2): honestly wide for few shards, and
  selection of the best configuration is inside the noise it measures. Why robust: the shard points are not
  equally noisy (the end shards, whose best size sits at the edge of the widths, carried up to 1.9× the
  variance of the middle ones), and the ends are the points that set the slope; the pooled t covered 91.9 %
  and 92.9 % with 3 widths (6 and 8 shards), the robust one 95.2 % and 93.8 % (1000 sweeps each).
  One part of the error is not noise: the best width's
  distance from the best size (a sawtooth along the shards that inflates the residuals but hardly moves the
  slope; raw t intervals covered 97–99 %). When :mod:`fitting.best_size` has located the best sizes, that
  penalty log(1 + c·d²) is taken out before the line's interval is computed (:func:`grid_penalty`), and out
  of the shards cut as plateau before the plausible cuts are judged (:func:`_cut_penalty`). The
  best model size (log s = log σ + β_p·log m) gets a t interval too, from best sizes read between the widths.
- the power law with a floor gets a parametric bootstrap: log residuals redrawn around the fitted law with a
  scale drawn from its χ² posterior (σ² = RSS/χ²_{n−k}, which turns a plug-in normal into the t of a linear
  model), each replicate refitted with the form rule of the point fit ("auto" selects inside each replicate).
  Percentile intervals: the basic bootstrap (2·θ̂ − quantiles) covered 76 % with 6 shards, where the estimator
  is skewed by its bounds (γ ≥ 0); percentile intervals covered 96 % there and 94 % with 8 shards.

Replicates (``reps``) are draws from the same distributions, paired by index, for predictions and bands.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats

from fitting.best_size import BestSizeLaw
from fitting.laws import (
    MIN_FLOOR_POINTS,
    MIN_GAMMA_SHARE,
    LawFit,
    aic,
    fit_batch,
    plateau_cuts,
    select_form,
)

Interval = tuple[float, float]
KEYS = ("alpha", "beta_g", "gamma", "beta_p", "sigma")
DOUBT_Z = 1.5  # a leading point this many residual s.d. (and ≥ DOUBT_TOL) below the law may be plateau
DOUBT_TOL = 0.05


def candidate_cuts(m: np.ndarray, eps: np.ndarray, cut: int, rule: str) -> list[int]:
    """Plateau cuts of the full curve (``m``, ``eps``: every shard) to average over: the point fit's ``cut`` and
    every other cut a lax rule finds valid, shallower or deeper.

    Why: the plateau's end is uncertain. The point fit cuts only points ≥ 3 s.d. below the law (so clean curves
    keep their points), which misses a plateau point 2–3 s.d. below it about half the time (1 seed, 5 % noise)
    or cuts a law point after one, and the slope of the remaining points then misses the law's (coverage
    10–80 % on such sweeps). The lax rule (gap > max(0.05, 1.5·s), flat with the points before) names the
    plausible cuts; :func:`cut_weights` weighs them.
    """
    if m.size - cut <= 3:
        return [cut]
    return sorted({cut, *plateau_cuts(m, eps, rule, tol=DOUBT_TOL, z=DOUBT_Z)})


def cut_weights(cuts: list[int], rss: list[float], n: int, n_params: int) -> np.ndarray:
    """Akaike weights of "the smallest j shards are off the law" for each j in ``cuts`` (ascending).

    ``rss[i]``: the law's squared log residuals over the shards it keeps when ``cuts[i]`` are cut, of ``n``.
    Each cut shard is one free parameter (fitted exactly); the scale is the residual variance of the deepest
    cut, so a shard 3 s.d. below the law gets weight e^3.5 ≈ 33 for being cut, one 1.4 s.d. below even odds.
    """
    deep = cuts[-1]
    s2 = max(rss[-1] / max(n - deep - n_params, 1), 1e-12)
    crit = np.array([r / s2 + 2.0 * j for j, r in zip(cuts, rss, strict=True)])
    w = np.exp(-(crit - crit.min()) / 2.0)
    return w / w.sum()


def mixture_interval(centers: np.ndarray, scales: np.ndarray, dofs: np.ndarray, weights: np.ndarray,
                     level: float) -> Interval:
    """Central ``level`` interval of a mixture of scaled Student-t distributions (exact quantiles)."""
    from scipy.optimize import brentq

    def cdf(v: float) -> float:
        return float(weights @ stats.t.cdf((v - centers) / scales, dofs))

    span = float(np.max(np.abs(centers)) + 50.0 * np.max(scales) * (1.0 + float(stats.t.ppf(0.999, dofs.min()))))
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    return (brentq(lambda v: cdf(v) - lo_q, -span, span, xtol=1e-10),
            brentq(lambda v: cdf(v) - hi_q, -span, span, xtol=1e-10))


def weighted_quantile_interval(values: list[np.ndarray], weights: np.ndarray, level: float) -> Interval | None:
    """Central ``level`` interval of pooled draws, each set weighted by ``weights`` (split over its draws)."""
    vs, ws = [], []
    for v, w in zip(values, weights, strict=True):
        ok = v[np.isfinite(v)]
        if ok.size:
            vs.append(ok)
            ws.append(np.full(ok.size, w / ok.size))
    if not vs:
        return None
    v, w = np.concatenate(vs), np.concatenate(ws)
    return weighted_quantile(v, w, (1 - level) / 2), weighted_quantile(v, w, 1 - (1 - level) / 2)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose cumulative weight share reaches ``q`` (a step-function quantile)."""
    order = np.argsort(values)
    cw = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][min(int(np.searchsorted(cw, q)), values.size - 1)])


def t_line(x: np.ndarray, y: np.ndarray, n_draws: int, level: float,
           rng: np.random.Generator) -> tuple[dict[str, Interval | None], np.ndarray, np.ndarray]:
    """OLS y ≈ a + b·x with Student-t(n − 2) intervals for b and a, and draws (a, b) from the same t.

    Returns ({"a": …, "b": …}, a draws, b draws); intervals are None for fewer than 3 points.
    """
    n = x.size
    xc = x - x.mean()
    sxx = float(xc @ xc)
    nu = n - 2
    if nu < 1 or sxx <= 0:
        return {"a": None, "b": None}, np.full(n_draws, np.nan), np.full(n_draws, np.nan)
    b = float(xc @ y) / sxx
    a_bar = float(y.mean())
    s = math.sqrt(float(np.sum((y - a_bar - b * xc) ** 2)) / nu)
    se_b, se_bar, se_a = s / math.sqrt(sxx), s / math.sqrt(n), s * math.sqrt(1 / n + x.mean() ** 2 / sxx)
    a = a_bar - b * x.mean()
    t = float(stats.t.ppf(0.5 + level / 2, nu))
    w = np.sqrt(nu / rng.chisquare(nu, size=n_draws))  # one scale per draw: (a, b) jointly t-distributed
    b_draws = b + w * se_b * rng.standard_normal(n_draws)
    a_draws = a_bar + w * se_bar * rng.standard_normal(n_draws) - b_draws * x.mean()
    return {"a": (a - t * se_a, a + t * se_a), "b": (b - t * se_b, b + t * se_b)}, a_draws, b_draws


class RobustLine(NamedTuple):
    """A least-squares line with its HC2 covariance and Bell–McCaffrey degrees of freedom (see :func:`robust_line`)."""

    theta: np.ndarray  # (a, b)
    cov: np.ndarray  # 2 × 2
    dof_a: float
    dof_b: float
    rss: float


def robust_line(x: np.ndarray, y: np.ndarray) -> RobustLine | None:
    """OLS y ≈ a + b·x with a heteroscedasticity-robust covariance and its small-sample degrees of freedom.

    Returns θ = (a, b), ``cov`` their HC2 covariance (each squared residual over 1 − leverage), dof_a/dof_b
    Bell–McCaffrey's Satterthwaite degrees of freedom of a and b under equal variances, and the residual sum
    of squares; None for fewer than 3 points. Why: the shard points are not equally noisy. Net of the grid
    penalty, the end shards, whose best size sits at or beyond the edge of the widths (its penalty read from
    an extrapolated optimum), carried 1.3–1.9× the variance of the middle ones, and they are the points of
    highest leverage on the slope: the pooled-variance t interval covered 91.9 % (6 shards, one seed). HC2 is
    unbiased under equal variances, and its Satterthwaite dof (2.4 for 6 shards, 5.0 for 11, where OLS has 4
    and 9) make the t interval close to exact for Gaussian errors of any variances.
    """
    n = x.size
    if n < 3 or np.ptp(x) <= 0:
        return None
    design = np.column_stack([np.ones(n), x])
    bread = np.linalg.inv(design.T @ design)
    theta = bread @ design.T @ y
    lev = np.einsum("ij,jk,ik->i", design, bread, design)
    resid = y - design @ theta
    rows = design @ bread  # n × 2: θ = rows.T @ y
    shrink = 1.0 / np.maximum(1.0 - lev, 1e-12)
    cov = (rows * (resid**2 * shrink)[:, None]).T @ rows
    proj = np.eye(n) - design @ bread @ design.T

    def dof(col: np.ndarray) -> float:
        mat = proj @ ((col**2 * shrink)[:, None] * proj)  # the variance estimate is uᵀ·mat·u for errors u
        return float(np.trace(mat) ** 2 / max(float(np.sum(mat * mat)), 1e-300))

    return RobustLine(theta, cov, dof(rows[:, 0]), dof(rows[:, 1]), float(resid @ resid))


def grid_penalty(m: np.ndarray, params: np.ndarray | None, size_law: BestSizeLaw | None) -> np.ndarray | None:
    """Log error the best configuration pays for its width's distance from the best size, per shard: log(1 + c·d²).

    Why: with a width grid, the best width sits a varying distance from the best size, so the best error
    carries a sawtooth that inflates the residuals of the learning curve but hardly moves its slope (a t
    interval on the raw points covered 97–99 %). None without a best-size law. Applied whenever there is one:
    applying it only where it lowered the residuals biased the scale down (coverage 92.5–93.8 %).
    """
    if params is None or size_law is None:
        return None
    pen = np.zeros(m.size)
    for j, size in enumerate(m):
        hit = np.flatnonzero(np.isclose(size_law.sizes, size))
        if hit.size:
            d = math.log(float(params[j])) - float(size_law.log_best[hit[0]])
            pen[j] = math.log1p(size_law.curvature * d * d)
    return pen if np.any(pen > 0) else None


def _cut_penalty(excluded: tuple[np.ndarray, ...] | None, size_law: BestSizeLaw | None) -> np.ndarray:
    """:func:`grid_penalty` of the shards cut as plateau (``excluded`` = (sizes, errors, best num_params)), their
    best sizes read from the law's line (the law was fitted without them); zeros when their sizes are unknown.

    Why: whether a small shard sits on a plateau is judged on its distance below the law, and a penalty of up
    to 15 % (3 widths) hid a plateau shard 0.19 below the law in about one sweep in eight (1 seed, 5 % noise).
    """
    if excluded is None or size_law is None or len(excluded) < 3:
        return np.zeros(0 if excluded is None else len(excluded[0]))
    sizes, counts = np.asarray(excluded[0], float), np.asarray(excluded[2], float)
    ok = np.isfinite(counts) & (counts > 0)
    d = np.log(np.where(ok, counts, 1.0)) - (size_law.log_sigma + size_law.beta_p * np.log(sizes))
    return np.where(ok, np.log1p(size_law.curvature * d * d), 0.0)


def _select_auto(m: np.ndarray, eps: np.ndarray, power: dict[str, np.ndarray],
                 floor: dict[str, np.ndarray]) -> np.ndarray:
    """Per replicate row of ``eps``: does :func:`fitting.laws.select_form`'s "auto" rule keep the floor?"""
    n = m.size
    if n < MIN_FLOOR_POINTS:
        return np.zeros(eps.shape[0], dtype=bool)

    def rss(p: dict[str, np.ndarray]) -> np.ndarray:
        pred = p["alpha"][:, None] * m[None, :] ** p["beta"][:, None] + p["gamma"][:, None]
        return np.sum((np.log(eps) - np.log(pred)) ** 2, axis=1)

    aic_p = np.array([aic(r, n, 2) for r in rss(power)])
    aic_f = np.array([aic(r, n, 3) for r in rss(floor)])
    return (floor["beta"] < 0) & (floor["gamma"] >= MIN_GAMMA_SHARE * eps.min(axis=1)) & (aic_f < aic_p)


def _floor_bootstrap(m: np.ndarray, eps: np.ndarray, law: LawFit, rule: str, n_draws: int, level: float,
                     rng: np.random.Generator) -> tuple[dict[str, Interval | None], dict[str, np.ndarray]]:
    """Parametric bootstrap of a floor law (or an "auto" choice): percentile intervals and the draws."""
    n, k = m.size, law.n_params
    nu = n - k
    if nu < 1:
        nan = np.full(n_draws, np.nan)
        return {"alpha": None, "beta_g": None, "gamma": None}, {"alpha": nan, "beta_g": nan, "gamma": nan.copy()}
    s = math.sqrt(law.rss / nu)
    scale = s * np.sqrt(nu / rng.chisquare(nu, size=(n_draws, 1)))
    sim = np.asarray(law.predict(m))[None, :] * np.exp(scale * rng.standard_normal((n_draws, n)))
    fl = fit_batch(m, sim, "floor", loss=law.loss)
    if rule == "auto":
        pw = fit_batch(m, sim, "power")
        keep = _select_auto(m, sim, pw, fl)
        fl = {key: np.where(keep, fl[key], pw[key]) for key in fl}
    reps = {"alpha": fl["alpha"], "beta_g": fl["beta"], "gamma": fl["gamma"]}
    return {key: quantile_interval(v, level) for key, v in reps.items()}, reps


def quantile_interval(values: np.ndarray, level: float) -> Interval | None:
    """Central ``level`` interval of the finite values; None for fewer than 2."""
    v = values[np.isfinite(values)]
    if v.size < 2:
        return None
    lo, hi = np.quantile(v, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def _size_law_draws(law: BestSizeLaw, n_draws: int, level: float,
                    rng: np.random.Generator) -> tuple[Interval, Interval, np.ndarray, np.ndarray]:
    """t(dof) intervals for β_p and σ from the law's covariance, and (β_p, σ) draws from the bivariate t."""
    t = float(stats.t.ppf(0.5 + level / 2, law.dof))
    se_a, se_b = (math.sqrt(max(v, 0.0)) for v in np.diag(law.cov))
    chol = np.linalg.cholesky(law.cov + 1e-18 * np.eye(2))
    w = np.sqrt(law.dof / rng.chisquare(law.dof, size=n_draws))
    z = (chol @ rng.standard_normal((2, n_draws))) * w
    beta = (law.beta_p - t * se_b, law.beta_p + t * se_b)
    sigma = (math.exp(law.log_sigma - t * se_a), math.exp(law.log_sigma + t * se_a))
    return beta, sigma, law.beta_p + z[1], np.exp(law.log_sigma + z[0])


def parameter_intervals(m: np.ndarray, eps: np.ndarray, law: LawFit, rule: str, params: np.ndarray | None,
                        size_law: BestSizeLaw | None, n_draws: int, level: float, seed: int,
                        excluded: tuple[np.ndarray, ...] | None = None,
                        ) -> tuple[dict[str, Interval | None], str, dict[str, np.ndarray], list[str]]:
    """Intervals for alpha, beta_g, gamma, beta_p, sigma; the method (a sentence); draws; notes.

    ``m``, ``eps``: the shard points fitted (plateau already cut); ``law``: the point fit, found with form
    rule ``rule`` ("power", "floor" or "auto"); ``excluded``: the (sizes, errors[, best num_params]) the point
    fit cut as plateau (their num_params put them net of the grid penalty when the cuts are judged).
    Other plausible cuts (:func:`candidate_cuts`) widen α, β_g, γ by model averaging over the cuts; for a
    floor law only after a plateau was cut (its curved small-size end otherwise looks like one: floor sweeps
    without a plateau covered 98.5 %). β_p: from ``size_law``
    (interpolated best sizes, see :mod:`fitting.best_size`) when given, else from ``params`` (best num_params
    per shard, quantized to the width grid: a Student-t interval that is conservative); neither: no β_p
    interval.
    """
    rng = np.random.default_rng(seed)
    m, eps = np.asarray(m, float), np.asarray(eps, float)
    n = m.size
    x = np.log(m)
    reps = {key: np.full(n_draws, np.nan) for key in KEYS}
    intervals: dict[str, Interval | None] = dict.fromkeys(KEYS)
    notes: list[str] = []
    floor_like = not (law.form == "power" and rule == "power")
    k = 0 if excluded is None else len(excluded[0])
    m_all = m if not k else np.concatenate([np.asarray(excluded[0], float), m])  # type: ignore[index]
    e_all = eps if not k else np.concatenate([np.asarray(excluded[1], float), eps])  # type: ignore[index]
    x_all, y_all = np.log(m_all), np.log(e_all)
    if not floor_like:
        pen = grid_penalty(m, params, size_law)
        net = y_all - np.concatenate([_cut_penalty(excluded, size_law) if pen is not None else np.zeros(k),
                                      pen if pen is not None else np.zeros(n)])
        cuts = [k] if n <= 3 else candidate_cuts(m_all, np.exp(net), k, "power")
        lines = [robust_line(x_all[c:], net[c:]) for c in cuts]
        main = lines[cuts.index(k)]
        if main is not None:
            t_b, t_a = (float(stats.t.ppf(0.5 + level / 2, v)) for v in (main.dof_b, main.dof_a))
            se_a, se_b = (math.sqrt(max(float(v), 0.0)) for v in np.diag(main.cov))
            a_hat, b_hat = (float(v) for v in main.theta)
            intervals["beta_g"] = (b_hat - t_b * se_b, b_hat + t_b * se_b)
            intervals["alpha"] = (math.exp(a_hat - t_a * se_a), math.exp(a_hat + t_a * se_a))
            w_draw = np.sqrt(main.dof_b / rng.chisquare(main.dof_b, size=n_draws))
            z = np.linalg.cholesky(main.cov + 1e-18 * np.eye(2)) @ rng.standard_normal((2, n_draws)) * w_draw
            with np.errstate(over="ignore"):  # t draws at 1-2 dof reach e^1000: an unbounded α draw, inf is right
                reps["alpha"] = np.exp(a_hat + z[0])
            reps["beta_g"] = b_hat + z[1]
        if len(cuts) > 1 and main is not None and all(ln is not None for ln in lines):
            w = cut_weights(cuts, [ln.rss for ln in lines], m_all.size, 2)  # type: ignore[union-attr]
            for key, col in (("beta_g", 1), ("alpha", 0)):
                centers = np.array([ln.theta[col] for ln in lines])  # type: ignore[union-attr]
                scales = np.sqrt(np.array([max(float(ln.cov[col, col]), 1e-300) for ln in lines]))  # type: ignore[union-attr]
                dofs = np.array([ln.dof_b if col else ln.dof_a for ln in lines])  # type: ignore[union-attr]
                lo, hi = mixture_interval(centers, scales, dofs, w, level)
                intervals[key] = (math.exp(lo), math.exp(hi)) if key == "alpha" else (lo, hi)
        dof_txt = f"{main.dof_b:.1f}" if main is not None else "no"
        method = (f"Student-t ({dof_txt} dof, Bell–McCaffrey) on the log-log least-squares line, "
                  "heteroscedasticity-robust (HC2) standard errors")
        if pen is not None:
            method += " net of the best width's distance from the best size"
    else:
        cuts = [k] if n <= 3 or not k else candidate_cuts(m_all, e_all, k, rule)
        iv_g, draws = _floor_bootstrap(m, eps, law, rule, n_draws, level, rng)
        if len(cuts) > 1:
            laws, sets = [], []
            for c in cuts:
                law_c = law if c == k else select_form(m_all[c:], e_all[c:], rule, loss=law.loss)[0]
                laws.append(law_c)
                sets.append(draws if c == k else
                            _floor_bootstrap(m_all[c:], e_all[c:], law_c, rule, n_draws, level, rng)[1])
            w = cut_weights(cuts, [lw.rss for lw in laws], m_all.size, law.n_params)
            iv_g = {key: weighted_quantile_interval([d[key] for d in sets], w, level) for key in iv_g}
        intervals.update(iv_g)
        reps.update(draws)
        method = (f"parametric bootstrap of the {law.form} law ({n_draws} draws, residual scale from "
                  f"χ²({n - law.n_params}), form rule '{rule}' inside each draw, percentile intervals)")
    if len(cuts) > 1:
        method += (f"; averaged (Akaike weights) over plausible small-data plateau cuts {cuts} (shards left out; "
                   f"the fit's: {k})")
        notes.append(f"where the small-data plateau ends is uncertain (plausible cuts: {cuts} shards): the "
                     "intervals of α, β_g and γ average over them")
    if n - law.n_params < 2:
        notes.append(f"{n} shards for {law.n_params} parameters: the intervals are very wide; add shards")
    if size_law is not None:
        intervals["beta_p"], intervals["sigma"], reps["beta_p"], reps["sigma"] = _size_law_draws(
            size_law, n_draws, level, rng)
        method += (f"; β_p: best size interpolated between widths (score ∝ 1 + c·d², c = {size_law.curvature:.3g}"
                   f" shared), weighted line, delta-method covariance, Student-t ({size_law.dof} dof)")
    elif params is not None and np.ptp(np.log(np.asarray(params, float))) == 0:
        notes.append("β_p interval unbounded: the best configuration's size is the same at every shard")
        method += "; β_p: no interval (one best size)"
    elif params is not None:
        iv, a, b = t_line(x, np.log(np.asarray(params, float)), n_draws, level, rng)
        reps["beta_p"], reps["sigma"] = b, np.exp(a)
        intervals["beta_p"] = iv["b"]
        intervals["sigma"] = (math.exp(iv["a"][0]), math.exp(iv["a"][1])) if iv["a"] else None
        method += "; β_p: Student-t on the best configuration's log num_params (quantized to the widths: wide)"
    if law.form == "power":
        intervals["gamma"] = None
        reps["gamma"] = np.zeros(n_draws)
    return intervals, method, reps, notes
