"""Synthetic trial rows with known laws, and a real uvicorn server on 127.0.0.1 (free port, background thread)."""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI

from fitting.store import ResultsStore

SIZES = [1000.0 * 2.0**k for k in range(8)]  # 8 nested shards, 2.1 decades
WIDTHS = (16, 32, 64)


def law_power(m: float) -> float:
    return 5.0 * m**-0.3


def law_plateau(m: float) -> float:
    """Power law below a small-data plateau: the two smallest shards sit flat under the extrapolation."""
    return min(law_power(m), 1.02 * law_power(4000.0))


def trial_rows(domain: str = "lm", family: str = "word", sizes: list[float] = SIZES,
               law: Callable[[float], float] = law_power, *, seeds: int = 2, noise: float = 0.02,
               metric: str = "val_xent", size_unit: str = "words", beta_p: float = 0.6, seed: int = 0,
               status: str = "completed") -> list[dict[str, Any]]:
    """Trial rows of a sweep following ``law`` exactly for the best width (σ·m^β_p params), others worse.

    Per shard: 3 widths × 2 learning rates × ``seeds`` seeds. Every row also reports ``val_err5`` (half the
    primary metric) in ``best_metrics``, as an alternative metric.
    """
    rng = np.random.default_rng(seed)
    now = datetime.now(tz=UTC)
    rows = []
    for m in sizes:
        ideal = 20.0 * m**beta_p
        for w_i, width in enumerate(WIDTHS):
            ratio = 2.0 ** (w_i - 1)  # widths around the ideal size: 0.5x, 1x, 2x
            for lr in (1e-3, 3e-3):
                config = f"{domain}-{family}-{m:g}-{width}-{lr:g}"
                penalty = 1 + 0.1 * math.log2(ratio) ** 2 + (0.08 if lr == 3e-3 else 0.0)
                for s in range(seeds):
                    value = float(law(m) * penalty * math.exp(rng.normal(0.0, noise)))
                    rows.append({
                        "trial_key": f"{config}-s{s}", "config_key": config, "trial_id": f"id_{config}_{s}",
                        "sweep": "test", "domain": domain, "family": family, "fraction": m / SIZES[-1],
                        "train_size": float(m), "size_unit": size_unit, "width": width,
                        "num_params": round(ideal * ratio), "hparams": {"lr": lr}, "seed": s, "status": status,
                        "stop_reason": "patience", "metric": metric, "best_value": value,
                        "best_metrics": {metric: value, "val_err5": value / 2}, "final_metrics": {metric: value},
                        "steps": 100, "samples": 1000.0, "iterations": 5, "restores": 0, "wall_seconds": 1.0,
                        "started_at": now, "finished_at": now, "code_version": "test", "error": None,
                    })
    return rows


def write(store: ResultsStore, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        store.write_trial(row)


@dataclass
class Live:
    """A running server and the store it reads."""

    url: str
    store: ResultsStore
    client: httpx.Client
    app: FastAPI  # same process: tests may look at ``app.state.engine`` (files read, fits computed)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params={k: v for k, v in params.items() if v is not None})


def start_server(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: asyncio sets NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a free port chosen by the OS, held until the server owns it
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    host, port = sock.getsockname()
    return server, thread, f"http://{host}:{port}"
