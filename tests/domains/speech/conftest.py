"""Shared real speech for the speech domain tests: eSpeak NG reading real English, in LibriSpeech layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from domains.speech.espeak import write_espeak_corpus

# Real English (lines of the Python tutorial and a few proverbs), short so tests stay fast.
SENTENCES = [
    "The pass statement does nothing .", "Lists are mutable sequences .", "Strings are immutable .",
    "A module is a file of definitions .", "The loop ends when the list is empty .",
    "Every cloud has a silver lining .",
    "Fortune favours the bold .", "Practice makes perfect .", "Time flies like an arrow .",
    "The early bird catches the worm .", "Actions speak louder than words .", "Still waters run deep .",
    "Look before you leap .", "Slow and steady wins the race .", "All that glitters is not gold .",
    "Knowledge is power .", "Rome was not built in a day .", "Better late than never .",
    "Two heads are better than one .", "The pen is mightier than the sword .",
]


def make_corpus(root: Path, train: int = 14, valid: int = 4) -> Path:
    """``root`` with ``train-espeak`` and ``dev-espeak`` LibriSpeech trees of the sentences above."""
    return write_espeak_corpus(root, train, valid, min_words=2, max_words=8, sentences=lambda: list(SENTENCES))


@pytest.fixture(scope="session")
def speech_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """14 training and 4 validation utterances (about 25 s of audio), synthesized once per session."""
    return make_corpus(tmp_path_factory.mktemp("speech") / "corpus")
