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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from domains.base import TrialSetup
from domains.hparams import HParams
from domains.speech.data import SpeechData
from domains.speech.models import AttentionEncoderDecoder, DeepSpeech2, guided_attention_loss
from domains.speech.text import BLANK, ctc_greedy, decode, error_counts
from domains.training import TrainingTask, evaluation

BUCKET_BATCHES = 16  # batches per length-sorted window of an epoch
EVAL_BATCH = 128  # large: greedy attention decoding loops once per output character per batch
DIVERGENCE_LOSS = 1e4  # a mean training loss (nats/char) above this counts as diverged


@dataclass(frozen=True)
class SpeechHParams(HParams, what="speech model"):
    """Hyperparameters both families accept. ``specaugment`` masks 2 frequency bands (≤ n_mels/8 wide) and
    2 time spans (≤ 5 % of the utterance each) of every training utterance (Park et al. 2019)."""

    conv_channels: int = 32  # channels of the convolutional front end
    dropout: float = 0.1  # in the recurrent / attention layers
    clip: float = 5.0  # gradient-norm clipping (0 or less: off)
    specaugment: bool = False  # mask frequency bands and time spans while training

    def check(self) -> None:
        super().check()
        if self.conv_channels < 1 or not 0 <= self.dropout < 1:
            raise ValueError(f"speech hyperparameters out of range: {self}")

    def build(self, n_mels: int, vocab: int, width: int) -> torch.nn.Module:
        """The family's model at ``width`` for ``n_mels`` features and ``vocab`` output classes."""
        raise NotImplementedError


@dataclass(frozen=True)
class DS2HParams(SpeechHParams, family="ds2", what="speech ds2"):
    rnn_layers: int = 3  # bidirectional recurrent layers
    rnn_type: str = "gru"  # or "lstm"

    def check(self) -> None:
        super().check()
        if self.rnn_layers < 1 or self.rnn_type not in ("gru", "lstm"):
            raise ValueError(f"ds2 needs rnn_layers >= 1 and rnn_type 'gru' or 'lstm', got {self}")

    def build(self, n_mels: int, vocab: int, width: int) -> DeepSpeech2:
        return DeepSpeech2(n_mels, vocab, width, rnn_layers=self.rnn_layers, rnn_type=self.rnn_type,
                           conv_channels=self.conv_channels, dropout=self.dropout)


@dataclass(frozen=True)
class AttentionHParams(SpeechHParams, family="attention", what="speech attention"):
    enc_layers: int = 4  # Conformer blocks
    dec_layers: int = 2  # Transformer decoder layers
    heads: int = 4  # attention heads in encoder and decoder
    conv_kernel: int = 15  # Conformer depthwise convolution (odd)
    ctc_weight: float = 0.3  # weight of the encoder's CTC loss; 0 = pure attention
    guided_attention: float = 0.0  # weight of the diagonal-attention penalty (per target character)
    decode_ctc_weight: float = 0.3  # CTC prefix-score weight in greedy decoding; 0 = attention scores only
    label_smoothing: float = 0.1  # of the decoder's training cross-entropy

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


class SpeechTask(TrainingTask):
    """One model on one nested shard; metrics on the fixed validation set."""

    def __init__(self, model: torch.nn.Module, data: SpeechData, setup: TrialSetup, hp: SpeechHParams) -> None:
        super().__init__(model, hp, setup.device)
        fraction, seed = setup.fraction, setup.seed
        self.data, self.family = data, hp.family
        self.vocab = len(data.alphabet) + 1
        self._features = data.open_features()
        self._n = data.shard_size(fraction)
        self._frames = np.diff(data.frame_offsets)
        self._rng = np.random.default_rng([seed, 0xBA7C4])
        self._gen = torch.Generator().manual_seed(seed)  # SpecAugment
        self._order: list[np.ndarray] = []
        self._cursor = 0
        self._valid: list[Batch] | None = None
        self._references: list[str] = data.valid_texts()
        self.divergence_threshold = DIVERGENCE_LOSS

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

    # --- TrainingTask ----------------------------------------------------------------------------------
    def next_ids(self) -> np.ndarray:
        if self._cursor >= len(self._order):
            self._order, self._cursor = self._epoch(), 0
        self._cursor += 1
        return self._order[self._cursor - 1]

    def load_batch(self, ids: np.ndarray) -> Batch:
        b = self._batch(ids)
        if self.hp.specaugment:
            b.x = spec_augment(b.x, b.x_lens, self._gen)
        return b

    def loss(self, b: Batch) -> torch.Tensor:
        loss, _, _ = self._losses(b, getattr(self.hp, "label_smoothing", 0.0))
        return loss / b.y_lens.sum().clamp(min=1)  # nats per target character

    def counts(self, b: Batch) -> Mapping[str, float]:
        return {"seconds": b.seconds}

    def summary(self, totals: Mapping[str, float], steps: int) -> tuple[float, dict[str, float]]:
        seconds = totals.get("seconds", 0.0)
        return seconds / 3600.0, {"audio_seconds": seconds}

    def metric_names(self) -> tuple[str, ...]:
        return ("val_cer", "val_wer", "val_loss")

    def validate(self) -> dict[str, float]:
        """CER and WER of greedy decodes and the loss per character on the validation set."""
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
        ctc = isinstance(self.model, DeepSpeech2)
        hyps: list[str] = []
        loss, chars = 0.0, 0
        with evaluation(self.model):
            for b in self._valid:
                _, reported, (states, lengths) = self._losses(b, 0.0)
                loss += reported.item()
                chars += int(b.y_lens.sum()) + (0 if ctc else len(b.y_lens))  # the end token is predicted too
                if ctc:
                    hyps.extend(ctc_greedy(states, lengths, self.data.alphabet))
                else:
                    found = self.model.greedy(states, lengths, ctc_weight=self.hp.decode_ctc_weight)
                    hyps.extend(decode(h, self.data.alphabet) for h in found)
        return self._valid_refs, hyps, loss / max(chars, 1)

    def identity(self) -> dict[str, Any]:
        return {"shard": self._n, "batch_size": self.hp.batch_size}

    def reader_state(self) -> dict[str, Any]:
        return {"order": self._order, "cursor": self._cursor, "np_rng": self._rng.bit_generator.state,
                "gen": self._gen.get_state()}

    def load_reader_state(self, state: Mapping[str, Any]) -> None:
        self._order = [np.asarray(b) for b in state["order"]]
        self._cursor = int(state["cursor"])
        self._rng.bit_generator.state = state["np_rng"]
        self._gen.set_state(state["gen"])
