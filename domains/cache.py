"""Per-sweep preprocessing caches, written so that readers never see half a folder (``sweepstore.atomic_folder``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from sweepstore import atomic_folder

T = TypeVar("T")


MANIFEST = "MANIFEST.json"  # written last into a generated corpus: its presence with equal params = done


def manifest_params(folder: Path) -> dict[str, Any] | None:
    """The parameters a generated corpus in ``folder`` was written with; None if absent or unreadable."""
    try:
        return json.loads((folder / MANIFEST).read_text())["params"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_manifest(folder: Path, params: dict[str, Any], counts: dict[str, Any]) -> None:
    """Mark ``folder`` as a complete corpus generated with ``params`` (``counts`` for the reader's benefit)."""
    (folder / MANIFEST).write_text(json.dumps({"params": params, "counts": counts}, indent=1) + "\n")


def file_stamp(path: Path) -> list[Any]:
    """(resolved path, size, mtime) of an input file: part of a cache key, so edited data is re-read and
    unchanged data never is."""
    st = os.stat(path)
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def cache_key(version: int, settings: Any, **inputs: Any) -> str:
    """A short hash of the cache layout's ``version``, the source ``settings`` (JSON data) and the ``inputs``'
    stamps: the name of the folder a prepared data set is cached in."""
    blob = json.dumps({"version": version, "source": settings, **inputs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def load_or_build(folder: Path, load: Callable[[Path], T | None], build: Callable[[], T],
                  save: Callable[[T, Path], None]) -> T:
    """The data cached in ``folder`` when ``load`` finds it complete; else ``build`` it and ``save`` it there
    (``save`` writes atomically, e.g. with ``atomic_folder``)."""
    cached = load(folder)
    if cached is not None:
        return cached
    data = build()
    save(data, folder)
    return data


def load_or_build_folder(folder: Path, load: Callable[[Path], T | None], build: Callable[[Path], None],
                         marker: str) -> T:
    """The data cached in ``folder``; else ``build(tmp)`` writes it file by file into a temporary sibling folder
    (ending with ``marker``), which then becomes ``folder`` in one rename, and it is loaded from there. For data
    too large to hold in memory and save afterwards: what a reader loads is always the finished folder."""
    cached = load(folder)
    if cached is not None:
        return cached
    with atomic_folder(folder, marker) as tmp:
        build(tmp)
    built = load(folder)
    if built is None:
        raise RuntimeError(f"cache folder {folder} is incomplete right after it was built")
    return built


ARRAYS_FILE = "arrays.npz"
META_FILE = "meta.json"


def save_arrays(arrays: Mapping[str, np.ndarray], folder: Path, meta: Mapping[str, Any] | None = None, *,
                meta_file: str = META_FILE, files: Mapping[str, bytes] | None = None) -> None:
    """A prepared data set written into ``folder`` in one atomic step: named arrays (``arrays.npz``), plain data
    (``meta_file``, JSON, written last inside the temporary folder) and any other ``files`` (name -> bytes)."""
    with atomic_folder(folder, meta_file) as tmp:
        np.savez(tmp / ARRAYS_FILE, **arrays)
        for name, blob in (files or {}).items():
            (tmp / name).write_bytes(blob)
        (tmp / meta_file).write_text(json.dumps(dict(meta or {}), ensure_ascii=False), encoding="utf-8")


def load_arrays(folder: Path, build: Callable[[dict[str, np.ndarray], dict[str, Any]], T] | None = None, *,
                meta_file: str = META_FILE) -> T | dict[str, np.ndarray] | None:
    """What ``save_arrays`` wrote into ``folder``, as ``build(arrays, meta)`` (the arrays alone without
    ``build``); None when it is absent, incomplete or of another layout (a cache to build again)."""
    try:
        meta = json.loads((folder / meta_file).read_text(encoding="utf-8"))
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        return arrays if build is None else build(arrays, meta)
    except (OSError, ValueError, KeyError, TypeError):
        return None
