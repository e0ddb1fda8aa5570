"""The compute-optimal frontier of a fitted surface: N_opt(C), D_opt(C), L(C), and their exponents.

Why: a user planning a run has a compute budget, not a data size. Compute is C = k·N·D with k the training
FLOPs per parameter per sample: fitted from the trials' stored ``train_flops`` (median over cells, so it
includes the passes over the data that early stopping took), else 6 (C ≈ 6·N·D, marked as an estimate). For
each C the best split minimizes the surface along D = C/(k·N), searched on a fine grid of ln N and refined by
a parabola. The same search on every bootstrap draw of the surface gives the intervals (percentiles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from fitting.intervals import quantile_interval
from fitting.laws import jsonable
from fitting.surface import SurfaceFit, log_model

Interval = tuple[float, float]
SEARCH_PAD = math.log(100.0)  # the search for N_opt reaches 100× beyond the swept model sizes
GRID_POINTS = 401
N_COMPUTE = 25


def _search(theta: np.ndarray, zc: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """argmin over x ∈ [lo, hi] of ln L(x, zc − x) for θ (B, k) and zc (m,) or (B, m): (x_opt, at_edge), (B, m)."""
    xs = np.linspace(lo, hi, GRID_POINTS)
    th = np.atleast_2d(theta)
    zc = np.broadcast_to(np.atleast_2d(zc), (th.shape[0], np.shape(zc)[-1]))
    z = zc[..., None] - xs  # (B, m, G)
    vals = log_model(th[:, None, :], np.broadcast_to(xs, z.shape), z)
    j = np.argmin(vals, axis=-1)
    edge = (j == 0) | (j == xs.size - 1)
    jc = np.clip(j, 1, xs.size - 2)
    f0, f1, f2 = (np.take_along_axis(vals, (jc + s)[..., None], -1)[..., 0] for s in (-1, 0, 1))
    den = f0 - 2 * f1 + f2
    shift = np.where(den > 0, 0.5 * (f0 - f2) / np.where(den > 0, den, 1.0), 0.0)
    return xs[jc] + np.clip(shift, -1, 1) * (xs[1] - xs[0]), edge


def _slope(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Least-squares slope of v (B, m) against u (m,)."""
    uc = u - u.mean()
    return (v - v.mean(-1, keepdims=True)) @ uc / float(uc @ uc)


@dataclass
class Frontier:
    """The compute-optimal allocation over a range of compute, with intervals from the surface's draws.

    ``n_exponent``: N_opt ∝ C^n_exponent (least-squares slope over ``compute``), ``d_exponent`` = 1 − it.
    ``inside``: whether each (N_opt, D_opt) lies within the swept model sizes and train sizes.
    """

    family: str
    compute: list[float]
    n_opt: list[float]
    d_opt: list[float]
    loss: list[float]
    inside: list[bool]
    n_exponent: float
    d_exponent: float
    n_exponent_ci: Interval | None
    d_exponent_ci: Interval | None
    n_opt_band: list[Interval | None] = field(default_factory=list)
    d_opt_band: list[Interval | None] = field(default_factory=list)
    loss_band: list[Interval | None] = field(default_factory=list)
    flops_per_param_sample: float = 6.0
    compute_source: str = ""
    level: float = 0.95
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})


def _zc(fit: SurfaceFit, compute: np.ndarray) -> np.ndarray:
    k = fit.flops_per_param_sample or 6.0
    return np.log(compute / (k * fit.n0 * fit.d0))


def _bounds(fit: SurfaceFit) -> tuple[float, float]:
    x = np.log(fit.cells["num_params"].to_numpy(float) / fit.n0)
    return float(x.min()) - SEARCH_PAD, float(x.max()) + SEARCH_PAD


