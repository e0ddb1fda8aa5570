"""The shared half of every domain: hyperparameters per family, the data section, and building a trial's task.

A ``ModelDomain`` declares its families' ``HParams`` classes once (defaults, types, checks); the spec's names are
validated against them on the driver, and ``build_task`` resolves them, seeds torch, sets the trial's threads,
builds the model (``build_model``: the one place a model of a width is made) and hands it to the domain's
``TrainingTask`` (``make_task``). Its ``prepare`` helpers name the cache folder and rewrap data errors.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from pydantic import BaseModel

from domains.base import DataSourceError, Domain, TrialSetup, declare
from domains.hparams import HParams
from domains.training import TrainingTask


class ModelDomain(Domain):
    """A domain whose families are models trained by ``TrainingTask``; subclasses add data and models."""

    hparams: ClassVar[Mapping[str, type[HParams]]]  # family -> its hyperparameters
    task_class: ClassVar[type[TrainingTask]]  # built as task_class(model, prepared, setup, hp)

    def __init_subclass__(cls, source: type[BaseModel] | None = None,
                          hparams: Mapping[str, type[HParams]] | None = None,
                          task: type[TrainingTask] | None = None, **kwargs: Any) -> None:
        """``class NMTDomain(ModelDomain, name=..., size_unit=..., source=NMTSource, hparams=HPARAMS,
        task=NMTTask)``: the data section, the families' hyperparameters and the task, declared with the name."""
        super().__init_subclass__(**kwargs)
        declare(cls, source_model=source, hparams=hparams, task_class=task)

    def hparams_for(self, family: str) -> type[HParams]:
        self.family(family)
        return self.hparams[family]

    def hparam_defaults(self, family: str) -> dict[str, Any]:
        return self.hparams_for(family).defaults()

    def check_hparams(self, family: str, hparams: Mapping[str, Any]) -> None:
        self.hparams_for(family).resolve(hparams)

    def parse_source(self, source: BaseModel | Mapping[str, Any]) -> Any:
        """The spec's ``data`` section as this domain's ``source_model`` (from a mapping or another model)."""
        if isinstance(source, self.source_model):
            return source
        return self.source_model.model_validate(source.model_dump() if isinstance(source, BaseModel)
                                                else dict(source))

    def build_task(self, prepared: Any, setup: TrialSetup, **options: Any) -> TrainingTask:
        """The trial's task, deterministic given ``setup.seed``: the model is built right after seeding."""
        hp = self.hparams_for(setup.family).resolve(setup.hparams)
        torch.manual_seed(setup.seed)
        torch.set_num_threads(setup.threads)
        model = self.build_model(prepared, setup.width, hp)
        return self.make_task(prepared, setup, hp, model, **options)

    @abc.abstractmethod
    def build_model(self, prepared: Any, width: int, hp: Any) -> torch.nn.Module:
        """The model of ``hp``'s family at ``width`` (the sweep's model-size knob) for this data."""

    def make_task(self, prepared: Any, setup: TrialSetup, hp: Any, model: torch.nn.Module,
                  **options: Any) -> TrainingTask:
        """The task that trains ``model`` on the shard of ``setup.fraction``: ``task_class``'s, by default."""
        return self.task_class(model, prepared, setup, hp, **options)


@contextmanager
def naming_source(train: Any) -> Iterator[None]:
    """Data errors raised in the block name the spec's ``train`` source they came from."""
    try:
        yield
    except DataSourceError as exc:
        raise DataSourceError(f"{exc} (train: {train!r})") from None
