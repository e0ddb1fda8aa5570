"""Image data on real images: class-balanced nested shards, splits, caching, array files, ImageFolder trees
with corrupt files, and the batches that reach the model."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from domains.base import DataSourceError, TrialSetup
from domains.image import ImageDomain
from domains.image import data as image_data
from domains.image.data import ImageData
from domains.image.loaders import Cursor
from domains.shards import class_balanced_permutation
from tests.domains.image.conftest import encode

FRACTIONS = [2.0**k for k in range(-6, 1)]


def assert_balanced(labels: np.ndarray, order: np.ndarray) -> None:
    """Every prefix of ``order`` holds each class within one image of its proportional share."""
    counts = np.bincount(labels)
    share = counts / counts.sum()
    onehot = np.eye(len(counts), dtype=np.int64)[labels[order]]
    prefix = np.cumsum(onehot, axis=0)
    expected = np.arange(1, len(order) + 1)[:, None] * share[None, :]
    assert np.abs(prefix - expected).max() <= 1.0


def test_balanced_order_keeps_class_proportions_in_every_prefix() -> None:
    rng = np.random.default_rng(1)
    skewed = np.repeat(np.arange(5), [400, 200, 100, 50, 7])  # 54:1 between the largest and smallest class
    labels = skewed[rng.permutation(len(skewed))]
    order = class_balanced_permutation(labels, seed=3)
    assert sorted(order) == list(range(len(labels)))
    assert_balanced(labels, order)
    assert not np.array_equal(order, class_balanced_permutation(labels, seed=4))
    np.testing.assert_array_equal(order, class_balanced_permutation(labels, seed=3))


def test_digit_shards_are_nested_and_class_balanced(digits_data: ImageData) -> None:
    domain = ImageDomain()
    labels = digits_data.train.labels
    assert len(digits_data.train) == 1438 and len(digits_data.valid) == 359  # 20 % held out
    assert_balanced(labels, digits_data.permutation)
    shards = [digits_data.shard_rows(f) for f in FRACTIONS]
    for small, large in itertools.pairwise(shards):
        assert set(small) < set(large)
        np.testing.assert_array_equal(large[: len(small)], small)  # a prefix, so nested
    for f, rows in zip(FRACTIONS, shards, strict=True):
        assert domain.train_size(digits_data, f, "resnet") == len(rows) == np.ceil(f * 1438)
        per_class = np.bincount(labels[rows], minlength=10)
        assert np.abs(per_class - len(rows) * np.bincount(labels) / len(labels)).max() <= 1, (f, per_class)
    # the validation split is stratified too
    assert np.bincount(digits_data.valid.labels).min() >= 34


def test_heldout_validation_overlaps_no_training_image(digits_npz: Path, tmp_path: Path) -> None:
    domain = ImageDomain()
    data = domain.prepare({"train": str(digits_npz), "valid_fraction": 0.25}, tmp_path)
    train = {im.tobytes() for im in data.train.images}
    valid = [im.tobytes() for im in data.valid.images]
    assert len(data.valid) == round(0.25 * 1797)
    assert sum(v in train for v in valid) <= 5  # only images that happen to be pixel-identical duplicates


def test_max_images_keeps_the_full_sets_small_shards(digits_npz: Path, tmp_path: Path) -> None:
    domain = ImageDomain()
    full = domain.prepare({"train": str(digits_npz)}, tmp_path / "a")
    sub = domain.prepare({"train": str(digits_npz), "max_images": 200}, tmp_path / "b")
    assert len(sub.train) == 200
    for f in (1 / 8, 1 / 4):
        a = full.train.images[full.shard_rows(f * 200 / 1438)]
        b = sub.train.images[sub.shard_rows(f)]
        np.testing.assert_array_equal(a, b)


def test_prepare_is_cached_and_keyed_by_settings(digits_npz: Path, tmp_path: Path) -> None:
    domain = ImageDomain()
    first = domain.prepare({"train": str(digits_npz)}, tmp_path)
    again = domain.prepare({"train": str(digits_npz), "workers": 3}, tmp_path)  # workers do not change data
    other = domain.prepare({"train": str(digits_npz), "shuffle_seed": 1}, tmp_path)
    assert again.key == first.key != other.key
    np.testing.assert_array_equal(again.permutation, first.permutation)
    assert (tmp_path / first.key / "arrays.npz").is_file()
    assert not np.array_equal(other.permutation, first.permutation)


def test_npz_with_its_own_validation_arrays_and_grayscale_stats(digits: tuple[np.ndarray, np.ndarray],
                                                                tmp_path: Path) -> None:
    images, labels = digits
    path = tmp_path / "d.npz"
    np.savez(path, images=images[:300].astype(np.float32) / 255, labels=labels[:300],
             valid_images=images[300:400], valid_labels=labels[300:400])
    data = ImageDomain().prepare({"train": str(path), "image_size": 12}, tmp_path / "cache")
    assert len(data.train) == 300 and len(data.valid) == 100
    assert data.train.images.shape[1:] == (12, 12, 1) and data.valid.images.shape[1:] == (12, 12, 1)
    assert data.channels == 1 and data.classes == tuple(str(i) for i in range(10))
    assert 0.2 < data.mean[0] < 0.45 and data.crop_padding == 1


def test_parquet_of_encoded_images(digits: tuple[np.ndarray, np.ndarray], tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    images, labels = digits
    blobs = [encode(images[i], "PNG") for i in range(60)]
    blobs[7] = b"not an image"
    table = pa.table({"image": [{"bytes": b, "path": f"{i}.png"} for i, b in enumerate(blobs)],
                      "label": labels[:60].astype(np.int64)})
    path = tmp_path / "digits.parquet"
    pq.write_table(table, path)
    with caplog.at_level(logging.WARNING):
        data = ImageDomain().prepare({"train": str(path), "valid_fraction": 0.25}, tmp_path / "cache")
    assert len(data.train) + len(data.valid) == 59
    assert data.channels == 3 and data.image_size == 16
    assert "row 7" in caplog.text and any("row 7" in s for s in data.skipped)


@pytest.mark.parametrize("check_workers", [1, 2])  # in-process, and a process pool as for ImageNet
def test_imagefolder_with_corrupt_images_reports_each_file_and_skips_it(
        write_folder: Callable[..., list[Path]], tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch, check_workers: int) -> None:
    monkeypatch.setattr(image_data, "PARALLEL_CHECK_MIN", 1)
    monkeypatch.setattr(image_data, "CHECK_CHUNK", 5)
    root = tmp_path / "train"
    files = write_folder(root, classes=(0, 1, 2), per_class=8)
    truncated = next(p for p in files if p.suffix == ".jpg")
    truncated.write_bytes(truncated.read_bytes()[: len(truncated.read_bytes()) // 2])  # a cut-off JPEG
    garbage = root / "2" / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing sensible")
    (root / "2" / "notes.txt").write_text("not an image, not listed")
    with caplog.at_level(logging.WARNING):
        data = ImageDomain().prepare({"train": str(root), "image_size": 12, "valid_fraction": 0.25,
                                      "check_workers": check_workers}, tmp_path / "cache")
    for bad in (truncated, garbage):
        assert str(bad) in caplog.text
        assert any(s.startswith(str(bad)) for s in data.skipped)
    assert len(data.skipped) == 2
    assert len(data.train) + len(data.valid) == 24 - 1  # 24 good files written, one of them truncated
    assert data.classes == ("0", "1", "2") and data.in_memory is False
    kept = {data.train.path(i) for i in range(len(data.train))} | {data.valid.path(i) for i in range(len(data.valid))}
    assert str(truncated) not in kept and str(garbage) not in kept
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a cache hit names them again
        again = ImageDomain().prepare({"train": str(root), "image_size": 12, "valid_fraction": 0.25},
                                      tmp_path / "cache")
    assert again.key == data.key and str(truncated) in caplog.text and str(garbage) in caplog.text


def test_imagefolder_batches_are_the_same_with_and_without_workers(write_folder: Callable[..., list[Path]],
                                                                   tmp_path: Path) -> None:
    write_folder(tmp_path / "train", per_class=6)
    write_folder(tmp_path / "val", per_class=2, offset=6)
    domain = ImageDomain()
    data = domain.prepare({"train": str(tmp_path / "train"), "valid": str(tmp_path / "val"), "image_size": 12,
                           "min_scale": 0.5}, tmp_path / "cache")
    assert (len(data.train), len(data.valid), data.resize) == (18, 6, 14)
    setup = TrialSetup("resnet", 1.0, 4, {"batch_size": 8, "depth": 10}, seed=0)
    tasks = [domain.build_task(data, setup, workers=w) for w in (0, 2)]
    for _ in range(3):  # across an epoch boundary (18 images, 8 per batch)
        (x0, y0), (x2, y2) = (t.batches.next() for t in tasks)
        assert x0.shape == (8, 3, 12, 12) and x0.dtype == torch.uint8
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    x, _ = next(iter(tasks[0].valid))
    assert x.shape == (6, 3, 12, 12)
    stats = tasks[0].train(2)
    assert stats.steps == 2 and np.isfinite(stats.loss) and stats.samples == 16
    assert set(tasks[0].evaluate()) == {"val_top1_err", "val_xent"}  # 3 classes: no top-5


def test_imagefolder_replicas_decode_only_their_share_of_each_batch(write_folder: Callable[..., list[Path]],
                                                                     tmp_path: Path) -> None:
    """Data-parallel replicas plan their share before decoding (3 of 8 images each, not 8 and keep 3), and the
    shares are exactly the whole batch's slices: augmentation is seeded per image, not per decoding process."""
    write_folder(tmp_path / "train", per_class=6)
    domain = ImageDomain()
    data = domain.prepare({"train": str(tmp_path / "train"), "image_size": 12, "min_scale": 0.5}, tmp_path / "cache")
    setup = TrialSetup("resnet", 1.0, 4, {"batch_size": 8, "depth": 10}, seed=0)
    whole, *replicas = (domain.build_task(data, setup, workers=0) for _ in range(4))
    for rank, task in enumerate(replicas):
        task.join_replicas(rank, len(replicas), sync=lambda loss: loss)
    for _ in range(3):
        x, y = whole.batches.next()
        shares = [task.batches.next(task.rank_share) for task in replicas]
        assert [len(xs) for xs, _ in shares] == [3, 3, 2]
        for rank, (xs, ys) in enumerate(shares):
            assert torch.equal(xs, x[rank::3]) and torch.equal(ys, y[rank::3])


