"""Batches for training and validation: augmented, reproducible, resumable at any step.

Both sources hand out uint8 NCHW batches (normalizing to float happens on the training device, so workers
send 4× fewer bytes) and share one ``Cursor``: epoch e visits the shard in the order
``default_rng([seed, e]).permutation(n)``, and every random augmentation draws from a generator seeded by
(trial seed, epoch, position). A batch is therefore a pure function of the cursor — the same with 0 or 16
workers, and a restored task (``Cursor`` state only) continues with exactly the batches it would have seen.

* ``ArrayBatches`` (npz/Parquet sources): images already decoded, kept as one uint8 tensor on the training
  device; a batch is a gather plus a vectorized pad-and-random-crop and flip. **No DataLoader workers**: the
  per-batch work is a few tensor ops over kilobytes, far less than what a worker process costs (start-up,
  pickling the batch back through shared memory, and a fork of a Ray actor per trial).
* ``FolderBatches`` (ImageFolder): a DataLoader whose workers open the files and apply RandomResizedCrop +
  flip (training) or resize + center-crop (validation) with PIL. The worker count comes from the trial's CPUs
  (``TrialSetup.threads``) unless the source sets ``workers``; the sampler is infinite, so workers stay up
  for the whole trial instead of restarting every epoch.

Data-parallel replicas each train on a share of every batch (``Task.rank_share``), passed to ``next``.
``FolderBatches`` applies it to the batch's plan, so each replica decodes only its own images; since every
augmentation is seeded per item, the share is exactly the slice of the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from domains.image.data import ImageData, ImageSplit

Batch = tuple[torch.Tensor, torch.Tensor]  # uint8 images (B, C, H, W), int64 labels (B,)
Share = Callable[[Any], Any]  # a replica's part of a batch: tensor -> tensor, list -> list (``Task.rank_share``)
EVAL_BATCH = 256  # fixed, so metrics never depend on hyperparameters (BN is in eval mode anyway)
# DataLoader workers are started by a fork server, not forked from the trial: a worker forked from a Ray actor
# inherits its Ray connections, and in a 4-trial ImageFolder sweep on Ray 2.60 the raylet itself died as soon
# as the first actors were reused (reproduced twice; the same sweep with workers: 0 or a fork server passes).
WORKER_START = "forkserver"


def _whole(batch: Any) -> Any:
    return batch


class Cursor:
    """Position in an endless sequence of shuffled epochs over ``n`` items."""

    def __init__(self, n: int, seed: int, epoch: int = 0, pos: int = 0) -> None:
        if n < 1:
            raise ValueError("a cursor needs at least one item")
        self.n, self.seed, self.epoch, self.pos = n, seed, epoch, pos
        self._order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return self._order[1]

    def take(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next ``k`` items (running on into later epochs): item indices, their epochs and positions."""
        items, epochs, positions = [], [], []
        while k > 0:
            m = min(k, self.n - self.pos)
            items.append(self.order(self.epoch)[self.pos:self.pos + m])
            epochs.append(np.full(m, self.epoch))
            positions.append(np.arange(self.pos, self.pos + m))
            self.pos += m
            k -= m
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
        return np.concatenate(items), np.concatenate(epochs), np.concatenate(positions)

    def state(self) -> dict[str, int]:
        return {"n": self.n, "seed": self.seed, "epoch": self.epoch, "pos": self.pos}

    @classmethod
    def from_state(cls, state: Mapping[str, int]) -> Cursor:
        return cls(int(state["n"]), int(state["seed"]), int(state["epoch"]), int(state["pos"]))

    @property
    def epochs(self) -> float:
        return self.epoch + self.pos / self.n


# ------------------------------------------------------------------------------------------------ arrays
def pad_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crops of the zero-padded images at their own size, and random horizontal flips (NHWC)."""
    b, h, w, _ = images.shape
    dev = images.device
    if padding > 0:
        padded = torch.nn.functional.pad(images, (0, 0, padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(dev)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]
        images = padded[torch.arange(b, device=dev)[:, None, None], rows, cols]
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(dev)
        images = torch.where(mask[:, None, None, None], images.flip(2), images)
    return images


class ArrayBatches:
    """Training batches from in-memory images (see the module docstring for why there are no workers)."""

    def __init__(self, data: ImageData, rows: np.ndarray, batch_size: int, seed: int, augment: bool,
                 device: torch.device) -> None:
        assert data.train.images is not None
        self.images = torch.from_numpy(np.ascontiguousarray(data.train.images[rows])).to(device)  # NHWC
        self.labels = torch.from_numpy(data.train.labels[rows]).to(device)
        self.batch_size, self.augment = batch_size, augment
        self.padding, self.flip = data.crop_padding, data.hflip
        self.cursor = Cursor(len(rows), seed)

    def next(self, share: Share = _whole) -> Batch:
        """The next batch, or ``share`` of it (augmented as a whole first: one generator draws for the batch)."""
        epoch, pos = self.cursor.epoch, self.cursor.pos  # the batch's augmentation is seeded from these
        items = torch.from_numpy(self.cursor.take(self.batch_size)[0]).to(self.images.device)
        x = self.images[items]
        if self.augment:
            g = torch.Generator().manual_seed(_mix(self.cursor.seed, epoch, pos))
            x = pad_crop_flip(x, self.padding, self.flip, g)
        return share(x.permute(0, 3, 1, 2)), share(self.labels[items])

    def state(self) -> dict[str, int]:
        return self.cursor.state()

    def load_state(self, state: Mapping[str, int]) -> None:
        self.cursor = Cursor.from_state(state)


def array_eval_batches(split: ImageSplit, device: torch.device) -> Iterator[Batch]:
    """Validation batches of in-memory images, unaugmented."""
    assert split.images is not None
    for i in range(0, len(split), EVAL_BATCH):
        x = torch.from_numpy(np.array(split.images[i:i + EVAL_BATCH])).to(device)  # a copy: Ray's are read-only
        yield x.permute(0, 3, 1, 2), torch.from_numpy(np.array(split.labels[i:i + EVAL_BATCH])).to(device)


def _mix(*values: int) -> int:
    """A 63-bit seed from several integers (independent streams for each (seed, epoch, position))."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint64)[0] >> np.uint64(1))


