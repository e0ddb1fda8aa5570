"""The builtin eSpeak NG corpus: real sentences read aloud, written in LibriSpeech layout, generated once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from domains.cache import MANIFEST
from domains.speech import SpeechDomain
from domains.speech.espeak import TRAIN_SPLIT, VALID_SPLIT, Synthesizer, speakable, write_espeak_corpus
from tests.domains.speech.conftest import SENTENCES, make_corpus


def test_synthesizer_speaks_with_voices_rates_and_pitches() -> None:
    synth = Synthesizer.get()
    slow = synth.speak("the quick brown fox", "en-us+m3", rate=120)
    fast = synth.speak("the quick brown fox", "en-us+m3", rate=220)
    other = synth.speak("the quick brown fox", "en-gb-x-rp+f2", rate=120, pitch=70)
    assert synth.sample_rate == 22050 and slow.dtype == np.int16
    assert 1.3 * len(fast) < len(slow)  # a slower rate is longer speech
    assert np.abs(slow).max() > 5000  # audible, not silence
    assert len(other) != len(slow) or not np.array_equal(other, slow)


def test_only_plain_word_sentences_are_spoken() -> None:
    assert speakable("Every cloud has a silver lining , said he .") == "Every cloud has a silver lining said he"
    assert speakable("Use %s to set the GNU path .") is None  # format specifiers and acronyms
    assert speakable("Version 2 of the file") is None  # digits would be read out unlike the transcript
    assert speakable("A cat and I") == "A cat and I"
    assert speakable("too short") is None and speakable("too short", min_words=2) == "too short"


def test_corpus_is_librispeech_layout_and_generated_once(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "corpus", train=6, valid=2)
    transcripts = sorted((root / TRAIN_SPLIT).rglob("*.trans.txt"))
    lines = [line for t in transcripts for line in t.read_text().splitlines()]
    assert len(lines) == 6 and len(list((root / VALID_SPLIT).rglob("*.flac"))) == 2
    for t in transcripts:
        speaker, chapter = t.name.removesuffix(".trans.txt").split("-")
        assert t.parent.name == chapter and t.parent.parent.name == speaker
        for line in t.read_text().splitlines():
            uid, text = line.split(" ", 1)
            assert text == text.upper() and uid.startswith(f"{speaker}-{chapter}-")
            assert sf.info(str(t.parent / f"{uid}.flac")).samplerate == 22050
    spoken = {line.split(" ", 1)[1] for line in lines}
    assert spoken <= {speakable(s, 2, 8).upper() for s in SENTENCES}
    stamp = (root / MANIFEST).stat().st_mtime_ns
    assert make_corpus(tmp_path / "corpus", train=6, valid=2) == root and (root / MANIFEST).stat().st_mtime_ns == stamp
    counts = json.loads((root / MANIFEST).read_text())["counts"]
    assert counts["train_utterances"] == 6 and counts["train_seconds"] > 3


def test_builtin_source_prepares_real_english(tmp_path: Path) -> None:
    domain = SpeechDomain()
    source = domain.source_model(train="builtin:espeak", espeak_utterances=12, espeak_valid_utterances=3, n_mels=16)
    data = domain.prepare(source, tmp_path / "cache")
    assert (data.n_train, data.n_valid) == (12, 3) and not data.skipped
    assert 12 * 0.5 / 3600 < domain.train_size(data, 1.0, "ds2") < 12 * 4 / 3600
    assert (tmp_path / "cache" / "espeak" / TRAIN_SPLIT).is_dir()
    assert write_espeak_corpus(tmp_path / "cache" / "espeak", 12, 3) == tmp_path / "cache" / "espeak"
