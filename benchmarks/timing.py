"""Timing a task's ``train`` the same way in every throughput benchmark: GPU work finished before the clock
stops, so a rate counts what was computed, not what was queued."""

from __future__ import annotations

import time

import torch

from domains.base import Task, TrainStats


def sync(device: str) -> None:
    """Wait for queued GPU kernels (a no-op on CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def timed_train(task: Task, steps: int, device: str) -> tuple[TrainStats, float]:
    """``task.train(steps)`` and its wall seconds."""
    sync(device)
    start = time.perf_counter()
    stats = task.train(steps)
    sync(device)
    return stats, time.perf_counter() - start
