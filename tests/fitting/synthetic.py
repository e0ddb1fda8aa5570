"""Synthetic sweeps with known exponents, shared by the fitting, CLI and service tests."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SIZES = 1000.0 * 2.0 ** np.arange(8)  # 8 shards, 2.1 decades


def sweep(law: Callable[[np.ndarray], np.ndarray], sizes: np.ndarray = SIZES, *, seeds: int = 3,
          noise: float = 0.02, beta_p: float = 0.7, sigma: float = 50.0, seed: int = 0,
          family: str = "word", domain: str = "lm") -> pd.DataFrame:
    """Trial rows of a sweep: at each shard 5 model sizes × 2 learning rates × ``seeds`` seeds (30 trials).

    The best configuration (model size σ·m^β_p, lr 1e-3) reaches the law exactly up to multiplicative
    seed noise; other sizes pay 10 % per squared octave, the other lr 8 %.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for m in sizes:
        ideal = sigma * m**beta_p
        for ratio in (0.25, 0.5, 1.0, 2.0, 4.0):
            for lr in (1e-3, 3e-3):
                penalty = 1 + 0.1 * math.log2(ratio) ** 2 + (0.08 if lr == 3e-3 else 0.0)
                config = f"{domain}-{family}-{m:g}-{ratio:g}-{lr:g}"
                for s in range(seeds):
                    value = float(law(m) * penalty * math.exp(rng.normal(0.0, noise)))
                    rows.append({
                        "trial_key": f"{config}-{s}", "config_key": config, "domain": domain,
                        "family": family, "fraction": m / sizes[-1], "train_size": float(m),
                        "size_unit": "words", "width": int(64 * ratio), "num_params": round(ideal * ratio),
                        "hparams": json.dumps({"lr": lr}), "seed": s, "status": "completed",
                        "metric": "val_loss", "best_value": value,
                        "best_metrics": json.dumps({"val_loss": value, "ppl": math.exp(value)}),
                    })
    return pd.DataFrame(rows)


def power(m: np.ndarray) -> np.ndarray:
    return 5.0 * m**-0.3


def floor(m: np.ndarray) -> np.ndarray:
    return 20.0 * m**-0.5 + 0.05


# ------------------------------------------------------------------------------ sweeps with known truth, batched
BETA_G_POWER, BETA_G_FLOOR, BETA_P = -0.3, -0.5, 0.5
PENALTY_PER_OCTAVE2 = 0.1  # error ×(1 + 0.1·d²) for a model d octaves (of parameters) away from the best size
LR_PENALTY = 0.08  # the non-best learning rate's error ×1.08


@dataclass(frozen=True)
class Regime:
    """How a synthetic sweep is built: shards, grid, seeds, noise, law.

    Shards are 1000·2^k samples. The best model size is s(m) = σ·m^β_p (σ = 50, β_p = 0.5); the sweep's
    ``widths`` model sizes are a FIXED grid (the same at every shard), spaced max(1, range/(widths − 1))
    octaves of parameters so that the grid covers the best sizes of all shards, with a random phase per
    replicate (quantization of the best size to the grid is part of the noise, as in a real sweep). A model
    d octaves from the best size pays ×(1 + 0.1·d²), the second learning rate ×1.08. Every trial carries
    lognormal ``trial_noise``; every trial of a shard shares lognormal ``shard_noise`` (a lucky shuffle, a
    data-loader quirk). ``floor``: ε = 20·m^−0.5 + 0.05, else ε = 5·m^−0.3. ``plateau``: the three smallest
    shards sit on a small-data plateau (nearly flat, below the law's backward extrapolation).
    """

    shards: int = 8
    widths: int = 4
    lrs: int = 2
    seeds: int = 3
    trial_noise: float = 0.02
    shard_noise: float = 0.0
    floor: bool = False
    plateau: bool = False

    @property
    def name(self) -> str:
        law = "floor" if self.floor else "power"
        return (f"{law}{'+plateau' if self.plateau else ''} n={self.shards} cfg={self.widths}x{self.lrs} "
                f"seeds={self.seeds} trial={self.trial_noise:.0%} shard={self.shard_noise:.0%}")

    @property
    def beta_g(self) -> float:
        return BETA_G_FLOOR if self.floor else BETA_G_POWER

    def law(self, m: np.ndarray) -> np.ndarray:
        return floor(m) if self.floor else power(m)


