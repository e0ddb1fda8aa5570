"""The domain plugin interface: everything the orchestrator needs from a data + model family.

A domain is registered under the entry-point group ``scaling_sweep.domains`` and is used in three places:

* on the driver, before any trial starts: ``source_model`` validates the spec's ``data`` section and
  ``hparam_defaults`` names the hyperparameters a family accepts (unknown ones are spec errors);
  ``prepare`` then reads the raw data once per sweep (tokenizer, vocabulary, tensors), cached on disk;
* inside each trial: ``build_task`` builds the model for a (family, width, hyperparameters, seed) on the
  nested training shard of the requested fraction, and the returned ``Task`` trains and evaluates;
* in the results: ``train_size`` gives the shard size in the domain's natural unit (words, images, hours).

The orchestrator never imports a concrete domain; it only talks to this interface.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
Share = Callable[[Any], Any]  # Task.rank_share: a batch (array, tensor or list) -> this replica's part of it


Paths = str | list[str]  # a data section's file, folder, glob or prefix, or a list of them


class SourceModel(BaseModel):
    """Base of a domain's ``data`` section (``Domain.source_model``): unknown keys are spec errors, and a parsed
    section never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def declare(cls: type, **values: Any) -> None:
    """Set the class attributes given as class keywords (``class X(Base, name=...)``); None leaves one as is."""
    for attr, value in values.items():
        if value is not None:
            setattr(cls, attr, value)


class DataSourceError(ValueError):
    """The data named by a spec is missing, empty or malformed. Raised before any trial is queued."""


def check_split_sizes(what: str, n_train: int, minimum: int, n_valid: int, unit: str, detail: str = "") -> None:
    """``DataSourceError`` for a training split under ``minimum`` examples or an empty validation split
    (``detail``, e.g. what was skipped, goes at the end of the message)."""
    note = f" ({detail})" if detail else ""
    if n_train < minimum:
        raise DataSourceError(f"{what} training split has {n_train} {unit}; at least {minimum} are needed{note}")
    if not n_valid:
        raise DataSourceError(f"{what} validation split is empty{note}")


@dataclass(frozen=True)
class FamilyInfo:
    """What a model family reports. ``metric`` is the primary (fitted) metric; all metrics are lower-is-better."""

    metric: str
    metrics: Mapping[str, str]  # metric name -> unit / short description, for tables and the service
    width_meaning: str = "hidden size"
    description: str = ""
    size_unit: str | None = None  # overrides the domain's size unit (char LM: characters, word LM: words)


@dataclass(frozen=True)
class TrialSetup:
    """One trial's coordinates, as planned by the orchestrator."""

    family: str
    fraction: float
    width: int
    hparams: Mapping[str, Any]
    seed: int
    threads: int = 1
    device: str = "cpu"


@dataclass
class TrainStats:
    """What a ``Task.train`` call did: mean training loss over the steps and how much data it consumed."""

    loss: float
    samples: float  # in the domain's natural size unit (words, characters, images, seconds of audio)
    steps: int
    extra: dict[str, float] = field(default_factory=dict)


