"""Bearer-token access for the fitting service, required whenever it listens beyond loopback.

The service is read-only, but a sweep's results (data sizes, model sizes, losses) are not for everyone on a
network. With a token, every request must carry ``Authorization: Bearer <token>`` (compared in constant time);
``/healthz`` stays open so load balancers and Kubernetes probes need no secret (and the API docs, which hold no
results). The token comes from a file
(``--token-file``, e.g. a mounted Kubernetes secret) or, with ``--ray-token``, from where Ray 2.60's token
authentication keeps it (``RAY_AUTH_TOKEN``, the file in ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``), so
one secret guards the dashboard and the service.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Probes need no secret; nor do the API docs (the schema holds no results, and Swagger UI must load it before
# the user can enter the token with its Authorize button).
OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
SCHEME = "bearerAuth"
UNAUTHORIZED = {"description": "missing or wrong bearer token (the service was started with a token)",
                "content": {"application/json": {"example": {"detail": "missing or wrong bearer token"}}}}
RAY_TOKEN_ENV, RAY_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
RAY_TOKEN_FILE = Path("~/.ray/auth_token")


class TokenError(ValueError):
    """No usable token where one is needed; the message says where it looked and what to do."""


def read_token(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped); a missing or empty file is an error."""
    path = Path(path).expanduser()
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise TokenError(f"--token-file: cannot read {path}: {exc.strerror or exc}") from None
    if not token:
        raise TokenError(f"--token-file: {path} is empty")
    return token


def ray_token() -> str:
    """Ray's own token, looked up as Ray looks it up."""
    if os.environ.get(RAY_TOKEN_ENV, "").strip():
        return os.environ[RAY_TOKEN_ENV].strip()
    path = os.environ.get(RAY_TOKEN_PATH_ENV) or RAY_TOKEN_FILE
    try:
        return read_token(path)
    except TokenError as exc:
        raise TokenError(f"--ray-token: no {RAY_TOKEN_ENV} set and {exc}".replace("--token-file: ", "")) from None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the service on this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a hostname: it may resolve to any interface
        return False


def require_token_off_loopback(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token."""
    if token is None and not is_loopback(host):
        raise TokenError(f"--host {host} exposes the service beyond this machine: give it a bearer token with "
                         f"--token-file FILE (or --ray-token to use Ray's), or bind --host 127.0.0.1")


class BearerTokenMiddleware:
    """Pure ASGI middleware: 401 for any HTTP request without the right bearer token, except ``OPEN_PATHS``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    def _authorized(self, scope: Scope) -> bool:
        given = dict(scope.get("headers") or ()).get(b"authorization", b"")
        return hmac.compare_digest(given, self._expected)  # constant time: the comparison leaks no prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": "missing or wrong bearer token"}).encode()
        start: Message = {"type": "http.response.start", "status": 401,
                          "headers": [(b"content-type", b"application/json"),
                                      (b"content-length", str(len(body)).encode()),
                                      (b"www-authenticate", b'Bearer realm="scaling-sweep"')]}
        await send(start)
        await send({"type": "http.response.body", "body": body})


def document_security(openapi: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Wrap FastAPI's schema builder: a bearer security scheme, required by every operation but ``OPEN_PATHS``,
    each of which may answer 401."""

    def schema() -> dict[str, Any]:
        doc = openapi()
        if SCHEME not in doc.setdefault("components", {}).setdefault("securitySchemes", {}):
            doc["components"]["securitySchemes"][SCHEME] = {"type": "http", "scheme": "bearer"}
            for path, operations in doc.get("paths", {}).items():
                if path in OPEN_PATHS:
                    continue
                for operation in operations.values():
                    operation["security"] = [{SCHEME: []}]
                    operation.setdefault("responses", {})["401"] = UNAUTHORIZED
        return doc

    return schema

