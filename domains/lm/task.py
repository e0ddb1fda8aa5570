"""Training and evaluating one LM on one shard: truncated BPTT over a circular token stream.

The shard is one stream (its sentences concatenated in shuffle order). ``batch_size`` readers start at evenly
spaced offsets of that stream and read it circularly, ``bptt`` tokens per step, carrying their LSTM state;
each reader runs straight on into the next reader's region, so the state stays continuous, no token is ever
dropped (tiny shards work for any batch size and bptt), and one epoch is ``len(stream) / batch_size`` steps'
worth of tokens per reader. ``state_dict`` holds model, optimizer, cursor, carried state and torch RNG, so a
restored task continues the very same run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from domains.base import Task, TrainStats
from domains.hparams import resolve_hparams
from domains.lm.models import RecurrentLM, count_parameters
from domains.task_state import restore, snapshot
from domains.train_loop import LossMeter, optimizer_step

DIVERGENCE_FACTOR = 3.0  # a mean training loss above 3·ln(vocab) (3x a uniform guess) counts as diverged
EVAL_ROWS = 16  # validation is read as 16 parallel streams: fixed, so the metric never depends on hparams
EVAL_CHUNK = 128  # time steps per forward pass in evaluation (bounds the logits' memory)

HPARAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "word": {"optimizer": "adam", "lr": 0.02, "momentum": 0.0, "weight_decay": 0.0, "batch_size": 16,
             "bptt": 32, "layers": 1, "dropout": 0.1, "clip": 1.0, "tie_weights": False},
    "char": {"optimizer": "adam", "lr": 0.02, "momentum": 0.0, "weight_decay": 0.0, "batch_size": 16,
             "bptt": 64, "layers": 1, "dropout": 0.0, "clip": 1.0, "tie_weights": False},
}


@dataclass(frozen=True)
class LMHParams:
    """A family's hyperparameters, type-checked. ``clip`` <= 0 disables gradient-norm clipping."""

    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    bptt: int
    layers: int
    dropout: float
    clip: float
    tie_weights: bool

    @classmethod
    def resolve(cls, family: str, given: Mapping[str, Any]) -> LMHParams:
        """Defaults of ``family`` overridden by ``given``; unknown names and bad values raise ValueError."""
        hp = resolve_hparams(cls, f"LM {family}", HPARAM_DEFAULTS[family], given)
        if hp.optimizer not in ("adam", "sgd"):
            raise ValueError(f"LM optimizer must be 'adam' or 'sgd', got {hp.optimizer!r}")
        if hp.batch_size < 1 or hp.bptt < 1 or hp.layers < 1 or hp.lr <= 0 or not 0 <= hp.dropout < 1:
            raise ValueError(f"LM hyperparameters out of range: {hp}")
        return hp

    def optimizer_for(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum,
                               weight_decay=self.weight_decay)


