"""Figures of the surface and of a comparison, drawn like :mod:`fitting.service.plots` (Agg/SVG canvases, no
pyplot, text kept as text, artists with ids tests and users can find).

Surface: per family, iso-loss contours of L(N, D) over train size × parameters, the swept cells coloured by
their measured value, the best size N_opt(D) (interaction form) and the compute-optimal path (D_opt(C),
N_opt(C)) with faint iso-compute lines. Comparison: both families' shard points (net of the grid penalty)
with their power laws, a's reference error and where b reaches it.
"""

from __future__ import annotations

import io
import math
import threading

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fitting.compare import Comparison, Line
from fitting.optimal import frontier
from fitting.service.plots import FORMATS, PNG_DPI
from fitting.surface import SurfaceFit

_LOCK = threading.Lock()  # rcParams are process-global (plots.py keeps its own lock for the same reason)
_RC = {"svg.fonttype": "none", "svg.hashsalt": "scaling-sweep", "font.size": 9}
PANEL = (5.2, 4.4)


def _ident(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in name)


def _surface_panel(ax: Axes, fit: SurfaceFit) -> None:
    ident = _ident(fit.family)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"training-set size ({fit.size_unit or 'size units'})")
    ax.set_ylabel("parameters N")
    if fit.cells.empty:
        ax.text(0.05, 0.5, f"{fit.family}: no cells: {fit.reason[:80]}", transform=ax.transAxes, fontsize=7,
                gid=f"nofit-{ident}")
        ax.set_title(fit.family, fontsize=9)
        return
    d, n, v = (fit.cells[c].to_numpy(float) for c in ("train_size", "num_params", "value"))
    if fit.fitted:
        dg = np.geomspace(d.min() / 1.5, d.max() * 1.5, 90)
        ng = np.geomspace(n.min() / 1.5, n.max() * 1.5, 90)
        dd, nn = np.meshgrid(dg, ng)
        zz = fit.predict(nn.ravel(), dd.ravel()).reshape(dd.shape)
        levels = np.geomspace(float(zz.min()) * 1.001, float(np.quantile(zz, 0.95)), 9)
        cs = ax.contour(dd, nn, zz, levels=levels, cmap="viridis", linewidths=0.9)
        cs.set_gid(f"contours-{ident}")
        ax.clabel(cs, fontsize=6, fmt="%.3g")
        if fit.beta_p is not None:
            ci = fit.intervals.get("beta_p")
            ci_text = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
            ax.plot(dg, fit.n_opt(dg), "-", color="black", lw=1.6, gid=f"n-opt-{ident}",
                    label=f"best size N_opt(D): β_p = {fit.beta_p:.2f}{ci_text}")
        fr = frontier(fit)
        ci = fr.n_exponent_ci
        ci_text = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
        ax.plot(fr.d_opt, fr.n_opt, "--", color="crimson", lw=1.6, gid=f"frontier-{ident}",
                label=f"compute-optimal: N_opt ∝ C^{fr.n_exponent:.2f}{ci_text}")
        k = fit.flops_per_param_sample or 6.0
        for c in np.geomspace(fr.compute[0], fr.compute[-1], 5):
            ax.plot(dg, c / (k * dg), ":", color="grey", lw=0.6, alpha=0.6)
        ax.set_ylim(n.min() / 1.5, n.max() * 1.5)
    sc = ax.scatter(d, n, c=np.log(v), cmap="viridis", s=22, edgecolors="black", linewidths=0.4, zorder=3,
                    gid=f"cells-{ident}")
    sc.set_label(f"cells (best configuration; colour: log {fit.metric})")
    form = f"{fit.form} form" if fit.form else "not fitted"
    ax.set_title(f"{fit.family}: {form}\n{fit.compute_source}", fontsize=8)
    if not fit.fitted:
        ax.text(0.02, 0.02, f"no surface: {fit.reason[:90]}", transform=ax.transAxes, fontsize=7,
                gid=f"nofit-{ident}")
    ax.legend(fontsize=6, loc="upper left")
    ax.grid(True, which="major", alpha=0.3)


def _save(fig: Figure, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=PNG_DPI)
    return buf.getvalue()


def render_surface(domain: str, fits: list[SurfaceFit], fmt: str) -> bytes:
    """One iso-loss panel per family (dotted: iso-compute lines) as SVG or PNG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    with _LOCK, rc_context(_RC):
        fig = Figure(figsize=(PANEL[0] * max(len(fits), 1), PANEL[1]), layout="constrained")
        axes = fig.subplots(1, max(len(fits), 1), squeeze=False)[0]
        for ax, fit in zip(axes, fits, strict=False):
            _surface_panel(ax, fit)
        fig.suptitle(f"{domain}: iso-loss contours of L(N, D), best size and compute-optimal frontier", fontsize=9)
        return _save(fig, fmt)


def render_comparison(result: Comparison, lines: list[Line], fmt: str) -> bytes:
    """Both learning curves, a's reference error and b's data multiplier, as SVG or PNG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    with _LOCK, rc_context(_RC):
        fig = Figure(figsize=(7.5, 4.8), layout="constrained")
        ax = fig.subplots()
        lo = min(float(ln.sizes.min()) for ln in lines) / 1.5
        hi = max(float(ln.sizes.max()) for ln in lines) * 1.5
        for line, color in zip(lines, ("C0", "C1"), strict=True):
            ident = _ident(line.family)
            ax.plot(line.sizes, np.exp(line.log_error), "o", color=color, mec="black", mew=0.5,
                    gid=f"points-{ident}", label=f"{line.family}: best per shard (net of the width grid)")
            grid = np.geomspace(lo, hi, 100)
            ax.plot(grid, line.at(grid), "-", color=color, lw=1.5, gid=f"law-{ident}",
                    label=f"{line.family}: β_g = {line.beta:.3f}")
        ax.axhline(result.reference_error, color="grey", lw=0.8, ls=":", gid="reference-error")
        if result.multiplier is not None and math.isfinite(result.multiplier):
            at = result.reference_size * result.multiplier
            ax.plot([at, result.reference_size], [result.reference_error] * 2, "-", color="black", lw=2.5,
                    gid="multiplier", label=f"{result.family_b} reaches it with {result.multiplier:.2g}× the data")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training-set size")
        ax.set_ylabel(f"best {result.metric}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        ci = result.delta_beta_ci
        ci_text = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
        p = "–" if result.p_value is None else f"{result.p_value:.3g}"
        ax.set_title(f"{result.domain}: {result.family_b} vs {result.family_a}: Δβ_g = {result.delta_beta:+.3f}"
                     f"{ci_text}, p = {p}", fontsize=9)
        return _save(fig, fmt)
