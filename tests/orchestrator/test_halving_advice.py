"""The pre-start warning that async ASHA will judge a group's configurations a few at a time."""

from __future__ import annotations

from orchestrator.contract import TrialPlan
from orchestrator.halving_advice import async_halving_warning, configurations_per_group, places_for
from tests.orchestrator.plans import make_plan

GROUP_BY = ("domain", "family", "fraction", "width")


def grid(configs: int, seeds: int = 1, fraction: float = 1.0, **overrides: object) -> list[TrialPlan]:
    return [make_plan(f"f{fraction}-c{c}-s{s}", config_key=f"f{fraction}-c{c}", fraction=fraction, seed=s,
                      **overrides)
            for c in range(configs) for s in range(seeds)]


def test_groups_count_configurations_not_seeds() -> None:
    trials = grid(3, seeds=2) + grid(2, fraction=0.5)
    assert configurations_per_group(trials, GROUP_BY) == {("lm", "word", 1.0, 8): 3, ("lm", "word", 0.5, 8): 2}
    assert configurations_per_group(trials, ("domain",)) == {("lm",): 5}


def test_places_count_every_worker_and_the_scarcest_resource() -> None:
    one_cpu = make_plan()
    assert places_for(one_cpu, {"CPU": 8.0}) == 8
    assert places_for(one_cpu, {"CPU": 8.0}, max_concurrent=3) == 3
    gpu = make_plan(resources={"cpu": 4.0, "gpu": 1.0})
    assert places_for(gpu, {"CPU": 16.0, "GPU": 8.0}) == 4  # CPUs run out first
    assert places_for(make_plan(resources={"cpu": 2.0, "gpu": 0.5}, workers=2), {"CPU": 16.0, "GPU": 2.0}) == 2
    assert places_for(gpu, {"CPU": 16.0}) == 0  # no GPU node yet


def test_warning_names_the_setting_only_when_a_group_outnumbers_its_places() -> None:
    trials = grid(6) + grid(2, fraction=0.5)
    warning = async_halving_warning(trials, GROUP_BY, {"CPU": 2.0}, None)
    assert warning is not None
    assert "1 of 2 ASHA groups" in warning and "up to 6" in warning and "lm/word/1.0/8" in warning
    assert "the 2 that can train at once" in warning and "early_stopping.synchronous: true" in warning
    assert async_halving_warning(trials, GROUP_BY, {"CPU": 6.0}, None) is None  # every group trains at once
    assert async_halving_warning(trials, GROUP_BY, {"CPU": 6.0}, 4) is not None  # max_concurrent_trials caps it
    assert async_halving_warning(grid(2, seeds=3), GROUP_BY, {"CPU": 6.0}, None) is None
    assert async_halving_warning(grid(3, seeds=3), GROUP_BY, {"CPU": 6.0}, None) is not None  # seeds train too
    assert async_halving_warning(trials, GROUP_BY, {"GPU": 0.0}, None) is None  # nothing started: cannot judge
    assert async_halving_warning([], GROUP_BY, {"CPU": 2.0}, None) is None
