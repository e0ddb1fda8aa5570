"""Billion-Word-style text to token arrays: reading, train/validation split, vocabularies, nested shards.

The text is read and tokenized once per sweep; what trials receive (``LMData``) is only numpy arrays and
short vocab lists, because it travels through Ray's object store. Both vocabularies are built once on the
whole training split so every shard, and every point of the learning curve, shares one tokenizer.

Conventions (chosen to match Hestness et al. 2017):

* words: whitespace split, ``</s>`` appended to every sentence (it is predicted, so it counts as a word in
  training sizes and in per-word cross-entropy); vocabulary = ``<unk>``, ``</s>`` and the most frequent
  ``vocab_size - 2`` training words (ties broken alphabetically); other words map to ``<unk>``;
* characters: the characters of each line plus ``"\\n"`` as the sentence boundary (counted as a character);
  characters seen fewer than ``min_char_count`` times in the training split map to one unknown id.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from domains.base import DataSourceError, check_split_sizes
from domains.cache import load_arrays, save_arrays
from domains.shards import shard_count, shard_permutation
from domains.text_files import read_utf8

UNK, EOS = "<unk>", "</s>"
UNK_ID, EOS_ID = 0, 1  # word ids of the two specials
UNK_CHAR_ID, BOUNDARY_CHAR_ID = 0, 1  # char ids of the unknown character and the sentence boundary
BOUNDARY = "\n"
MIN_TRAIN_SENTENCES = 10
FAMILIES = ("word", "char")


def resolve_files(spec: str | os.PathLike[str], what: str = "train") -> list[Path]:
    """Files named by a path, a directory (all non-hidden files below it) or a glob, sorted by path."""
    spec = os.path.expanduser(str(spec))
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in
                                                                         p.relative_to(path).parts)]
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    if not found:
        kind = "directory" if path.is_dir() else "path or glob"
        raise DataSourceError(f"LM {what} data: {kind} {spec!r} matches no files")
    return sorted(found)


def read_sentences(files: Sequence[Path], lowercase: bool = False) -> list[str]:
    """Non-empty stripped lines of UTF-8 files, in order. An unreadable, non-UTF-8 or empty file raises
    ``DataSourceError`` naming the file (and the line of the first bad byte): a truncated or mis-encoded
    shard is far more likely a mistake than intended."""
    sentences: list[str] = []
    for path in files:
        text = read_utf8(path, "LM data file")
        if lowercase:
            text = text.lower()
        lines = [s for s in (line.strip() for line in text.splitlines()) if s]
        if not lines:
            raise DataSourceError(f"LM data file {path} holds no text (no non-empty lines)")
        sentences.extend(lines)
    return sentences


def build_word_vocab(sentences: Sequence[str], vocab_size: int) -> list[str]:
    """``<unk>``, ``</s>``, then the ``vocab_size - 2`` most frequent words (ties alphabetical)."""
    counts = Counter(w for s in sentences for w in s.split())
    counts.pop(UNK, None)
    counts.pop(EOS, None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(0, vocab_size - 2)]
    return [UNK, EOS, *(w for w, _ in ranked)]


def build_char_vocab(sentences: Sequence[str], min_count: int) -> list[str]:
    """Unknown (``""``), boundary (``"\\n"``), then characters seen >= ``min_count`` times, by code point."""
    counts = Counter()
    for s in sentences:
        counts.update(s)
    counts.pop(BOUNDARY, None)
    return ["", BOUNDARY, *sorted(c for c, k in counts.items() if k >= min_count)]


def _id_dtype(vocab_size: int) -> type[np.integer]:
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.int32


def encode_words(sentences: Sequence[str], vocab: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Flat word ids (``</s>`` after each sentence) and sentence offsets (len = sentences + 1)."""
    index = {w: i for i, w in enumerate(vocab)}
    lengths = np.fromiter((len(s.split()) + 1 for s in sentences), dtype=np.int64, count=len(sentences))
    total = int(lengths.sum())
    ids = np.fromiter((index.get(w, UNK_ID) for s in sentences for w in (*s.split(), EOS)),
                      dtype=_id_dtype(len(vocab)), count=total)
    return ids, np.concatenate([[0], np.cumsum(lengths)])


