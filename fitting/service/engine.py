"""What the endpoints do, without HTTP: validate a query against the index, fetch cached fits, build responses.

Responses are cached as serialized JSON (or image bytes) under the query and the versions of the rows they
were built from, so a repeated request costs a folder ``stat`` and a dictionary lookup; a new trial changes
its group's version and only that group is refitted.
"""

from __future__ import annotations

import hashlib
import math
import threading
import uuid
from collections.abc import Hashable
from dataclasses import dataclass

import pandas as pd

from fitting.aggregate import primary_metric
from fitting.service import models as m
from fitting.service import plots, views
from fitting.service.cache import GroupInfo, StoreIndex, iter_statuses
from fitting.service.fits import FamilyFit, FitCache
from fitting.service.metrics import ServiceMetrics

FORMS = ("auto", "power", "floor")
MAX_WARNINGS = 50  # listed per response; the rest are counted


class UnknownDomainError(LookupError):
    """A request named a domain the store does not hold."""

    def __init__(self, domain: str, known: list[str]) -> None:
        super().__init__(f"unknown domain {domain!r}; known domains: {', '.join(known) or '(none yet)'}")
        self.domain, self.known = domain, known


class QueryError(ValueError):
    """A query parameter's value is not allowed; ``allowed`` lists what is."""

    def __init__(self, param: str, value: object, message: str, allowed: list[str] | None = None) -> None:
        super().__init__(message)
        self.param, self.value, self.allowed = param, value, allowed


def check_one_positive(values: dict[str, float | None], message: str) -> None:
    """Exactly one of ``values`` given (else ``message``, naming them all), and that one positive and finite: the
    query pairs of /predict and /optimal, where either one of two quantities asks the question."""
    names = list(values)
    if sum(v is not None for v in values.values()) != 1:
        raise QueryError(names[0], None, message, names)
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise QueryError(name, value, f"{name} must be a positive finite number")


@dataclass(frozen=True)
class Cached:
    """A serialized answer (JSON or image bytes) and the ETag clients revalidate it with."""

    body: bytes
    etag: str


def _mode(frame: pd.DataFrame, col: str) -> str | None:
    if col not in frame.columns or frame[col].dropna().empty:
        return None
    return str(frame[col].dropna().astype(str).mode().iloc[0])


