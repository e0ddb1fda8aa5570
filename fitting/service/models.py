"""Response models of the fitting service: the contract clients (and /docs) see.

Numbers that JSON cannot carry (NaN, ±inf) are sent as null: an interval bound of null means "unbounded"
(e.g. some bootstrap replicates never reach a target error), a statistic of null means "undefined".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Form = Literal["auto", "power", "floor"]


class Interval(BaseModel):
    """A bootstrap interval at the response's ``level`` (0.95); null bound = unbounded."""

    lo: float | None
    hi: float | None


class TrialCounts(BaseModel):
    """Stored trials by outcome. Only completed and stopped trials enter the fits."""

    completed: int = 0
    stopped: int = 0
    diverged: int = 0
    errored: int = 0
    other: int = Field(0, description="rows with a status the store does not define")
    total: int = 0


class ReferenceExponents(BaseModel):
    """The paper's exponents for this domain, family and metric (Hestness et al. 2017)."""

    beta_g: float
    beta_p: float | None
    source: str
    form: str = Field("power", description="the law the paper's β_g belongs to (a pure power law)")


class SizeRange(BaseModel):
    min: float
    max: float


class LearningCurve(BaseModel):
    """ε(m) = α·m^β_g (+ γ): the learning-curve law fitted to the best error per shard, in log space."""

    form: Literal["power", "floor"]
    form_reason: str = Field(description="why this form: requested, or the data's support for a floor (AIC)")
    alpha: float
    alpha_ci: Interval | None
    beta_g: float = Field(description="learning-curve exponent (negative: error falls with data)")
    beta_g_ci: Interval | None
    beta_g_power: float | None = Field(
        description="slope of a pure power law over the fitted shards, whatever the form: the paper's β_g")
    gamma: float | None = Field(description="irreducible error floor; null for the pure power law")
    gamma_ci: Interval | None
    r2: float | None = Field(description="R² of log error")
    rmse_log: float | None = Field(description="root mean square log residual")
    n_points: int
    size_range: SizeRange = Field(description="training sizes the fit used")
    excluded_sizes: list[float] = Field(description="smallest shards left out as small-data plateau")
    level: float
    interval_method: str
    n_boot: int


class ModelSize(BaseModel):
    """s(m) = σ·m^β_p: parameters of the best model per shard against training size."""

    beta_p: float
    beta_p_ci: Interval | None
    sigma: float
    sigma_ci: Interval | None
    r2: float | None
    n_points: int


class ShardPoint(BaseModel):
    """The best configuration at one shard (median over seeds of each trial's minimum)."""

    train_size: float
    fraction: float | None
    best_error: float
    best_width: int | None
    best_params: int | None
    config_key: str
    hparams: dict[str, Any]
    trial_keys: list[str]
    trial_ids: list[str] = Field(description="Ray Tune trial ids of the best configuration's seeds")
    seeds: list[int]
    n_trials: int = Field(description="usable trials at this shard, all configurations")
    n_configs: int
    role: Literal["fitted", "plateau", "non_positive", "unfitted"] = Field(
        description="fitted; left out as small-data plateau; left out for error ≤ 0; or no fit was possible")
    best_params_non_embedding: int | None = Field(
        None, description="parameters of the best configuration without embeddings; null in older stores")
    trial_converged: list[bool | None] = Field(
        default_factory=list, description="per trial of trial_keys: false = still improving at its budget cap, "
        "true = plateaued, null = unknown (early-stopped by ASHA, or stored before convergence was recorded)")
    not_converged: bool | None = Field(
        None, description="the best configuration was still improving at its budget cap: the error is too high")
    width_at_edge: bool | None = Field(
        None, description="the best width is the largest or smallest at this shard: β_p is censored (null: one "
        "width here)")
    width_edge: Literal["largest", "smallest"] | None = None
    hparam_at_edge: dict[str, Literal["low", "high"]] = Field(
        default_factory=dict, description="searched numeric hyperparameters whose best value is at the edge of "
        "the values tried at this shard")


class Diagnostics(BaseModel):
    """Can the points be trusted: counts over the shards the fit used (all shards when there is no fit)."""

    n_points: int
    not_converged: int = Field(description="shards whose best configuration was still improving at its cap")
    convergence_unknown: int = Field(description="shards whose best configuration's convergence is unknown")
    width_at_largest: int = Field(description="shards whose best width is the grid's largest (β_p censored)")
    width_at_smallest: int
    hparam_at_edge: dict[str, int] = Field(description="hyperparameter -> shards with its best value at an edge")
    trials_converged: int
    trials_not_converged: int
    trials_unknown: int
    warnings: list[str] = Field(description="one line per problem, with the fix")


