"""Recurrent highway network language models (Zilly et al. 2017), the word and character RHN families.

One RHN layer makes ``depth`` highway micro-layers per time step. Micro-layer ``l`` maps the state
``s[l-1]`` (``s[0]`` is the previous time step's output) to

    h = tanh(R_H[l] s[l-1] + b_H[l] + [l = 1] W_H x_t)
    t = sigmoid(R_T[l] s[l-1] + b_T[l] + [l = 1] W_T x_t)
    s[l] = h * t + s[l-1] * (1 - t)          (coupled carry gate c = 1 - t)

so the input enters only the first micro-layer and the last micro-layer's state is the step's output and the
next step's ``s[0]``. The transform-gate biases start negative (``gate_bias``) so that at initialization each
micro-layer mostly carries its state through, which is what lets gradients cross deep recurrences. Width is the
state size (and the embedding size, as in the LSTM families). Parameters (embedding width ``w``, vocabulary
``V``, depth ``L``): ``V*w`` embedding, ``2*w*w`` input, ``L*(2*w*w + 2*w)`` recurrence, ``w*V + V`` decoder
(less ``V*w`` with tied embeddings), see ``rhn_parameter_count``.

Dropout: ``dropout`` on the embeddings and the outputs, like the LSTM families; ``state_dropout`` drops units of
the state each micro-layer reads, with one mask per micro-layer for the whole unrolled sequence (variational
dropout, as Zilly et al. regularize the recurrence). All state lives in parameters and in the hidden tensor the
task carries, so data-parallel replicas stay identical after every averaged update.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from domains.lm.models import check_shape
from domains.lm.softmax import TokenLM, init_embedding_and_decoder, make_decoder

RHNHidden = tuple[torch.Tensor]


class RHNCell(nn.Module):
    """One RHN layer of ``depth`` micro-layers, run over a (batch, time, input) sequence."""

    def __init__(self, input_size: int, width: int, depth: int, gate_bias: float = -3.0,
                 state_dropout: float = 0.0) -> None:
        super().__init__()
        check_shape("RHN", {"input_size": (input_size, 1), "width": (width, 1), "depth": (depth, 1)},
                    {"state_dropout": state_dropout})
        self.width, self.depth, self.state_dropout = width, depth, state_dropout
        # Stored input-major so a step is one addmm: columns [:width] feed h, [width:] feed the transform gate t.
        self.input_weight = nn.Parameter(torch.empty(input_size, 2 * width))  # [W_H W_T]^T, micro-layer 1 only
        self.recurrent_weight = nn.Parameter(torch.empty(depth, width, 2 * width))  # [R_H R_T]^T per micro-layer
        self.bias = nn.Parameter(torch.empty(depth, 2 * width))  # [b_H b_T] per micro-layer
        bound = 1.0 / math.sqrt(width)
        with torch.no_grad():
            nn.init.uniform_(self.input_weight, -bound, bound)
            nn.init.uniform_(self.recurrent_weight, -bound, bound)
            self.bias[:, :width].zero_()
            self.bias[:, width:].fill_(gate_bias)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs (batch, time, width) of every step and the state after the last one."""
        pre = torch.matmul(x, self.input_weight) + self.bias[0]  # every step's first-micro-layer input at once
        weights, biases = self.recurrent_weight.unbind(0), self.bias.unbind(0)
        masks = self._state_masks(state)
        outputs = []
        for step in range(x.shape[1]):
            for layer in range(self.depth):
                read = state if masks is None else state * masks[layer]
                base = pre[:, step] if layer == 0 else biases[layer]
                h, t = torch.addmm(base, read, weights[layer]).chunk(2, dim=-1)
                state = torch.lerp(state, torch.tanh(h), torch.sigmoid(t))
            outputs.append(state)
        return torch.stack(outputs, dim=1), state

    def _state_masks(self, state: torch.Tensor) -> torch.Tensor | None:
        """One inverted-dropout mask per micro-layer, shared by every time step of this call (training only)."""
        if not self.training or self.state_dropout == 0.0:
            return None
        keep = 1.0 - self.state_dropout
        shape = (self.depth, *state.shape)
        return torch.bernoulli(torch.full(shape, keep, device=state.device, dtype=state.dtype)) / keep


class RecurrentHighwayLM(TokenLM):
    """Embedding → dropout → RHN (``depth`` micro-layers) → dropout → softmax over the vocabulary (full or
    adaptive, ``domains.lm.softmax``)."""

    def __init__(self, vocab: int, width: int, depth: int, dropout: float = 0.0, gate_bias: float = -3.0,
                 state_dropout: float = 0.0, tie_weights: bool = False, softmax_cutoffs: tuple[int, ...] = (),
                 softmax_div: float = 4.0) -> None:
        super().__init__()
        check_shape("RHN LM", {"vocab": (vocab, 2)}, {"dropout": dropout})
        self.vocab, self.width, self.depth = vocab, width, depth
        self.embed = nn.Embedding(vocab, width)
        self.drop = nn.Dropout(dropout)
        self.cell = RHNCell(width, width, depth, gate_bias=gate_bias, state_dropout=state_dropout)
        self.decoder = make_decoder(width, vocab, softmax_cutoffs, softmax_div)
        init_embedding_and_decoder(self.embed, self.decoder, tie_weights)

    def init_hidden(self, batch: int, device: torch.device | str = "cpu") -> RHNHidden:
        """Zero state for ``batch`` parallel streams (a 1-tuple, carried like the LSTM's (h, c))."""
        return (torch.zeros(batch, self.width, device=device),)

    def features(self, tokens: torch.Tensor, hidden: RHNHidden) -> tuple[torch.Tensor, RHNHidden]:
        """The RHN's outputs (after dropout) and its state after the last step."""
        out, state = self.cell(self.drop(self.embed(tokens)), hidden[0])
        return self.drop(out), (state,)


def rhn_parameter_count(vocab: int, width: int, depth: int, tie_weights: bool = False) -> int:
    """Trainable parameters of ``RecurrentHighwayLM(vocab, width, depth)`` with a full softmax: the formula in the
    module docstring."""
    embedding = vocab * width
    recurrence = 2 * width * width + depth * (2 * width * width + 2 * width)
    decoder = (0 if tie_weights else width * vocab) + vocab
    return embedding + recurrence + decoder
