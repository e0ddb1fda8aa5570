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
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from domains.base import Share
from domains.hparams import HParams
from domains.image.loaders import ArrayBatches, Batch, FolderBatches
from domains.image.models import ScaledResNet, depth_layout
from domains.training import TrainingTask, evaluation

DIVERGENCE_FACTOR = 3.0  # mean training loss above 3·ln(classes) (3x a uniform guess) counts as diverged
TOP5 = 5


@dataclass(frozen=True)
class ImageHParams(HParams):
    """What both ResNet families accept; each adds the size knob its width does not set."""

    optimizer: str = "sgd"  # SGD with Nesterov momentum, as torchvision's ResNet recipes
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128  # images per step, capped at the shard size
    label_smoothing: float = 0.0  # of the training cross-entropy
    augment: bool = True  # random crops (and flips where the data allows them)

    optimizers: ClassVar[tuple[str, ...]] = ("sgd", "adam", "adamw")
    nesterov: ClassVar[bool] = True

    def check(self) -> None:
        super().check()
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"image hyperparameters out of range: {self}")


@dataclass(frozen=True)
class ResNetHParams(ImageHParams, family="resnet", what="image resnet"):
    """``resnet``: width = first-stage channels, ``depth`` a standard ResNet depth."""

    depth: int = 18  # 10, 18, 26, 34, 50, 101 or 152

    def check(self) -> None:
        super().check()
        depth_layout(self.depth)


@dataclass(frozen=True)
class ResNetDepthHParams(ImageHParams, family="resnet_depth", what="image resnet_depth"):
    """``resnet_depth``: width = residual blocks per stage, ``channels`` in the first stage."""

    channels: int = 64  # first-stage channels (stages have 1, 2, 4, 8x)

    def check(self) -> None:
        super().check()
        if self.channels < 1:
            raise ValueError(f"image hyperparameters out of range: {self}")


HPARAMS: dict[str, type[ImageHParams]] = {"resnet": ResNetHParams, "resnet_depth": ResNetDepthHParams}


def topk_errors(logits: torch.Tensor, labels: torch.Tensor, ks: Iterable[int] = (1, TOP5)) -> dict[int, int]:
    """Number of examples whose true class is *not* among the ``k`` highest logits, for each ``k``."""
    ks = sorted(set(ks))
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return {k: int((~hit[:, :k].any(dim=1)).sum()) for k in ks}


def topk_error(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Top-k error rate: the fraction of examples whose true class is outside the k highest logits."""
    return topk_errors(logits, labels, (k,))[k] / len(labels)


class ImageTask(TrainingTask):
    """One ResNet on one shard; metrics on one fixed validation set."""

    def __init__(self, model: ScaledResNet, batches: ArrayBatches | FolderBatches, valid: Iterable[Batch],
                 hp: ImageHParams, *, num_classes: int, mean: tuple[float, ...],
                 std: tuple[float, ...], device: str = "cpu", channels_last: bool | None = None,
                 amp: bool | None = None) -> None:
        gpu = torch.device(device).type == "cuda"
        self.channels_last = gpu if channels_last is None else channels_last
        self.amp = gpu if amp is None else amp
        self.amp_dtype = torch.bfloat16 if not gpu or torch.cuda.is_bf16_supported() else torch.float16
        super().__init__(model.to(memory_format=self._format()), hp, device)
        self.num_classes = num_classes
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.batches, self.valid = batches, valid
        shape = (1, len(mean), 1, 1)
        self._mean = torch.tensor(mean, device=self.device).reshape(shape) * 255
        self._scale = 1 / (torch.tensor(std, device=self.device).reshape(shape) * 255)
        self._images = 0  # training images seen so far
        self._errors = 0  # training errors of the current ``train`` call
        self.divergence_threshold = DIVERGENCE_FACTOR * math.log(num_classes)

    def _format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> normalized float in the model's memory format.

        ``clone`` (not ``contiguous``) because a 1-channel batch permuted from NHWC counts as contiguous yet
        keeps channels-last strides, which sends every CPU convolution of the net down oneDNN's channels-last
        path — and that path corrupts the heap in training when a layer has fewer than 8 channels (measured,
        torch 2.14.1 / oneDNN 3.12 on AVX2: width-4 ResNets abort with "corrupted double-linked list").
        """
        return x.float().clone(memory_format=self._format()).sub_(self._mean).mul_(self._scale)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def next_batch(self, share: Share) -> Batch:
        """A whole batch is augmented first (one generator draws for it), then cut to this replica's share."""
        return self.batches.next(share)

    def loss(self, batch: Batch) -> torch.Tensor:
        x, y = batch
        with self._autocast():
            logits = self.model(self._input(x))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.hp.label_smoothing)
        self._errors += int((logits.argmax(1) != y).sum())
        return loss

    def counts(self, batch: Batch) -> Mapping[str, float]:
        return {"images": len(batch[1])}

    def summary(self, totals: Mapping[str, float], steps: int) -> tuple[float, dict[str, float]]:
        images, errors, self._errors = int(totals.get("images", 0)), self._errors, 0
        self._images += images
        return float(images), {"epochs": self.batches.cursor.epochs, "train_top1_err": errors / max(images, 1)}

    def metric_names(self) -> tuple[str, ...]:
        return ("val_top1_err", "val_xent") + (("val_top5_err",) if self.num_classes > TOP5 else ())

    def validate(self) -> dict[str, float]:
        """Top-1 error, top-5 error (only with more than 5 classes) and cross-entropy on the validation set."""
        return self.metrics_on(self.valid)

    @torch.no_grad()
    def metrics_on(self, batches: Iterable[Batch]) -> dict[str, float]:
        """The validation metrics on any batches (e.g. the training shard, unaugmented)."""
        n, nats, wrong = 0, 0.0, {1: 0, TOP5: 0}
        with evaluation(self.model):
            for x, y in batches:
                with self._autocast():
                    logits = self.model(self._input(x)).float()
                nats += F.cross_entropy(logits, y, reduction="sum").item()
                for k, v in topk_errors(logits, y).items():
                    wrong[k] += v
                n += len(y)
        out = {"val_top1_err": wrong[1] / n, "val_xent": nats / n}
        if self.num_classes > TOP5:
            out["val_top5_err"] = wrong[TOP5] / n
        return out

    def identity(self) -> dict[str, Any]:
        return {"shard": self.batches.state()["n"], "batch_size": self.hp.batch_size}

    def reader_state(self) -> dict[str, Any]:
        return {"cursor": self.batches.state(), "images": self._images}

    def load_reader_state(self, state: Mapping[str, Any]) -> None:
        self.batches.load_state(state["cursor"])
        self._images = int(state["images"])