class ExtrapolationCheck(BaseModel):
    """The fit without the largest shard, asked to predict it: how far off a real extrapolation is."""

    held_out_size: float
    measured: float
    predicted: float
    interval: Interval | None
    log_error: float | None = Field(description="log(predicted / measured)")
    within_interval: bool | None
    n_points: int
    beta_g: float | None
    form: str | None


class Backtest(BaseModel):
    """The extrapolation refitted without the largest ``held_out`` shards, read at the largest of them."""

    held_out: int
    n_fit: int = Field(description="shards the reduced fit used")
    size_ratio: float = Field(description="largest held-out size / largest size fitted: how far it extrapolated")
    size: float
    measured: float
    predicted: float
    interval: Interval | None = Field(description="prediction interval at ``level``")
    level: float
    log_error: float | None = Field(description="ln(predicted / measured) at the largest held-out shard")
    inside: bool = Field(description="the measurement fell inside the prediction interval")
    rmse_log: float | None = Field(description="RMSE of log error over every held-out shard")
    n_inside: int = Field(description="held-out shards inside their prediction intervals")
    power_beta: float | None = Field(None, description="the plain power-law slope (log-log least squares) of the "
                                                        "shards the reduced fit used: how the exponent moves as the "
                                                        "largest shards are held out")


class FamilyCurve(BaseModel):
    """Everything fitted for one model family of a domain."""

    family: str
    metric: str
    metric_unit: str | None = Field(description="inferred from the metric name; null when unknown")
    size_unit: str | None
    fit: LearningCurve | None = Field(description="null when too few shards; see reason")
    reason: str | None
    model_size: ModelSize | None
    model_size_non_embedding: ModelSize | None = Field(
        description="the best-size law on parameters without embeddings (null: see model_size_non_embedding_reason)")
    model_size_non_embedding_reason: str | None
    points: list[ShardPoint]
    diagnostics: Diagnostics | None = Field(description="convergence and grid edges of the shard points")
    reference: ReferenceExponents | None
    extrapolation_check: ExtrapolationCheck | None
    extrapolation_reason: str | None
    backtest: list[Backtest] = Field(
        description="the fit repeated without the largest 1, 2 and 3 shards (when ≥ 3 remain), judged on them")
    prediction_method: str | None = Field(description="how predictions and their intervals are made")
    trials: TrialCounts
    n_usable: int = Field(description="trials with a finite value of the metric that entered the aggregation")
    n_ignored: int
    notes: list[str]
    fit_seconds: float = Field(description="time the fit and its check took when computed (then cached)")


class DomainCurves(BaseModel):
    """GET /curves/{domain}: per family the fitted laws, their points and a held-out check."""

    domain: str
    form: Form
    metrics: list[str] = Field(description="metric names the domain's rows report (values for ?metric=)")
    families: list[FamilyCurve]
    trials: TrialCounts
    updated_at: datetime | None = Field(description="newest results file of the domain")
    warnings: list[str] = Field(description="store files skipped as unreadable")


class FamilySummary(BaseModel):
    family: str
    trials: TrialCounts
    metric: str | None = Field(description="primary metric (fitted by default)")
    size_unit: str | None
    updated_at: datetime | None


class DomainSummary(BaseModel):
    domain: str
    trials: TrialCounts
    families: list[FamilySummary]
    metrics: list[str]
    updated_at: datetime | None
    url: str


class StoreOverview(BaseModel):
    """GET /curves: what the store holds, by domain."""

    domains: list[DomainSummary]
    files: int
    unreadable_files: int
    refreshed_at: datetime | None
    warnings: list[str]


class FamilyPrediction(BaseModel):
    """One family's answer: the training size (and model size) for a target error, or the error at a size."""

    family: str
    metric: str
    metric_unit: str | None
    size_unit: str | None
    given: Literal["target_error", "train_size"]
    train_size: float | None = Field(description="given, or needed (null: the target is at or below the floor)")
    train_size_ci: Interval | None
    error: float | None = Field(description="given target, or predicted error")
    error_ci: Interval | None
    best_params: float | None = Field(description="best model size (parameters) at train_size")
    best_params_ci: Interval | None
    reachable: bool | None = Field(description="for a target error: whether the fitted curve reaches it")
    extrapolation: bool | None = Field(description="train_size lies beyond the largest fitted shard")
    reason: str | None = Field(description="why there is no prediction")
    level: float


class Predictions(BaseModel):
    """GET /curves/{domain}/predict."""

    domain: str
    form: Form
    predictions: list[FamilyPrediction]
    warnings: list[str]


class Health(BaseModel):
    status: Literal["ok"]
    ready: bool = Field(description="the store has been indexed once")
    files: int
    unreadable_files: int
    refreshed_at: datetime | None


class NotFound(BaseModel):
    detail: dict[str, Any] = Field(description="message and the known names")
