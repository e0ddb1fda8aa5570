"""The ``strategy`` field: grid by default, adaptive with one target and exactly one budget unit."""

from __future__ import annotations

import pytest

from orchestrator.adaptive.spec import AdaptiveStrategy, GridStrategy
from orchestrator.spec import SpecError, parse_spec


def spec(**strategy: object) -> dict:
    out = {"name": "s", "storage": "/tmp/x", "domains": {"lm": {"data": {}, "families": ["word"],
                                                              "shards": [0.5, 1.0], "widths": [8]}}}
    if strategy:
        out["strategy"] = strategy
    return out


def test_grid_is_the_default_and_adaptive_parses() -> None:
    assert isinstance(parse_spec(spec()).strategy, GridStrategy)
    assert isinstance(parse_spec({**spec(), "strategy": "grid"}).strategy, GridStrategy)
    s = parse_spec(spec(kind="adaptive", target={"beta_g_halfwidth": 0.02, "beta_p_halfwidth": 0.1},
                        budget={"gpu_hours": 12}, extra_widths=[512])).strategy
    assert isinstance(s, AdaptiveStrategy)
    assert (s.budget.unit, s.budget.amount, s.target.beta_p_halfwidth, s.extra_widths) == ("gpu_hours", 12.0,
                                                                                           0.1, [512])
    assert s.describe(96) == ("strategy adaptive: the 96 trials below are the candidate pool; the sweep runs those its "
                              "policy picks, one at a time, until β_g's 95 % half-width <= 0.02 and β_p's <= 0.1 for "
                              "every family or 12 gpu_hours are spent")


@pytest.mark.parametrize(("strategy", "message"), [
    ({"kind": "adaptive", "target": {"beta_g_halfwidth": 0.02}, "budget": {}}, "exactly one budget unit; allowed: "
                                                                               "gpu_hours, flops, samples_params"),
    ({"kind": "adaptive", "target": {"beta_g_halfwidth": 0.02}, "budget": {"flops": 1e18, "gpu_hours": 2}},
     "got gpu_hours, flops"),
    ({"kind": "adaptive", "target": {"beta_g_halfwidth": -1}, "budget": {"flops": 1e18}},
     "strategy.adaptive.target.beta_g_halfwidth"),
    ({"kind": "bayes"}, "strategy"),
])
def test_bad_strategies_name_the_field(strategy: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        parse_spec(spec(**strategy))
