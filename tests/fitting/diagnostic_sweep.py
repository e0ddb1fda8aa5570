"""A small real store (Parquet via fitting.store, with histories) whose diagnostics are known by construction.

5 shards (1000·2^k) × widths 16/32/64 × lr 1e-3/3e-3/1e-2, one seed. The best width follows 16·(m/1000)^0.6:
16 (the grid's smallest) at shard 0, 32 at shards 1–2, 64 (the largest) at shards 3–4. The best lr is 3e-3
except at the largest shard, where it is 1e-2 (the top of the searched range). Every trial ran to its step cap
(stop_reason max_steps) and plateaued, except the best configuration at the largest shard, whose history is
still falling at the end. ``dropout`` is a numeric hyperparameter that is never searched.
"""

from __future__ import annotations

import math
from typing import Any

from fitting.store import ResultsStore

SIZES = [1000.0 * 2.0**k for k in range(5)]
WIDTHS = (16, 32, 64)
LRS = (1e-3, 3e-3, 1e-2)
EMBEDDING = 20_000  # parameters in embeddings and softmax, the same for every width


def best_lr(m: float) -> float:
    return 1e-2 if m == SIZES[-1] else 3e-3


def history(value: float, improving: bool) -> list[dict[str, Any]]:
    """Four evaluations ending at ``value``: flat over the last quarter, or still falling 10 % at the end."""
    factors = (1.6, 1.3, 1.1, 1.0) if improving else (1.5, 1.05, 1.0, 1.0)
    return [{"iteration": i + 1, "steps": 100 * (i + 1), "samples": 1000.0 * (i + 1), "train_loss": value * f,
             "metrics": {"val_loss": value * f}, "time": float(i + 1)} for i, f in enumerate(factors)]


def rows(domain: str = "lm", family: str = "char", sizes: list[float] = SIZES, *, stored: bool = False
         ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(row, history) per trial. ``stored``: also fill the store columns ``converged`` and
    ``non_embedding_params`` (what a store written by the current recorder holds)."""
    out = []
    for m in sizes:
        ideal = 16.0 * (m / 1000.0) ** 0.6
        for width in WIDTHS:
            for lr in LRS:
                penalty = 1 + 0.1 * math.log2(width / ideal) ** 2 + (0.0 if lr == best_lr(m) else 0.05)
                value = 5.0 * m**-0.3 * penalty
                improving = m == sizes[-1] and lr == best_lr(m) and width == 64
                key = f"{domain}-{family}-{m:g}-{width}-{lr:g}"
                row = {"trial_key": key, "config_key": key, "trial_id": f"id_{key}", "sweep": "test",
                       "domain": domain, "family": family, "fraction": m / sizes[-1], "train_size": m,
                       "size_unit": "chars", "width": width, "num_params": EMBEDDING + 300 * width**2,
                       "hparams": {"lr": lr, "dropout": 0.1, "schedule": "cosine"}, "seed": 0,
                       "status": "completed", "stop_reason": "max_steps", "metric": "val_loss",
                       "best_value": value, "best_metrics": {"val_loss": value}, "final_metrics": {"val_loss": value},
                       "steps": 400, "samples": 4000.0, "iterations": 4}
                if stored:
                    row |= {"converged": not improving, "non_embedding_params": 300 * width**2}
                out.append((row, history(value, improving)))
    return out


def write(store: ResultsStore, trials: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
    for row, hist in trials:
        store.write_trial(row, hist)
