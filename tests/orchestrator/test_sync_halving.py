"""Synchronous successive halving inside a group: the textbook decisions, whatever order configurations arrive in."""

from __future__ import annotations

import math
import random

from orchestrator.sync_halving import HalvingGroup


def halving_by_hand(curves: dict[str, list[float]], milestones: list[int], rf: float) -> dict[str, int]:
    """Successive halving written out: at each rung the best ceil(n / rf) of those there go on. Returns the
    rung index each configuration stopped at (len(milestones): ran to its budget)."""
    alive, stopped_at = sorted(curves), {}
    for rung in range(len(milestones)):
        ranked = sorted(alive, key=lambda u: curves[u][rung])
        keep = max(1, math.ceil(len(ranked) / rf))
        for u in ranked[keep:]:
            stopped_at[u] = rung
        alive = ranked[:keep]
    return {**stopped_at, **dict.fromkeys(alive, len(milestones))}


def replay(group: HalvingGroup, curves: dict[str, list[float]], order: list[str]) -> dict[str, int]:
    """Drive the group as the scheduler does, one configuration at a time in ``order``: each runs until it must
    wait, then the next one runs; a passed configuration runs on from where it paused."""
    stopped_at: dict[str, int] = {}
    queue = list(order)
    while queue:
        unit = queue.pop(0)
        while True:
            rung = group.pending_rung(unit)
            if unit in group.stopped:
                stopped_at[unit] = group.level[unit]
                break
            if rung is None:
                stopped_at[unit] = len(group.milestones)
                break
            group.record(unit, curves[unit][rung])
            passed, cut = group.decide()
            queue.extend(u for u in passed if u != unit)  # they were paused: resume them
            stopped_at.update((u, group.level[u]) for u in cut)
            if group.waiting(unit):
                break
    return stopped_at


def test_decisions_are_successive_halving_in_any_arrival_order() -> None:
    rng = random.Random(0)
    milestones, rf = [10, 40, 160], 4
    curves = {f"c{i}": sorted((rng.uniform(1, 5) for _ in milestones), reverse=True) for i in range(12)}
    expected = halving_by_hand(curves, milestones, rf)
    assert sorted(expected.values()) == [0] * 9 + [1, 1] + [3]  # 12 -> 3 -> 1 -> 1 ran to its budget
    for seed in range(5):
        order = sorted(curves, key=lambda _: rng.random())
        got = replay(HalvingGroup(milestones, size=12, reduction_factor=rf), curves, order)
        assert got == expected, f"arrival order {seed}"


def test_a_rung_waits_for_every_configuration_of_the_group() -> None:
    group = HalvingGroup([10, 40], size=3, reduction_factor=2)
    group.record("a", 1.0)
    assert group.decide() == (set(), set()) and group.waiting("a")
    group.record("b", 3.0)
    assert group.decide() == (set(), set()) and group.waiting("b")
    group.record("c", 2.0)
    assert group.decide() == ({"a", "c"}, {"b"})  # ceil(3 / 2) = 2 go on
    assert not group.waiting("a") and group.pending_rung("a") == 1 and group.pending_rung("b") is None


def test_configurations_that_end_before_a_rung_do_not_hold_it_up() -> None:
    group = HalvingGroup([10, 40], size=3, reduction_factor=2)
    group.record("a", 2.0)
    group.end("b")  # patience stopped it before step 10: nothing to wait for
    group.record("c", 1.0)
    assert group.decide() == ({"c"}, {"a"})  # ceil(2 / 2): the best of the two that reached the rung
    # a configuration that ends after passing a rung is not waited for at the next one
    group.end("c")
    assert group.pending_rung("c") == 1 and group.decide() == (set(), set())
    assert group.passed[1] == set()  # decided, with nobody there


def test_a_diverged_configuration_ranks_last() -> None:
    group = HalvingGroup([10], size=2, reduction_factor=2)
    group.record("nan", math.nan)
    group.record("ok", 9.0)
    assert group.decide() == ({"ok"}, {"nan"})
