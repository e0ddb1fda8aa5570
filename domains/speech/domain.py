"""The speech domain (Hestness et al. 2017, §4.4): Deep Speech 2 (CTC) and an attention encoder–decoder,
learning curves of character error rate against hours of audio."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, Field, field_validator, model_validator

from domains.base import FamilyInfo, Paths, SourceModel
from domains.cache import file_stamp
from domains.model_domain import ModelDomain, naming_source
from domains.speech.data import (
    FeatureSettings,
    SpeechData,
    Utterance,
    build_speech_data,
    list_utterances,
    load_speech_data,
)
from domains.speech.espeak import TRAIN_SPLIT, VALID_SPLIT, write_espeak_corpus
from domains.speech.task import HPARAMS, SpeechHParams, SpeechTask
from domains.speech.text import DEFAULT_ALPHABET

CACHE_VERSION = 2  # bump when features, labels or the cached layout change
# ``train: builtin:espeak`` = real English sentences read by eSpeak NG with varied voices, rates and pitches
# (espeak.py), synthesized once into the cache in LibriSpeech layout; its dev split is the validation set.
ESPEAK = "builtin:espeak"
METRICS = {"val_cer": "character error rate (greedy)", "val_wer": "word error rate (greedy)",
           "val_loss": "nats per target character"}


class SpeechSource(SourceModel):
    """The spec's ``data`` section for ``speech``: LibriSpeech-layout folders or CSV/JSONL manifests."""

    train: Paths  # folder(s) with *.trans.txt, manifest(s) (.csv/.tsv/.jsonl/.json), or ESPEAK
    valid: Paths | None = None  # same forms; None = hold out ``valid_fraction`` of the training utterances
    valid_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    sample_rate: int = Field(16000, ge=4000)  # audio is resampled to this rate
    n_mels: int = Field(80, ge=8)
    win_ms: float = Field(25.0, gt=0.0)
    hop_ms: float = Field(10.0, gt=0.0)
    max_duration: float = Field(20.0, gt=0.0)  # seconds; longer utterances are skipped (and counted)
    alphabet: str = DEFAULT_ALPHABET  # output characters; transcripts are lowercased, others dropped
    shuffle_seed: int = 0  # the one shuffle that every nested shard is a prefix of
    max_utterances: int | None = Field(None, ge=2)  # keep the first of the shuffled training utterances
    max_valid_utterances: int | None = Field(1000, ge=1)  # a random subset of the validation set, for speed
    features_in_memory: bool | None = None  # None: in memory up to memory_limit_mb, else memory-mapped
    memory_limit_mb: float = Field(2048.0, gt=0.0)
    workers: int = Field(0, ge=0)  # feature threads; 0 = one per CPU
    espeak_utterances: int = Field(500, ge=10)  # builtin:espeak only: training utterances to synthesize
    espeak_valid_utterances: int = Field(100, ge=1)
    espeak_min_words: int = Field(3, ge=1)  # builtin:espeak only: words per sentence
    espeak_max_words: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _word_range(self) -> SpeechSource:
        if self.espeak_min_words > self.espeak_max_words:
            raise ValueError(f"espeak_min_words ({self.espeak_min_words}) exceeds espeak_max_words "
                             f"({self.espeak_max_words})")
        return self

    @field_validator("alphabet")
    @classmethod
    def _distinct(cls, v: str) -> str:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"alphabet must be non-empty with distinct characters, got {v!r}")
        return v

    def features(self) -> FeatureSettings:
        return FeatureSettings(self.sample_rate, self.n_mels, self.win_ms, self.hop_ms)