@dataclass
class SweepBatch:
    """``replicates`` synthetic sweeps of one regime as arrays (R replicates, n shards, W widths, L lrs, S seeds)."""

    regime: Regime
    sizes: np.ndarray  # (n,)
    params: np.ndarray  # (R, W) num_params of each grid width (the grid is fixed across shards)
    values: np.ndarray  # (R, n, W, L, S) trial values

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, n) best error (best configuration by median over seeds) and its num_params, like best_per_shard."""
        r, n, w, lr, _ = self.values.shape
        score = np.median(self.values, axis=-1).reshape(r, n, w * lr)
        k = np.argmin(score, axis=-1)
        err = np.take_along_axis(score, k[..., None], axis=-1)[..., 0]
        return err, np.take_along_axis(self.params, k // lr, axis=-1)

    def spacing(self) -> np.ndarray:
        """(R,) log spacing of the width grid (natural log of the parameter ratio of neighbours)."""
        return np.log(self.params[:, 1] / self.params[:, 0]) if self.params.shape[1] > 1 else np.zeros(len(self.params))

    def rows(self, i: int, domain: str = "lm", family: str = "word") -> pd.DataFrame:
        """Replicate ``i`` as store rows for :func:`fitting.curves.fit_family`."""
        _, _, w, lr, s = self.values.shape
        rows: list[dict[str, Any]] = []
        for j, m in enumerate(self.sizes):
            for a in range(w):
                for b in range(lr):
                    config = f"{domain}-{family}-{m:g}-w{a}-lr{b}"
                    for seed in range(s):
                        value = float(self.values[i, j, a, b, seed])
                        rows.append({
                            "trial_key": f"{config}-{seed}", "config_key": config, "domain": domain,
                            "family": family, "fraction": m / self.sizes[-1], "train_size": float(m),
                            "size_unit": "words", "width": 16 * (a + 1), "num_params": int(self.params[i, a]),
                            "hparams": json.dumps({"lr": 1e-3 * 3**b}), "seed": seed, "status": "completed",
                            "metric": "val_loss", "best_value": value,
                            "best_metrics": json.dumps({"val_loss": value}),
                        })
        return pd.DataFrame(rows)


def sweep_batch(regime: Regime, replicates: int, seed: int = 0, sigma: float = 50.0) -> SweepBatch:
    """Draw ``replicates`` sweeps of ``regime`` at once (see :class:`Regime`)."""
    rng = np.random.default_rng(seed)
    n, w, lr, s = regime.shards, regime.widths, regime.lrs, regime.seeds
    sizes = 1000.0 * 2.0 ** np.arange(n)
    ideal = np.log2(sigma) + BETA_P * np.log2(sizes)  # log2 best size per shard
    span = ideal[-1] - ideal[0]
    step = max(1.0, span / max(w - 1, 1))
    phase = rng.uniform(-0.5, 0.5, size=(replicates, 1)) * step
    grid = 0.5 * (ideal[0] + ideal[-1]) + step * (np.arange(w) - (w - 1) / 2) + phase  # (R, W), log2
    d = grid[:, None, :] - ideal[None, :, None]  # (R, n, W) octaves from the best size
    truth = regime.law(sizes)
    if regime.plateau:
        truth = np.where(np.arange(n) < 3, truth[3] * (sizes / sizes[3]) ** -0.03, truth)
    penalty = (1 + PENALTY_PER_OCTAVE2 * d**2)[..., None] * (1 + LR_PENALTY * (np.arange(lr) > 0))  # (R, n, W, L)
    noise = rng.normal(0.0, regime.trial_noise, size=(replicates, n, w, lr, s))
    shard = rng.normal(0.0, regime.shard_noise, size=(replicates, n, 1, 1, 1))
    values = truth[None, :, None, None, None] * penalty[..., None] * np.exp(noise + shard)
    return SweepBatch(regime, sizes, np.round(2.0**grid), values)
