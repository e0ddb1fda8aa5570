"""Spec validation: a wrong spec fails before Ray starts, naming the field, the bad value and what is allowed."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.plan import format_plan, plan_trials, resolve_domains
from orchestrator.spec import SpecError, load_spec, parse_spec

BASE = {
    "name": "t",
    "storage": "/tmp/x",
    "domains": {
        "lm": {
            "data": {"train": "/nonexistent/*.txt"},
            "families": ["word", "char"],
            "shards": {"base": 2, "from": -3, "to": 0},
            "widths": [16, 32],
            "hparams": {"lr": {"grid": [0.01, 0.003]}, "dropout": {"uniform": [0.0, 0.3]}},
            "samples": 2,
            "seeds": 3,
        }
    },
}


def spec_with(path: str, value: object) -> dict:
    data = copy.deepcopy(BASE)
    node = data
    *parents, last = path.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("domains.lm.shards", [0.5, 1.5], ["domains.lm.shards", "(0, 1]", "1.5"]),
        ("domains.lm.shards", {"base": 2, "from": 0, "to": 3}, ["domains.lm.shards", "exceeds 1"]),
        ("domains.lm.widths", [16, -4], ["domains.lm.widths", "-4"]),
        ("domains.lm.seeds", 0, ["domains.lm.seeds", "greater than or equal to 1", "0"]),
        ("domains.lm.early_stopping", {"grace_period": 500, "max_steps": 100},
         ["early_stopping", "grace_period (500) must be <= max_steps (100)"]),
        ("domains.lm.early_stopping", {"group_by": ["domain", "colour"]},
         ["early_stopping.group_by", "'domain', 'family', 'fraction', 'width' or 'config'", "colour"]),
        ("domains.lm.hparams", {"lr": {"loguniform": [0.1, 0.01]}}, ["domains.lm.hparams.lr", "low <= high"]),
        ("domains.lm.widthz", [1], ["domains.lm.widthz", "unknown field"]),
        ("name", "bad name!", ["name", "bad name!"]),
    ],
)
def test_malformed_spec_names_field_value_and_allowed(path: str, value: object, expected: list[str]) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(spec_with(path, value))
    for fragment in expected:
        assert fragment in str(err.value), str(err.value)


def test_synchronous_halving_is_refused_with_an_adaptive_strategy() -> None:
    data = spec_with("domains.lm.early_stopping", {"synchronous": True})
    data["domains"]["lm"]["resources"] = {"rules": [{"min_width": 32, "workers": 2}]}
    assert parse_spec(data).domains["lm"].early_stopping.synchronous  # data-parallel trials pause as well
    data["strategy"] = {"kind": "adaptive", "target": {"beta_g_halfwidth": 0.02}, "budget": {"gpu_hours": 1}}
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert "domains ['lm']: early_stopping.synchronous needs every trial planned up front" in str(err.value)


def test_plugin_checks_name_domain_family_and_hparams() -> None:
    data = copy.deepcopy(BASE)
    data["domains"]["lm"]["families"] = ["word", "rnn-transducer"]
    data["domains"]["lm"]["hparams"]["learning_rate"] = 0.1
    data["domains"]["imagenet"] = copy.deepcopy(data["domains"]["lm"])
    with pytest.raises(SpecError) as err:
        resolve_domains(parse_spec(data))
    msg = str(err.value)
    assert "domains.imagenet: unknown domain 'imagenet'; installed domains: " in msg and "lm" in msg
    assert "domains.lm.families: unknown family 'rnn-transducer'; allowed: char, char_rhn, word, word_rhn" in msg
    assert "domains.lm.hparams.learning_rate: not a hyperparameter of lm/word; allowed:" in msg and "lr" in msg


def test_hyperparameter_values_are_checked_by_the_domain_before_any_trial() -> None:
    data = copy.deepcopy(BASE)
    data["domains"]["lm"]["hparams"] = {"lr": {"grid": [0.01, "fast"]}, "layers": {"grid": [1, 1.5]}}
    with pytest.raises(SpecError) as err:
        plan_trials(parse_spec(data), resolve_domains(parse_spec(data)))
    msg = str(err.value)
    assert "domains.lm.hparams (word): LM word hyperparameter layers must be an integer, got 1.5" in msg, msg
    assert "hyperparameter lr must be a number, got 'fast'" in msg
    assert msg.count("\n") == len(set(msg.splitlines())) - 1  # each problem once, not once per trial


def test_data_section_is_validated_by_the_domain() -> None:
    with pytest.raises(SpecError) as err:
        resolve_domains(parse_spec(spec_with("domains.lm.data", {"train": "x", "vocab_sise": 3})))
    assert "domains.lm.data.vocab_sise: unknown field" in str(err.value)


def test_plan_expands_grid_random_and_seeds_deterministically() -> None:
    spec = parse_spec(BASE)
    trials = plan_trials(spec, resolve_domains(spec))
    # 2 families x 4 shards x 2 widths x (2 lr grid x 2 random samples) x 3 seeds
    assert len(trials) == 2 * 4 * 2 * 4 * 3
    assert len({t.trial_key for t in trials}) == len(trials)
    again = plan_trials(spec, resolve_domains(spec))
    assert [t.trial_key for t in again] == [t.trial_key for t in trials]
    # random draws are shared across shards: the same configurations are compared at every size
    by_shard: dict[float, set] = {}
    for t in trials:
        if t.family == "word" and t.width == 16:
            by_shard.setdefault(t.fraction, set()).add((t.hparams["lr"], t.hparams["dropout"]))
    assert len({frozenset(v) for v in by_shard.values()}) == 1
    assert all(0.0 <= t.hparams["dropout"] <= 0.3 for t in trials)
    # seeds of one configuration share its config key; different shards never do
    keys = {(t.fraction, t.width, t.family, t.hparams["lr"], t.hparams["dropout"]): t.config_key for t in trials}
    assert len(set(keys.values())) == len(keys)
    table = format_plan(trials)
    assert "total: 192 trials" in table and "0.125" in table


def test_plan_command_prints_table_without_ray(tmp_path: Path) -> None:
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(BASE))
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", str(spec_file)],
                         capture_output=True, text=True, check=True).stdout
    assert "total: 192 trials" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec_with("domains.lm.shards", [2.0])))
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "domains.lm.shards" in proc.stderr


def test_load_spec_reports_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "b.yaml").write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "b.yaml")


def test_resources_follow_model_width() -> None:
    data = copy.deepcopy(BASE)
    data["domains"]["lm"]["widths"] = [16, 512, 4096]
    data["domains"]["lm"]["resources"] = {"cpu": 1, "gpu": 0.25, "rules": [
        {"min_width": 512, "gpu": 1, "cpu": 4}, {"min_width": 4096, "gpu": 4, "cpu": 16}]}
    spec = parse_spec(data)
    by_width = {t.width: (t.resources, t.threads) for t in plan_trials(spec, resolve_domains(spec))}
    assert by_width[16] == ({"cpu": 1, "gpu": 0.25}, 1)  # four small models share a GPU
    assert by_width[512] == ({"cpu": 4, "gpu": 1}, 4)
    assert by_width[4096] == ({"cpu": 16, "gpu": 4}, 16)
    with pytest.raises(SpecError, match="more than one GPU must be a whole number"):
        parse_spec(spec_with("domains.lm.resources", {"gpu": 1.5}))


def test_workers_rule_validates_and_reaches_the_plan() -> None:
    data = copy.deepcopy(BASE)
    data["domains"]["lm"]["widths"] = [16, 512, 4096]
    data["domains"]["lm"]["resources"] = {"cpu": 1, "gpu": 0.25, "rules": [
        {"min_width": 512, "gpu": 1, "cpu": 4}, {"min_width": 4096, "workers": 4}]}
    spec = parse_spec(data)
    by_width = {t.width: (t.resources, t.workers, t.threads) for t in plan_trials(spec, resolve_domains(spec))}
    assert by_width[16] == ({"cpu": 1, "gpu": 0.25}, 1, 1)
    assert by_width[512] == ({"cpu": 4, "gpu": 1}, 1, 4)
    assert by_width[4096] == ({"cpu": 4, "gpu": 1}, 4, 4)  # 4 data-parallel workers, each 4 CPUs and a GPU

    bad = {  # each names the field and what is allowed
        "domains.lm.resources.workers: Input should be greater than or equal to 1": {"workers": 0},
        "domains.lm.resources.rules.0.workers: Input should be a valid integer": {
            "rules": [{"min_width": 8, "workers": 2.5}]},
        "domains.lm.resources: workers: 2 data-parallel workers need gpu 0 or 1 each": {"gpu": 0.5, "workers": 2},
        r"domains.lm.resources: rules\[0\] \(min_width 512\): workers: 4 data-parallel workers need gpu 0 or 1 "
        r"each \(one GPU per worker\), got gpu 0.25": {"gpu": 0.25, "rules": [{"min_width": 512, "workers": 4}]},
        "domains.lm.resources.rules.0.gpu: more than one GPU must be a whole number": {
            "rules": [{"min_width": 8, "gpu": 2.5}]},
    }
    for message, resources in bad.items():
        with pytest.raises(SpecError, match=message):
            parse_spec(spec_with("domains.lm.resources", resources))
