"""Response models of the surface, optimal and compare endpoints (issue 15); shared ones come from ``models``.

Numbers JSON cannot carry (NaN, ±inf) are null, as everywhere in the service: a null interval bound is unbounded.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from fitting.service.models import Interval

SurfaceForm = Literal["auto", "additive", "interaction"]


class FrontierModel(BaseModel):
    """The compute-optimal allocation over the compute the sweep spent (C = k·N·D)."""

    compute: list[float] = Field(description="training FLOPs (measured, or 6·N·D: see compute_source)")
    n_opt: list[float] = Field(description="compute-optimal parameters at each compute")
    n_opt_band: list[Interval | None]
    d_opt: list[float] = Field(description="compute-optimal train size (size units) at each compute")
    d_opt_band: list[Interval | None]
    loss: list[float] = Field(description="the surface's error at the optimal split")
    loss_band: list[Interval | None]
    inside: list[bool] = Field(description="the optimal (N, D) lies within the swept sizes")
    n_exponent: float = Field(description="N_opt ∝ C^n_exponent (least squares over the compute range)")
    n_exponent_ci: Interval | None
    d_exponent: float = Field(description="D_opt ∝ C^d_exponent (= 1 − n_exponent)")
    d_exponent_ci: Interval | None
    notes: list[str]


class FamilySurface(BaseModel):
    """L(N, D) of one family fitted to every (shard, model size) cell, with what follows from it."""

    family: str
    metric: str
    size_unit: str | None
    fitted: bool
    reason: str | None = Field(description="why there is no surface")
    form: Literal["additive", "interaction"] | None = Field(
        description="additive: E + A/N^a + B/D^b; interaction: + C·N^c/D^d (the cost of size on little data)")
    form_reason: str
    held_out: dict[str, float | None] = Field(description="held-out Huber loss per cell of each form (auto)")
    params: dict[str, float | None] = Field(description="E, A, a, B, b (, C, c, d) in original units")
    params_ci: dict[str, Interval | None]
    beta_p: float | None = Field(description="N_opt(D) ∝ D^β_p: a continuous estimate of the paper's β_p")
    beta_p_ci: Interval | None
    beta_p_reason: str | None
    rmse_log: float | None
    r2: float | None
    n_cells: int
    n_shards: int
    n_widths: int
    n_trials: int
    level: float
    n_boot: int
    interval_method: str
    compute_source: str = Field(description="measured FLOPs per parameter per sample, or the 6·N·D estimate")
    flops_per_param_sample: float | None
    frontier: FrontierModel | None
    notes: list[str]


class DomainSurface(BaseModel):
    """GET /curves/{domain}/surface."""

    domain: str
    form: SurfaceForm
    families: list[FamilySurface]
    warnings: list[str]


class FamilyOptimal(BaseModel):
    """The compute-optimal point of one family for a budget, or the least compute reaching a target error."""

    family: str
    metric: str
    fitted: bool
    reason: str | None
    compute: float | None = Field(description="given, or needed (null: the target is at or below the floor E)")
    compute_ci: Interval | None
    n_opt: float | None
    n_opt_ci: Interval | None
    d_opt: float | None
    d_opt_ci: Interval | None
    loss: float | None = Field(description="given target, or the error at the optimal split")
    loss_ci: Interval | None
    extrapolated: bool | None = Field(description="beyond the swept compute, model sizes or train sizes")
    compute_source: str
    level: float


class DomainOptimal(BaseModel):
    """GET /curves/{domain}/optimal."""

    domain: str
    given: Literal["compute", "target_error"]
    form: SurfaceForm
    families: list[FamilyOptimal]
    warnings: list[str]


class ComparisonModel(BaseModel):
    """GET /curves/{domain}/compare: family b against family a."""

    domain: str
    metric: str
    family_a: str
    family_b: str
    beta_a: float
    beta_b: float
    delta_beta: float = Field(description="β_g of b − β_g of a")
    delta_beta_ci: Interval | None
    p_value: float | None = Field(description="test of equal exponents (two-sided)")
    equal_rejected: bool = Field(description="p < 1 − level")
    test: str
    dof: int
    reference_size: float = Field(description="a's largest fitted shard")
    reference_error: float = Field(description="a's fitted error there")
    multiplier: float | None = Field(description="data b needs for that error ÷ reference_size (null: never)")
    multiplier_ci: Interval | None
    level: float
    shards_a: int
    shards_b: int
    sentence: str
    notes: list[str]
    warnings: list[str]