def compute_range(fit: SurfaceFit) -> tuple[float, float]:
    """The compute the swept cells spent (k·N·D), smallest and largest."""
    k = fit.flops_per_param_sample or 6.0
    c = k * fit.cells["num_params"].to_numpy(float) * fit.cells["train_size"].to_numpy(float)
    return float(c.min()), float(c.max())


def allocate(fit: SurfaceFit, compute: np.ndarray, theta: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """N_opt, D_opt, L and at_edge (search bound hit), each (B, m), for θ (B, k) (default: the point fit) at
    compute (m,) shared by every θ, or (B, m) one row per θ."""
    th = np.atleast_2d(fit.theta if theta is None else theta)
    zc = _zc(fit, np.asarray(compute, float))
    x, edge = _search(th, zc, *_bounds(fit))
    z = np.atleast_2d(zc) - x
    loss = np.exp(log_model(th[:, None, :], x[..., None], z[..., None])[..., 0]) if th.size else x
    return {"n": fit.n0 * np.exp(x), "d": fit.d0 * np.exp(z), "loss": loss, "edge": edge}


def _band(values: np.ndarray, level: float) -> list[Interval | None]:
    return [quantile_interval(values[:, j], level) for j in range(values.shape[1])]


def frontier(fit: SurfaceFit, compute: np.ndarray | None = None) -> Frontier:
    """The frontier over ``compute`` (default: 25 points spanning the cells' compute)."""
    if not fit.fitted:
        raise ValueError(f"{fit.domain}/{fit.family} has no surface: {fit.reason}")
    cs = np.geomspace(*compute_range(fit), N_COMPUTE) if compute is None else np.asarray(compute, float)
    point = allocate(fit, cs)
    lc = np.log(cs)
    n_exp = float(_slope(lc, np.log(point["n"]))[0])
    n_min, n_max = fit.cells["num_params"].min(), fit.cells["num_params"].max()
    d_min, d_max = fit.cells["train_size"].min(), fit.cells["train_size"].max()
    inside = [bool(n_min <= n <= n_max and d_min <= d <= d_max) for n, d in zip(point["n"][0], point["d"][0],
                                                                                   strict=True)]
    out = Frontier(fit.family, cs.tolist(), point["n"][0].tolist(), point["d"][0].tolist(),
                   point["loss"][0].tolist(), inside, n_exp, 1 - n_exp, None, None,
                   flops_per_param_sample=fit.flops_per_param_sample or 6.0, compute_source=fit.compute_source,
                   level=fit.level)
    if point["edge"].any():
        out.notes.append("N_opt reached the search bound (100× beyond the swept sizes) at some compute")
    if fit.draws.size:
        reps = allocate(fit, cs, fit.draws)
        slopes = _slope(lc, np.log(reps["n"]))
        out.n_exponent_ci = quantile_interval(slopes, fit.level)
        out.d_exponent_ci = quantile_interval(1 - slopes, fit.level)
        out.n_opt_band, out.d_opt_band = _band(reps["n"], fit.level), _band(reps["d"], fit.level)
        out.loss_band = _band(reps["loss"], fit.level)
    return out


@dataclass
class Allocation:
    """The compute-optimal point for a budget (given) or for a target error (compute needed)."""

    family: str
    given: str  # "compute" | "target_error"
    compute: float  # inf: the target lies at or below the surface's floor E
    n_opt: float
    d_opt: float
    loss: float
    compute_ci: Interval | None
    n_opt_ci: Interval | None
    d_opt_ci: Interval | None
    loss_ci: Interval | None
    extrapolated: bool  # beyond the swept compute, model sizes or train sizes
    level: float
    compute_source: str

    def to_dict(self) -> dict[str, Any]:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})


