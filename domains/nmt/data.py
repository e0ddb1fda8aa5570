"""Parallel text to subword-id arrays: reading and checking corpora, one joint BPE model, nested shards.

Corpora come in the WMT layout — two aligned files ``<prefix>.<source_lang>`` / ``<prefix>.<target_lang>``,
one sentence per line — or as a TSV file (``source<TAB>target`` per line). Problems are reported, never
silently absorbed: aligned files whose line counts differ are not aligned at all (``DataSourceError`` naming
both files and counts); single bad pairs (an empty side, a TSV line without exactly one tab, a side longer
than ``max_tokens`` subwords) are dropped and counted in ``NMTData.report`` and a logged warning; a corpus with
more than ``max_dropped_fraction`` bad pairs is more likely malformed than noisy and raises.

One joint sentencepiece BPE model (source and target sides together) is trained once per sweep on the training
split and shared by every shard, so all points of a learning curve use one tokenizer. What trials receive
(``NMTData``) is numpy arrays, the model's bytes and short strings, because it travels through Ray's object store.

Sizes: a pair's target tokens are its target subwords plus one ``</s>`` (what the decoder predicts).
"""

from __future__ import annotations

import glob
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from domains.base import DataSourceError, check_split_sizes
from domains.cache import load_arrays, save_arrays
from domains.shards import heldout_split, shard_count, shard_permutation
from domains.text_files import read_utf8

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MIN_TRAIN_PAIRS = 10
EXAMPLES = 5  # bad lines quoted per reason in reports and errors

Pair = tuple[str, str]


@dataclass
class DropCounts:
    """Pairs read from one split and why some were dropped (with the first few places, ``file:line``)."""

    read: int = 0
    empty: int = 0  # a side empty (after stripping whitespace)
    malformed: int = 0  # TSV lines without exactly one tab
    too_long: int = 0  # a side over max_tokens subwords (checked on the pairs used)
    used: int | None = None  # pairs tokenized: after held-out split / max_pairs / max_valid_pairs
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return self.empty + self.malformed + self.too_long

    def note(self, reason: str, where: str) -> None:
        setattr(self, reason, getattr(self, reason) + 1)
        places = self.examples.setdefault(reason, [])
        if len(places) < EXAMPLES:
            places.append(where)

    def bad_share(self) -> float:
        """The larger of the shares of unreadable pairs (of those read) and over-long pairs (of those used)."""
        unreadable = (self.empty + self.malformed) / self.read if self.read else 0.0
        return max(unreadable, self.too_long / self.used if self.used else 0.0)

    def summary(self) -> str:
        head = f"{self.read} pairs read" + (f", {self.used} used" if self.used is not None else "")
        parts = [f"{getattr(self, r)} {r.replace('_', '-')} ({', '.join(self.examples.get(r, []))}"
                 f"{', …' if getattr(self, r) > len(self.examples.get(r, [])) else ''})"
                 for r in ("empty", "malformed", "too_long") if getattr(self, r)]
        return f"{head}; dropped " + "; ".join(parts) if parts else f"{head}; none dropped"

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "used": self.used, "empty": self.empty, "malformed": self.malformed,
                "too_long": self.too_long, "examples": self.examples}


@dataclass(frozen=True)
class Corpus:
    """One parallel corpus: aligned files (``source`` + ``target``) or one TSV file (``target`` is None)."""

    source: Path
    target: Path | None = None

    def files(self) -> list[Path]:
        return [self.source] if self.target is None else [self.source, self.target]


def resolve_corpora(spec: str | Sequence[str], source_lang: str, target_lang: str,
                    what: str = "train") -> list[Corpus]:
    """Corpora named by a prefix (``P`` → ``P.de`` + ``P.en``), a ``.tsv`` file, a directory or glob (every
    ``X.<src>`` with its ``X.<tgt>``, and every ``*.tsv``), or a list of these."""
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    corpora: list[Corpus] = []
    for one in specs:
        corpora.extend(_resolve_one(os.path.expanduser(str(one)), source_lang, target_lang, what))
    return corpora


