"""What an adaptive sweep shows: per family the live β_g and β_p with their intervals, and compute against budget,
in the progress display (only when they change) and as dashboard gauges."""

from __future__ import annotations

import io

from orchestrator.adaptive.policy import FamilyStatus
from orchestrator.dashboard_metrics import DashboardMetrics, exponent_values
from orchestrator.progress import ProgressDisplay


def status() -> FamilyStatus:
    return FamilyStatus("lm", "word", beta_g=-0.31, beta_g_ci=(-0.33, -0.29), beta_p=0.5, beta_p_ci=None,
                        points=5, note="narrowing")


def test_family_line_shows_exponents_intervals_and_targets() -> None:
    line = status().line(0.02, None)
    assert line == ("lm/word: β_g -0.310 [-0.330, -0.290] ±0.020 (target ±0.02), β_p +0.500, 5 shard points; "
                    "narrowing")
    met = FamilyStatus("lm", "word", beta_g=-0.3, beta_g_ci=(-0.31, -0.29), points=6, met=True)
    assert met.line(0.02, 0.1).endswith("β_p – (target ±0.1), 6 shard points; target met")


def test_progress_prints_the_adaptive_lines_when_they_change() -> None:
    out = io.StringIO()
    lines = ["lm/word: β_g -0.310", "compute 1 of 10 samples_params (10%)"]
    display = ProgressDisplay(3, out=out, extra=lambda: list(lines))
    display.print_extra()
    display.print_extra()  # unchanged: not printed again
    lines[1] = "compute 2 of 10 samples_params (20%)"
    display.print_extra()
    printed = out.getvalue().splitlines()
    assert [p.strip() for p in printed] == ["lm/word: β_g -0.310", "compute 1 of 10 samples_params (10%)",
                                            "lm/word: β_g -0.310", "compute 2 of 10 samples_params (20%)"]


def test_dashboard_exports_exponent_bounds_and_compute() -> None:
    assert exponent_values(status()) == {("beta_g", "value"): -0.31, ("beta_g", "low"): -0.33,
                                         ("beta_g", "high"): -0.29, ("beta_p", "value"): 0.5}
    metrics = DashboardMetrics(lambda: ([status()], 5.0, 10.0, "samples_params"))
    metrics.publish_fits()  # the gauges are created and set (Ray's metrics agent exports them on a cluster)
    assert metrics.__getstate__()["_exponents"] is None  # gauges are not pickled with the Tuner
    DashboardMetrics().publish_fits()  # a grid sweep has no live fits: nothing to do
