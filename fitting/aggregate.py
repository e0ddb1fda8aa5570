"""From trial rows to one learning-curve point per shard, the way the paper scores configurations.

A configuration (``config_key``: family, width, hyperparameters; all its seeds share it) is scored at a shard
by the **median over seeds of the minimum validation value**, and each shard keeps its best configuration.
Only ``completed`` and ``stopped`` trials count: a diverged or errored trial says nothing about the error
the configuration can reach, and a non-finite value is no measurement.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fitting.laws import jsonable

USABLE_STATUSES = ("completed", "stopped")
JSON_COLUMNS = ("hparams", "best_metrics", "final_metrics")
FRAME_COLUMNS = ("train_size", "fraction", "config_key", "value", "width", "num_params", "trial_key", "seed",
                 "hparams", "non_embedding_params")


@dataclass
class ShardPoint:
    """The best configuration at one shard: the learning-curve point (train_size, best_error)."""

    fraction: float
    train_size: float
    best_error: float  # median over the best configuration's seeds of each trial's minimum
    best_width: int | None
    best_params: int | None  # num_params of the best configuration
    config_key: str
    trial_keys: list[str]  # the best configuration's trials
    seeds: list[int]
    n_trials: int  # usable trials at this shard, all configurations
    n_configs: int = 0  # configurations compared at this shard
    hparams: dict[str, Any] = field(default_factory=dict)  # the best configuration's hyperparameters
    best_params_non_embedding: int | None = None  # non_embedding_params of the best configuration
    # Diagnostics (fitting.diagnostics sets them): converged per trial of trial_keys (None: unknown), the best
    # configuration still improving at its cap, its width at the grid's edge ("largest"/"smallest": β_p
    # censored; None: one width here), and searched hyperparameters whose best value is at a range edge.
    trial_converged: list[bool | None] = field(default_factory=list)
    not_converged: bool | None = None
    width_at_edge: bool | None = None
    width_edge: str | None = None
    hparam_at_edge: dict[str, str] = field(default_factory=dict)  # name -> "low" | "high"

    def to_dict(self) -> dict[str, Any]:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})


@dataclass
class TrialSet:
    """Usable trials of one (domain, family) with the value being fitted, one row per trial.

    ``frame`` columns: :data:`FRAME_COLUMNS`; any other column of the usable rows: :meth:`columns`.
    """

    frame: pd.DataFrame
    metric: str
    n_ignored: int  # rows left out: diverged/errored status, missing or non-finite value or size
    source: pd.DataFrame | None = field(default=None, repr=False)  # the rows ``frame`` was taken from
    usable: np.ndarray | None = field(default=None, repr=False)  # mask of the source rows in ``frame``, in order

    def columns(self, names: tuple[str, ...]) -> pd.DataFrame:
        """Columns of the usable rows that ``frame`` leaves out (status, converged, ...), aligned with ``frame``;
        None where the source has no such column. Sliced on demand: most fits never ask."""
        n = len(self.frame)
        src = self.source
        return pd.DataFrame({c: pd.Series(src[c].to_numpy()[self.usable] if src is not None and c in src.columns
                                          else np.full(n, None, dtype=object), dtype=object) for c in names})


def _parse(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value:
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def parse_json_column(values: list[Any]) -> list[dict[str, Any]]:
    """Parse a JSON column, each distinct string once (all seeds of a configuration share their hparams); dicts
    already parsed are kept as they are (read-only)."""
    cache: dict[str, dict[str, Any]] = {}
    out = []
    for v in values:
        if type(v) is dict:
            out.append(v)
        elif isinstance(v, str):
            parsed = cache.get(v)
            if parsed is None:
                parsed = cache[v] = _parse(v)
            out.append(parsed)
        else:
            out.append(_parse(v))
    return out


def load_rows(source: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """Store rows as a DataFrame with the JSON columns (hparams, best_metrics, ...) parsed to dicts once.

    Accepts a pyarrow Table from ``ResultsStore.read_results`` or a DataFrame (already parsed columns are
    kept as they are). Returns a new frame; the input is not modified. Rows with identical JSON text share
    one dict: treat the parsed values as read-only.
    """
    df = source.to_pandas() if isinstance(source, pa.Table) else source.copy()
    for col in JSON_COLUMNS:
        if col in df.columns:
            df[col] = pd.Series(parse_json_column(df[col].tolist()), index=df.index, dtype=object)
    return df


def one_family(source: pa.Table | pd.DataFrame, what: str, hint: str = "") -> tuple[pd.DataFrame, str, str]:
    """(rows, domain, family) of rows that must hold one (domain, family) at most: ``what`` names the caller in the
    error when they hold more, ``hint`` ends it. Empty strings when the rows have no such column."""
    rows = load_rows(source) if isinstance(source, pa.Table) else source
    domains = rows["domain"].dropna().unique() if "domain" in rows.columns else []
    families = rows["family"].dropna().unique() if "family" in rows.columns else []
    if len(domains) > 1 or len(families) > 1:
        raise ValueError(f"{what} takes one (domain, family); got domains {list(domains)}, "
                         f"families {list(families)}{hint}")
    return rows, str(domains[0]) if len(domains) else "", str(families[0]) if len(families) else ""


def primary_metric(df: pd.DataFrame) -> str:
    """The rows' primary metric name (the most common one when rows disagree)."""
    if "metric" not in df.columns or df["metric"].dropna().empty:
        raise ValueError("rows carry no primary metric name; pass metric=")
    return str(df["metric"].dropna().astype(str).mode().iloc[0])