# ----------------------------------------------------------------------------------------------- folders
def random_resized_crop_box(width: int, height: int, rng: np.random.Generator, min_scale: float = 0.08,
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, height, width) of torchvision's RandomResizedCrop box, drawn from ``rng`` instead of torch's
    global RNG so that augmentation is reproducible per sample whatever process decodes it."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(min_scale, 1.0)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height  # fallback: the central crop with the ratio clamped, as torchvision does
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class FolderDataset(tud.Dataset):
    """Decodes one file per item. Training items are (index, seed, epoch, position) tuples; validation items
    are plain indices. Returns (uint8 CHW tensor, label)."""

    def __init__(self, split: ImageSplit, data: ImageData, train: bool, augment: bool = True) -> None:
        self.split, self.train, self.augment = split, train, augment
        self.size, self.resize = data.image_size, data.resize
        self.min_scale, self.hflip = data.min_scale, data.hflip

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: Any) -> tuple[torch.Tensor, int]:
        index = item[0] if isinstance(item, tuple) else item
        path = self.split.path(index)
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except Exception as exc:  # checked at prepare time; a file changed since then
            raise OSError(f"image {path} cannot be decoded: {exc}") from exc
        if self.train and self.augment:
            rng = np.random.default_rng([int(v) for v in item[1:]] + [index])
            top, left, h, w = random_resized_crop_box(im.width, im.height, rng, self.min_scale)
            im = TF.resized_crop(im, top, left, h, w, [self.size, self.size], antialias=True)
            if self.hflip and rng.random() < 0.5:
                im = TF.horizontal_flip(im)
        else:
            im = TF.center_crop(TF.resize(im, [self.resize], antialias=True), [self.size, self.size])
        return TF.pil_to_tensor(im), int(self.split.labels[index])


class _EndlessPlan(tud.Sampler):
    """Batches of (index, seed, epoch, position) from a cursor state, forever; ``share`` of each batch only."""

    def __init__(self, cursor_state: Mapping[str, int], batch_size: int, share: Share = _whole) -> None:
        self.state, self.batch_size, self.share = dict(cursor_state), batch_size, share

    def __iter__(self) -> Iterator[list[tuple[int, int, int, int]]]:
        cursor = Cursor.from_state(self.state)
        while True:
            items, epochs, positions = cursor.take(self.batch_size)
            plan = [(int(i), cursor.seed, int(e), int(p)) for i, e, p in zip(items, epochs, positions, strict=True)]
            yield self.share(plan)


class FolderBatches:
    """Training batches decoded by DataLoader workers; the main process tracks the cursor it has consumed."""

    def __init__(self, data: ImageData, rows: np.ndarray, batch_size: int, seed: int, augment: bool,
                 device: torch.device, workers: int) -> None:
        self.dataset = FolderDataset(data.train.subset(rows), data, train=True, augment=augment)
        self.batch_size, self.workers, self.device = batch_size, workers, device
        self.cursor = Cursor(len(rows), seed)
        self._it: Iterator[Batch] | None = None

    def next(self, share: Share = _whole) -> Batch:
        """The next batch, or ``share`` of it: only those images are decoded. A replica's share stays the same for
        the whole trial (prefetched batches were planned with it)."""
        if self._it is None:  # (re)started from the consumed cursor: batches prefetched before are dropped
            plan = _EndlessPlan(self.cursor.state(), self.batch_size, share)
            loader = tud.DataLoader(self.dataset, batch_sampler=plan,
                                    num_workers=self.workers, pin_memory=self.device.type == "cuda",
                                    multiprocessing_context=WORKER_START if self.workers else None)
            self._it = iter(loader)
        x, y = next(self._it)
        self.cursor.take(self.batch_size)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def state(self) -> dict[str, int]:
        return self.cursor.state()

    def load_state(self, state: Mapping[str, int]) -> None:
        self.cursor, self._it = Cursor.from_state(state), None


class FolderEval:
    """Validation batches: resize + center crop in DataLoader workers that persist between evaluations."""

    def __init__(self, data: ImageData, device: torch.device, workers: int) -> None:
        self.loader = tud.DataLoader(FolderDataset(data.valid, data, train=False), batch_size=EVAL_BATCH,
                                     num_workers=workers, persistent_workers=workers > 0,
                                     pin_memory=device.type == "cuda",
                                     multiprocessing_context=WORKER_START if workers else None)
        self.device = device

    def __iter__(self) -> Iterator[Batch]:
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
