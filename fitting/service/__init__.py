"""The live fitting HTTP service: ``GET /curves/<domain>`` while a sweep is still writing trials.

Modules, one job each: ``cache`` (incremental index of the results store), ``chunks`` (its rows, packed per
(domain, family)), ``units`` (metric units from names), ``fits`` (fits memoized on row
versions, extrapolation check), ``engine`` (query validation and response cache), ``views`` and ``models``
(response building and schemas), ``plots`` (figures), ``metrics`` (Prometheus), ``routes`` and ``app`` (HTTP),
``server`` (uvicorn entry points). Like the rest of ``fitting`` it never imports torch or ray.
"""

from typing import Any

from fitting.service.server import add_arguments, main, serve, serve_from_args

__all__ = ["add_arguments", "create_app", "main", "serve", "serve_from_args"]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # lazily: the web stack costs a second or two to import
        from fitting.service.app import create_app

        return create_app
    raise AttributeError(name)
