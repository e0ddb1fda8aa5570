"""The joint data × model-size surface: every (shard, width) cell of a family in one fit, L(N, D).

Why: the paper's laws use the best configuration per shard and drop the rest of the sweep, so β_p comes from a
handful of discrete winners on a width grid. A joint fit of every cell (Chinchilla's approach 3) reads the
best model size between widths and gives a continuous β_p and the compute-optimal frontier (fitting.optimal).

Cells: per (train size D, parameters N) the best configuration's median over seeds (the paper's scoring of
configurations, per width instead of per shard). Forms, fitted on log L with a Huber loss (scale
``fitting.laws.F_SCALE``): ``additive`` L = E + A/N^a + B/D^b, and ``interaction`` which adds C·N^c/D^d, the
cost of a model too large for its data (with early stopping a larger model overfits a small shard); only it
has a best size at fixed data, N_opt(D) ∝ D^(d/(a+c)). The form with the lower held-out loss (whole shards
held out, K-fold) is kept. Starting points: a grid of exponents with non-negative least squares for the
coefficients, the best few polished by batched Levenberg–Marquardt, the best of those by L-BFGS (scipy).

Intervals: a parametric bootstrap in the spirit of :mod:`fitting.intervals` (which treats shard points as a
regression with independent errors whose scale comes from a χ² posterior). Here the cells of one shard share
noise (a lucky shuffle moves every width), so log residuals are split into a shard-level and a cell-level
component, each with its own χ² scale draw, and every draw is refitted (form held fixed); percentile intervals.
A real sweep's cost of size is not exactly either form, and its misfit is smooth across widths while noise is
not: the cell-level scale is the lack-of-fit residual left after a cubic in ln N (and its change with ln D), so
misfit does not pass for noise (on the project's penalty-shaped sweeps it did: 1.4× the noise, intervals covering
99.5 %; benchmarks/surface.py).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import optimize

from fitting.aggregate import one_family, usable_trials
from fitting.intervals import quantile_interval
from fitting.laws import F_SCALE, jsonable

try:  # present with scikit-learn/scipy stacks; without it the fits are the same, only slower on a busy machine
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

FORMS = ("auto", "additive", "interaction")
NAMES = ("E", "A", "a", "B", "b", "C", "c", "d")
K = {"additive": 5, "interaction": 8}
EXP_IDX = (2, 4, 6, 7)  # exponents a, b, c, d in θ; the others are logs of coefficients
EXP_BOUNDS = (0.02, 2.5)
LOG_BOUNDS = (-25.0, 25.0)
MIN_SHARDS, MIN_WIDTHS = 4, 2
INTERACTION_WIDTHS = 3  # a best size between widths needs a curvature: three sizes at least
DEFAULT_N_BOOT = 200
LEVEL = 0.95
CV_FOLDS = 4
Interval = tuple[float, float]


# ------------------------------------------------------------------------------------------------- the model
def _terms(theta: np.ndarray, x: np.ndarray, z: np.ndarray) -> list[np.ndarray]:
    """The terms of L at normalized log sizes x = ln(N/N0), z = ln(D/D0) for θ (..., k): each broadcasts to
    (..., n) (the floor E stays (..., 1))."""
    th = theta[..., None, :]
    t = [np.exp(th[..., 0]), np.exp(th[..., 1] - th[..., 2] * x), np.exp(th[..., 3] - th[..., 4] * z)]
    if theta.shape[-1] == 8:
        t.append(np.exp(np.clip(th[..., 5] + th[..., 6] * x - th[..., 7] * z, -700, 700)))
    return t


def log_model(theta: np.ndarray, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """ln L(x, z) for θ of shape (..., k), broadcast against x, z of shape (n,)."""
    t = _terms(theta, x, z)
    total = t[1] + t[2] + t[0]
    if len(t) == 4:
        total += t[3]
    return np.log(total)


def _jacobian(theta: np.ndarray, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ln L, ∂ln L/∂θ) with shapes (..., n) and (..., n, k)."""
    t = _terms(theta, x, z)
    total = t[1] + t[2] + t[0]
    if len(t) == 4:
        total += t[3]
    jac = np.empty((*total.shape, theta.shape[-1]))
    f1, f2 = t[1] / total, t[2] / total
    jac[..., 0] = t[0] / total
    jac[..., 1], jac[..., 2] = f1, -x * f1
    jac[..., 3], jac[..., 4] = f2, -z * f2
    if len(t) == 4:
        f3 = t[3] / total
        jac[..., 5], jac[..., 6], jac[..., 7] = f3, x * f3, -z * f3
    return np.log(total), jac


