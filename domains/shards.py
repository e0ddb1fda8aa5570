"""Nested, deterministic training shards: shard(f1) is a subset of shard(f2) whenever f1 < f2."""

from __future__ import annotations

import math

import numpy as np


def shard_permutation(n: int, seed: int) -> np.ndarray:
    """The one shuffle of the training set that every shard is a prefix of."""
    return np.random.default_rng(seed).permutation(n)


def shard_count(n: int, fraction: float) -> int:
    """Number of examples in the shard of ``fraction`` (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"shard fraction must be in (0, 1], got {fraction}")
    return max(1, min(n, math.ceil(fraction * n - 1e-9)))


def nested_shard(n: int, fraction: float, seed: int) -> np.ndarray:
    """Indices of the nested shard: a prefix of a fixed permutation, so smaller shards nest in larger."""
    return shard_permutation(n, seed)[: shard_count(n, fraction)]
