"""Budgets per shard: the spec's lengths (steps, or epochs / examples of the trial's shard) in optimizer steps.

Every shard of a learning curve must be trained to its minimum, so a budget in steps (the same for every shard)
over-trains small shards and under-trains large ones; a budget in epochs gives each shard the same number of
passes. The evaluation interval and ASHA's grace period scale the same way, so a small shard is evaluated within
its first epoch. ASHA's resource stays optimizer steps, set per group (one shard) by ``orchestrator.plan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from domains.base import Domain
from orchestrator.spec import Budget, DomainSpec


@dataclass(frozen=True)
class ShardBudget:
    """A trial's lengths in optimizer steps on its shard, and the sizes they came from (``shard_examples`` None:
    the shard's size is unknown, so budgets in epochs or examples are only placeholders)."""

    max_steps: int
    eval_every: int
    grace: int
    examples_per_step: float
    shard_examples: float | None

    @property
    def known(self) -> bool:
        return self.shard_examples is not None

    def epochs(self, steps: float) -> float:
        """``steps`` as passes over the shard (nan when its size is unknown)."""
        return steps * self.examples_per_step / self.shard_examples if self.shard_examples else math.nan


def _steps(length: int | Budget, shard_examples: float | None, per_step: float) -> int:
    if isinstance(length, int):
        return length
    if shard_examples is None:  # placeholder until the data is known: plan_trials is called again then
        return length.min_steps or length.max_steps or 1
    return length.steps(shard_examples, per_step)


def shard_budget(dspec: DomainSpec, plugin: Domain, family: str, fraction: float, hparams: Mapping[str, Any],
                 prepared: Any | None = None) -> ShardBudget:
    """The steps of one trial: lengths in epochs or examples of its shard (the prepared data's real size, else the
    spec's ``planning.train_examples``) divided by the examples a step reads under ``hparams``."""
    stop = dspec.stopping_for(family)
    per_step = float(plugin.examples_per_step(family, hparams))
    if prepared is not None:
        examples: float | None = float(plugin.shard_examples(prepared, fraction, family))
    else:
        full = dspec.examples_for(family)
        examples = full * fraction if full is not None else None
    max_steps = _steps(stop["max_steps"], examples, per_step)
    eval_every = min(_steps(stop["eval_every"], examples, per_step), max_steps)
    grace = min(_steps(dspec.early_stopping.grace_period, examples, per_step), max_steps)
    return ShardBudget(max_steps, eval_every, grace, per_step, examples)


def asha_rungs(grace: int, max_t: int, reduction_factor: float) -> list[int]:
    """The steps at which ASHA (one bracket) compares a group's configurations: grace × rf^k below max_t."""
    count = int(np.log(max_t / grace) / np.log(reduction_factor) + 1)
    return [round(grace * reduction_factor**k) for k in range(count) if grace * reduction_factor**k < max_t]


