"""Per-sweep preprocessing caches, written so that readers never see half a folder."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """Write ``lines`` to ``path`` atomically (temp file + rename), readable by other users of a shared cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(f"{line}\n" for line in lines)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the corpus from other users of a shared cache
    os.replace(tmp, path)


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
