"""The sweep spec: YAML validated with pydantic before Ray starts.

Everything a wrong spec can get wrong is caught here or in ``validate_against_domains`` — unknown fields,
bad shard fractions, hyperparameters a family does not accept, unknown domains or families, a data source
that does not validate — and reported as ``SpecError`` naming the field, the bad value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from orchestrator.adaptive.spec import GridStrategy, Strategy

GROUP_FIELDS = ("domain", "family", "fraction", "width", "config")


class SpecError(ValueError):
    """A spec that cannot run. The message names the field, the bad value and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShardRange(_Strict):
    """Shard fractions base**from_ … base**to, e.g. 2^-8 … 2^0 in factor-2 steps."""

    base: float = Field(2.0, gt=1.0)
    from_: int = Field(alias="from")
    to: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> ShardRange:
        if self.from_ > self.to:
            raise ValueError(f"'from' ({self.from_}) must be <= 'to' ({self.to})")
        if self.base**self.to > 1.0 + 1e-12:
            raise ValueError(f"base**to = {self.base ** self.to:g} exceeds 1 (the whole training set)")
        return self

    def fractions(self) -> list[float]:
        return [float(self.base**k) for k in range(self.from_, self.to + 1)]


class Grid(_Strict):
    """Every listed value is tried (a grid axis)."""

    grid: list[Any] = Field(min_length=1)


class Choice(_Strict):
    """One value drawn at random per configuration sample."""

    choice: list[Any] = Field(min_length=1)


class LogUniform(_Strict):
    """A value drawn log-uniformly in [low, high] per configuration sample."""

    loguniform: tuple[float, float]

    @field_validator("loguniform")
    @classmethod
    def _positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"needs 0 < low <= high, got {list(v)}")
        return v


class Uniform(_Strict):
    """A value drawn uniformly in [low, high] per configuration sample."""

    uniform: tuple[float, float]

    @field_validator("uniform")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] <= v[1]:
            raise ValueError(f"needs low <= high, got {list(v)}")
        return v


_SPACES: dict[str, type[BaseModel]] = {"grid": Grid, "choice": Choice, "loguniform": LogUniform,
                                       "uniform": Uniform}


def _hparam(value: Any) -> Any:
    """A plain value, or exactly one of the search-space forms; anything else gets one clear message."""
    if isinstance(value, BaseModel | bool | int | float | str):
        return value
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _SPACES:
        return _SPACES[next(iter(value))].model_validate(value)
    raise ValueError("must be a plain value (number, string, bool) or one of "
                     "{grid: [...]}, {choice: [...]}, {loguniform: [low, high]}, {uniform: [low, high]}")


HParam = Annotated[Any, BeforeValidator(_hparam)]


class Budget(_Strict):
    """A length given in epochs of the trial's shard or in training examples, turned into optimizer steps per
    trial once the shard's size is known (``orchestrator.plan``), so every shard gets the same number of passes
    over its data instead of the same number of steps. An example is one row of a batch: an image, a sentence
    pair, an utterance, one token of an LM's stream. ``min_steps`` / ``max_steps`` bound the steps."""

    epochs: float | None = Field(None, gt=0)
    examples: float | None = Field(None, gt=0)
    min_steps: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_unit(self) -> Budget:
        if (self.epochs is None) == (self.examples is None):
            raise ValueError("give exactly one of epochs, examples (and optionally min_steps, max_steps)")
        if self.min_steps is not None and self.max_steps is not None and self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) must be <= max_steps ({self.max_steps})")
        return self

    def steps(self, shard_examples: float, examples_per_step: float) -> int:
        """Optimizer steps for a shard of ``shard_examples`` read ``examples_per_step`` at a time (at least 1)."""
        examples = self.examples if self.epochs is None else self.epochs * shard_examples
        steps = max(1, math.ceil(examples / examples_per_step - 1e-9))
        if self.min_steps is not None:
            steps = max(steps, self.min_steps)
        if self.max_steps is not None:
            steps = min(steps, self.max_steps)
        return steps

    def describe(self) -> str:
        unit = f"{self.epochs:g} epochs" if self.epochs is not None else f"{self.examples:g} examples"
        bounds = [f">= {self.min_steps} steps"] if self.min_steps else []
        bounds += [f"<= {self.max_steps} steps"] if self.max_steps else []
        return unit + (f" ({', '.join(bounds)})" if bounds else "")


def _length(value: Any) -> Any:
    """Optimizer steps (a whole number) or a ``Budget`` mapping; anything else gets one clear message."""
    if isinstance(value, Budget) or (isinstance(value, int) and not isinstance(value, bool)):
        if isinstance(value, int) and value <= 0:
            raise ValueError("must be a positive number of steps")
        return value
    if isinstance(value, dict) and set(value) <= set(Budget.model_fields) and (
            "epochs" in value or "examples" in value):
        return Budget.model_validate(value)
    raise ValueError("must be a whole number of optimizer steps or one of {epochs: E}, {examples: N} (each with "
                     "optional min_steps, max_steps)")


