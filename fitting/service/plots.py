"""Log-log figures of a domain's fits, rendered with matplotlib's Agg/SVG canvases (no pyplot, no display).

Left: every usable trial faint, the best configuration per shard marked, points left out of the fit hollow,
the fitted curve (dashed where it extrapolates) with its bootstrap band; points whose best configuration was
still improving at its budget cap crossed, points whose best hyperparameter sits at its searched range's edge
ringed by a diamond. Right: the best model's parameter count against training size with s(m) = σ·m^β_p and its
band; points whose best width is the grid's largest (▲) or smallest (▼) marked: β_p is censored there. SVG
text stays text (``svg.fonttype: none``) so the figure is small and searchable; artists carry ids
(``fit-<family>``, ``not-converged-<family>``, ...) that tests and users can find.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fitting.aggregate import ShardPoint
from fitting.service.fits import FamilyFit
from fitting.service.units import metric_unit

_LOCK = threading.Lock()  # rcParams and matplotlib's font cache are process-global
_RC = {"svg.fonttype": "none", "svg.hashsalt": "scaling-sweep", "font.size": 9}
FORMATS = {"svg": "image/svg+xml", "png": "image/png"}
PNG_DPI = 100
FIGSIZE = (11.0, 4.6)
LEVEL_Q = (0.025, 0.975)


def _ident(family: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", family)


def _label(kind: str, names: list[str]) -> str:
    unique = list(dict.fromkeys(n for n in names if n))
    return f"{kind} ({', '.join(unique)})" if unique else kind


def _band(reps: dict[str, np.ndarray], grid: np.ndarray, keys: tuple[str, str, str | None]) -> np.ndarray | None:
    """Pointwise 95 % band of a + b-law over the grid from paired bootstrap replicates; None without them."""
    scale, power, offset = (reps.get(k) if k else None for k in keys)
    if scale is None or power is None:
        return None
    ok = np.isfinite(scale) & np.isfinite(power)
    if offset is not None:
        ok &= np.isfinite(offset)
    if ok.sum() < 10:
        return None
    vals = scale[ok, None] * grid[None, :] ** power[ok, None]
    if offset is not None:
        vals = vals + offset[ok, None]
    return np.quantile(vals, LEVEL_Q, axis=0)


def _curve_panel(ax: Axes, ff: FamilyFit, color: str, many_metrics: bool) -> None:
    cf, ident = ff.curve, _ident(ff.curve.family)
    tag = f"{cf.family} [{cf.metric}]" if many_metrics else cf.family
    if not ff.trials.empty:
        t = ff.trials[ff.trials["value"] > 0]
        ax.scatter(t["train_size"], t["value"], s=8, color=color, alpha=0.15, linewidths=0,
                   gid=f"trials-{ident}")
    used = [p for p in cf.points if p.best_error > 0]
    if used:
        ax.plot([p.train_size for p in used], [p.best_error for p in used], "o", ms=6, color=color,
                mec="black", mew=0.6, label=f"{tag}: best per shard", gid=f"best-{ident}")
    out = [p for p in cf.excluded if p.best_error > 0]
    if out:
        ax.plot([p.train_size for p in out], [p.best_error for p in out], "o", ms=7, mfc="none", color=color,
                mew=1.4, label=f"{tag}: left out (small-data plateau)", gid=f"excluded-{ident}")
    _flagged(ax, [p for p in (*cf.points, *cf.excluded) if p.best_error > 0], "best_error", {
        "not-converged": (lambda p: p.not_converged is True, "x", 10, f"{tag}: still improving at its budget cap"),
        "hparam-edge": (lambda p: bool(p.hparam_at_edge), "D", 12, f"{tag}: best hyperparameter at its range's edge"),
    }, color, ident)
    if cf.fit is None:
        ax.text(0.02, 0.02 + 0.06 * len(ax.texts), f"{cf.family}: no fit: {cf.reason[:70]}",
                transform=ax.transAxes, fontsize=7, color=color, gid=f"nofit-{ident}")
        return
    law = cf.fit.law
    lo, hi = min(cf.fit.sizes), max(cf.fit.sizes)
    grid = np.geomspace(lo / 1.5, hi * 4.0, 160)
    band = _band(cf.replicates, grid, ("alpha", "beta_g", "gamma"))
    if band is not None:
        ax.fill_between(grid, band[0], band[1], color=color, alpha=0.18, linewidth=0, gid=f"band-{ident}")
    inside = (grid >= lo) & (grid <= hi)
    ci = cf.intervals.get("beta_g")
    ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    floor = f", γ={law.gamma:.3g}" if law.form == "floor" else ""
    ax.plot(grid[inside], law.predict(grid[inside]), "-", color=color, lw=1.8, gid=f"fit-{ident}",
            label=f"{tag}: β_g={law.beta:.3f}{ci_text}{floor}")
    ax.plot(grid[grid >= hi], law.predict(grid[grid >= hi]), "--", color=color, lw=1.2,
            gid=f"extrapolation-{ident}")


Flag = tuple[Callable[[ShardPoint], bool], str, float, str]  # which points, marker, size, legend label


def _flagged(ax: Axes, points: list[ShardPoint], attr: str, flags: dict[str, Flag], color: str, ident: str) -> None:
    """Overlay hollow markers on the points each diagnostic flags (artist id ``<flag>-<family>``)."""
    for name, (which, marker, size, label) in flags.items():
        hit = [p for p in points if which(p) and getattr(p, attr)]
        if hit:
            ax.plot([p.train_size for p in hit], [getattr(p, attr) for p in hit], marker, ms=size, mfc="none",
                    color="black" if marker != "x" else color, mew=1.3, label=label, gid=f"{name}-{ident}")


def _size_panel(ax: Axes, ff: FamilyFit, color: str) -> None:
    cf, ident = ff.curve, _ident(ff.curve.family)
    pts = [p for p in cf.points if p.best_params]
    if pts:
        ax.plot([p.train_size for p in pts], [p.best_params for p in pts], "s", ms=5, color=color, mec="black",
                mew=0.6, label=f"{cf.family}: best model", gid=f"params-{ident}")
    out = [p for p in cf.excluded if p.best_params]
    if out:
        ax.plot([p.train_size for p in out], [p.best_params for p in out], "s", ms=6, mfc="none", color=color,
                mew=1.2, gid=f"params-excluded-{ident}")
    _flagged(ax, [*pts, *out], "best_params", {
        "width-largest": (lambda p: p.width_edge == "largest", "^", 11,
                          f"{cf.family}: best width the grid's largest (β_p censored)"),
        "width-smallest": (lambda p: p.width_edge == "smallest", "v", 11,
                           f"{cf.family}: best width the grid's smallest (β_p censored)"),
    }, color, ident)
    sf = cf.size_fit
    if cf.fit is None or sf is None:
        return
    lo, hi = min(cf.fit.sizes), max(cf.fit.sizes)
    grid = np.geomspace(lo / 1.5, hi * 4.0, 120)
    band = _band(cf.replicates, grid, ("sigma", "beta_p", None))
    if band is not None:
        ax.fill_between(grid, band[0], band[1], color=color, alpha=0.18, linewidth=0,
                        gid=f"params-band-{ident}")
    ci = cf.intervals.get("beta_p")
    ci_text = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    ax.plot(grid, sf.predict(grid), "-", color=color, lw=1.5, gid=f"params-fit-{ident}",
            label=f"{cf.family}: β_p={sf.beta_p:.2f}{ci_text}")


def render(domain: str, fits: list[FamilyFit], fmt: str) -> bytes:
    """The two-panel figure of ``fits`` (one domain's families) as SVG or PNG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    metrics = [f.curve.metric for f in fits]
    many_metrics = len(set(metrics)) > 1
    with _LOCK, rc_context(_RC):
        fig = Figure(figsize=FIGSIZE, layout="constrained")
        ax_curve, ax_size = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1.0]})
        colors = [f"C{i % 10}" for i in range(len(fits))]
        for ff, color in zip(fits, colors, strict=True):
            _curve_panel(ax_curve, ff, color, many_metrics)
            _size_panel(ax_size, ff, color)
        size_units = [f.curve.size_unit or "" for f in fits]
        units = [f"{f.curve.metric} [{metric_unit(f.curve.metric, f.curve.size_unit) or 'no unit'}]"
                 for f in fits]
        for ax in (ax_curve, ax_size):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(_label("training-set size", size_units))
            ax.grid(True, which="major", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="best")
        ax_curve.set_ylabel(_label("best validation value", units))
        ax_curve.set_title(f"{domain}: learning curve\nfaint: every trial; band: 95% bootstrap; dashed: extrapolation",
                           fontsize=9)
        ax_size.set_ylabel("best model size (parameters)")
        ax_size.set_title(f"{domain}: best model size vs training data\nhollow: shards left out of the fits",
                          fontsize=9)
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=PNG_DPI)
    return buf.getvalue()
