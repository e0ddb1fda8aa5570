"""The translation domain (Hestness et al. 2017, §4.1, De→En): LSTM attention and Transformer encoder–decoders.

Learning-curve sizes are target tokens: the target side's subwords (of the one joint BPE model) plus one
``</s>`` per pair, i.e. what the decoder predicts. Each ``train`` call also records the sentence pairs it read
(``TrainStats.extra["pairs"]``) and the shard's pair count (``extra["shard_pairs"]``).

Models train eagerly, not under ``torch.compile``: on this CPU (``python benchmarks/throughput.py nmt``) compiling
took 13 s (LSTM) to 5 min (Transformer) per model and made the Transformer 2x slower and the width-64 LSTM 13 %
slower; only the width-256 LSTM gained (1.5x). Quickstart trials last 5-25 s, so compiling could never pay off.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from domains.base import DataSourceError, FamilyInfo, Paths, SourceModel
from domains.cache import cache_key, file_stamp, load_or_build
from domains.model_domain import ModelDomain, naming_source
from domains.nmt.data import (
    DropCounts,
    NMTData,
    build_nmt_data,
    load_nmt_data,
    read_pairs,
    resolve_corpora,
    save_nmt_data,
)
from domains.nmt.models import Seq2Seq, build_model
from domains.nmt.offline_corpus import SOURCE_LANG, TARGET_LANG, TRAIN_PREFIX, VALID_PREFIX, write_corpus
from domains.nmt.task import HPARAMS, NMTHParams, NMTTask

CACHE_VERSION = 1  # bump when tokenization or the cached layout changes
# ``train: builtin:offline-de-en`` = German→English pairs of the system's gettext catalogs (offline_corpus),
# written once into the cache in the WMT layout; its validation files are used unless ``valid`` is set.
OFFLINE_DE_EN = "builtin:offline-de-en"
METRICS = {"val_xent": "nats per target token (teacher forced)",
           "val_token_error": "share of target tokens mispredicted (teacher forced)",
           "val_bleu_loss": "100 - BLEU (sacrebleu, greedy decodes of the first bleu_pairs validation pairs)"}


class NMTSource(SourceModel):
    """The spec's ``data`` section for ``nmt``: WMT-layout aligned files or TSV files of parallel text."""

    train: Paths  # prefix P (P.<source_lang> + P.<target_lang>), a .tsv, a directory or glob, a list; or OFFLINE
    valid: Paths | None = None  # same forms; None = hold out ``valid_fraction`` of the training pairs
    source_lang: str = Field("de", pattern=r"^[\w-]+$")
    target_lang: str = Field("en", pattern=r"^[\w-]+$")
    valid_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    vocab_size: int = Field(8000, ge=16)  # joint BPE vocabulary (upper bound: tiny corpora may get fewer)
    bpe_sentences: int = Field(1_000_000, ge=100)  # sentences BPE is learned from (a random sample beyond this)
    byte_fallback: bool = False  # True: unseen characters as UTF-8 byte pieces (256 of the vocabulary), no <unk>
    max_tokens: int = Field(128, ge=1)  # pairs with a longer side (in subwords) are dropped and counted
    max_dropped_fraction: float = Field(0.2, ge=0.0, le=1.0)  # more bad pairs than this: the corpus is malformed
    shuffle_seed: int = 0  # the one shuffle that every nested shard is a prefix of
    max_pairs: int | None = Field(None, ge=10)  # keep a random subset of the training split
    max_valid_pairs: int | None = Field(3000, ge=1)  # the first validation pairs, for evaluation speed
    bleu_pairs: int = Field(200, ge=1)  # validation pairs greedily decoded for BLEU at every evaluation


class NMTDomain(ModelDomain, name="nmt", size_unit="target tokens", source=NMTSource, hparams=HPARAMS, task=NMTTask):
    """Per-token cross-entropy learning curves of translation models on nested shards of parallel text."""

    families: ClassVar[Mapping[str, FamilyInfo]] = {
        "lstm": FamilyInfo(metric="val_xent", metrics=METRICS, width_meaning="LSTM hidden size",
                           description="bidirectional LSTM encoder, LSTM decoder, Luong global attention"),
        "transformer": FamilyInfo(metric="val_xent", metrics=METRICS, width_meaning="d_model",
                                  description="pre-norm Transformer encoder-decoder (torch.nn), heads and FFN "
                                              "tied to width"),
    }

    def prepare(self, source: BaseModel | Mapping[str, Any], cache_dir: Path) -> NMTData:
        """Read, check and tokenize once; cached in ``cache_dir/<key>/`` where the key covers the settings and
        the name, size and mtime of every input file (edited data is re-read, unchanged data never is)."""
        src: NMTSource = self.parse_source(source)
        if src.train == OFFLINE_DE_EN:
            if (src.source_lang, src.target_lang) != (SOURCE_LANG, TARGET_LANG):
                raise DataSourceError(f"{OFFLINE_DE_EN} is German→English; got source_lang={src.source_lang!r}, "
                                      f"target_lang={src.target_lang!r}")
            try:
                corpus = write_corpus(Path(cache_dir) / "offline-de-en")
            except ValueError as exc:
                raise DataSourceError(str(exc)) from None
            src = src.model_copy(update={"train": str(corpus / TRAIN_PREFIX),
                                         "valid": src.valid or str(corpus / VALID_PREFIX)})
        train_corpora = resolve_corpora(src.train, src.source_lang, src.target_lang, "train")
        valid_corpora = (resolve_corpora(src.valid, src.source_lang, src.target_lang, "valid")
                         if src.valid is not None else [])
        key = cache_key(CACHE_VERSION, src.model_dump(mode="json"),
                        train=[file_stamp(p) for c in train_corpora for p in c.files()],
                        valid=[file_stamp(p) for c in valid_corpora for p in c.files()])

        def build() -> NMTData:
            counts = {"train": DropCounts(), "valid": DropCounts()}
            train = read_pairs(train_corpora, counts["train"])
            valid = read_pairs(valid_corpora, counts["valid"]) if valid_corpora else None
            with naming_source(src.train):
                return build_nmt_data(train, valid, vocab_size=src.vocab_size, max_tokens=src.max_tokens,
                                      shuffle_seed=src.shuffle_seed, valid_fraction=src.valid_fraction,
                                      max_pairs=src.max_pairs, max_valid_pairs=src.max_valid_pairs,
                                      bleu_pairs=src.bleu_pairs, max_dropped_fraction=src.max_dropped_fraction,
                                      bpe_sentences=src.bpe_sentences, byte_fallback=src.byte_fallback,
                                      counts=counts, key=key)

        return load_or_build(Path(cache_dir) / key, load_nmt_data, build, save_nmt_data)

    def train_size(self, prepared: NMTData, fraction: float, family: str) -> float:
        self.family(family)
        return float(prepared.shard_tokens(fraction))

    def shard_examples(self, prepared: NMTData, fraction: float, family: str) -> float:
        return float(len(prepared.shard_pairs(fraction)))  # sentence pairs; batch_size counts pairs

    def planning_data(self, source: BaseModel, hints: Mapping[str, Any]) -> Any:
        return SimpleNamespace(vocab_size=self.parse_source(source).vocab_size)

    def build_model(self, prepared: NMTData, width: int, hp: NMTHParams) -> Seq2Seq:
        shape = {"head_dim": hp.head_dim, "ffn_ratio": hp.ffn_ratio} if hp.family == "transformer" else {}
        return build_model(hp.family, prepared.vocab_size, width, layers=hp.layers, dropout=hp.dropout,
                           tie_embeddings=hp.tie_embeddings, **shape)