class Task(abc.ABC):
    """A model being trained on one shard. Owns model, optimizer, data cursor and RNG state.

    Data-parallel trials (``workers`` > 1) run one replica of the task per worker, all built from the same seed.
    A task takes part with two calls in ``train``: it trains on ``rank_share(batch)`` of every batch, and passes
    each step's loss through ``synced`` right after ``backward()``, before clipping and the optimizer step
    (``domains.training.TrainingTask`` makes both calls for every domain built on it). When the task trains alone
    (the default) both return their argument unchanged.
    """

    num_params: int
    model: torch.nn.Module  # what the optimizer trains; data-parallel replicas average its gradients
    rank: int = 0
    world_size: int = 1
    _sync: Callable[[Any], Any] | None = None

    def join_replicas(self, rank: int, world_size: int, sync: Callable[[Any], Any]) -> None:
        """Become replica ``rank`` of ``world_size``. ``sync(loss)`` averages the gradients over the replicas and
        returns the loss averaged over them, so every replica takes the same divergence decisions."""
        self.rank, self.world_size, self._sync = rank, world_size, sync

    def rank_share(self, batch: T) -> T:
        """This replica's part of a batch (array, tensor or list of examples): every ``world_size``-th example from
        ``rank``, so replicas see disjoint parts of one batch and length-sorted batches split evenly. A batch
        smaller than the world lends its examples round-robin rather than leave a replica without data."""
        if self.world_size == 1:
            return batch
        n = len(batch)  # type: ignore[arg-type]
        if n < self.world_size:
            return batch[self.rank % n:self.rank % n + 1]  # type: ignore[index]
        return batch[self.rank::self.world_size]  # type: ignore[index]

    def synced(self, loss: T) -> T:
        """The step's loss once the replicas' gradients are averaged (the loss itself when training alone)."""
        return loss if self._sync is None else self._sync(loss)

    def on_checkpoint(self, iteration: int, wait_committed: Callable[[], None]) -> None:  # noqa: B027 (optional)
        """Called in the trial's lead process after each report that carried a checkpoint (``iteration`` counts
        reports from 1); ``wait_committed()`` returns once that checkpoint is where a retry of the trial would
        resume from. A hook for instrumentation and tests (fault injection); the default does nothing."""

    def start_cooldown(self, max_steps: int) -> bool:
        """Patience has fired: anneal the learning rate from here before stopping, where the schedule has a stable
        phase to leave (``HParams.cooldown_steps``), ending by ``max_steps``. False: stop now (the default: a task
        without a schedule)."""
        return False

    @property
    def cooldown_end(self) -> int | None:
        """The step a begun cooldown ends at (the trial stops there), None when none has begun."""
        return None

    @abc.abstractmethod
    def train(self, steps: int) -> TrainStats:
        """Run ``steps`` optimizer steps on the shard (wrapping around it as needed)."""

    @abc.abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Metrics on the fixed validation split; every value is lower-is-better."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume training exactly: model, optimizer, cursor, RNG."""

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from ``state_dict``."""


class Domain(abc.ABC):
    """A learning-curve domain: data source, nested shards, model families, metrics."""

    name: ClassVar[str]
    size_unit: ClassVar[str]  # natural unit of training-set size: "words", "images", "hours", ...

    def __init_subclass__(cls, name: str | None = None, size_unit: str | None = None, **kwargs: Any) -> None:
        """``class LMDomain(ModelDomain, name="lm", size_unit="words")`` declares both where the class is named."""
        super().__init_subclass__(**kwargs)
        declare(cls, name=name, size_unit=size_unit)
    families: ClassVar[Mapping[str, FamilyInfo]]
    source_model: ClassVar[type[BaseModel]]  # pydantic model of the spec's ``data`` section

    @abc.abstractmethod
    def hparam_defaults(self, family: str) -> dict[str, Any]:
        """Hyperparameters this family accepts, with defaults. A spec may only set these names."""

    @abc.abstractmethod
    def prepare(self, source: BaseModel, cache_dir: Path) -> Any:
        """Read and preprocess the data once per sweep; cache under ``cache_dir`` and reuse when present.

        Must raise ``DataSourceError`` for missing or unusable data. The returned object is shipped to every
        trial through Ray's object store, so keep it to arrays and plain data.
        """

    @abc.abstractmethod
    def train_size(self, prepared: Any, fraction: float, family: str) -> float:
        """Size of the nested training shard of ``fraction`` in ``unit_for(family)``."""

    @abc.abstractmethod
    def build_task(self, prepared: Any, setup: TrialSetup) -> Task:
        """Build the model and optimizer for one trial on its shard; deterministic given ``setup.seed``."""

    def shard_examples(self, prepared: Any, fraction: float, family: str) -> float:
        """Examples (batch rows: images, sentence pairs, utterances, LM stream tokens) in the shard of
        ``fraction``: budgets in epochs become steps from it. By default the shard's ``train_size``."""
        return self.train_size(prepared, fraction, family)

    def examples_per_step(self, family: str, hparams: Mapping[str, Any]) -> float:
        """Examples one optimizer step reads under ``hparams`` (all data-parallel replicas together)."""
        return float(hparams.get("batch_size", 1))

    def planning_data(self, source: BaseModel, hints: Mapping[str, Any]) -> Any | None:
        """A stand-in for the prepared data holding only what ``build_model`` reads (vocabulary sizes, classes),
        from the data section and the spec's ``planning.data`` hints, so ``scaling-sweep plan`` can count a
        model's parameters before the data is read; None when the domain cannot tell."""
        return None

    def check_hparams(self, family: str, hparams: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Raise ValueError for a value this family cannot train with (wrong type, out of range).

        Called for every planned configuration before Ray starts, so a bad value fails the whole sweep up
        front instead of failing each of its trials. The default accepts everything."""

    def unit_for(self, family: str) -> str:
        """The training-size unit of a family's learning curve."""
        return self.family(family).size_unit or self.size_unit

    def family(self, family: str) -> FamilyInfo:
        """Look up a family, failing with the list of known ones."""
        try:
            return self.families[family]
        except KeyError:
            known = ", ".join(sorted(self.families))
            raise KeyError(f"domain {self.name!r} has no family {family!r}; known families: {known}") from None
