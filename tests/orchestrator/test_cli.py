"""The ``scaling-sweep`` command line: fit tables and JSON from a real results store, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fitting.store import ResultsStore
from tests.fitting.synthetic import power, sweep


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True)


def write_sweep(storage: Path) -> None:
    store = ResultsStore(str(storage))
    now = datetime.now(tz=UTC)
    for row in sweep(power, seeds=2).to_dict("records"):
        store.write_trial({**row, "sweep": "synthetic", "trial_id": row["trial_key"], "stop_reason": "patience",
                           "started_at": now, "finished_at": now})


def test_fit_prints_table_and_json_with_reference_exponents(tmp_path: Path) -> None:
    write_sweep(tmp_path)
    table = cli("fit", str(tmp_path), "--bootstrap", "100")
    assert table.returncode == 0, table.stderr
    header, _, row = table.stdout.splitlines()[:3]
    assert "β_g [95% CI]" in header and "paper β_g" in header and "β_p" in header
    assert row.split()[:3] == ["lm", "word", "val_loss"] and "-0.066" in row  # the paper's word-LM exponent
    surface = table.stdout.split("surface (joint fit of every shard × model size cell):\n")[1].splitlines()[0]
    assert surface.startswith("  lm/word: β_p ") and "compute-optimal N_opt ∝ C^" in surface

    out = cli("fit", str(tmp_path), "--json", "--bootstrap", "100", "--form", "power", "--domain", "lm")
    assert out.returncode == 0, out.stderr
    word = json.loads(out.stdout)["lm"]["word"]
    assert abs(word["beta_g"] - (-0.3)) < 0.03  # the synthetic sweep's true exponent
    lo, hi = word["beta_g_ci"]
    assert lo <= word["beta_g"] <= hi
    assert abs(word["beta_p"] - 0.7) < 0.1 and word["points_used"] == 8 and word["r2"] > 0.95
    assert {"alpha", "gamma", "beta_p_ci", "form", "metric", "size_unit", "reference"} <= set(word)


def test_fit_on_an_empty_store_and_a_bad_spec_fail_clearly(tmp_path: Path) -> None:
    assert cli("fit", str(tmp_path), "--domain", "nope").returncode == 1
    empty = cli("fit", str(tmp_path))
    assert empty.returncode == 1 and "no trials stored" in empty.stderr
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\nstorage: /tmp/x\ndomains: {lm: {data: {train: a}, families: [word], shards: [0.5],"
                    " widths: [8], early_stopping: {patience: 0}}}\n")
    bad = cli("run", str(spec))
    assert bad.returncode == 2
    assert "domains.lm.early_stopping.patience" in bad.stderr and "greater than or equal to 1" in bad.stderr


def test_help_everywhere() -> None:
    for command in ([], ["plan"], ["run"], ["resume"], ["quickstart"], ["fit"], ["compare"], ["serve"],
                    ["domains"]):
        out = cli(*command, "--help")
        assert out.returncode == 0 and "usage: scaling-sweep" in out.stdout


def test_compare_two_families_text_json_and_errors(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    now = datetime.now(tz=UTC)
    rows = [*sweep(power, seeds=1, family="word").to_dict("records"),
            *sweep(lambda m: 4.0 * m**-0.36, seeds=1, family="char", seed=1).to_dict("records")]
    for row in rows:
        store.write_trial({**row, "sweep": "synthetic", "started_at": now, "finished_at": now})
    text = cli("compare", str(tmp_path), "--families", "word,char")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("lm: char vs word: Δβ_g = -0.06") and "exponents differ" in text.stdout
    assert "char reaches word's error" in text.stdout and "× the data" in text.stdout
    out = cli("compare", str(tmp_path), "--families", "word,char", "--json", "--domain", "lm")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["delta_beta"] == pytest.approx(-0.06, abs=0.01) and got["p_value"] < 0.05
    lo, hi = got["delta_beta_ci"]
    assert lo < -0.06 < hi and got["multiplier_ci"][0] < got["multiplier"] < got["multiplier_ci"][1]
    bad = cli("compare", str(tmp_path), "--families", "word,lstm")
    assert bad.returncode == 2 and "families: 'lstm' has no trials" in bad.stderr and "char, word" in bad.stderr
