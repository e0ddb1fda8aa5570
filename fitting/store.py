"""The results store: one Parquet file per finished trial under ``<storage>/results/``.

Files are named by the trial's deterministic key, so rewriting a trial replaces it (a resumed sweep never
duplicates a row) and each write is a single atomic step (rename on a local disk, a single put on object
storage). Per-iteration rows go to ``<storage>/history/``. Any pyarrow filesystem URI works (path, s3://,
gs://; see ``sweepstore``). This module imports pyarrow only: the fitting service must stay light.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweepstore import resolve, write_parquet

log = logging.getLogger(__name__)

RESULTS_DIR = "results"
HISTORY_DIR = "history"

# Trial outcomes. "completed": ran to its resource cap or stopped itself when validation stopped improving;
# "stopped": early-stopped by ASHA; "diverged": non-finite loss; "errored": raised (after retries).
STATUSES = ("completed", "stopped", "diverged", "errored")

RESULT_SCHEMA = pa.schema(
    [
        ("trial_key", pa.string()),  # deterministic from domain, family, fraction, width, hparams, seed; no "/"
        ("config_key", pa.string()),  # the same without the seed: seeds of one configuration share it
        ("trial_id", pa.string()),  # Ray Tune's id, for the dashboard and logs
        ("sweep", pa.string()),
        ("domain", pa.string()),
        ("family", pa.string()),
        ("fraction", pa.float64()),
        ("train_size", pa.float64()),
        ("size_unit", pa.string()),
        ("width", pa.int64()),
        ("num_params", pa.int64()),  # trainable parameters, shared ones once (domains.parameters)
        ("hparams", pa.string()),  # JSON object
        ("seed", pa.int64()),
        ("status", pa.string()),
        ("stop_reason", pa.string()),
        ("metric", pa.string()),  # the primary metric's name (what is fitted by default)
        ("best_value", pa.float64()),  # minimum of the primary metric over the trial
        ("best_metrics", pa.string()),  # JSON object: metric -> minimum over the trial
        ("final_metrics", pa.string()),  # JSON object: metric -> last value
        ("steps", pa.int64()),  # resource used: optimizer steps (the ASHA time attribute)
        ("samples", pa.float64()),  # training data consumed, in size_unit
        ("iterations", pa.int64()),
        ("restores", pa.int64()),  # times the trial resumed from its checkpoint after a failure
        ("wall_seconds", pa.float64()),
        ("started_at", pa.timestamp("ms", tz="UTC")),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
        ("code_version", pa.string()),
        ("error", pa.string()),
        # Placement of the attempt that finished the trial, as the trainable saw it (null in older stores): the
        # Ray node, the GPU ids Ray assigned, and wall-clock start and last report. Enough to check placement
        # and GPU-slot utilization from the store alone (orchestrator.utilization).
        ("node_id", pa.string()),
        ("gpu_ids", pa.list_(pa.string())),
        ("run_started_at", pa.timestamp("us", tz="UTC")),
        ("run_ended_at", pa.timestamp("us", tz="UTC")),
        # Cost and convergence (null in older stores). non_embedding_params: num_params without embedding tables
        # and vocabulary output layers. train_flops: training FLOPs of the whole trial (flops_per_step x steps);
        # flops_per_step: forward + backward FLOPs of one optimizer step on the global batch, counted once per
        # trial by torch's FlopCounterMode (domains.flops). converged: False when the trial was still improving at
        # its step cap, True when it stopped by patience or plateaued, null when ASHA stopped it or it errored
        # or diverged (orchestrator.trial_loop.trial_converged).
        ("non_embedding_params", pa.int64()),
        ("train_flops", pa.float64()),
        ("flops_per_step", pa.float64()),
        ("converged", pa.bool_()),
    ]
)
# Columns every results file must have; any other column missing from an older file reads as null.
REQUIRED_COLUMNS = ("trial_key", "domain", "family", "fraction", "train_size", "status", "best_value")

HISTORY_SCHEMA = pa.schema(
    [
        ("trial_key", pa.string()),
        ("iteration", pa.int64()),
        ("steps", pa.int64()),
        ("samples", pa.float64()),
        ("train_loss", pa.float64()),
        ("metrics", pa.string()),  # JSON object of validation metrics at this iteration
        ("time", pa.float64()),  # seconds since the trial started
        ("train_extra", pa.string()),  # JSON object of the task's training counters (epochs, train error, ...)
        ("train_flops", pa.float64()),  # training FLOPs so far (null in older stores)
    ]
)


def _json(value: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(value or {}), sort_keys=True, default=float)


def conform(table: pa.Table, schema: pa.Schema = RESULT_SCHEMA) -> pa.Table:
    """A results (or history) table in exactly the store's schema: columns an older file lacks are added as nulls,
    so readers never meet a missing column (files written before a column existed stay readable)."""
    columns = [table[n] if n in table.column_names else pa.nulls(table.num_rows, schema.field(n).type)
               for n in schema.names]
    return pa.Table.from_arrays(columns, names=schema.names).cast(schema)


@dataclass
class ResultsStore:
    """Reads and writes trial rows under one storage URI."""

    uri: str
    fs: pafs.FileSystem = field(init=False, repr=False)
    root: str = field(init=False)

    def __post_init__(self) -> None:
        self.fs, self.root = resolve(self.uri)

    @property
    def results_dir(self) -> str:
        return f"{self.root}/{RESULTS_DIR}"

    @property
    def history_dir(self) -> str:
        return f"{self.root}/{HISTORY_DIR}"

    def check_writable(self) -> None:
        """Fail now, not after hours: create the folders and write and remove a probe file."""
        probe = f"{self.results_dir}/.probe-{uuid.uuid4().hex}"
        self.fs.create_dir(self.results_dir, recursive=True)
        self.fs.create_dir(self.history_dir, recursive=True)
        with self.fs.open_output_stream(probe) as out:
            out.write(b"ok")
        self.fs.delete_file(probe)

    def write_trial(self, row: Mapping[str, Any], history: Iterable[Mapping[str, Any]] = ()) -> None:
        """Write (or replace) one trial's row and its per-iteration history."""
        record = dict(row)
        for key in ("hparams", "best_metrics", "final_metrics"):
            if not isinstance(record.get(key), str):
                record[key] = _json(record.get(key))
        if record.get("status") not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {record.get('status')!r}")
        table = pa.Table.from_pylist([{name: record.get(name) for name in RESULT_SCHEMA.names}],
                                     schema=RESULT_SCHEMA)
        hist_rows = [
            {**{name: h.get(name) for name in HISTORY_SCHEMA.names}, "trial_key": record["trial_key"],
             **{key: h[key] if isinstance(h.get(key), str) else _json(h.get(key))
                for key in ("metrics", "train_extra")}}
            for h in history
        ]
        if hist_rows:
            hist = pa.Table.from_pylist(hist_rows, schema=HISTORY_SCHEMA)
            write_parquet(hist, self.fs, f"{self.history_dir}/{record['trial_key']}.parquet")
        write_parquet(table, self.fs, f"{self.results_dir}/{record['trial_key']}.parquet")

    def list_files(self) -> list[pafs.FileInfo]:
        """Result files with their size and mtime (cheap: one directory listing)."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.results_dir, allow_not_found=True))
        except FileNotFoundError:
            return []
        return [i for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
                and not i.base_name.startswith(".")]

    def read_file(self, path: str) -> pa.Table:
        """One result file, checked against the schema."""
        table = pq.read_table(path, filesystem=self.fs)
        missing = [n for n in REQUIRED_COLUMNS if n not in table.column_names]
        if missing:
            raise ValueError(f"missing columns {missing}")
        return conform(table)

    def read_results(self, warnings: list[str] | None = None) -> pa.Table:
        """All trial rows. A broken file is skipped with a warning (logged and appended to ``warnings``)."""
        tables = []
        for info in self.list_files():
            try:
                tables.append(self.read_file(info.path))
            except Exception as exc:  # a corrupt or foreign file must never take the reader down
                msg = f"skipped unreadable results file {info.base_name}: {exc}"
                log.warning(msg)
                if warnings is not None:
                    warnings.append(msg)
        if not tables:
            return RESULT_SCHEMA.empty_table()
        return pa.concat_tables(tables, promote_options="default")

    def finished_keys(self) -> set[str]:
        """Trial keys already stored with a final outcome (errored trials are worth another try)."""
        table = self.read_results()
        return {k for k, s in zip(table["trial_key"].to_pylist(), table["status"].to_pylist(), strict=True)
                if s != "errored"}

    def read_history(self, trial_key: str) -> pa.Table:
        """One trial's per-iteration rows in ``HISTORY_SCHEMA`` (columns newer than the file read as null)."""
        return conform(pq.read_table(f"{self.history_dir}/{trial_key}.parquet", filesystem=self.fs), HISTORY_SCHEMA)
