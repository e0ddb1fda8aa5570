"""The best model size at each shard, read between the sweep's widths, and the law s(m) = σ·m^β_p through it.

Why: a sweep searches a fixed grid of widths, so the best configuration's num_params is quantized to that
grid. A line through quantized best sizes has a slope error that is mostly quantization, correlated along the
shards, and no interval built from its residuals means what it says (on synthetic sweeps a Student-t interval
covered 98–100 % and was 4× too wide). Each width's score (best configuration of that width, median over
seeds) instead traces the penalty of being off the best size, A·(1 + c·d²) for d = log(num_params) − ℓ
(Chinchilla's approach 2, one curvature c shared by all shards). Fitting c and each shard's ℓ gives best
sizes between the widths with a covariance (delta method, the uncertainty of c included: it moves every ℓ
together), and the weighted line through them has a calibrated Student-t interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from fitting.laws import ModelSizeFit, fit_model_size

MIN_SHARDS = 3
# Each shard's weight is 1/var(ℓ) from the delta method. Evaluated at the shard's own estimate, it is smallest
# where noise pulled ℓ towards the widths (end shards pulled inwards): those got the most weight, β_p was biased
# low with a narrow interval (6 shards, 3 widths, 1 seed, 5 % noise: 92.5 %). Evaluated at the line's ℓ
# (iteratively reweighted, as a GLM evaluates its variance at the fitted mean): 94.3 %.
IRLS_STEPS = 2


@dataclass
class BestSizeLaw:
    """log s = log σ + β_p·log m through interpolated best sizes, with the covariance of (log σ, β_p)."""

    log_sigma: float
    beta_p: float
    cov: np.ndarray  # 2 × 2, (log σ, β_p)
    dof: int  # of the score-noise estimate
    curvature: float  # c
    sizes: np.ndarray  # shards used
    log_best: np.ndarray  # interpolated log best size per shard used
    outside: list[float]  # shard sizes whose best size lies beyond the searched widths
    r2: float

    @property
    def sigma(self) -> float:
        return math.exp(self.log_sigma)


def width_scores(trials: pd.DataFrame, sizes: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """n × W log num_params and log score per shard (score: best configuration of that width, median over
    seeds; the sign of the metric is that of an error), NaN where a shard lacks a width."""
    f = trials.assign(num_params=pd.to_numeric(trials["num_params"], errors="coerce"))
    f = f[f["train_size"].isin(sizes) & np.isfinite(f["num_params"]) & (f["num_params"] > 0) & (f["value"] > 0)]
    med = f.groupby(["train_size", "num_params", "config_key"])["value"].median()
    best = med.groupby(level=["train_size", "num_params"]).min().reset_index()
    widths = np.sort(best["num_params"].unique())
    grids = np.full((len(sizes), widths.size), np.nan)
    scores = np.full_like(grids, np.nan)
    row = {s: i for i, s in enumerate(sizes)}
    col = np.searchsorted(widths, best["num_params"].to_numpy())
    rows = best["train_size"].map(row).to_numpy()
    grids[rows, col] = np.log(best["num_params"].to_numpy(float))
    scores[rows, col] = np.log(best["value"].to_numpy(float))
    return grids, scores


def _optima_given_c(c: float, g: np.ndarray, y: np.ndarray, ok: np.ndarray,
                    ells: np.ndarray) -> tuple[float, np.ndarray]:
    """Total RSS and each shard's best log size ℓ (on the grid ``ells``, parabola-refined) for curvature c."""
    d2 = (g[None] - ells[:, None, None]) ** 2  # (E, n, W)
    r = np.where(ok, y - np.log1p(c * d2), 0.0)
    a = r.sum(-1) / np.maximum(ok.sum(-1), 1)
    rss = np.sum(np.where(ok, r - a[..., None], 0.0) ** 2, axis=-1)  # (E, n)
    cols = np.arange(rss.shape[1])
    k = np.clip(np.argmin(rss, axis=0), 1, ells.size - 2)
    f0, f1, f2 = rss[k - 1, cols], rss[k, cols], rss[k + 1, cols]
    den = f0 - 2 * f1 + f2
    shift = np.where(den > 0, 0.5 * (f0 - f2) / np.where(den > 0, den, 1.0), 0.0)
    return float(rss[k, cols].sum()), ells[k] + np.clip(shift, -1.0, 1.0) * (ells[1] - ells[0])


