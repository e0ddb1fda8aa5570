"""A fifth domain, written for the tests on the domain framework: an MLP on scikit-learn's handwritten digits.

All a domain supplies: its data section and reader (a cached ``prepare``), its hyperparameters, a model of a
width, a loss for a batch and its metrics. Registered by the tests (``domains.registry.register_domain``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn

from domains.base import FamilyInfo, SourceModel, TrialSetup
from domains.cache import cache_key, load_arrays, load_or_build, save_arrays
from domains.hparams import HParams
from domains.model_domain import ModelDomain
from domains.shards import heldout_split, nested_shard, shard_count
from domains.training import TrainingTask


class DigitsSource(SourceModel):
    valid_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    shuffle_seed: int = 0


@dataclass(frozen=True)
class MLPHParams(HParams, family="mlp", what="digits mlp"):
    lr: float = 0.01
    batch_size: int = 32
    layers: int = 1  # hidden layers of ``width`` units


class DigitsTask(TrainingTask):
    def __init__(self, model: nn.Module, data: Mapping[str, np.ndarray], setup: TrialSetup, hp: MLPHParams) -> None:
        super().__init__(model, hp, setup.device)
        rows = nested_shard(len(data["y"]), setup.fraction, seed=0)
        self.x, self.y = (torch.from_numpy(data[k][rows]).to(self.device) for k in ("x", "y"))
        self.valid = (torch.from_numpy(data["valid_x"]).to(self.device),
                      torch.from_numpy(data["valid_y"]).to(self.device))
        self.cursor, self.seed = 0, setup.seed  # batches drawn so far

    def next_ids(self) -> np.ndarray:  # examples drawn with replacement, seeded by the batch number
        self.cursor += 1
        return np.random.default_rng([self.seed, self.cursor]).integers(0, len(self.y), self.hp.batch_size)

    def load_batch(self, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[ids], self.y[ids]

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(self.model(batch[0]), batch[1])

    def counts(self, batch: tuple[torch.Tensor, torch.Tensor]) -> Mapping[str, float]:
        return {"samples": len(batch[1])}  # training images

    def metric_names(self) -> tuple[str, ...]:
        return tuple(DigitsMLPDomain.families["mlp"].metrics)

    def validate(self) -> dict[str, float]:
        x, y = self.valid
        logits = self.model(x)
        return {"val_error": float((logits.argmax(1) != y).float().mean()),
                "val_xent": float(F.cross_entropy(logits, y))}

    def reader_state(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "seed": self.seed}

    def load_reader_state(self, state: Mapping[str, Any]) -> None:
        self.cursor, self.seed = int(state["cursor"]), int(state["seed"])


class DigitsMLPDomain(ModelDomain, name="digits-mlp", size_unit="images",
                      source=DigitsSource, hparams={"mlp": MLPHParams}, task=DigitsTask):
    """Classification error of MLPs against the number of training digits."""

    families: ClassVar[Mapping[str, FamilyInfo]] = {"mlp": FamilyInfo(
        metric="val_error", metrics={"val_error": "classification error", "val_xent": "nats/image"},
        width_meaning="hidden units per layer", description="ReLU MLP on flattened 8x8 digits")}

    def prepare(self, source: BaseModel | Mapping[str, Any], cache_dir: Path) -> dict[str, np.ndarray]:
        src: DigitsSource = self.parse_source(source)

        def build() -> dict[str, np.ndarray]:
            from sklearn.datasets import load_digits  # ships with scikit-learn: nothing is downloaded

            digits = load_digits()
            x, y = (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
            train, valid = heldout_split(len(y), src.valid_fraction, src.shuffle_seed)
            return {"x": x[train], "y": y[train], "valid_x": x[valid], "valid_y": y[valid]}

        key = cache_key(1, src.model_dump(mode="json"))
        return load_or_build(Path(cache_dir) / key, load_arrays, build, save_arrays)

    def train_size(self, prepared: Mapping[str, np.ndarray], fraction: float, family: str) -> float:
        return float(shard_count(len(prepared["y"]), fraction))

    def build_model(self, prepared: Mapping[str, np.ndarray], width: int, hp: MLPHParams) -> nn.Module:
        sizes = [prepared["x"].shape[1]] + [width] * hp.layers
        hidden = [m for a, b in itertools.pairwise(sizes) for m in (nn.Linear(a, b), nn.ReLU())]
        return nn.Sequential(*hidden, nn.Linear(width, 10))
