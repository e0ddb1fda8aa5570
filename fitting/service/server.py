"""Run the service: ``serve()`` for code, ``main(argv)`` for the command line (``scaling-sweep serve``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fitting.service.auth import TokenError, ray_token, read_token, require_token_off_loopback


def serve(results_uri: str, host: str = "127.0.0.1", port: int = 8000, *, n_boot: int = 500,
          list_ttl: float | None = None, log_level: str = "info", access_log: bool = True,
          token: str | None = None) -> None:
    """Serve the results store at ``results_uri`` until interrupted. Binds to loopback unless told otherwise;
    beyond loopback only with a bearer ``token`` (``TokenError`` otherwise)."""
    require_token_off_loopback(host, token)
    import uvicorn  # here, not at the top: `scaling-sweep --help` should not pay for the web stack

    from fitting.service.app import create_app

    if not logging.getLogger().handlers:
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(results_uri, n_boot=n_boot, list_ttl=list_ttl, token=token), host=host, port=port,
                log_level=log_level, access_log=access_log)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` options, for this module's parser and for the ``scaling-sweep serve`` subcommand."""
    parser.add_argument("--results", required=True, metavar="URI",
                        help="the sweep's storage (the folder or URI holding results/): a local path or any "
                             "pyarrow filesystem URI (s3://, gs://, ...)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: loopback only; any other needs a token)")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token-file", metavar="FILE",
                       help="require 'Authorization: Bearer <token>' with the token in FILE (all but /healthz)")
    token.add_argument("--ray-token", action="store_true",
                       help="require Ray's own token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap replicates per fit (0: no intervals)")
    parser.add_argument("--list-ttl", type=float, default=None,
                        help="seconds between full listings of the store (default 30 local, 2 object stores)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        help="do not log every request")


def serve_from_args(args: argparse.Namespace) -> int:
    """Run :func:`serve` with parsed :func:`add_arguments` options; returns the exit status (2: refused)."""
    try:
        token = read_token(args.token_file) if args.token_file else ray_token() if args.ray_token else None
        serve(args.results, args.host, args.port, n_boot=args.bootstrap, list_ttl=args.list_ttl,
              log_level=args.log_level, access_log=args.access_log, token=token)
    except TokenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fitting.service --results URI [--host 127.0.0.1] [--port 8000]``."""
    parser = argparse.ArgumentParser(prog="scaling-sweep serve",
                                     description="Serve live learning-curve fits of a results store over HTTP.")
    add_arguments(parser)
    return serve_from_args(parser.parse_args(argv))