def usable_trials(df: pd.DataFrame, metric: str | None = None) -> TrialSet:
    """Usable trials with the value of ``metric`` (default: the primary metric, i.e. ``best_value``).

    A row whose primary metric *is* ``metric`` contributes ``best_value``; any other row contributes
    ``best_metrics[metric]`` (parsed here if ``df`` did not come from :func:`load_rows`).
    """
    name = metric or primary_metric(df)
    n = len(df)
    if n == 0:
        return TrialSet(pd.DataFrame(columns=list(FRAME_COLUMNS)), name, 0)
    primary = (df["metric"].astype(str).to_numpy() == name) if "metric" in df.columns else np.zeros(n, bool)
    value = np.full(n, np.nan)
    if "best_value" in df.columns:
        value[primary] = pd.to_numeric(df["best_value"], errors="coerce").to_numpy(float)[primary]
    if not primary.all() and "best_metrics" in df.columns:
        other = np.flatnonzero(~primary)
        metrics = df["best_metrics"].to_numpy()
        for i in other:
            v = _parse(metrics[i]).get(name)
            value[i] = v if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
    size = pd.to_numeric(df["train_size"], errors="coerce").to_numpy(float)
    ok = (df["status"].isin(USABLE_STATUSES).to_numpy() & np.isfinite(value) & np.isfinite(size)
          & (size > 0))

    def column(col: str, default: Any = None) -> np.ndarray:
        return df[col].to_numpy()[ok] if col in df.columns else np.full(int(ok.sum()), default, dtype=object)

    frame = pd.DataFrame({
        "train_size": size[ok],
        "fraction": pd.to_numeric(df["fraction"], errors="coerce").to_numpy(float)[ok]
        if "fraction" in df.columns else np.full(int(ok.sum()), np.nan),
        "config_key": column("config_key").astype(str) if "config_key" in df.columns
        else column("trial_key").astype(str),
        "value": value[ok],
        "width": column("width"),
        "num_params": column("num_params"),
        "trial_key": column("trial_key"),
        "seed": column("seed"),
        "hparams": column("hparams"),
        "non_embedding_params": column("non_embedding_params"),
    })
    return TrialSet(frame.reset_index(drop=True), name, int(n - ok.sum()), df, ok)


def _int_or_none(value: Any) -> int | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return int(out) if math.isfinite(out) else None


def best_per_shard(trials: TrialSet) -> list[ShardPoint]:
    """Score each configuration at each shard by the median over its seeds; keep the best per shard.

    Ties go to the smaller ``config_key`` so the choice is deterministic. Points are sorted by size.
    """
    f = trials.frame
    if f.empty:
        return []
    groups = f.groupby(["train_size", "config_key"], sort=True)
    med = groups["value"].median().reset_index()
    best = med.sort_values(["train_size", "value", "config_key"], kind="stable").drop_duplicates("train_size")
    index = groups.indices
    per_shard = f.groupby("train_size")
    n_trials, n_configs = per_shard.size(), per_shard["config_key"].nunique()
    col = {c: f[c].to_numpy() for c in ("fraction", "width", "num_params", "trial_key", "seed", "hparams",
                                        "non_embedding_params")}
    points = []
    for size, key, value in best[["train_size", "config_key", "value"]].itertuples(index=False):
        rows = index[(size, key)]
        first = rows[0]
        points.append(ShardPoint(
            fraction=float(col["fraction"][first]),
            train_size=float(size),
            best_error=float(value),
            best_width=_int_or_none(col["width"][first]),
            best_params=_int_or_none(col["num_params"][first]),
            config_key=str(key),
            trial_keys=[str(k) for k in col["trial_key"][rows]],
            seeds=[s for s in (_int_or_none(v) for v in col["seed"][rows]) if s is not None],
            n_trials=int(n_trials[size]),
            n_configs=int(n_configs[size]),
            hparams=_parse(col["hparams"][first]),
            best_params_non_embedding=_int_or_none(col["non_embedding_params"][first]),
        ))
    return sorted(points, key=lambda p: p.train_size)


def aggregate(df: pd.DataFrame, metric: str | None = None) -> list[ShardPoint]:
    """Rows of one (domain, family) → the best configuration per shard (see :func:`best_per_shard`)."""
    return best_per_shard(usable_trials(df, metric))
