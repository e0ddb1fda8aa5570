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


def heldout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) example indices: a random ``fraction`` held out, disjoint from every shard.

    The held-out draw uses its own random stream, so it does not depend on (or disturb) the shard shuffle.
    Validation indices come in random order, so a length cap keeps a random sample, not a file prefix.
    """
    n_valid = min(n - 1, max(1, round(fraction * n)))
    order = np.random.default_rng([seed, 0x5EED]).permutation(n)
    return np.sort(order[n_valid:]), order[:n_valid]


def class_balanced_permutation(labels: np.ndarray, seed: int) -> np.ndarray:
    """A random order of ``labels``' indices whose every prefix keeps the class proportions.

    Inside each class the order is random; classes are interleaved by the key (rank in class + ½) / class size,
    ties broken at random. A prefix of length k then holds each class c within one image of k·n_c/N, so any
    prefix — a nested shard — is stratified.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(n)
    lab = labels[shuffled]
    by_class = np.argsort(lab, kind="stable")  # shuffled positions grouped by class, random inside
    counts = np.bincount(lab)
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[by_class] = np.arange(n) - starts[lab[by_class]]
    key = (rank + 0.5) / counts[lab]
    order = np.lexsort((rng.random(n), key))
    return shuffled[order].astype(np.int64)
