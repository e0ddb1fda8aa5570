"""Fits as a plain-text table (CLI, logs) and as JSON (the HTTP service), beside the paper's exponents."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from fitting.backtest import backtest_summary
from fitting.curves import CurveFit
from fitting.laws import jsonable

Fits = Mapping[str, Mapping[str, CurveFit]] | Iterable[CurveFit] | CurveFit
COLUMNS = ("domain", "family", "metric", "points", "β_g [95% CI]", "power β_g", "paper β_g", "α", "γ",
           "β_p [95% CI]", "paper β_p", "R²", "form", "backtest")


def _flatten(fits: Fits) -> list[CurveFit]:
    if isinstance(fits, CurveFit):
        return [fits]
    if isinstance(fits, Mapping):
        return [fit for domain in sorted(fits) for _, fit in sorted(fits[domain].items())]
    return list(fits)


def _num(value: float | None, fmt: str = ".3g") -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return format(value, fmt)


def _with_ci(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    text = _num(value, ".3f")
    return f"{text} [{_num(ci[0], '.3f')}, {_num(ci[1], '.3f')}]" if ci else text


def _row(fit: CurveFit) -> list[str]:
    ref = fit.reference
    used, total = len(fit.points), len(fit.points) + len(fit.excluded)
    return [
        fit.domain, fit.family, fit.metric,
        f"{used}/{total}" if total != used else str(used),
        _with_ci(fit.beta_g, fit.intervals.get("beta_g")),
        _num(power_slope(fit), ".3f"),
        _num(ref.beta_g, ".3f") if ref else "–",
        _num(fit.alpha),
        _num(fit.gamma) if fit.form == "floor" else "–",
        _with_ci(fit.beta_p, fit.intervals.get("beta_p")),
        _num(ref.beta_p, ".3f") if ref and ref.beta_p is not None else "–",
        _num(fit.r2, ".3f"),
        fit.form or "–",
        backtest_summary(fit.backtest),
    ]


def power_slope(fit: CurveFit) -> float | None:
    """The pure power law's slope over the fitted shards (the paper's β_g), whatever form was selected."""
    if fit.fit is None:
        return None
    power = fit.fit.candidates.get("power")
    return power.beta if power is not None else (fit.beta_g if fit.form == "power" else None)


def format_table(fits: Fits) -> str:
    """One row per (domain, family); unfitted families show "–" and their reason below the table.

    ``points`` is used/total shards when small-data plateau shards were left out. ``power β_g`` is the pure
    power law's slope over the fitted shards, the quantity the paper's β_g (a power-law fit) stands for;
    ``backtest`` reads the longest backtest: "4× 3% in" = refitted without the largest shards, the prediction
    4× beyond the data was 3 % off and inside its prediction interval.
    """
    flat = _flatten(fits)
    rows = [list(COLUMNS)] + [_row(f) for f in flat]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"{f.domain}/{f.family}: {f.reason}" for f in flat if f.fit is None]
    by_method: dict[str, list[str]] = {}
    for f in flat:
        if f.fit is not None:
            by_method.setdefault(f.interval_method, []).append(f"{f.domain}/{f.family}")
    notes += [f"exponent intervals ({', '.join(names)}): {method}" for method, names in by_method.items()]
    methods = {f.extrapolation.method for f in flat if f.extrapolation is not None}
    notes += [f"predictions and backtests: {method}" for method in sorted(methods)]
    return "\n".join(lines + (["", *notes] if notes else []))


def summary(fit: CurveFit) -> dict[str, Any]:
    """The service's view of one fit: exponents with intervals, the reference, the points used."""
    ref = fit.reference
    return jsonable({
        "domain": fit.domain, "family": fit.family, "metric": fit.metric, "size_unit": fit.size_unit,
        "fitted": fit.fit is not None, "reason": fit.reason,
        "form": fit.form, "form_reason": fit.form_reason,
        "alpha": fit.alpha, "alpha_ci": fit.intervals.get("alpha"),
        "beta_g": fit.beta_g, "beta_g_ci": fit.intervals.get("beta_g"), "beta_g_power": power_slope(fit),
        "gamma": fit.gamma, "gamma_ci": fit.intervals.get("gamma"),
        "r2": fit.r2,
        "beta_p": fit.beta_p, "beta_p_ci": fit.intervals.get("beta_p"), "sigma": fit.sigma, "r2_p": fit.r2_p,
        "level": fit.level, "interval_method": fit.interval_method, "n_boot": fit.n_boot,
        "prediction_method": fit.extrapolation.method if fit.extrapolation is not None else None,
        "backtest": [bt.to_dict() for bt in fit.backtest],
        "points_used": len(fit.points),
        "excluded_sizes": [p.train_size for p in fit.excluded],
        "n_trials": fit.n_trials, "n_ignored": fit.n_ignored,
        "reference": ref.to_dict() if ref else None,
        "points": [{"train_size": p.train_size, "fraction": p.fraction, "best_error": p.best_error,
                    "best_width": p.best_width, "best_params": p.best_params, "n_trials": p.n_trials}
                   for p in fit.points],
        "notes": fit.notes,
    })


def to_json(fits: Fits) -> dict[str, dict[str, dict[str, Any]]]:
    """domain → family → :func:`summary` (plain JSON types, NaN/inf as null)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for fit in _flatten(fits):
        out.setdefault(fit.domain, {})[fit.family] = summary(fit)
    return out
