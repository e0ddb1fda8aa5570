"""The adaptive policy on its own (no Ray): a synthetic sweep whose truth is known (``benchmarks/adaptive.py``),
trial by trial: design first, bracketing before narrowing, stopping for the right reason."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from benchmarks.adaptive import LawSource, law_value, params_of, register, spec_data
from orchestrator.adaptive.policy import AdaptivePolicy, Decision, Observation
from orchestrator.adaptive.searcher import candidate_spec
from orchestrator.contract import TrialPlan
from orchestrator.plan import plan_trials, resolve_domains
from orchestrator.spec import parse_spec


def pool(shards: int = 6, **changes: Any) -> tuple[list[TrialPlan], Any, LawSource]:
    register()
    data = spec_data("/nonexistent", 0, shards)
    for k, v in changes.items():
        if k == "source":
            data["domains"]["synthetic-law"]["data"].update(v)
        else:
            data["strategy"][k] = v
    spec = parse_spec(data)
    cand = candidate_spec(spec)
    src = LawSource.model_validate(spec.domains["synthetic-law"].data)
    trials = [replace(t, train_size=float(round(t.fraction * src.examples)))
              for t in plan_trials(cand, resolve_domains(cand))]
    return trials, spec.strategy, src


def run(trials: list[TrialPlan], strategy: Any, src: LawSource) -> tuple[AdaptivePolicy, list[Decision], str]:
    policy = AdaptivePolicy(trials, strategy, strategy.extra_widths)
    plans = {t.trial_key: t for t in trials}
    decisions: list[Decision] = []
    while True:
        d = policy.next()
        if isinstance(d, str):
            return policy, decisions, d
        assert d is not None  # nothing runs concurrently here: the policy never has to wait
        decisions.append(d)
        t = plans[d.key]
        policy.observe(d.key, Observation(law_value(src, t.fraction, t.width, t.hparams["lr"], t.seed),
                                          params_of(t.width), src.epochs * t.train_size * params_of(t.width)))


def test_design_then_brackets_then_narrows_until_the_target_is_met() -> None:
    trials, strategy, src = pool()
    policy, decisions, stop = run(trials, strategy, src)
    keys = [d.key for d in decisions]
    assert len(keys) == len(set(keys))  # no trial twice
    assert stop.startswith("targets met")
    fractions = sorted({t.fraction for t in trials})
    design = [d for d in decisions if d.reason.startswith("initial design")]
    assert decisions[:len(design)] == design and len(design) == 4
    assert {fractions[0], fractions[-1]} <= {policy.candidates[d.key].fraction for d in design}
    assert any("edge of the widths tried" in d.reason for d in decisions)
    assert any("edge of the values tried" in d.reason for d in decisions)  # the learning rate bracketed too
    assert any("interval for" in d.reason for d in decisions)
    status = policy.statuses()[0]
    lo, hi = status.beta_g_ci
    assert (hi - lo) / 2 <= 0.02 and status.points >= strategy.min_points
    full = sum(src.epochs * t.train_size * params_of(t.width) for t in trials)
    assert policy.spent < 0.5 * full  # the whole grid (3 seeds) is never needed here


def test_budget_stops_the_sweep_and_says_so() -> None:
    trials, strategy, src = pool(budget={"samples_params": 1e11})
    policy, decisions, stop = run(trials, strategy, src)
    assert stop.startswith("budget spent"), stop
    assert decisions and policy.spent <= 1e11 + max(d.cost for d in decisions)


def test_best_width_at_the_upper_edge_extends_to_an_extra_width() -> None:
    # best sizes 16x larger: the widest grid width (256) wins at the largest shards
    trials, strategy, src = pool(shards=4, extra_widths=[512], source={"sigma": 1024.0})
    _policy, decisions, _stop = run(trials, strategy, src)
    extra = [d for d in decisions if "extra width" in d.reason]
    assert extra and all("width 512" in d.reason and "upper edge" in d.reason for d in extra)