class LMTask(Task):
    """One model on one shard stream; metrics on one fixed validation stream."""

    def __init__(self, model: RecurrentLM, stream: np.ndarray, valid: np.ndarray, hp: LMHParams, *,
                 family: str, device: str = "cpu") -> None:
        if len(stream) < 1 or len(valid) < 2:
            raise ValueError(f"LM task needs a non-empty shard and >= 2 validation tokens "
                             f"(got {len(stream)} and {len(valid)})")
        self.family, self.hp, self.device = family, hp, torch.device(device)
        self.model = model.to(self.device)
        self.optimizer = hp.optimizer_for(self.model)
        self.num_params = count_parameters(self.model)
        self._stream = torch.from_numpy(stream.astype(np.int64)).to(self.device)
        self._valid = torch.from_numpy(valid.astype(np.int64)).to(self.device)
        n = len(stream)
        self._starts = (torch.arange(hp.batch_size, device=self.device) * n) // hp.batch_size
        self._window = torch.arange(hp.bptt + 1, device=self.device)
        self._pos = 0  # tokens each reader has advanced, modulo the stream length
        self._tokens = 0  # target tokens trained on so far (all readers of this replica)
        self._hidden = self.model.init_hidden(hp.batch_size, self.device)
        self._diverged = False
        self._threshold = DIVERGENCE_FACTOR * math.log(model.vocab)

    def train(self, steps: int) -> TrainStats:
        """``steps`` truncated-BPTT updates; a non-finite or exploding loss stops early with loss = NaN."""
        if self._diverged:
            return TrainStats(loss=math.nan, samples=0.0, steps=0, extra={"diverged": 1.0})
        self.model.train()
        meter, n = LossMeter(self._threshold), len(self._stream)
        for _ in range(steps):
            idx = (self._starts[:, None] + self._pos + self._window) % n
            chunk = self._stream[idx]
            logits, hidden = self.model(chunk[:, :-1], self._hidden)
            loss = F.cross_entropy(logits.reshape(-1, self.model.vocab), chunk[:, 1:].reshape(-1))
            value = optimizer_step(loss, self.model, self.optimizer, self.hp.clip, self.synced)
            self._hidden = (hidden[0].detach(), hidden[1].detach())
            self._pos = (self._pos + self.hp.bptt) % n
            self._tokens += len(self._starts) * self.hp.bptt
            if not meter.add(value):
                break
        self._diverged = meter.diverged
        samples = float(meter.steps * len(self._starts) * self.hp.bptt)
        extra = {"epochs": self._tokens / n, "diverged": float(self._diverged)}
        return TrainStats(loss=meter.mean, samples=samples, steps=meter.steps, extra=extra)

    def join_replicas(self, rank: int, world_size: int, sync: Callable[[Any], Any]) -> None:
        """A replica reads its share of the batch's readers and carries their LSTM state itself."""
        super().join_replicas(rank, world_size, sync)
        self._starts = self.rank_share(self._starts)
        self._hidden = self.model.init_hidden(len(self._starts), self.device)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Cross-entropy on the validation stream (``EVAL_ROWS`` parallel readers from a zero state)."""
        nats = math.nan if self._diverged else self._validation_nats()
        ppl = math.exp(nats) if nats < 700 else nats * math.inf  # inf when huge, NaN stays NaN
        if self.family == "word":
            return {"val_xent": nats, "val_ppl": ppl}
        return {"val_bpc": nats / math.log(2), "val_ppl": ppl}

    def _validation_nats(self) -> float:
        n = len(self._valid) - 1
        rows = max(1, min(EVAL_ROWS, n // 8))
        length = n // rows
        x = self._valid[: rows * length].reshape(rows, length)
        y = self._valid[1: rows * length + 1].reshape(rows, length)
        was_training = self.model.training
        self.model.eval()
        hidden, total = self.model.init_hidden(rows, self.device), 0.0
        for t in range(0, length, EVAL_CHUNK):
            logits, hidden = self.model(x[:, t:t + EVAL_CHUNK], hidden)
            target = y[:, t:t + EVAL_CHUNK].reshape(-1)
            total += F.cross_entropy(logits.reshape(-1, self.model.vocab), target, reduction="sum").item()
        self.model.train(was_training)
        return total / (rows * length)

    def state_dict(self) -> dict[str, Any]:
        """A deep copy: training on afterwards does not change what was returned."""
        return snapshot(self.model, self.optimizer, self.device, pos=self._pos, tokens=self._tokens,
                        hidden=self._hidden, diverged=self._diverged, stream_len=len(self._stream),
                        batch_size=self.hp.batch_size)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if (state["stream_len"], state["batch_size"]) != (len(self._stream), self.hp.batch_size):
            raise ValueError("LM task state is from another shard or batch size "
                             f"(stream {state['stream_len']}, batch {state['batch_size']})")
        restore(state, self.model, self.optimizer, self.device)
        self._pos, self._tokens = int(state["pos"]), int(state["tokens"])
        self._diverged = bool(state["diverged"])
        self._hidden = tuple(h.to(self.device).clone() for h in state["hidden"])
