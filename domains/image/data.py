"""Image data for learning curves: ImageFolder trees and array files, class-balanced nested shards, caching.

Two layouts are read:

* **ImageFolder** (ImageNet's ``train/`` and ``val/`` after the usual val re-layout): one sub-folder per class,
  image files below it. Only the list of files is kept (``root`` + relative ``paths``); images are decoded in
  DataLoader workers at training time. Every file is decoded once at prepare time (``check``), so a corrupt or
  truncated image is reported by path and left out *before* any trial starts, not found hours into a sweep.
* **arrays** for small sets: ``.npz`` with ``images`` (N, H, W) or (N, H, W, C) and ``labels`` (N,) (optionally
  ``valid_images``/``valid_labels`` and ``classes``), or ``.parquet`` with an ``image`` column of encoded
  PNG/JPEG bytes (or Hugging Face's ``{bytes, path}`` struct) and a ``label`` column. They are decoded into one
  uint8 array that trials keep in memory.

Shards are nested *and* class-balanced: the training set is put once into an order in which every prefix
holds each class in proportion to its share of the whole set (within one image), and shard(f) is the first
``shard_count(n, f)`` images of that order (``domains.shards.shard_count``). The held-out validation split, the
``max_images`` subset and the ``max_valid`` cap are prefixes of such orders too, so they are stratified.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from domains.base import DataSourceError
from domains.cache import load_arrays, save_arrays
from domains.shards import class_balanced_permutation, shard_count

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_TRAIN_IMAGES = 2
CHECK_CHUNK = 256  # files per task of the parallel prepare-time check
PARALLEL_CHECK_MIN = 2000  # fewer files are checked in-process (a process pool costs ~1 s to start)


# --------------------------------------------------------------------------------------------- orders
def stratified_take(labels: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(taken, rest): ``count`` indices drawn class-stratified, and the others, both sorted."""
    order = class_balanced_permutation(labels, seed)
    return np.sort(order[:count]), np.sort(order[count:])


# ------------------------------------------------------------------------------------------ data classes
@dataclass(frozen=True)
class ImageSplit:
    """One split: labels plus either the decoded images (in memory) or files under a root folder."""

    labels: np.ndarray  # int64 class ids
    images: np.ndarray | None = None  # (N, H, W, C) uint8, for array sources
    root: str = ""  # folder the paths are relative to, for ImageFolder sources
    paths: np.ndarray | None = None  # bytes ("S") relative paths, for ImageFolder sources

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> ImageSplit:
        return ImageSplit(labels=self.labels[index],
                          images=None if self.images is None else self.images[index],
                          root=self.root, paths=None if self.paths is None else self.paths[index])

    def path(self, i: int) -> str:
        assert self.paths is not None
        return os.path.join(self.root, os.fsdecode(self.paths[i]))


@dataclass(frozen=True)
class ImageData:
    """What every trial receives: both splits, the shard order, class names and how to normalize."""

    train: ImageSplit
    valid: ImageSplit
    permutation: np.ndarray  # class-balanced order of training images; shard(f) = its first shard_count
    classes: tuple[str, ...]
    image_size: int  # side of the square network input
    channels: int
    mean: tuple[float, ...]  # per-channel, on the [0, 1] scale
    std: tuple[float, ...]
    resize: int = 0  # ImageFolder validation: shorter side resized to this before the center crop
    min_scale: float = 0.08  # ImageFolder training: RandomResizedCrop's smallest area fraction
    crop_padding: int = 0  # array sources: random crops of the image padded by this many pixels
    hflip: bool = True
    skipped: tuple[str, ...] = ()  # "path: reason" of every unreadable image left out at prepare time
    key: str = ""

    @property
    def in_memory(self) -> bool:
        return self.train.images is not None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def shard_rows(self, fraction: float) -> np.ndarray:
        """Training-set indices of the nested class-balanced shard (a prefix of ``permutation``)."""
        return self.permutation[: shard_count(len(self.train), fraction)]


# ------------------------------------------------------------------------------------------- ImageFolder
def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def scan_folder(root: Path, what: str, classes: Sequence[str] | None = None) -> tuple[list[str], list[
        tuple[str, int, int, int]]]:
    """(class names, [(relative path, class id, size, mtime_ns)]) of an ImageFolder tree, sorted.

    ``classes`` fixes the class list (the validation folder uses the training folder's); a class folder outside
    it is an error, a missing one is fine (it just has no validation images).
    """
    if not root.is_dir():
        raise DataSourceError(f"image {what} data: {str(root)!r} is not a directory")
    found = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not found:
        raise DataSourceError(f"image {what} data: {str(root)!r} has no class sub-folders (ImageFolder layout: "
                              "<root>/<class>/<image>)")
    if classes is None:
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataSourceError(f"image {what} data: class folders {extra[:5]} of {str(root)!r} are not "
                                  "training classes")
    index = {c: i for i, c in enumerate(classes)}
    files: list[tuple[str, int, int, int]] = []
    for name in found:
        base = root / name
        for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                if _is_image(fname):
                    full = os.path.join(dirpath, fname)
                    st = os.stat(full)
                    files.append((os.path.relpath(full, root), index[name], st.st_size, st.st_mtime_ns))
    if not files:
        raise DataSourceError(f"image {what} data: no image files ({', '.join(IMG_EXTENSIONS)}) under "
                              f"{str(root)!r}")
    return list(classes), files