Length = Annotated[int | Budget, BeforeValidator(_length)]


def _same_unit(a: int | Budget, b: int | Budget) -> bool:
    """Two lengths that can be compared before the shard's size is known."""
    if isinstance(a, int) or isinstance(b, int):
        return isinstance(a, int) and isinstance(b, int)
    return (a.epochs is None) == (b.epochs is None)


def _amount(x: int | Budget) -> float:
    return float(x) if isinstance(x, int) else float(x.epochs if x.epochs is not None else x.examples)


def _not_longer(small: int | Budget, large: int | Budget) -> bool:
    return not _same_unit(small, large) or _amount(small) <= _amount(large)


class EarlyStopping(_Strict):
    """Per-group ASHA plus each trial's own patience. ``max_steps`` (the budget), ``eval_every`` and
    ``grace_period`` are optimizer steps, or ``{epochs: E}`` / ``{examples: N}`` of the trial's shard with
    optional ``min_steps``/``max_steps`` bounds (``Budget``); ASHA's resource is always steps, set per group.
    Nothing stops a trial before its grace period, neither ASHA nor patience (also with ``enabled: false``): a
    high learning rate's first evaluations wander before they fall, and judged there the eventual best of a shard
    was stopped within its first 20 steps (``benchmarks/asha_efficiency.py``).

    ``synchronous: true`` decides each group's rungs by successive halving instead of async ASHA: a trial that
    reaches a rung pauses (its worker goes to other trials) until every configuration of its group has reached the
    rung or ended, then the best 1/reduction_factor go on. Choose it when a group has more configurations than the
    sweep has workers, where async ASHA judges each arrival on the few before it and promotes too many
    (``orchestrator.sync_halving``; the sweep warns when that is so and this is off). It needs the whole plan up
    front, so not with ``strategy: adaptive``. A paused data-parallel trial ends its Ray Train run and resumes
    from its checkpoint on a new one."""

    metric: str = "primary"  # "primary" = each family's primary metric; else a metric name all families report
    grace_period: Length = 100
    reduction_factor: float = Field(3.0, gt=1.0)
    brackets: int = Field(1, ge=1)
    max_steps: Length = 2000
    eval_every: Length = 50
    patience: int | None = Field(4, ge=1)  # evaluations without improvement before a trial stops itself
    min_delta: float = Field(0.0, ge=0.0)  # relative improvement that counts
    group_by: tuple[Literal["domain", "family", "fraction", "width", "config"], ...] = (
        "domain", "family", "fraction", "width")
    enabled: bool = True  # false: no ASHA (every trial runs to patience / max_steps)
    synchronous: bool = False  # true: successive halving inside each group (trials pause at rungs)

    @model_validator(mode="after")
    def _consistent(self) -> EarlyStopping:
        if not _not_longer(self.grace_period, self.max_steps):
            raise ValueError(f"grace_period ({_show(self.grace_period)}) must be <= max_steps "
                             f"({_show(self.max_steps)})")
        if not _not_longer(self.eval_every, self.max_steps):
            raise ValueError(f"eval_every ({_show(self.eval_every)}) must be <= max_steps ({_show(self.max_steps)})")
        return self

    def grace_steps(self) -> int:
        """ASHA's grace period when it is given in steps; 1 when it depends on the shard (set per group then)."""
        return self.grace_period if isinstance(self.grace_period, int) else 1


def _show(x: int | Budget) -> str:
    return str(x) if isinstance(x, int) else x.describe()


def _whole_gpus(v: float | None) -> float | None:
    if v is not None and v > 1 and not float(v).is_integer():
        raise ValueError(f"more than one GPU must be a whole number, got {v}")
    return v


class ResourceRule(_Strict):
    """Resources for trials from a model size upwards: the widest rule whose ``min_width`` fits applies."""

    min_width: int = Field(ge=1)
    cpu: float | None = Field(None, gt=0)
    gpu: float | None = Field(None, ge=0)
    workers: int | None = Field(None, ge=1)

    _packable = field_validator("gpu")(_whole_gpus)