def test_imagefolder_validation_classes_must_be_training_classes(write_folder: Callable[..., list[Path]],
                                                                 tmp_path: Path) -> None:
    write_folder(tmp_path / "train", classes=(0, 1), per_class=3)
    write_folder(tmp_path / "val", classes=(1, 7), per_class=1)
    with pytest.raises(DataSourceError, match=r"\['7'\]"):
        ImageDomain().prepare({"train": str(tmp_path / "train"), "valid": str(tmp_path / "val")}, tmp_path / "c")


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "missing", "not a directory"),
    (lambda p: p / "missing.npz", "does not exist"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no class sub-folders"),
    (lambda p: (p / "e" / "cls").mkdir(parents=True) or p / "e", "no image files"),
    (lambda p: np.savez(p / "x.npz", pixels=np.zeros((3, 4, 4))) or p / "x.npz", "no 'images' array"),
    (lambda p: np.savez(p / "y.npz", images=np.zeros((3, 4, 4)), labels=[0, 1]) or p / "y.npz", "labels must be"),
    (lambda p: (p / "z.npz").write_bytes(b"junk") and p / "z.npz", "not a readable .npz"),
])
def test_unusable_sources_fail_at_prepare(tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    with pytest.raises(DataSourceError, match=message):
        ImageDomain().prepare({"train": str(make(tmp_path))}, tmp_path / "cache")


def test_spec_fields_are_validated() -> None:
    model = ImageDomain.source_model
    assert model(train="builtin:digits").valid_fraction == 0.2
    with pytest.raises(ValueError, match="extra"):
        model(train="x", image_sise=32)
    with pytest.raises(ValueError):
        model(train="x", check="maybe")


def test_cursor_runs_through_epochs_and_resumes() -> None:
    a = Cursor(5, seed=7)
    items = np.concatenate([a.take(3)[0] for _ in range(4)])  # 12 items: 2 full epochs + 2
    assert sorted(items[:5]) == sorted(items[5:10]) == list(range(5))
    b = Cursor.from_state(a.state())
    np.testing.assert_array_equal(a.take(4)[0], b.take(4)[0])
    assert a.epochs == pytest.approx(16 / 5)
