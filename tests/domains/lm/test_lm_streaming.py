"""The streamed corpus: parallel tokenizing equals one process, trials get paths not arrays, shards map prefixes."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from domains.base import DataSourceError, TrialSetup
from domains.lm import LMDomain
from domains.lm.data import ARRAYS, EOS, LMData
from domains.lm.offline_corpus import TRAIN_DIR, TRAIN_GLOB, VALID_DIR, VALID_GLOB

Writer = Callable[[Path, list[str] | str], Path]


@pytest.fixture
def layout(tmp_path: Path, sentences: list[str], write_lines: Writer) -> Path:
    """A tiny Billion Word layout: 3 training files (120 distinct sentences) and a held-out file."""
    lines = [f"{s} ({i})" for i, s in enumerate(sentences * 6)]
    for k in range(3):
        write_lines(tmp_path / TRAIN_DIR / f"news.en-{k + 1:05d}-of-00003", ["", *lines[k * 40:(k + 1) * 40]])
    write_lines(tmp_path / VALID_DIR / "news.en.heldout-00000-of-00001", sentences[:3])
    return tmp_path


def prepare(root: Path, cache: str, **settings: object) -> LMData:
    domain = LMDomain()
    spec = {"train": str(root / TRAIN_GLOB), "valid": str(root / VALID_GLOB), "min_char_count": 1, **settings}
    return domain.prepare(domain.source_model(**spec), root / cache)


def test_parallel_tokenizing_equals_one_process(layout: Path) -> None:
    """Two spawned tokenizer processes, on every pass (line scan, counts on a held-out and subset split, encode,
    placing), write the same bytes as one process."""
    settings = {"valid": None, "valid_fraction": 0.1, "max_sentences": 70}
    one = prepare(layout, "one", prepare_workers=1, **settings)
    two = prepare(layout, "two", prepare_workers=2, **settings)
    assert one.key == two.key  # the worker count is not part of the cache key
    for name in ARRAYS:
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert (one.words, one.chars) == (two.words, two.chars)


def test_training_arrays_are_in_shuffle_order(layout: Path) -> None:
    """Shard streams are prefixes of the stored arrays, and decode to the shuffled sentences."""
    data = prepare(layout, "c")
    lines = [s for k in range(3) for s in
             (layout / TRAIN_DIR / f"news.en-{k + 1:05d}-of-00003").read_text().splitlines() if s]
    for fraction in (0.125, 0.5, 1.0):
        stream = data.shard_stream(fraction, "word")
        assert isinstance(stream.base, np.memmap) or isinstance(stream, np.memmap)
        words = [data.words[i] for i in stream]
        expected = [w for i in data.shard_sentences(fraction) for w in (*lines[i].split(), EOS)]
        assert words == expected
    assert data.meta["train_words"] == len(data.word_ids) == sum(len(s.split()) + 1 for s in lines)


def test_pickled_data_carries_paths_not_arrays(layout: Path) -> None:
    data = prepare(layout, "c")
    blob = pickle.dumps(data)
    assert len(blob) < 1000 and len(blob) < data.word_ids.nbytes + data.char_ids.nbytes
    copy = pickle.loads(blob)
    assert copy._arrays == {}  # nothing mapped until a trial reads it
    for name in ARRAYS:
        assert np.array_equal(getattr(copy, name), getattr(data, name))
    assert isinstance(copy.word_ids, np.memmap) and not copy.word_ids.flags.writeable
    assert copy.words == data.words and copy.vocab_size("char") == len(data.chars)


def test_a_trial_without_the_cache_folder_names_it(layout: Path, tmp_path: Path) -> None:
    data = prepare(layout, "c")
    moved = pickle.loads(pickle.dumps(data))
    moved.folder = tmp_path / "elsewhere"
    setup = TrialSetup(family="word", fraction=1.0, width=8, hparams={}, seed=0)
    with pytest.raises(DataSourceError, match=r"elsewhere.*shared storage"):
        LMDomain().build_task(moved, setup)
