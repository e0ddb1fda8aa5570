"""Transcript encoding, greedy CTC decoding and error rates, on crafted inputs with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from domains.speech.text import BLANK, DEFAULT_ALPHABET, cer, ctc_greedy, decode, encode, normalize, wer


def ids(text: str) -> list[int]:
    return [DEFAULT_ALPHABET.index(c) + 1 for c in text]


def test_cer_of_identical_strings_is_zero_and_one_substitution_in_ten_is_a_tenth() -> None:
    assert cer(["hello word"], ["hello word"]) == 0.0
    assert cer(["hellx word"], ["hello word"]) == pytest.approx(0.1)  # 10 characters incl. the space
    assert wer(["hellx word"], ["hello word"]) == pytest.approx(0.5)
    assert cer(["", "abc"], ["ab", "abc"]) == pytest.approx(2 / 5)  # corpus level: edits over all characters


def test_ctc_greedy_decoding_of_a_crafted_emission() -> None:
    # frames: h h _ e l l _ l o o _ | padding the decoder must ignore
    path = [*ids("hh"), BLANK, *ids("ell"), BLANK, *ids("loo"), BLANK, *ids("zz")]
    emission = torch.full((1, len(path), len(DEFAULT_ALPHABET) + 1), -10.0)
    emission[0, torch.arange(len(path)), torch.tensor(path)] = 0.0
    assert ctc_greedy(emission.log_softmax(-1), [len(path) - 2]) == ["hello"]
    assert ctc_greedy(emission, [len(path)]) == ["helloz"]


def test_transcripts_are_normalized_and_round_trip() -> None:
    assert normalize("  DON'T   Stop, 42 times!") == "don't stop times"
    text = normalize("HELLO WORLD'S END")
    assert decode(encode(text)) == text
    assert decode([0, *ids("ab"), 0, 99]) == "ab"  # blank / end and out-of-range ids are skipped
    assert normalize("abc", alphabet="ab") == "ab"
    assert math.isfinite(cer(["x"], [""]))  # an empty reference does not divide by zero
