"""Speech corpora to cached log-mel features: LibriSpeech layout and manifests, skipped-utterance report, shards.

Two input forms (each may be a list, e.g. train-clean-100 + train-clean-360 + train-other-500):

* a LibriSpeech-layout folder: ``*.trans.txt`` files anywhere below it, each line ``<utterance-id> <TEXT>``,
  with ``<utterance-id>.flac`` (or ``.wav``) beside the transcript;
* a manifest: CSV with a header, or JSON lines, naming ``path`` (or NeMo's ``audio_filepath``), ``text`` and,
  optionally, ``duration`` in seconds; relative paths are relative to the manifest's folder.

Audio is read with soundfile (torchaudio's own loader now needs torchcodec), averaged to mono, resampled to
``sample_rate`` with ``torchaudio.functional.resample``, and turned into log-mel features
(``torchaudio.transforms.MelSpectrogram``, then ``log(x + 1e-6)``) normalized per utterance (zero mean, unit
variance per mel bin). Features are computed once per sweep and cached as float16 (``features.bin``, read
into memory or memory-mapped), which is what the trials receive (``SpeechData``: arrays and paths only).

The training utterances are shuffled once (``shuffle_seed``) *before* features are computed and stored in
that order, so every nested shard is a prefix (``domains.shards.shard_count``) and contiguous on disk. Train
sizes are hours of audio summed over the shard from the real decoded lengths (samples / sample rate of the
file), not from manifest claims. Unreadable, empty (no samples or no transcript characters) and over-long
utterances, and transcripts whose audio file is missing, are skipped, counted per reason and logged.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio

from domains.base import DataSourceError, check_split_sizes
from domains.shards import shard_count, shard_permutation
from domains.speech.text import DEFAULT_ALPHABET, encode, normalize
from domains.text_files import read_utf8
from sweepstore import atomic_folder

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".flac", ".wav")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
MIN_TRAIN_UTTERANCES = 2
LOG_FLOOR = 1e-6
FEATURE_DTYPE = np.float16
CHUNK = 256  # utterances submitted to the feature threads at a time


@dataclass(frozen=True)
class Utterance:
    """One transcribed recording as listed by a corpus (duration only when a manifest claims one)."""

    path: Path
    text: str
    uid: str
    claimed_duration: float | None = None


@dataclass(frozen=True)
class FeatureSettings:
    """How audio becomes features; part of the cache key."""

    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0

    @property
    def hop(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def win(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)


def list_utterances(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                    skipped: Counter[str] | None = None) -> tuple[list[Utterance], list[Path]]:
    """Utterances of one or more LibriSpeech folders / manifests, and the listing files read (for the cache
    key). Transcripts without audio are counted in ``skipped["missing audio"]``."""
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    skipped = Counter() if skipped is None else skipped
    utterances: list[Utterance] = []
    listings: list[Path] = []
    for item in specs:
        path = Path(os.path.expanduser(str(item)))
        if path.is_dir():
            transcripts = sorted(path.rglob("*.trans.txt"))
            if not transcripts:
                raise DataSourceError(f"speech data: no *.trans.txt transcripts under {path} (LibriSpeech layout)")
            for t in transcripts:
                utterances.extend(_read_transcript(t, skipped))
            listings.extend(transcripts)
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            utterances.extend(_read_manifest(path, skipped))
            listings.append(path)
        elif path.is_file():
            raise DataSourceError(f"speech data: {path} is neither a folder nor a manifest "
                                  f"({', '.join(MANIFEST_SUFFIXES)})")
        else:
            raise DataSourceError(f"speech data: {path} does not exist")
    if not utterances:
        raise DataSourceError(f"speech data {specs}: no utterance has both audio and a transcript")
    return utterances, listings


def _read_transcript(path: Path, skipped: Counter[str]) -> Iterator[Utterance]:
    lines = read_utf8(path, "speech transcript").splitlines()
    for line in lines:
        uid, _, text = line.strip().partition(" ")
        if not uid:
            continue
        audio = next((path.parent / f"{uid}{s}" for s in AUDIO_SUFFIXES if (path.parent / f"{uid}{s}").is_file()),
                     None)
        if audio is None:
            skipped["missing audio"] += 1
            continue
        yield Utterance(audio, text, uid)


def _read_manifest(path: Path, skipped: Counter[str]) -> list[Utterance]:
    """CSV/TSV with a header or JSON lines with ``path``/``audio_filepath``, ``text``, optional ``duration``."""
    raw = read_utf8(path, "speech manifest")
    rows: list[dict[str, Any]] = []
    if path.suffix.lower() in (".csv", ".tsv"):
        rows = list(csv.DictReader(raw.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    else:
        for n, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise DataSourceError(f"speech manifest {path} line {n} is not JSON") from None
    out = []
    for n, row in enumerate(rows, 1):
        audio, text = row.get("path") or row.get("audio_filepath"), row.get("text")
        if audio is None or text is None:
            raise DataSourceError(f"speech manifest {path} row {n} lacks 'path' (or 'audio_filepath') or 'text'; "
                                  f"has {sorted(row)}")
        audio_path = Path(os.path.expanduser(str(audio)))
        audio_path = audio_path if audio_path.is_absolute() else path.parent / audio_path
        if not audio_path.is_file():
            skipped["missing audio"] += 1
            continue
        duration = row.get("duration")
        try:
            claimed = float(duration) if duration not in (None, "") else None
        except ValueError:
            raise DataSourceError(f"speech manifest {path} row {n}: duration {duration!r} is not a number") from None
        out.append(Utterance(audio_path, str(text), str(audio_path), claimed))
    return out


def read_audio(path: Path, sample_rate: int) -> tuple[torch.Tensor, float]:
    """Mono float waveform at ``sample_rate`` and the real duration in seconds (samples / file rate)."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1))
    duration = len(wave) / rate
    if rate != sample_rate and len(wave):
        with torch.no_grad():
            wave = _resampler(rate, sample_rate)(wave)
    return wave, duration