class CurvesEngine:
    """The service's state (store index, fits, response cache) and its queries."""

    def __init__(self, results_uri: str, *, n_boot: int = 500, list_ttl: float | None = None,
                 metrics: ServiceMetrics | None = None) -> None:
        self.metrics = metrics or ServiceMetrics()
        self.index = StoreIndex(results_uri, list_ttl=list_ttl, on_refresh=self.metrics.observe_refresh)
        self.fits = FitCache(n_boot=n_boot, on_fit=lambda d, s: self.metrics.fit_seconds.labels(d).observe(s),
                             history=self.index.store.read_history)
        self._responses: dict[Hashable, tuple[Hashable, Cached]] = {}
        self._salt = uuid.uuid4().hex  # versions restart with the process; ETags must not repeat across runs
        self._guard = threading.Lock()

    # -------------------------------------------------------------------------------------------- caching
    # Public: fitting.service.surface_engine answers its queries with the same validation and response cache.
    def cached(self, key: Hashable, sig: Hashable) -> Cached | None:
        hit = self._responses.get(key)
        if hit is not None and hit[0] == sig:
            self.metrics.cache.labels("hit").inc()
            return hit[1]
        self.metrics.cache.labels("miss").inc()
        return None

    def store(self, key: Hashable, sig: Hashable, body: bytes) -> Cached:
        etag = '"' + hashlib.blake2b(repr((self._salt, key, sig)).encode(), digest_size=12).hexdigest() + '"'
        cached = Cached(body, etag)
        with self._guard:
            self._responses[key] = (sig, cached)
        return cached

    # ----------------------------------------------------------------------------------------- validation
    def _families(self, domain: str) -> dict[str, GroupInfo]:
        families = self.index.families(domain)  # a dictionary lookup: the name never touches the filesystem
        if not families:
            raise UnknownDomainError(domain, self.index.domains())
        return families

    def _metrics_of(self, domain: str, families: dict[str, GroupInfo]) -> list[str]:
        names: set[str] = set()
        for fam in families:
            rows = self.index.rows(domain, fam)
            if rows is not None:
                names |= rows.metrics
        return sorted(names)

    def select(self, domain: str, family: str | None, metric: str | None,
                form: str) -> tuple[dict[str, GroupInfo], dict[str, GroupInfo]]:
        """(all families, selected families) of a validated query."""
        if form not in FORMS:
            raise QueryError("form", form, f"form must be one of {', '.join(FORMS)}", list(FORMS))
        families = self._families(domain)
        if family is not None and family not in families:
            raise QueryError("family", family, f"unknown family {family!r} in domain {domain!r}; known: "
                             f"{', '.join(families)}", list(families))
        if metric is not None:
            allowed = self._metrics_of(domain, families)
            if metric not in allowed:
                raise QueryError("metric", metric, f"metric {metric!r} is not reported by domain {domain!r}; "
                                 f"allowed: {', '.join(allowed)}", allowed)
        selected = {family: families[family]} if family is not None else families
        return families, selected

    def family_fits(self, domain: str, selected: dict[str, GroupInfo], metric: str | None,
                     form: str) -> list[FamilyFit]:
        out = []
        for fam in selected:
            rows = self.index.rows(domain, fam)
            if rows is not None:  # None only if the family vanished since validation
                out.append(self.fits.get((domain, fam, metric, form), rows))
        return out

    def warnings(self) -> list[str]:
        warnings = self.index.warnings()
        if len(warnings) > MAX_WARNINGS:
            return [*warnings[:MAX_WARNINGS], f"... and {len(warnings) - MAX_WARNINGS} more unreadable files"]
        return warnings

    @staticmethod
    def signature(selected: dict[str, GroupInfo], warnings_version: int) -> Hashable:
        return tuple((fam, info.version) for fam, info in selected.items()), warnings_version

    # -------------------------------------------------------------------------------------------- queries
    def overview(self) -> Cached:
        """GET /curves."""
        self.index.refresh()
        key, sig = ("overview",), (self.index.current_version,)
        hit = self.cached(key, sig)
        if hit is not None:
            return hit
        domains = []
        for domain, families in self.index.overview().items():
            fams = []
            for fam, info in families.items():
                rows = self.index.rows(domain, fam)
                frame = rows.frame if rows is not None else pd.DataFrame()
                try:
                    primary = primary_metric(frame)
                except (ValueError, KeyError):
                    primary = None
                fams.append(m.FamilySummary(family=fam, trials=views.trial_counts(info.statuses), metric=primary,
                                            size_unit=_mode(frame, "size_unit"),
                                            updated_at=views.timestamp(info.updated_ns)))
            domains.append(m.DomainSummary(
                domain=domain, trials=views.trial_counts(iter_statuses(families.values())), families=fams,
                metrics=self._metrics_of(domain, families),
                updated_at=views.timestamp(max(i.updated_ns for i in families.values())),
                url=f"/curves/{domain}"))
        files, bad = self.index.counts()
        body = m.StoreOverview(domains=domains, files=files, unreadable_files=bad,
                               refreshed_at=self.index.refreshed_at, warnings=self.warnings())
        return self.store(key, sig, body.model_dump_json().encode())

    def curves(self, domain: str, *, metric: str | None = None, family: str | None = None,
               form: str = "auto") -> Cached:
        """GET /curves/{domain}."""
        self.index.refresh()
        families, selected = self.select(domain, family, metric, form)
        key = ("curves", domain, metric, family, form)
        sig = self.signature(selected, self.index.warnings_version)
        hit = self.cached(key, sig)
        if hit is not None:
            return hit
        fits = self.family_fits(domain, selected, metric, form)
        body = m.DomainCurves(
            domain=domain, form=form, metrics=self._metrics_of(domain, families),
            families=[views.family_curve(ff, selected[ff.curve.family].statuses) for ff in fits],
            trials=views.trial_counts(iter_statuses(selected.values())),
            updated_at=views.timestamp(max(i.updated_ns for i in selected.values())), warnings=self.warnings())
        return self.store(key, sig, body.model_dump_json().encode())

    def plot(self, domain: str, fmt: str, *, metric: str | None = None, family: str | None = None,
             form: str = "auto") -> Cached:
        """GET /curves/{domain}/plot.{svg,png}."""
        self.index.refresh()
        _, selected = self.select(domain, family, metric, form)
        key = ("plot", fmt, domain, metric, family, form)
        sig = self.signature(selected, 0)
        hit = self.cached(key, sig)
        if hit is not None:
            return hit
        fits = self.family_fits(domain, selected, metric, form)
        return self.store(key, sig, plots.render(domain, fits, fmt))

    def predict(self, domain: str, *, target_error: float | None = None, train_size: float | None = None,
                metric: str | None = None, family: str | None = None, form: str = "auto") -> m.Predictions:
        """GET /curves/{domain}/predict: not cached (cheap once the fits are)."""
        check_one_positive({"target_error": target_error, "train_size": train_size},
                           "give exactly one of target_error (> 0) or train_size (> 0)")
        self.index.refresh()
        _, selected = self.select(domain, family, metric, form)
        fits = self.family_fits(domain, selected, metric, form)
        preds = [views.family_prediction(ff, target_error=target_error, train_size=train_size) for ff in fits]
        return m.Predictions(domain=domain, form=form, predictions=preds, warnings=self.warnings())

    def status(self) -> m.Health:
        files, bad = self.index.counts()
        return m.Health(status="ok", ready=self.index.ready, files=files, unreadable_files=bad,
                        refreshed_at=self.index.refreshed_at)

    def close(self) -> None:
        self.index.close()