def image_problem(path: str, mode: str = "decode") -> str | None:
    """None when ``path`` is a readable image, else the reason. "decode" decodes every pixel (catches truncated
    files); "header" only parses the header (fast; catches wrong formats and empty files)."""
    try:
        with Image.open(path) as im:
            if mode == "header":
                im.verify()
            else:
                im.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_chunk(paths: list[str], mode: str) -> list[str | None]:
    return [image_problem(p, mode) for p in paths]


def check_images(paths: Sequence[str], mode: str = "decode", workers: int | None = None) -> list[str | None]:
    """``image_problem`` of every path, in parallel processes for large lists (ImageNet: 1.28 M files)."""
    if mode == "none":
        return [None] * len(paths)
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(paths) < PARALLEL_CHECK_MIN:
        return _check_chunk(list(paths), mode)
    chunks = [list(paths[i:i + CHECK_CHUNK]) for i in range(0, len(paths), CHECK_CHUNK)]
    # forkserver: safe even when the caller already runs threads (Ray); children import only PIL and numpy.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        out: list[str | None] = []
        for part in pool.map(_check_chunk, chunks, [mode] * len(chunks)):
            out.extend(part)
    return out


def read_folder_split(root: Path, what: str, files: list[tuple[str, int, int, int]], check: str,
                      check_workers: int | None) -> tuple[ImageSplit, list[str]]:
    """The split's readable images; unreadable ones are logged by path and left out."""
    rel = [f[0] for f in files]
    problems = check_images([str(root / r) for r in rel], check, check_workers)
    bad = [f"{root / r}: {p}" for r, p in zip(rel, problems, strict=True) if p is not None]
    for line in bad:
        log.warning("image %s data: skipping unreadable image %s", what, line)
    keep = [i for i, p in enumerate(problems) if p is None]
    paths = np.array([os.fsencode(rel[i]) for i in keep], dtype=bytes)
    labels = np.array([files[i][1] for i in keep], dtype=np.int64)
    return ImageSplit(labels=labels, root=str(root.resolve()), paths=paths), bad


