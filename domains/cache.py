"""Per-sweep preprocessing caches, written so that readers never see half a folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_folder(folder: Path, marker: str) -> Iterator[Path]:
    """Yield a temporary sibling of ``folder`` to fill; on success it is renamed into place in one step.

    ``marker`` is a file the finished folder always holds: when a concurrent writer won the race to rename,
    its complete folder is kept and ours is dropped.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        yield tmp
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