class Resources(_Strict):
    """What one trial asks Ray for, by model width.

    Fractional ``gpu`` packs several small models on one GPU; ``rules`` give larger widths whole GPUs (and more
    CPUs for their data loaders). ``workers`` > 1 trains a model too big or slow for one GPU data-parallel on
    that many workers (a Ray Train run inside the trial), each with ``cpu`` and ``gpu``. On a cluster without
    GPUs the GPU requests are dropped (data-parallel workers then average gradients over gloo on CPU), so one
    spec runs on a laptop and on a GPU cluster unchanged.
    """

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    workers: int = Field(1, ge=1)
    rules: list[ResourceRule] = Field(default_factory=list)

    _packable = field_validator("gpu")(_whole_gpus)

    @model_validator(mode="after")
    def _one_gpu_per_worker(self) -> Resources:
        # NCCL runs one rank per GPU, and a task trains on one device: a data-parallel worker gets 0 or 1 GPU
        for where, width in [("", 0)] + [(f"rules[{i}] (min_width {r.min_width}): ", r.min_width)
                                          for i, r in enumerate(self.rules)]:
            request = self._request(width)
            if request["workers"] > 1 and request["gpu"] not in (0, 1):
                raise ValueError(f"{where}workers: {request['workers']} data-parallel workers need gpu 0 or 1 "
                                 f"each (one GPU per worker), got gpu {request['gpu']:g}")
        return self

    def _request(self, width: int) -> dict[str, float]:
        request = {"cpu": self.cpu, "gpu": self.gpu, "workers": self.workers}
        for rule in sorted(self.rules, key=lambda r: r.min_width):
            if width >= rule.min_width:
                request.update(rule.model_dump(include={"cpu", "gpu", "workers"}, exclude_none=True))
        return request

    def for_width(self, width: int) -> dict[str, float]:
        """The request of a trial of this width (per worker, for a data-parallel trial)."""
        request = self._request(width)
        return {"cpu": request["cpu"], "gpu": request["gpu"]}

    def workers_for(self, width: int) -> int:
        """How many data-parallel workers train a model of this width (1: the trial trains it alone)."""
        return int(self._request(width)["workers"])


class TrialStopping(_Strict):
    """Per-family overrides of when a trial stops itself (ASHA's rungs stay shared by the domain)."""

    max_steps: Length | None = None
    eval_every: Length | None = None
    patience: int | None = Field(None, ge=1)
    min_delta: float | None = Field(None, ge=0.0)


class FamilySpec(_Strict):
    """Per-family overrides of widths, hyperparameters and trial stopping (families differ in cost per step)."""

    widths: list[int] | None = None
    hparams: dict[str, HParam] = Field(default_factory=dict)
    early_stopping: TrialStopping = TrialStopping()


class Planning(_Strict):
    """What ``scaling-sweep plan`` assumes of data it has not read: the full training set in examples (a number
    for every family, or one per family: an LM's word and char families count words and characters), and hints
    the domain needs to build a model without its data (``planning_data``: e.g. image ``num_classes``). Runs use
    the prepared data's real sizes."""

    train_examples: float | dict[str, float] | None = None
    data: dict[str, Any] = Field(default_factory=dict)  # what the domain's model needs and its data section lacks

    @field_validator("train_examples")
    @classmethod
    def _positive(cls, v: float | dict[str, float] | None) -> float | dict[str, float] | None:
        values = v if isinstance(v, dict) else {"train_examples": v} if v is not None else {}
        bad = {k: n for k, n in values.items() if not n > 0}
        if bad:
            raise ValueError(f"examples must be positive; bad: {bad}")
        return v


