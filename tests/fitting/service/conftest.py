"""Fixture: a real uvicorn server on 127.0.0.1 over a fresh store, talked to over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from fitting.service import create_app
from fitting.store import ResultsStore
from tests.fitting.service.helpers import Live, start_server


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[..., Live]]:
    """Factory: ``live(**create_app_kwargs)`` starts a server over a fresh store under ``tmp_path``."""
    running: list[tuple[uvicorn.Server, threading.Thread, httpx.Client]] = []

    def start(n_boot: int = 200, **kwargs: Any) -> Live:
        store = ResultsStore(str(tmp_path / "storage"))
        app = create_app(store.uri, n_boot=n_boot, **kwargs)
        server, thread, url = start_server(app)
        client = httpx.Client(base_url=url, timeout=30)
        running.append((server, thread, client))
        return Live(url, store, client, app)

    yield start
    for server, thread, client in running:
        client.close()
        server.should_exit = True
        thread.join(timeout=10)
