"""Billion-Word-style text as memory-mapped token arrays: the prepared corpus every LM trial maps.

The text is read and tokenized once per sweep (``domains.lm.tokenize_corpus``) into ``.npy`` arrays in the
sweep's cache. What trials receive (``LMData``) pickles as that folder's path and a few numbers, not the arrays:
Ray's object store carries a few hundred bytes whatever the corpus size, and a trial maps only the files it
reads (``numpy.load(mmap_mode="r")``), sharing their pages with every other trial on the node through the page
cache. The training arrays are stored in the order of the one shuffle of the training sentences, so the nested
shard of any fraction is a prefix of each stream and a trial touches only the pages its shard holds.

Conventions (chosen to match Hestness et al. 2017):

* words: whitespace split, ``</s>`` appended to every sentence (it is predicted, so it counts as a word in
  training sizes and in per-word cross-entropy); vocabulary = ``<unk>``, ``</s>`` and the most frequent
  ``vocab_size - 2`` training words (ties broken alphabetically), so ids are in frequency order (what an
  adaptive softmax needs); other words map to ``<unk>``;
* characters: the characters of each line plus ``"\\n"`` as the sentence boundary (counted as a character);
  characters seen fewer than ``min_char_count`` times in the training split map to one unknown id.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from domains.base import DataSourceError
from domains.shards import shard_count

UNK, EOS = "<unk>", "</s>"
UNK_ID, EOS_ID = 0, 1  # word ids of the two specials
UNK_CHAR_ID, BOUNDARY_CHAR_ID = 0, 1  # char ids of the unknown character and the sentence boundary
BOUNDARY = "\n"
MIN_TRAIN_SENTENCES = 10
FAMILIES = ("word", "char")

META_FILE = "meta.json"  # written last: its presence means the folder is complete
VOCAB_FILE = "vocab.json"
# name -> what it holds. Training arrays are in shuffle order: offsets[r] is where the r-th sentence of the
# shuffle starts, so the shard of the first k sentences is ids[:offsets[k]].
ARRAYS = {
    "word_ids": "training word ids, sentences in shuffle order",
    "word_offsets": "start of each shuffled sentence in word_ids (sentences + 1 entries)",
    "char_ids": "training char ids, sentences in shuffle order",
    "char_offsets": "start of each shuffled sentence in char_ids (sentences + 1 entries)",
    "permutation": "rank in the shuffle -> index of the sentence in file order (of the kept training split)",
    "valid_word_ids": "the validation word stream, already capped; the same for every shard",
    "valid_char_ids": "the validation char stream, already capped",
}


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


def id_dtype(vocab_size: int) -> type[np.integer]:
    """The smallest unsigned type that holds every id of a vocabulary (halves a large corpus on disk)."""
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.int32


class LMData:
    """A prepared corpus: the folder of its arrays and the few numbers a trial needs before mapping them.

    Pickling (Ray's object store, a spawned process) keeps only ``folder`` and ``meta``; the arrays are mapped
    again, read-only, on first use in the process that reads them. The folder must be reachable there: on a
    cluster, the sweep's storage (where the cache lives) on a shared file system.
    """

    def __init__(self, folder: str | os.PathLike[str], meta: Mapping[str, Any]) -> None:
        self.folder, self.meta = Path(folder), dict(meta)
        self._arrays: dict[str, np.ndarray] = {}
        self._vocab: dict[str, tuple[str, ...]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "meta": self.meta}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__init__(state["folder"], state["meta"])  # type: ignore[misc]

    def __getattr__(self, name: str) -> np.ndarray:
        """The named array (``ARRAYS``), memory-mapped read-only on first access."""
        if name not in ARRAYS:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        arrays = self.__dict__["_arrays"]
        if name not in arrays:
            path = self.__dict__["folder"] / f"{name}.npy"
            try:
                arrays[name] = np.load(path, mmap_mode="r")
            except OSError as exc:
                raise DataSourceError(f"prepared LM array {path} cannot be mapped ({exc.strerror or exc}); "
                                      "a trial must see the sweep's cache folder (shared storage)") from None
        return arrays[name]

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    @property
    def num_sentences(self) -> int:
        return int(self.meta["num_sentences"])

    @property
    def words(self) -> tuple[str, ...]:
        """Word id -> word (read from the cache on first use; trials need only ``vocab_size``)."""
        return self._vocabularies()["words"]

    @property
    def chars(self) -> tuple[str, ...]:
        """Char id -> character (``""`` = unknown, ``"\\n"`` = boundary)."""
        return self._vocabularies()["chars"]

    def _vocabularies(self) -> dict[str, tuple[str, ...]]:
        if self._vocab is None:
            vocab = json.loads((self.folder / VOCAB_FILE).read_text(encoding="utf-8"))
            self._vocab = {"words": tuple(vocab["words"]), "chars": tuple(vocab["chars"])}
        return self._vocab

    def vocab_size(self, family: str) -> int:
        return int(self._pick(family, self.meta["word_vocab"], self.meta["char_vocab"]))

    def shard_sentences(self, fraction: float) -> np.ndarray:
        """File-order indices of the nested shard's sentences, in shuffle order (smaller shards are prefixes)."""
        return self.permutation[: shard_count(self.num_sentences, fraction)]

    def shard_stream(self, fraction: float, family: str) -> np.ndarray:
        """The shard's sentences concatenated into one token stream: a prefix of the mapped array (no copy)."""
        ids, offsets = self._pick(family, ("word_ids", "word_offsets"), ("char_ids", "char_offsets"))
        return getattr(self, ids)[: int(getattr(self, offsets)[shard_count(self.num_sentences, fraction)])]

    def shard_tokens(self, fraction: float, family: str) -> int:
        """Tokens in the shard: words incl. one ``</s>`` per sentence, or characters incl. one boundary."""
        offsets = getattr(self, self._pick(family, "word_offsets", "char_offsets"))
        return int(offsets[shard_count(self.num_sentences, fraction)])

    def valid_stream(self, family: str) -> np.ndarray:
        return getattr(self, self._pick(family, "valid_word_ids", "valid_char_ids"))

    @staticmethod
    def _pick(family: str, word: Any, char: Any) -> Any:
        if family == "word":
            return word
        if family == "char":
            return char
        raise KeyError(f"LM family must be one of {FAMILIES}, got {family!r}")


def load_lm_data(folder: Path) -> LMData | None:
    """The prepared corpus in ``folder``, or None when absent, incomplete or of another layout."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not all((folder / f"{name}.npy").is_file() for name in ARRAYS) \
            or not (folder / VOCAB_FILE).is_file():
        return None
    return LMData(folder, meta)
