"""The image-classification domain (Hestness et al. 2017, ImageNet): ResNets scaled by width or by depth.

Learning curves are top-1 error (primary) and top-5 error, against the number of training images.
``train`` names an ImageFolder tree, an ``.npz`` / ``.parquet`` array file, or ``builtin:digits`` —
scikit-learn's 1,797 real 8×8 handwritten digits (10 classes), written once into the cache as an ``.npz``
so the quickstart and the tests read them through the same array loader as any small data set.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow.fs as pafs
import torch
from pydantic import BaseModel, Field

from domains.base import DataSourceError, FamilyInfo, SourceModel, TrialSetup
from domains.cache import cache_key, file_stamp, load_or_build
from domains.image.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MIN_TRAIN_IMAGES,
    ImageData,
    ImageSplit,
    channel_stats,
    iter_stamps,
    load_image_data,
    read_folder_split,
    read_npz,
    read_parquet,
    resize_split,
    save_image_data,
    scan_folder,
    stratified_take,
)
from domains.image.loaders import ArrayBatches, FolderBatches, FolderEval, array_eval_batches
from domains.image.models import ScaledResNet, build_model
from domains.image.task import HPARAMS, ImageHParams, ImageTask, ResNetHParams
from domains.model_domain import ModelDomain
from domains.shards import class_balanced_permutation
from sweepstore import write_atomic

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when decoding, splitting or the cached layout changes
BUILTIN_DIGITS = "builtin:digits"
DIGITS_FILE = "digits.npz"
ARRAY_SUFFIXES = (".npz", ".parquet")
METRICS = {"val_top1_err": "top-1 error", "val_top5_err": "top-5 error (more than 5 classes only)",
           "val_xent": "nats/image"}
VALID_SEED_SALT = 0x5EED  # the held-out draw uses its own stream, independent of the shard order


class ImageSource(SourceModel):
    """The spec's ``data`` section for ``image``."""

    train: str  # ImageFolder root (<root>/<class>/<image>), a .npz or .parquet file, or "builtin:digits"
    valid: str | None = None  # same forms; None = a class-stratified ``valid_fraction`` of train held out
    valid_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    image_size: int | None = Field(None, ge=4)  # network input side; None: arrays' own size, 224 for folders
    resize: int | None = Field(None, ge=4)  # folders' validation resize before center crop; None: size/0.875
    min_scale: float = Field(0.08, gt=0.0, le=1.0)  # folders' RandomResizedCrop smallest area fraction
    crop_padding: int | None = Field(None, ge=0)  # arrays' pad-and-crop; None: image_size // 8
    hflip: bool = True  # random horizontal flips in training (turn off for digits and text)
    shuffle_seed: int = 0  # the one class-balanced order every nested shard is a prefix of
    max_images: int | None = Field(None, ge=MIN_TRAIN_IMAGES)  # keep a class-balanced subset of train
    max_valid: int | None = Field(None, ge=1)  # class-balanced cap on validation images (speed)
    check: Literal["decode", "header", "none"] = "decode"  # prepare-time check of every image file
    check_workers: int | None = Field(None, ge=1)  # processes for that check; None: all CPUs
    workers: int | None = Field(None, ge=0)  # DataLoader workers per trial (folders); None: trial's CPUs


