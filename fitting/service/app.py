"""The FastAPI application: one engine per app (its own index, caches and metrics registry)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from fitting.service.auth import BearerTokenMiddleware, document_security
from fitting.service.engine import CurvesEngine, QueryError, UnknownDomainError
from fitting.service.metrics import MetricsMiddleware, ServiceMetrics
from fitting.service.routes import router
from fitting.service.surface_engine import SurfaceQueries
from fitting.service.surface_routes import router as surface_router

log = logging.getLogger(__name__)

DESCRIPTION = """Live power-law fits of a scaling sweep's results store (Hestness et al. 2017).

Reads the store only. A trial that lands in the store shows up in the next response; unchanged data is
answered from cache without refitting. Intervals are 95 % bootstrap intervals.

Beyond the paper: ``/curves/{domain}/surface`` fits every (shard, model size) cell at once (a continuous β_p and
the compute-optimal frontier), ``/optimal`` reads the best split of a compute budget, ``/compare`` tests whether
two families share an exponent."""


def _initial_index(engine: CurvesEngine) -> None:
    try:
        engine.index.refresh(force=True)
    except Exception:  # the store may be unreachable at start; requests retry and report the error
        log.exception("initial indexing of %s failed", engine.index.store.uri)


def create_app(results_uri: str, *, n_boot: int = 500, list_ttl: float | None = None,
               token: str | None = None) -> FastAPI:
    """A fitting service over the results store at ``results_uri`` (local path or pyarrow filesystem URI).

    ``n_boot``: bootstrap replicates per fit. ``list_ttl``: seconds between full listings of the store (default
    30 s for a local store, which is otherwise checked by folder mtime on every request; 2 s for object stores).
    Indexing starts in the background when the app starts; requests that need the index wait for it.
    ``token``: every request but ``/healthz`` must send ``Authorization: Bearer <token>`` (``fitting.service.auth``).
    """
    metrics = ServiceMetrics()
    engine = CurvesEngine(results_uri, n_boot=n_boot, list_ttl=list_ttl, metrics=metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=_initial_index, args=(engine,), name="initial-index", daemon=True).start()
        yield
        engine.close()

    app = FastAPI(title="scaling-sweep fitting service", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.engine = engine
    app.state.surfaces = SurfaceQueries(engine, n_boot)
    app.include_router(router)
    app.include_router(surface_router)
    if token is not None:  # inside the metrics middleware, so refused requests are counted too
        app.add_middleware(BearerTokenMiddleware, token=token)
        app.openapi = document_security(app.openapi)  # type: ignore[method-assign]
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(UnknownDomainError)
    async def unknown_domain(_: Request, exc: UnknownDomainError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": {"message": str(exc), "known_domains": exc.known}})

    @app.exception_handler(QueryError)
    async def bad_query(_: Request, exc: QueryError) -> JSONResponse:
        error = {"type": "value_error", "loc": ["query", exc.param], "msg": str(exc), "input": exc.value}
        if exc.allowed is not None:
            error["ctx"] = {"allowed": exc.allowed}
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder([error])})

    @app.exception_handler(OSError)
    async def store_unreachable(_: Request, exc: OSError) -> JSONResponse:
        log.error("results store %s unreadable: %s", engine.index.store.uri, exc)
        return JSONResponse(status_code=503, content={"detail": f"results store unreadable: {exc}"})

    return app
