"""The output layer every LM family shares: a full softmax, or an adaptive one for large vocabularies.

A full softmax over the paper's 100k-word vocabulary is most of a small word model's compute. An adaptive
softmax (Grave et al. 2017, ``torch.nn.AdaptiveLogSoftmaxWithLoss``) keeps the frequent words in a full head and
puts rarer ones in tail clusters reached through a cluster token, with smaller projections (``width / div**i``):
its cross-entropy is exact — a normalized distribution over the whole vocabulary — and cheaper. It needs ids in
frequency order, which is how ``domains.lm.data`` numbers words. ``softmax_cutoffs`` names the cluster bounds
("2000,10000,50000"); bounds at or above a vocabulary's size are dropped, so one setting serves several
vocabularies, and none left means the full softmax.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Decoder = nn.Linear | nn.AdaptiveLogSoftmaxWithLoss


def parse_cutoffs(text: str, what: str = "LM") -> tuple[int, ...]:
    """``"2000,10000"`` -> (2000, 10000): positive, strictly increasing integers; ``""`` -> ()."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        cutoffs = tuple(int(p) for p in parts)
    except ValueError:
        cutoffs = ()
        parts = ["bad"]
    if len(cutoffs) != len(parts) or any(c < 1 for c in cutoffs) or list(cutoffs) != sorted(set(cutoffs)):
        raise ValueError(f"{what} hyperparameter softmax_cutoffs must be comma-separated increasing positive "
                         f"integers such as \"2000,10000\" (or \"\" for a full softmax), got {text!r}")
    return cutoffs


def make_decoder(width: int, vocab: int, cutoffs: tuple[int, ...] = (), div_value: float = 4.0) -> Decoder:
    """A full softmax layer (``nn.Linear``), or an adaptive softmax with the ``cutoffs`` below ``vocab - 1``."""
    kept = [c for c in cutoffs if c < vocab - 1]
    if not kept:
        return nn.Linear(width, vocab)
    return nn.AdaptiveLogSoftmaxWithLoss(width, vocab, kept, div_value=div_value)


def init_embedding_and_decoder(embed: nn.Embedding, decoder: Decoder, tie_weights: bool) -> None:
    """Initialize every LM family's input embedding and full softmax layer alike (uniform ±0.1, zero bias); with
    ``tie_weights`` the decoder takes the embedding's matrix. An adaptive softmax keeps torch's initialization
    and cannot be tied. Called after all modules exist, so the torch RNG draws of module construction come
    first, in declaration order."""
    nn.init.uniform_(embed.weight, -0.1, 0.1)
    if isinstance(decoder, nn.AdaptiveLogSoftmaxWithLoss):
        if tie_weights:
            raise ValueError("tie_weights needs the full softmax (no softmax_cutoffs below the vocabulary size)")
        return
    nn.init.zeros_(decoder.bias)
    if tie_weights:
        decoder.weight = embed.weight
    else:
        nn.init.uniform_(decoder.weight, -0.1, 0.1)


class TokenLM(nn.Module):
    """What every LM family shares after its recurrence: the output layer (``decoder``), next-token scores and the
    exact negative log-likelihood. A family sets ``vocab`` and ``decoder`` and implements ``features``."""

    vocab: int
    decoder: Decoder

    def features(self, tokens: torch.Tensor, hidden: Any) -> tuple[torch.Tensor, Any]:
        """(batch, time, width) features the output layer reads, and the recurrent state after the last step."""
        raise NotImplementedError(f"{type(self).__name__} does not define features")

    def forward(self, tokens: torch.Tensor, hidden: Any) -> tuple[torch.Tensor, Any]:
        """Next-token scores (batch, time, vocab) — logits, or log-probabilities for an adaptive softmax (equal
        up to a constant per position, so either works with ``cross_entropy``) — and the state."""
        out, hidden = self.features(tokens, hidden)
        if isinstance(self.decoder, nn.AdaptiveLogSoftmaxWithLoss):
            return self.decoder.log_prob(out.reshape(-1, out.shape[-1])).view(*out.shape[:-1], -1), hidden
        return self.decoder(out), hidden

    def nll(self, tokens: torch.Tensor, targets: torch.Tensor, hidden: Any,
            reduction: str = "mean") -> tuple[torch.Tensor, Any]:
        """Negative log-likelihood of ``targets`` (nats; mean or sum over tokens) and the state; the adaptive
        softmax computes it without forming the full distribution."""
        out, hidden = self.features(tokens, hidden)
        target = targets.reshape(-1)
        if isinstance(self.decoder, nn.AdaptiveLogSoftmaxWithLoss):
            result = self.decoder(out.reshape(-1, out.shape[-1]), target)
            return (result.loss if reduction == "mean" else -result.output.sum()), hidden
        logits = self.decoder(out)
        return F.cross_entropy(logits.reshape(-1, self.vocab), target, reduction=reduction), hidden

    def embedding_parameters(self) -> Iterator[nn.Parameter]:
        """The full softmax's projection onto the vocabulary (``domains.parameters`` counts an adaptive softmax
        and the input embedding by their module types)."""
        if isinstance(self.decoder, nn.Linear):
            yield from self.decoder.parameters()
