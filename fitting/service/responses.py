"""Every status an endpoint can answer, declared once for the OpenAPI schema (routes and surface_routes).

Why: clients generate code from /openapi.json; a status the schema does not list (the 422 of an unknown family,
the 304 of a revalidated answer, the 503 of an unreadable store) is one they cannot handle by design.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from fitting.service import models as m

Responses = dict[int | str, dict[str, Any]]


class QueryProblem(BaseModel):
    """One refused query value (FastAPI's validation error shape, plus the allowed values)."""

    type: str
    loc: list[str | int] = Field(description="where: e.g. [\"query\", \"family\"]")
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = Field(None, description="`allowed`: the values that would be accepted")


class QueryRefused(BaseModel):
    detail: list[QueryProblem]


class StoreUnreadable(BaseModel):
    detail: str



NOT_MODIFIED: Responses = {304: {"description": "not modified: the ETag sent in If-None-Match is current"}}
NOT_FOUND: Responses = {404: {"model": m.NotFound, "description": "unknown domain; the answer lists the known ones"}}
INVALID: Responses = {422: {
    "model": QueryRefused,
    "description": "a query value is not allowed (an unknown family or metric, a bad form, a missing or "
                   "non-positive number): `detail` names the parameter (`loc`), says why (`msg`) and lists the "
                   "allowed values (`ctx.allowed`) where there is a list"}}
UNAVAILABLE: Responses = {503: {"model": StoreUnreadable,
                                "description": "the results store cannot be read (the answer says why)"}}
IMAGE: Responses = {200: {"content": {"image/svg+xml": {}, "image/png": {}}, "description": "the figure"}}

# per kind of endpoint: a cached JSON answer of one domain, its figure, an uncached query, the store overview
DOMAIN_JSON: Responses = {**NOT_MODIFIED, **NOT_FOUND, **INVALID, **UNAVAILABLE}
DOMAIN_PLOT: Responses = {**IMAGE, **DOMAIN_JSON}
DOMAIN_QUERY: Responses = {**NOT_FOUND, **INVALID, **UNAVAILABLE}
OVERVIEW: Responses = {**NOT_MODIFIED, **UNAVAILABLE}
