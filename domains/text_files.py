"""Reading a user's text data file: one clear ``DataSourceError`` for every way it can be unusable.

A truncated or mis-encoded file is far more likely a mistake than intended, so the error names the file and,
for bad bytes, the line and byte offset where decoding failed — before any trial is queued.
"""

from __future__ import annotations

from pathlib import Path

from domains.base import DataSourceError


def read_utf8(path: Path, what: str) -> str:
    """The text of ``path``; ``what`` names the file's role in errors (e.g. ``"LM data file"``)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataSourceError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataSourceError(f"{what} {path} is not UTF-8 text (line {line}, byte {exc.start}: "
                              f"{raw[exc.start:exc.start + 1]!r})") from None
