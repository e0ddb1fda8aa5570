"""Spec values to typed hyperparameters: the same coercion and messages in every domain."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from domains.hparams import resolve_hparams


@dataclass(frozen=True)
class HP:
    lr: float
    layers: int
    augment: bool
    optimizer: str


DEFAULTS = {"lr": 0.1, "layers": 2, "augment": False, "optimizer": "adam"}


def test_defaults_are_overridden_and_coerced_to_the_default_types() -> None:
    hp = resolve_hparams(HP, "toy", DEFAULTS, {"lr": "1e-3", "layers": 3.0, "augment": True})
    assert hp == HP(lr=0.001, layers=3, augment=True, optimizer="adam")
    assert isinstance(hp.layers, int) and isinstance(hp.lr, float)


@pytest.mark.parametrize(("given", "message"), [
    ({"lr": "fast"}, "toy hyperparameter lr must be a number, got 'fast'"),
    ({"lr": True}, "toy hyperparameter lr must be a number, got True"),
    ({"layers": 2.5}, "toy hyperparameter layers must be an integer, got 2.5"),
    ({"augment": "false"}, "toy hyperparameter augment must be true or false, got 'false'"),
    ({"optimizer": 3}, "toy hyperparameter optimizer must be a str, got 3"),
    ({"momentum": 0.9}, "unknown toy hyperparameters ['momentum']; known: ['augment', 'layers', 'lr', 'optimizer']"),
])
def test_bad_names_and_values_name_the_hyperparameter(given: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        resolve_hparams(HP, "toy", DEFAULTS, given)
    assert str(err.value) == message