def interpolated_optima(grids: np.ndarray, log_scores: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Each shard's best log size ℓ between the widths and the shared curvature c (rows need ≥ 2 widths).

    ℓ is searched up to one grid step beyond the widths; None when the scores show no curvature.
    """
    ok = np.isfinite(grids) & np.isfinite(log_scores)
    g, y = np.where(ok, grids, 0.0), np.where(ok, log_scores, 0.0)
    lo, hi = float(grids[ok].min()), float(grids[ok].max())
    pad = float(np.median(np.concatenate([np.diff(np.unique(r[m])) for r, m in zip(grids, ok, strict=True)])))
    coarse = np.linspace(lo - pad, hi + pad, 121)
    cs = np.geomspace(1e-2, 1e2, 41)
    costs = [_optima_given_c(float(c), g, y, ok, coarse)[0] for c in cs]
    j = int(np.argmin(costs))
    if j == 0:
        return None
    res = optimize.minimize_scalar(lambda lc: _optima_given_c(math.exp(lc), g, y, ok, coarse)[0],
                                   bounds=(math.log(cs[j - 1]), math.log(cs[min(j + 1, cs.size - 1)])),
                                   method="bounded", options={"xatol": 1e-4})
    c = math.exp(float(res.x))
    _, ell = _optima_given_c(c, g, y, ok, coarse)
    fine = np.linspace(-1.0, 1.0, 41) * (coarse[1] - coarse[0])
    out = np.array([_optima_given_c(c, g[i:i + 1], y[i:i + 1], ok[i:i + 1], ell[i] + fine)[1][0]
                    for i in range(ell.size)])
    return np.clip(out, lo - pad, hi + pad), c


def _optima_covariance(grids: np.ndarray, log_scores: np.ndarray, ell: np.ndarray,
                       c: float, at: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Covariance of the ℓ's (delta method over a_shard, ℓ_shard and the shared c, linearized at ``at``, default
    ``ell``) and the noise dof (residuals at ``ell``)."""
    ok = np.isfinite(grids) & np.isfinite(log_scores)
    n = ell.size
    d = np.where(ok, grids - ell[:, None], 0.0)
    r = np.where(ok, log_scores - np.log1p(c * d**2), 0.0)
    r = np.where(ok, r - (r.sum(1) / ok.sum(1))[:, None], 0.0)
    dof = int(ok.sum()) - 2 * n - 1
    if dof < 1:  # no scores left to estimate the noise (fit_best_size gives up)
        return np.full((n, n), np.nan), dof
    jac = np.zeros((int(ok.sum()), 2 * n + 1))
    j, w = np.nonzero(ok)
    dd = (d if at is None else np.where(ok, grids - at[:, None], 0.0))[j, w]
    jac[np.arange(j.size), j] = 1.0
    jac[np.arange(j.size), n + j] = 2 * c * dd / (1 + c * dd**2)
    jac[:, 2 * n] = dd**2 / (1 + c * dd**2)
    tau2 = float(np.sum(r**2)) / dof
    return tau2 * np.linalg.pinv(jac.T @ jac)[n:2 * n, n:2 * n], dof


def fit_best_size(trials: pd.DataFrame, sizes: list[float]) -> BestSizeLaw | None:
    """The best-size law through interpolated best sizes, or None when the sweep cannot support it (fewer than
    3 shards with ≥ 2 widths, no curvature in the scores, too few scores for the noise, best size beyond the
    searched widths at most shards)."""
    grids, scores = width_scores(trials, sizes)
    keep = (np.isfinite(grids) & np.isfinite(scores)).sum(axis=1) >= 2
    if keep.sum() < MIN_SHARDS:
        return None
    grids, scores, m = grids[keep], scores[keep], np.asarray(sizes, float)[keep]
    found = interpolated_optima(grids, scores)
    if found is None:
        return None
    ell, c = found
    cov_ell, dof = _optima_covariance(grids, scores, ell, c)
    if dof < 1 or not np.all(np.isfinite(cov_ell)):
        return None
    x = np.log(m)
    design = np.column_stack([np.ones_like(x), x])
    for step in range(IRLS_STEPS + 1):  # weights from the variance at the line's ℓ, not at each shard's estimate
        w = 1.0 / np.maximum(np.diag(cov_ell), 1e-12 * max(float(np.max(np.diag(cov_ell))), 1e-300))
        hat = np.linalg.solve(design.T @ (w[:, None] * design), (design * w[:, None]).T)  # 2 × n
        coef = hat @ ell
        if step < IRLS_STEPS:
            cov_ell, _ = _optima_covariance(grids, scores, ell, c, at=design @ coef)
    resid = ell - design @ coef
    ss_tot = float(np.sum((ell - ell.mean()) ** 2))
    outside = [float(s) for s, e, g in zip(m, ell, grids, strict=True)
               if e < np.nanmin(g) - 1e-9 or e > np.nanmax(g) + 1e-9]
    if 2 * len(outside) > m.size:
        return None  # mostly extrapolated beyond the widths: the sweep does not locate the best size
    return BestSizeLaw(float(coef[0]), float(coef[1]), hat @ cov_ell @ hat.T, dof, c, m, ell, outside,
                       1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else math.nan)


@dataclass
class SizeFit:
    """β_p on one parameter count (all parameters, or without embeddings): the law, how it was found, why not."""

    fit: ModelSizeFit | None
    law: BestSizeLaw | None  # set when the best size was interpolated between widths
    notes: list[str] = field(default_factory=list)
    reason: str = ""  # why ``fit`` is None


def fit_size(trials: pd.DataFrame, sizes: list[float], best_params: list[int | None], column: str = "num_params",
             what: str = "β_p") -> SizeFit:
    """The best-size law on ``column`` of ``trials`` (the shards ``sizes``, their best configurations' counts
    ``best_params``): interpolated between widths when the scores allow, else a line through the best counts."""
    if trials["width"].nunique() < 2:
        return SizeFit(None, None, reason=f"{what} not fitted: one model width in this sweep (β_p needs several)")
    if not all(v is not None and v > 0 for v in best_params):
        counts = pd.to_numeric(trials[column], errors="coerce") if column in trials.columns else pd.Series([])
        why = "the store has no" if counts.isna().all() else "missing for some shards:"
        return SizeFit(None, None, reason=f"{what} not fitted: {why} {column}"
                       + (" (trials written before it was recorded)" if counts.isna().all() else ""))
    frame = trials if column == "num_params" else trials.assign(num_params=trials[column])
    law = fit_best_size(frame, sizes)
    if law is not None:
        notes = [f"{what}: best model size beyond the searched widths at sizes {law.outside}: it leans on "
                 "extrapolated best sizes there"] if law.outside else []
        return SizeFit(ModelSizeFit(law.sigma, law.beta_p, law.r2, int(law.sizes.size)), law, notes)
    return SizeFit(fit_model_size(sizes, best_params), None, [
        f"{what}: best model size not interpolated between widths (no curvature in the scores, too few widths "
        "per shard, or the best size beyond the searched widths at most shards): from the best configuration's "
        f"{column}"])


def beta_p_interval(law: BestSizeLaw, level: float) -> tuple[float, float]:
    """Student-t interval of β_p from the law's covariance (the interval the main β_p gets from this law)."""
    half = float(stats.t.ppf(0.5 + level / 2, law.dof)) * math.sqrt(max(float(law.cov[1, 1]), 0.0))
    return law.beta_p - half, law.beta_p + half
