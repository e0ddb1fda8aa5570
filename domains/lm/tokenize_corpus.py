"""Tokenizing a Billion-Word-layout corpus into the memory-mapped arrays of ``domains.lm.data``, file by file.

No step holds the corpus's text, or its tokens as Python objects, beyond one file at a time per process, and
the files are worked on in parallel processes (``workers``). Three passes over the text:

1. ``count``: each file's word and character counts (on the sentences kept for training), summed into the
   vocabularies, built once on the whole training split. Only when sentences are held out of the training files
   for validation, or a subset is kept (``max_sentences``), a cheaper ``scan`` for line counts comes first.
2. ``encode``: each file's word and char ids and sentence lengths, into per-file ``.npy`` parts.
3. ``place``: each file's training sentences copied from its parts to their place in the shuffled training
   arrays (opened as writable memory maps, one disjoint region per sentence); the validation stream is cut
   from the parts; the parts are removed.

The arrays equal what tokenizing the whole sentence lists at once gives (the tests check this on small corpora).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain, pairwise, repeat
from pathlib import Path
from typing import Any

import numpy as np

from domains.base import DataSourceError, check_split_sizes
from domains.lm.data import (
    ARRAYS,
    BOUNDARY,
    EOS,
    META_FILE,
    MIN_TRAIN_SENTENCES,
    UNK,
    UNK_CHAR_ID,
    UNK_ID,
    VOCAB_FILE,
    id_dtype,
)
from domains.shards import heldout_split, shard_permutation
from domains.text_files import read_utf8

CODE_POINTS = 0x110000
PARALLEL_MIN_BYTES = 16 << 20  # below this much text, starting worker processes costs more than it saves
PLACE_CHUNK = 1 << 16  # sentences placed per vectorized copy (bounds the index arrays' memory)


@dataclass(frozen=True)
class Settings:
    """What tokenization depends on (the LM data section's fields of the same names)."""

    vocab_size: int
    min_char_count: int
    lowercase: bool
    shuffle_seed: int
    valid_fraction: float
    max_sentences: int | None
    max_valid_words: int | None
    max_valid_chars: int | None


def read_lines(path: Path, lowercase: bool) -> list[str]:
    """Non-empty stripped lines of a UTF-8 file. An unreadable, non-UTF-8 or empty file raises
    ``DataSourceError`` naming the file (and the line of the first bad byte)."""
    text = read_utf8(path, "LM data file")
    if lowercase:
        text = text.lower()
    lines = [s for s in (line.strip() for line in text.splitlines()) if s]
    if not lines:
        raise DataSourceError(f"LM data file {path} holds no text (no non-empty lines)")
    return lines


def build_word_vocab(counts: Counter[str], vocab_size: int) -> list[str]:
    """``<unk>``, ``</s>``, then the ``vocab_size - 2`` most frequent words (ties alphabetical)."""
    counts = Counter({w: k for w, k in counts.items() if w not in (UNK, EOS)})
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(0, vocab_size - 2)]
    return [UNK, EOS, *(w for w, _ in ranked)]


def build_char_vocab(counts: np.ndarray, min_count: int) -> list[str]:
    """Unknown (``""``), boundary (``"\\n"``), then characters seen >= ``min_count`` times, by code point."""
    points = np.flatnonzero(counts >= min_count)
    return ["", BOUNDARY, *(chr(p) for p in points if chr(p) != BOUNDARY)]


def code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


# --- per-file work (runs in worker processes) ----------------------------------------------------------------
_tables: dict[str, Any] = {}  # this process's vocabularies, set once per pool by ``_set_tables``


def _set_tables(words: Sequence[str], chars: Sequence[str]) -> None:
    char_table = np.full(CODE_POINTS, UNK_CHAR_ID, dtype=id_dtype(len(chars)))
    for i, c in enumerate(chars):
        if c:
            char_table[ord(c)] = i
    _tables.update(index={w: i for i, w in enumerate(words)}, word_dtype=id_dtype(len(words)), chars=char_table)


def scan_file(path: Path, lowercase: bool) -> int:
    """Sentences in a file."""
    return len(read_lines(path, lowercase))


def count_file(path: Path, lowercase: bool, keep: np.ndarray | None) -> tuple[Counter[str], np.ndarray, np.ndarray]:
    """(word counts, code points seen, their counts) of a file's sentences where ``keep`` (all if None)."""
    lines = read_lines(path, lowercase)
    if keep is not None:
        lines = [s for s, k in zip(lines, keep, strict=True) if k]
    words = Counter(chain.from_iterable(map(str.split, lines)))
    chars = np.bincount(code_points("".join(lines)))
    seen = np.flatnonzero(chars)  # sparse: a dense table per file would be 9 MB through the pool
    return words, seen, chars[seen]