class DomainSpec(_Strict):
    """One domain's part of the sweep."""

    data: dict[str, Any]
    families: list[str] | dict[str, FamilySpec] = Field(min_length=1)
    shards: list[float] | ShardRange
    widths: list[int] = Field(default_factory=list)
    hparams: dict[str, HParam] = Field(default_factory=dict)
    samples: int = Field(1, ge=1)  # random configurations drawn per (shard, width) when random params exist
    seeds: int = Field(1, ge=1)
    early_stopping: EarlyStopping = EarlyStopping()
    resources: Resources = Resources()
    planning: Planning | None = None

    @field_validator("shards")
    @classmethod
    def _fractions(cls, v: list[float] | ShardRange) -> list[float] | ShardRange:
        fractions = v.fractions() if isinstance(v, ShardRange) else v
        bad = [f for f in fractions if not (isinstance(f, float | int) and 0 < f <= 1 and math.isfinite(f))]
        if bad:
            raise ValueError(f"shard fractions must lie in (0, 1]; bad: {bad}")
        if not fractions:
            raise ValueError("at least one shard fraction is needed")
        if len(set(fractions)) != len(fractions):
            raise ValueError(f"shard fractions repeat: {sorted(fractions)}")
        return v

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        bad = [w for w in v if w <= 0]
        if bad:
            raise ValueError(f"widths must be positive integers; bad: {bad}")
        return v

    def fractions(self) -> list[float]:
        return sorted(self.shards.fractions() if isinstance(self.shards, ShardRange) else self.shards)

    def family_specs(self) -> dict[str, FamilySpec]:
        if isinstance(self.families, list):
            return {f: FamilySpec() for f in self.families}
        return dict(self.families)

    def widths_for(self, family: str) -> list[int]:
        return self.family_specs()[family].widths or self.widths

    def hparams_for(self, family: str) -> dict[str, HParam]:
        return {**self.hparams, **self.family_specs()[family].hparams}

    def stopping_for(self, family: str) -> dict[str, Any]:
        """The trial-level stopping rules of a family: the domain's, with the family's overrides (lengths in steps
        or as ``Budget``s)."""
        names = ("max_steps", "eval_every", "patience", "min_delta")
        own = self.family_specs()[family].early_stopping
        return {n: getattr(self.early_stopping, n) if getattr(own, n) is None else getattr(own, n) for n in names}

    def examples_for(self, family: str) -> float | None:
        """The full training set of ``family`` in examples as the spec's ``planning`` states it (None: unstated)."""
        given = self.planning.train_examples if self.planning is not None else None
        if isinstance(given, dict):
            return given.get(family)
        return given

    @model_validator(mode="after")
    def _family_stopping(self) -> DomainSpec:
        grace = self.early_stopping.grace_period
        for family in self.family_specs():
            stop = self.stopping_for(family)
            if not _not_longer(grace, stop["max_steps"]):
                raise ValueError(f"families.{family}.early_stopping.max_steps ({_show(stop['max_steps'])}) must be >= "
                                 f"early_stopping.grace_period ({_show(grace)})")
            if not _not_longer(stop["eval_every"], stop["max_steps"]):
                raise ValueError(f"families.{family}: eval_every ({_show(stop['eval_every'])}) must be <= "
                                 f"max_steps ({_show(stop['max_steps'])})")
        if self.planning is not None and isinstance(self.planning.train_examples, dict):
            unknown = sorted(set(self.planning.train_examples) - set(self.family_specs()))
            if unknown:
                raise ValueError(f"planning.train_examples: unknown families {unknown}; allowed: "
                                 f"{', '.join(self.family_specs())}")
        return self

    def max_steps(self) -> int:
        """The longest any trial of this domain may run when every budget is in steps (ASHA's default max_t; budgets
        in epochs or examples set max_t per group, and count here by their ``max_steps`` bound or 1)."""
        def steps(x: int | Budget) -> int:
            return x if isinstance(x, int) else (x.max_steps or 1)
        return max(max(steps(self.stopping_for(f)["max_steps"]) for f in self.family_specs()),
                   self.early_stopping.grace_steps())


class SweepSpec(_Strict):
    """A whole sweep: several domains, one storage, one Ray Tune run."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    storage: str
    domains: dict[str, DomainSpec] = Field(min_length=1)
    max_concurrent_trials: int | None = Field(None, ge=1)
    max_failures: int = Field(2, ge=0)  # retries per trial, each resuming from its last checkpoint
    seed: int = 0  # for random hyperparameter draws
    strategy: Strategy = GridStrategy()  # grid: every planned trial; adaptive: orchestrator.adaptive

    @model_validator(mode="after")
    def _synchronous_halving_fits(self) -> SweepSpec:
        synchronous = {n: d for n, d in self.domains.items()
                       if d.early_stopping.enabled and d.early_stopping.synchronous}
        if synchronous and self.strategy.kind == "adaptive":
            raise ValueError(f"domains {sorted(synchronous)}: early_stopping.synchronous needs every trial planned up "
                             "front; strategy adaptive picks them one at a time (use synchronous: false)")
        return self

    def storage_uri(self, base: Path | None = None) -> str:
        """Storage as an absolute path (relative paths resolve against the spec's folder) or a URI."""
        if "://" in self.storage:
            return self.storage
        path = Path(self.storage).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        return str(path.resolve())


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith(("function-", "list[", "dict[")) and
                    p not in {"Grid", "Choice", "LogUniform", "Uniform", "int", "float", "str", "bool",
                              "ShardRange", "Budget"})


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: ``field.path: message (got: value)``."""
    lines, seen = [], set()
    for err in exc.errors():
        where = _location(err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        key = (where, msg)
        if key in seen:
            continue
        seen.add(key)
        got = err.get("input")
        shown = repr(got)
        got_s = "" if err["type"] == "missing" or len(shown) > 80 else f" (got: {shown})"
        lines.append(f"  {where}: {msg}{got_s}")
    return f"invalid sweep spec {source}:\n" + "\n".join(lines)


def parse_spec(data: Mapping[str, Any], source: str = "<spec>") -> SweepSpec:
    """Validate a spec given as plain data."""
    if not isinstance(data, Mapping):
        raise SpecError(f"invalid sweep spec {source}: expected a mapping at the top level")
    try:
        return SweepSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source)) from None


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML spec file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"sweep spec {path} is not valid YAML: {exc}") from None
    return parse_spec(data, str(path))
