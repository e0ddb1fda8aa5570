"""Incremental, read-only index of the results store: what changed is read, nothing else.

A sweep adds one small Parquet file per trial while users poll the service, so a request must neither re-read
thousands of files nor wait for a listing of all of them. The index therefore

* decides cheaply whether the store may have changed: on a local store by one ``stat`` of the results folder
  (its mtime moves whenever a file is created, renamed over or removed there, and the store writes every
  trial by rename), on an object store (no folder mtimes) by listing at most once per ``list_ttl`` seconds.
  A local store is also relisted after ``list_ttl`` (default 30 s) to catch files rewritten in place, which
  the store itself never does;
* when it may have changed, lists the folder once and reads only files whose (path, size, mtime) is new,
  dropping files that disappeared;
* remembers unreadable files by (path, size, mtime), so each is read and logged once, and reported as a
  warning until it is fixed or removed;
* keeps rows per (domain, family), packed (``chunks``), with a version number that changes only when that
  group's files change, which is what the fit and response caches key on.

Domain and family names only ever index these in-memory tables; nothing from a request becomes a path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from fitting.aggregate import load_rows
from fitting.service.chunks import FilePart, GroupRowStore
from fitting.store import RESULT_SCHEMA, ResultsStore

log = logging.getLogger(__name__)

Group = tuple[str, str]  # (domain, family)
REQUIRED = ("trial_key", "domain", "family", "fraction", "train_size", "status", "best_value")
LOCAL_LIST_TTL = 30.0  # seconds; a local store is re-checked by folder mtime on every request in between
REMOTE_LIST_TTL = 2.0  # seconds between listings of an object store
SETTLE_NS = 100_000_000  # a folder mtime this close to a listing may hide a change in the same clock tick
READ_BATCH = 1024  # files read between packings: bounds the memory of single-row tables in flight


@dataclass
class _File:
    """One indexed results file and the groups it has rows in."""

    size: int
    mtime_ns: int
    groups: tuple[Group, ...]


@dataclass
class _Bad:
    size: int
    mtime_ns: int
    message: str


@dataclass
class GroupRows:
    """The rows of one (domain, family) at one version, parsed once (JSON columns as dicts)."""

    version: int
    frame: pd.DataFrame
    metrics: frozenset[str]  # metric names its rows report (primary metric and keys of best_metrics)


@dataclass
class GroupInfo:
    """What the overview needs about one (domain, family) without building its rows."""

    version: int
    statuses: Counter[str] = field(default_factory=Counter)
    updated_ns: int = 0  # newest file mtime


def _read_fast(fs: pafs.FileSystem, path: str) -> pa.Table:
    """One results file, same checks as ``ResultsStore.read_file`` but ~3x faster for files in the store's schema.

    Reads single-threaded (the files are tiny and several are read in parallel) and only falls back to the
    store's select-and-cast when the file's schema differs from the store schema.
    """
    with fs.open_input_file(path) as f:
        table = pq.ParquetFile(f).read(use_threads=False)
    missing = [n for n in REQUIRED if n not in table.column_names]
    if missing:
        raise ValueError(f"missing columns {missing}")
    if table.schema.equals(RESULT_SCHEMA, check_metadata=False):
        return table
    names = [n for n in RESULT_SCHEMA.names if n in table.column_names]
    return table.select(names).cast(pa.schema([RESULT_SCHEMA.field(n) for n in names]))


def _split(table: pa.Table) -> dict[Group, tuple[pa.Table, list[str]]]:
    """A file's rows by (domain, family), each with its statuses; rows without either name make the file invalid."""
    domains, families = table.column("domain").to_pylist(), table.column("family").to_pylist()
    if any(d is None or f is None or d == "" or f == "" for d, f in zip(domains, families, strict=True)):
        raise ValueError("rows without a domain or family name")
    statuses = [str(s) for s in table.column("status").to_pylist()]
    if table.num_rows == 1:
        return {(str(domains[0]), str(families[0])): (table, statuses)}
    rows: dict[Group, list[int]] = {}
    for i, g in enumerate(zip(domains, families, strict=True)):
        rows.setdefault((str(g[0]), str(g[1])), []).append(i)
    return {g: (table.take(idx), [statuses[i] for i in idx]) for g, idx in rows.items()}