def encode_lines(lines: Sequence[str]) -> dict[str, np.ndarray]:
    """Word ids (``</s>`` after each sentence), char ids (boundary after each) and the sentences' lengths."""
    split = [s.split() for s in lines]
    word_lengths = np.fromiter(map(len, split), dtype=np.int64, count=len(split)) + 1
    for tokens in split:
        tokens.append(EOS)
    index = _tables["index"]
    word_ids = np.fromiter(map(index.get, chain.from_iterable(split), repeat(UNK_ID)), dtype=_tables["word_dtype"],
                           count=int(word_lengths.sum()))
    char_ids = _tables["chars"][code_points("".join(s + BOUNDARY for s in lines))]
    char_lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)) + 1
    return {"word_ids": word_ids, "word_lengths": word_lengths, "char_ids": char_ids, "char_lengths": char_lengths}


def encode_file(path: Path, lowercase: bool, out: Path) -> int:
    """Encode a file into ``out.<array>.npy`` parts; returns its sentence count."""
    parts = encode_lines(read_lines(path, lowercase))
    for name, array in parts.items():
        np.save(part_path(out, name), array)
    return len(parts["word_lengths"])


def part_path(out: Path, name: str) -> Path:
    return out.with_name(f"{out.name}.{name}.npy")


def place_file(out: Path, folder: Path, sel: np.ndarray, dest: dict[str, np.ndarray]) -> None:
    """Copy the file's sentences ``sel`` (local indices) to ``dest[stream][i]`` in the shuffled arrays."""
    for stream in ("word", "char"):
        ids = np.load(part_path(out, f"{stream}_ids"), mmap_mode="r")
        lengths = np.load(part_path(out, f"{stream}_lengths"))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        target = np.load(folder / f"{stream}_ids.npy", mmap_mode="r+")
        for lo in range(0, len(sel), PLACE_CHUNK):
            chunk = sel[lo:lo + PLACE_CHUNK]
            n = lengths[chunk]
            within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
            target[np.repeat(dest[stream][lo:lo + PLACE_CHUNK], n) + within] = \
                ids[np.repeat(starts[chunk], n) + within]
        del target  # unmapped without msync: the pages stay in the page cache; the driver syncs each file once


# --- the driver ----------------------------------------------------------------------------------------------
def auto_workers(files: Sequence[Path]) -> int:
    """Worker processes for a corpus: one per usable CPU (at most one per file, 16 at most); 1 for small corpora."""
    total = sum(p.stat().st_size for p in files)
    if total < PARALLEL_MIN_BYTES:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, len(files), 16))


class Runner:
    """Runs per-file calls in this process (``workers`` = 1) or in a pool of spawned processes (no fork: the
    caller may be a Ray driver with threads), each holding the vocabularies once."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None

    def imap(self, fn: Callable[..., Any], *args: Iterable[Any]) -> Iterator[Any]:
        """``fn`` over the argument lists, results in order as they come (so they can be merged one by one)."""
        if self.pool is None:
            return (fn(*a) for a in zip(*args, strict=True))
        return self.pool.map(fn, *args)

    def map(self, fn: Callable[..., Any], *args: Iterable[Any]) -> list[Any]:
        return list(self.imap(fn, *args))

    def set_tables(self, words: Sequence[str], chars: Sequence[str]) -> None:
        self.close()
        if self.workers == 1:
            _set_tables(words, chars)
        else:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_set_tables, initargs=(words, chars))

    def start(self) -> None:
        if self.workers > 1:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


def split_sentences(counts: Sequence[int], n_train_files: int, s: Settings) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """(global indices of the kept training sentences in shuffle order, validation indices in stream order,
    the shuffle as ranks -> file-order index among the kept ones). Global indices number the sentences of the
    training files, then of the validation files."""
    n_train = sum(counts[:n_train_files])
    if n_train_files == len(counts):  # validation held out of the training files
        train_idx, valid_idx = heldout_split(n_train, s.valid_fraction, s.shuffle_seed)
    else:
        train_idx, valid_idx = np.arange(n_train), np.arange(n_train, sum(counts))
    order = train_idx[shard_permutation(len(train_idx), s.shuffle_seed)]
    if s.max_sentences is not None:
        order = order[: s.max_sentences]
    check_split_sizes("LM", len(order), MIN_TRAIN_SENTENCES, len(valid_idx), "sentences")
    return order, valid_idx, np.searchsorted(np.sort(order), order)


def tokenize_corpus(train_files: Sequence[Path], valid_files: Sequence[Path], folder: Path, s: Settings,
                    meta: dict[str, Any], workers: int | None = None) -> None:
    """Write the prepared corpus of these files into ``folder`` (an empty folder; ``META_FILE`` last)."""
    files = [*train_files, *valid_files]
    workers = auto_workers(files) if workers is None else max(1, min(workers, len(files)))
    runner = Runner(workers)
    parts = folder / "parts"
    parts.mkdir()
    outs = [parts / f"{k:05d}" for k in range(len(files))]
    low = [s.lowercase] * len(files)
    try:
        runner.start()
        # a split that depends on line counts (held-out, subset) is known before counting; else after encoding
        counts = runner.map(scan_file, files, low) if not valid_files or s.max_sentences is not None else None
        split = split_sentences(counts, len(train_files), s) if counts is not None else None
        vocab = count_vocabularies(runner, train_files, s, None if split is None else
                                   kept_masks(split[0], counts[:len(train_files)]))  # type: ignore[index]
        runner.set_tables(vocab["words"], vocab["chars"])
        encoded = runner.map(encode_file, files, low, outs)
        counts = counts or encoded
        order, valid_idx, permutation = split or split_sentences(counts, len(train_files), s)
        lengths = {stream: np.concatenate([np.load(part_path(o, f"{stream}_lengths")) for o in outs])
                   for stream in ("word", "char")}
        place_training(runner, outs, counts, folder, order, lengths, vocab)
        bounds = np.cumsum([0, *counts])
        for stream, cap in (("word", s.max_valid_words), ("char", s.max_valid_chars)):
            np.save(folder / f"valid_{stream}_ids.npy", valid_stream(outs, bounds, valid_idx, lengths[stream],
                                                                     stream, cap))
        np.save(folder / "permutation.npy", permutation.astype(np.int64))
    finally:
        runner.close()
        shutil.rmtree(parts, ignore_errors=True)
    missing = [name for name in ARRAYS if not (folder / f"{name}.npy").is_file()]
    assert not missing, missing
    (folder / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    meta = {**meta, "num_sentences": len(order), "word_vocab": len(vocab["words"]), "char_vocab": len(vocab["chars"]),
            "train_words": int(lengths["word"][order].sum()), "train_chars": int(lengths["char"][order].sum())}
    (folder / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def kept_masks(order: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Per training file, which of its sentences are kept for training (the rest are held out or left out)."""
    mask = np.zeros(sum(counts), dtype=bool)
    mask[order] = True
    return [mask[a:b] for a, b in pairwise(np.cumsum([0, *counts]))]


