"""An edited spec on a storage that holds results: a top-up runs only the new trials, an incompatible edit is
refused before any trial starts, with the differing fields listed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from fitting.store import ResultsStore
from orchestrator.runner import TUNE_DIR, run_sweep, save_spec
from orchestrator.spec import SpecError, parse_spec
from orchestrator.spec_changes import incompatible_changes
from tests.orchestrator.test_sweep import spec_data


def edited(spec: dict[str, Any], **lm: Any) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    out["domains"]["lm"].update(lm)
    return out


@pytest.fixture
def base(corpus_dir: Path, tmp_path: Path) -> dict[str, Any]:
    return spec_data(corpus_dir, tmp_path / "storage", "edits",
                     hparams={"batch_size": 8, "bptt": 16, "lr": {"grid": [0.003, 0.01]}})


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return incompatible_changes(parse_spec(old), parse_spec(new))


def test_top_ups_are_compatible(base: dict[str, Any]) -> None:
    lm = base["domains"]["lm"]
    assert changes(base, edited(base, seeds=3)) == []
    assert changes(base, edited(base, widths=[8, 16, 32])) == []
    assert changes(base, edited(base, shards={"base": 2, "from": -4, "to": 0})) == []
    assert changes(base, edited(base, hparams={**lm["hparams"], "lr": {"grid": [0.001, 0.003, 0.01]}})) == []
    assert changes(base, edited(base, families=["word", "char"])) == []
    assert changes(base, edited(base, resources={"cpu": 2})) == []
    fixed = edited(base, hparams={**lm["hparams"], "lr": 0.003})  # a fixed value turned into a grid holding it
    assert changes(fixed, base) == []


def test_incompatible_edits_are_listed(base: dict[str, Any]) -> None:
    lm = base["domains"]["lm"]
    new = edited(base, data={**lm["data"], "vocab_size": 500},
                 hparams={**lm["hparams"], "bptt": 32, "lr": {"loguniform": [0.001, 0.01]}},
                 early_stopping={**lm["early_stopping"], "max_steps": 80, "metric": "val_err"})
    new["seed"] = 7
    assert changes(base, new) == [
        "seed: 0 -> 7 (random hyperparameter draws and seeds change)",
        "domains.lm.data.vocab_size: 1000 -> 500",
        "domains.lm.early_stopping.metric: 'primary' -> 'val_err'",
        "domains.lm.families.word.early_stopping.max_steps: 40 -> 80",
        "domains.lm.families.word.hparams.bptt: 16 -> 32",
        "domains.lm.families.word.hparams.lr: {'grid': [0.003, 0.01]} -> {'loguniform': (0.001, 0.01)}",
    ]
    disjoint = edited(base, hparams={**lm["hparams"], "lr": {"grid": [0.1]}, "dropout": 0.2})
    assert changes(base, disjoint) == ["domains.lm.families.word.hparams.dropout: added (0.2)",
                                       "domains.lm.families.word.hparams.lr: {'grid': [0.003, 0.01]} -> "
                                       "{'grid': [0.1]}"]


def test_incompatible_edit_is_refused_before_any_trial(base: dict[str, Any], tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    save_spec(parse_spec(base), str(storage))  # as a first run leaves it
    new = edited(base, data={**base["domains"]["lm"]["data"], "max_valid_words": 500})
    with pytest.raises(SpecError) as refused:
        run_sweep(parse_spec(new), progress=False)
    message = str(refused.value)
    assert "domains.lm.data.max_valid_words: 1500 -> 500" in message
    assert "--allow-spec-change" in message and "--storage" in message
    assert not (storage / TUNE_DIR).exists() and not ResultsStore(str(storage)).list_files()


@pytest.mark.slow
def test_compatible_edit_tops_up(corpus_dir: Path, ray_session: None, tmp_path: Path) -> None:
    data = spec_data(corpus_dir, tmp_path / "storage", "topup", shards=[1.0], widths=[8],
                     early_stopping={"grace_period": 10, "max_steps": 10, "eval_every": 10, "patience": None})
    assert run_sweep(parse_spec(data), progress=False).ran == 1
    wider = run_sweep(parse_spec(edited(data, widths=[8, 16])), progress=False)
    assert (wider.ran, wider.skipped) == (1, 1)
    assert sorted(r["width"] for r in ResultsStore(str(tmp_path / "storage")).read_results().to_pylist()) == [8, 16]