def encode_chars(sentences: Sequence[str], vocab: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Flat char ids (boundary after each sentence) and sentence offsets (len = sentences + 1)."""
    lengths = np.fromiter((len(s) + 1 for s in sentences), dtype=np.int64, count=len(sentences))
    text = "".join(s + BOUNDARY for s in sentences)
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    uniq, inverse = np.unique(points, return_inverse=True)
    index = {c: i for i, c in enumerate(vocab) if c}
    lookup = np.array([index.get(chr(u), UNK_CHAR_ID) for u in uniq], dtype=_id_dtype(len(vocab)))
    return lookup[inverse.reshape(-1)], np.concatenate([[0], np.cumsum(lengths)])


def gather(ids: np.ndarray, offsets: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The sentences ``order`` concatenated in that order, as one stream."""
    starts, ends = offsets[order], offsets[np.asarray(order) + 1]
    lengths = ends - starts
    if lengths.sum() == 0:
        return ids[:0]
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return ids[np.arange(int(lengths.sum())) + shift]


@dataclass(frozen=True)
class LMData:
    """Everything a trial needs, as arrays: training sentences (file order), validation streams, shuffle."""

    word_ids: np.ndarray
    word_offsets: np.ndarray
    char_ids: np.ndarray
    char_offsets: np.ndarray
    valid_word_ids: np.ndarray  # one stream, already capped; the same for every shard
    valid_char_ids: np.ndarray
    permutation: np.ndarray  # the one shuffle of training sentences; shard(f) = its first shard_count
    words: tuple[str, ...]  # word id -> word
    chars: tuple[str, ...]  # char id -> character ("" = unknown, "\n" = boundary)
    key: str = ""  # cache key of the source this came from

    @property
    def num_sentences(self) -> int:
        return len(self.word_offsets) - 1

    def vocab_size(self, family: str) -> int:
        return len(self._pick(family, self.words, self.chars))

    def shard_sentences(self, fraction: float) -> np.ndarray:
        """Sentence indices of the nested shard, in shuffle order (so smaller shards are prefixes)."""
        return self.permutation[: shard_count(self.num_sentences, fraction)]

    def shard_stream(self, fraction: float, family: str) -> np.ndarray:
        """The shard's sentences concatenated into one token stream (word or char ids)."""
        ids, offsets = self._pick(family, (self.word_ids, self.word_offsets),
                                  (self.char_ids, self.char_offsets))
        return gather(ids, offsets, self.shard_sentences(fraction))

    def shard_tokens(self, fraction: float, family: str) -> int:
        """Tokens in the shard: words incl. one ``</s>`` per sentence, or characters incl. one boundary."""
        offsets = self._pick(family, self.word_offsets, self.char_offsets)
        idx = self.shard_sentences(fraction)
        return int((offsets[idx + 1] - offsets[idx]).sum())

    def valid_stream(self, family: str) -> np.ndarray:
        return self._pick(family, self.valid_word_ids, self.valid_char_ids)

    @staticmethod
    def _pick(family: str, word: Any, char: Any) -> Any:
        if family == "word":
            return word
        if family == "char":
            return char
        raise KeyError(f"LM family must be one of {FAMILIES}, got {family!r}")


def build_lm_data(train: Sequence[str], valid: Sequence[str], *, vocab_size: int, min_char_count: int,
                  shuffle_seed: int, max_sentences: int | None = None, max_valid_words: int | None = None,
                  max_valid_chars: int | None = None, key: str = "") -> LMData:
    """Tokenize a train/valid split into ``LMData``.

    ``max_sentences`` keeps a random subset of the training split (the first sentences of its shuffle, so
    the subset's shards are exactly the full split's small shards); vocabularies are built on what is kept.
    """
    permutation = shard_permutation(len(train), shuffle_seed)
    if max_sentences is not None and max_sentences < len(train):
        kept = permutation[:max_sentences]
        in_file_order = np.argsort(kept, kind="stable")
        train = [train[i] for i in kept[in_file_order]]
        permutation = np.argsort(in_file_order, kind="stable")  # r-th of the shuffle -> its new index
    check_split_sizes("LM", len(train), MIN_TRAIN_SENTENCES, len(valid), "sentences")
    words = build_word_vocab(train, vocab_size)
    chars = build_char_vocab(train, min_char_count)
    word_ids, word_offsets = encode_words(train, words)
    char_ids, char_offsets = encode_chars(train, chars)
    valid_words, valid_chars = _capped(valid, max_valid_words, 1), _capped(valid, max_valid_chars, 0)
    return LMData(word_ids=word_ids, word_offsets=word_offsets, char_ids=char_ids, char_offsets=char_offsets,
                  valid_word_ids=encode_words(valid_words, words)[0][:max_valid_words],
                  valid_char_ids=encode_chars(valid_chars, chars)[0][:max_valid_chars],
                  permutation=permutation.astype(np.int64), words=tuple(words), chars=tuple(chars), key=key)


def _capped(sentences: Sequence[str], cap: int | None, per_word: int) -> Sequence[str]:
    """The fewest leading sentences holding ``cap`` tokens (words when ``per_word``, else characters)."""
    if cap is None:
        return sentences
    total = 0
    for i, s in enumerate(sentences):
        total += len(s.split()) + 1 if per_word else len(s) + 1
        if total >= cap:
            return sentences[: i + 1]
    return sentences


_ARRAYS = ("word_ids", "word_offsets", "char_ids", "char_offsets", "valid_word_ids", "valid_char_ids",
           "permutation")
VOCAB_FILE = "vocab.json"


def save_lm_data(data: LMData, folder: Path) -> None:
    """Write ``data`` as ``arrays.npz`` + ``vocab.json`` atomically (``domains.cache.save_arrays``)."""
    save_arrays({name: getattr(data, name) for name in _ARRAYS}, folder,
                {"key": data.key, "words": data.words, "chars": data.chars}, meta_file=VOCAB_FILE)


def load_lm_data(folder: Path) -> LMData | None:
    """The cached ``LMData`` in ``folder``, or None when absent or incomplete."""
    return load_arrays(folder, lambda arrays, vocab: LMData(
        **{name: arrays[name] for name in _ARRAYS}, words=tuple(vocab["words"]), chars=tuple(vocab["chars"]),
        key=vocab["key"]), meta_file=VOCAB_FILE)