class StoreIndex:
    """Rows of the results store by (domain, family), kept current incrementally. Thread-safe."""

    def __init__(self, results_uri: str, *, list_ttl: float | None = None, read_workers: int | None = None,
                 on_refresh: Callable[[StoreIndex, float, int], None] | None = None) -> None:
        self.store = ResultsStore(results_uri)
        self.local = isinstance(self.store.fs, pafs.LocalFileSystem)
        self.list_ttl = list_ttl if list_ttl is not None else (LOCAL_LIST_TTL if self.local else REMOTE_LIST_TTL)
        workers = read_workers or (min(4, os.cpu_count() or 1) if self.local else 16)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="results-read")
        self._on_refresh = on_refresh
        self._lock = threading.RLock()
        self._files: dict[str, _File] = {}
        self._bad: dict[str, _Bad] = {}
        self._groups: dict[Group, GroupRowStore] = {}
        self._info: dict[Group, GroupInfo] = {}
        self._rows: dict[Group, GroupRows] = {}
        self._version = 0  # bumped on every change; groups take the value current at their change
        self.warnings_version = 0
        self._listed_mono: float | None = None
        self._dir_sig: int | None = None  # folder mtime seen before the last listing (None: missing)
        self._dir_settled = False
        self.refreshed_at: datetime | None = None
        self.files_read = 0  # parquet files read since start (a cheap index reads only what changed)
        self.listings = 0

    # ------------------------------------------------------------------------------------------- refresh
    def _dir_mtime(self) -> int | None:
        try:
            return os.stat(self.store.results_dir).st_mtime_ns
        except OSError:
            return None

    def _due(self) -> bool:
        if self._listed_mono is None or time.monotonic() - self._listed_mono >= self.list_ttl:
            return True
        if not self.local:
            return False
        return self._dir_mtime() != self._dir_sig or not self._dir_settled

    def refresh(self, force: bool = False) -> bool:
        """Bring the index up to date if the store may have changed; True when anything changed."""
        if not force and not self._due():
            return False
        with self._lock:
            if not force and not self._due():  # another request refreshed while this one waited
                return False
            return self._refresh()

    def _refresh(self) -> bool:
        t0 = time.perf_counter()
        dir_sig = self._dir_mtime() if self.local else None
        started_ns = time.time_ns()
        infos = self.store.list_files()
        self.listings += 1
        current = {i.path: (int(i.size or 0), int(i.mtime_ns or 0)) for i in infos}
        gone = [p for p in (*self._files, *self._bad) if p not in current]
        todo = [p for p, sig in current.items() if not self._known(p, sig)]
        touched: set[Group] = set()
        warnings_changed = False
        for path in gone:
            touched |= self._drop(path)
            warnings_changed |= self._bad.pop(path, None) is not None
        for start in range(0, len(todo), READ_BATCH):
            batch = todo[start:start + READ_BATCH]
            t, w = self._apply(batch, list(self._pool.map(self._read_one, batch)), current)
            touched |= t
            warnings_changed |= w
        self.files_read += len(todo)
        if touched or warnings_changed:
            self._version += 1
        for g in touched:
            self._update_info(g)
        if warnings_changed:
            self.warnings_version = self._version
        self._listed_mono = time.monotonic()
        self._dir_sig = dir_sig
        self._dir_settled = dir_sig is None or started_ns - dir_sig > SETTLE_NS
        self.refreshed_at = datetime.now(tz=UTC)
        seconds = time.perf_counter() - t0
        if len(todo) >= 100:
            log.info("indexed %d results files (%d listed, %d unreadable) in %.1f s", len(todo), len(current),
                     len(self._bad), seconds)
        if self._on_refresh is not None:
            self._on_refresh(self, seconds, len(todo))
        return bool(touched or warnings_changed)

    def _apply(self, paths: list[str], outcomes: list[Any],
               current: dict[str, tuple[int, int]]) -> tuple[set[Group], bool]:
        """Put one batch of read files into the index: (groups touched, whether the warnings changed)."""
        touched: set[Group] = set()
        warnings_changed = False
        new: dict[Group, list[FilePart]] = {}
        for path, outcome in zip(paths, outcomes, strict=True):
            size, mtime_ns = current[path]
            touched |= self._drop(path)
            if isinstance(outcome, Exception):
                msg = f"skipped unreadable results file {path.rsplit('/', 1)[-1]}: {outcome}"
                log.warning(msg)
                self._bad[path] = _Bad(size, mtime_ns, msg)
                warnings_changed = True
                continue
            warnings_changed |= self._bad.pop(path, None) is not None
            self._files[path] = _File(size, mtime_ns, tuple(outcome))
            for g, (table, statuses) in outcome.items():
                new.setdefault(g, []).append(FilePart(path, mtime_ns, table, statuses))
        for g, parts in new.items():
            self._groups.setdefault(g, GroupRowStore()).add(parts)
            touched.add(g)
        return touched, warnings_changed

    def _known(self, path: str, sig: tuple[int, int]) -> bool:
        f = self._files.get(path) or self._bad.get(path)
        return f is not None and (f.size, f.mtime_ns) == sig

    def _read_one(self, path: str) -> dict[Group, tuple[pa.Table, list[str]]] | Exception:
        try:
            return _split(_read_fast(self.store.fs, path))
        except Exception as exc:  # a corrupt or foreign file must never take the service down
            return exc

    def _drop(self, path: str) -> set[Group]:
        old = self._files.pop(path, None)
        if old is None:
            return set()
        for g in old.groups:
            rows = self._groups.get(g)
            if rows is not None:
                rows.remove(path)
        return set(old.groups)

    def _update_info(self, g: Group) -> None:
        rows = self._groups.get(g)
        if rows is None or not len(rows):
            self._groups.pop(g, None)
            self._info.pop(g, None)
            self._rows.pop(g, None)
            return
        self._info[g] = GroupInfo(self._version, rows.statuses(), rows.updated_ns())

    # ------------------------------------------------------------------------------------------- queries
    def domains(self) -> list[str]:
        with self._lock:
            return sorted({d for d, _ in self._info})

    def families(self, domain: str) -> dict[str, GroupInfo]:
        """family → info for one domain (empty when the domain is unknown)."""
        with self._lock:
            return {f: info for (d, f), info in sorted(self._info.items()) if d == domain}

    def overview(self) -> dict[str, dict[str, GroupInfo]]:
        """domain → family → info, for every group."""
        with self._lock:
            out: dict[str, dict[str, GroupInfo]] = {}
            for (d, f), info in sorted(self._info.items()):
                out.setdefault(d, {})[f] = info
            return out

    def rows(self, domain: str, family: str) -> GroupRows | None:
        """The group's rows as a parsed DataFrame with the version they belong to (built once per version)."""
        with self._lock:
            info = self._info.get((domain, family))
            if info is None:
                return None
            cached = self._rows.get((domain, family))
            if cached is not None and cached.version == info.version:
                return cached
            table = self._groups[(domain, family)].table()
            frame = load_rows(table if table is not None else RESULT_SCHEMA.empty_table())
            built = GroupRows(info.version, frame, _metric_names(frame))
            self._rows[(domain, family)] = built
            return built

    def warnings(self) -> list[str]:
        with self._lock:
            return [b.message for _, b in sorted(self._bad.items())]

    def counts(self) -> tuple[int, int]:
        """(files indexed, files unreadable); lock-free so that health checks never wait for a refresh."""
        return len(self._files), len(self._bad)

    @property
    def current_version(self) -> int:
        """Changes whenever any group or the set of unreadable files changes."""
        return self._version

    @property
    def ready(self) -> bool:
        """True once the first listing has been indexed."""
        return self._listed_mono is not None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _metric_names(frame: pd.DataFrame) -> frozenset[str]:
    names: set[str] = set()
    if "metric" in frame.columns:
        names.update(str(m) for m in frame["metric"].dropna().unique())
    if "best_metrics" in frame.columns:
        seen: set[int] = set()
        for d in frame["best_metrics"]:
            if isinstance(d, dict) and id(d) not in seen:
                seen.add(id(d))
                names.update(str(k) for k in d)
    return frozenset(names)


def iter_statuses(infos: Iterable[GroupInfo]) -> Counter[str]:
    """Status counts summed over groups."""
    total: Counter[str] = Counter()
    for info in infos:
        total.update(info.statuses)
    return total