# ---------------------------------------------------------------------------------------------- arrays
def _as_uint8(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 (N, H, W, C): integer pixels 0..255 as they are, floats in [0, 1] scaled by 255."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or min(images.shape[1:3]) < 1:
        raise DataSourceError(f"{where}: images must be (N, H, W) or (N, H, W, C) with C in (1, 3), got shape "
                              f"{images.shape}")
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        if images.size and (np.nanmin(images) < 0 or np.nanmax(images) > 1 or not np.isfinite(images).all()):
            raise DataSourceError(f"{where}: float images must lie in [0, 1]")
        return np.rint(images * 255).astype(np.uint8)
    if np.issubdtype(images.dtype, np.integer):
        if images.size and (images.min() < 0 or images.max() > 255):
            raise DataSourceError(f"{where}: integer images must lie in 0..255")
        return images.astype(np.uint8)
    raise DataSourceError(f"{where}: images of dtype {images.dtype} are not supported")


def _as_labels(labels: Any, n: int, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or (n and labels.min() < 0):
        raise DataSourceError(f"{where}: labels must be {n} non-negative integers, got shape {labels.shape} "
                              f"dtype {labels.dtype}")
    return labels.astype(np.int64)


def read_npz(path: Path) -> tuple[dict[str, ImageSplit], list[str] | None]:
    """{"train": split[, "valid": split]} and the class names if the file has them."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"image data file {path} is not a readable .npz: {exc}") from None
    splits = {}
    for split, prefix in (("train", ""), ("valid", "valid_")):
        if f"{prefix}images" not in arrays:
            continue
        if f"{prefix}labels" not in arrays:
            raise DataSourceError(f"image data file {path}: {prefix}images without {prefix}labels")
        images = _as_uint8(arrays[f"{prefix}images"], f"{path} [{prefix}images]")
        if len(images) == 0:
            raise DataSourceError(f"image data file {path}: {prefix}images is empty")
        splits[split] = ImageSplit(labels=_as_labels(arrays[f"{prefix}labels"], len(images),
                                                     f"{path} [{prefix}labels]"), images=images)
    if "train" not in splits:
        raise DataSourceError(f"image data file {path} has no 'images' array (keys: {sorted(arrays)})")
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else None
    return splits, classes


def read_parquet(path: Path, image_size: int | None) -> tuple[ImageSplit, list[str]]:
    """Decode a Parquet file of encoded images + labels; unreadable rows are logged and left out.

    Images of different sizes need ``image_size`` (shorter side resized to it, then center-cropped).
    """
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise DataSourceError(f"image data file {path} is not a readable Parquet file: {exc}") from None
    if "image" not in table.column_names or "label" not in table.column_names:
        raise DataSourceError(f"image data file {path} needs 'image' and 'label' columns, has "
                              f"{table.column_names}")
    raw = table.column("image").to_pylist()
    labels = table.column("label").to_pylist()
    decoded, kept, bad = [], [], []
    for i, cell in enumerate(raw):
        blob = cell.get("bytes") if isinstance(cell, dict) else cell
        try:
            if not isinstance(blob, bytes | bytearray):
                raise ValueError(f"not encoded image bytes ({type(blob).__name__})")
            with Image.open(io.BytesIO(blob)) as im:
                im.load()
                decoded.append(im.copy())
            kept.append(i)
        except Exception as exc:  # see image_problem
            bad.append(f"{path} row {i}: {type(exc).__name__}: {exc}")
    for line in bad:
        log.warning("image data: skipping unreadable image %s", line)
    if not decoded:
        raise DataSourceError(f"image data file {path} holds no readable images")
    gray = all(im.mode in ("1", "L", "I", "I;16", "F") for im in decoded)
    sizes = {im.size for im in decoded}
    if image_size is None and len(sizes) > 1:
        raise DataSourceError(f"image data file {path} holds images of {len(sizes)} sizes; set image_size")
    side = image_size or min(next(iter(sizes)))
    pixels = np.stack([np.asarray(fit_square(im.convert("L" if gray else "RGB"), side)) for im in decoded])
    try:
        label_array = _as_labels(np.array([labels[i] for i in kept]), len(kept), f"{path} [label]")
    except (TypeError, ValueError) as exc:
        raise DataSourceError(f"{path} [label]: {exc}") from None
    return ImageSplit(labels=label_array, images=_as_uint8(pixels, str(path))), bad


def fit_square(im: Image.Image, side: int) -> Image.Image:
    """Shorter side resized to ``side`` (bilinear), then the center square; unchanged when already that size."""
    if im.size == (side, side):
        return im
    w, h = im.size
    scale = side / min(w, h)
    im = im.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.Resampling.BILINEAR)
    w, h = im.size
    left, top = (w - side) // 2, (h - side) // 2
    return im.crop((left, top, left + side, top + side))


def resize_split(split: ImageSplit, side: int) -> ImageSplit:
    """In-memory images brought to ``side`` × ``side`` (see ``fit_square``)."""
    assert split.images is not None
    if split.images.shape[1:3] == (side, side):
        return split
    gray = split.images.shape[-1] == 1
    out = np.stack([np.asarray(fit_square(Image.fromarray(im[..., 0] if gray else im), side))
                    for im in split.images])
    return replace(split, images=_as_uint8(out, "resized images"))


def channel_stats(images: np.ndarray, limit: int = 20000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the [0, 1] scale (of at most ``limit`` evenly spaced images)."""
    step = max(1, len(images) // limit)
    x = images[::step].astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 1, 2))
    std = np.maximum(x.std(axis=(0, 1, 2)), 1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


# ---------------------------------------------------------------------------------------------- caching
_SPLIT_FIELDS = ("labels", "images", "paths")


def save_image_data(data: ImageData, folder: Path) -> None:
    """Write ``data`` as ``arrays.npz`` + ``meta.json`` atomically (``domains.cache.save_arrays``)."""
    arrays = {"permutation": data.permutation}
    for split in ("train", "valid"):
        s = getattr(data, split)
        arrays.update({f"{split}_{f}": getattr(s, f) for f in _SPLIT_FIELDS if getattr(s, f) is not None})
    meta = {k: getattr(data, k) for k in ("classes", "image_size", "channels", "mean", "std", "resize",
                                          "min_scale", "crop_padding", "hflip", "skipped", "key")}
    save_arrays(arrays, folder, {**meta, "roots": {"train": data.train.root, "valid": data.valid.root}})


def _image_data(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> ImageData:
    splits = {s: ImageSplit(root=meta["roots"][s], **{f: arrays.get(f"{s}_{f}") for f in _SPLIT_FIELDS})
              for s in ("train", "valid")}
    lists = {k: tuple(meta.pop(k)) for k in ("classes", "mean", "std", "skipped")}
    meta.pop("roots")
    return ImageData(train=splits["train"], valid=splits["valid"], permutation=arrays["permutation"], **lists,
                     **meta)


def load_image_data(folder: Path) -> ImageData | None:
    """The cached ``ImageData`` in ``folder``, or None when absent or incomplete."""
    return load_arrays(folder, _image_data)


def iter_stamps(files: Sequence[tuple[str, int, int, int]]) -> Iterator[str]:
    """One line per file (path, size, mtime) for the cache key, without building one huge string."""
    for rel, _, size, mtime in files:
        yield f"{rel}\0{size}\0{mtime}\n"
