"""HTTP routes of the surface, the compute-optimal frontier and the comparison of two families (issue 15).

Thin like :mod:`routes`: parse, call :class:`fitting.service.surface_engine.SurfaceQueries`, answer cached bytes
with an ETag (``If-None-Match`` gets a 304). Every status each route can answer is declared
(:mod:`fitting.service.responses`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from fitting.service import responses as r
from fitting.service import surface_models as sm
from fitting.service.plots import FORMATS
from fitting.service.routes import DomainParam, FamilyQuery, MetricQuery, answer
from fitting.service.surface_engine import SurfaceQueries

router = APIRouter()

SurfaceFormQuery = Annotated[sm.SurfaceForm, Query(
    description="surface form: additive E + A/N^a + B/D^b, with the interaction C·N^c/D^d, or the one that "
                "predicts held-out shards better")]
FamiliesQuery = Annotated[str | None, Query(description="two families as a,b (b is compared against a)",
                                            max_length=400)]


def queries(request: Request) -> SurfaceQueries:
    return request.app.state.surfaces


@router.get("/curves/{domain}/surface", response_model=sm.DomainSurface, responses=r.DOMAIN_JSON,
            summary="joint fit L(N, D) of every (shard, model size) cell per family: continuous β_p and the "
                    "compute-optimal frontier, with intervals")
def surface(request: Request, domain: DomainParam, metric: MetricQuery = None, family: FamilyQuery = None,
            form: SurfaceFormQuery = "auto") -> Response:
    return answer(request, queries(request).surface(domain, metric=metric, family=family, form=form),
                  "application/json")


def _surface_plot(request: Request, domain: str, fmt: str, metric: str | None, family: str | None,
                  form: str) -> Response:
    cached = queries(request).surface_plot(domain, fmt, metric=metric, family=family, form=form)
    return answer(request, cached, FORMATS[fmt])


@router.get("/curves/{domain}/surface.svg", response_class=Response, responses=r.DOMAIN_PLOT,
            summary="iso-loss contours of the surface with the best size and the compute-optimal frontier")
def surface_svg(request: Request, domain: DomainParam, metric: MetricQuery = None, family: FamilyQuery = None,
                form: SurfaceFormQuery = "auto") -> Response:
    return _surface_plot(request, domain, "svg", metric, family, form)


@router.get("/curves/{domain}/surface.png", response_class=Response, responses=r.DOMAIN_PLOT,
            summary="the same figure as PNG")
def surface_png(request: Request, domain: DomainParam, metric: MetricQuery = None, family: FamilyQuery = None,
                form: SurfaceFormQuery = "auto") -> Response:
    return _surface_plot(request, domain, "png", metric, family, form)


@router.get("/curves/{domain}/optimal", response_model=sm.DomainOptimal, responses=r.DOMAIN_QUERY,
            summary="compute-optimal model size, data and error for a compute budget, or the least compute for a "
                    "target error")
def optimal(request: Request, domain: DomainParam,
            compute: Annotated[float | None, Query(gt=0, allow_inf_nan=False,
                                                   description="training FLOPs to spend")] = None,
            target_error: Annotated[float | None, Query(gt=0, allow_inf_nan=False,
                                                        description="error to reach (metric units)")] = None,
            metric: MetricQuery = None, family: FamilyQuery = None,
            form: SurfaceFormQuery = "auto") -> sm.DomainOptimal:
    return queries(request).optimal(domain, compute=compute, target_error=target_error, metric=metric,
                                    family=family, form=form)


@router.get("/curves/{domain}/compare", response_model=sm.ComparisonModel, responses=r.DOMAIN_JSON,
            summary="two families: Δβ_g with its interval, a test of equal exponents, the offset as a data "
                    "multiplier")
def compare(request: Request, domain: DomainParam, families: FamiliesQuery = None,
            metric: MetricQuery = None) -> Response:
    return answer(request, queries(request).compare(domain, families=families, metric=metric), "application/json")


def _compare_plot(request: Request, domain: str, fmt: str, families: str | None, metric: str | None) -> Response:
    return answer(request, queries(request).compare_plot(domain, fmt, families=families, metric=metric),
                  FORMATS[fmt])


@router.get("/curves/{domain}/compare.svg", response_class=Response, responses=r.DOMAIN_PLOT,
            summary="both learning curves, the reference error and the data multiplier")
def compare_svg(request: Request, domain: DomainParam, families: FamiliesQuery = None,
                metric: MetricQuery = None) -> Response:
    return _compare_plot(request, domain, "svg", families, metric)


@router.get("/curves/{domain}/compare.png", response_class=Response, responses=r.DOMAIN_PLOT,
            summary="the same figure as PNG")
def compare_png(request: Request, domain: DomainParam, families: FamiliesQuery = None,
                metric: MetricQuery = None) -> Response:
    return _compare_plot(request, domain, "png", families, metric)
