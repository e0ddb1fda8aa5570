"""The domain framework: a domain of data, a model, a loss and metrics (tests/domains/digits_mlp.py, 114 lines)
trains through the shared loop, resumes exactly, is shared between data-parallel replicas by the framework, and
runs a real sweep on Ray into the results store and the fit."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from domains.base import TrialSetup
from domains.hparams import HParams
from domains.registry import get_domain, installed_domains
from domains.training import TrainingTask
from fitting.curves import fit_store
from fitting.store import ResultsStore
from orchestrator.runner import run_sweep
from orchestrator.spec import parse_spec
from tests.domains.digits_mlp import DigitsMLPDomain

NAME = "digits-mlp"  # registered by tests/conftest.py, so Ray's workers find it too


def task(tmp_path: Path, seed: int = 0, fraction: float = 1.0, **hparams: Any) -> TrainingTask:
    domain = get_domain(NAME)
    prepared = domain.prepare({}, tmp_path / "cache")
    return domain.build_task(prepared, TrialSetup(family="mlp", fraction=fraction, width=32, hparams=hparams,
                                                  seed=seed))


def test_registered_domain_is_found_like_an_installed_one() -> None:
    assert installed_domains()[NAME].value == "tests.domains.digits_mlp:DigitsMLPDomain"
    assert isinstance(get_domain(NAME), DigitsMLPDomain)
    assert "lm" in installed_domains()  # entry points still count


def test_the_shared_loop_trains_evaluates_and_resumes_exactly(tmp_path: Path) -> None:
    t = task(tmp_path)
    untrained = t.evaluate()
    first = t.train(100)
    assert first.steps == 100 and first.samples == 100 * 32 and first.extra == {"diverged": 0.0}
    trained = t.evaluate()
    assert set(trained) == {"val_error", "val_xent"} and trained["val_error"] < untrained["val_error"] - 0.3
    state = t.state_dict()
    expected = [t.train(5).loss for _ in range(2)] + [t.evaluate()["val_xent"]]

    other = task(tmp_path, seed=7)  # another initialization and reader, then restored
    other.load_state_dict(state)
    assert [other.train(5).loss for _ in range(2)] + [other.evaluate()["val_xent"]] == expected
    with pytest.raises(ValueError, match="another shard or batch size"):
        task(tmp_path, batch_size=16).load_state_dict(state)  # the reader's identity is checked


def test_divergence_is_recorded_by_the_framework_not_raised(tmp_path: Path) -> None:
    t = task(tmp_path, optimizer="sgd", lr=1e12)
    stats = t.train(50)
    assert math.isnan(stats.loss) and stats.extra["diverged"] == 1.0 and stats.steps < 50
    assert all(math.isnan(v) for v in t.evaluate().values())
    assert t.train(5).steps == 0


def test_replicas_get_their_share_of_every_batch_and_sync_every_step(tmp_path: Path) -> None:
    """The framework, not the domain, cuts each batch to the replica's share and passes each step's loss
    through ``synced``: a replica of 2 trains on half of each batch and syncs once per step."""
    calls: list[float] = []

    def sync(loss: torch.Tensor) -> torch.Tensor:
        calls.append(loss.item())
        return loss

    t = task(tmp_path)
    t.join_replicas(1, 2, sync)
    stats = t.train(6)
    assert len(calls) == 6 and stats.samples == 6 * 16


def test_hyperparameters_are_declared_once_with_types_defaults_and_checks() -> None:
    @dataclass(frozen=True)
    class Toy(HParams, family="toy", what="toy net"):
        layers: int = 2

    assert Toy.defaults() == {"optimizer": "adam", "lr": 1e-3, "momentum": 0.0, "weight_decay": 0.0,
                              "batch_size": 16, "schedule": "cosine", "lr_floor": 0.1, "warmup_steps": 0,
                              "decay_steps": 0, "layers": 2}
    assert Toy.resolve({"lr": "3e-4", "layers": 3.0}) == Toy(lr=3e-4, layers=3)
    with pytest.raises(ValueError, match=r"unknown toy net hyperparameters \['depth'\]"):
        Toy.resolve({"depth": 3})
    with pytest.raises(ValueError, match="toy optimizer must be 'adam' or 'sgd', got 'lbfgs'"):
        Toy.resolve({"optimizer": "lbfgs"})
    assert Toy().lr_at(0) == Toy().lr  # no warm-up knob: a constant rate
    assert (Toy.family, Toy.what, HParams.family) == ("toy", "toy net", "")


def test_warmup_is_applied_by_the_loop(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Warm(HParams):
        warmup_steps: int = 4

    assert [Warm(lr=1.0).lr_at(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


@pytest.mark.slow
def test_a_fifth_domain_sweeps_on_ray_into_the_store_and_the_fit(ray_session: None, tmp_path: Path) -> None:
    spec = parse_spec({
        "name": "digits-mlp", "storage": str(tmp_path / "runs"),
        "domains": {NAME: {
            "data": {"valid_fraction": 0.25},
            "families": {"mlp": {"widths": [16, 64]}},
            "hparams": {"lr": 0.01},
            "shards": {"base": 2, "from": -4, "to": 0},
            "early_stopping": {"grace_period": 100, "reduction_factor": 3, "max_steps": 300, "eval_every": 100,
                               "patience": 2},
        }},
    })
    outcome = run_sweep(spec, progress=False)
    assert outcome.ran == 10
    table = ResultsStore(str(tmp_path / "runs")).read_results()
    rows = table.to_pylist()
    assert {r["status"] for r in rows} <= {"completed", "stopped"} and {r["domain"] for r in rows} == {NAME}
    assert sorted({r["train_size"] for r in rows}) == [85.0, 169.0, 337.0, 674.0, 1348.0]  # images, nested
    assert all(r["size_unit"] == "images" and r["metric"] == "val_error" for r in rows)
    assert all(r["best_value"] == json.loads(r["best_metrics"])["val_error"] for r in rows)
    fit = fit_store(table, n_boot=50)[NAME]["mlp"]
    assert fit.ok and fit.beta_g is not None and fit.beta_g < 0  # more digits, fewer errors
