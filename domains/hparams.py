"""Hyperparameters from a spec to a typed dataclass, checked the same way in every domain.

A spec's hparams are YAML values: ``lr: 1e-3`` comes in as a string (YAML 1.1), ``layers: 2.0`` as a float,
``augment: "false"`` as a string. Each value is coerced to the type of its family default, and
names the family does not know or values of the wrong kind fail with the name and what is allowed, before
any trial starts (``Domain.validate_hparams`` runs these during planning).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

import torch

from domains.base import declare

T = TypeVar("T")
H = TypeVar("H", bound="HParams")


def coerce(what: str, name: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``: bools must be bools, numbers may come as numeric strings
    (PyYAML reads ``1e-3`` as a string), ints must be whole."""
    kind = type(default)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{what} hyperparameter {name} must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (kind is int and not number.is_integer()):
            article = "an integer" if kind is int else "a number"
            raise ValueError(f"{what} hyperparameter {name} must be {article}, got {value!r}")
        return kind(number)
    if not isinstance(value, kind):
        raise ValueError(f"{what} hyperparameter {name} must be a {kind.__name__}, got {value!r}")
    return value


def resolve_hparams(cls: type[T], what: str, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> T:
    """``cls`` built from ``defaults`` overridden by ``given``, each value coerced to its default's type.

    ``what`` names the family in errors (e.g. ``"NMT transformer"``); range checks stay with each domain."""
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {what} hyperparameters {sorted(unknown)}; known: {sorted(defaults)}")
    accepted = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {name: coerce(what, name, given.get(name, default), default)
              for name, default in defaults.items() if name in accepted}
    return cls(**values)


def one_of(names: tuple[str, ...]) -> str:
    """``'a', 'b' or 'c'``: the allowed values of a named choice, for error messages."""
    quoted = [repr(n) for n in names]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


@dataclass(frozen=True)
class HParams:
    """One family's hyperparameters, declared once: a frozen dataclass whose field defaults are the family's
    defaults and whose field types are what a spec's values are coerced to. Every family subclasses it.

    The shared optimizer knobs live here; a family adds its own fields (and may redeclare a default), names its
    label ``what`` for error messages and adds range checks in ``check``. An optional knob the shared loop honours
    when a family declares it: ``clip`` (gradient-norm clipping, <= 0: none).

    The learning-rate schedule (``lr_at``) is shared too: a linear warm-up over ``warmup_steps``, then ``schedule``
    decays the rate to ``lr_floor`` × ``lr`` at ``decay_steps``. ``decay_steps`` 0 means "the trial's budget": the
    planner fills in the family's ``early_stopping.max_steps`` (``orchestrator.plan``); a task built without a
    plan (0 left) keeps the peak rate after warm-up. Cosine is the default because a constant rate's minimum is
    limited by optimizer noise, most at the largest shards: on the quickstart (seed 0, one run each) the largest
    shard's best value was, cosine against constant, LM char 2.593 vs 2.625 bpc, LM word 4.193 vs 4.222 nats,
    image resnet 1.67% vs 1.95% top-1 error. ``wsd`` (warm-up, stable, decay: the peak rate until the last
    ``wsd_decay_fraction`` (0.2) of the span, then linear to the floor; Hägele et al. 2024) suits budgets too short
    to converge: until its decay it is the constant rate, so a trial still improving at its cap loses little, and it
    still anneals.
    On the quickstart's largest shards (``benchmarks/schedule_vs_constant.py``: mean over 3-5 seeds), wsd against
    constant: LM char 2.583 vs 2.675 bpc, word 4.164 vs 4.215, word_rhn 4.205 vs 4.285 nats, speech attention 0.431
    vs 0.457, ds2 0.393 vs 0.402 CER, NMT lstm 4.296 vs 4.312, transformer 4.340 vs 4.371 nats (320 steps), image
    1.56% vs 1.84% top-1 error. A decay only pays once a run nears its minimum: at 160 steps, its validation loss
    still falling 0.3 nats per 40 steps, the NMT lstm was 0.7% worse with wsd on every seed. Cosine was 8% and 27%
    worse than constant (one seed) on NMT lstm at 160 steps and ds2 at 300, far from convergence."""

    optimizer: str = "adam"  # one of ``optimizers``
    lr: float = 1e-3  # peak learning rate (after any warm-up)
    momentum: float = 0.0  # SGD momentum (Adam ignores it)
    weight_decay: float = 0.0  # L2 penalty as the optimizer applies it (decoupled for adamw)
    batch_size: int = 16  # examples per optimizer step, over all data-parallel replicas
    schedule: str = "cosine"  # one of ``schedules``: the decay after warm-up
    lr_floor: float = 0.1  # the rate at the end of the decay, as a fraction of ``lr``
    warmup_steps: int = 0  # linear warm-up from 0 over this many updates
    decay_steps: int = 0  # the update the decay reaches its floor; 0: the trial's max_steps (set by the planner)

    family: ClassVar[str] = ""  # the model family these belong to ("word", "resnet", ...)
    what: ClassVar[str] = "model"  # "LM word", "image resnet": names the family in errors
    optimizers: ClassVar[tuple[str, ...]] = ("adam", "sgd")
    schedules: ClassVar[tuple[str, ...]] = ("cosine", "linear", "wsd", "constant")
    # "wsd" decays over this last fraction of the span after warm-up (a class constant, not a field: a field would
    # enter every trial's key and make stores written before it rerun their trials)
    wsd_decay_fraction: ClassVar[float] = 0.2
    fused: ClassVar[bool] = False  # fused optimizer kernels (one kernel for all parameters)
    nesterov: ClassVar[bool] = False  # SGD with momentum uses Nesterov's update

    def __init_subclass__(cls, family: str | None = None, what: str | None = None, **kwargs: Any) -> None:
        """``class WordHParams(HParams, family="word", what="LM word")`` names the family where it is declared."""
        super().__init_subclass__(**kwargs)
        declare(cls, family=family, what=what)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The names a spec may set, with their defaults."""
        return {f.name: getattr(cls, f.name) for f in fields(cls)}

    @classmethod
    def resolve(cls: type[H], given: Mapping[str, Any]) -> H:
        """Defaults overridden by ``given``; unknown names and bad values raise ValueError naming them."""
        hp = resolve_hparams(cls, cls.what, cls.defaults(), given)
        hp.check()
        return hp

    def check(self) -> None:
        """Range checks; families extend them."""
        if self.optimizer not in self.optimizers:
            raise ValueError(f"{self.what.split()[0]} optimizer must be {one_of(self.optimizers)}, "
                             f"got {self.optimizer!r}")
        if self.schedule not in self.schedules:
            raise ValueError(f"{self.what} hyperparameter schedule must be {one_of(self.schedules)}, "
                             f"got {self.schedule!r}")
        if not 0.0 <= self.lr_floor <= 1.0:
            raise ValueError(f"{self.what} hyperparameter lr_floor must be a fraction of lr in [0, 1], "
                             f"got {self.lr_floor!r}")
        if self.warmup_steps < 0 or self.decay_steps < 0:
            raise ValueError(f"{self.what} hyperparameters warmup_steps and decay_steps must be >= 0, "
                             f"got {self.warmup_steps} and {self.decay_steps}")
        if self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"{self.what} hyperparameters out of range: {self}")

    @property
    def clip_norm(self) -> float:
        """Gradient-norm clipping threshold (<= 0: none)."""
        return float(getattr(self, "clip", 0.0))

    def cooldown_steps(self, step: int) -> int | None:
        """How long a cooldown started at update ``step`` lasts: the decay a wsd budget whose stable phase ended
        here would have had, ``wsd_decay_fraction`` / (1 − it) of the stable steps so far (at least 1). None when
        there is no stable phase to leave: another schedule (cosine and linear decay from the first step), no
        budget, still warming up, or wsd's own decay already begun.

        Why: patience stops a plateaued trial. Under wsd a plateau in the stable phase is the peak rate's noise
        floor, not the trial's minimum; its decay would lower it (benchmarks/asha_efficiency.py: 5.075 at
        patience's stop, 4.977 after the decay). Annealing before stopping records the minimum instead."""
        warmup, span, f = self.warmup_steps, self.decay_steps - self.warmup_steps, self.wsd_decay_fraction
        if self.schedule != "wsd" or span <= 0 or step < warmup or step >= warmup + span * (1 - f):
            return None
        return max(1, math.ceil((step - warmup) * f / (1 - f) - 1e-9))

    def lr_at(self, step: int, cooldown: tuple[int, int] | None = None) -> float:
        """The learning rate of update ``step`` (counting from 0): the one place a schedule is defined.

        ``cooldown`` (start, steps): from update ``start`` the rate falls linearly, as wsd's own decay does, from
        the scheduled rate at ``start`` to the floor at the last of ``steps`` updates, and stays there
        (``cooldown_steps``).

        A closed form of ``torch.optim.lr_scheduler``'s ``LinearLR(start_factor=1/warmup_steps)`` warm-up followed
        by ``CosineAnnealingLR(T_max=decay_steps - warmup_steps, eta_min=lr_floor * lr)`` (or ``LinearLR`` down to
        ``lr_floor``), held at the floor afterwards (tests/domains/test_schedules.py checks the two agree). A
        function of the global step, not a stateful scheduler: a restored task continues the same schedule from its
        restored step count, and every data-parallel replica computes the same rate."""
        if cooldown is not None and step >= cooldown[0]:
            start, length = cooldown
            left = self.lr_at(start)
            done = min(1.0, (step - start + 1) / length) if length > 0 else 1.0  # the last update at the floor
            return left + (self.lr * self.lr_floor - left) * done
        warmup = self.warmup_steps
        if warmup and step < warmup:
            return self.lr * (step + 1) / warmup
        span = self.decay_steps - warmup
        if self.schedule == "constant" or span <= 0:
            return self.lr
        if self.schedule == "wsd":  # warm-up, stable, decay: the peak rate until the last wsd_decay_fraction
            stable = span * (1 - self.wsd_decay_fraction)
            warmup, span = warmup + stable, span - stable
        done = min(1.0, max(0.0, (step - warmup) / span)) if span > 0 else 1.0
        fall = (1 + math.cos(math.pi * done)) / 2 if self.schedule == "cosine" else 1 - done
        return self.lr * (self.lr_floor + (1 - self.lr_floor) * fall)

    def optimizer_for(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """The family's optimizer over ``model``'s parameters."""
        extra = {"fused": True} if self.fused else {}
        if self.optimizer == "sgd":
            return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay, nesterov=self.nesterov and self.momentum > 0,
                                   **extra)
        cls = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        return cls(model.parameters(), lr=self.lr, weight_decay=self.weight_decay, **extra)
