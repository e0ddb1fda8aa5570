"""Rows of one (domain, family), packed into a few contiguous Arrow tables and addressable by source file.

The store holds one single-row Parquet file per trial. Kept as one Arrow table each, 10,000 trials cost about
350 MB of schema, array and buffer objects; packed into contiguous tables the same rows take a few MB. Rows of
a file that disappeared or was rewritten are marked dead in their chunk and dropped at the next compaction,
which also merges the small chunks a live sweep adds one trial at a time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

MAX_CHUNKS = 16  # compact beyond this many chunks even if nobody asks for the rows


@dataclass(eq=False)
class _Chunk:
    table: pa.Table  # contiguous (combine_chunks): one set of buffers for all its rows
    paths: list[str]  # source file of each row
    statuses: list[str]
    mtimes: np.ndarray  # file mtime (ns) of each row
    alive: np.ndarray  # False for rows of files since removed or rewritten


@dataclass
class FilePart:
    """The rows one file contributes to a group."""

    path: str
    mtime_ns: int
    table: pa.Table
    statuses: list[str]


class GroupRowStore:
    """The rows of one group. Not thread-safe: the index calls it under its lock."""

    def __init__(self) -> None:
        self._chunks: list[_Chunk] = []
        self._where: dict[str, tuple[_Chunk, np.ndarray]] = {}  # path -> (chunk, row indices)

    def __len__(self) -> int:
        """Number of files with rows here."""
        return len(self._where)

    def add(self, parts: list[FilePart]) -> None:
        """Add the rows of new files as one chunk (files already here must be removed first)."""
        if not parts:
            return
        table = pa.concat_tables([p.table for p in parts], promote_options="default").combine_chunks()
        paths = [p.path for p in parts for _ in range(p.table.num_rows)]
        chunk = _Chunk(table, paths, [s for p in parts for s in p.statuses],
                       np.array([p.mtime_ns for p in parts for _ in range(p.table.num_rows)], dtype=np.int64),
                       np.ones(len(paths), dtype=bool))
        start = 0
        for p in parts:
            self._where[p.path] = (chunk, np.arange(start, start + p.table.num_rows))
            start += p.table.num_rows
        self._chunks.append(chunk)
        if len(self._chunks) > MAX_CHUNKS:
            self.compact()

    def remove(self, path: str) -> bool:
        """Mark a file's rows dead; False when the file had none here."""
        loc = self._where.pop(path, None)
        if loc is None:
            return False
        chunk, rows = loc
        chunk.alive[rows] = False
        if not chunk.alive.any():
            self._chunks.remove(chunk)
        return True

    def compact(self) -> None:
        """Merge all live rows into one contiguous chunk."""
        if len(self._chunks) == 1 and self._chunks[0].alive.all():
            return
        if not self._chunks:
            return
        tables, paths, statuses, mtimes = [], [], [], []
        for c in self._chunks:
            keep = np.flatnonzero(c.alive)
            tables.append(c.table if keep.size == len(c.paths) else c.table.take(pa.array(keep)))
            paths += [c.paths[i] for i in keep]
            statuses += [c.statuses[i] for i in keep]
            mtimes.append(c.mtimes[keep])
        table = pa.concat_tables(tables, promote_options="default").combine_chunks()
        merged = _Chunk(table, paths, statuses, np.concatenate(mtimes), np.ones(len(paths), dtype=bool))
        rows: dict[str, list[int]] = {}
        for i, path in enumerate(paths):
            rows.setdefault(path, []).append(i)
        self._where = {path: (merged, np.array(idx)) for path, idx in rows.items()}
        self._chunks = [merged]

    def table(self) -> pa.Table | None:
        """All live rows as one table (compacting first); None when empty."""
        self.compact()
        return self._chunks[0].table if self._chunks else None

    def statuses(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for c in self._chunks:
            counts.update(s for s, ok in zip(c.statuses, c.alive, strict=True) if ok)
        return counts

    def updated_ns(self) -> int:
        """Newest mtime among the files with live rows here (0 when empty)."""
        return max((int(c.mtimes[c.alive].max()) for c in self._chunks if c.alive.any()), default=0)
