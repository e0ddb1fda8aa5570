"""Speech training with real torch on real synthesized speech: overfitting, metrics, exact resume, divergence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from domains.base import TrialSetup
from domains.speech import SpeechDomain
from domains.speech.data import SpeechData
from domains.speech.espeak import TRAIN_SPLIT, VALID_SPLIT
from domains.speech.models import AttentionEncoderDecoder, CTCPrefixScorer, DeepSpeech2
from domains.speech.task import SpeechTask
from domains.training import count_parameters
from tests.domains.speech.conftest import make_corpus

SMALL = {
    "ds2": {"rnn_layers": 1, "rnn_type": "lstm", "conv_channels": 8, "dropout": 0.0, "lr": 6e-3},
    "attention": {"enc_layers": 1, "dec_layers": 1, "conv_channels": 8, "dropout": 0.0, "lr": 3e-3,
                  "guided_attention": 1.0, "label_smoothing": 0.0},
}


def prepare(root: Path, train: Path, valid: Path) -> SpeechData:
    domain = SpeechDomain()
    return domain.prepare(domain.source_model(train=str(train), valid=str(valid), n_mels=24), root / "cache")


@pytest.fixture(scope="module")
def ten(tmp_path_factory: pytest.TempPathFactory) -> SpeechData:
    """10 utterances that are both the training and the validation set: evaluate() reports training CER."""
    root = tmp_path_factory.mktemp("ten")
    corpus = make_corpus(root / "corpus", train=10, valid=1)
    return prepare(root, corpus / TRAIN_SPLIT, corpus / TRAIN_SPLIT)


@pytest.fixture(scope="module")
def data(speech_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> SpeechData:
    return prepare(tmp_path_factory.mktemp("data"), speech_corpus / TRAIN_SPLIT, speech_corpus / VALID_SPLIT)


def task(data: SpeechData, family: str, width: int = 32, seed: int = 0, fraction: float = 1.0,
         **hparams: object) -> SpeechTask:
    setup = TrialSetup(family=family, fraction=fraction, width=width, hparams={**SMALL[family], **hparams}, seed=seed)
    return SpeechDomain().build_task(data, setup)


@pytest.mark.parametrize(("family", "width", "steps", "decoding"), [
    ("ds2", 64, 300, {}),
    ("attention", 64, 600, {"decode_ctc_weight": 0.0}),  # the decoder alone, without CTC prefix scores
])
def test_each_family_overfits_ten_utterances(ten: SpeechData, family: str, width: int, steps: int,
                                             decoding: dict[str, float]) -> None:
    t = task(ten, family, width, batch_size=10, **decoding)
    assert t.evaluate()["val_cer"] >= 0.9  # untrained
    best = math.inf
    for _ in range(steps // 50):
        t.train(50)
        best = min(best, t.evaluate()["val_cer"])
        if best <= 0.02:
            break
    assert best <= 0.02, t.transcribe_validation()


@pytest.mark.parametrize("family", ["ds2", "attention"])
def test_evaluate_reports_the_declared_metrics(data: SpeechData, family: str) -> None:
    domain = SpeechDomain()
    t = task(data, family, batch_size=4)
    stats = t.train(3)
    assert stats.steps == 3 and math.isfinite(stats.loss)
    assert stats.samples == pytest.approx(stats.extra["audio_seconds"] / 3600)  # hours, the domain's unit
    assert 3 * 4 * 0.5 < stats.extra["audio_seconds"] < 3 * 4 * 4  # 12 utterances of about 1-3 s
    metrics = t.evaluate()
    assert set(metrics) == set(domain.family(family).metrics) and domain.family(family).metric in metrics
    assert all(math.isfinite(v) and v >= 0 for v in metrics.values())
    assert t.evaluate() == metrics  # evaluating disturbs nothing


@pytest.mark.parametrize("family", ["ds2", "attention"])
def test_state_dict_resumes_the_same_run(data: SpeechData, family: str) -> None:
    a = task(data, family, dropout=0.3, specaugment=True, batch_size=4)  # dropout and masks use the RNGs
    a.train(3)
    state = a.state_dict()
    expected = [a.train(2).loss for _ in range(3)]  # crosses an epoch boundary (14 utterances, 4 a batch)
    b = task(data, family, dropout=0.3, specaugment=True, batch_size=4, seed=9)
    b.load_state_dict(state)
    assert [b.train(2).loss for _ in range(3)] == expected
    assert b.evaluate() == a.evaluate()
    with pytest.raises(ValueError, match="another shard"):
        task(data, family, fraction=0.5, batch_size=4).load_state_dict(state)


def test_same_seed_same_run_other_seed_other_run(data: SpeechData) -> None:
    runs = [task(data, "ds2", seed=s, batch_size=4).train(3).loss for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


@pytest.mark.parametrize("family", ["ds2", "attention"])
def test_huge_learning_rate_gives_nan_not_an_exception(data: SpeechData, family: str) -> None:
    t = task(data, family, optimizer="sgd", lr=1e12, clip=0.0, batch_size=4)
    stats = t.train(10)
    assert math.isnan(stats.loss) and 1 <= stats.steps <= 10
    assert all(math.isnan(v) for v in t.evaluate().values())
    assert math.isnan(t.train(3).loss)


def test_hyperparameters_are_checked(data: SpeechData) -> None:
    domain = SpeechDomain()
    assert {"lr", "batch_size", "rnn_layers", "rnn_type", "specaugment"} <= set(domain.hparam_defaults("ds2"))
    assert {"enc_layers", "dec_layers", "ctc_weight", "guided_attention"} <= set(domain.hparam_defaults("attention"))
    with pytest.raises(ValueError, match="unknown speech ds2 hyperparameters"):
        task(data, "ds2", enc_layers=2)
    with pytest.raises(ValueError, match="integer"):
        task(data, "ds2", batch_size=2.5)
    with pytest.raises(ValueError, match="rnn_type"):
        task(data, "ds2", rnn_type="rnn")
    with pytest.raises(ValueError, match="true or false"):
        task(data, "attention", specaugment="yes")
    with pytest.raises(ValueError, match="multiple of heads"):
        task(data, "attention", width=30)
    with pytest.raises(KeyError, match="known families"):
        domain.hparam_defaults("las")


def test_ctc_prefix_scores_add_up_to_the_ctc_likelihood() -> None:
    """Extending a hypothesis character by character and ending it sums to log p_ctc(labels | audio)."""
    torch.manual_seed(0)
    log_probs = torch.randn(3, 12, 6).log_softmax(-1)
    lengths = torch.tensor([12, 9, 7])
    labels = [[1, 2, 2, 3], [4, 1], [5, 5, 5]]  # repeats need a blank between them
    scorer = CTCPrefixScorer(log_probs, lengths)
    total = torch.zeros(3)
    for k in range(max(map(len, labels)) + 1):
        scores = scorer.scores()
        for b, y in enumerate(labels):
            if k == len(y):
                expected = -F.ctc_loss(log_probs[b:b + 1].transpose(0, 1), torch.tensor([y]), lengths[b:b + 1],
                                       torch.tensor([len(y)]), reduction="sum")
                assert (total[b] + scores[b, 0]).item() == pytest.approx(expected.item(), abs=1e-4)
        chosen = torch.tensor([y[k] if k < len(y) else 0 for y in labels])
        total += torch.where(chosen == 0, 0.0, scores[torch.arange(3), chosen])
        scorer.advance(chosen)


def test_models_scale_with_width() -> None:
    ds2 = [count_parameters(DeepSpeech2(40, 29, w, rnn_layers=2)) for w in (32, 64, 128)]
    att = [count_parameters(AttentionEncoderDecoder(40, 29, w, enc_layers=2, dec_layers=1)) for w in (32, 64, 128)]
    assert ds2 == sorted(ds2) and att == sorted(att)
    model = DeepSpeech2(40, 29, 16, rnn_layers=1)
    log_probs, lengths = model(torch.randn(3, 101, 40), torch.tensor([101, 80, 7]))
    assert log_probs.shape == (3, 51, 29) and lengths.tolist() == [51, 40, 4]  # time stride 2
    enc = AttentionEncoderDecoder(40, 29, 16, enc_layers=1, dec_layers=1)
    memory, mem_lengths = enc.encode(torch.randn(2, 101, 40), torch.tensor([101, 60]))
    assert memory.shape == (2, 24, 16) and mem_lengths.tolist() == [24, 14]  # time stride 4
