"""The ``strategy`` section of a sweep spec: ``grid`` (every planned trial, the default) or ``adaptive``.

An adaptive sweep names what it must know (``target``: the 95 % half-widths of β_g and optionally β_p) and what it
may spend (``budget``: exactly one unit). Kept apart from ``orchestrator.spec`` so the adaptive package owns its
own settings; ``SweepSpec.strategy`` only refers to ``Strategy``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

BUDGET_UNITS = ("gpu_hours", "flops", "samples_params")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Strict):
    """When a family is known well enough: the half-width of the 95 % interval of β_g (and of β_p if given)."""

    beta_g_halfwidth: float = Field(gt=0)
    beta_p_halfwidth: float | None = Field(None, gt=0)


class Budget(_Strict):
    """What the sweep may spend, in exactly one unit.

    ``gpu_hours``: each trial's wall time × the GPUs it holds (a CPU-only trial counts as one device);
    ``flops``: the trial's measured training FLOPs where the store has them, else 6 × parameters × samples;
    ``samples_params``: training samples consumed × parameters (the CPU proxy of FLOPs)."""

    gpu_hours: float | None = Field(None, gt=0)
    flops: float | None = Field(None, gt=0)
    samples_params: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_unit(self) -> Budget:
        given = [u for u in BUDGET_UNITS if getattr(self, u) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one budget unit; allowed: {', '.join(BUDGET_UNITS)} (got "
                             f"{', '.join(given) or 'none'})")
        return self

    @property
    def unit(self) -> str:
        return next(u for u in BUDGET_UNITS if getattr(self, u) is not None)

    @property
    def amount(self) -> float:
        return float(getattr(self, self.unit))


class AdaptiveStrategy(_Strict):
    """``strategy: {kind: adaptive, target: {...}, budget: {...}}``: trials are chosen from the planned grid one at
    a time by ``orchestrator.adaptive.policy``; the grid's trial keys stay the store's keys."""

    kind: Literal["adaptive"]
    target: Target
    budget: Budget
    initial_shards: int = Field(4, ge=3)  # the first design: this many shards spread over the whole range
    # a target counts as met only with this many shard points: with few points the t interval's own scale is so
    # noisy that stopping at the first narrow one picks the lucky ones (synthetic law: 4 points, a miss in 7)
    min_points: int = Field(5, ge=3)
    extra_widths: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)  # tried only past an edge
    form: Literal["auto", "power", "floor"] = "auto"  # the learning-curve form whose interval is the target
    n_boot: int = Field(200, ge=50)  # interval draws per refit

    def describe(self, candidates: int) -> str:
        """What ``scaling-sweep plan`` says above the trial table: it lists the pool, not what will run."""
        target = f"β_g's 95 % half-width <= {self.target.beta_g_halfwidth:g}"
        if self.target.beta_p_halfwidth is not None:
            target += f" and β_p's <= {self.target.beta_p_halfwidth:g}"
        return (f"strategy adaptive: the {candidates} trials below are the candidate pool; the sweep runs those its "
                f"policy picks, one at a time, until {target} for every family or {self.budget.amount:g} "
                f"{self.budget.unit} are spent")


class GridStrategy(_Strict):
    """Every planned trial (the default)."""

    kind: Literal["grid"] = "grid"


def _tagged(value: object) -> object:
    """``strategy: grid`` is short for ``{kind: grid}``."""
    return {"kind": value} if isinstance(value, str) else value


Strategy = Annotated[GridStrategy | AdaptiveStrategy, BeforeValidator(_tagged), Field(discriminator="kind")]
