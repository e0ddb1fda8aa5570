"""Budgets per shard: lengths in epochs or examples become steps of each trial's shard (real data: the digits
domain, prepared), one grace period and max_t per ASHA group, keys that do not depend on the data, clear refusals,
and the plan's table and rule lines."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest

from orchestrator.budgets import asha_rungs
from orchestrator.contract import TrialStopping
from orchestrator.group_asha import GroupedASHAScheduler
from orchestrator.plan import format_plan, plan_trials, resolve_domains
from orchestrator.runner import GroupKey
from orchestrator.spec import SpecError, parse_spec
from tests.orchestrator.plans import make_plan, stub_trial

BASE = {"name": "t", "storage": "/tmp/x", "domains": {"digits-mlp": {
    "data": {}, "families": ["mlp"], "shards": {"base": 2, "from": -3, "to": 0}, "widths": [16, 64],
    "hparams": {"batch_size": 32, "lr": {"grid": [0.01, 0.03]}},
    "early_stopping": {"max_steps": {"epochs": 10, "min_steps": 60, "max_steps": 300},
                       "eval_every": {"epochs": 0.5}, "grace_period": {"epochs": 2}, "reduction_factor": 2}}}}


def spec_of(**early_stopping: object) -> dict:
    data = copy.deepcopy(BASE)
    data["domains"]["digits-mlp"]["early_stopping"].update(early_stopping)
    return data


def prepared_digits(tmp_path: Path, spec) -> dict:
    domains = resolve_domains(spec)
    rd = domains["digits-mlp"]
    return domains, {"digits-mlp": rd.plugin.prepare(rd.source, tmp_path)}


def test_epochs_become_steps_of_each_shard(tmp_path: Path) -> None:
    spec = parse_spec(BASE)
    domains, prepared = prepared_digits(tmp_path, spec)
    trials = plan_trials(spec, domains, prepared)
    plugin = domains["digits-mlp"].plugin
    for t in trials:
        shard = plugin.train_size(prepared["digits-mlp"], t.fraction, "mlp")  # images = examples here
        assert t.train_size == shard
        epoch = shard / 32
        assert t.stopping.max_steps == min(300, max(60, math.ceil(10 * epoch)))  # the bounds hold
        assert t.stopping.eval_every == math.ceil(0.5 * epoch)  # within the first epoch at every shard
        assert t.hparams["decay_steps"] == t.stopping.max_steps  # the schedule decays over the real budget
    steps = {t.fraction: t.stopping.max_steps for t in trials}
    assert steps[0.125] == 60 and steps[1.0] == 300 and 60 < steps[0.25] < steps[0.5] < 300
    # one grace period and max_t per group (domain, family, shard, width): every configuration sees the same rungs
    for fraction in steps:
        group = [t.stopping for t in trials if t.fraction == fraction]
        assert len({(s.asha_grace, s.asha_max_t) for s in group}) == 1
        assert group[0].asha_max_t == steps[fraction]
    # keys name the budget as the spec gives it: the same trials with or without the data
    assert [t.trial_key for t in plan_trials(spec, domains)] == [t.trial_key for t in trials]


def test_planning_sizes_stand_in_for_the_data_until_it_is_read() -> None:
    data = copy.deepcopy(BASE)
    data["domains"]["digits-mlp"]["planning"] = {"train_examples": 3200}
    spec = parse_spec(data)
    trials = plan_trials(spec, resolve_domains(spec))
    full = [t for t in trials if t.fraction == 1.0]
    assert {t.stopping.max_steps for t in full} == {300}  # 10 epochs of 100 steps = 1000, capped at 300
    assert {t.stopping.eval_every for t in full} == {50} and {t.stopping.asha_grace for t in full} == {200}
    assert {t.train_size for t in full} == {None}  # the run fills the real sizes in


def test_step_budgets_keep_the_sweep_wide_rungs() -> None:
    spec = parse_spec(spec_of(max_steps=300, eval_every=50, grace_period=50))
    trials = plan_trials(spec, resolve_domains(spec))
    assert {(t.stopping.max_steps, t.stopping.asha_grace, t.stopping.asha_max_t) for t in trials} == {(300, None, None)}


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_steps", {"epoch": 3}, "must be a whole number of optimizer steps or one of {epochs: E}, {examples: N}"),
    ("max_steps", {"epochs": 3, "examples": 10}, "give exactly one of epochs, examples"),
    ("eval_every", {"epochs": 0.5, "min_steps": 9, "max_steps": 3}, "min_steps (9) must be <= max_steps (3)"),
    ("grace_period", {"epochs": 20}, "grace_period (20 epochs) must be <= max_steps (10 epochs"),
    ("grace_period", -5, "must be a positive number of steps"),
])
def test_bad_lengths_are_refused_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(spec_of(**{field: value}))
    assert "domains.digits-mlp.early_stopping" in str(err.value) and message in str(err.value)


def test_groups_take_their_own_grace_and_max_t() -> None:
    """Two shards of one sweep: each group's ASHA has the rungs of its own plan."""
    small = make_plan("small", fraction=0.125, stopping=TrialStopping(20, 2, asha_grace=4, asha_max_t=20))
    large = make_plan("large", fraction=1.0, stopping=TrialStopping(300, 50, asha_grace=100, asha_max_t=300))
    sched = GroupedASHAScheduler(GroupKey(("domain", "family", "fraction", "width")), metric="objective",
                                 mode="min", max_t=1000, grace_period=1, reduction_factor=2)
    for plan in (small, large):
        sched.on_trial_add(None, stub_trial(plan))
    rungs = {key: [r for r, _ in s._brackets[0]._rungs] for key, s in sched._groups.items()}
    assert sorted(rungs.values()) == [[16, 8, 4], [200, 100]]
    assert asha_rungs(4, 20, 2) == [4, 8, 16] and asha_rungs(100, 300, 2) == [100, 200]


def test_plan_prints_budgets_rungs_spans_and_rules(tmp_path: Path) -> None:
    spec = parse_spec(BASE)
    domains, prepared = prepared_digits(tmp_path, spec)
    text = format_plan(plan_trials(spec, domains, prepared), domains, prepared)
    full = next(line for line in text.splitlines() if line.startswith("digits-mlp") and " 1 " in line)
    # 1,348 training digits, 32 a step: 10 epochs capped at 300 steps = 7.12 epochs; evaluated every 22 steps
    assert full.split()[-4:-1] == ["300", "7.12", "0.522"]
    assert "digits-mlp/mlp: data 0.125-1 = 0.90 decades; params" in text
    assert "paper rules: all hold" in text  # no paper reference for this domain: only the epoch rule applies


def test_planning_sizes_name_known_families() -> None:
    data = copy.deepcopy(BASE)
    data["domains"]["digits-mlp"]["planning"] = {"train_examples": {"mlp": 100, "cnn": 5}}
    with pytest.raises(SpecError, match=r"planning.train_examples: unknown families \['cnn'\]; allowed: mlp"):
        parse_spec(data)
    data["domains"]["digits-mlp"]["planning"] = {"train_examples": -3}
    with pytest.raises(SpecError, match=r"planning.train_examples: .*examples must be positive"):
        parse_spec(data)
