"""The top level: store rows → best configuration per shard → learning-curve and model-size fits, with
bootstrap intervals that carry the trial-to-trial noise of the sweep into the exponents.

Bootstrap (``interval_method``): by default trials are resampled with replacement *within each shard*
(pooled over configurations), the best configuration is re-picked by median over seeds, and both laws are
refitted, all vectorized over replicates. The plateau cut and the form are those of the point fit (held
fixed so that intervals describe one model). When most shards hold a single trial there is no
within-shard variation to resample, so log residuals of the fitted law are resampled instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fitting.aggregate import ShardPoint, TrialSet, best_per_shard, load_rows, usable_trials
from fitting.laws import (
    MIN_POINTS,
    LearningCurveFit,
    ModelSizeFit,
    fit_batch,
    fit_learning_curve,
    fit_model_size,
    jsonable,
    ols_line,
)
from fitting.reference import Reference, reference_for

DEFAULT_N_BOOT = 500
LEVEL = 0.95
Interval = tuple[float, float]


@dataclass
class CurveFit:
    """Everything fitted for one (domain, family): learning curve, best model size, intervals, provenance.

    ``fit`` is None (and ``reason`` says why) when fewer than 3 usable shards remain.
    """

    domain: str
    family: str
    metric: str
    size_unit: str | None
    fit: LearningCurveFit | None
    reason: str = ""  # empty when fitted
    form: str | None = None  # "power" | "floor"
    form_reason: str = ""
    alpha: float | None = None
    beta_g: float | None = None
    gamma: float | None = None  # 0.0 for the power form
    r2: float | None = None  # log space
    intervals: dict[str, Interval | None] = field(default_factory=dict)  # alpha, beta_g, gamma, beta_p
    interval_method: str = "none"
    n_boot: int = 0
    level: float = LEVEL
    beta_p: float | None = None
    sigma: float | None = None
    r2_p: float | None = None
    size_fit: ModelSizeFit | None = None
    points: list[ShardPoint] = field(default_factory=list)  # used by the fit
    excluded: list[ShardPoint] = field(default_factory=list)  # left out (plateau, non-positive error)
    n_trials: int = 0  # usable trials
    n_ignored: int = 0  # rows not usable (diverged, errored, non-finite)
    reference: Reference | None = None
    notes: list[str] = field(default_factory=list)
    replicates: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.fit is not None

    @property
    def beta_g_ci(self) -> Interval | None:
        return self.intervals.get("beta_g")

    @property
    def beta_p_ci(self) -> Interval | None:
        return self.intervals.get("beta_p")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: NaN/inf → None, bootstrap replicates left out."""
        return jsonable({f.name: getattr(self, f.name) for f in fields(self) if f.name != "replicates"})


