"""From the fitting library's dataclasses to the service's response models (no fitting happens here)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime

from fitting.aggregate import ShardPoint as LibPoint
from fitting.backtest import Backtest as LibBacktest
from fitting.curves import CurveFit, Interval, predict, predict_params
from fitting.report import power_slope
from fitting.service import models as m
from fitting.service.fits import FamilyFit
from fitting.service.units import metric_unit
from fitting.store import STATUSES


def finite(value: float | None) -> float | None:
    """JSON-safe number: NaN and ±inf become None."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def interval(ci: Interval | None) -> m.Interval | None:
    if ci is None:
        return None
    return m.Interval(lo=finite(ci[0]), hi=finite(ci[1]))


def trial_counts(statuses: Counter[str]) -> m.TrialCounts:
    known = {s: int(statuses.get(s, 0)) for s in STATUSES}
    other = sum(n for s, n in statuses.items() if s not in STATUSES)
    return m.TrialCounts(**known, other=other, total=sum(statuses.values()))


def timestamp(ns: int) -> datetime | None:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC) if ns > 0 else None


def _point(p: LibPoint, role: str, trial_ids: dict[str, str]) -> m.ShardPoint:
    return m.ShardPoint(
        train_size=p.train_size, fraction=finite(p.fraction), best_error=p.best_error, best_width=p.best_width,
        best_params=p.best_params, config_key=p.config_key, hparams=p.hparams, trial_keys=p.trial_keys,
        trial_ids=[trial_ids[k] for k in p.trial_keys if k in trial_ids], seeds=p.seeds, n_trials=p.n_trials,
        n_configs=p.n_configs, role=role, best_params_non_embedding=p.best_params_non_embedding,
        trial_converged=p.trial_converged, not_converged=p.not_converged, width_at_edge=p.width_at_edge,
        width_edge=p.width_edge, hparam_at_edge=p.hparam_at_edge)


def _points(cf: CurveFit, trial_ids: dict[str, str]) -> list[m.ShardPoint]:
    if cf.fit is None:
        out = [_point(p, "unfitted", trial_ids) for p in cf.points]
    else:
        out = [_point(p, "fitted", trial_ids) for p in cf.points]
    out += [_point(p, "non_positive" if p.best_error <= 0 else "plateau", trial_ids) for p in cf.excluded]
    return sorted(out, key=lambda p: p.train_size)


def _learning_curve(cf: CurveFit) -> m.LearningCurve | None:
    if cf.fit is None:
        return None
    law, floor = cf.fit.law, cf.fit.law.form == "floor"
    return m.LearningCurve(
        form=law.form, form_reason=cf.form_reason, alpha=law.alpha, alpha_ci=interval(cf.intervals.get("alpha")),
        beta_g=law.beta, beta_g_ci=interval(cf.intervals.get("beta_g")),
        gamma=law.gamma if floor else None, gamma_ci=interval(cf.intervals.get("gamma")) if floor else None,
        beta_g_power=finite(power_slope(cf)), r2=finite(law.r2), rmse_log=finite(law.rmse), n_points=law.n,
        size_range=m.SizeRange(min=min(cf.fit.sizes), max=max(cf.fit.sizes)),
        excluded_sizes=cf.fit.excluded_sizes, level=cf.level, interval_method=cf.interval_method,
        n_boot=cf.n_boot)


def _model_size(cf: CurveFit, non_embedding: bool = False) -> m.ModelSize | None:
    sf = cf.size_fit_non_embedding if non_embedding else cf.size_fit
    if cf.fit is None or sf is None:
        return None
    if non_embedding:  # its interval is β_p's only (no σ draws)
        return m.ModelSize(beta_p=sf.beta_p, beta_p_ci=interval(cf.intervals.get("beta_p_non_embedding")),
                           sigma=sf.sigma, sigma_ci=None, r2=finite(sf.r2), n_points=sf.n)
    return m.ModelSize(beta_p=sf.beta_p, beta_p_ci=interval(cf.intervals.get("beta_p")), sigma=sf.sigma,
                       sigma_ci=interval(cf.intervals.get("sigma")), r2=finite(sf.r2), n_points=sf.n)


def _diagnostics(cf: CurveFit) -> m.Diagnostics | None:
    return None if cf.diagnostics is None else m.Diagnostics(**cf.diagnostics.to_dict())


