"""Layers more than one domain's models use: bidirectional RNN stacks on padded batches."""

from __future__ import annotations

import torch
from torch import nn


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first ``length`` time steps in reverse order, padding left in place: (B, T, ...) → same."""
    t = torch.arange(x.size(1), device=x.device)[None, :]
    lens = lengths.to(x.device)[:, None]
    idx = torch.where(t < lens, lens - 1 - t, t)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


class BiRNN(nn.Module):
    """A stack of bidirectional GRU/LSTM layers on padded batches, exact at every valid frame.

    Packed sequences would also be exact, but on CPU they make PyTorch run the recurrence op by op (measured
    3-5x slower than the fused oneDNN kernel). Here each direction is a unidirectional RNN on a padded
    batch: the forward one never sees padding before a valid frame, and the backward one runs on each
    sequence reversed within its length, so its padding also comes last. The output is the two directions
    concatenated (forward first); dropout goes between layers.
    """

    def __init__(self, input_size: int, hidden: int, layers: int, rnn_type: str = "lstm",
                 dropout: float = 0.0) -> None:
        super().__init__()
        rnn = nn.GRU if rnn_type == "gru" else nn.LSTM
        sizes = [input_size] + [2 * hidden] * (layers - 1)
        self.fwd = nn.ModuleList(rnn(n, hidden, batch_first=True) for n in sizes)
        self.bwd = nn.ModuleList(rnn(n, hidden, batch_first=True) for n in sizes)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for i, (fwd, bwd) in enumerate(zip(self.fwd, self.bwd, strict=True)):
            if i:
                x = self.drop(x)
            back = reverse_within(bwd(reverse_within(x, lengths))[0], lengths)
            x = torch.cat([fwd(x)[0], back], dim=-1)
        return x
