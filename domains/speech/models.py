"""The two speech model families, parameterized by width.

* ``ds2`` (Amodei et al. 2016, Deep Speech 2): a 2-D convolution front end over (time, mel), a stack of
  bidirectional GRUs (or LSTMs) and a linear layer to characters + blank, trained with CTC. Width = the
  RNN hidden size per direction.
* ``attention``: an attention encoder–decoder in the style of current ESPnet/LAS successors: a 2-D
  convolution subsampling (×4 in time), a Conformer encoder (``torchaudio.models.Conformer``) and a
  Transformer decoder that attends over the encoder states and emits characters one at a time; an auxiliary
  CTC head on the encoder (hybrid CTC/attention, Watanabe et al. 2017) makes alignments learnable on small
  data and short budgets (``ctc_weight`` = 0 gives the pure attention model), an optional guided-attention
  penalty keeps cross-attention near the diagonal, and greedy decoding may add the CTC head's prefix scores
  (``CTCPrefixScorer``). Width = the model dimension.

Both consume per-utterance-normalized log-mel frames ``(batch, time, n_mels)`` with their lengths. Id 0 is
the CTC blank and the decoder's start/end token; characters are ids 1..len(alphabet).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.models import Conformer

from domains.layers import BiRNN


def conv_out_lengths(lengths: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    return torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1


class DS2FrontEnd(nn.Module):
    """Deep Speech 2's two 2-D conv layers (time stride 2, frequency stride 2 × 2), batch norm, clipped ReLU."""

    KERNEL_T, KERNEL_F = 5, 7

    def __init__(self, n_mels: int, channels: int) -> None:
        super().__init__()
        pad = (self.KERNEL_T // 2, self.KERNEL_F // 2)
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, (self.KERNEL_T, self.KERNEL_F), stride=(2, 2), padding=pad, bias=False),
            nn.BatchNorm2d(channels), nn.Hardtanh(0, 20, inplace=True),
            nn.Conv2d(channels, channels, (self.KERNEL_T, self.KERNEL_F), stride=(1, 2), padding=pad, bias=False),
            nn.BatchNorm2d(channels), nn.Hardtanh(0, 20, inplace=True),
        )
        freq = n_mels
        for _ in range(2):
            freq = (freq + 2 * pad[1] - self.KERNEL_F) // 2 + 1
        self.out_dim = channels * freq

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x.unsqueeze(1))  # (batch, channels, time', freq')
        b, c, t, f = y.shape
        return y.permute(0, 2, 1, 3).reshape(b, t, c * f), conv_out_lengths(lengths, self.KERNEL_T, 2,
                                                                            self.KERNEL_T // 2)


class DeepSpeech2(nn.Module):
    """Conv front end → bidirectional RNN stack → per-frame log-probabilities over blank + characters."""

    def __init__(self, n_mels: int, vocab: int, width: int, *, rnn_layers: int = 3, rnn_type: str = "gru",
                 conv_channels: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        if width < 1 or rnn_layers < 1 or rnn_type not in ("gru", "lstm"):
            raise ValueError(f"bad DS2 shape: width={width}, rnn_layers={rnn_layers}, rnn_type={rnn_type!r}")
        self.vocab = vocab
        self.front = DS2FrontEnd(n_mels, conv_channels)
        self.rnn = BiRNN(self.front.out_dim, width, rnn_layers, rnn_type, dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * width, vocab)

    def embedding_parameters(self) -> Iterator[nn.Parameter]:
        """The character softmax layer: what ``domains.parameters.count_parameters(embeddings=False)`` leaves out."""
        return self.head.parameters()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities (batch, time', vocab) and their lengths."""
        h, lengths = self.front(x, lengths)
        return F.log_softmax(self.head(self.drop(self.rnn(h, lengths))), dim=-1), lengths


class Conv2dSubsampling(nn.Module):
    """Two 3×3 stride-2 convolutions (time and frequency ÷4), then a projection to the model dimension."""

    def __init__(self, n_mels: int, channels: int, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU())
        freq = ((n_mels - 3) // 2 + 1 - 3) // 2 + 1
        self.proj = nn.Linear(channels * freq, d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x.unsqueeze(1))
        b, c, t, f = y.shape
        lengths = conv_out_lengths(conv_out_lengths(lengths, 3, 2, 0), 3, 2, 0).clamp(min=1)
        return self.proj(y.permute(0, 2, 1, 3).reshape(b, t, c * f)), lengths


def sinusoids(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Transformer position encodings (length, dim)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    enc = torch.zeros(length, dim, device=device)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return enc


class DecoderLayer(nn.Module):
    """Pre-norm Transformer decoder layer (self-attention, cross-attention, feed-forward) that also returns
    its head-averaged cross-attention weights, for the guided-attention loss."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(width, 4 * width), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, causal: torch.Tensor,
                memory_pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm1(x)
        x = x + self.drop(self.self_attn(h, h, h, attn_mask=causal, need_weights=False)[0])
        h, weights = self.cross_attn(self.norm2(x), memory, memory, key_padding_mask=memory_pad)
        x = x + self.drop(h)
        return x + self.drop(self.ffn(self.norm3(x))), weights


class AttentionEncoderDecoder(nn.Module):
    """Conv subsampling → Conformer encoder (+ CTC head) → Transformer decoder over characters."""

    def __init__(self, n_mels: int, vocab: int, width: int, *, enc_layers: int = 4, dec_layers: int = 2,
                 heads: int = 4, conv_channels: int = 32, conv_kernel: int = 15, dropout: float = 0.1) -> None:
        super().__init__()
        if width < heads or width % heads or width % 2 or enc_layers < 1 or dec_layers < 1:
            raise ValueError(f"bad attention shape: width={width} (a multiple of heads={heads} and of 2), "
                             f"enc_layers={enc_layers}, dec_layers={dec_layers}")
        self.vocab, self.width = vocab, width
        self.subsample = Conv2dSubsampling(n_mels, conv_channels, width)
        self.encoder = Conformer(input_dim=width, num_heads=heads, ffn_dim=4 * width, num_layers=enc_layers,
                                 depthwise_conv_kernel_size=conv_kernel, dropout=dropout)
        self.ctc_head = nn.Linear(width, vocab)
        self.embed = nn.Embedding(vocab, width)
        self.layers = nn.ModuleList(DecoderLayer(width, heads, dropout) for _ in range(dec_layers))
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width, vocab)

    def embedding_parameters(self) -> Iterator[nn.Parameter]:
        """The CTC and decoder softmax layers (the character embedding is found by type): what
        ``domains.parameters.count_parameters(embeddings=False)`` leaves out."""
        yield from self.ctc_head.parameters()
        yield from self.out.parameters()

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (batch, time/4, width) and their lengths."""
        h, lengths = self.subsample(x, lengths)
        h, lengths = self.encoder(self.drop(h), lengths)
        return h, lengths

    def ctc_log_probs(self, memory: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.ctc_head(memory), dim=-1)

    def decode(self, memory: torch.Tensor, memory_lengths: torch.Tensor,
               prefix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-character logits (batch, prefix_len, vocab) at every position of ``prefix`` (teacher forcing)
        and the cross-attention weights averaged over layers and heads (batch, prefix_len, memory_len)."""
        n = prefix.shape[1]
        x = self.drop(self.embed(prefix) * math.sqrt(self.width) + sinusoids(n, self.width, prefix.device))
        causal = torch.triu(torch.full((n, n), float("-inf"), device=prefix.device), diagonal=1)
        pad = torch.arange(memory.shape[1], device=memory.device)[None, :] >= memory_lengths[:, None]
        weights = []
        for layer in self.layers:
            x, w = layer(x, memory, causal, pad)
            weights.append(w)
        return self.out(self.norm(x)), torch.stack(weights).mean(0)

    @torch.no_grad()
    def greedy(self, memory: torch.Tensor, memory_lengths: torch.Tensor, ctc_weight: float = 0.0,
               ) -> list[list[int]]:
        """Greedy (beam 1) autoregressive decoding from the start token until the end token (both id 0), at
        most as many characters as encoder frames + 10. With ``ctc_weight`` > 0 each step maximizes
        ``(1 - w)·log p_att + w·Δ log p_ctc-prefix`` (joint CTC/attention decoding, Watanabe et al. 2017),
        which stops the looping and early endings of a young attention decoder."""
        b = memory.shape[0]
        caps = (memory_lengths + 10).tolist()
        scorer = CTCPrefixScorer(self.ctc_log_probs(memory), memory_lengths) if ctc_weight > 0 else None
        prefix = torch.zeros(b, 1, dtype=torch.long, device=memory.device)
        done = torch.zeros(b, dtype=torch.bool, device=memory.device)
        for _ in range(max(caps)):
            scores = F.log_softmax(self.decode(memory, memory_lengths, prefix)[0][:, -1].float(), dim=-1)
            if scorer is not None:
                scores = (1 - ctc_weight) * scores + ctc_weight * scorer.scores()
            nxt = scores.argmax(-1).masked_fill(done, 0)
            if scorer is not None:
                scorer.advance(nxt)
            prefix = torch.cat([prefix, nxt[:, None]], dim=1)
            done |= nxt == 0
            if bool(done.all()):
                break
        out = []
        for row, cap in zip(prefix[:, 1:].tolist(), caps, strict=True):
            out.append((row[: row.index(0)] if 0 in row else row)[:cap])
        return out


class CTCPrefixScorer:
    """CTC prefix probabilities of one growing hypothesis per utterance, for every next character at once.

    The forward variables r_n(t), r_b(t) (prefix emitted by frame t, ending in a non-blank / blank) follow
    Watanabe et al. 2017, Algorithm 2 (ESPnet's ``CTCPrefixScore``), vectorized over batch and vocabulary.
    ``scores()`` gives log p_ctc(prefix + c, …) − log p_ctc(prefix, …) for each c, and for the end token
    (id 0) the change to the probability of the whole utterance being exactly the prefix.
    """

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> None:
        x = log_probs.float().transpose(0, 1).clone()  # (time, batch, vocab)
        t_max, batch, _ = x.shape
        beyond = torch.arange(t_max, device=x.device)[:, None] >= lengths[None, :]
        x[beyond] = -math.inf  # past the end only blanks, at no cost: the last frame's sums are the totals
        x[..., blank] = x[..., blank].masked_fill(beyond, 0.0)
        self.x, self.blank = x, blank
        self.r = torch.full((t_max, batch, 2), -math.inf, device=x.device)
        self.r[:, :, 1] = torch.cumsum(x[:, :, blank], dim=0)  # the empty prefix: blanks only
        self.psi = torch.zeros(batch, device=x.device)
        self.last = torch.full((batch,), -1, dtype=torch.long, device=x.device)
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def scores(self) -> torch.Tensor:
        """(batch, vocab) prefix-score increments for every candidate next character."""
        x, r = self.x, self.r
        t_max, batch, vocab = x.shape
        total = torch.logaddexp(r[:, :, 0], r[:, :, 1])  # (time, batch)
        phi = total[:, :, None].expand(-1, -1, vocab).clone()
        repeat = torch.nn.functional.one_hot(self.last.clamp(min=0), vocab).bool() & (self.last >= 0)[:, None]
        phi[:, repeat] = r[:, :, 1][:, :, None].expand(-1, -1, vocab)[:, repeat]  # a repeat needs a blank first
        r_n = torch.full((t_max, batch, vocab), -math.inf, device=x.device)
        r_b = torch.full_like(r_n, -math.inf)
        r_n[0] = torch.where((self.last < 0)[:, None], x[0], torch.full_like(x[0], -math.inf))
        for t in range(1, t_max):
            r_n[t] = torch.logaddexp(r_n[t - 1], phi[t - 1]) + x[t]
            r_b[t] = torch.logaddexp(r_n[t - 1], r_b[t - 1]) + x[t, :, self.blank, None]
        psi = torch.logsumexp(torch.cat([r_n[:1], phi[:-1] + x[1:]], dim=0), dim=0)
        psi[:, self.blank] = total[-1]  # ending here: the whole utterance is exactly the prefix
        self._pending = (torch.stack([r_n, r_b], dim=-1), psi)
        return (psi - self.psi[:, None]).nan_to_num(nan=-math.inf)  # an impossible prefix stays impossible

    def advance(self, chosen: torch.Tensor) -> None:
        """Extend each hypothesis by its chosen character (the end token leaves it as it is)."""
        assert self._pending is not None, "scores() must be called before advance()"
        r_all, psi = self._pending
        rows = torch.arange(len(chosen), device=chosen.device)
        keep = chosen == self.blank
        self.r = torch.where(keep[None, :, None], self.r, r_all[:, rows, chosen])
        self.psi = torch.where(keep, self.psi, psi[rows, chosen])
        self.last = torch.where(keep, self.last, chosen)
        self._pending = None


def guided_attention_loss(weights: torch.Tensor, target_lengths: torch.Tensor, memory_lengths: torch.Tensor,
                          sigma: float = 0.2) -> torch.Tensor:
    """Summed penalty on attention far from the diagonal (Tachibana et al. 2018): speech is read left to
    right, so output position n of N should attend near frame n/N·T. Speeds up learning the alignment."""
    _, n_max, t_max = weights.shape
    n = torch.arange(n_max, device=weights.device)[None, :, None] / target_lengths[:, None, None]
    t = torch.arange(t_max, device=weights.device)[None, None, :] / memory_lengths[:, None, None]
    penalty = 1.0 - torch.exp(-((n - t) ** 2) / (2 * sigma**2))
    valid = (torch.arange(n_max, device=weights.device)[None, :] < target_lengths[:, None])[:, :, None]
    return (weights * penalty * valid).sum(dim=(1, 2)).sum()

