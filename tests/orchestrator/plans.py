"""A complete ``TrialPlan`` for tests that drive the driver-side callbacks and schedulers with stub trials."""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial

from orchestrator.contract import PLAN_KEY, TrialPlan, TrialStopping


def make_plan(key: str = "t0", **overrides: Any) -> TrialPlan:
    values: dict[str, Any] = dict(
        trial_key=key, config_key=key, sweep="s", domain="lm", family="word", fraction=1.0, width=8,
        hparams={"lr": 0.01}, seed=0, metric="val_xent", primary_metric="val_xent", size_unit="words",
        stopping=TrialStopping(max_steps=100, eval_every=10), threads=1, resources={"cpu": 1.0, "gpu": 0.0},
        train_size=100.0)
    return TrialPlan(**{**values, **overrides})


def stub_trial(plan: TrialPlan) -> Trial:
    """A Tune trial that is never run, with ``plan`` in its config as the runner puts it there."""
    return Trial("__fake", config={PLAN_KEY: plan.to_config()}, trial_id=plan.trial_key, stub=True)