@functools.cache
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    """``torchaudio.functional.resample`` with its filter kernel built once per rate pair (3x faster)."""
    return torchaudio.transforms.Resample(orig, new)


class Featurizer:
    """Waveform → per-utterance-normalized log-mel frames (frames, n_mels). Stateless; safe across threads."""

    def __init__(self, settings: FeatureSettings) -> None:
        self.settings = settings
        n_fft = 1 << (settings.win - 1).bit_length()
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=settings.sample_rate, n_fft=n_fft,
                                                        win_length=settings.win, hop_length=settings.hop,
                                                        n_mels=settings.n_mels)

    def __call__(self, wave: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            feats = torch.log(self.mel(wave) + LOG_FLOOR).T  # (frames, n_mels)
            feats = (feats - feats.mean(0)) / (feats.std(0, unbiased=False) + 1e-5)
        return feats.numpy().astype(FEATURE_DTYPE)


@dataclass(frozen=True)
class SpeechData:
    """What every trial receives: features (in memory or a path to memory-map), labels, durations.

    Utterances ``0 .. n_train-1`` are the training split in shuffle order (shard(f) = the first
    ``shard_count(n_train, f)``); ``n_train ..`` are the fixed validation set.
    """

    frame_offsets: np.ndarray  # (n+1,) into the feature rows
    labels: np.ndarray  # all transcripts' character ids, concatenated (int16)
    label_offsets: np.ndarray  # (n+1,)
    durations: np.ndarray  # (n,) seconds of audio, from the decoded samples
    n_train: int
    alphabet: str
    n_mels: int
    frames_per_second: float
    features: np.ndarray | None = None  # (total_frames, n_mels) float16, or None: memory-map features_path
    features_path: str = ""
    uids: tuple[str, ...] = ()  # utterance ids (LibriSpeech) or audio paths (manifests), in stored order
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> utterances left out
    key: str = ""

    @property
    def n_valid(self) -> int:
        return len(self.durations) - self.n_train

    def shard_size(self, fraction: float) -> int:
        return shard_count(self.n_train, fraction)

    def shard_hours(self, fraction: float) -> float:
        """Hours of audio in the nested training shard of ``fraction``."""
        return float(self.durations[: self.shard_size(fraction)].sum()) / 3600.0

    def open_features(self) -> np.ndarray:
        """The feature rows: the in-memory array, or a read-only memory map of the cached file."""
        if self.features is not None:
            return self.features
        rows = int(self.frame_offsets[-1])
        return np.memmap(self.features_path, dtype=FEATURE_DTYPE, mode="r", shape=(rows, self.n_mels))

    def valid_texts(self) -> list[str]:
        """Reference transcripts of the validation set (normalized), for CER/WER."""
        from domains.speech.text import decode

        lo = self.label_offsets
        return [decode(self.labels[lo[i]:lo[i + 1]], self.alphabet) for i in range(self.n_train, len(lo) - 1)]


def featurize_corpus(utterances: Iterable[Utterance], settings: FeatureSettings, out: Any, *,
                     alphabet: str = DEFAULT_ALPHABET, max_duration: float = 20.0, limit: int | None = None,
                     workers: int = 1, skipped: Counter[str] | None = None,
                     ) -> tuple[list[int], list[np.ndarray], list[float], list[str]]:
    """Compute features of ``utterances`` in order, writing rows to the binary file object ``out``.

    Returns frames per kept utterance, their label arrays, durations and ids. Stops after ``limit`` kept
    utterances. Skips (and counts) unreadable, empty and over-long ones and those whose transcript has no
    alphabet characters; a manifest's claimed duration over the limit skips an utterance without decoding it.
    """
    featurizer = Featurizer(settings)
    skipped = Counter() if skipped is None else skipped

    def one(u: Utterance) -> tuple[str, Any]:
        text = normalize(u.text, alphabet)
        if not text:
            return "empty transcript", None
        if u.claimed_duration is not None and u.claimed_duration > max_duration:
            return "too long", None
        try:
            wave, duration = read_audio(u.path, settings.sample_rate)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
            log.debug("unreadable audio %s: %s", u.path, exc)
            return "unreadable", None
        if len(wave) < settings.win:
            return "empty audio", None
        if duration > max_duration:
            return "too long", None
        return "", (featurizer(wave), encode(text, alphabet), duration)

    frames: list[int] = []
    labels: list[np.ndarray] = []
    durations: list[float] = []
    uids: list[str] = []
    items = list(utterances)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(items), CHUNK):
            batch = items[start:start + CHUNK]
            for u, (reason, result) in zip(batch, pool.map(one, batch), strict=True):
                if reason:
                    skipped[reason] += 1
                    continue
                feats, ids, duration = result
                out.write(feats.tobytes())
                frames.append(len(feats))
                labels.append(ids)
                durations.append(duration)
                uids.append(u.uid)
                if limit is not None and len(frames) >= limit:
                    return frames, labels, durations, uids
    return frames, labels, durations, uids


