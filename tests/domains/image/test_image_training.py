"""ResNet training with real torch on real digits: overfitting, metrics, exact resume, divergence, models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from domains.base import TrialSetup
from domains.image import ImageDomain
from domains.image.data import ImageData
from domains.image.loaders import array_eval_batches
from domains.image.models import build_model
from domains.image.task import ImageTask, topk_error, topk_errors
from domains.training import count_parameters

SMALL = {"depth": 10, "batch_size": 32}


def task(data: ImageData, width: int = 8, seed: int = 0, fraction: float = 1.0, family: str = "resnet",
         **hparams: object) -> ImageTask:
    extra = SMALL if family == "resnet" else {"batch_size": 32, "channels": 8}
    setup = TrialSetup(family=family, fraction=fraction, width=width, hparams={**extra, **hparams}, seed=seed)
    return ImageDomain().build_task(data, setup)


@pytest.fixture(scope="module")
def hundred(digits_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> ImageData:
    """100 real digits, validated on themselves: what a model can memorize."""
    with np.load(digits_npz) as npz:
        images, labels = npz["images"][:100], npz["labels"][:100]
    path = tmp_path_factory.mktemp("hundred") / "hundred.npz"
    np.savez(path, images=images, labels=labels, valid_images=images, valid_labels=labels)
    return ImageDomain().prepare({"train": str(path)}, path.parent / "cache")


def test_small_resnet_overfits_100_images(hundred: ImageData) -> None:
    t = task(hundred, width=16, batch_size=50, augment=False)  # default optimizer: SGD, lr 0.1, momentum 0.9
    first = t.train(5)
    t.train(55)
    last = t.train(5)
    assert last.loss < 0.05 < first.loss
    assert last.extra["train_top1_err"] == 0.0
    train = t.metrics_on(array_eval_batches(hundred.train, t.device))  # eval-mode BN, unaugmented
    assert train["val_top1_err"] == 0.0 and train["val_xent"] < 0.1
    assert t.evaluate()["val_top1_err"] == 0.0


def test_top5_error_is_zero_when_the_true_class_is_always_in_the_top5() -> None:
    rng = np.random.default_rng(0)
    n, classes = 200, 20
    labels = rng.integers(0, classes, n)
    logits = np.zeros((n, classes), dtype=np.float32)
    for i in range(n):  # the true class ranked 2nd..5th: always a top-5 hit, never a top-1 hit
        others = rng.permutation([c for c in range(classes) if c != labels[i]])
        order = np.insert(others, rng.integers(1, 5), labels[i])
        logits[i, order] = rng.normal(size=1) + np.linspace(3.0, -3.0, classes)
    logits_t, labels_t = torch.from_numpy(logits), torch.from_numpy(labels)
    assert topk_error(logits_t, labels_t, 5) == 0.0
    assert topk_error(logits_t, labels_t, 1) == 1.0
    # a class ranked 6th is a top-5 miss; with fewer than k classes every example is a hit
    crafted = torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    assert topk_errors(crafted, torch.tensor([5]), (1, 5)) == {1: 1, 5: 1}
    assert topk_errors(crafted, torch.tensor([4]), (1, 5)) == {1: 1, 5: 0}
    assert topk_errors(crafted, torch.tensor([0]), (1, 5)) == {1: 0, 5: 0}
    assert topk_error(torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([0]), 5) == 0.0


def test_evaluate_reports_the_declared_metrics(digits_data: ImageData) -> None:
    domain = ImageDomain()
    t = task(digits_data, fraction=1 / 8)
    untrained = t.evaluate()
    assert set(untrained) == set(domain.family("resnet").metrics)  # 10 classes: top-5 is reported
    t.train(30)
    metrics = t.evaluate()
    assert metrics["val_top1_err"] < untrained["val_top1_err"]
    assert 0 <= metrics["val_top5_err"] <= metrics["val_top1_err"] < 1
    assert math.isfinite(metrics["val_xent"]) and metrics["val_xent"] > 0
    assert t.evaluate() == metrics  # evaluating disturbs nothing


def test_no_top5_with_five_classes_or_fewer(digits: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    images, labels = digits
    keep = labels < 4
    np.savez(tmp_path / "four.npz", images=images[keep][:200], labels=labels[keep][:200])
    data = ImageDomain().prepare({"train": str(tmp_path / "four.npz")}, tmp_path / "cache")
    assert data.num_classes == 4
    assert set(task(data).evaluate()) == {"val_top1_err", "val_xent"}


@pytest.mark.parametrize("family", ["resnet", "resnet_depth"])
def test_state_dict_resumes_the_same_run(digits_data: ImageData, family: str) -> None:
    a = task(digits_data, width=1 if family == "resnet_depth" else 8, fraction=1 / 16, family=family)
    a.train(4)  # 90 images, batch 32: the cursor is mid-epoch; augmentation on
    state = a.state_dict()
    expected = [a.train(3).loss for _ in range(2)]
    expected_eval = a.evaluate()
    b = task(digits_data, width=1 if family == "resnet_depth" else 8, fraction=1 / 16, family=family, seed=5)
    b.load_state_dict(state)
    assert [b.train(3).loss for _ in range(2)] == expected
    assert b.evaluate() == expected_eval
    with pytest.raises(ValueError, match="another shard"):
        task(digits_data, fraction=1 / 8).load_state_dict(state)


def test_same_seed_same_run_other_seed_other_run(digits_data: ImageData) -> None:
    runs = [task(digits_data, fraction=1 / 16, seed=s).train(3).loss for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


def test_huge_learning_rate_gives_nan_not_an_exception(digits_data: ImageData) -> None:
    t = task(digits_data, fraction=1 / 16, lr=1e6, momentum=0.0, weight_decay=0.0)
    stats = t.train(10)
    assert math.isnan(stats.loss) and 1 <= stats.steps <= 10
    assert all(math.isnan(v) for v in t.evaluate().values())
    assert math.isnan(t.train(3).loss) and t.train(3).steps == 0


def test_batch_is_capped_at_the_shard_and_counts_images(digits_data: ImageData) -> None:
    t = task(digits_data, fraction=1 / 64, batch_size=128)  # 23 images
    stats = t.train(2)
    assert stats.samples == 2 * 23 and stats.extra["epochs"] == 2.0


def test_hyperparameters_are_checked(digits_data: ImageData) -> None:
    domain = ImageDomain()
    assert set(domain.hparam_defaults("resnet")) - set(domain.hparam_defaults("resnet_depth")) == {"depth"}
    for bad, match in (({"dropuot": 0.1}, "unknown image resnet hyperparameters"), ({"optimizer": "lion"}, "optimizer"),
                       ({"batch_size": 2.5}, "integer"), ({"depth": 20}, "depth must be one of"),
                       ({"augment": "yes"}, "true or false")):
        with pytest.raises(ValueError, match=match):
            task(digits_data, **bad)
    with pytest.raises(KeyError, match="known families"):
        domain.hparam_defaults("vit")


def test_models_reuse_torchvision_blocks_and_scale() -> None:
    widths = [count_parameters(build_model("resnet", w, 10, in_channels=1, image_size=8, depth=10))
              for w in (4, 8, 16, 32)]
    assert widths == sorted(widths) and 14 < widths[3] / widths[1] < 17  # parameters grow ~ width²
    depths = [count_parameters(build_model("resnet_depth", n, 10, image_size=8, channels=8)) for n in (1, 2, 4)]
    assert depths == sorted(depths)
    small = build_model("resnet", 8, 10, in_channels=1, image_size=8, depth=10)
    assert isinstance(small, ResNet) and isinstance(small.layer1[0], BasicBlock)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)  # small-input stem
    assert small(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    big = build_model("resnet", 16, 100, image_size=224, depth=50)
    assert isinstance(big.layer4[0], Bottleneck) and big.conv1.kernel_size == (7, 7)
    assert big.fc.in_features == 16 * 8 * 4
    standard = build_model("resnet", 64, 1000, image_size=224, depth=18)
    assert count_parameters(standard) == 11_689_512  # torchvision's resnet18
    deep = build_model("resnet_depth", 3, 10, image_size=32, channels=8)
    assert [len(s) for s in (deep.layer1, deep.layer2, deep.layer3, deep.layer4)] == [3, 3, 3, 3]


def test_channels_last_and_autocast_path_runs(digits_data: ImageData) -> None:
    """The GPU settings (channels_last + autocast) exercised on CPU with bfloat16, where torch supports them."""
    setup = TrialSetup("resnet", 1 / 16, 8, SMALL, seed=0)
    t = ImageDomain().build_task(digits_data, setup, channels_last=True, amp=True)
    assert t.amp_dtype == torch.bfloat16 and not t.scaler.is_enabled()
    assert t.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    first = t.train(10).loss
    assert math.isfinite(first) and t.train(10).loss < first
    assert 0 <= t.evaluate()["val_top1_err"] < 1
