"""Training and evaluating one ResNet on one class-balanced shard; top-1 / top-5 error and cross-entropy.

On a GPU the model runs in channels_last memory format under autocast (bfloat16 where supported, else float16
with a gradient scaler): convolutions then hit tensor cores without layout transposes. On CPU both stay off
(fp32, NCHW), which is what the CPU kernels are fastest at. ``state_dict`` holds model, optimizer, scaler and
the data cursor; augmentation is seeded from the cursor, so a restored task continues the very same run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from domains.base import Task, TrainStats
from domains.hparams import resolve_hparams
from domains.image.loaders import ArrayBatches, Batch, FolderBatches
from domains.image.models import ScaledResNet, count_parameters, depth_layout
from domains.task_state import restore, snapshot
from domains.train_loop import LossMeter

DIVERGENCE_FACTOR = 3.0  # mean training loss above 3·ln(classes) (3x a uniform guess) counts as diverged
TOP5 = 5

_COMMON: dict[str, Any] = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                           "batch_size": 128, "label_smoothing": 0.0, "augment": True}
HPARAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "resnet": {**_COMMON, "depth": 18},  # width = first-stage channels
    "resnet_depth": {**_COMMON, "channels": 64},  # width = residual blocks per stage
}


@dataclass(frozen=True)
class ImageHParams:
    """A family's hyperparameters, type-checked. ``depth``/``channels`` apply to one family each."""

    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    label_smoothing: float
    augment: bool
    depth: int = 18
    channels: int = 64

    @classmethod
    def resolve(cls, family: str, given: Mapping[str, Any]) -> ImageHParams:
        """Defaults of ``family`` overridden by ``given``; unknown names and bad values raise ValueError."""
        hp = resolve_hparams(cls, f"image {family}", HPARAM_DEFAULTS[family], given)
        if hp.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"image optimizer must be 'sgd', 'adam' or 'adamw', got {hp.optimizer!r}")
        if hp.batch_size < 1 or hp.lr <= 0 or hp.channels < 1 or not 0 <= hp.label_smoothing < 1:
            raise ValueError(f"image hyperparameters out of range: {hp}")
        depth_layout(hp.depth)
        return hp

    def optimizer_for(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay, nesterov=self.momentum > 0)
        cls = torch.optim.Adam if self.optimizer == "adam" else torch.optim.AdamW
        return cls(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def topk_errors(logits: torch.Tensor, labels: torch.Tensor, ks: Iterable[int] = (1, TOP5)) -> dict[int, int]:
    """Number of examples whose true class is *not* among the ``k`` highest logits, for each ``k``."""
    ks = sorted(set(ks))
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return {k: int((~hit[:, :k].any(dim=1)).sum()) for k in ks}


def topk_error(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Top-k error rate: the fraction of examples whose true class is outside the k highest logits."""
    return topk_errors(logits, labels, (k,))[k] / len(labels)


class ImageTask(Task):
    """One ResNet on one shard; metrics on one fixed validation set."""

    def __init__(self, model: ScaledResNet, batches: ArrayBatches | FolderBatches, valid: Iterable[Batch],
                 hp: ImageHParams, *, num_classes: int, mean: tuple[float, ...], std: tuple[float, ...],
                 device: str = "cpu", channels_last: bool | None = None, amp: bool | None = None) -> None:
        self.hp, self.device, self.num_classes = hp, torch.device(device), num_classes
        gpu = self.device.type == "cuda"
        self.channels_last = gpu if channels_last is None else channels_last
        self.amp = gpu if amp is None else amp
        self.amp_dtype = torch.bfloat16 if not gpu or torch.cuda.is_bf16_supported() else torch.float16
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=fmt)
        self.optimizer = hp.optimizer_for(self.model)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.num_params = count_parameters(self.model)
        self.batches, self.valid = batches, valid
        shape = (1, len(mean), 1, 1)
        self._mean = torch.tensor(mean, device=self.device).reshape(shape) * 255
        self._scale = 1 / (torch.tensor(std, device=self.device).reshape(shape) * 255)
        self._images = 0  # training images seen so far
        self._diverged = False
        self._threshold = DIVERGENCE_FACTOR * math.log(num_classes)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> normalized float in the model's memory format.

        ``clone`` (not ``contiguous``) because a 1-channel batch permuted from NHWC counts as contiguous yet
        keeps channels-last strides, which sends every CPU convolution of the net down oneDNN's channels-last
        path — and that path corrupts the heap in training when a layer has fewer than 8 channels (measured,
        torch 2.14.1 / oneDNN 3.12 on AVX2: width-4 ResNets abort with "corrupted double-linked list").
        """
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.float().clone(memory_format=fmt).sub_(self._mean).mul_(self._scale)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def train(self, steps: int) -> TrainStats:
        """``steps`` SGD/Adam updates; a non-finite or exploding loss stops early with loss = NaN."""
        if self._diverged:
            return TrainStats(loss=math.nan, samples=0.0, steps=0, extra={"diverged": 1.0})
        self.model.train()
        meter, images, errors = LossMeter(self._threshold), 0, 0
        for _ in range(steps):
            x, y = self.batches.next(self.rank_share)
            with self._autocast():
                logits = self.model(self._input(x))
                loss = F.cross_entropy(logits.float(), y, label_smoothing=self.hp.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            loss = self.synced(loss)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            errors += int((logits.argmax(1) != y).sum())
            images += len(y)
            if not meter.add(loss.item()):
                break
        self._diverged = meter.diverged
        self._images += images
        extra = {"epochs": self.batches.cursor.epochs, "train_top1_err": errors / max(images, 1),
                 "diverged": float(self._diverged)}
        return TrainStats(loss=meter.mean, samples=float(images), steps=meter.steps, extra=extra)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Top-1 error, top-5 error (only with more than 5 classes) and cross-entropy on the validation set."""
        if self._diverged:  # no pass over the validation set (50k ImageNet images) for a dead run
            names = ["val_top1_err", "val_xent"] + (["val_top5_err"] if self.num_classes > TOP5 else [])
            return {k: math.nan for k in names}
        return self.metrics_on(self.valid)

    @torch.no_grad()
    def metrics_on(self, batches: Iterable[Batch]) -> dict[str, float]:
        """The validation metrics on any batches (e.g. the training shard, unaugmented)."""
        was_training = self.model.training
        self.model.eval()
        n, nats, wrong = 0, 0.0, {1: 0, TOP5: 0}
        for x, y in batches:
            with self._autocast():
                logits = self.model(self._input(x)).float()
            nats += F.cross_entropy(logits, y, reduction="sum").item()
            for k, v in topk_errors(logits, y).items():
                wrong[k] += v
            n += len(y)
        self.model.train(was_training)
        out = {"val_top1_err": wrong[1] / n, "val_xent": nats / n}
        if self.num_classes > TOP5:
            out["val_top5_err"] = wrong[TOP5] / n
        return out

    def state_dict(self) -> dict[str, Any]:
        """A deep copy: training on afterwards does not change what was returned."""
        return snapshot(self.model, self.optimizer, self.device, scaler=self.scaler.state_dict(),
                        cursor=self.batches.state(), images=self._images, diverged=self._diverged,
                        batch_size=self.hp.batch_size)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        mine = self.batches.state()
        if (state["cursor"]["n"], state["batch_size"]) != (mine["n"], self.hp.batch_size):
            raise ValueError(f"image task state is from another shard or batch size (shard {state['cursor']['n']},"
                             f" batch {state['batch_size']}; this task: {mine['n']}, {self.hp.batch_size})")
        restore(state, self.model, self.optimizer, self.device)
        self.scaler.load_state_dict(state["scaler"])
        self.batches.load_state(state["cursor"])
        self._images, self._diverged = int(state["images"]), bool(state["diverged"])
