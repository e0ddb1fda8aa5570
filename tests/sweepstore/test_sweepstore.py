"""The one storage module: URIs keep their options, logs lose their secrets, writes are never torn."""

from __future__ import annotations

import ast
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import sweepstore
from sweepstore import atomic_folder, child_uri, local_dir, redact, resolve, write_atomic, write_lines, write_parquet

ROOT = Path(__file__).resolve().parents[2]


def test_child_uri_keeps_the_query_after_the_path(tmp_path: Path) -> None:
    uri = "s3://bucket/sweeps/a?endpoint_override=127.0.0.1:9000&scheme=http"
    assert child_uri(uri, "tune/x.pkl") == "s3://bucket/sweeps/a/tune/x.pkl?endpoint_override=127.0.0.1:9000&scheme=http"
    assert child_uri(str(tmp_path / "s"), "tune/x.pkl") == f"{tmp_path.resolve()}/s/tune/x.pkl"
    assert local_dir(str(tmp_path)) == tmp_path.resolve()


def test_redact_drops_credentials_and_options() -> None:
    assert redact("s3://key:secret@bucket/p?endpoint_override=h") == "s3://bucket/p"
    assert redact("/plain/path") == "/plain/path"


def test_atomic_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    fs, root = resolve(str(tmp_path))
    write_atomic(fs, f"{root}/a.bin", b"one")
    write_atomic(fs, f"{root}/a.bin", b"two")
    table = pa.table({"x": [1, 2]})
    write_parquet(table, fs, f"{root}/deep/t.parquet")  # creates its folder
    write_lines(tmp_path / "lines" / "l.txt", ["a", "b"])
    assert (tmp_path / "a.bin").read_bytes() == b"two"
    assert pq.read_table(tmp_path / "deep" / "t.parquet").equals(table)
    assert (tmp_path / "lines" / "l.txt").read_text() == "a\nb\n"
    assert (tmp_path / "lines" / "l.txt").stat().st_mode & 0o777 == 0o644
    assert not [p for p in tmp_path.rglob(".*")]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "taken" / "inside").mkdir(parents=True)  # the rename onto a non-empty folder fails
    with pytest.raises(OSError):
        write_atomic(pafs.LocalFileSystem(), f"{tmp_path}/taken", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "k"
    with pytest.raises(RuntimeError), atomic_folder(target, "done") as tmp:
        (tmp / "part").write_text("x")
        raise RuntimeError("build failed")
    assert not target.exists() and list((tmp_path / "cache").iterdir()) == []
    with atomic_folder(target, "done") as tmp:
        (tmp / "done").write_text("ok")
    assert (target / "done").read_text() == "ok"


def test_imports_neither_torch_nor_ray() -> None:
    tree = ast.parse(Path(sweepstore.__file__).read_text())
    roots = {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    roots |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not roots & {"torch", "ray", "orchestrator", "domains", "fitting"}, roots