def count_vocabularies(runner: Runner, train_files: Sequence[Path], s: Settings,
                       keep: list[np.ndarray] | None) -> dict[str, list[str]]:
    """Both vocabularies, from the kept training sentences' counts, merged file by file as they arrive."""
    words, chars = Counter(), np.zeros(CODE_POINTS, dtype=np.int64)
    masks = keep if keep is not None else [None] * len(train_files)
    for w, seen, c in runner.imap(count_file, train_files, [s.lowercase] * len(train_files), masks):
        words.update(w)
        chars[seen] += c
    return {"words": build_word_vocab(words, s.vocab_size), "chars": build_char_vocab(chars, s.min_char_count)}


def place_training(runner: Runner, outs: Sequence[Path], counts: Sequence[int], folder: Path, order: np.ndarray,
                   lengths: dict[str, np.ndarray], vocab: dict[str, list[str]]) -> None:
    """Create the shuffled training arrays and their offsets, and copy every file's kept sentences into them."""
    dest: dict[str, np.ndarray] = {}
    for stream, names in (("word", vocab["words"]), ("char", vocab["chars"])):
        offsets = np.concatenate([[0], np.cumsum(lengths[stream][order])])
        np.save(folder / f"{stream}_offsets.npy", offsets)
        np.lib.format.open_memmap(folder / f"{stream}_ids.npy", "w+", id_dtype(len(names)), (int(offsets[-1]),))
        dest[stream] = np.full(len(lengths[stream]), -1, dtype=np.int64)
        dest[stream][order] = offsets[:-1]
    sels, dests = [], []
    for a, b in pairwise(np.cumsum([0, *counts])):
        sel = np.flatnonzero(dest["word"][a:b] >= 0)
        sels.append(sel)
        dests.append({stream: dest[stream][a:b][sel] for stream in dest})
    runner.map(place_file, outs, [folder] * len(outs), sels, dests)
    for stream in ("word", "char"):
        sync_file(folder / f"{stream}_ids.npy")


def sync_file(path: Path) -> None:
    """Write a file's dirty pages to storage once (a shared file system then shows other nodes the whole file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def valid_stream(outs: Sequence[Path], bounds: np.ndarray, valid_idx: np.ndarray, lengths: np.ndarray,
                 stream: str, cap: int | None) -> np.ndarray:
    """The validation sentences in ``valid_idx`` order, as one stream cut to ``cap`` tokens: the fewest leading
    sentences that hold ``cap`` tokens, then cut."""
    if cap is not None:
        reach = np.cumsum(lengths[valid_idx])
        valid_idx = valid_idx[: int(np.searchsorted(reach, cap)) + 1]
    file_of = np.searchsorted(bounds, valid_idx, side="right") - 1
    pieces = []
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for g, k in zip(valid_idx.tolist(), file_of.tolist(), strict=True):
        if k not in cache:
            ids = np.load(part_path(outs[k], f"{stream}_ids"), mmap_mode="r")
            cache[k] = (ids, np.concatenate([[0], np.cumsum(np.load(part_path(outs[k], f"{stream}_lengths")))]))
        ids, starts = cache[k]
        j = g - int(bounds[k])
        pieces.append(np.asarray(ids[starts[j]:starts[j + 1]]))
    joined = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint8)
    return joined[:cap]