class ImageDomain(ModelDomain, name="image", size_unit="images", source=ImageSource, hparams=HPARAMS):
    """Top-1 / top-5 error learning curves of width- and depth-scaled ResNets on nested, class-balanced shards."""

    families: ClassVar[Mapping[str, FamilyInfo]] = {
        "resnet": FamilyInfo(
            "val_top1_err", METRICS, "channels of the first stage (64 = standard ResNet; stages have 1, 2, 4, 8x)",
            description="ResNet (torchvision blocks) scaled by width; depth set by the 'depth' hyperparameter"),
        "resnet_depth": FamilyInfo(
            "val_top1_err", METRICS, "BasicBlocks per stage n (depth 8n+2: 1 = ResNet-10, 2 = ResNet-18)",
            description="ResNet scaled by depth; first-stage channels set by the 'channels' hyperparameter"),
    }

    def prepare(self, source: BaseModel | Mapping[str, Any], cache_dir: Path) -> ImageData:
        """Read (and for folders, check every image) once; cached in ``cache_dir/<key>/``, where the key covers
        the settings and the name, size and mtime of every input file."""
        src: ImageSource = self.parse_source(source)
        cache_dir = Path(cache_dir)
        if src.train == BUILTIN_DIGITS:
            src = src.model_copy(update={"train": str(write_digits(cache_dir / "builtin-digits"))})
        train_path = Path(os.path.expanduser(src.train))
        valid_path = Path(os.path.expanduser(src.valid)) if src.valid is not None else None
        if _is_array_file(train_path):
            key, build = _arrays(src, train_path, valid_path)
        else:
            key, build = _folders(src, train_path, valid_path)
        return load_or_build(cache_dir / key, _load_reporting_skipped, build, save_image_data)

    def train_size(self, prepared: ImageData, fraction: float, family: str) -> float:
        self.family(family)
        return float(len(prepared.shard_rows(fraction)))

    def planning_data(self, source: BaseModel, hints: Mapping[str, Any]) -> Any | None:
        """Classes and channels come from the data; without ``hints["num_classes"]`` there is nothing to count."""
        if "num_classes" not in hints:
            return None
        src = self.parse_source(source)
        return SimpleNamespace(num_classes=int(hints["num_classes"]), channels=int(hints.get("channels", 3)),
                               image_size=src.image_size or int(hints.get("image_size", 224)))

    def build_model(self, prepared: ImageData, width: int, hp: ImageHParams) -> ScaledResNet:
        knob = {"depth": hp.depth} if isinstance(hp, ResNetHParams) else {"channels": hp.channels}
        return build_model(hp.family, width, prepared.num_classes, in_channels=prepared.channels,
                           image_size=prepared.image_size, **knob)

    def make_task(self, prepared: ImageData, setup: TrialSetup, hp: ImageHParams, model: ScaledResNet, *,
                  channels_last: bool | None = None, amp: bool | None = None,
                  workers: int | None = None) -> ImageTask:
        """The trial's task. ``channels_last``/``amp`` default to on for CUDA, off for CPU; ``workers`` (folders
        only) defaults to the trial's CPUs. The batch is capped at the shard size (no repeats in a batch)."""
        device = torch.device(setup.device)
        rows = prepared.shard_rows(setup.fraction)
        batch = min(hp.batch_size, len(rows))
        if prepared.in_memory:
            batches: ArrayBatches | FolderBatches = ArrayBatches(prepared, rows, batch, setup.seed, hp.augment,
                                                                 device)
            valid: Any = list(array_eval_batches(prepared.valid, device))
        else:
            n_workers = max(0, setup.threads if workers is None else workers)
            batches = FolderBatches(prepared, rows, batch, setup.seed, hp.augment, device, n_workers)
            valid = FolderEval(prepared, device, n_workers)
        return ImageTask(model, batches, valid, hp, num_classes=prepared.num_classes, mean=prepared.mean,
                         std=prepared.std, device=setup.device, channels_last=channels_last, amp=amp)


Build = Callable[[], ImageData]


def _arrays(src: ImageSource, train_path: Path, valid_path: Path | None) -> tuple[str, Build]:
    """The cache key of an array data set and how to read it."""
    if not train_path.is_file():
        raise DataSourceError(f"image train data: file {str(train_path)!r} does not exist")
    if valid_path is not None and not (valid_path.is_file() and _is_array_file(valid_path)):
        raise DataSourceError(f"image valid data: {str(valid_path)!r} is not an existing .npz/.parquet file "
                              "(an array train set needs an array valid set)")
    files = [train_path] + ([valid_path] if valid_path else [])
    key = _cache_key(src, [file_stamp(p) for p in files])

    def build() -> ImageData:
        splits, classes, skipped = _read_arrays(train_path, src.image_size)
        if valid_path is not None:
            vsplits, _, vskipped = _read_arrays(valid_path, src.image_size)
            splits["valid"], skipped = vsplits["train"], skipped + vskipped
        train = splits["train"]
        side = src.image_size or train.images.shape[1]
        if train.images.shape[1] != train.images.shape[2] or src.image_size:
            train = resize_split(train, side)
        valid = resize_split(splits["valid"], side) if "valid" in splits else None
        if valid is not None and valid.images.shape[-1] != train.images.shape[-1]:
            raise DataSourceError(f"image data: train images have {train.images.shape[-1]} channels, valid "
                                  f"images {valid.images.shape[-1]}")
        n_classes = int(max(train.labels.max(), -1 if valid is None else valid.labels.max())) + 1
        classes = classes or [str(i) for i in range(n_classes)]
        if len(classes) < n_classes:
            raise DataSourceError(f"image data: labels reach {n_classes - 1} but only {len(classes)} class names")
        train, valid, order = _split_and_order(src, train, valid)
        mean, std = channel_stats(train.images)
        return ImageData(train=train, valid=valid, permutation=order, classes=tuple(classes),
                         image_size=side, channels=int(train.images.shape[-1]), mean=mean, std=std,
                         crop_padding=src.crop_padding if src.crop_padding is not None else side // 8,
                         hflip=src.hflip, skipped=tuple(skipped), key=key)

    return key, build


