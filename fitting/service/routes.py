"""HTTP routes: thin wrappers that parse queries, call the engine and answer with cached bytes.

Endpoints are plain ``def`` functions: FastAPI runs them in its thread pool, so a cold fit never blocks the
event loop. Warm answers are pre-serialized bytes with an ETag; ``If-None-Match`` gets a 304.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from fitting.service import models as m
from fitting.service import responses as r
from fitting.service.engine import Cached, CurvesEngine
from fitting.service.plots import FORMATS

router = APIRouter()

DomainParam = Annotated[str, Path(description="domain name as stored (lm, nmt, image, speech, ...)",
                                  max_length=200)]
MetricQuery = Annotated[str | None, Query(description="metric to fit instead of each family's primary one "
                                                      "(e.g. val_top5_error); see `metrics` in the response",
                                          max_length=200)]
FamilyQuery = Annotated[str | None, Query(description="only this model family", max_length=200)]
FormQuery = Annotated[m.Form, Query(description="learning-curve form: power law, with floor, or automatic")]


def engine(request: Request) -> CurvesEngine:
    return request.app.state.engine


def answer(request: Request, cached: Cached, media_type: str) -> Response:
    headers = {"ETag": cached.etag, "Cache-Control": "no-cache"}  # clients may keep it but must revalidate
    if request.headers.get("if-none-match") == cached.etag:
        return Response(status_code=304, headers=headers)
    return Response(content=cached.body, media_type=media_type, headers=headers)


@router.get("/healthz", response_model=m.Health, summary="liveness, and whether the store has been indexed")
def healthz(request: Request) -> m.Health:
    return engine(request).status()


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def prometheus(request: Request) -> Response:
    body, content_type = engine(request).metrics.render()
    return Response(content=body, media_type=content_type)


@router.get("/curves", response_model=m.StoreOverview, responses=r.OVERVIEW,
            summary="every domain: trial counts, families, last update")
def curves_index(request: Request) -> Response:
    return answer(request, engine(request).overview(), "application/json")


@router.get("/curves/{domain}", response_model=m.DomainCurves, responses=r.DOMAIN_JSON,
            summary="fitted learning curve and best model size per family, with intervals and a held-out check")
def domain_curves(request: Request, domain: DomainParam, metric: MetricQuery = None, family: FamilyQuery = None,
                  form: FormQuery = "auto") -> Response:
    cached = engine(request).curves(domain, metric=metric, family=family, form=form)
    return answer(request, cached, "application/json")


def _plot(request: Request, domain: str, fmt: str, metric: str | None, family: str | None, form: str) -> Response:
    cached = engine(request).plot(domain, fmt, metric=metric, family=family, form=form)
    return answer(request, cached, FORMATS[fmt])


@router.get("/curves/{domain}/plot.svg", response_class=Response, responses=r.DOMAIN_PLOT,
            summary="log-log figure: trials, best per shard, fit with band; best model size vs data")
def plot_svg(request: Request, domain: DomainParam, metric: MetricQuery = None, family: FamilyQuery = None,
             form: FormQuery = "auto") -> Response:
    return _plot(request, domain, "svg", metric, family, form)


@router.get("/curves/{domain}/plot.png", response_class=Response, responses=r.DOMAIN_PLOT,
            summary="the same figure as PNG")
def plot_png(request: Request, domain: DomainParam, metric: MetricQuery = None, family: FamilyQuery = None,
             form: FormQuery = "auto") -> Response:
    return _plot(request, domain, "png", metric, family, form)


@router.get("/curves/{domain}/predict", response_model=m.Predictions, responses=r.DOMAIN_QUERY,
            summary="training size and best model size for a target error, or the error at a training size")
def predict(request: Request, domain: DomainParam,
            target_error: Annotated[float | None, Query(gt=0, allow_inf_nan=False,
                                                        description="error to reach (metric units)")] = None,
            train_size: Annotated[float | None, Query(gt=0, allow_inf_nan=False,
                                                      description="training-set size (size units)")] = None,
            metric: MetricQuery = None, family: FamilyQuery = None, form: FormQuery = "auto") -> m.Predictions:
    return engine(request).predict(domain, target_error=target_error, train_size=train_size, metric=metric,
                                   family=family, form=form)
