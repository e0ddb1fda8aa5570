"""The surface, optimal and compare endpoints and their figures over real HTTP, and every status each endpoint
can answer declared in the OpenAPI schema (issue 15)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fitting.store import ResultsStore
from tests.fitting.service.helpers import Live, trial_rows, write
from tests.fitting.surface_synthetic import Truth, surface_sweep

DOMAIN_JSON = {"200", "304", "404", "422", "503"}
EXPECTED = {
    "/healthz": {"200"}, "/metrics": {"200"}, "/curves": {"200", "304", "503"},
    "/curves/{domain}": DOMAIN_JSON, "/curves/{domain}/plot.svg": DOMAIN_JSON, "/curves/{domain}/plot.png": DOMAIN_JSON,
    "/curves/{domain}/predict": {"200", "404", "422", "503"},
    "/curves/{domain}/surface": DOMAIN_JSON, "/curves/{domain}/surface.svg": DOMAIN_JSON,
    "/curves/{domain}/surface.png": DOMAIN_JSON, "/curves/{domain}/optimal": {"200", "404", "422", "503"},
    "/curves/{domain}/compare": DOMAIN_JSON, "/curves/{domain}/compare.svg": DOMAIN_JSON,
    "/curves/{domain}/compare.png": DOMAIN_JSON,
}


def _write_two_families(store: ResultsStore) -> None:
    rng = np.random.default_rng(0)
    shocks = np.zeros(11)
    for family, truth in (("lstm", Truth()), ("transformer", Truth(A=14.0, B=6.0, b=0.34))):
        rows = surface_sweep(truth, rng, family=family, shard_shocks=shocks)
        write(store, [{**row, "trial_id": row["trial_key"]} for row in rows.to_dict("records")])


def test_surface_optimal_and_compare_answer_with_intervals_and_plots(live: Callable[..., Live]) -> None:
    srv = live(n_boot=60)
    _write_two_families(srv.store)
    r = srv.get("/curves/lm/surface")
    assert r.status_code == 200, r.text
    body = r.json()
    fams = {f["family"]: f for f in body["families"]}
    assert set(fams) == {"lstm", "transformer"}
    lstm = fams["lstm"]
    assert lstm["fitted"] and lstm["form"] == "interaction" and abs(lstm["beta_p"] - 0.5) < 0.1
    assert lstm["beta_p_ci"]["lo"] < lstm["beta_p"] < lstm["beta_p_ci"]["hi"]
    assert lstm["compute_source"] == "compute estimated as 6ND; FLOPs not stored"
    front = lstm["frontier"]
    assert front["n_exponent_ci"]["lo"] < front["n_exponent"] < front["n_exponent_ci"]["hi"]
    assert len(front["compute"]) == len(front["n_opt_band"]) == 25 and {"E", "a", "d"} <= set(lstm["params_ci"])
    again = srv.client.get("/curves/lm/surface", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304

    c = math.sqrt(front["compute"][0] * front["compute"][-1])
    opt = srv.get("/curves/lm/optimal", compute=c, family="lstm")
    assert opt.status_code == 200, opt.text
    point = opt.json()["families"][0]
    assert point["n_opt_ci"]["lo"] < point["n_opt"] < point["n_opt_ci"]["hi"] and point["compute"] == c
    need = srv.get("/curves/lm/optimal", target_error=point["loss"], family="lstm").json()["families"][0]
    assert abs(need["compute"] / c - 1) < 0.01 and need["compute_ci"]["lo"] < c < need["compute_ci"]["hi"]

    cmp = srv.get("/curves/lm/compare", families="lstm,transformer")
    assert cmp.status_code == 200, cmp.text
    got = cmp.json()
    assert got["delta_beta_ci"]["lo"] < got["delta_beta"] < got["delta_beta_ci"]["hi"]
    assert 0 <= got["p_value"] <= 1 and "× the data" in got["sentence"] and got["test"].startswith("paired")

    svg = srv.get("/curves/lm/surface.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    for gid in ("contours-lstm", "n-opt-lstm", "frontier-lstm", "cells-transformer", "frontier-transformer"):
        assert f'id="{gid}' in svg.text, gid
    png = srv.get("/curves/lm/surface.png", family="lstm")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 10_000
    csvg = srv.get("/curves/lm/compare.svg", families="lstm,transformer")
    assert csvg.status_code == 200 and 'id="multiplier' in csvg.text and 'id="law-transformer' in csvg.text
    assert srv.get("/curves/lm/compare.png", families="lstm,transformer").content[:4] == b"\x89PNG"


def test_every_status_is_declared_and_answered(live: Callable[..., Live], tmp_path: Path) -> None:
    srv = live(n_boot=0)
    write(srv.store, trial_rows(sizes=[1000.0, 2000.0], seeds=1))  # too few shards for a surface
    spec = srv.get("/openapi.json").json()
    declared = {path: set(ops["get"]["responses"]) for path, ops in spec["paths"].items()}
    assert declared == EXPECTED
    assert srv.get("/curves/nope/surface").status_code == 404
    assert srv.get("/curves/nope/compare", families="a,b").json()["detail"]["known_domains"] == ["lm"]
    refused = {
        "/curves/lm/surface?family=nope": "family", "/curves/lm/surface?form=chinchilla": "form",
        "/curves/lm/optimal": "compute", "/curves/lm/optimal?compute=-1": "compute",
        "/curves/lm/compare?families=word": "families", "/curves/lm/compare?families=word,nope": "families",
        "/curves/lm/compare.svg?families=word,word": "families", "/curves/lm?family=nope": "family",
    }
    for url, param in refused.items():
        r = srv.client.get(url)
        assert r.status_code == 422, url
        assert r.json()["detail"][0]["loc"][-1] == param, url
    unfit = srv.get("/curves/lm/surface").json()["families"][0]
    assert unfit["fitted"] is False and "2 shards" in unfit["reason"]
    assert srv.get("/curves/lm/optimal", compute=1e9).json()["families"][0]["reason"] == unfit["reason"]
    cannot = srv.get("/curves/lm/compare", families="word,word")
    assert cannot.status_code == 422
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results").write_text("a file where the results folder should be")
    from fitting.service import create_app
    from tests.fitting.service.helpers import start_server
    server, thread, url = start_server(create_app(str(broken), n_boot=0))
    try:
        import httpx
        assert httpx.get(f"{url}/curves/lm/surface", timeout=30).status_code == 503
    finally:
        server.should_exit = True
        thread.join(timeout=10)
