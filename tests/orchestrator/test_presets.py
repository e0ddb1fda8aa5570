"""The quickstart and the paper presets ship inside the package and are found with importlib.resources, so a
wheel or a non-editable install can run ``scaling-sweep quickstart``."""

from __future__ import annotations

from importlib import resources

import pytest

from orchestrator.cli import QUICKSTART_SPEC
from orchestrator.presets import preset_names, preset_path
from orchestrator.spec import load_spec


def test_the_quickstart_spec_is_package_data() -> None:
    packaged = resources.files("orchestrator") / "sweeps" / "quickstart.yaml"
    assert packaged.is_file() and preset_path("quickstart") == QUICKSTART_SPEC
    assert str(QUICKSTART_SPEC) == str(packaged)
    assert set(load_spec(QUICKSTART_SPEC).domains) == {"lm", "image", "nmt", "speech"}


def test_every_preset_is_a_valid_spec() -> None:
    assert {"quickstart", "paper-image", "paper-lm", "paper-nmt", "paper-speech"} <= set(preset_names())
    for name in preset_names():
        assert load_spec(preset_path(name)).domains


def test_an_unknown_preset_lists_the_packaged_ones() -> None:
    with pytest.raises(FileNotFoundError, match=r"no packaged sweep spec 'paper-ocr'; packaged: .*quickstart"):
        preset_path("paper-ocr")


PAPER = [name for name in preset_names() if name.startswith("paper-")]


@pytest.mark.parametrize("name", PAPER)
def test_every_paper_preset_keeps_the_paper_rules(name: str) -> None:
    """Planned without its data (the spec's planning sizes): first evaluation within 1 epoch at every shard,
    widths spanning (data span)^(paper beta_p + 0.2) non-embedding parameters, >= 2.5 decades and 100x for the LM,
    a searched regularization axis, and a GPU-hours estimate in the file."""
    from orchestrator.plan import format_plan, plan_trials, resolve_domains
    from orchestrator.plan_rules import first_eval_epochs, violations

    spec = load_spec(preset_path(name))
    domains = resolve_domains(spec)
    trials = plan_trials(spec, domains)
    assert violations(trials, domains) == []
    assert max(first_eval_epochs(trials, domains).values()) <= 1.0
    assert "paper rules: all hold" in format_plan(trials, domains)
    for dspec in spec.domains.values():
        for family in dspec.family_specs():
            searched = {k for k, v in dspec.hparams_for(family).items() if not isinstance(v, int | float | str)}
            assert searched & {"dropout", "weight_decay"}, f"{name}/{family}: no regularization axis searched"
    assert "GPU-hours" in preset_path(name).read_text()