def _backtest(bt: LibBacktest) -> m.Backtest:
    return m.Backtest(held_out=bt.held_out, n_fit=bt.n_fit, size_ratio=bt.size_ratio, size=bt.size,
                      measured=bt.measured, predicted=bt.predicted, interval=interval(bt.interval), level=bt.level,
                      log_error=finite(bt.log_error), inside=bt.inside, rmse_log=finite(bt.rmse_log),
                      n_inside=bt.n_inside, power_beta=finite(bt.power_beta))


def family_curve(ff: FamilyFit, statuses: Counter[str]) -> m.FamilyCurve:
    """The response for one family from its cached fit."""
    cf, check = ff.curve, ff.check
    ref = cf.reference
    return m.FamilyCurve(
        family=cf.family, metric=cf.metric, metric_unit=metric_unit(cf.metric, cf.size_unit),
        size_unit=cf.size_unit, fit=_learning_curve(cf), reason=cf.reason or None, model_size=_model_size(cf),
        model_size_non_embedding=_model_size(cf, non_embedding=True),
        model_size_non_embedding_reason=cf.beta_p_non_embedding_reason or None,
        points=_points(cf, ff.trial_ids), diagnostics=_diagnostics(cf),
        reference=m.ReferenceExponents(beta_g=ref.beta_g, beta_p=ref.beta_p, source=ref.source, form=ref.form)
        if ref else None,
        extrapolation_check=None if check is None else m.ExtrapolationCheck(
            held_out_size=check.held_out_size, measured=check.measured, predicted=check.predicted,
            interval=interval(check.interval), log_error=finite(check.log_error),
            within_interval=check.within_interval, n_points=check.n_points, beta_g=finite(check.beta_g),
            form=check.form),
        extrapolation_reason=ff.check_reason or None,
        backtest=[_backtest(bt) for bt in cf.backtest],
        prediction_method=cf.extrapolation.method if cf.extrapolation is not None else None,
        trials=trial_counts(statuses), n_usable=cf.n_trials,
        n_ignored=cf.n_ignored, notes=cf.notes, fit_seconds=round(ff.seconds, 4))


def family_prediction(ff: FamilyFit, *, target_error: float | None = None,
                      train_size: float | None = None) -> m.FamilyPrediction:
    """Read one family's fit at a target error or a training size (prediction intervals of its extrapolation)."""
    cf = ff.curve
    given = "target_error" if target_error is not None else "train_size"
    base = {"family": cf.family, "metric": cf.metric, "metric_unit": metric_unit(cf.metric, cf.size_unit),
            "size_unit": cf.size_unit, "given": given, "level": cf.level}
    if cf.fit is None:
        return m.FamilyPrediction(**base, train_size=finite(train_size), train_size_ci=None, error=target_error,
                                  error_ci=None, best_params=None, best_params_ci=None, reachable=None,
                                  extrapolation=None, reason=f"no fit: {cf.reason}")
    size_kw = {"size": train_size} if train_size is not None else {"target_error": target_error}
    pred = predict(cf, **size_kw)
    params, params_ci, notes = None, None, []
    try:
        pp = predict_params(cf, **size_kw)
        params, params_ci = finite(pp.params), interval(pp.interval)
    except ValueError:
        notes.append("no model-size fit (num_params missing)")
    if given == "train_size":
        return m.FamilyPrediction(**base, train_size=pred.size, train_size_ci=None, error=finite(pred.error),
                                  error_ci=interval(pred.interval), best_params=params, best_params_ci=params_ci,
                                  reachable=None, extrapolation=pred.size > max(cf.fit.sizes),
                                  reason="; ".join(notes) or None)
    reachable = math.isfinite(pred.size)
    if not reachable:
        notes.insert(0, f"the extrapolated curve does not reach {target_error:g} within a million times the "
                        "largest shard (the curve flattens towards a floor above it)")
    return m.FamilyPrediction(**base, train_size=finite(pred.size), train_size_ci=interval(pred.interval),
                              error=target_error, error_ci=None, best_params=params, best_params_ci=params_ci,
                              reachable=reachable,
                              extrapolation=(pred.size > max(cf.fit.sizes)) if reachable else None,
                              reason="; ".join(notes) or None)
