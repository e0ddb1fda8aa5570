"""The rest of the surface: overview, fit contents, forms and metrics, health, Prometheus, OpenAPI."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from fitting.service import add_arguments
from tests.fitting.service.helpers import SIZES, Live, trial_rows, write


def test_overview_lists_domains_with_counts_families_and_update_time(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(sizes=SIZES[:3]))
    write(srv.store, trial_rows(family="char", metric="val_bpc", sizes=SIZES[:3], size_unit="characters"))
    write(srv.store, trial_rows(domain="image", family="resnet", metric="val_top1_error", sizes=SIZES[:3],
                                size_unit="images", status="stopped"))
    body = srv.get("/curves").json()
    assert [d["domain"] for d in body["domains"]] == ["image", "lm"]
    image, lm = body["domains"]
    assert image["trials"]["stopped"] == 36 and image["trials"]["total"] == 36 and image["url"] == "/curves/image"
    assert lm["trials"]["completed"] == 72 and [f["family"] for f in lm["families"]] == ["char", "word"]
    assert {f["family"]: f["metric"] for f in lm["families"]} == {"char": "val_bpc", "word": "val_xent"}
    assert lm["metrics"] == ["val_bpc", "val_err5", "val_xent"]
    assert lm["updated_at"] is not None and body["files"] == 108 and body["unreadable_files"] == 0


def test_curve_carries_fit_intervals_points_reference_and_held_out_check(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows())
    body = srv.get("/curves/lm").json()
    assert body["domain"] == "lm" and body["form"] == "auto" and body["warnings"] == []
    (fam,) = body["families"]
    fit, size = fam["fit"], fam["model_size"]
    assert fit["form"] == "power" and fit["gamma"] is None and fit["n_points"] == 8
    assert fit["beta_g_ci"]["lo"] <= -0.3 <= fit["beta_g_ci"]["hi"]
    assert fit["beta_g_ci"]["lo"] < fit["beta_g"] < fit["beta_g_ci"]["hi"] and fit["r2"] > 0.99
    assert size["beta_p"] == pytest.approx(0.6, abs=0.02) and size["beta_p_ci"]["lo"] < 0.6 < size["beta_p_ci"]["hi"]
    assert fam["reference"]["beta_g"] == -0.066 and "Hestness" in fam["reference"]["source"]
    point = fam["points"][0]
    assert point["best_width"] == 32 and point["role"] == "fitted" and point["n_trials"] == 12
    assert sorted(point["trial_ids"]) == ["id_lm-word-1000-32-0.001_0", "id_lm-word-1000-32-0.001_1"]
    check = fam["extrapolation_check"]
    assert check["held_out_size"] == SIZES[-1] and check["n_points"] == 7
    assert abs(check["log_error"]) < 0.05 and check["within_interval"] is True
    assert check["interval"]["lo"] <= check["predicted"] <= check["interval"]["hi"]
    assert [bt["held_out"] for bt in fam["backtest"]] == [1, 2, 3]
    for bt in fam["backtest"]:  # 8 shards doubling: refits on 7, 6, 5 shards read 2×, 4×, 8× beyond
        assert bt["size_ratio"] == pytest.approx(2.0 ** bt["held_out"]) and bt["size"] == SIZES[-1]
        assert abs(bt["log_error"]) < 0.1 and bt["inside"] is True and bt["level"] == 0.9
        assert bt["interval"]["lo"] <= bt["predicted"] <= bt["interval"]["hi"]
        assert bt["power_beta"] == pytest.approx(fit["beta_g"], abs=0.03)  # the synthetic law's slope, fewer shards
    assert fam["prediction_method"].startswith("average of") and fam["reference"]["form"] == "power"
    assert fit["beta_g_power"] == pytest.approx(fit["beta_g"])  # the power form: the same slope


def test_forms_and_alternative_metric(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(law=lambda m: 30.0 * m**-0.5 + 0.1, noise=0.005))
    auto = srv.get("/curves/lm").json()["families"][0]["fit"]
    power = srv.get("/curves/lm", form="power").json()["families"][0]["fit"]
    floor = srv.get("/curves/lm", form="floor").json()["families"][0]["fit"]
    assert auto["form"] == "floor" and auto["gamma"] > 0 and auto["gamma_ci"] is not None
    assert power["form"] == "power" and power["gamma"] is None and power["beta_g"] > floor["beta_g"]
    assert floor["beta_g"] == pytest.approx(-0.5, abs=0.1)
    primary = srv.get("/curves/lm", form="power").json()["families"][0]
    alt = srv.get("/curves/lm", form="power", metric="val_err5").json()["families"][0]
    assert alt["metric"] == "val_err5" and alt["fit"]["beta_g"] == pytest.approx(primary["fit"]["beta_g"])
    assert alt["fit"]["alpha"] == pytest.approx(primary["fit"]["alpha"] / 2)


def test_health_metrics_and_openapi(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(sizes=SIZES[:4]))
    health = srv.get("/healthz").json()
    assert health["status"] == "ok" and health["ready"] is True
    srv.get("/curves/lm")
    srv.get("/curves/lm")
    srv.get("/curves/nope")
    text = srv.get("/metrics").text
    assert 'scaling_sweep_http_requests_total{method="GET",route="/curves/{domain}",status="200"} 2.0' in text
    assert 'route="/curves/{domain}",status="404"' in text and "nope" not in text
    assert "scaling_sweep_http_request_duration_seconds_bucket" in text
    assert 'scaling_sweep_fit_duration_seconds_count{domain="lm"} 1.0' in text
    assert 'scaling_sweep_trials_seen{domain="lm",status="completed"} 48.0' in text
    assert 'scaling_sweep_store_files{state="indexed"} 48.0' in text
    assert "scaling_sweep_store_refresh_duration_seconds_count" in text
    assert 'scaling_sweep_response_cache_total{result="hit"} 1.0' in text
    spec = srv.get("/openapi.json").json()
    assert {"/curves", "/curves/{domain}", "/curves/{domain}/predict", "/curves/{domain}/plot.svg",
            "/curves/{domain}/plot.png", "/healthz", "/metrics"} <= set(spec["paths"])
    assert {"DomainCurves", "FamilyCurve", "LearningCurve", "ExtrapolationCheck", "Predictions"} <= set(
        spec["components"]["schemas"])
    assert "swagger" in srv.get("/docs").text.lower()


def test_two_apps_in_one_process_keep_separate_registries(live: Callable[..., Live]) -> None:
    a, b = live(), live()
    write(a.store, trial_rows(sizes=SIZES[:3]))
    a.get("/curves/lm")
    assert "scaling_sweep_http_requests_total" in a.get("/metrics").text
    assert "/curves/{domain}" not in b.get("/metrics").text


def test_the_service_never_writes_to_the_store(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(sizes=SIZES[:4]))
    root = Path(srv.store.root)

    def snapshot() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}

    before = snapshot()
    for path in ("/curves", "/curves/lm", "/curves/lm/plot.svg", "/curves/lm/plot.png", "/curves/lm/predict",
                 "/curves/lm/predict?train_size=1e6", "/metrics", "/healthz"):
        srv.client.get(path)
    assert snapshot() == before


def test_command_line_binds_to_loopback_by_default() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--results", "runs/quickstart"])
    assert (args.results, args.host, args.port, args.bootstrap, args.access_log) == (
        "runs/quickstart", "127.0.0.1", 8000, 500, True)
