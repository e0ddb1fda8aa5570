"""Where a sweep's files live and how they are written, for every layer (orchestrator, fitting, domains).

A storage is a local path or any pyarrow filesystem URI (``s3://bucket/prefix?endpoint_override=...``, ``gs://``).
``resolve`` turns it into a filesystem and a path, ``child_uri`` names a file under it with the URI's options kept,
``redact`` makes it safe to log. Writes are atomic: readers see the old content or the new, never a torn file
(a rename on a local disk, one PUT on an object store); ``atomic_folder`` does the same for a local folder.
Imports pyarrow only, never torch or Ray: the fitting service and the CLI's early checks use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = ["atomic_folder", "child_uri", "local_dir", "redact", "resolve", "write_atomic", "write_lines",
           "write_parquet"]


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it for a local path or a URI."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    return pafs.FileSystem.from_uri(uri)


def local_dir(uri: str) -> Path | None:
    """The local folder of a storage, or None for object storage."""
    fs, path = resolve(uri)
    return Path(path) if isinstance(fs, pafs.LocalFileSystem) else None


def child_uri(uri: str, leaf: str) -> str:
    """``leaf`` (a relative path) under the storage ``uri``: a path, or a URI keeping the storage's query options
    (endpoint, region, ...), which must stay after the path."""
    if "://" not in uri:
        return f"{resolve(uri)[1]}/{leaf}"
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{leaf}"))


def redact(uri: str) -> str:
    """The URI without credentials or query options, for log lines (``s3://key:secret@bucket`` must not leak)."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=""))


def write_atomic(fs: pafs.FileSystem, path: str, data: bytes | pa.Buffer) -> None:
    """Readers see the old bytes or the new ones, never a torn file: rename on a local disk, one PUT elsewhere."""
    if isinstance(fs, pafs.LocalFileSystem):
        parent, _, name = path.rpartition("/")
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with fs.open_output_stream(tmp) as out:
                out.write(data)
            fs.move(tmp, path)  # rename(2)
        except OSError:  # a full disk: leave no partial temporary file behind to take more space
            with contextlib.suppress(OSError):
                fs.delete_file(tmp)
            raise
    else:
        with fs.open_output_stream(path) as out:  # the object appears only when the upload completes
            out.write(data)


def write_parquet(table: pa.Table, fs: pafs.FileSystem, path: str) -> None:
    """``table`` as one Parquet file at ``path`` (its folder created), written atomically."""
    fs.create_dir(path.rpartition("/")[0], recursive=True)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_atomic(fs, path, sink.getvalue())


@contextlib.contextmanager
def atomic_folder(folder: Path, marker: str) -> Iterator[Path]:
    """Yield a temporary sibling of the local ``folder`` to fill; on success it is renamed into place in one step.

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
    """Write ``lines`` to the local ``path`` atomically (temp file + rename), readable by other users of a shared
    cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(f"{line}\n" for line in lines)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the corpus from other users of a shared cache
    os.replace(tmp, path)