class SpeechDomain(ModelDomain, name="speech", size_unit="hours",
                   source=SpeechSource, hparams=HPARAMS, task=SpeechTask):
    """CER learning curves of Deep Speech 2 and an attention encoder–decoder on nested shards (hours)."""

    families: ClassVar[Mapping[str, FamilyInfo]] = {
        "ds2": FamilyInfo(metric="val_cer", metrics=METRICS, width_meaning="RNN hidden size per direction",
                          description="Deep Speech 2: 2-D conv front end, bidirectional GRU stack, CTC"),
        "attention": FamilyInfo(metric="val_cer", metrics=METRICS, width_meaning="model dimension",
                                description="Conformer encoder + Transformer decoder (+ auxiliary CTC)"),
    }

    def prepare(self, source: BaseModel | Mapping[str, Any], cache_dir: Path) -> SpeechData:
        """List, read and featurize once; cached in ``cache_dir/<key>/`` where the key covers the feature
        settings and the path, size and mtime of every transcript, manifest and audio file."""
        src: SpeechSource = self.parse_source(source)
        if src.train == ESPEAK:
            corpus = write_espeak_corpus(Path(cache_dir) / "espeak", src.espeak_utterances,
                                         src.espeak_valid_utterances, min_words=src.espeak_min_words,
                                         max_words=src.espeak_max_words)
            src = src.model_copy(update={"train": str(corpus / TRAIN_SPLIT),
                                         "valid": src.valid or str(corpus / VALID_SPLIT)})
        skipped: Counter[str] = Counter()
        train, listings = list_utterances(src.train, skipped)
        if src.valid is not None:
            valid, valid_listings = list_utterances(src.valid, skipped)
            listings += valid_listings
        else:
            train, valid = _hold_out(train, src.valid_fraction, src.shuffle_seed)
        key = _cache_key(src, listings, train, valid)
        folder = Path(cache_dir) / key
        cached = load_speech_data(folder, src.features_in_memory, src.memory_limit_mb)
        if cached is not None:
            return cached
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete or unreadable cache is rebuilt
        with naming_source(src.train):
            return build_speech_data(train, valid, folder, settings=src.features(), alphabet=src.alphabet,
                                     max_duration=src.max_duration, shuffle_seed=src.shuffle_seed,
                                     max_utterances=src.max_utterances,
                                     max_valid_utterances=src.max_valid_utterances,
                                     in_memory=src.features_in_memory, memory_limit_mb=src.memory_limit_mb,
                                     workers=src.workers or os.cpu_count() or 1, skipped=skipped, key=key)

    def train_size(self, prepared: SpeechData, fraction: float, family: str) -> float:
        self.family(family)
        return prepared.shard_hours(fraction)

    def shard_examples(self, prepared: SpeechData, fraction: float, family: str) -> float:
        return float(prepared.shard_size(fraction))  # utterances; batch_size counts utterances

    def planning_data(self, source: BaseModel, hints: Mapping[str, Any]) -> Any:
        src = self.parse_source(source)
        return SimpleNamespace(n_mels=src.n_mels, alphabet=src.alphabet)

    def build_model(self, prepared: SpeechData, width: int, hp: SpeechHParams) -> torch.nn.Module:
        return hp.build(prepared.n_mels, len(prepared.alphabet) + 1, width)


def _hold_out(utterances: list[Utterance], fraction: float, seed: int) -> tuple[list[Utterance], list[Utterance]]:
    """A random ``fraction`` of the utterances as the validation set, disjoint from every shard."""
    from domains.shards import heldout_split

    train_idx, valid_idx = heldout_split(len(utterances), fraction, seed)
    return [utterances[i] for i in train_idx], [utterances[i] for i in valid_idx]


def _cache_key(src: SpeechSource, listings: list[Path], train: list[Utterance], valid: list[Utterance]) -> str:
    """Hash of the settings that change features or labels plus (path, size, mtime) of every input file."""
    settings = src.model_dump(mode="json", exclude={"features_in_memory", "memory_limit_mb", "workers"})
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": CACHE_VERSION, "source": settings,
                              "listings": [file_stamp(p) for p in listings]}, sort_keys=True).encode())
    for split in (train, valid):
        digest.update(b"|")
        for u in split:
            digest.update(json.dumps([*file_stamp(u.path), u.text, u.claimed_duration]).encode())
    return digest.hexdigest()[:20]