def _resolve_one(spec: str, src: str, tgt: str, what: str) -> list[Corpus]:
    path, src_file, tgt_file = Path(spec), Path(f"{spec}.{src}"), Path(f"{spec}.{tgt}")
    if not path.is_dir() and (src_file.is_file() or tgt_file.is_file()):  # a prefix
        return [_aligned(src_file, tgt_file, what)]
    if path.is_file():
        if path.suffix == f".{src}":
            return [_aligned(path, path.with_suffix(f".{tgt}"), what)]
        if path.suffix == f".{tgt}":
            return [_aligned(path.with_suffix(f".{src}"), path, what)]
        return [Corpus(path)]  # a TSV file
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and not any(
            s.startswith(".") for s in p.relative_to(path).parts)]
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    sources = sorted(p for p in found if p.suffix == f".{src}")
    targets = {p for p in found if p.suffix == f".{tgt}"}
    corpora = [_aligned(p, p.with_suffix(f".{tgt}"), what) for p in sources]
    orphans = sorted(targets - {c.target for c in corpora})
    if orphans:
        raise DataSourceError(f"NMT {what} data: {orphans[0]} has no aligned source file "
                              f"{orphans[0].with_suffix('.' + src)}")
    corpora += [Corpus(p) for p in sorted(found) if p.suffix == ".tsv"]
    if not corpora:
        raise DataSourceError(f"NMT {what} data: {spec!r} names no parallel text (expected {spec}.{src} + "
                              f"{spec}.{tgt}, a .tsv file, or a directory/glob holding *.{src} + *.{tgt} or *.tsv)")
    return corpora


def _aligned(source: Path, target: Path, what: str) -> Corpus:
    for p in (source, target):
        if not p.is_file():
            other = target if p == source else source
            raise DataSourceError(f"NMT {what} data: {other} has no aligned file {p}")
    return Corpus(source, target)


def _lines(path: Path) -> list[str]:
    """Lines split on newline only (``str.splitlines`` also splits on U+2028 etc., breaking alignment)."""
    lines = read_utf8(path, "NMT data file").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [s.rstrip("\r") for s in lines]


def read_pairs(corpora: Sequence[Corpus], counts: DropCounts) -> list[Pair]:
    """Stripped (source, target) pairs of every corpus; empty and malformed pairs are counted and dropped."""
    pairs: list[Pair] = []
    for corpus in corpora:
        if corpus.target is None:
            rows = _lines(corpus.source)
            if not rows:
                raise DataSourceError(f"NMT data file {corpus.source} is empty")
            for n, row in enumerate(rows, 1):
                counts.read += 1
                cells = row.split("\t")
                if len(cells) != 2:
                    counts.note("malformed", f"{corpus.source.name}:{n}")
                    continue
                _keep(cells[0].strip(), cells[1].strip(), f"{corpus.source.name}:{n}", pairs, counts)
            continue
        src, tgt = _lines(corpus.source), _lines(corpus.target)
        if len(src) != len(tgt):
            raise DataSourceError(f"NMT parallel files are not aligned: {corpus.source} has {len(src)} lines, "
                                  f"{corpus.target} has {len(tgt)}")
        if not src:
            raise DataSourceError(f"NMT parallel files {corpus.source} and {corpus.target} are empty")
        for n, (s, t) in enumerate(zip(src, tgt, strict=True), 1):
            counts.read += 1
            _keep(s.strip(), t.strip(), f"{corpus.source.name}:{n}", pairs, counts)
    return pairs


def _keep(s: str, t: str, where: str, pairs: list[Pair], counts: DropCounts) -> None:
    if s and t:
        pairs.append((s, t))
    else:
        counts.note("empty", where)


def train_bpe(pairs: Sequence[Pair], vocab_size: int, *, max_sentences: int = 1_000_000, seed: int = 0,
              byte_fallback: bool = False, threads: int | None = None) -> bytes:
    """A joint sentencepiece BPE model (both sides) trained on ``pairs``; ids: pad 0, unk 1, <s> 2, </s> 3.

    ``max_sentences`` caps the sentences BPE is learned from (a random sample, as sentencepiece does), so a
    WMT-sized split trains in minutes. ``vocab_size`` is an upper bound: a tiny corpus that runs out of merges
    gets a smaller vocabulary (``NMTData.vocab_size`` is the real one) instead of an error. Characters never
    seen in training become ``<unk>`` (decoded as " ⁇ "), unless ``byte_fallback`` spends 256 pieces on UTF-8
    bytes so that every text encodes and decodes exactly.
    """
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    sentences = (s for pair in pairs for s in pair)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences, model_writer=model, model_type="bpe", vocab_size=vocab_size,
            character_coverage=1.0, pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            input_sentence_size=max_sentences, shuffle_input_sentence=True, max_sentence_length=1 << 16,
            byte_fallback=byte_fallback,
            num_threads=threads or os.cpu_count() or 1, minloglevel=2, hard_vocab_limit=False)
    except RuntimeError as exc:
        raise DataSourceError(f"NMT tokenizer: sentencepiece BPE training on {len(pairs)} pairs failed: "
                              f"{exc}") from None
    return model.getvalue()