def _compute_for(fit: SurfaceFit, theta: np.ndarray, target: float) -> np.ndarray:
    """Per θ row: the compute whose optimal loss equals ``target`` (bisection on ln C, all rows at once; inf when
    the target is not reached within 10⁶× the swept compute)."""
    lo_c, hi_c = compute_range(fit)
    grid = np.geomspace(lo_c * 1e-4, hi_c * 1e6, 121)
    loss = allocate(fit, grid, theta)["loss"]  # (B, m), decreasing in C
    reached = (loss <= target).any(axis=1)
    j = np.where(reached, np.argmax(loss <= target, axis=1), 1)
    a, b = np.log(grid[np.maximum(j - 1, 0)]), np.log(grid[j])
    for _ in range(40):
        mid = 0.5 * (a + b)
        val = allocate(fit, np.exp(mid)[:, None], theta)["loss"][:, 0]
        a, b = np.where(val > target, mid, a), np.where(val > target, b, mid)
    return np.where(reached, np.exp(0.5 * (a + b)), np.inf)


def optimal_point(fit: SurfaceFit, *, compute: float | None = None, target_error: float | None = None,
                  max_draws: int = 100) -> Allocation:
    """The optimal allocation for a compute budget, or the least compute reaching ``target_error``.

    Intervals: percentiles over (up to ``max_draws``) bootstrap draws of the surface.
    """
    if not fit.fitted:
        raise ValueError(f"{fit.domain}/{fit.family} has no surface: {fit.reason}")
    if (compute is None) == (target_error is None):
        raise ValueError("give exactly one of compute= or target_error=")
    value = float(compute if compute is not None else target_error)  # type: ignore[arg-type]
    if not (math.isfinite(value) and value > 0):
        name = "compute" if compute is not None else "target_error"
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    draws = fit.draws[:max_draws] if fit.draws.size else np.zeros((0, fit.theta.size))
    if compute is not None:
        c_point, c_draws = value, np.full(draws.shape[0], value)
    else:
        c_point = float(_compute_for(fit, fit.theta[None, :], value)[0])
        c_draws = _compute_for(fit, draws, value) if draws.size else np.zeros(0)
    lo_c, hi_c = compute_range(fit)
    cn = NAN_POINT if not math.isfinite(c_point) else {k: float(v[0, 0]) for k, v in
                                                       allocate(fit, np.array([c_point])).items()}
    ci: dict[str, Interval | None] = {"compute": None, "n": None, "d": None, "loss": None}
    if draws.size:
        ok = np.isfinite(c_draws)
        got = allocate(fit, np.where(ok, c_draws, hi_c)[:, None], draws)
        vals = {"n": np.where(ok, got["n"][:, 0], np.inf), "d": np.where(ok, got["d"][:, 0], np.inf),
                "loss": got["loss"][:, 0] if target_error is None else np.full(c_draws.size, value)}
        ci["compute"] = _inf_quantiles(c_draws, fit.level)
        for key in ("n", "d", "loss"):
            ci[key] = _inf_quantiles(vals[key], fit.level)
    n_box = (fit.cells["num_params"].min(), fit.cells["num_params"].max())
    d_box = (fit.cells["train_size"].min(), fit.cells["train_size"].max())
    extrapolated = not (math.isfinite(c_point) and lo_c <= c_point <= hi_c and n_box[0] <= cn["n"] <= n_box[1]
                        and d_box[0] <= cn["d"] <= d_box[1])
    loss = value if target_error is not None else cn["loss"]
    return Allocation(fit.family, "compute" if compute is not None else "target_error", c_point, cn["n"],
                      cn["d"], loss, ci["compute"], ci["n"], ci["d"], ci["loss"], extrapolated, fit.level,
                      fit.compute_source)


NAN_POINT = {"n": math.inf, "d": math.inf, "loss": math.nan, "edge": True}


def _inf_quantiles(values: np.ndarray, level: float) -> Interval | None:
    """Percentile interval where +inf (never reached) counts as the largest value."""
    v = values[~np.isnan(values)]
    if v.size < 2:
        return None
    lo, hi = np.quantile(np.sort(v), [(1 - level) / 2, 1 - (1 - level) / 2], method="nearest")
    return float(lo), float(hi)
