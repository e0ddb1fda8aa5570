"""The top level: store rows → best configuration per shard → learning-curve and model-size fits, with
intervals calibrated on synthetic sweeps of known truth (benchmarks/coverage.py).

Intervals (``interval_method`` names the method): the shard points carry trial noise through the choice of
the best configuration, noise shared by a shard and quantization to the width grid as one roughly
independent error per shard, so :mod:`fitting.intervals` treats the learning curve as a regression in log
space (Student-t for the power law, parametric bootstrap with the form rule inside each draw for a floor)
and :mod:`fitting.best_size` reads the best size between widths for β_p. The plateau cut is that of the
point fit: intervals are conditional on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fitting.aggregate import ShardPoint, TrialSet, best_per_shard, load_rows, one_family, usable_trials
from fitting.backtest import Backtest, run_backtests
from fitting.best_size import beta_p_interval, fit_size
from fitting.diagnostics import FamilyDiagnostics, HistoryReader, diagnose
from fitting.extrapolate import Extrapolation, PrefixFits
from fitting.intervals import parameter_intervals
from fitting.laws import (
    MIN_POINTS,
    LearningCurveFit,
    ModelSizeFit,
    fit_learning_curve,
    jsonable,
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
    # β_p on parameters without embeddings (store column non_embedding_params); its interval is
    # intervals["beta_p_non_embedding"]; reason says why it is None
    beta_p_non_embedding: float | None = None
    size_fit_non_embedding: ModelSizeFit | None = None
    beta_p_non_embedding_reason: str = ""
    points: list[ShardPoint] = field(default_factory=list)  # used by the fit
    excluded: list[ShardPoint] = field(default_factory=list)  # left out (plateau, non-positive error)
    n_trials: int = 0  # usable trials
    n_ignored: int = 0  # rows not usable (diverged, errored, non-finite)
    reference: Reference | None = None
    notes: list[str] = field(default_factory=list)
    replicates: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    extrapolation: Extrapolation | None = None  # what predict() reads beyond the data (fitting.extrapolate)
    backtest: list[Backtest] = field(default_factory=list)  # refits without the largest 1–3 shards
    diagnostics: FamilyDiagnostics | None = None  # convergence and grid edges of the points (fitting.diagnostics)

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


# --------------------------------------------------------------------------------------------- intervals
# ------------------------------------------------------------------------------------------------- fitting
def _mode(df: pd.DataFrame, col: str) -> str | None:
    if col not in df.columns or df[col].dropna().empty:
        return None
    return str(df[col].dropna().astype(str).mode().iloc[0])


def fit_family(df_rows: pd.DataFrame | pa.Table, metric: str | None = None, form: str = "auto",
               n_boot: int = DEFAULT_N_BOOT, seed: int = 0, *, plateau: bool = True,
               level: float = LEVEL, history: HistoryReader | None = None) -> CurveFit:
    """Fit one (domain, family): aggregate → plateau exclusion → learning curve → best model size → intervals.

    ``metric`` selects another metric from ``best_metrics`` (default: the primary metric). ``form`` is
    "power", "floor" or "auto" (see :func:`fitting.laws.select_form`). ``n_boot=0`` skips the intervals.
    Fewer than 3 usable shards give ``fit=None`` with a ``reason``. ``history`` (e.g.
    ``ResultsStore.read_history``) lets the diagnostics judge convergence of trials stored without it.
    """
    rows, domain, family = one_family(df_rows, "fit_family", " (use fit_store)")
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
        out.diagnostics = diagnose(f"{domain}/{family}", trials, out.points, out.excluded, history)
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
    out.diagnostics = diagnose(f"{domain}/{family}", trials, out.points, out.excluded, history)
    params = [p.best_params for p in used]
    size = fit_size(trials.frame, lc.sizes, params)
    size_law = size.law
    out.notes += size.notes or ([size.reason] if size.reason else [])
    if size.fit is not None:
        sf = size.fit
        out.size_fit, out.beta_p, out.sigma, out.r2_p = sf, sf.beta_p, sf.sigma, sf.r2
    bare = fit_size(trials.frame, lc.sizes, [p.best_params_non_embedding for p in used],
                    "non_embedding_params", "β_p without embeddings")
    out.notes += bare.notes
    out.size_fit_non_embedding, out.beta_p_non_embedding_reason = bare.fit, bare.reason
    out.beta_p_non_embedding = bare.fit.beta_p if bare.fit is not None else None
    if n_boot > 0:
        size_pts = np.array(params, dtype=float) if out.size_fit is not None else None
        out.intervals, out.interval_method, out.replicates, notes = parameter_intervals(
            m[lc.n_excluded:], eps[lc.n_excluded:], lc.law, form, size_pts, size_law, n_boot, level, seed,
            excluded=(m[:lc.n_excluded], eps[:lc.n_excluded],
                      np.array([p.best_params for p in cut], dtype=float)))
        out.notes += notes
        if lc.n_excluded:
            out.notes.append("small-data shards were cut as a plateau: the intervals average over every "
                             "plausible cut (AIC weights); check the excluded sizes")
        out.n_boot, out.level = n_boot, level
        if bare.law is not None:
            out.intervals["beta_p_non_embedding"] = beta_p_interval(bare.law, level)
    # every positive shard: the averaged families model a small-data bend themselves (measured on LCDB)
    prefix = PrefixFits(m, eps)
    out.extrapolation, out.backtest = prefix.extrapolation(), run_backtests(prefix)
    return out


def fit_store(source: pd.DataFrame | pa.Table, metric: str | Mapping[str, str] | None = None,
              form: str = "auto", n_boot: int = DEFAULT_N_BOOT, seed: int = 0, *,
              plateau: bool = True, history: HistoryReader | None = None) -> dict[str, dict[str, CurveFit]]:
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
                                                                  plateau=plateau, history=history)
    return out


# ---------------------------------------------------------------------------------------------- predicting
@dataclass
class Prediction:
    """A point read off a fitted curve: the error at a size, or the size needed for an error."""

    size: float
    error: float
    quantity: str  # "error" (given size) or "size" (given target error)
    interval: Interval | None  # prediction interval of the predicted quantity (inf: never reached)
    level: float
    method: str = ""  # how the prediction and its interval were made

    def to_dict(self) -> dict[str, Any]:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})


def predict(fit: CurveFit, *, size: float | None = None, target_error: float | None = None,
            level: float | None = None) -> Prediction:
    """Error at ``size``, or training size needed to reach ``target_error`` (inf when never reached).

    Both come from the fit's averaged extrapolation (:mod:`fitting.extrapolate`), whose prediction interval
    (at ``level``, default the fit's) was calibrated on held-out larger sizes of real learning curves; the
    reported law ``fit.fit.law`` and its β_g are unchanged by this.
    """
    if fit.fit is None:
        raise ValueError(f"{fit.domain}/{fit.family} has no fit: {fit.reason}")
    if (size is None) == (target_error is None):
        raise ValueError("give exactly one of size= or target_error=")
    level = fit.level if level is None else level
    ext = fit.extrapolation
    if ext is None:
        raise ValueError(f"{fit.domain}/{fit.family} has no extrapolation (fitted before it existed?)")
    if size is not None:
        if not (math.isfinite(size) and size > 0):
            raise ValueError(f"size must be a positive number, got {size}")
        lo, hi = ext.interval(float(size), level)
        return Prediction(float(size), float(ext.predict(float(size))), "error", (lo, hi), level, ext.method)
    target = float(target_error)  # type: ignore[arg-type]
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target_error must be a positive number, got {target_error}")
    return Prediction(ext.size_for(target), target, "size", ext.size_interval(target, level), level, ext.method)


@dataclass
class ParamsPrediction:
    """Best model size s(m) = σ·m^β_p read off the fit at a training size (given, or needed for a target error).

    ``interval``: for a given size, the model-size law's own interval at that size; for a target error, the
    union of that interval at both ends of :func:`predict`'s interval for the size needed, so it carries both
    uncertainties (inf: never reached).
    """

    train_size: float
    params: float
    interval: Interval | None
    level: float

    def to_dict(self) -> dict[str, Any]:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})


def predict_params(fit: CurveFit, *, size: float | None = None,
                   target_error: float | None = None) -> ParamsPrediction:
    """Best model size at ``size``, or at the training size :func:`predict` says reaches ``target_error``.

    Raises ValueError when the fit has no learning curve or no model-size law (num_params missing).
    """
    if fit.fit is None or fit.size_fit is None:
        raise ValueError(f"{fit.domain}/{fit.family} has no model-size fit: {fit.reason or fit.notes}")
    if (size is None) == (target_error is None):
        raise ValueError("give exactly one of size= or target_error=")
    if size is not None:
        m = float(size)
        ends = (m, m)
    else:
        need = predict(fit, target_error=float(target_error))  # type: ignore[arg-type]
        m = need.size
        ends = need.interval or (m, m)
    params = float(fit.size_fit.predict(m)) if math.isfinite(m) else math.inf
    sigma, beta_p = fit.replicates.get("sigma"), fit.replicates.get("beta_p")
    interval = None
    if sigma is not None and beta_p is not None:
        ok = np.isfinite(sigma) & np.isfinite(beta_p)
        if ok.sum() >= 2:
            q = (1 - fit.level) / 2
            lows, highs = [], []
            for end in ends:
                with np.errstate(all="ignore"):
                    vals = np.sort(np.where(math.isinf(end), np.inf, sigma[ok] * float(end) ** beta_p[ok]))
                lo, hi = np.quantile(vals, [q, 1 - q], method="nearest")
                lows.append(float(lo))
                highs.append(float(hi))
            interval = (min(lows), max(highs))
    return ParamsPrediction(m, params, interval, fit.level)