def processor(model: bytes) -> spm.SentencePieceProcessor:
    """A sentencepiece processor of a serialized model."""
    return spm.SentencePieceProcessor(model_proto=model)


def _id_dtype(vocab_size: int) -> type[np.integer]:
    return np.uint16 if vocab_size <= 65536 else np.int32


def encode(sp: spm.SentencePieceProcessor, sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Flat subword ids and offsets (len = sentences + 1); no ``<s>``/``</s>``: the task adds them."""
    ids = sp.encode(list(sentences), out_type=int, num_threads=os.cpu_count() or 1)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((i for x in ids for i in x), dtype=_id_dtype(sp.get_piece_size()), count=int(lengths.sum()))
    return flat, np.concatenate([[0], np.cumsum(lengths)])


@dataclass(frozen=True)
class Split:
    """Encoded pairs: flat source/target subword ids with offsets (pair i = ids[off[i]:off[i + 1]])."""

    src_ids: np.ndarray
    src_offsets: np.ndarray
    tgt_ids: np.ndarray
    tgt_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    def target_tokens(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Target tokens per pair (subwords + ``</s>``)."""
        lengths = np.diff(self.tgt_offsets) + 1
        return lengths if idx is None else lengths[idx]

    def source_lengths(self) -> np.ndarray:
        return np.diff(self.src_offsets) + 1


def encode_pairs(sp: spm.SentencePieceProcessor, pairs: Sequence[Pair], max_tokens: int, counts: DropCounts,
                 ) -> tuple[Split, np.ndarray]:
    """Encode ``pairs``; pairs with a side over ``max_tokens`` subwords are dropped (and counted). Returns the
    split and the indices (into ``pairs``) of the kept pairs."""
    counts.used = len(pairs)
    src_ids, src_off = encode(sp, [s for s, _ in pairs])
    tgt_ids, tgt_off = encode(sp, [t for _, t in pairs])
    keep = (np.diff(src_off) <= max_tokens) & (np.diff(tgt_off) <= max_tokens)
    for i in np.flatnonzero(~keep):
        side = pairs[i][0] if src_off[i + 1] - src_off[i] > max_tokens else pairs[i][1]
        counts.note("too_long", f"{side[:30]!r}… {max(src_off[i + 1] - src_off[i], tgt_off[i + 1] - tgt_off[i])} "
                                f"subwords")
    kept = np.flatnonzero(keep)
    split = Split(*gather_sentences(src_ids, src_off, kept), *gather_sentences(tgt_ids, tgt_off, kept))
    return split, kept


def gather_sentences(ids: np.ndarray, offsets: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sentences ``idx`` (in that order) as flat ids + offsets."""
    lengths = offsets[idx + 1] - offsets[idx]
    new_off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if len(idx) == 0 or new_off[-1] == 0:
        return ids[:0], new_off
    shift = np.repeat(offsets[idx] - new_off[:-1], lengths)
    return ids[np.arange(new_off[-1]) + shift], new_off


@dataclass(frozen=True)
class NMTData:
    """Everything a trial needs: encoded training pairs (file order), the shard shuffle, the fixed validation
    pairs, the first ``bleu_pairs`` validation references as text, and the shared BPE model."""

    train: Split
    valid: Split
    permutation: np.ndarray  # the one shuffle of training pairs; shard(f) = its first shard_count
    valid_refs: tuple[str, ...]  # target text of validation pairs 0..len-1, scored by BLEU
    spm_model: bytes
    vocab_size: int
    report: dict[str, Any] = field(default_factory=dict)  # pairs read / dropped per split, and why
    key: str = ""

    @property
    def num_pairs(self) -> int:
        return len(self.train)

    def shard_pairs(self, fraction: float) -> np.ndarray:
        """Training-pair indices of the nested shard, in shuffle order (smaller shards are prefixes)."""
        return self.permutation[: shard_count(self.num_pairs, fraction)]

    def shard_tokens(self, fraction: float) -> int:
        """Target tokens (subwords + one ``</s>`` per pair) in the shard: the learning curve's size unit."""
        return int(self.train.target_tokens(self.shard_pairs(fraction)).sum())

    def processor(self) -> spm.SentencePieceProcessor:
        return processor(self.spm_model)


def build_nmt_data(train: Sequence[Pair], valid: Sequence[Pair] | None, *, vocab_size: int, max_tokens: int,
                   shuffle_seed: int, valid_fraction: float = 0.05, max_pairs: int | None = None,
                   max_valid_pairs: int | None = None, bleu_pairs: int = 0, max_dropped_fraction: float = 0.2,
                   bpe_sentences: int = 1_000_000, byte_fallback: bool = False,
                   counts: dict[str, DropCounts] | None = None,
                   key: str = "") -> NMTData:
    """Tokenize a train/valid split into ``NMTData``.

    ``valid=None`` holds out ``valid_fraction`` of the training pairs (disjoint from every shard);
    ``max_pairs`` keeps a random subset of the training split (BPE is learned on what is kept);
    ``max_valid_pairs`` keeps the first validation pairs (for evaluation speed). ``counts`` are the read/drop
    counts of each split so far (from ``read_pairs``); over-long pairs are added to them here.
    """
    counts = counts if counts is not None else {"train": DropCounts(read=len(train)),
                                                 "valid": DropCounts(read=len(valid or []))}
    train = list(train)
    if valid is None:
        train_idx, valid_idx = heldout_split(len(train), valid_fraction, shuffle_seed)
        train, valid = [train[i] for i in train_idx], [train[i] for i in valid_idx]
        counts["valid"].read = len(valid)  # held out of the pairs read for training
    valid = list(valid)
    _check(counts, max_dropped_fraction)  # before BPE: a broken corpus fails fast
    if max_pairs is not None and max_pairs < len(train):
        kept = np.sort(shard_permutation(len(train), shuffle_seed)[:max_pairs])
        train = [train[i] for i in kept]
    if max_valid_pairs is not None:
        valid = valid[:max_valid_pairs]
    check_split_sizes("NMT", len(train), MIN_TRAIN_PAIRS, len(valid), "usable pairs",
                      f"train: {counts['train'].summary()}; valid: {counts['valid'].summary()}")
    model = train_bpe(train, vocab_size, max_sentences=bpe_sentences, seed=shuffle_seed, byte_fallback=byte_fallback)
    sp = processor(model)
    train_split, _ = encode_pairs(sp, train, max_tokens, counts["train"])
    valid_split, valid_kept = encode_pairs(sp, valid, max_tokens, counts["valid"])
    _check(counts, max_dropped_fraction)
    for name, c in counts.items():
        if c.dropped:
            log.warning("NMT %s split: %s", name, c.summary())
    if len(train_split) < MIN_TRAIN_PAIRS or len(valid_split) == 0:
        raise DataSourceError(f"NMT data: too few pairs left after dropping over-long ones (train "
                              f"{len(train_split)}, valid {len(valid_split)}); raise max_tokens ({max_tokens})")
    refs = tuple(valid[i][1] for i in valid_kept[:bleu_pairs])
    return NMTData(train=train_split, valid=valid_split,
                   permutation=shard_permutation(len(train_split), shuffle_seed).astype(np.int64),
                   valid_refs=refs, spm_model=model, vocab_size=sp.get_piece_size(),
                   report={name: c.to_dict() for name, c in counts.items()}, key=key)


def _check(counts: dict[str, DropCounts], max_dropped_fraction: float) -> None:
    for name, c in counts.items():
        if c.bad_share() > max_dropped_fraction:
            raise DataSourceError(f"NMT {name} split looks malformed: {c.summary()}; more than "
                                  f"max_dropped_fraction={max_dropped_fraction} of its pairs are bad")


_ARRAYS = ("src_ids", "src_offsets", "tgt_ids", "tgt_offsets")
BPE_FILE = "bpe.model"


def save_nmt_data(data: NMTData, folder: Path) -> None:
    """Write ``data`` as ``arrays.npz`` + ``bpe.model`` + ``meta.json``, atomically (``domains.cache``)."""
    arrays = {f"{split}_{name}": getattr(getattr(data, split), name) for split in ("train", "valid")
              for name in _ARRAYS}
    meta = {"key": data.key, "vocab_size": data.vocab_size, "valid_refs": data.valid_refs, "report": data.report}
    save_arrays({"permutation": data.permutation, **arrays}, folder, meta, files={BPE_FILE: data.spm_model})


def load_nmt_data(folder: Path) -> NMTData | None:
    """The cached ``NMTData`` in ``folder``, or None when absent or incomplete."""
    return load_arrays(folder, lambda arrays, meta: NMTData(
        train=Split(*(arrays[f"train_{n}"] for n in _ARRAYS)), valid=Split(*(arrays[f"valid_{n}"] for n in _ARRAYS)),
        permutation=arrays["permutation"], valid_refs=tuple(meta["valid_refs"]),
        spm_model=(folder / BPE_FILE).read_bytes(), vocab_size=meta["vocab_size"], report=meta["report"],
        key=meta["key"]))
