"""Small storage helpers shared by the driver's writers (ASHA state, the storage lease, results): atomic writes on
any pyarrow filesystem and URIs safe to log. Free of Ray imports, so the CLI can check a lease before loading Ray."""

from __future__ import annotations

import contextlib
import uuid
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs


def redact(uri: str) -> str:
    """The URI without credentials or query options, for log lines (``s3://key:secret@bucket`` must not leak)."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=""))


def write_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Readers see the old bytes or the new ones, never a torn file: rename on a local disk, one PUT elsewhere."""
    if isinstance(fs, pafs.LocalFileSystem):
        parent, _, name = path.rpartition("/")
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with fs.open_output_stream(tmp) as out:
                out.write(data)
            fs.move(tmp, path)
        except OSError:  # a full disk: leave no partial temporary file behind to take more space
            with contextlib.suppress(OSError):
                fs.delete_file(tmp)
            raise
    else:
        with fs.open_output_stream(path) as out:  # the object appears only when the upload completes
            out.write(data)
