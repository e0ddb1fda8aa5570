"""Synchronous successive halving inside one group: no configuration passes a rung until every configuration of
the group has reached it (or ended), then the best 1/reduction_factor of those that reached it go on.

Why: async ASHA judges each configuration against those that reached the rung before it. With fewer workers than
configurations in a group, as in any sweep of many shards × widths × configurations on a few machines, a group's
configurations arrive one or two at a time: early arrivals pass on thin evidence (the first arrival at a rung
always passes), and one passed is never stopped at that rung again. On ``benchmarks/asha_efficiency.py`` (24
configurations a shard, 2 workers, rungs from step 50, reduction factor 4, seeds 0 and 1) async ASHA spent 31.1% and
31.5% of the no-stopping compute, successive halving on the same rungs 24.3% and 23.6%, both keeping every shard's
best configuration. Waiting costs the sweep little: a trial paused at a rung frees its worker for other
groups' trials, and it resumes from the checkpoint it reported there.

This module holds the decisions only; ``orchestrator.group_asha`` pauses, resumes and stops Tune's trials."""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class HalvingGroup:
    """One group's rungs. A configuration (``unit``) is recorded at a rung once it reached the rung's step, or
    ``end``\\ s (its budget, its patience or an error) before it; when every configuration the rung waits for is
    one or the other, the rung is decided: the best ``ceil(n / reduction_factor)`` of the n recorded go on
    (at least one), the others stop. Rung 0 waits for all ``size`` configurations of the group, rung k > 0 for
    those rung k - 1 passed. Lower values are better."""

    milestones: list[int]
    size: int  # configurations planned in the group
    reduction_factor: float
    level: dict[Hashable, int] = field(default_factory=dict)  # configuration -> rungs it has passed
    recorded: list[dict[Hashable, float]] = field(default_factory=list)  # per rung: configuration -> its value
    ended: list[set[Hashable]] = field(default_factory=list)  # per rung: configurations that ended before it
    passed: list[set[Hashable] | None] = field(default_factory=list)  # per rung: None until decided
    finished: set[Hashable] = field(default_factory=set)  # configurations that ended (they train no more)
    stopped: set[Hashable] = field(default_factory=set)  # configurations a rung stopped

    def __post_init__(self) -> None:
        n = len(self.milestones)
        self.recorded = self.recorded or [{} for _ in range(n)]
        self.ended = self.ended or [set() for _ in range(n)]
        self.passed = self.passed or [None] * n

    def pending_rung(self, unit: Hashable) -> int | None:
        """The rung the configuration must reach next (None: past the last rung, or stopped)."""
        level = self.level.setdefault(unit, 0)
        return level if level < len(self.milestones) and unit not in self.stopped else None

    def record(self, unit: Hashable, value: float) -> None:
        """The configuration reached its pending rung with ``value`` (a NaN, a diverged run, ranks last)."""
        rung = self.pending_rung(unit)
        if rung is not None and unit not in self.recorded[rung]:
            self.recorded[rung][unit] = value if not math.isnan(value) else math.inf

    def end(self, unit: Hashable) -> None:
        """The configuration trains no more: its pending rung need not wait for it."""
        self.finished.add(unit)
        rung = self.pending_rung(unit)
        if rung is not None and unit not in self.recorded[rung]:
            self.ended[rung].add(unit)

    def waiting(self, unit: Hashable) -> bool:
        """Recorded at its pending rung, which is not decided yet: the configuration must wait."""
        rung = self.pending_rung(unit)
        return rung is not None and unit in self.recorded[rung] and self.passed[rung] is None

    def decide(self) -> tuple[set[Hashable], set[Hashable]]:
        """Decide every rung that has all it waits for: (configurations passed, configurations stopped)."""
        went_on: set[Hashable] = set()
        cut: set[Hashable] = set()
        for rung in range(len(self.milestones)):
            if self.passed[rung] is not None or not self._complete(rung):
                continue
            recorded = self.recorded[rung]
            keep = max(1, math.ceil(len(recorded) / self.reduction_factor - 1e-9)) if recorded else 0
            ranked = sorted(recorded, key=lambda u: (recorded[u], str(u)))
            self.passed[rung] = set(ranked[:keep])
            for unit in ranked[keep:]:
                self.stopped.add(unit)
                cut.add(unit)
            for unit in ranked[:keep]:
                self.level[unit] = rung + 1
                went_on.add(unit)
                if unit in self.finished and rung + 1 < len(self.milestones):
                    self.ended[rung + 1].add(unit)
        return went_on - cut, cut

    def _complete(self, rung: int) -> bool:
        accounted = len(self.recorded[rung]) + len(self.ended[rung])
        if rung == 0:
            return accounted >= self.size
        before = self.passed[rung - 1]
        return before is not None and before <= set(self.recorded[rung]) | self.ended[rung]
