"""Parameter counts with and without embeddings, against hand counts: embedding tables and vocabulary output layers
(found by type or declared with ``embedding_parameters``) leave the second count, tied weights count once."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from domains.nmt.models import build_model as nmt_model
from domains.parameters import count_parameters
from domains.speech.models import AttentionEncoderDecoder, DeepSpeech2
from domains.training import count_parameters as reexported


class TinyLM(nn.Module):
    """Embedding(V, W) -> Linear(W, H) -> Linear(H, V), the last declared a vocabulary output, optionally tied."""

    def __init__(self, vocab: int, width: int, tied: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.hidden = nn.Linear(width, width)
        self.out = nn.Linear(width, vocab)
        if tied:
            self.out.weight = self.embed.weight

    def embedding_parameters(self) -> Iterator[nn.Parameter]:
        return self.out.parameters()


def test_hand_count_with_and_without_embeddings() -> None:
    v, w = 50, 8
    hidden = w * w + w
    untied = TinyLM(v, w, tied=False)
    assert count_parameters(untied) == v * w + hidden + w * v + v == 922
    assert count_parameters(untied, embeddings=False) == hidden == 72
    tied = TinyLM(v, w, tied=True)  # the shared matrix counts once, in and out
    assert count_parameters(tied) == v * w + hidden + v == 522
    assert count_parameters(tied, embeddings=False) == hidden
    assert reexported is count_parameters  # the old import path stays


def test_types_and_nested_declarations_and_frozen_parameters() -> None:
    adaptive = nn.AdaptiveLogSoftmaxWithLoss(16, 100, cutoffs=[10, 50])
    inner = TinyLM(20, 4, tied=False)  # a submodule's declaration counts too
    model = nn.Sequential(nn.Linear(3, 16), adaptive, inner)
    adaptive_params = sum(p.numel() for p in adaptive.parameters())
    assert count_parameters(model) == 3 * 16 + 16 + adaptive_params + (20 * 4 + 20 + 20 * 4 + 4 * 4 + 4)
    assert count_parameters(model, embeddings=False) == 3 * 16 + 16 + (4 * 4 + 4)
    model[0].bias.requires_grad_(False)  # only trainable parameters are model size
    assert count_parameters(model, embeddings=False) == 3 * 16 + 4 * 4 + 4


def _module_params(*modules: nn.Module) -> int:
    """Parameters of ``modules`` together, each shared one once."""
    return sum(p.numel() for p in {id(p): p for m in modules for p in m.parameters()}.values())


def test_nmt_without_embeddings_leaves_out_both_tables_and_the_softmax() -> None:
    for family in ("lstm", "transformer"):
        for tied in (True, False):
            model = nmt_model(family, 1000, 64, layers=2, dropout=0.1, tie_embeddings=tied)
            vocab_layers = _module_params(model.src_embed, model.tgt_embed, model.out)
            assert vocab_layers == 2 * 1000 * 64 + (0 if tied else 64 * 1000) + 1000
            assert count_parameters(model, embeddings=False) == count_parameters(model) - vocab_layers
    lstm = nmt_model("lstm", 8000, 128, layers=2, dropout=0.1, tie_embeddings=False)
    share = 1 - count_parameters(lstm, embeddings=False) / count_parameters(lstm)
    assert share > 0.85  # issue 13: at width 128 most of a small NMT model is its vocabulary tables


def test_speech_models_leave_out_their_character_layers() -> None:
    ds2 = DeepSpeech2(40, 29, 32, rnn_layers=2)
    assert count_parameters(ds2, embeddings=False) == count_parameters(ds2) - (2 * 32 * 29 + 29)
    att = AttentionEncoderDecoder(40, 29, 32, enc_layers=1, dec_layers=1)
    assert count_parameters(att, embeddings=False) == count_parameters(att) - (29 * 32 + 2 * (32 * 29 + 29))


def test_image_models_have_no_embeddings() -> None:
    from domains.image.models import build_model

    model = build_model("resnet", 8, 10, in_channels=1, image_size=8, depth=10)
    assert count_parameters(model, embeddings=False) == count_parameters(model) > 0
