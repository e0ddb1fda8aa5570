"""Training and evaluating one LM on one shard: truncated BPTT over a circular token stream.

The shard is one stream (its sentences concatenated in shuffle order). ``batch_size`` readers start at evenly
spaced offsets of that stream and read it circularly, ``bptt`` tokens per step, carrying their recurrent state;
each reader runs straight on into the next reader's region, so the state stays continuous, no token is ever
dropped (tiny shards work for any batch size and bptt), and one epoch is ``len(stream) / batch_size`` steps'
worth of tokens per reader. ``state_dict`` holds model, optimizer, cursor, carried state and torch RNG, so a
restored task continues the very same run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from domains.base import TrialSetup
from domains.hparams import HParams
from domains.lm.data import LMData
from domains.lm.models import RecurrentLM
from domains.lm.rhn import RecurrentHighwayLM
from domains.lm.softmax import parse_cutoffs
from domains.training import TrainingTask

DIVERGENCE_FACTOR = 3.0  # a mean training loss above 3·ln(vocab) (3x a uniform guess) counts as diverged
EVAL_ROWS = 16  # validation is read as 16 parallel streams: fixed, so the metric never depends on hparams
EVAL_CHUNK = 128  # time steps per forward pass in evaluation (bounds the logits' memory)


@dataclass(frozen=True)
class RecurrentLMHParams(HParams):
    """What every LM family shares: truncated BPTT, dropout, clipping, tied embeddings; ``tokens`` names the
    stream a family reads ("word" or "char") and so its metrics."""

    lr: float = 0.02
    bptt: int = 32  # tokens each reader unrolls per step (truncated backpropagation through time)
    dropout: float = 0.1  # on embeddings and recurrent outputs
    clip: float = 1.0  # gradient-norm clipping threshold; <= 0: none
    tie_weights: bool = False  # input embedding and softmax share one matrix (full softmax only)
    # adaptive softmax cluster bounds, e.g. "4000,20000" (domains.lm.softmax); "": full softmax
    softmax_cutoffs: str = ""
    softmax_div: float = 4.0  # each tail cluster's projection is this much narrower than the one before

    tokens: ClassVar[str] = "word"

    def check(self) -> None:
        super().check()
        if self.bptt < 1 or not 0 <= self.dropout < 1:
            raise ValueError(f"{self.what} hyperparameters out of range: {self}")
        if self.cutoffs and self.tie_weights:
            raise ValueError(f"{self.what} hyperparameters tie_weights and softmax_cutoffs exclude each other "
                             f"(an adaptive softmax has no single output matrix to tie): set one of them")
        if self.softmax_div < 1:
            raise ValueError(f"{self.what} hyperparameter softmax_div must be >= 1, got {self.softmax_div}")

    @property
    def cutoffs(self) -> tuple[int, ...]:
        """``softmax_cutoffs`` as integers (ValueError naming the field when malformed)."""
        return parse_cutoffs(self.softmax_cutoffs, self.what)


@dataclass(frozen=True)
class LMHParams(RecurrentLMHParams, family="word", what="LM word"):
    """The word LSTM family's hyperparameters."""

    layers: int = 1  # stacked LSTM layers (dropout also goes between them)

    def check(self) -> None:
        super().check()
        if self.layers < 1:
            raise ValueError(f"LM hyperparameters out of range: {self}")


@dataclass(frozen=True)
class CharLMHParams(LMHParams, family="char", what="LM char"):
    """The char LSTM family: longer unrolls, no dropout."""

    bptt: int = 64
    dropout: float = 0.0

    tokens: ClassVar[str] = "char"


@dataclass(frozen=True)
class RHNHParams(RecurrentLMHParams, family="word_rhn", what="LM word RHN"):
    """The word RHN family (``domains.lm.rhn``): recurrence depth, transform-gate bias, state dropout."""

    depth: int = 5  # highway micro-layers per time step
    gate_bias: float = -3.0  # initial transform-gate bias: negative, so the carry gate dominates at first
    state_dropout: float = 0.0  # variational dropout on the state each micro-layer reads

    def check(self) -> None:
        super().check()
        if self.depth < 1 or self.gate_bias > 0 or not 0 <= self.state_dropout < 1:
            raise ValueError(f"{self.what} hyperparameters out of range (depth >= 1, gate_bias <= 0, "
                             f"0 <= state_dropout < 1): {self}")


@dataclass(frozen=True)
class CharRHNHParams(RHNHParams, family="char_rhn", what="LM char RHN"):
    """The char RHN family: depth 10 as in Zilly et al.'s and Hestness et al.'s character LMs, longer unrolls,
    no dropout, a more negative transform-gate bias for the deeper recurrence."""

    bptt: int = 64
    dropout: float = 0.0
    depth: int = 10
    gate_bias: float = -4.0  # deeper: more carry at first (at -3 its validation curve bumps, measured)

    tokens: ClassVar[str] = "char"


