"""Failure modes: corrupt files, unknown domains, too few shards, bad query values, hostile paths."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fitting.service.helpers import SIZES, Live, trial_rows, write


def test_corrupt_and_foreign_files_are_skipped_listed_and_forgotten_when_fixed(
        live: Callable[..., Live], caplog: pytest.LogCaptureFixture) -> None:
    srv = live()
    write(srv.store, trial_rows())
    results = Path(srv.store.results_dir)
    broken = results / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.table({"x": [1]}), results / "foreign.parquet")
    with caplog.at_level(logging.WARNING, logger="fitting.service.cache"):
        r = srv.get("/curves/lm")
    assert r.status_code == 200
    body = r.json()
    assert body["families"][0]["fit"] is not None  # the good trials are still fitted
    assert len(body["warnings"]) == 2
    assert any("broken.parquet" in w for w in body["warnings"])
    assert any("foreign.parquet" in w and "missing columns" in w for w in body["warnings"])
    assert "broken.parquet" in caplog.text
    overview = srv.get("/curves").json()
    assert overview["unreadable_files"] == 2 and len(overview["warnings"]) == 2

    engine = srv.app.state.engine
    read = engine.index.files_read
    for _ in range(3):
        assert srv.get("/curves/lm").status_code == 200
    assert engine.index.files_read == read  # a bad file is remembered, not re-read on every request

    broken.unlink()
    (results / "foreign.parquet").unlink()
    healed = srv.get("/curves/lm").json()
    assert healed["warnings"] == []
    health = srv.get("/healthz").json()
    assert health["status"] == "ok" and health["unreadable_files"] == 0 and health["files"] == 96


def test_unknown_domain_is_404_naming_the_known_ones(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(domain="lm", sizes=SIZES[:3]))
    write(srv.store, trial_rows(domain="nmt", sizes=SIZES[:3], metric="val_xent", size_unit="tokens"))
    for path in ("/curves/speech", "/curves/speech/plot.svg", "/curves/speech/predict?train_size=10"):
        r = srv.client.get(path)
        assert r.status_code == 404, path
        detail = r.json()["detail"]
        assert detail["known_domains"] == ["lm", "nmt"]
        assert "unknown domain 'speech'" in detail["message"] and "lm, nmt" in detail["message"]


@pytest.mark.parametrize("path", [
    "/curves/..%2F..%2F..%2Fetc%2Fpasswd",
    "/curves/%2E%2E",
    "/curves/..",
    "/curves/results",
    "/curves/lm%00",
    "/curves/..%2Fresults%2Flm-word-1000-16-0.001-s0.parquet",
])
def test_path_parameters_never_reach_the_filesystem(live: Callable[..., Live], path: str) -> None:
    srv = live()
    write(srv.store, trial_rows(sizes=SIZES[:3]))
    r = srv.client.get(path)
    assert r.status_code == 404
    assert "root:" not in r.text and "PAR1" not in r.text


def test_too_few_shards_is_200_with_points_and_reason(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(sizes=SIZES[:2]))
    r = srv.get("/curves/lm")
    assert r.status_code == 200
    fam = r.json()["families"][0]
    assert fam["fit"] is None and fam["model_size"] is None
    assert "only 2 usable shard(s) (need 3)" in fam["reason"]
    assert [p["train_size"] for p in fam["points"]] == SIZES[:2]
    assert all(len(p["trial_keys"]) == 2 and sorted(p["seeds"]) == [0, 1] for p in fam["points"])
    assert fam["extrapolation_check"] is None and fam["extrapolation_reason"].startswith("no fit")
    pred = srv.get("/curves/lm/predict", target_error=0.1).json()["predictions"][0]
    assert pred["train_size"] is None and pred["reason"].startswith("no fit")
    assert srv.get("/curves/lm/plot.svg").status_code == 200

    write(srv.store, trial_rows(sizes=SIZES[2:3]))  # 3 shards: a fit, but no shard to spare for the check
    fam = srv.get("/curves/lm").json()["families"][0]
    assert fam["fit"] is not None and fam["extrapolation_check"] is None
    assert "the check needs 4" in fam["extrapolation_reason"]


def test_diverged_and_errored_trials_are_counted_not_fitted(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(sizes=SIZES[:4]))
    bad = trial_rows(sizes=SIZES[:1], status="diverged", seeds=1)
    for row in bad:
        row["trial_key"] += "-div"
        row["best_value"] = float("nan")
    write(srv.store, bad)
    fam = srv.get("/curves/lm").json()["families"][0]
    assert fam["trials"]["diverged"] == 6 and fam["trials"]["completed"] == 48
    assert fam["n_ignored"] == 6 and fam["fit"]["n_points"] == 4


def _problem(r: object) -> dict:
    body = r.json()  # type: ignore[attr-defined]
    assert r.status_code == 422, body  # type: ignore[attr-defined]
    (err,) = body["detail"]
    return err


def test_bad_query_values_are_422_saying_what_is_allowed(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(sizes=SIZES[:4]))
    err = _problem(srv.get("/curves/lm", form="cubic"))
    assert err["loc"] == ["query", "form"] and "'auto', 'power' or 'floor'" in err["msg"]
    err = _problem(srv.get("/curves/lm", metric="val_top5"))
    assert err["loc"] == ["query", "metric"] and err["ctx"]["allowed"] == ["val_err5", "val_xent"]
    assert "val_err5, val_xent" in err["msg"]
    err = _problem(srv.get("/curves/lm/plot.png", family="transformer"))
    assert err["loc"] == ["query", "family"] and err["ctx"]["allowed"] == ["word"]
    for value in ("-1", "0", "nan", "inf", "abc"):
        err = _problem(srv.get("/curves/lm/predict", target_error=value))
        assert err["loc"] == ["query", "target_error"], value
    err = _problem(srv.get("/curves/lm/predict", train_size="-5"))
    assert err["loc"] == ["query", "train_size"] and "greater than 0" in err["msg"]
    for params in ({}, {"target_error": 0.2, "train_size": 1000}):
        err = _problem(srv.get("/curves/lm/predict", **params))
        assert "exactly one of target_error" in err["msg"]
    assert srv.get("/curves/lm", metric="val_err5").status_code == 200


def test_unreadable_store_is_503_and_health_stays_up(live: Callable[..., Live], tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "results").write_text("a file where the results folder should be")
    srv = live()
    r = srv.get("/curves")
    assert r.status_code == 503 and "results store unreadable" in r.json()["detail"]
    health = srv.get("/healthz")
    assert health.status_code == 200 and health.json()["ready"] is False