def huber(r: np.ndarray, delta: float = F_SCALE) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _clip(theta: np.ndarray) -> np.ndarray:
    out = np.clip(theta, *LOG_BOUNDS)
    idx = [i for i in EXP_IDX if i < theta.shape[-1]]
    out[..., idx] = np.clip(theta[..., idx], *EXP_BOUNDS)
    return out


def _lm(theta: np.ndarray, x: np.ndarray, z: np.ndarray, y: np.ndarray, iters: int = 80) -> np.ndarray:
    """Batched Levenberg–Marquardt on the Huber loss (IRLS weights), projected onto the bounds.

    θ (B, k) starts, y (B, n) or (n,) targets. Returns the polished θ (B, k). A row stops when a step gains
    less than 1e-10 of its cost or its damping passes 1e7 (no step helps); only active rows are computed."""
    theta = _clip(np.array(theta, dtype=float))
    y = np.broadcast_to(y, (theta.shape[0], x.size))
    lam = np.full(theta.shape[0], 1e-2)
    eye = np.eye(theta.shape[1])
    pred, jac = _jacobian(theta, x, z)
    cost = huber(pred - y).sum(-1)
    active = np.ones(theta.shape[0], dtype=bool)
    for _ in range(iters):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        th, pr, jc, ya, la, co = theta[idx], pred[idx], jac[idx], y[idx], lam[idx], cost[idx]
        r = pr - ya
        w = np.where(np.abs(r) <= F_SCALE, 1.0, F_SCALE / np.maximum(np.abs(r), 1e-300))
        g = np.einsum("bnk,bn->bk", jc, w * r)
        h = np.einsum("bnk,bnj->bkj", jc * w[..., None], jc)
        damp = la[:, None, None] * (np.diagonal(h, axis1=1, axis2=2)[:, :, None] * eye + 1e-9 * eye)
        try:
            step = np.linalg.solve(h + damp, -g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g * 1e-3
        cand = _clip(th + np.nan_to_num(step))
        p_new, j_new = _jacobian(cand, x, z)
        c_new = huber(p_new - ya).sum(-1)
        better = np.isfinite(c_new) & (c_new < co)
        theta[idx] = np.where(better[:, None], cand, th)
        pred[idx] = np.where(better[:, None], p_new, pr)
        jac[idx] = np.where(better[:, None, None], j_new, jc)
        cost[idx] = np.where(better, c_new, co)
        lam[idx] = np.where(better, la / 3, la * 4)
        converged = better & (co - c_new < 1e-10 * (1 + co))
        active[idx] = ~(converged | (lam[idx] > 1e7))
    return theta


def _starts(form: str, x: np.ndarray, z: np.ndarray, y: np.ndarray, keep: int = 6) -> np.ndarray:
    """A grid of exponents; for each, non-negative least squares for the coefficients in relative error."""
    grid = (0.1, 0.3, 0.6, 1.0)
    n_exp = 2 if form == "additive" else 4
    L = np.exp(y)
    out = []
    for exps in itertools.product(grid, repeat=n_exp):
        a, b = exps[0], exps[1]
        cols = [np.ones_like(x), np.exp(-a * x), np.exp(-b * z)]
        if n_exp == 4:
            cols.append(np.exp(exps[2] * x - exps[3] * z))
        design = np.column_stack(cols) / L[:, None]
        coef, rnorm = optimize.nnls(design, np.ones_like(L))
        logs = np.log(np.maximum(coef, 1e-8))
        theta = [logs[0], logs[1], a, logs[2], b]
        if n_exp == 4:
            theta += [logs[3], exps[2], exps[3]]
        out.append((rnorm, theta))
    out.sort(key=lambda t: t[0])
    return _clip(np.array([t for _, t in out[:keep]], dtype=float))


def _polish(theta: np.ndarray, x: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """L-BFGS-B on the Huber loss from the best batched start."""
    k = theta.size
    bounds = [EXP_BOUNDS if i in EXP_IDX else LOG_BOUNDS for i in range(k)]

    def fun(th: np.ndarray) -> tuple[float, np.ndarray]:
        pred, jac = _jacobian(th, x, z)
        r = pred - y
        psi = np.clip(r, -F_SCALE, F_SCALE)
        return float(huber(r).sum()), jac.T @ psi

    res = optimize.minimize(fun, theta, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-10})
    return res.x if fun(res.x)[0] <= fun(theta)[0] else theta


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """L-BFGS-B's 8 × 8 linear algebra on a multithreaded BLAS spends its time in thread hand-offs (measured:
    7 ms per iteration on a loaded 2-core machine, 8× slower than one thread)."""
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def fit_form(form: str, x: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Point fit of one form on normalized log sizes: grid → batched LM → L-BFGS. Returns θ (k,)."""
    polished = _lm(_starts(form, x, z, y), x, z, y)
    costs = huber(log_model(polished, x, z) - y).sum(-1)
    return _polish(polished[int(np.nanargmin(costs))], x, z, y)


def held_out_loss(form: str, x: np.ndarray, z: np.ndarray, y: np.ndarray, shard: np.ndarray,
                  folds: int = CV_FOLDS) -> float:
    """Mean Huber loss on whole shards held out (every ``folds``-th shard per fold, the largest included)."""
    ids = np.unique(shard)
    losses = []
    for f in range(folds):
        out = np.isin(shard, ids[f::folds])
        if not out.any() or np.unique(shard[~out]).size < MIN_SHARDS:
            continue
        theta = fit_form(form, x[~out], z[~out], y[~out])
        losses.append(huber(log_model(theta, x[out], z[out]) - y[out]))
    return float(np.mean(np.concatenate(losses))) if losses else math.inf


# ----------------------------------------------------------------------------------------------- the result
@dataclass
class SurfaceFit:
    """A fitted surface L(N, D) of one (domain, family), with bootstrap draws for intervals.

    ``theta`` holds ln E, ln A, a, ln B, b[, ln C, c, d] for sizes normalized by ``n0``, ``d0`` (geometric
    means of the cells); ``params`` the same in original units (E, A, a, B, b, C, c, d).
    ``fit`` is False (``reason`` says why) when the sweep cannot support a surface.
    """

    domain: str
    family: str
    metric: str
    size_unit: str | None
    fitted: bool
    reason: str = ""
    form: str | None = None
    form_reason: str = ""
    held_out: dict[str, float] = field(default_factory=dict)  # form → held-out Huber loss per cell
    params: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, Interval | None] = field(default_factory=dict)
    beta_p: float | None = None  # N_opt(D) ∝ D^β_p (interaction form only)
    beta_p_reason: str = ""
    rmse_log: float | None = None
    r2: float | None = None
    n_cells: int = 0
    n_shards: int = 0
    n_widths: int = 0
    n_trials: int = 0
    level: float = LEVEL
    n_boot: int = 0
    interval_method: str = "none"
    noise: dict[str, float] = field(default_factory=dict)  # shard-level and cell-level log sd
    n0: float = 1.0
    d0: float = 1.0
    theta: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    draws: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    cells: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # num_params, train_size, value, ...
    flops_per_param_sample: float | None = None
    compute_source: str = ""
    notes: list[str] = field(default_factory=list)

    def _xz(self, n: Any, d: Any) -> tuple[np.ndarray, np.ndarray]:
        return (np.log(np.asarray(n, float) / self.n0).ravel(), np.log(np.asarray(d, float) / self.d0).ravel())

    def predict(self, n: Any, d: Any, theta: np.ndarray | None = None) -> np.ndarray:
        """L at parameters ``n`` and train size ``d`` (broadcast to 1-D); ``theta`` (B, k) gives (B, m)."""
        x, z = self._xz(*np.broadcast_arrays(np.asarray(n, float), np.asarray(d, float)))
        return np.exp(log_model(self.theta if theta is None else theta, x, z))

    def n_opt(self, d: Any, theta: np.ndarray | None = None) -> np.ndarray:
        """Best parameter count at train size ``d`` (interaction form; NaN for the additive form)."""
        th = np.atleast_2d(self.theta if theta is None else theta)
        z = np.log(np.asarray(d, float) / self.d0).ravel()
        if th.shape[-1] != 8:
            return np.full((th.shape[0], z.size), np.nan)
        la, a, lc, c, d_ = th[:, 1:2], th[:, 2:3], th[:, 5:6], th[:, 6:7], th[:, 7:8]
        x = (np.log(a / c) + la - lc + d_ * z) / (a + c)
        out = self.n0 * np.exp(x)
        return out[0] if theta is None else out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no draws, no cells)."""
        keep = ("domain", "family", "metric", "size_unit", "fitted", "reason", "form", "form_reason", "held_out",
                "params", "intervals", "beta_p", "beta_p_reason", "rmse_log", "r2", "n_cells", "n_shards",
                "n_widths", "n_trials", "level", "n_boot", "interval_method", "noise", "flops_per_param_sample",
                "compute_source", "notes")
        return jsonable({k: getattr(self, k) for k in keep})


def beta_p_of(theta: np.ndarray) -> np.ndarray:
    """N_opt(D) exponent d/(a + c) of interaction θ (…, 8); NaN for the additive form."""
    th = np.atleast_2d(theta)
    if th.shape[-1] != 8:
        return np.full(th.shape[0], np.nan)
    return th[:, 7] / (th[:, 2] + th[:, 6])


def to_params(theta: np.ndarray, n0: float, d0: float) -> dict[str, float]:
    """Coefficients in original units: L = E + A·N^−a + B·D^−b (+ C·N^c·D^−d)."""
    out = {"E": math.exp(theta[0]), "A": math.exp(theta[1]) * n0 ** theta[2], "a": theta[2],
           "B": math.exp(theta[3]) * d0 ** theta[4], "b": theta[4]}
    if theta.size == 8:
        out.update(C=math.exp(theta[5]) * n0 ** -theta[6] * d0 ** theta[7], c=theta[6], d=theta[7])
    return {k: float(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------------- the cells
def cells_of(rows: pd.DataFrame, metric: str | None = None) -> tuple[pd.DataFrame, str, int]:
    """Per (train size, num_params): the best configuration's median over seeds, the number of trials behind
    it, and the mean measured FLOPs per parameter per sample of its trials (NaN when not stored)."""
    trials = usable_trials(rows, metric)
    f = trials.frame.copy()
    f["num_params"] = pd.to_numeric(f["num_params"], errors="coerce")
    f = f[np.isfinite(f["num_params"]) & (f["num_params"] > 0) & (f["value"] > 0)]
    if "train_flops" in rows.columns and not f.empty:
        flops = pd.to_numeric(rows.set_index("trial_key")["train_flops"], errors="coerce")
        f["k"] = f["trial_key"].map(flops).to_numpy(float) / (f["num_params"] * f["train_size"])
    else:
        f["k"] = np.nan
    med = f.groupby(["train_size", "num_params", "config_key"]).agg(value=("value", "median"),
                                                                     trials=("value", "size"), k=("k", "mean"))
    med = med.reset_index().sort_values(["train_size", "num_params", "value", "config_key"], kind="stable")
    cells = med.drop_duplicates(["train_size", "num_params"]).drop(columns="config_key").reset_index(drop=True)
    return cells, trials.metric, len(trials.frame)


def _flops_scale(cells: pd.DataFrame) -> tuple[float, str]:
    k = cells["k"].to_numpy(float)
    k = k[np.isfinite(k) & (k > 0)]
    if k.size:
        return float(np.median(k)), (f"measured FLOPs: {float(np.median(k)):.3g} per parameter per training "
                                     f"sample (median of {k.size} cells; includes passes over the data)")
    return 6.0, "compute estimated as 6ND; FLOPs not stored"


# ---------------------------------------------------------------------------------------------- bootstrap
# smooth functions of model size (and their change with data) that a shard's residuals may follow when the form
# is not the truth (a real sweep's cost of size is not exactly C·N^c/D^d): removed before the cell-level noise is
# estimated, so misfit is not mistaken for noise; used only when the noise keeps MIN_SMOOTH_DOF dof after it
MIN_SMOOTH_DOF = 10


def _smooth_basis(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    return np.stack([x, x**2, x**3, x * z, x**2 * z, x**3 * z], axis=1)


def _cell_noise(theta: np.ndarray, x: np.ndarray, z: np.ndarray, resid: np.ndarray,
                inv: np.ndarray) -> tuple[float, int] | None:
    """Cell-level variance and dof from the residuals left after the shard means, the fit's own directions
    (its Jacobian, the linearized fit) and a smooth polynomial in model size: the lack-of-fit residual of a
    larger linear model, whose dof are counted exactly. None when too few cells are left for it."""
    dummies = (inv[:, None] == np.arange(inv.max() + 1)[None, :]).astype(float)
    design = np.hstack([dummies, _jacobian(theta, x, z)[1], _smooth_basis(x, z)])
    coef, _, rank, _ = np.linalg.lstsq(design, resid, rcond=None)
    dof = resid.size - int(rank)
    if dof < MIN_SMOOTH_DOF:
        return None
    return float(np.sum((resid - design @ coef) ** 2)) / dof, dof


def _noise_scales(theta: np.ndarray, x: np.ndarray, z: np.ndarray, resid: np.ndarray, shard: np.ndarray,
                  form: str) -> tuple[float, float, int, int, float, bool]:
    """(shard-level variance, cell-level variance, their dof, mean 1/cells per shard, whether the smooth misfit
    was removed) from the point fit's log residuals."""
    ids, inv, counts = np.unique(shard, return_inverse=True, return_counts=True)
    means = np.bincount(inv, resid) / counts
    within = resid - means[inv]
    k_data = 3 if form == "additive" else 4  # parameters that move with D only: E, B, b (and d)
    nu_w = max(1, resid.size - ids.size - (theta.size - k_data))
    nu_b = max(1, ids.size - k_data)
    s_w2 = float(np.sum(within**2)) / nu_w
    smooth = _cell_noise(theta, x, z, resid, inv)
    if smooth is not None:
        s_w2, nu_w = smooth
    v_b = float(np.sum(means**2)) / nu_b
    inv_j = float(np.mean(1.0 / counts))
    return v_b, s_w2, nu_b, nu_w, inv_j, smooth is not None


def bootstrap(theta: np.ndarray, x: np.ndarray, z: np.ndarray, y: np.ndarray, shard: np.ndarray, form: str,
              n_boot: int, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """Parametric bootstrap with shard-level and cell-level noise, each scale drawn from its χ² posterior;
    every draw refitted by batched LM from the point fit. Returns (draws (n_boot, k), noise summary)."""
    rng = np.random.default_rng(seed)
    fitted = log_model(theta, x, z)
    v_b, s_w2, nu_b, nu_w, inv_j, smoothed = _noise_scales(theta, x, z, y - fitted, shard, form)
    _, inv = np.unique(shard, return_inverse=True)
    s_w = np.sqrt(s_w2 * nu_w / rng.chisquare(nu_w, size=(n_boot, 1)))
    tau2 = np.maximum(v_b * nu_b / rng.chisquare(nu_b, size=(n_boot, 1)) - s_w**2 * inv_j, 0.0)
    u = np.sqrt(tau2) * rng.standard_normal((n_boot, inv.max() + 1))
    sim = fitted[None, :] + u[:, inv] + s_w * rng.standard_normal((n_boot, x.size))
    draws = _lm(np.repeat(theta[None, :], n_boot, axis=0), x, z, sim)
    noise = {"shard_sd": math.sqrt(max(v_b - s_w2 * inv_j, 0.0)), "cell_sd": math.sqrt(s_w2),
             "shard_dof": nu_b, "cell_dof": nu_w, "cell_misfit_removed": smoothed}
    return draws, noise


# ------------------------------------------------------------------------------------------------- fitting
def fit_surface(rows: pd.DataFrame | pa.Table, metric: str | None = None, form: str = "auto",
                n_boot: int = DEFAULT_N_BOOT, seed: int = 0, *, level: float = LEVEL) -> SurfaceFit:
    """Fit the surface of one (domain, family) from its store rows (see the module docstring).

    ``form``: "additive", "interaction" or "auto" (lower held-out loss). ``n_boot=0`` skips the intervals.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    with one_blas_thread():
        return _fit_surface(rows, metric, form, n_boot, seed, level)


def supports(form: str, fit: SurfaceFit) -> bool:
    """Enough cells for the form's parameters (and, for the interaction, enough sizes to show a best size)."""
    enough = fit.n_cells >= K[form] + 3 and fit.n_shards >= MIN_SHARDS and fit.n_widths >= MIN_WIDTHS
    return enough and (form == "additive" or fit.n_widths >= INTERACTION_WIDTHS)


def _fit_surface(rows: pd.DataFrame | pa.Table, metric: str | None, form: str, n_boot: int, seed: int,
                 level: float) -> SurfaceFit:
    rows, domain, family = one_family(rows, "fit_surface")
    unit = rows["size_unit"].dropna().astype(str).mode() if "size_unit" in rows.columns else pd.Series([])
    out = SurfaceFit(domain, family, metric or "", str(unit.iloc[0]) if len(unit) else None, False)
    if rows.empty:
        out.reason = "no trial rows"
        return out
    cells, out.metric, out.n_trials = cells_of(rows, metric)
    out.cells = cells
    out.n_cells = len(cells)
    out.n_shards = int(cells["train_size"].nunique()) if len(cells) else 0
    out.n_widths = int(cells["num_params"].nunique()) if len(cells) else 0
    out.flops_per_param_sample, out.compute_source = _flops_scale(cells) if len(cells) else (None, "")
    candidates = [f for f in (("additive", "interaction") if form == "auto" else (form,)) if supports(f, out)]
    if form == "auto" and candidates == ["additive"]:
        out.notes.append(f"interaction form not tried: it needs ≥ {INTERACTION_WIDTHS} model sizes and "
                         f"≥ {K['interaction'] + 3} cells to show a best size")
    if not candidates:
        least = "interaction" if form == "interaction" else "additive"
        widths = INTERACTION_WIDTHS if least == "interaction" else MIN_WIDTHS
        out.reason = (f"a surface needs ≥ {MIN_SHARDS} shards, ≥ {widths} model sizes and ≥ {K[least] + 3} "
                      f"(shard, size) cells; got {out.n_shards} shards, {out.n_widths} sizes, {out.n_cells} cells "
                      "(num_params and a positive metric needed)")
        return out
    n, d, v = (cells[c].to_numpy(float) for c in ("num_params", "train_size", "value"))
    out.n0, out.d0 = float(np.exp(np.log(n).mean())), float(np.exp(np.log(d).mean()))
    x, z, y = np.log(n / out.n0), np.log(d / out.d0), np.log(v)
    shard = np.unique(d, return_inverse=True)[1]
    if form == "auto" and len(candidates) == 1:
        chosen, out.form_reason = candidates[0], "the only form this sweep supports"
    elif form == "auto":
        out.held_out = {f: held_out_loss(f, x, z, y, shard) for f in candidates}
        chosen = min(out.held_out, key=out.held_out.__getitem__)
        out.form_reason = (f"lower held-out Huber loss with whole shards held out ({CV_FOLDS}-fold): "
                           + ", ".join(f"{f} {v:.4g}" for f, v in out.held_out.items()))
    else:
        chosen, out.form_reason = form, "requested"
    out.form = chosen
    out.theta = fit_form(chosen, x, z, y)
    pred = log_model(out.theta, x, z)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    out.rmse_log = float(np.sqrt(np.mean((y - pred) ** 2)))
    out.r2 = 1 - float(np.sum((y - pred) ** 2)) / ss_tot if ss_tot > 0 else None
    out.params = to_params(out.theta, out.n0, out.d0)
    out.fitted = True
    if chosen == "interaction":
        out.beta_p = float(beta_p_of(out.theta)[0])
    else:
        out.beta_p_reason = ("the additive surface has no best model size at fixed data (the error falls with N "
                             "at every D); see the compute-optimal frontier")
    if n_boot > 0:
        out.draws, out.noise = bootstrap(out.theta, x, z, y, shard, chosen, n_boot, seed)
        out.n_boot, out.level = n_boot, level
        misfit = " less a smooth misfit in model size" if out.noise.get("cell_misfit_removed") else ""
        out.interval_method = (f"parametric bootstrap ({n_boot} draws) with shard-level and cell-level log noise "
                               f"(scales from χ² posteriors of the residuals{misfit}), each draw refitted with the "
                               f"{chosen} form, percentile intervals")
        out.intervals = surface_intervals(out.draws, out.n0, out.d0, level)
    return out


def surface_intervals(draws: np.ndarray, n0: float, d0: float, level: float) -> dict[str, Interval | None]:
    """Percentile intervals of the parameters (original units) and of β_p from bootstrap draws."""
    table = [to_params(t, n0, d0) for t in draws]
    out: dict[str, Interval | None] = {k: quantile_interval(np.array([p[k] for p in table]), level)
                                       for k in table[0]} if table else {}
    out["beta_p"] = quantile_interval(beta_p_of(draws), level)
    return out

