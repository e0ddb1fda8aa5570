"""LM training with real torch on a tiny real corpus: learning, metrics, exact resume, divergence."""

from __future__ import annotations

import math

import pytest
import torch

from domains.base import TrialSetup
from domains.lm import LMDomain
from domains.lm.data import LMData
from domains.lm.models import RecurrentLM, build_model
from domains.lm.task import LMTask
from domains.training import count_parameters

FAST = {"batch_size": 8, "bptt": 16}


def task(data: LMData, family: str, width: int = 32, seed: int = 0, fraction: float = 1.0,
         **hparams: object) -> LMTask:
    setup = TrialSetup(family=family, fraction=fraction, width=width, hparams={**FAST, **hparams}, seed=seed)
    return LMDomain().build_task(data, setup)


@pytest.mark.parametrize(("family", "width", "steps"), [("word", 32, 150), ("char", 64, 250)])
def test_training_loss_falls_by_half(data: LMData, family: str, width: int, steps: int) -> None:
    t = task(data, family, width)
    first = t.train(10)
    t.train(steps)
    last = t.train(10)
    assert first.steps == last.steps == 10
    assert last.loss < 0.5 * first.loss, (first.loss, last.loss)
    assert first.samples == 10 * FAST["batch_size"] * FAST["bptt"]  # target tokens, in words / characters


@pytest.mark.parametrize("family", ["word", "char"])
def test_state_dict_resumes_the_same_run(data: LMData, family: str) -> None:
    a = task(data, family, dropout=0.3)  # dropout makes the RNG state matter
    a.train(7)
    state = a.state_dict()
    expected = [a.train(3).loss for _ in range(2)]
    expected_eval = a.evaluate()

    b = task(data, family, dropout=0.3, seed=99)  # a differently initialized model, then restored
    b.load_state_dict(state)
    assert [b.train(3).loss for _ in range(2)] == expected
    assert b.evaluate() == expected_eval


def test_same_seed_same_run_other_seed_other_run(data: LMData) -> None:
    runs = [task(data, "word", seed=s).train(5).loss for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


@pytest.mark.parametrize("family", ["word", "char"])
def test_evaluate_reports_the_declared_metrics(data: LMData, family: str) -> None:
    domain = LMDomain()
    t = task(data, family)
    untrained = t.evaluate()
    untrained_nats = untrained["val_xent"] if family == "word" else untrained["val_bpc"] * math.log(2)
    assert untrained_nats == pytest.approx(math.log(data.vocab_size(family)), abs=0.1)  # a uniform guess
    t.train(20)
    metrics = t.evaluate()
    assert set(metrics) == set(domain.family(family).metrics)
    assert domain.family(family).metric in metrics
    assert all(math.isfinite(v) and v > 0 for v in metrics.values())
    nats = metrics["val_xent"] if family == "word" else metrics["val_bpc"] * math.log(2)
    assert metrics["val_ppl"] == pytest.approx(math.exp(nats), rel=1e-9)
    assert t.evaluate() == metrics  # no state is disturbed by evaluating


def test_huge_learning_rate_gives_nonfinite_loss_not_an_exception(data: LMData) -> None:
    for family in ("word", "char"):
        t = task(data, family, optimizer="sgd", lr=1e9, clip=0.0)
        stats = t.train(20)
        assert not math.isfinite(stats.loss) and 1 <= stats.steps <= 20
        assert all(math.isnan(v) for v in t.evaluate().values())
        assert math.isnan(t.train(5).loss)  # stays diverged, without doing work
    adam = task(data, "word", lr=1e3)  # saturated, finite, but far worse than a uniform guess
    assert not math.isfinite(adam.train(20).loss)


def test_tiny_shard_and_large_batch(data: LMData) -> None:
    t = task(data, "word", fraction=1 / 64, batch_size=64, bptt=50)  # one sentence, 64 readers
    assert math.isfinite(t.train(3).loss)


def test_hyperparameters_are_checked(data: LMData) -> None:
    domain = LMDomain()
    assert set(domain.hparam_defaults("word")) == set(domain.hparam_defaults("char"))
    with pytest.raises(ValueError, match="unknown LM word hyperparameters"):
        task(data, "word", momentun=0.9)
    with pytest.raises(ValueError, match="optimizer"):
        task(data, "word", optimizer="rmsprop")
    with pytest.raises(ValueError, match="integer"):
        task(data, "word", batch_size=2.5)
    with pytest.raises(KeyError, match="known families"):
        domain.hparam_defaults("rhn")


def test_models_scale_with_width() -> None:
    counts = [count_parameters(build_model("word", 500, w)) for w in (16, 32, 64)]
    assert counts == sorted(counts)
    untied, tied = RecurrentLM(500, 32), RecurrentLM(500, 32, tie_weights=True)
    assert count_parameters(untied) - count_parameters(tied) == 500 * 32
    model = RecurrentLM(60, 16, layers=2)
    logits, (h, c) = model(torch.zeros(3, 5, dtype=torch.long), model.init_hidden(3))
    assert logits.shape == (3, 5, 60) and h.shape == c.shape == (2, 3, 16)
