"""Real small images for the image-domain tests: scikit-learn's handwritten digits, as arrays and as files."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from domains.image import ImageDomain
from domains.image.data import ImageData
from domains.image.domain import write_digits


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builtin digits file (1,797 real 8×8 images, 10 classes), written once per test session."""
    return write_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def digits(digits_npz: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(digits_npz) as npz:
        return npz["images"], npz["labels"]


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory: pytest.TempPathFactory) -> ImageData:
    """``builtin:digits`` prepared as a sweep would: 1,438 training and 359 validation images."""
    return ImageDomain().prepare({"train": "builtin:digits", "hflip": False}, tmp_path_factory.mktemp("cache"))


def encode(image: np.ndarray, fmt: str, side: int = 16) -> bytes:
    """A digit as real PNG/JPEG bytes: upscaled to ``side`` pixels, RGB."""
    im = Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR).convert("RGB")
    out = io.BytesIO()
    im.save(out, format=fmt)
    return out.getvalue()


def _write_folder(root: Path, images: np.ndarray, labels: np.ndarray, classes: tuple[int, ...],
                  per_class: int, offset: int = 0) -> list[Path]:
    """ImageFolder tree ``root/<digit>/<i>.{png,jpg}`` (even digits PNG, odd JPEG); returns the files."""
    files = []
    for c in classes:
        idx = np.flatnonzero(labels == c)[offset:offset + per_class]
        fmt, ext = ("PNG", "png") if c % 2 == 0 else ("JPEG", "jpg")
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in idx:
            path = root / str(c) / f"{i}.{ext}"
            path.write_bytes(encode(images[i], fmt))
            files.append(path)
    return files


@pytest.fixture
def write_folder(digits: tuple[np.ndarray, np.ndarray]) -> Callable[..., list[Path]]:
    """Write real digit images as an ImageFolder tree: ``write_folder(root, classes, per_class, offset=0)``."""
    def write(root: Path, classes: tuple[int, ...] = (0, 1, 2), per_class: int = 8, offset: int = 0) -> list[Path]:
        return _write_folder(root, *digits, classes, per_class, offset)
    return write
