"""Synthetic sweeps drawn from a known surface L(N, D), shared by the surface, optimal and compare tests and
benchmarks (benchmarks/surface.py, benchmarks/compare.py).

Truth: L = E + A·N^−a + B·D^−b + C·N^c·D^−d (a model too large for its data pays the last term), whose best
model size at fixed data is N_opt(D) ∝ D^(d/(a+c)). Shards are 1000·2^k samples; the widths form a FIXED grid
of model sizes (the same at every shard) centred on N_opt over the shards and spanning (data span)^(β_p + 0.2),
as ``scaling-sweep plan`` asks of a preset, with a random phase per sweep.
Each trial carries lognormal ``noise``; every trial of a shard shares lognormal ``shard_noise``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fitting.surface import _jacobian
from orchestrator.plan_rules import BETA_P_MARGIN


@dataclass(frozen=True)
class Truth:
    """Surface parameters in original units (N in parameters, D in samples)."""

    E: float = 0.2
    A: float = 20.0
    a: float = 0.35
    B: float = 8.0
    b: float = 0.3
    C: float = 20.0 / 50.0**0.7  # puts N_opt(D) at 50·D^0.5
    c: float = 0.35
    d: float = 0.35

    @property
    def beta_p(self) -> float:
        return self.d / (self.a + self.c)

    def n_opt(self, size: np.ndarray) -> np.ndarray:
        return (self.a * self.A * np.asarray(size, float) ** self.d / (self.c * self.C)) ** (1 / (self.a + self.c))

    def loss(self, n: np.ndarray, size: np.ndarray) -> np.ndarray:
        n, size = np.asarray(n, float), np.asarray(size, float)
        return self.E + self.A * n**-self.a + self.B * size**-self.b + self.C * n**self.c * size**-self.d

    def theta(self, n0: float, d0: float) -> np.ndarray:
        """θ in :mod:`fitting.surface`'s normalized parameterization."""
        return np.array([math.log(self.E), math.log(self.A * n0**-self.a), self.a, math.log(self.B * d0**-self.b),
                         self.b, math.log(self.C * n0**self.c * d0**-self.d), self.c, self.d])


def design(truth: Truth, phase: float, *, shards: int = 11, widths: int = 5, first_size: float = 1000.0,
           margin: float = BETA_P_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """(train sizes, model sizes) of a sweep: shards of ``first_size``·2^k samples; a fixed grid of ``widths``
    model sizes centred on N_opt over the shards and spanning (data span)^(β_p + ``margin``), the rule
    ``scaling-sweep plan`` holds the presets to (a grid spanning only N_opt's own range puts the best size of the
    end shards at the grid's edge, censoring β_p), shifted by ``phase`` (in grid steps, −0.5 to 0.5)."""
    sizes = first_size * 2.0 ** np.arange(shards)
    ideal = np.log2(truth.n_opt(sizes))
    span = ideal[-1] - ideal[0] + margin * math.log2(sizes[-1] / sizes[0])
    step = max(1.0, span / max(widths - 1, 1))
    grid = 0.5 * (ideal[0] + ideal[-1]) + step * (np.arange(widths) - (widths - 1) / 2)
    return sizes, np.round(2.0 ** (grid + phase * step))


def surface_sweep(truth: Truth, rng: np.random.Generator, *, shards: int = 11, widths: int = 5, seeds: int = 1,
                  noise: float = 0.03, shard_noise: float = 0.0, domain: str = "lm", family: str = "word",
                  flops_per_param_sample: float | None = None, shard_shocks: np.ndarray | None = None,
                  first_size: float = 1000.0, margin: float = BETA_P_MARGIN) -> pd.DataFrame:
    """Store rows of one sweep (one configuration per width, ``seeds`` seeds per configuration).

    ``shard_shocks``: the shard-level log noise to use (shared by two families on the same shards), else drawn.
    ``flops_per_param_sample``: writes ``train_flops`` = k·N·D per trial.
    """
    sizes, params = design(truth, rng.uniform(-0.5, 0.5), shards=shards, widths=widths, first_size=first_size,
                           margin=margin)
    shocks = rng.normal(0.0, shard_noise, shards) if shard_shocks is None else shard_shocks
    rows: list[dict[str, Any]] = []
    for i, m in enumerate(sizes):
        for w, n in enumerate(params):
            config = f"{domain}-{family}-{m:g}-w{w}"
            for s in range(seeds):
                value = float(truth.loss(n, m) * math.exp(shocks[i] + rng.normal(0.0, noise)))
                row = {"trial_key": f"{config}-{s}", "config_key": config, "domain": domain, "family": family,
                       "fraction": m / sizes[-1], "train_size": float(m), "size_unit": "samples",
                       "width": 16 * (w + 1), "num_params": int(n), "hparams": json.dumps({"lr": 1e-3}),
                       "seed": s, "status": "completed", "metric": "val_loss", "best_value": value,
                       "best_metrics": json.dumps({"val_loss": value})}
                if flops_per_param_sample is not None:
                    row["train_flops"] = flops_per_param_sample * n * m
                rows.append(row)
    return pd.DataFrame(rows)


def beta_p_bound(truth: Truth, *, shards: int = 11, widths: int = 5, seeds: int = 1, noise: float = 0.03,
                 shard_noise: float = 0.0, phases: int = 21, margin: float = BETA_P_MARGIN) -> np.ndarray:
    """Cramér–Rao bound on the s.d. of β_p = d/(a + c) for sweeps of :func:`surface_sweep`'s design, one value
    per grid phase (``phases`` evenly spaced in −0.5..0.5).

    Why: it says whether a target precision is reachable at all by an unbiased estimator of this (correctly
    specified) surface. Fisher information of Gaussian log values (trial noise ``noise``, a shard-level shock
    ``shard_noise`` shared by a shard's trials), one cell per trial, at the true parameters in
    :mod:`fitting.surface`'s normalized parameterization (the fit's own analytic Jacobian); the delta method
    carries it to β_p.
    """
    out = []
    for phase in np.linspace(-0.5, 0.5, phases):
        sizes, params = design(truth, phase, shards=shards, widths=widths, margin=margin)
        n, d = (np.repeat(g.ravel(), seeds) for g in np.meshgrid(params, sizes))
        n0, d0 = math.exp(np.log(n).mean()), math.exp(np.log(d).mean())
        theta, x, z = truth.theta(n0, d0), np.log(n / n0), np.log(d / d0)
        jac = _jacobian(theta, x, z)[1]
        cov_y = noise**2 * np.eye(n.size) + shard_noise**2 * (d[:, None] == d[None, :])
        info = jac.T @ np.linalg.solve(cov_y, jac)
        a, c, dd = theta[2], theta[6], theta[7]
        grad = np.zeros(theta.size)
        grad[7], grad[2], grad[6] = 1 / (a + c), -dd / (a + c) ** 2, -dd / (a + c) ** 2
        out.append(math.sqrt(grad @ np.linalg.solve(info, grad)))
    return np.array(out)