HPARAMS: dict[str, type[RecurrentLMHParams]] = {"word": LMHParams, "char": CharLMHParams,
                                                "word_rhn": RHNHParams, "char_rhn": CharRHNHParams}


class LMTask(TrainingTask):
    """One model on one shard stream; metrics on one fixed validation stream."""

    def __init__(self, model: RecurrentLM | RecurrentHighwayLM, data: LMData, setup: TrialSetup,
                 hp: RecurrentLMHParams) -> None:
        stream, valid = data.shard_stream(setup.fraction, hp.tokens), data.valid_stream(hp.tokens)
        if len(stream) < 1 or len(valid) < 2:
            raise ValueError(f"LM task needs a non-empty shard and >= 2 validation tokens "
                             f"(got {len(stream)} and {len(valid)})")
        super().__init__(model, hp, setup.device)
        self.tokens = hp.tokens  # "word" or "char"
        self._stream = stream  # the shard: a prefix of the memory-mapped corpus, read a batch at a time
        self._valid = torch.from_numpy(np.asarray(valid, dtype=np.int64)).to(self.device)  # capped: small
        n = len(stream)
        self._starts = (np.arange(hp.batch_size, dtype=np.int64) * n) // hp.batch_size
        self._window = np.arange(hp.bptt + 1, dtype=np.int64)
        self._pos = 0  # tokens each reader has advanced, modulo the stream length
        self._tokens = 0  # target tokens trained on so far (all readers of this replica)
        self._hidden = self.model.init_hidden(hp.batch_size, self.device)
        self.divergence_threshold = DIVERGENCE_FACTOR * math.log(model.vocab)

    def join_replicas(self, rank: int, world_size: int, sync: Callable[[Any], Any]) -> None:
        """A replica reads its share of the batch's readers and carries their recurrent state itself."""
        super().join_replicas(rank, world_size, sync)
        self._hidden = self.model.init_hidden(len(self.rank_share(self._starts)), self.device)

    def next_ids(self) -> np.ndarray:
        """The readers' start offsets (each reads the next ``bptt`` tokens from its position)."""
        return self._starts

    def load_batch(self, starts: np.ndarray) -> torch.Tensor:
        """The readers' next ``bptt + 1`` tokens, gathered from the mapped shard (only these pages are read)."""
        n = len(self._stream)
        chunk = self._stream[(starts[:, None] + self._pos + self._window) % n].astype(np.int64)
        self._pos = (self._pos + self.hp.bptt) % n
        self._tokens += len(starts) * self.hp.bptt
        return torch.from_numpy(chunk).to(self.device)

    def loss(self, chunk: torch.Tensor) -> torch.Tensor:
        loss, hidden = self.model.nll(chunk[:, :-1], chunk[:, 1:], self._hidden)
        self._hidden = tuple(h.detach() for h in hidden)
        return loss

    def counts(self, chunk: torch.Tensor) -> Mapping[str, float]:
        return {"tokens": chunk.shape[0] * self.hp.bptt}

    def summary(self, totals: Mapping[str, float], steps: int) -> tuple[float, dict[str, float]]:
        return float(totals.get("tokens", 0.0)), {"epochs": self._tokens / len(self._stream)}

    def metric_names(self) -> tuple[str, ...]:
        return ("val_xent", "val_ppl") if self.tokens == "word" else ("val_bpc", "val_ppl")

    def validate(self) -> dict[str, float]:
        """Cross-entropy on the validation stream (``EVAL_ROWS`` parallel readers from a zero state)."""
        nats = self._validation_nats()
        ppl = math.exp(nats) if nats < 700 else nats * math.inf  # inf when huge, NaN stays NaN
        if self.tokens == "word":
            return {"val_xent": nats, "val_ppl": ppl}
        return {"val_bpc": nats / math.log(2), "val_ppl": ppl}

    def _validation_nats(self) -> float:
        n = len(self._valid) - 1
        rows = max(1, min(EVAL_ROWS, n // 8))
        length = n // rows
        x = self._valid[: rows * length].reshape(rows, length)
        y = self._valid[1: rows * length + 1].reshape(rows, length)
        hidden, total = self.model.init_hidden(rows, self.device), 0.0
        for t in range(0, length, EVAL_CHUNK):
            loss, hidden = self.model.nll(x[:, t:t + EVAL_CHUNK], y[:, t:t + EVAL_CHUNK], hidden, reduction="sum")
            total += loss.item()
        return total / (rows * length)

    def identity(self) -> dict[str, Any]:
        return {"stream_len": len(self._stream), "batch_size": self.hp.batch_size}

    def reader_state(self) -> dict[str, Any]:
        return {"pos": self._pos, "tokens": self._tokens, "hidden": self._hidden}

    def load_reader_state(self, state: Mapping[str, Any]) -> None:
        self._pos, self._tokens = int(state["pos"]), int(state["tokens"])
        self._hidden = tuple(h.to(self.device).clone() for h in state["hidden"])