# --------------------------------------------------------------------------------------------- bootstrap
def _interval(values: np.ndarray, level: float) -> Interval | None:
    v = values[np.isfinite(values)]
    if v.size < 2:
        return None
    lo, hi = np.quantile(v, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def resampled_best(values: np.ndarray, codes: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best configuration's median per bootstrap replicate, vectorized.

    ``values``/``codes``: one shard's trials (value, configuration code 0..K−1); ``idx``: B × n resampled
    trial indices. Returns (best median value, best configuration code) per replicate; ties go to the
    lower code, as in :func:`fitting.aggregate.best_per_shard` when codes follow sorted config keys.
    """
    b, n = idx.shape
    k = int(codes.max()) + 1
    order = np.lexsort((values, codes))  # by configuration, then value
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    pos = np.sort(rank[idx], axis=1)  # each row grouped by configuration, values ascending inside
    vals, cods = values[order][pos], codes[order][pos]
    counts = np.bincount((np.arange(b)[:, None] * k + cods).ravel(), minlength=b * k).reshape(b, k)
    starts = np.cumsum(counts, axis=1) - counts
    lo = np.minimum(starts + np.maximum(counts - 1, 0) // 2, n - 1)
    hi = np.minimum(starts + counts // 2, n - 1)
    med = 0.5 * (np.take_along_axis(vals, lo, axis=1) + np.take_along_axis(vals, hi, axis=1))
    med[counts == 0] = np.inf
    best = np.argmin(med, axis=1)
    return med[np.arange(b), best], best


def _trial_replicates(trials: pd.DataFrame, sizes: list[float], n_boot: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """B × n best errors and best model sizes from resampling trials within each shard."""
    err = np.empty((n_boot, len(sizes)))
    par = np.empty((n_boot, len(sizes)))
    groups = trials.groupby("train_size").indices
    keys_all = trials["config_key"].to_numpy()
    values_all = trials["value"].to_numpy(float)
    params_all = pd.to_numeric(trials["num_params"], errors="coerce").to_numpy(float)
    for j, size in enumerate(sizes):
        rows = groups[size]
        codes, keys = pd.factorize(keys_all[rows], sort=True)
        cfg_params = np.full(len(keys), np.nan)
        cfg_params[codes[::-1]] = params_all[rows][::-1]  # first trial of each configuration wins
        idx = rng.integers(0, rows.size, size=(n_boot, rows.size))
        err[:, j], best = resampled_best(values_all[rows], codes.astype(np.int64), idx)
        par[:, j] = cfg_params[best]
    return err, par


def _residual_replicates(m: np.ndarray, eps: np.ndarray, fit: LearningCurveFit, params: np.ndarray | None,
                         size_fit: ModelSizeFit | None, n_boot: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """B × n errors (and sizes) = fitted law × resampled, centred, dof-inflated log residuals."""
    n = m.size
    idx = rng.integers(0, n, size=(n_boot, n))

    def draw(obs: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
        r = np.log(obs) - np.log(pred)
        r = (r - r.mean()) * math.sqrt(n / max(n - k, 1))
        return pred * np.exp(r[idx])

    err = draw(eps, np.asarray(fit.law.predict(m)), fit.law.n_params)
    if params is None or size_fit is None:
        return err, np.full_like(err, np.nan)
    return err, draw(params, np.asarray(size_fit.predict(m)), 2)


def _bootstrap(trials: pd.DataFrame, used: list[ShardPoint], fit: LearningCurveFit,
               size_fit: ModelSizeFit | None, n_boot: int, level: float,
               seed: int) -> tuple[dict[str, Interval | None], str, dict[str, np.ndarray]]:
    """Intervals for alpha, beta_g, gamma, beta_p, sigma; the method used; the raw replicates (paired by index)."""
    rng = np.random.default_rng(seed)
    m = np.array([p.train_size for p in used])
    eps = np.array([p.best_error for p in used])
    params = np.array([p.best_params for p in used], dtype=float) if size_fit is not None else None
    multi = sum(p.n_trials >= 2 for p in used)
    if multi * 2 >= len(used):
        err, par = _trial_replicates(trials, [p.train_size for p in used], n_boot, rng)
        method = "trial bootstrap: trials resampled within each shard, best configuration re-picked"
        if multi < len(used):
            method += f" ({len(used) - multi} of {len(used)} shards have a single trial)"
    else:
        err, par = _residual_replicates(m, eps, fit, params, size_fit, n_boot, rng)
        few = f"only {multi} of {len(used)} shards have" if multi else "no shard has"
        method = f"residual bootstrap: {few} more than one trial, so log residuals of the fitted law were resampled"
    good = np.all(np.isfinite(err) & (err > 0), axis=1)
    law = fit.law
    reps = {key: np.full(n_boot, np.nan) for key in ("alpha", "beta_g", "gamma", "beta_p", "sigma")}
    if good.any():
        batch = fit_batch(m, err[good], law.form, loss=law.loss)
        # Replicates use the closed-form γ-profile; shift them by the point estimate's offset from that
        # same estimator on the observed points, so the intervals describe the reported (polished) fit.
        ref = fit_batch(m, eps[None, :], law.form, loss=law.loss)
        reps["alpha"][good] = batch["alpha"] * (law.alpha / ref["alpha"][0])
        reps["beta_g"][good] = batch["beta"] + (law.beta - ref["beta"][0])
        reps["gamma"][good] = np.clip(batch["gamma"] + (law.gamma - ref["gamma"][0]), 0.0, None)
    if size_fit is not None:
        okp = np.all(np.isfinite(par) & (par > 0), axis=1)
        if okp.any():
            x_ref = float(np.log(m).mean())
            a_p, b_p = ols_line(np.log(m) - x_ref, np.log(par[okp]))
            reps["beta_p"][okp] = b_p
            reps["sigma"][okp] = np.exp(a_p - b_p * x_ref)  # paired with beta_p: s(m) per replicate
    intervals = {key: _interval(v, level) for key, v in reps.items()}
    if law.form == "power":
        intervals["gamma"] = None
        reps["gamma"][:] = 0.0
    return intervals, method, reps


# ------------------------------------------------------------------------------------------------- fitting
def _mode(df: pd.DataFrame, col: str) -> str | None:
    if col not in df.columns or df[col].dropna().empty:
        return None
    return str(df[col].dropna().astype(str).mode().iloc[0])


def fit_family(df_rows: pd.DataFrame | pa.Table, metric: str | None = None, form: str = "auto",
               n_boot: int = DEFAULT_N_BOOT, seed: int = 0, *, plateau: bool = True,
               level: float = LEVEL) -> CurveFit:
    """Fit one (domain, family): aggregate → plateau exclusion → learning curve → best model size → intervals.

    ``metric`` selects another metric from ``best_metrics`` (default: the primary metric). ``form`` is
    "power", "floor" or "auto" (see :func:`fitting.laws.select_form`). ``n_boot=0`` skips the intervals.
    Fewer than 3 usable shards give ``fit=None`` with a ``reason``.
    """
    rows = load_rows(df_rows) if isinstance(df_rows, pa.Table) else df_rows
    domains = rows["domain"].dropna().unique() if "domain" in rows.columns else []
    families = rows["family"].dropna().unique() if "family" in rows.columns else []
    if len(domains) > 1 or len(families) > 1:
        raise ValueError(f"fit_family takes one (domain, family); got domains {list(domains)}, "
                         f"families {list(families)} (use fit_store)")
    domain = str(domains[0]) if len(domains) else ""
    family = str(families[0]) if len(families) else ""
    if rows.empty:
        return CurveFit(domain, family, metric or "", None, None, reason="no trial rows")
    trials: TrialSet = usable_trials(rows, metric)
    out = CurveFit(domain, family, trials.metric, _mode(rows, "size_unit"), None,
                   n_trials=len(trials.frame), n_ignored=trials.n_ignored,
                   reference=reference_for(domain, family, trials.metric))
    points = best_per_shard(trials)
    positive = [p for p in points if p.best_error > 0]
    if len(positive) < len(points):
        out.excluded = [p for p in points if p.best_error <= 0]
        out.notes.append(f"{len(points) - len(positive)} shard(s) with best {trials.metric} ≤ 0 left out "
                         "(no logarithm)")
    if len(positive) < MIN_POINTS:
        out.points = positive
        out.reason = (f"only {len(positive)} usable shard(s) (need {MIN_POINTS}): {len(trials.frame)} usable "
                      f"trials; {trials.n_ignored} rows ignored (diverged, errored or no finite "
                      f"{trials.metric})")
        return out
    m = np.array([p.train_size for p in positive])
    eps = np.array([p.best_error for p in positive])
    lc = fit_learning_curve(m, eps, form, plateau=plateau)
    used, cut = positive[lc.n_excluded:], positive[:lc.n_excluded]
    out.fit, out.points, out.excluded = lc, used, cut + out.excluded
    out.form, out.form_reason = lc.law.form, lc.form_reason
    out.alpha, out.beta_g, out.gamma, out.r2 = lc.law.alpha, lc.law.beta, lc.law.gamma, lc.law.r2
    if lc.n_excluded:
        out.notes.append(f"{lc.n_excluded} small-data plateau shard(s) left out: sizes {lc.excluded_sizes}")
    params = [p.best_params for p in used]
    if trials.frame["width"].nunique() < 2:
        out.notes.append("best model size not fitted: one model width in this sweep (β_p needs several)")
    elif all(v is not None and v > 0 for v in params):
        sf = fit_model_size([p.train_size for p in used], params)
        out.size_fit, out.beta_p, out.sigma, out.r2_p = sf, sf.beta_p, sf.sigma, sf.r2
    else:
        out.notes.append("best model size not fitted: num_params missing for some shards")
    if n_boot > 0:
        out.intervals, out.interval_method, out.replicates = _bootstrap(
            trials.frame, used, lc, out.size_fit, n_boot, level, seed)
        out.n_boot, out.level = n_boot, level
    return out


def fit_store(source: pd.DataFrame | pa.Table, metric: str | Mapping[str, str] | None = None,
              form: str = "auto", n_boot: int = DEFAULT_N_BOOT, seed: int = 0, *,
              plateau: bool = True) -> dict[str, dict[str, CurveFit]]:
    """Fit every (domain, family) in the store rows: ``{domain: {family: CurveFit}}``.

    ``metric`` is one name for all, or a mapping domain → metric name (others use their primary metric).
    """
    rows = load_rows(source)
    out: dict[str, dict[str, CurveFit]] = {}
    if rows.empty:
        return out
    for (domain, family), sub in rows.groupby(["domain", "family"], sort=True):
        name = metric.get(str(domain)) if isinstance(metric, Mapping) else metric
        out.setdefault(str(domain), {})[str(family)] = fit_family(sub, name, form, n_boot, seed,
                                                                  plateau=plateau)
    return out


# ---------------------------------------------------------------------------------------------- predicting
@dataclass
class Prediction:
    """A point read off a fitted curve: the error at a size, or the size needed for an error."""

    size: float
    error: float
    quantity: str  # "error" (given size) or "size" (given target error)
    interval: Interval | None  # bootstrap interval of the predicted quantity (inf: never reached)
    level: float

    def to_dict(self) -> dict[str, Any]:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})


def predict(fit: CurveFit, *, size: float | None = None, target_error: float | None = None) -> Prediction:
    """Error at ``size``, or training size needed to reach ``target_error`` (inf when at or below γ).

    Intervals come from the bootstrap replicates of (α, β_g, γ) when the fit has them.
    """
    if fit.fit is None:
        raise ValueError(f"{fit.domain}/{fit.family} has no fit: {fit.reason}")
    if (size is None) == (target_error is None):
        raise ValueError("give exactly one of size= or target_error=")
    law = fit.fit.law
    reps = fit.replicates
    have = bool(reps) and np.isfinite(reps.get("beta_g", np.array([np.nan]))).any()
    if size is not None:
        error = float(law.predict(size))
        interval = None
        if have:
            vals = reps["alpha"] * float(size) ** reps["beta_g"] + reps["gamma"]
            interval = _interval(vals, fit.level)
        return Prediction(float(size), error, "error", interval, fit.level)
    target = float(target_error)  # type: ignore[arg-type]
    needed = law.size_for(target)
    interval = None
    if have:
        a, b, g = reps["alpha"], reps["beta_g"], reps["gamma"]
        ok = np.isfinite(a) & np.isfinite(b)
        with np.errstate(all="ignore"):
            vals = np.where((b[ok] < 0) & (target > g[ok]),
                            ((target - g[ok]) / a[ok]) ** (1.0 / np.where(b[ok] < 0, b[ok], -1.0)), np.inf)
        if vals.size >= 2:
            q = (1 - fit.level) / 2
            lo, hi = np.quantile(np.sort(vals), [q, 1 - q], method="nearest")
            interval = (float(lo), float(hi))
    return Prediction(needed, target, "size", interval, fit.level)


@dataclass
class ParamsPrediction:
    """Best model size s(m) = σ·m^β_p read off the fit at a training size (given, or needed for a target error).

    ``interval`` pairs each bootstrap replicate's (α, β_g, γ) with its (σ, β_p), so for a target error it
    carries the uncertainty of the size needed as well as that of the model-size law (inf: never reached).
    """

    train_size: float
    params: float
    interval: Interval | None
    level: float

    def to_dict(self) -> dict[str, Any]:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})


def predict_params(fit: CurveFit, *, size: float | None = None,
                   target_error: float | None = None) -> ParamsPrediction:
    """Best model size at ``size``, or at the training size needed to reach ``target_error``.

    Raises ValueError when the fit has no learning curve or no model-size law (num_params missing).
    """
    if fit.fit is None or fit.size_fit is None:
        raise ValueError(f"{fit.domain}/{fit.family} has no model-size fit: {fit.reason or fit.notes}")
    if (size is None) == (target_error is None):
        raise ValueError("give exactly one of size= or target_error=")
    law = fit.fit.law
    m = float(size) if size is not None else law.size_for(float(target_error))  # type: ignore[arg-type]
    params = float(fit.size_fit.predict(m)) if math.isfinite(m) else math.inf
    reps = fit.replicates
    sigma, beta_p = reps.get("sigma"), reps.get("beta_p")
    interval = None
    if sigma is not None and beta_p is not None:
        if size is not None:
            m_b = np.full(sigma.shape, float(size))
        else:
            a, b, g = reps["alpha"], reps["beta_g"], reps["gamma"]
            target = float(target_error)  # type: ignore[arg-type]
            with np.errstate(all="ignore"):
                m_b = np.where((b < 0) & (target > g), ((target - g) / a) ** (1.0 / np.where(b < 0, b, -1.0)),
                               np.inf)
            m_b[~(np.isfinite(a) & np.isfinite(b))] = np.nan
        ok = np.isfinite(sigma) & np.isfinite(beta_p) & ~np.isnan(m_b)
        with np.errstate(all="ignore"):
            vals = np.where(np.isinf(m_b[ok]), np.inf, sigma[ok] * m_b[ok] ** beta_p[ok])
        if vals.size >= 2:
            q = (1 - fit.level) / 2
            lo, hi = np.quantile(np.sort(vals), [q, 1 - q], method="nearest")
            interval = (float(lo), float(hi))
    return ParamsPrediction(m, params, interval, fit.level)
