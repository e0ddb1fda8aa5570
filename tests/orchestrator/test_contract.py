"""The trial contract: a plan survives Tune's config (and configs written by older code), a report is read back
exactly as it was written, and nothing outside the contract reads plans or results by string."""

from __future__ import annotations

import math
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from orchestrator.contract import PLAN_KEY, TrialPlan, TrialReport, TrialStopping, trial_status
from tests.orchestrator.plans import make_plan

ORCHESTRATOR = Path(__file__).resolve().parents[2] / "orchestrator"


def test_plan_round_trips_through_tunes_config() -> None:
    plan = make_plan("k", stopping=TrialStopping(max_steps=50, eval_every=5, patience=3, min_delta=0.01), workers=2)
    assert TrialPlan.of({PLAN_KEY: plan.to_config()}) == plan
    assert TrialPlan.of({PLAN_KEY: plan}) is plan
    assert plan.data_parallel and plan.label == "lm/word/f=1/w=8/s0"


def test_a_plan_written_by_older_code_is_read() -> None:
    old = asdict(make_plan("k"))  # what the code before TrialPlan travelled in configs wrote: plain dicts
    del old["workers"], old["train_size"]
    plan = TrialPlan.of({"trial": old})
    assert plan.stopping == TrialStopping(max_steps=100, eval_every=10) and plan.workers == 1
    assert plan.train_size is None


def test_an_unknown_plan_field_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown fields \['widht'\]"):
        TrialPlan.from_dict({**make_plan().to_config(), "widht": 3})


def test_report_round_trips_and_keeps_the_result_keys_tune_and_asha_read() -> None:
    report = TrialReport(iteration=3, steps=30, samples=240.0, train_loss=2.5, objective=1.5, best_objective=1.25,
                         num_params=1000, elapsed=4.0, restores=1, final=True, stop_reason="patience",
                         metrics={"val_xent": 1.5, "val_ppl": 4.48}, best={"val_xent": 1.25},
                         train_extra={"epochs": 0.5}, node_id="n", gpu_ids="0,1", run_started_at=1.0,
                         reported_at=2.0, restored_history="[]", non_embedding_params=600,
                         flops_per_step=1.5e6, train_flops=4.5e7, converged=True)
    result = report.to_result()
    assert result[TrialReport.ITERATION] == 3 and result[TrialReport.TIME_ATTR] == 30
    assert result[TrialReport.OBJECTIVE] == 1.5
    assert {k for k in result if "/" in k} == {"val/val_xent", "val/val_ppl", "best/val_xent", "train/epochs"}
    assert "replica_drift" not in result  # unset optional keys are left out, not sent as None
    assert (result["train_flops"], result["converged"]) == (4.5e7, True)
    tune_keys = {"training_iteration": 3, "time_total_s": 9.0, "done": True, "trial_id": "x", "config": {}}
    assert TrialReport.from_result({**result, **tune_keys}) == report
    assert trial_status(report) == ("completed", "patience")
    diverged = TrialReport(iteration=1, steps=1, samples=1.0, train_loss=math.nan, final=True, stop_reason="diverged")
    assert trial_status(TrialReport.from_result(diverged.to_result())) == ("diverged", "diverged")
    unfinished = TrialReport(iteration=1, steps=1, samples=1.0, train_loss=1.0)
    assert trial_status(TrialReport.from_result(unfinished.to_result())) == ("stopped", "asha")
    assert {"train_flops", "converged", "non_embedding_params"}.isdisjoint(unfinished.to_result())
    assert TrialReport.from_result({}) is None and trial_status(None) == ("errored", "no result reported")


def test_nothing_outside_the_contract_reads_plans_or_results_by_string() -> None:
    offenders = []
    for path in sorted(ORCHESTRATOR.glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"""plan\[["']|\[["']trial["']\]|result\[["']|result\.get\(["']""", line):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
