"""Prometheus metrics of one service instance, in its own registry (several apps can live in one process).

Requests are labelled by route template (``/curves/{domain}``), never by the raw path, so that arbitrary
domain names cannot blow up label cardinality.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from fitting.service.cache import StoreIndex, iter_statuses

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """Request counts and latency, fit time, store refreshes, and the trials seen per domain and status."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("scaling_sweep_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("scaling_sweep_http_request_duration_seconds", "HTTP request latency",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.fit_seconds = Histogram("scaling_sweep_fit_duration_seconds",
                                     "Time to fit one (domain, family, metric, form) and its extrapolation check",
                                     ["domain"], buckets=FIT_BUCKETS, registry=r)
        self.refresh_seconds = Histogram("scaling_sweep_store_refresh_duration_seconds",
                                         "Time to list the results store and read the files that changed",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.files_read = Counter("scaling_sweep_store_files_read", "Results files read (new or changed)",
                                  registry=r)
        self.files = Gauge("scaling_sweep_store_files", "Results files in the index", ["state"], registry=r)
        self.trials = Gauge("scaling_sweep_trials_seen", "Trials in the store by domain and status",
                            ["domain", "status"], registry=r)
        self.cache = Counter("scaling_sweep_response_cache", "Response cache lookups", ["result"], registry=r)

    def observe_refresh(self, index: StoreIndex, seconds: float, files_read: int) -> None:
        """Called by the index after each listing (under its lock)."""
        self.refresh_seconds.observe(seconds)
        self.files_read.inc(files_read)
        indexed, bad = index.counts()
        self.files.labels("indexed").set(indexed)
        self.files.labels("unreadable").set(bad)
        self.trials.clear()  # rebuilt each time (a handful of groups): removed trials and domains disappear too
        for domain, families in index.overview().items():
            for status, n in iter_statuses(families.values()).items():
                self.trials.labels(domain, status).set(n)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): counts and times every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - t0)
