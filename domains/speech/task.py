"""Training and evaluating one speech model on one shard: length-bucketed batches, CTC or attention loss.

Each epoch shuffles the shard, sorts windows of ``BUCKET_BATCHES`` batches by length (so a batch pads little)
and shuffles the batches. Metrics come from greedy decodes of the fixed validation set: character error
rate (primary), word error rate, and the validation loss (nats per target character: the CTC loss for
``ds2``, the decoder's cross-entropy incl. the end token for ``attention``). DS2 decodes best-path CTC; the
attention model decodes greedily (beam 1) with its decoder, by default joined with the CTC prefix score of
its encoder's CTC head (``decode_ctc_weight``), as hybrid CTC/attention models are decoded. ``state_dict``
holds model, optimizer, epoch order, cursor and RNG states, so a restored task continues the very same run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from domains.base import Task, TrainStats
from domains.hparams import resolve_hparams
from domains.speech.data import SpeechData
from domains.speech.models import AttentionEncoderDecoder, DeepSpeech2, count_parameters, guided_attention_loss
from domains.speech.text import BLANK, ctc_greedy, decode, error_counts
from domains.task_state import restore, snapshot
from domains.train_loop import LossMeter, optimizer_step, warmup_lr

BUCKET_BATCHES = 16  # batches per length-sorted window of an epoch
EVAL_BATCH = 128  # large: greedy attention decoding loops once per output character per batch
DIVERGENCE_LOSS = 1e4  # a mean training loss (nats/char) above this counts as diverged


@dataclass(frozen=True)
class SpeechHParams:
    """Hyperparameters both families accept. ``clip`` <= 0 disables gradient-norm clipping; ``warmup_steps``
    ramps the learning rate linearly from 0; ``specaugment`` masks 2 frequency bands (≤ n_mels/8 wide) and
    2 time spans (≤ 5 % of the utterance each) of every training utterance (Park et al. 2019)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 16
    conv_channels: int = 32
    dropout: float = 0.1
    clip: float = 5.0
    warmup_steps: int = 0
    specaugment: bool = False

    family: ClassVar[str] = ""

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return asdict(cls())

    @classmethod
    def resolve(cls, given: Mapping[str, Any]) -> SpeechHParams:
        """Defaults overridden by ``given``; unknown names and bad values raise ValueError."""
        hp = resolve_hparams(cls, f"speech {cls.family}", cls.defaults(), given)
        hp.check()
        return hp

    def check(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"speech optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.batch_size < 1 or self.lr <= 0 or self.conv_channels < 1 or not 0 <= self.dropout < 1 \
                or self.warmup_steps < 0:
            raise ValueError(f"speech hyperparameters out of range: {self}")

    def optimizer_for(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum,
                               weight_decay=self.weight_decay)


@dataclass(frozen=True)
class DS2HParams(SpeechHParams):
    rnn_layers: int = 3
    rnn_type: str = "gru"  # or "lstm"

    family: ClassVar[str] = "ds2"

    def check(self) -> None:
        super().check()
        if self.rnn_layers < 1 or self.rnn_type not in ("gru", "lstm"):
            raise ValueError(f"ds2 needs rnn_layers >= 1 and rnn_type 'gru' or 'lstm', got {self}")

    def build(self, n_mels: int, vocab: int, width: int) -> DeepSpeech2:
        return DeepSpeech2(n_mels, vocab, width, rnn_layers=self.rnn_layers, rnn_type=self.rnn_type,
                           conv_channels=self.conv_channels, dropout=self.dropout)


@dataclass(frozen=True)
class AttentionHParams(SpeechHParams):
    enc_layers: int = 4
    dec_layers: int = 2
    heads: int = 4
    conv_kernel: int = 15  # Conformer depthwise convolution (odd)
    ctc_weight: float = 0.3  # weight of the encoder's CTC loss; 0 = pure attention
    guided_attention: float = 0.0  # weight of the diagonal-attention penalty (per target character)
    decode_ctc_weight: float = 0.3  # CTC prefix-score weight in greedy decoding; 0 = attention scores only
    label_smoothing: float = 0.1

    family: ClassVar[str] = "attention"

    def check(self) -> None:
        super().check()
        if not 0 <= self.ctc_weight < 1 or not 0 <= self.label_smoothing < 1 or self.conv_kernel % 2 == 0 \
                or self.guided_attention < 0 or not 0 <= self.decode_ctc_weight < 1 \
                or (self.decode_ctc_weight > 0 and self.ctc_weight == 0):
            raise ValueError(f"attention needs 0 <= ctc_weight < 1, 0 <= label_smoothing < 1, an odd conv_kernel, "
                             f"guided_attention >= 0 and 0 <= decode_ctc_weight < 1 (0 when ctc_weight is 0), "
                             f"got {self}")

    def build(self, n_mels: int, vocab: int, width: int) -> AttentionEncoderDecoder:
        return AttentionEncoderDecoder(n_mels, vocab, width, enc_layers=self.enc_layers, dec_layers=self.dec_layers,
                                       heads=self.heads, conv_channels=self.conv_channels,
                                       conv_kernel=self.conv_kernel, dropout=self.dropout)


HPARAMS: dict[str, type[SpeechHParams]] = {"ds2": DS2HParams, "attention": AttentionHParams}


@dataclass
class Batch:
    x: torch.Tensor  # (batch, frames, n_mels) float32, zero-padded
    x_lens: torch.Tensor
    y: torch.Tensor  # (batch, max_chars) int64, padded with -1
    y_lens: torch.Tensor
    seconds: float


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Two frequency masks (≤ n_mels/8 bins) and two time masks (≤ 5 % of each utterance) per utterance."""
    x = x.clone()
    b, _, n_mels = x.shape
    for i in range(b):
        n = int(lengths[i])
        for _ in range(2):
            w = int(torch.randint(0, max(1, n_mels // 8) + 1, (1,), generator=gen))
            f0 = int(torch.randint(0, n_mels - w + 1, (1,), generator=gen))
            x[i, :, f0:f0 + w] = 0.0
            w = int(torch.randint(0, max(1, n // 20) + 1, (1,), generator=gen))
            t0 = int(torch.randint(0, max(1, n - w + 1), (1,), generator=gen))
            x[i, t0:t0 + w] = 0.0
    return x


class SpeechTask(Task):
    """One model on one nested shard; metrics on the fixed validation set."""

    def __init__(self, data: SpeechData, fraction: float, hp: SpeechHParams, width: int, *, seed: int = 0,
                 device: str = "cpu") -> None:
        self.data, self.hp, self.device = data, hp, torch.device(device)
        self.family = hp.family
        self.vocab = len(data.alphabet) + 1
        self.model = hp.build(data.n_mels, self.vocab, width).to(self.device)
        self.optimizer = hp.optimizer_for(self.model)
        self.num_params = count_parameters(self.model)
        self._features = data.open_features()
        self._n = data.shard_size(fraction)
        self._frames = np.diff(data.frame_offsets)
        self._rng = np.random.default_rng([seed, 0xBA7C4])
        self._gen = torch.Generator().manual_seed(seed)  # SpecAugment
        self._order: list[np.ndarray] = []
        self._cursor = 0
        self._steps = 0
        self._diverged = False
        self._valid: list[Batch] | None = None
        self._references: list[str] = data.valid_texts()

    # --- batches ---------------------------------------------------------------------------------------
    def _epoch(self) -> list[np.ndarray]:
        """The next epoch's batches: shuffled, length-sorted within windows, batches shuffled."""
        bs = min(self.hp.batch_size, self._n)
        perm = self._rng.permutation(self._n)
        batches = []
        window = bs * BUCKET_BATCHES
        for start in range(0, self._n, window):
            chunk = perm[start:start + window]
            chunk = chunk[np.argsort(self._frames[chunk], kind="stable")]
            batches.extend(chunk[i:i + bs] for i in range(0, len(chunk), bs))
        return [batches[i] for i in self._rng.permutation(len(batches))]

    def _batch(self, idx: np.ndarray) -> Batch:
        starts, lens = self.data.frame_offsets[idx], self._frames[idx]
        x = np.zeros((len(idx), int(lens.max()), self.data.n_mels), dtype=np.float32)
        for row, (s, n) in enumerate(zip(starts, lens, strict=True)):
            x[row, :n] = self._features[s:s + n]
        lo = self.data.label_offsets
        y_lens = lo[idx + 1] - lo[idx]
        y = np.full((len(idx), max(1, int(y_lens.max()))), -1, dtype=np.int64)
        for row, i in enumerate(idx):
            y[row, : y_lens[row]] = self.data.labels[lo[i]:lo[i + 1]]
        return Batch(torch.from_numpy(x).to(self.device), torch.from_numpy(lens.astype(np.int64)).to(self.device),
                     torch.from_numpy(y).to(self.device), torch.from_numpy(y_lens.astype(np.int64)).to(self.device),
                     float(self.data.durations[idx].sum()))

    # --- losses ----------------------------------------------------------------------------------------
    def _ctc(self, log_probs: torch.Tensor, lengths: torch.Tensor, b: Batch) -> torch.Tensor:
        """Summed CTC loss (impossible alignments count as 0 rather than inf)."""
        targets = b.y.clamp(min=0)
        return F.ctc_loss(log_probs.transpose(0, 1).float(), targets, lengths, b.y_lens, blank=BLANK,
                          reduction="sum", zero_infinity=True)

    def _losses(self, b: Batch, smoothing: float) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """(training objective summed over characters, reported loss summed, what greedy decoding needs)."""
        if isinstance(self.model, DeepSpeech2):
            log_probs, lengths = self.model(b.x, b.x_lens)
            loss = self._ctc(log_probs, lengths, b)
            return loss, loss, (log_probs, lengths)
        model: AttentionEncoderDecoder = self.model
        memory, lengths = model.encode(b.x, b.x_lens)
        bos = torch.zeros(len(b.y), 1, dtype=torch.long, device=self.device)
        prefix = torch.cat([bos, b.y.clamp(min=0)], dim=1)
        target = torch.cat([b.y, torch.full_like(bos, -1)], dim=1)
        target[torch.arange(len(b.y)), b.y_lens] = BLANK  # the end token right after each transcript
        logits, weights = model.decode(memory, lengths, prefix)
        logits = logits.float()
        flat, tgt = logits.reshape(-1, self.vocab), target.reshape(-1)
        xent = F.cross_entropy(flat, tgt, ignore_index=-1, reduction="sum")
        att = xent if smoothing == 0 else F.cross_entropy(flat, tgt, ignore_index=-1, reduction="sum",
                                                         label_smoothing=smoothing)
        w = self.hp.ctc_weight
        loss = att if w == 0 else (1 - w) * att + w * self._ctc(model.ctc_log_probs(memory), lengths, b)
        if self.hp.guided_attention > 0 and model.training:
            loss = loss + self.hp.guided_attention * guided_attention_loss(weights, b.y_lens + 1, lengths)
        return loss, xent, (memory, lengths)

    # --- Task ------------------------------------------------------------------------------------------
    def train(self, steps: int) -> TrainStats:
        """``steps`` updates; a non-finite or exploding loss stops early with loss = NaN."""
        if self._diverged:
            return TrainStats(loss=math.nan, samples=0.0, steps=0, extra={"diverged": 1.0})
        self.model.train()
        meter, seconds = LossMeter(DIVERGENCE_LOSS), 0.0
        for _ in range(steps):
            if self._cursor >= len(self._order):
                self._order, self._cursor = self._epoch(), 0
            b = self._batch(self.rank_share(self._order[self._cursor]))
            self._cursor += 1
            if self.hp.specaugment:
                b.x = spec_augment(b.x, b.x_lens, self._gen)
            loss, _, _ = self._losses(b, getattr(self.hp, "label_smoothing", 0.0))
            loss = loss / b.y_lens.sum().clamp(min=1)  # nats per target character
            warmup_lr(self.optimizer, self.hp.lr, self.hp.warmup_steps, self._steps)
            value = optimizer_step(loss, self.model, self.optimizer, self.hp.clip, self.synced)
            self._steps += 1
            seconds += b.seconds
            if not meter.add(value):
                break
        self._diverged = meter.diverged
        return TrainStats(loss=meter.mean, samples=seconds / 3600.0, steps=meter.steps,
                          extra={"audio_seconds": seconds, "diverged": float(self._diverged)})

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """CER and WER of greedy decodes and the loss per character on the validation set."""
        if self._diverged:
            return {"val_cer": math.nan, "val_wer": math.nan, "val_loss": math.nan}
        refs, hyps, nats = self._validate()
        char_edits, char_total, word_edits, word_total = error_counts(hyps, refs)
        return {"val_cer": char_edits / max(char_total, 1), "val_wer": word_edits / max(word_total, 1),
                "val_loss": nats if math.isfinite(nats) else math.nan}

    @torch.no_grad()
    def transcribe_validation(self) -> list[tuple[str, str]]:
        """(reference, greedy hypothesis) per validation utterance, for inspection."""
        refs, hyps, _ = self._validate()
        return list(zip(refs, hyps, strict=True))

    def _validate(self) -> tuple[list[str], list[str], float]:
        """References and greedy hypotheses (shortest utterances first) and the loss per target character."""
        if self._valid is None:
            order = np.argsort(self._frames[self.data.n_train:], kind="stable")
            self._valid = [self._batch(self.data.n_train + order[i:i + EVAL_BATCH])
                           for i in range(0, len(order), EVAL_BATCH)]
            self._valid_refs = [self._references[i] for i in order]
        was_training = self.model.training
        self.model.eval()
        ctc = isinstance(self.model, DeepSpeech2)
        hyps: list[str] = []
        loss, chars = 0.0, 0
        for b in self._valid:
            _, reported, (states, lengths) = self._losses(b, 0.0)
            loss += reported.item()
            chars += int(b.y_lens.sum()) + (0 if ctc else len(b.y_lens))  # the end token is predicted too
            if ctc:
                hyps.extend(ctc_greedy(states, lengths, self.data.alphabet))
            else:
                found = self.model.greedy(states, lengths, ctc_weight=self.hp.decode_ctc_weight)
                hyps.extend(decode(h, self.data.alphabet) for h in found)
        self.model.train(was_training)
        return self._valid_refs, hyps, loss / max(chars, 1)

    def state_dict(self) -> dict[str, Any]:
        """A deep copy: training on afterwards does not change what was returned."""
        return snapshot(self.model, self.optimizer, self.device, order=self._order, cursor=self._cursor,
                        steps=self._steps, diverged=self._diverged, shard=self._n, batch_size=self.hp.batch_size,
                        np_rng=self._rng.bit_generator.state, gen=self._gen.get_state())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if (state["shard"], state["batch_size"]) != (self._n, self.hp.batch_size):
            raise ValueError(f"speech task state is from another shard or batch size "
                             f"(shard {state['shard']}, batch {state['batch_size']})")
        restore(state, self.model, self.optimizer, self.device)
        self._order = [np.asarray(b) for b in state["order"]]
        self._cursor, self._steps, self._diverged = int(state["cursor"]), int(state["steps"]), bool(state["diverged"])
        self._rng.bit_generator.state = state["np_rng"]
        self._gen.set_state(state["gen"])
