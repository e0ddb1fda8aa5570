"""The service on a network: a bearer token, required beyond loopback; 401 without it; /healthz open for probes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from fitting.service.auth import TokenError, is_loopback, ray_token, read_token
from tests.fitting.service.helpers import Live, trial_rows, write
from tests.s3_server import free_port

TOKEN = "correct-horse-battery-staple"
SCALING_SWEEP = str(Path(sys.executable).parent / "scaling-sweep")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_requests_need_the_token_but_healthz_stays_open(live: Callable[..., Live]) -> None:
    service = live(n_boot=0, token=TOKEN)
    write(service.store, trial_rows(seeds=1))
    assert service.get("/healthz").status_code == 200
    for path in ("/curves", "/curves/lm", "/curves/lm/plot.svg", "/metrics"):
        refused = service.client.get(path)
        assert refused.status_code == 401, path
        assert refused.json() == {"detail": "missing or wrong bearer token"}
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert service.client.get(path, headers=bearer(TOKEN + "x")).status_code == 401
        assert service.client.get(path, headers={"Authorization": TOKEN}).status_code == 401  # no scheme
    assert service.client.get("/curves/lm", headers=bearer(TOKEN)).json()["domain"] == "lm"
    # refused requests are counted like any other
    metrics = service.client.get("/metrics", headers=bearer(TOKEN)).text
    assert 'status="401"' in metrics


def test_openapi_declares_the_bearer_scheme_and_401(live: Callable[..., Live]) -> None:
    schema = live(n_boot=0, token=TOKEN).get("/openapi.json").json()  # the docs stay readable without a token
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    curves = schema["paths"]["/curves/{domain}"]["get"]
    assert curves["security"] == [{"bearerAuth": []}] and "401" in curves["responses"]
    health = schema["paths"]["/healthz"]["get"]
    assert "security" not in health and "401" not in health["responses"]


def test_without_a_token_nothing_changes(live: Callable[..., Live]) -> None:
    service = live(n_boot=0)
    assert service.get("/curves").status_code == 200
    assert "securitySchemes" not in service.get("/openapi.json").json().get("components", {})


def test_serve_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    refused = subprocess.run([SCALING_SWEEP, "serve", "--results", str(tmp_path), "--host", "0.0.0.0",
                              "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "--host 0.0.0.0 exposes the service beyond this machine" in refused.stderr
    assert "--token-file" in refused.stderr


def test_serve_with_a_token_file_on_all_interfaces(tmp_path: Path) -> None:
    """The deployed command line: --host 0.0.0.0 --token-file, probed over 127.0.0.1."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")  # a trailing newline, as `echo` or a Kubernetes secret leaves it
    port = free_port()
    proc = subprocess.Popen([SCALING_SWEEP, "serve", "--results", str(tmp_path / "storage"), "--host", "0.0.0.0",
                             "--port", str(port), "--token-file", str(token_file), "--bootstrap", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                health = httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert health.status_code == 200
        assert httpx.get(f"{url}/curves", timeout=10).status_code == 401
        assert httpx.get(f"{url}/curves", headers=bearer(TOKEN), timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TokenError, match="is empty"):
        (tmp_path / "empty").write_text("\n")
        read_token(tmp_path / "empty")
    with pytest.raises(TokenError, match="cannot read"):
        read_token(tmp_path / "missing")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    (tmp_path / "ray_token").write_text("from-ray-file\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "ray_token"))
    assert ray_token() == "from-ray-file"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-ray-env")  # Ray's own order: the variable first
    assert ray_token() == "from-ray-env"
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(TokenError, match="no RAY_AUTH_TOKEN set and cannot read"):
        ray_token()
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "127.0.1.1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.1.2.3", "example.org"]))
    assert os.environ.get("RAY_AUTH_TOKEN") is None
