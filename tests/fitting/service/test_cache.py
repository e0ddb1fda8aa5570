"""The store index: reads only what changed, keeps versions per group, packs rows, forgets what vanished."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from fitting.service.cache import StoreIndex
from fitting.service.chunks import MAX_CHUNKS, FilePart, GroupRowStore
from fitting.store import ResultsStore
from tests.fitting.service.helpers import SIZES, trial_rows, write


def test_versions_move_only_for_the_group_that_changed(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    write(store, trial_rows(family="word", sizes=SIZES[:3]))
    write(store, trial_rows(family="char", sizes=SIZES[:3], metric="val_bpc"))
    index = StoreIndex(store.uri)
    assert index.refresh(force=True)
    before = index.families("lm")
    assert set(before) == {"char", "word"} and index.files_read == 72
    listings = index.listings
    index._dir_settled = True  # the writes above are long done as far as this test is concerned
    assert not index.refresh() and index.listings == listings  # unchanged folder: no listing at all

    row = trial_rows(family="word", sizes=SIZES[:1], seeds=1)[0]
    store.write_trial({**row, "best_value": 0.01})  # a resumed trial rewrites its own file
    assert index.refresh()
    after = index.families("lm")
    assert after["char"].version == before["char"].version
    assert after["word"].version > before["word"].version
    assert index.files_read == 73
    frame = index.rows("lm", "word").frame
    assert len(frame) == 36 and (frame["trial_key"] == row["trial_key"]).sum() == 1  # replaced, not added
    assert frame.loc[frame["trial_key"] == row["trial_key"], "best_value"].item() == 0.01


def test_removed_files_disappear_and_empty_domains_with_them(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    write(store, trial_rows(domain="nmt", sizes=SIZES[:1], seeds=1))
    write(store, trial_rows(sizes=SIZES[:1], seeds=1))
    index = StoreIndex(store.uri)
    index.refresh(force=True)
    assert index.domains() == ["lm", "nmt"]
    for path in Path(store.results_dir).glob("nmt-*.parquet"):
        path.unlink()
    index.refresh()
    assert index.domains() == ["lm"] and index.families("nmt") == {} and index.rows("nmt", "word") is None
    assert index.counts() == (6, 0)


def test_local_folder_mtime_triggers_the_listing_and_ttl_is_the_safety_net(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    write(store, trial_rows(sizes=SIZES[:1], seeds=1))
    index = StoreIndex(store.uri, list_ttl=3600)
    index.refresh(force=True)
    index._dir_settled = True
    results = Path(store.results_dir)
    first = next(results.glob("*.parquet"))
    data = first.read_bytes()
    stat = os.stat(results)
    first.write_bytes(data)  # rewritten in place: the folder does not change ...
    os.utime(results, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not index.refresh()
    index.list_ttl = 0.0  # ... so only the periodic listing sees it
    index.refresh()
    assert index.files_read == 7


def test_row_store_packs_compacts_and_tracks_statuses() -> None:
    rows = GroupRowStore()

    def part(i: int, status: str = "completed", value: float = 1.0) -> FilePart:
        return FilePart(f"f{i}", 1000 + i, pa.table({"trial_key": [f"k{i}"], "best_value": [value]}), [status])

    for i in range(3 * MAX_CHUNKS):  # a live sweep: one file per refresh
        rows.add([part(i, "stopped" if i % 3 == 0 else "completed")])
        assert len(rows._chunks) <= MAX_CHUNKS
    assert len(rows) == 3 * MAX_CHUNKS
    assert rows.statuses() == {"stopped": MAX_CHUNKS, "completed": 2 * MAX_CHUNKS}
    assert rows.remove("f0") and not rows.remove("f0") and not rows.remove("nope")
    assert rows.remove("f5")
    rows.add([part(5, value=9.0)])  # the rewritten file comes back with its new row
    table = rows.table()
    assert table is not None and len(rows._chunks) == 1 and table.num_rows == 3 * MAX_CHUNKS - 1
    assert all(c.num_chunks == 1 for c in table.columns)  # contiguous
    values = dict(zip(table["trial_key"].to_pylist(), table["best_value"].to_pylist(), strict=True))
    assert values["k5"] == 9.0 and "k0" not in values
    assert rows.updated_ns() == 1000 + 3 * MAX_CHUNKS - 1
    for i in range(1, 3 * MAX_CHUNKS):
        rows.remove(f"f{i}")
    assert len(rows) == 0 and rows.table() is None and rows.updated_ns() == 0
