"""The surface, optimal and compare queries, without HTTP: validated and cached like :mod:`engine`'s.

A family's surface is refitted only when its rows' version moves (one fit per (domain, family, metric, form)
however many requests wait for it); responses are cached as bytes under the versions they were built from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fitting.compare import CompareError, compare_rows, family_line, parse_families
from fitting.optimal import frontier, optimal_point
from fitting.service import surface_models as sm
from fitting.service import surface_plots
from fitting.service.cache import GroupRows
from fitting.service.engine import Cached, CurvesEngine, QueryError, check_one_positive
from fitting.service.views import finite, interval
from fitting.surface import SurfaceFit, fit_surface

SURFACE_FORMS = ("auto", "additive", "interaction")
MAX_N_BOOT = 200  # every draw is a refit of the surface: the service caps the app's n_boot here


class SurfaceCache:
    """Memoized :class:`SurfaceFit` per (domain, family, metric, form), replaced when the rows' version moves."""

    def __init__(self, n_boot: int, seed: int = 0) -> None:
        self.n_boot, self.seed = n_boot, seed
        self._fits: dict[tuple[Any, ...], tuple[int, SurfaceFit]] = {}
        self._locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._guard = threading.Lock()
        self.misses = 0

    def get(self, key: tuple[str, str, str | None, str], rows: GroupRows) -> SurfaceFit:
        hit = self._fits.get(key)
        if hit is not None and hit[0] == rows.version:
            return hit[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._fits.get(key)
            if hit is not None and hit[0] == rows.version:
                return hit[1]
            self.misses += 1
            try:
                fit = fit_surface(rows.frame, metric=key[2], form=key[3], n_boot=self.n_boot, seed=self.seed)
            except ValueError as exc:  # e.g. only errored trials, which carry no metric name
                fit = SurfaceFit(key[0], key[1], key[2] or "", None, False, reason=str(exc))
            self._fits[key] = (rows.version, fit)
            return fit


def _intervals(d: dict[str, tuple[float, float] | None]) -> dict[str, Any]:
    return {k: interval(v) for k, v in d.items()}


def _bands(values: list[tuple[float, float] | None]) -> list[Any]:
    return [interval(v) for v in values]


def family_surface(fit: SurfaceFit) -> sm.FamilySurface:
    """The response model of one family's surface (with its frontier when fitted)."""
    front = None
    if fit.fitted:
        fr = frontier(fit)
        front = sm.FrontierModel(
            compute=fr.compute, n_opt=fr.n_opt, n_opt_band=_bands(fr.n_opt_band), d_opt=fr.d_opt,
            d_opt_band=_bands(fr.d_opt_band), loss=fr.loss, loss_band=_bands(fr.loss_band), inside=fr.inside,
            n_exponent=fr.n_exponent, n_exponent_ci=interval(fr.n_exponent_ci), d_exponent=fr.d_exponent,
            d_exponent_ci=interval(fr.d_exponent_ci), notes=fr.notes)
    params_ci = {k: v for k, v in fit.intervals.items() if k != "beta_p"}
    return sm.FamilySurface(
        family=fit.family, metric=fit.metric, size_unit=fit.size_unit, fitted=fit.fitted, reason=fit.reason or None,
        form=fit.form, form_reason=fit.form_reason, held_out={k: finite(v) for k, v in fit.held_out.items()},
        params={k: finite(v) for k, v in fit.params.items()}, params_ci=_intervals(params_ci),
        beta_p=finite(fit.beta_p), beta_p_ci=interval(fit.intervals.get("beta_p")),
        beta_p_reason=fit.beta_p_reason or None, rmse_log=finite(fit.rmse_log), r2=finite(fit.r2),
        n_cells=fit.n_cells, n_shards=fit.n_shards, n_widths=fit.n_widths, n_trials=fit.n_trials, level=fit.level,
        n_boot=fit.n_boot, interval_method=fit.interval_method, compute_source=fit.compute_source,
        flops_per_param_sample=finite(fit.flops_per_param_sample), frontier=front, notes=fit.notes)


class SurfaceQueries:
    """GET /curves/{domain}/surface, /optimal, /compare and their figures, over a :class:`CurvesEngine`."""

    def __init__(self, engine: CurvesEngine, n_boot: int) -> None:
        self.engine = engine
        self.fits = SurfaceCache(min(n_boot, MAX_N_BOOT))

    def _surfaces(self, domain: str, family: str | None, metric: str | None,
                  form: str) -> tuple[list[SurfaceFit], Any]:
        if form not in SURFACE_FORMS:
            raise QueryError("form", form, f"form must be one of {', '.join(SURFACE_FORMS)}", list(SURFACE_FORMS))
        self.engine.index.refresh()
        _, selected = self.engine.select(domain, family, metric, "auto")
        fits = []
        for fam in selected:
            rows = self.engine.index.rows(domain, fam)
            if rows is not None:
                fits.append(self.fits.get((domain, fam, metric, form), rows))
        return fits, self.engine.signature(selected, self.engine.index.warnings_version)

    def _memo(self, key: tuple[Any, ...], sig: Any, build: Callable[[], bytes]) -> Cached:
        hit = self.engine.cached(key, sig)
        return hit if hit is not None else self.engine.store(key, sig, build())

    def surface(self, domain: str, *, metric: str | None = None, family: str | None = None,
                form: str = "auto") -> Cached:
        fits, sig = self._surfaces(domain, family, metric, form)
        return self._memo(("surface", domain, metric, family, form), sig, lambda: sm.DomainSurface(
            domain=domain, form=form, families=[family_surface(f) for f in fits],
            warnings=self.engine.warnings()).model_dump_json().encode())

    def surface_plot(self, domain: str, fmt: str, *, metric: str | None = None, family: str | None = None,
                     form: str = "auto") -> Cached:
        fits, sig = self._surfaces(domain, family, metric, form)
        return self._memo(("surface-plot", fmt, domain, metric, family, form), sig[0],
                          lambda: surface_plots.render_surface(domain, fits, fmt))

    def optimal(self, domain: str, *, compute: float | None = None, target_error: float | None = None,
                metric: str | None = None, family: str | None = None, form: str = "auto") -> sm.DomainOptimal:
        check_one_positive({"compute": compute, "target_error": target_error},
                           "give exactly one of compute (FLOPs > 0) or target_error (> 0)")
        fits, _ = self._surfaces(domain, family, metric, form)
        out = []
        for fit in fits:
            if not fit.fitted:
                out.append(sm.FamilyOptimal(family=fit.family, metric=fit.metric, fitted=False, reason=fit.reason,
                                            compute=None, compute_ci=None, n_opt=None, n_opt_ci=None, d_opt=None,
                                            d_opt_ci=None, loss=None, loss_ci=None, extrapolated=None,
                                            compute_source=fit.compute_source, level=fit.level))
                continue
            a = optimal_point(fit, compute=compute, target_error=target_error)
            out.append(sm.FamilyOptimal(
                family=fit.family, metric=fit.metric, fitted=True, reason=None, compute=finite(a.compute),
                compute_ci=interval(a.compute_ci), n_opt=finite(a.n_opt), n_opt_ci=interval(a.n_opt_ci),
                d_opt=finite(a.d_opt), d_opt_ci=interval(a.d_opt_ci), loss=finite(a.loss),
                loss_ci=interval(a.loss_ci), extrapolated=a.extrapolated, compute_source=a.compute_source,
                level=a.level))
        return sm.DomainOptimal(domain=domain, given="compute" if compute is not None else "target_error", form=form,
                                families=out, warnings=self.engine.warnings())

    def _pair(self, domain: str, families: str | None, metric: str | None) -> tuple[list[GroupRows], Any]:
        self.engine.index.refresh()
        known = self.engine.select(domain, None, metric, "auto")[0]
        try:
            names = parse_families(families or "", two_storages=False)
        except CompareError as exc:
            raise QueryError("families", families, str(exc), list(known)) from exc
        for name in names:
            if name not in known:
                raise QueryError("families", families, f"unknown family {name!r} in domain {domain!r}; known: "
                                 f"{', '.join(known)}", list(known))
        selected = {n: known[n] for n in names}
        rows = [self.engine.index.rows(domain, n) for n in names]
        if any(r is None for r in rows):  # vanished since validation
            raise QueryError("families", families, "a family's rows vanished; retry", list(known))
        return rows, self.engine.signature(selected, self.engine.index.warnings_version)  # type: ignore[return-value]

    def _comparison(self, domain: str, families: str | None, metric: str | None) -> tuple[Any, Any, list[GroupRows]]:
        rows, sig = self._pair(domain, families, metric)
        try:
            result = compare_rows(rows[0].frame, rows[1].frame, metric=metric)
        except CompareError as exc:
            raise QueryError("families", families, f"cannot compare: {exc}") from exc
        return result, sig, rows

    def compare(self, domain: str, *, families: str | None, metric: str | None = None) -> Cached:
        key = ("compare", domain, families, metric)
        _, sig = self._pair(domain, families, metric)
        hit = self.engine.cached(key, sig)
        if hit is not None:
            return hit
        result, sig, _ = self._comparison(domain, families, metric)
        data = result.to_dict()
        for k in ("delta_beta_ci", "multiplier_ci"):
            data[k] = interval(getattr(result, k))
        body = sm.ComparisonModel(**data, warnings=self.engine.warnings())
        return self.engine.store(key, sig, body.model_dump_json().encode())

    def compare_plot(self, domain: str, fmt: str, *, families: str | None, metric: str | None = None) -> Cached:
        key = ("compare-plot", fmt, domain, families, metric)
        _, sig = self._pair(domain, families, metric)
        hit = self.engine.cached(key, sig)
        if hit is not None:
            return hit
        result, sig, rows = self._comparison(domain, families, metric)
        lines = [family_line(r.frame, name, metric=metric) for r, name in
                 zip(rows, (result.family_a, result.family_b), strict=True)]
        return self.engine.store(key, sig, surface_plots.render_comparison(result, lines, fmt))
