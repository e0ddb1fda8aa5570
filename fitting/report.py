"""Fits as a plain-text table (CLI, logs) and as JSON (the HTTP service), beside the paper's exponents."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fitting.aggregate import ShardPoint
from fitting.backtest import backtest_summary
from fitting.curves import CurveFit
from fitting.laws import jsonable

Fits = Mapping[str, Mapping[str, CurveFit]] | Iterable[CurveFit] | CurveFit
COLUMNS = ("domain", "family", "metric", "points", "β_g [95% CI]", "power β_g", "paper β_g", "α", "γ",
           "β_p [95% CI]", "β_p no-emb", "paper β_p", "R²", "form", "backtest", "checks")


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
        _with_ci(fit.beta_p_non_embedding, fit.intervals.get("beta_p_non_embedding")),
        _num(ref.beta_p, ".3f") if ref and ref.beta_p is not None else "–",
        _num(fit.r2, ".3f"),
        fit.form or "–",
        backtest_summary(fit.backtest),
        checks(fit),
    ]


def checks(fit: CurveFit) -> str:
    """The diagnostics in a cell: shards (of those counted) whose best width sits at the grid's largest or
    smallest, whose best configuration had not converged or whose convergence is unknown, and per searched
    hyperparameter whose best value is at its range's edge; "ok" when none."""
    d = fit.diagnostics
    if d is None or d.n_points == 0:
        return "–"
    n = d.n_points
    parts = [f"{label} {k}/{n}" for label, k in (("width max", d.width_at_largest), ("width min", d.width_at_smallest),
                                                 ("not conv", d.not_converged), ("conv ?", d.convergence_unknown))
             if k]
    parts += [f"{name} edge {k}/{n}" for name, k in sorted(d.hparam_at_edge.items())]
    return ", ".join(parts) or "ok"


def power_slope(fit: CurveFit) -> float | None:
    """The pure power law's slope over the fitted shards (the paper's β_g), whatever form was selected."""
    if fit.fit is None:
        return None
    power = fit.fit.candidates.get("power")
    return power.beta if power is not None else (fit.beta_g if fit.form == "power" else None)


def _unfitted(flat: list[CurveFit]) -> list[str]:
    return [f"{f.domain}/{f.family}: {f.reason}" for f in flat if f.fit is None]


def _interval_methods(flat: list[CurveFit]) -> list[str]:
    by_method: dict[str, list[str]] = {}
    for f in flat:
        if f.fit is not None:
            by_method.setdefault(f.interval_method, []).append(f"{f.domain}/{f.family}")
    return [f"exponent intervals ({', '.join(names)}): {method}" for method, names in by_method.items()]


def _prediction_methods(flat: list[CurveFit]) -> list[str]:
    methods = {f.extrapolation.method for f in flat if f.extrapolation is not None}
    return [f"predictions and backtests: {method}" for method in sorted(methods)]


def _no_embedding_reasons(flat: list[CurveFit]) -> list[str]:
    by_reason: dict[str, list[str]] = {}
    for f in flat:
        if f.fit is not None and f.beta_p is not None and f.beta_p_non_embedding is None:
            by_reason.setdefault(f.beta_p_non_embedding_reason, []).append(f"{f.domain}/{f.family}")
    return [f"β_p no-emb ({', '.join(names)}): {reason}" for reason, names in by_reason.items()]


def _unknown_convergence(flat: list[CurveFit]) -> list[str]:
    names = [f"{f.domain}/{f.family} {f.diagnostics.convergence_unknown}/{f.diagnostics.n_points}" for f in flat
             if f.diagnostics is not None and f.diagnostics.convergence_unknown]
    return [f"conv ? ({', '.join(names)}): shards whose best configuration's convergence is unknown (stopped by "
            "ASHA, or stored before convergence was recorded and no history to read)"] if names else []


def _diagnostic_warnings(flat: list[CurveFit]) -> list[str]:
    return [f"warning: {w}" for f in flat if f.diagnostics is not None for w in f.diagnostics.warnings]


# The lines printed under the table, in order: each takes the fits and returns its lines (add a section here).
NOTE_SECTIONS: list[Callable[[list[CurveFit]], list[str]]] = [
    _unfitted, _interval_methods, _prediction_methods, _no_embedding_reasons, _unknown_convergence,
    _diagnostic_warnings]


def format_table(fits: Fits) -> str:
    """One row per (domain, family); unfitted families show "–" and their reason below the table.

    ``points`` is used/total shards when small-data plateau shards were left out. ``power β_g`` is the pure
    power law's slope over the fitted shards, the quantity the paper's β_g (a power-law fit) stands for;
    ``β_p no-emb`` the best-size exponent on parameters without embeddings; ``backtest`` reads the longest
    backtest: "4× 3% in" = refitted without the largest shards, the prediction 4× beyond the data was 3 % off
    and inside its prediction interval; ``checks`` the diagnostics (:func:`checks`), each explained by a
    "warning:" line with its fix below the table (:data:`NOTE_SECTIONS`).
    """
    flat = _flatten(fits)
    rows = [list(COLUMNS)] + [_row(f) for f in flat]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [line for section in NOTE_SECTIONS for line in section(flat)]
    return "\n".join(lines + (["", *notes] if notes else []))


def point_summary(p: ShardPoint) -> dict[str, Any]:
    """One shard point as the JSON output shows it, its diagnostics included."""
    return {"train_size": p.train_size, "fraction": p.fraction, "best_error": p.best_error,
            "best_width": p.best_width, "best_params": p.best_params,
            "best_params_non_embedding": p.best_params_non_embedding, "n_trials": p.n_trials,
            "trial_keys": p.trial_keys, "trial_converged": p.trial_converged, "not_converged": p.not_converged,
            "width_at_edge": p.width_at_edge, "width_edge": p.width_edge, "hparam_at_edge": p.hparam_at_edge}


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
        "beta_p_non_embedding": fit.beta_p_non_embedding,
        "beta_p_non_embedding_ci": fit.intervals.get("beta_p_non_embedding"),
        "beta_p_non_embedding_reason": fit.beta_p_non_embedding_reason or None,
        "level": fit.level, "interval_method": fit.interval_method, "n_boot": fit.n_boot,
        "prediction_method": fit.extrapolation.method if fit.extrapolation is not None else None,
        "backtest": [bt.to_dict() for bt in fit.backtest],
        "points_used": len(fit.points),
        "excluded_sizes": [p.train_size for p in fit.excluded],
        "n_trials": fit.n_trials, "n_ignored": fit.n_ignored,
        "reference": ref.to_dict() if ref else None,
        "points": [point_summary(p) for p in fit.points],
        "excluded_points": [point_summary(p) for p in fit.excluded],
        "diagnostics": fit.diagnostics.to_dict() if fit.diagnostics is not None else None,
        "warnings": fit.diagnostics.warnings if fit.diagnostics is not None else [],
        "notes": fit.notes,
    })


def to_json(fits: Fits) -> dict[str, dict[str, dict[str, Any]]]:
    """domain → family → :func:`summary` (plain JSON types, NaN/inf as null)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for fit in _flatten(fits):
        out.setdefault(fit.domain, {})[fit.family] = summary(fit)
    return out