def _folders(src: ImageSource, train_path: Path, valid_path: Path | None) -> tuple[str, Build]:
    """The cache key of an ImageFolder data set and how to read it (checking every image)."""
    classes, train_files = scan_folder(train_path, "train")
    valid_files: list[tuple[str, int, int, int]] = []
    if valid_path is not None:
        _, valid_files = scan_folder(valid_path, "valid", classes)
    digest = hashlib.sha256()
    for line in iter_stamps(train_files):
        digest.update(line.encode())
    digest.update(b"\1valid\1")
    for line in iter_stamps(valid_files):
        digest.update(line.encode())
    roots = [str(train_path.resolve()), str(valid_path.resolve()) if valid_path else None]
    key = _cache_key(src, [roots, digest.hexdigest()])

    def build() -> ImageData:
        train, skipped = read_folder_split(train_path, "train", train_files, src.check, src.check_workers)
        valid = None
        if valid_path is not None:
            valid, vskipped = read_folder_split(valid_path, "valid", valid_files, src.check, src.check_workers)
            skipped += vskipped
        if skipped:
            log.warning("image data: %d unreadable image(s) left out (listed above)", len(skipped))
        train, valid, order = _split_and_order(src, train, valid)
        side = src.image_size or 224
        return ImageData(train=train, valid=valid, permutation=order, classes=tuple(classes),
                         image_size=side, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         resize=src.resize or round(side / 0.875), min_scale=src.min_scale, hflip=src.hflip,
                         skipped=tuple(skipped), key=key)

    return key, build


def write_digits(folder: Path) -> Path:
    """scikit-learn's handwritten digits as ``digits.npz`` (images (1797, 8, 8) uint8 0..255, labels, classes).

    Written once (atomically); scikit-learn ships the data, so nothing is downloaded.
    """
    path = folder / DIGITS_FILE
    if path.is_file():
        return path
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataSourceError("builtin:digits needs scikit-learn (pip install scikit-learn)") from None
    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # pixel values 0..16 in the source
    folder.mkdir(parents=True, exist_ok=True)
    blob = io.BytesIO()
    np.savez(blob, images=images, labels=digits.target.astype(np.int64),
             classes=np.array([str(c) for c in digits.target_names]))
    write_atomic(pafs.LocalFileSystem(), str(path), blob.getvalue())
    return path


def _load_reporting_skipped(folder: Path) -> ImageData | None:
    """The cached data set; a cache hit still names the images it leaves out, so every run's log says what is
    missing."""
    cached = load_image_data(folder)
    for line in cached.skipped if cached is not None else ():
        log.warning("image data: skipped unreadable image %s (found when the cache was built)", line)
    return cached


def _is_array_file(path: Path) -> bool:
    return path.suffix.lower() in ARRAY_SUFFIXES


def _read_arrays(path: Path, image_size: int | None) -> tuple[dict[str, ImageSplit], list[str] | None, list[str]]:
    if path.suffix.lower() == ".npz":
        splits, classes = read_npz(path)
        return splits, classes, []
    split, skipped = read_parquet(path, image_size)
    return {"train": split}, None, skipped


def _split_and_order(src: ImageSource, train: ImageSplit,
                     valid: ImageSplit | None) -> tuple[ImageSplit, ImageSplit, np.ndarray]:
    """(train, valid, shard order): a stratified validation split held out when none is given, ``max_valid``
    and ``max_images`` applied, and the class-balanced order every nested shard is a prefix of."""
    if valid is None:
        n_valid = min(len(train) - 1, max(1, round(src.valid_fraction * len(train))))
        taken, rest = stratified_take(train.labels, n_valid, src.shuffle_seed + VALID_SEED_SALT)
        train, valid = train.subset(rest), train.subset(taken)
    if src.max_valid is not None and src.max_valid < len(valid):
        valid = valid.subset(stratified_take(valid.labels, src.max_valid, src.shuffle_seed)[0])
    if len(train) < MIN_TRAIN_IMAGES or len(valid) < 1:
        raise DataSourceError(f"image data: {len(train)} training and {len(valid)} validation images left; "
                              f"at least {MIN_TRAIN_IMAGES} and 1 are needed")
    order = class_balanced_permutation(train.labels, src.shuffle_seed)
    if src.max_images is not None and src.max_images < len(train):
        # Keep the first max_images of the shard order, in that order: the subset's shards are exactly the
        # full set's small shards.
        kept = order[:src.max_images]
        in_file_order = np.argsort(kept, kind="stable")
        train, order = train.subset(kept[in_file_order]), np.argsort(in_file_order, kind="stable")
    return train, valid, order.astype(np.int64)


def _cache_key(src: ImageSource, stamps: list[Any]) -> str:
    """Hash of the settings plus the input files' stamps (worker counts do not change the data)."""
    return cache_key(CACHE_VERSION, src.model_dump(mode="json", exclude={"workers", "check_workers"}), files=stamps)
