"""The results store on object storage (a real S3 protocol server on loopback), through a pyarrow URI."""

from __future__ import annotations

import pyarrow.fs as pafs

from fitting.store import ResultsStore
from sweepstore import resolve
from tests.fitting.test_store import row
from tests.s3_server import s3_bucket


def test_store_roundtrip_idempotence_and_corrupt_files_on_s3() -> None:
    with s3_bucket() as template:
        uri = template.format(prefix="store-test")
        store = ResultsStore(uri)
        store.check_writable()
        store.write_trial(row("a"), [{"iteration": 1, "steps": 10, "samples": 5.0, "train_loss": 1.0,
                                      "metrics": {"val_xent": 2.0}, "time": 0.1}])
        store.write_trial(row("a", best_value=3.0))  # rewrite: one object, replaced
        store.write_trial(row("b"))
        fs, root = resolve(uri)
        with fs.open_output_stream(f"{root}/results/junk.parquet") as out:
            out.write(b"not parquet")
        warnings: list[str] = []
        table = store.read_results(warnings)
        assert sorted(table["trial_key"].to_pylist()) == ["a", "b"]
        assert dict(zip(table["trial_key"].to_pylist(), table["best_value"].to_pylist(), strict=True))["a"] == 3.0
        assert len(warnings) == 1 and "junk.parquet" in warnings[0]
        assert store.read_history("a").num_rows == 1
        assert isinstance(fs, pafs.S3FileSystem)
