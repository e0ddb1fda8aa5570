"""Training FLOPs per step (domains.flops): hand counts for an MLP and an LSTM language model, runs that train
exactly as they would without the count, one count per shape, and the figure carried by checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from domains import flops
from domains.base import TrialSetup
from domains.image import ImageDomain
from domains.lm import LMDomain
from domains.lm.offline_corpus import TRAIN_GLOB, VALID_GLOB
from domains.registry import get_domain
from domains.training import TrainingTask

DIGITS = "digits-mlp"  # tests/domains/digits_mlp.py, registered by tests/conftest.py


def digits_task(tmp_path: Path, width: int = 32, seed: int = 0, **hparams: object) -> TrainingTask:
    domain = get_domain(DIGITS)
    prepared = domain.prepare({}, tmp_path / "cache")
    return domain.build_task(prepared, TrialSetup(family="mlp", fraction=1.0, width=width, hparams=hparams,
                                                  seed=seed))


def mlp_hand_count(batch: int, inputs: int, width: int, classes: int) -> int:
    """64 -> width -> 10: a linear layer's forward is 2·batch·in·out FLOPs (a multiply and an add per weight and
    example); backward repeats it for the weight gradient and again for the input gradient, except at the first
    layer, whose input (the data) needs none: 3x forward less the first layer's input gradient."""
    first, second = 2 * batch * inputs * width, 2 * batch * width * classes
    return 3 * (first + second) - first


def lstm_lm_hand_count(batch: int, bptt: int, width: int, vocab: int) -> int:
    """Embedding -> 1-layer LSTM (width) -> linear decoder over the vocabulary: 3x the forward pass. The LSTM's four
    gates take 2·batch·(width + width)·4·width FLOPs per time step forward, and its fused kernel computes every
    gradient (weights, input, hidden state) in the backward pass: twice that. The decoder's input needs a gradient
    too. Embedding lookups and elementwise gate arithmetic are not counted (FlopCounterMode counts matrix
    products)."""
    lstm = 2 * batch * bptt * (width + width) * 4 * width
    decoder = 2 * batch * bptt * width * vocab
    return 3 * (lstm + decoder)


def test_mlp_step_flops_match_a_hand_count(tmp_path: Path) -> None:
    t = digits_task(tmp_path, width=32, batch_size=16)
    assert t.flops_per_step is None  # counted on the first step trained, not when built
    t.train(2)
    assert t.flops_per_step == mlp_hand_count(16, 64, 32, 10) == 161_792


@pytest.fixture(scope="module")
def lm_data(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    source = {"train": str(corpus_dir / TRAIN_GLOB), "valid": str(corpus_dir / VALID_GLOB), "vocab_size": 500,
              "max_valid_words": 800, "max_valid_chars": 3000}
    return LMDomain().prepare(source, tmp_path_factory.mktemp("lm-cache"))


def lm_task(data: object, width: int = 16, seed: int = 0, **hparams: object) -> TrainingTask:
    setup = TrialSetup(family="word", fraction=0.5, width=width, seed=seed,
                       hparams={"batch_size": 4, "bptt": 12, "dropout": 0.3, **hparams})
    return LMDomain().build_task(data, setup)


def test_lstm_lm_step_flops_match_a_hand_count(lm_data: object) -> None:
    t = lm_task(lm_data, width=16)
    t.train(1)
    assert t.flops_per_step == lstm_lm_hand_count(4, 12, 16, t.model.vocab)


def _run(make: object, steps: int, count: bool) -> tuple[list[tuple], dict[str, float], dict[str, torch.Tensor]]:
    task = make()  # seeds torch: one run at a time, as each trial has its process's RNG to itself
    if not count:
        task.flops_per_step = 0.0  # already known: no count
    stats = [task.train(chunk) for chunk in (1, steps)]
    assert (task.flops_per_step > 0) == count
    return [(s.loss, s.samples, s.extra) for s in stats], task.evaluate(), task.model.state_dict()


def _train_twice(make: object, steps: int) -> None:
    """The same seeded task trained with the count and with it skipped: identical losses, extras and weights."""
    flops._cache.clear()
    counted, skipped = _run(make, steps, True), _run(make, steps, False)
    assert counted[:2] == skipped[:2]
    for (name, x), (_, y) in zip(counted[2].items(), skipped[2].items(), strict=True):
        assert torch.equal(x, y), name


def test_counting_leaves_the_run_unchanged(tmp_path: Path, lm_data: object) -> None:
    # dropout masks (the RNG), the LM's carried state, batch-norm statistics, augmentation and the image task's
    # error count all pass through the counted forward pass
    _train_twice(lambda: digits_task(tmp_path), 5)
    _train_twice(lambda: lm_task(lm_data), 5)
    images = ImageDomain().prepare({"train": "builtin:digits"}, tmp_path / "image-cache")
    setup = TrialSetup(family="resnet", fraction=0.25, width=4, seed=1,
                       hparams={"depth": 10, "batch_size": 16, "augment": True})
    _train_twice(lambda: ImageDomain().build_task(images, setup), 4)


def test_one_count_per_shape_and_the_checkpoint_carries_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flops._cache.clear()
    calls = []
    real = flops.count_step_flops
    monkeypatch.setattr(flops, "count_step_flops", lambda task, batch: calls.append(1) or real(task, batch))
    digits_task(tmp_path, lr=0.01).train(1)
    digits_task(tmp_path, lr=0.1, seed=3).train(1)  # learning rate and seed change no FLOP: no second count
    assert len(calls) == 1
    wider = digits_task(tmp_path, width=48)
    wider.train(1)
    assert len(calls) == 2 and wider.flops_per_step == mlp_hand_count(32, 64, 48, 10)
    flops._cache.clear()  # a fresh process: the restored task takes the figure from its checkpoint
    restored = digits_task(tmp_path, width=48)
    restored.load_state_dict(wider.state_dict())
    restored.train(1)
    assert len(calls) == 2 and restored.flops_per_step == wider.flops_per_step


def test_a_failed_count_is_nan_and_training_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flops._cache.clear()

    def broken(task: object, batch: object) -> float:
        raise RuntimeError("no formula")

    monkeypatch.setattr(flops, "count_step_flops", broken)
    t = digits_task(tmp_path)
    stats = t.train(3)
    assert stats.steps == 3 and t.flops_per_step != t.flops_per_step  # NaN, counted once and not retried


def test_shape_signature() -> None:
    from domains.nmt.task import Batch

    a = Batch(torch.zeros(2, 5), torch.ones(2), torch.zeros(2, 4), torch.zeros(2, 4), tokens=7)
    b = Batch(torch.ones(2, 5), torch.ones(2), torch.zeros(2, 4), torch.zeros(2, 4), tokens=8)
    assert flops.shape_signature(a) == flops.shape_signature(b)  # same shapes, other values
    assert flops.shape_signature((torch.zeros(3), [1, 2.0])) != flops.shape_signature((torch.zeros(4), [1, 2.0]))
    assert flops.shape_signature({"x": object()}) is None
