"""GPU placement and GPU-slot utilization of a finished sweep, computed from its results rows alone.

Each row says where the attempt that finished the trial ran (``node_id``, ``gpu_ids``) and when (``run_started_at``
to ``run_ended_at``, the trainable's wall clock); the GPU fraction a trial asked for comes from its plan. That is
enough to check after the fact that no GPU was oversubscribed and how well the queue kept the GPUs busy. Pure
functions over plain data: no Ray, no Tune. Busy time spans nodes, so it assumes their clocks agree (NTP keeps
them within milliseconds; trials last seconds or more).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

EPSILON = 1e-9  # float sums of fractions such as 0.25 + 0.5 + 0.25


@dataclass(frozen=True)
class Span:
    """One trial attempt's GPU use: ``gpu`` GPUs spread evenly over ``gpu_ids`` of ``node`` from start to end."""

    node: str
    gpu_ids: tuple[str, ...]
    gpu: float
    start: float  # seconds since the epoch
    end: float

    def per_gpu(self) -> float:
        """Load put on each listed GPU (a 0.25 trial loads its GPU by 0.25, a 2-GPU trial each of its two by 1)."""
        return self.gpu / len(self.gpu_ids) if self.gpu_ids else 0.0


def _seconds(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def spans(rows: Iterable[Mapping[str, Any]], gpu_of: Callable[[Mapping[str, Any]], float]) -> list[Span]:
    """Spans of the rows that carry a placement; rows from stores written before placement was recorded (nulls)
    are left out. ``gpu_of`` gives a row's requested GPU fraction (from its plan)."""
    out = []
    for row in rows:
        if row.get("node_id") is None or row.get("run_started_at") is None or row.get("run_ended_at") is None:
            continue
        out.append(Span(node=str(row["node_id"]), gpu_ids=tuple(str(g) for g in row.get("gpu_ids") or ()),
                        gpu=float(gpu_of(row)), start=_seconds(row["run_started_at"]),
                        end=_seconds(row["run_ended_at"])))
    return out


def _peak(loads: Iterable[tuple[float, float, float]]) -> float:
    """Largest sum of loads at any instant; an interval ending when another starts does not overlap it."""
    events = sorted((t, sign * load) for start, end, load in loads for t, sign in ((start, 1), (end, -1)))
    # at equal times the negative (ending) loads sort first
    level = peak = 0.0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


def peak_gpu_load(items: Sequence[Span]) -> dict[tuple[str, str], float]:
    """Peak load of every (node, GPU id) seen: above 1 means the GPU was oversubscribed."""
    per_gpu: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for s in items:
        for g in s.gpu_ids:
            per_gpu.setdefault((s.node, g), []).append((s.start, s.end, s.per_gpu()))
    return {key: _peak(loads) for key, loads in per_gpu.items()}


def peak_node_occupancy(items: Sequence[Span]) -> dict[str, float]:
    """Peak number of GPUs in use on every node (sum of the GPU fractions of its trials running at once)."""
    per_node: dict[str, list[tuple[float, float, float]]] = {}
    for s in items:
        per_node.setdefault(s.node, []).append((s.start, s.end, s.gpu))
    return {node: _peak(loads) for node, loads in per_node.items()}


def queued_window(items: Sequence[Span]) -> tuple[float, float]:
    """From the first trial's start to the last trial's start: while some trial was still waiting for a slot."""
    starts = [s.start for s in items]
    return min(starts), max(starts)


def started_per_second(items: Sequence[Span]) -> float:
    """Scheduling throughput: trial starts per second over ``queued_window`` (the first start opens it)."""
    lo, hi = queued_window(items)
    if hi <= lo:
        raise ValueError(f"empty window [{lo}, {hi}]: all trials started at once")
    return (len(items) - 1) / (hi - lo)


def busy_fraction(items: Sequence[Span], total_gpus: float, window: tuple[float, float] | None = None) -> float:
    """GPU-slot utilization: GPU-seconds held by trials within ``window`` over ``total_gpus`` x its length.

    The default window is ``queued_window``: after the last start nothing waits, so idle GPUs then are not the
    scheduler's fault. Time between a trial's last report and the next trial's start counts as idle."""
    if not items:
        raise ValueError("no trial with a recorded placement")
    lo, hi = window or queued_window(items)
    if hi <= lo:
        raise ValueError(f"empty window [{lo}, {hi}]: all trials started at once")
    held = sum(s.gpu * max(0.0, min(s.end, hi) - max(s.start, lo)) for s in items)
    return held / (total_gpus * (hi - lo))


def oversubscribed(items: Sequence[Span], gpus_per_node: Mapping[str, float]) -> list[str]:
    """Human-readable violations: a GPU loaded above 1, a node using more GPUs than it has, a trial of one or
    more whole GPUs not holding whole GPU ids, a GPU trial without GPU ids or on a node with no GPUs."""
    problems = [f"GPU {g} of node {n} peaked at {load:.3f}" for (n, g), load in peak_gpu_load(items).items()
                if load > 1 + EPSILON]
    problems += [f"node {n} peaked at {load:.3f} GPUs of {gpus_per_node.get(n, 0.0)}"
                 for n, load in peak_node_occupancy(items).items() if load > gpus_per_node.get(n, 0.0) + EPSILON]
    for s in items:
        if s.gpu > 0 and not s.gpu_ids:
            problems.append(f"trial on node {s.node} asked for {s.gpu} GPU and got no GPU id")
        elif s.gpu >= 1 and len(s.gpu_ids) != round(s.gpu):
            problems.append(f"trial on node {s.node} asked for {s.gpu} GPUs and got ids {list(s.gpu_ids)}")
        elif 0 < s.gpu < 1 and len(s.gpu_ids) != 1:
            problems.append(f"trial on node {s.node} asked for {s.gpu} GPU and got ids {list(s.gpu_ids)}")
    return problems
