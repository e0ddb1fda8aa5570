"""LSTM language models parameterized by width (the hidden size), for the word and character families.

One architecture, embedding → LSTM → linear, serves both LSTM families (Hestness et al. used LSTMs and RHNs for
words and RHNs for characters; the RHN families are ``domains.lm.rhn``). Width scales embedding and hidden
size together so the parameter count, the x-axis of the model-size law, grows smoothly with it.
"""

from __future__ import annotations

import torch
from torch import nn

from domains.lm.softmax import TokenLM, init_embedding_and_decoder, make_decoder

Hidden = tuple[torch.Tensor, torch.Tensor]


def check_shape(what: str, sizes: dict[str, tuple[int, int]], rates: dict[str, float]) -> None:
    """ValueError naming every size and rate of a ``what`` model when a size (value, minimum) is below its minimum
    or a dropout rate lies outside [0, 1): a bad shape fails where the model is built, all values in the message."""
    if any(value < low for value, low in sizes.values()) or not all(0.0 <= r < 1.0 for r in rates.values()):
        shown = [f"{name}={value}" for name, (value, _) in sizes.items()] + [f"{k}={v}" for k, v in rates.items()]
        raise ValueError(f"bad {what} shape: {', '.join(shown)}")


class RecurrentLM(TokenLM):
    """Embedding → dropout → multi-layer LSTM → dropout → softmax over the vocabulary (full, or adaptive with
    ``softmax_cutoffs``: ``domains.lm.softmax``)."""

    def __init__(self, vocab: int, width: int, layers: int = 1, dropout: float = 0.0,
                 tie_weights: bool = False, softmax_cutoffs: tuple[int, ...] = (), softmax_div: float = 4.0) -> None:
        super().__init__()
        check_shape("LM", {"vocab": (vocab, 2), "width": (width, 1), "layers": (layers, 1)}, {"dropout": dropout})
        self.vocab, self.width, self.layers = vocab, width, layers
        self.embed = nn.Embedding(vocab, width)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.LSTM(width, width, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                           batch_first=True)
        self.decoder = make_decoder(width, vocab, softmax_cutoffs, softmax_div)
        init_embedding_and_decoder(self.embed, self.decoder, tie_weights)

    def init_hidden(self, batch: int, device: torch.device | str = "cpu") -> Hidden:
        """Zero LSTM state for ``batch`` parallel streams."""
        zeros = torch.zeros(self.layers, batch, self.width, device=device)
        return zeros, zeros.clone()

    def features(self, tokens: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        """The last LSTM layer's outputs (after dropout) and the LSTM state after the last step."""
        out, hidden = self.rnn(self.drop(self.embed(tokens)), hidden)
        return self.drop(out), hidden


FAMILIES = ("word", "char")  # one architecture; the families differ in vocabulary and hyperparameters


def build_model(family: str, vocab: int, width: int, *, layers: int = 1, dropout: float = 0.0,
                tie_weights: bool = False, softmax_cutoffs: tuple[int, ...] = (),
                softmax_div: float = 4.0) -> RecurrentLM:
    """The model of ``family`` ("word" or "char") with ``width`` hidden units per layer."""
    if family not in FAMILIES:
        raise KeyError(f"no LM model for family {family!r}; known: {', '.join(FAMILIES)}")
    return RecurrentLM(vocab, width, layers=layers, dropout=dropout, tie_weights=tie_weights,
                       softmax_cutoffs=softmax_cutoffs, softmax_div=softmax_div)
