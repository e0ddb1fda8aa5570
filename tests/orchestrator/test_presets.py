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
