"""Speech data on real synthesized speech: features, the feature cache, hours per shard, skipped utterances,
manifests, and the errors a bad source gives."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from domains.base import DataSourceError
from domains.speech import SpeechDomain
from domains.speech.data import SpeechData
from domains.speech.espeak import TRAIN_SPLIT, VALID_SPLIT

N_MELS = 24


def prepare(tmp_path: Path, **source: object) -> SpeechData:
    domain = SpeechDomain()
    return domain.prepare(domain.source_model(**{"n_mels": N_MELS, **source}), tmp_path / "cache")


def audio_files(root: Path) -> dict[str, Path]:
    return {p.stem: p for p in root.rglob("*.flac")} | {p.stem: p for p in root.rglob("*.wav")}


def real_seconds(path: Path) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


def test_features_have_the_expected_shape_and_are_normalized(tmp_path: Path, speech_corpus: Path) -> None:
    data = prepare(tmp_path, train=str(speech_corpus / TRAIN_SPLIT), valid=str(speech_corpus / VALID_SPLIT))
    assert (data.n_train, data.n_valid) == (14, 4)
    files = audio_files(speech_corpus)
    feats = data.open_features()
    assert feats.shape == (data.frame_offsets[-1], N_MELS) and feats.dtype == np.float16
    for i, uid in enumerate(data.uids):
        info = sf.info(str(files[uid]))
        assert info.samplerate == 22050  # eSpeak's rate: features are computed after resampling to 16 kHz
        samples_16k = math.ceil(info.frames * 16000 / info.samplerate)
        frames = data.frame_offsets[i + 1] - data.frame_offsets[i]
        assert frames == 1 + samples_16k // 160  # 10 ms hop, centered windows
        utt = feats[data.frame_offsets[i]:data.frame_offsets[i + 1]].astype(np.float32)
        assert np.abs(utt.mean(0)).max() < 0.01 and np.abs(utt.std(0) - 1).max() < 0.01
    assert data.frames_per_second == 100.0
    refs = data.valid_texts()
    assert len(refs) == 4 and all(r == r.lower() and r.strip() for r in refs)


def test_features_are_cached_and_the_second_load_reads_the_cache(tmp_path: Path, speech_corpus: Path) -> None:
    source = {"train": str(speech_corpus / TRAIN_SPLIT), "valid": str(speech_corpus / VALID_SPLIT)}
    first = prepare(tmp_path, **source)
    cached = tmp_path / "cache" / first.key / "features.bin"
    marked = np.full(first.open_features().shape, 7.0, dtype=np.float16)
    marked.tofile(cached)  # a second load that recomputed features would not see these values
    second = prepare(tmp_path, **source)
    assert second.key == first.key and np.all(second.open_features() == 7.0)
    np.testing.assert_array_equal(second.durations, first.durations)
    mapped = prepare(tmp_path, **source, features_in_memory=False)  # same cache, memory-mapped
    assert mapped.features is None and mapped.key == first.key and np.all(mapped.open_features() == 7.0)
    other = prepare(tmp_path, **source, n_mels=16)  # other settings: another cache entry
    assert other.key != first.key and other.open_features().shape[1] == 16


def test_hours_of_each_shard_come_from_real_durations(tmp_path: Path, speech_corpus: Path) -> None:
    # A manifest whose duration claims are all wrong: sizes must come from the audio itself.
    files = audio_files(speech_corpus / TRAIN_SPLIT)
    texts = dict(line.split(" ", 1) for t in (speech_corpus / TRAIN_SPLIT).rglob("*.trans.txt")
                 for line in t.read_text().splitlines())
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": str(p), "duration": 1.0, "text": texts[uid]}) + "\n"
                                for uid, p in sorted(files.items())))
    data = prepare(tmp_path, train=str(manifest), valid=str(speech_corpus / VALID_SPLIT), shuffle_seed=3)
    domain = SpeechDomain()
    sizes = []
    for fraction in (0.25, 0.5, 1.0):
        k = data.shard_size(fraction)
        expected = sum(real_seconds(Path(uid)) for uid in data.uids[:k]) / 3600
        assert domain.train_size(data, fraction, "ds2") == pytest.approx(expected, rel=1e-9)
        assert domain.train_size(data, fraction, "attention") == pytest.approx(expected, rel=1e-9)
        sizes.append(k)
    assert sizes == [4, 7, 14]  # nested prefixes of one shuffle
    assert data.shard_hours(1.0) * 3600 == pytest.approx(sum(real_seconds(p) for p in files.values()))
    assert data.shard_hours(1.0) * 3600 > 14 * 1.0 + 5  # not the manifest's claims


def test_bad_utterances_are_skipped_counted_and_reported(tmp_path: Path, speech_corpus: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "LibriSpeech" / "train-mixed" / "19" / "198"
    root.mkdir(parents=True)
    good = sorted(audio_files(speech_corpus / TRAIN_SPLIT).items())[:4]
    lines = []
    for n, (_, path) in enumerate(good):
        shutil.copy(path, root / f"19-198-{n:04d}.flac")
        lines.append(f"19-198-{n:04d} SOME REAL WORDS")
    wave, rate = sf.read(str(good[0][1]))
    sf.write(root / "19-198-0010.wav", np.concatenate([wave] * 6), rate)  # a few seconds: over the limit
    sf.write(root / "19-198-0011.wav", np.zeros(0), rate)  # no samples
    (root / "19-198-0012.flac").write_bytes(b"fLaC but not really audio")  # unreadable
    shutil.copy(good[1][1], root / "19-198-0013.flac")
    lines += ["19-198-0010 TOO LONG", "19-198-0011 EMPTY", "19-198-0012 BROKEN", "19-198-0013 123",
              "19-198-0014 NO AUDIO FILE"]
    (root / "19-198.trans.txt").write_text("\n".join(lines) + "\n")
    longest = max(real_seconds(p) for _, p in good)
    with caplog.at_level(logging.WARNING, logger="domains.speech.data"):
        data = prepare(tmp_path, train=str(tmp_path / "LibriSpeech"), valid=str(speech_corpus / VALID_SPLIT),
                       max_duration=longest + 0.5)
    assert data.n_train == 4
    assert data.skipped == {"too long": 1, "empty audio": 1, "unreadable": 1, "empty transcript": 1,
                            "missing audio": 1}
    assert "skipped 5 utterances" in caplog.text and "unreadable: 1" in caplog.text


def test_csv_manifest_with_relative_paths_and_held_out_validation(tmp_path: Path, speech_corpus: Path) -> None:
    folder = tmp_path / "clips"
    rows = ["path,duration,text"]
    for t in sorted((speech_corpus / TRAIN_SPLIT).rglob("*.trans.txt")):
        for line in t.read_text().splitlines():
            uid, text = line.split(" ", 1)
            (folder / uid).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(t.parent / f"{uid}.flac", folder / f"{uid}.flac")
            rows.append(f'{uid}.flac,,"{text.lower()}, really"')
    (folder / "all.csv").write_text("\n".join(rows) + "\n")
    data = prepare(tmp_path, train=str(folder / "all.csv"), valid_fraction=0.2)
    assert (data.n_train, data.n_valid) == (11, 3)  # 20 % held out, disjoint from every shard
    assert not set(data.uids[:11]) & set(data.uids[11:])
    assert all(r.endswith(" really") for r in data.valid_texts())  # the comma is not in the alphabet


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "nowhere", "does not exist"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no \\*.trans.txt"),
    (lambda p: (p / "m.jsonl").write_text('{"text": "hi"}\n') and p / "m.jsonl", "lacks 'path'"),
    (lambda p: (p / "m.csv").write_text("path,text\nmissing.flac,hi\n") and p / "m.csv", "no utterance"),
])
def test_unusable_sources_raise_data_source_errors(tmp_path: Path, make: object, message: str) -> None:
    with pytest.raises(DataSourceError, match=message):
        prepare(tmp_path, train=str(make(tmp_path)))  # type: ignore[operator]


def test_all_utterances_skipped_is_a_data_source_error(tmp_path: Path, speech_corpus: Path) -> None:
    with pytest.raises(DataSourceError, match="usable utterances"):
        prepare(tmp_path, train=str(speech_corpus / TRAIN_SPLIT), valid=str(speech_corpus / VALID_SPLIT),
                max_duration=0.1)


def test_source_model_rejects_unknown_fields_and_bad_alphabets() -> None:
    model = SpeechDomain.source_model
    with pytest.raises(ValidationError):
        model(train="x", n_mel=40)
    with pytest.raises(ValidationError):
        model(train="x", alphabet="abca")
    assert model(train=["a", "b"]).train == ["a", "b"]
