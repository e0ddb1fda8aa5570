"""Word models at scale: the adaptive softmax's loss is the exact cross-entropy, tied embeddings are one tensor,
non-embedding parameter counts leave out every vocabulary table, and the hyperparameters refuse bad values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from domains.base import TrialSetup
from domains.lm import LMDomain
from domains.lm.data import LMData
from domains.lm.models import RecurrentLM
from domains.lm.rhn import RecurrentHighwayLM
from domains.parameters import count_parameters

VOCAB, WIDTH = 50, 16


def adaptive(kind: str, **kw: object) -> RecurrentLM | RecurrentHighwayLM:
    torch.manual_seed(0)
    if kind == "lstm":
        return RecurrentLM(VOCAB, WIDTH, layers=2, softmax_cutoffs=(10, 30), **kw)  # type: ignore[arg-type]
    return RecurrentHighwayLM(VOCAB, WIDTH, 2, softmax_cutoffs=(10, 30), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["lstm", "rhn"])
def test_adaptive_softmax_loss_is_the_full_cross_entropy(kind: str) -> None:
    model = adaptive(kind)
    assert isinstance(model.decoder, nn.AdaptiveLogSoftmaxWithLoss)
    tokens = torch.randint(0, VOCAB, (3, 9), generator=torch.Generator().manual_seed(1))
    hidden = model.init_hidden(3)
    log_probs, _ = model(tokens[:, :-1], hidden)
    # a normalized distribution over the whole vocabulary at every position ...
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 8))
    # ... whose cross-entropy the training loss is, for every target (head and tail clusters alike)
    full = F.cross_entropy(log_probs.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))
    mean, _ = model.nll(tokens[:, :-1], tokens[:, 1:], hidden)
    total, _ = model.nll(tokens[:, :-1], tokens[:, 1:], hidden, reduction="sum")
    torch.testing.assert_close(mean, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total, full * 24, rtol=1e-5, atol=1e-5)
    assert (tokens[:, 1:] >= 30).any() and (tokens[:, 1:] < 10).any()


def test_cutoffs_at_or_above_the_vocabulary_leave_a_full_softmax() -> None:
    model = RecurrentLM(VOCAB, WIDTH, softmax_cutoffs=(49, 2000))
    assert isinstance(model.decoder, nn.Linear) and model.decoder.out_features == VOCAB
    small = RecurrentLM(VOCAB, WIDTH, softmax_cutoffs=(20, 2000))
    assert isinstance(small.decoder, nn.AdaptiveLogSoftmaxWithLoss) and small.decoder.cutoffs == [20, VOCAB]


@pytest.mark.parametrize("kind", ["lstm", "rhn"])
def test_tied_embeddings_share_storage_and_count_once(kind: str) -> None:
    model = RecurrentLM(VOCAB, WIDTH, tie_weights=True) if kind == "lstm" else \
        RecurrentHighwayLM(VOCAB, WIDTH, 2, tie_weights=True)
    assert model.decoder.weight is model.embed.weight
    assert model.decoder.weight.data_ptr() == model.embed.weight.data_ptr()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, _ = model.nll(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long),
                        model.init_hidden(1))
    loss.backward()
    opt.step()
    assert model.decoder.weight.data_ptr() == model.embed.weight.data_ptr()  # still one tensor after an update
    untied = RecurrentLM(VOCAB, WIDTH) if kind == "lstm" else RecurrentHighwayLM(VOCAB, WIDTH, 2)
    assert count_parameters(untied) - count_parameters(model) == VOCAB * WIDTH


@pytest.mark.parametrize("cutoffs", [(), (10, 30)])
def test_non_embedding_count_is_the_recurrence_alone(cutoffs: tuple[int, ...]) -> None:
    for model, core in ((RecurrentLM(VOCAB, WIDTH, layers=2, softmax_cutoffs=cutoffs), "rnn"),
                        (RecurrentHighwayLM(VOCAB, WIDTH, 3, softmax_cutoffs=cutoffs), "cell")):
        recurrence = sum(p.numel() for p in getattr(model, core).parameters())
        assert count_parameters(model, embeddings=False) == recurrence
        assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_adaptive_word_lstm_trains_through_the_domain(data: LMData) -> None:
    hp = {"layers": 2, "softmax_cutoffs": "20,60", "lr": 0.01, "dropout": 0.0}
    task = LMDomain().build_task(data, TrialSetup(family="word", fraction=1.0, width=16, hparams=hp, seed=0))
    assert isinstance(task.model.decoder, nn.AdaptiveLogSoftmaxWithLoss)
    before = task.evaluate()["val_xent"]
    first = task.train(30).loss
    last = task.train(30).loss
    assert math.isfinite(before) and last < first < math.log(data.vocab_size("word")) + 0.5


@pytest.mark.parametrize(("hparams", "named"), [
    ({"softmax_cutoffs": "200,100"}, "softmax_cutoffs"),
    ({"softmax_cutoffs": "2000;8000"}, "softmax_cutoffs"),
    ({"softmax_cutoffs": "2000", "tie_weights": True}, "tie_weights and softmax_cutoffs"),
    ({"softmax_div": 0.5}, "softmax_div"),
])
def test_bad_softmax_hyperparameters_are_refused_by_name(hparams: dict[str, object], named: str) -> None:
    for family in ("word", "word_rhn"):
        with pytest.raises(ValueError, match=named):
            LMDomain().check_hparams(family, hparams)