def build_speech_data(train: Sequence[Utterance], valid: Sequence[Utterance], folder: Path, *,
                      settings: FeatureSettings, alphabet: str, max_duration: float, shuffle_seed: int,
                      max_utterances: int | None, max_valid_utterances: int | None, in_memory: bool | None,
                      memory_limit_mb: float, workers: int, skipped: Counter[str], key: str) -> SpeechData:
    """Featurize a train/valid split into ``folder`` (atomically: a temp folder renamed into place)."""
    order = shard_permutation(len(train), shuffle_seed)  # stored in this order: shards are prefixes
    valid_order = np.random.default_rng([shuffle_seed, 0x5EED]).permutation(len(valid))
    with atomic_folder(folder, "meta.json") as tmp:  # a concurrent writer that won the race keeps its folder
        with open(tmp / "features.bin", "wb") as fh:
            common = {"alphabet": alphabet, "max_duration": max_duration, "workers": workers}
            t_frames, t_labels, t_dur, t_uids = featurize_corpus(
                (train[i] for i in order), settings, fh, **common, limit=max_utterances, skipped=skipped)
            v_skipped: Counter[str] = Counter()
            v_frames, v_labels, v_dur, v_uids = featurize_corpus(
                (valid[i] for i in valid_order), settings, fh, **common, limit=max_valid_utterances, skipped=v_skipped)
        skipped.update({f"valid: {k}": v for k, v in v_skipped.items()})
        if skipped:
            log.warning("speech data: skipped %d utterances (%s); kept %d train, %d valid", sum(skipped.values()),
                        ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())), len(t_frames), len(v_frames))
        check_split_sizes("speech", len(t_frames), MIN_TRAIN_UTTERANCES, len(v_frames), "usable utterances",
                          f"skipped: {dict(skipped)}")
        frames = np.asarray(t_frames + v_frames, dtype=np.int64)
        all_labels = t_labels + v_labels
        meta = {"key": key, "n_train": len(t_frames), "alphabet": alphabet, "n_mels": settings.n_mels,
                "frames_per_second": settings.sample_rate / settings.hop, "skipped": dict(skipped),
                "uids": t_uids + v_uids}
        np.savez(tmp / "arrays.npz", frame_offsets=np.concatenate([[0], np.cumsum(frames)]),
                 labels=np.concatenate(all_labels).astype(np.int16),
                 label_offsets=np.concatenate([[0], np.cumsum([len(x) for x in all_labels])]),
                 durations=np.asarray(t_dur + v_dur, dtype=np.float64))
        (tmp / "meta.json").write_text(json.dumps(meta))
    data = load_speech_data(folder, in_memory, memory_limit_mb)
    if data is None:
        raise DataSourceError(f"speech feature cache {folder} could not be read back")
    return data


def load_speech_data(folder: Path, in_memory: bool | None = None, memory_limit_mb: float = 2048.0,
                     ) -> SpeechData | None:
    """The cached ``SpeechData`` in ``folder``, or None when absent or incomplete. Features are read into
    memory when ``in_memory`` (None: when the file is at most ``memory_limit_mb``), else memory-mapped by
    each trial from the cache (which must then be on a filesystem the workers share)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "arrays.npz") as npz:
            arrays = {name: npz[name] for name in ("frame_offsets", "labels", "label_offsets", "durations")}
        path = folder / "features.bin"
        size = path.stat().st_size
        rows, n_mels = int(arrays["frame_offsets"][-1]), int(meta["n_mels"])
        if size != rows * n_mels * np.dtype(FEATURE_DTYPE).itemsize:
            return None
        load = in_memory if in_memory is not None else size <= memory_limit_mb * 2**20
        features = np.fromfile(path, dtype=FEATURE_DTYPE).reshape(rows, n_mels) if load else None
        return SpeechData(**arrays, n_train=meta["n_train"], alphabet=meta["alphabet"], n_mels=n_mels,
                          frames_per_second=meta["frames_per_second"], features=features,
                          features_path=str(path.resolve()), uids=tuple(meta["uids"]), skipped=meta["skipped"],
                          key=meta["key"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
