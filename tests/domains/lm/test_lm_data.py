"""LM data: file errors, shared vocabularies, nested deterministic shards, sizes, held-out split, cache."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from domains.base import DataSourceError
from domains.lm import LMDomain
from domains.lm import domain as lm_domain
from domains.lm.data import ARRAYS, BOUNDARY, EOS, UNK, LMData

Writer = Callable[[Path, list[str] | str], Path]
FRACTIONS = [2.0**k for k in range(-4, 1)]


@pytest.fixture
def corpus(tmp_path: Path, sentences: list[str], write_lines: Writer) -> Path:
    """Two training files (with blank lines to skip) and one validation file."""
    write_lines(tmp_path / "train" / "news.en-00001-of-00002", ["", *sentences[:12], "   "])
    write_lines(tmp_path / "train" / "news.en-00002-of-00002", sentences[12:])
    write_lines(tmp_path / "valid" / "heldout", ["The if statement is used for loops .", "Nothing happens ."])
    return tmp_path


def prepare(root: Path, cache: Path | None = None, **data: object) -> LMData:
    settings = {"train": str(root / "train" / "news.en-*"), "valid": str(root / "valid" / "heldout"), **data}
    domain = LMDomain()
    return domain.prepare(domain.source_model(**settings), cache or root / "cache")


@pytest.mark.parametrize("spec", ["nowhere/*.txt", "missing-file.txt", "train/*.missing"])
def test_missing_paths_raise_naming_the_spec(corpus: Path, spec: str) -> None:
    with pytest.raises(DataSourceError, match=r"matches no files") as err:
        prepare(corpus, train=str(corpus / spec))
    assert str(corpus / spec) in str(err.value)


def test_empty_file_raises_naming_it(corpus: Path, write_lines: Writer) -> None:
    empty = write_lines(corpus / "train" / "news.en-00003-of-00003", "\n  \n\n")
    with pytest.raises(DataSourceError, match="no non-empty lines") as err:
        prepare(corpus)
    assert str(empty) in str(err.value)


def test_non_utf8_file_raises_naming_file_and_line(corpus: Path) -> None:
    bad = corpus / "valid" / "heldout"
    bad.write_bytes(b"The first line is fine .\n" + "Caf\u00e9 in Latin-1 .\n".encode("latin-1"))
    with pytest.raises(DataSourceError, match="not UTF-8") as err:
        prepare(corpus)
    assert str(bad) in str(err.value) and "line 2" in str(err.value)


def test_too_few_sentences_raise(tmp_path: Path, sentences: list[str], write_lines: Writer) -> None:
    write_lines(tmp_path / "train" / "news.en-00001", sentences[:4])
    with pytest.raises(DataSourceError, match="at least 10") as err:
        prepare(tmp_path, valid=None)
    assert "news.en-*" in str(err.value)


def test_directory_and_single_file_sources(corpus: Path, sentences: list[str]) -> None:
    by_dir = prepare(corpus, cache=corpus / "c1", train=str(corpus / "train"))
    by_glob = prepare(corpus, cache=corpus / "c2")
    assert by_dir.num_sentences == by_glob.num_sentences == len(sentences)
    single = prepare(corpus, cache=corpus / "c3", train=str(corpus / "train" / "news.en-00001-of-00002"))
    assert single.num_sentences == 12


def test_word_vocabulary_is_built_once_on_the_full_training_split(corpus: Path, sentences: list[str]) -> None:
    data = prepare(corpus, vocab_size=30)
    counts = Counter(w for s in sentences for w in s.split())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:28]
    assert data.words == (UNK, EOS, *(w for w, _ in ranked))
    index = {w: i for i, w in enumerate(data.words)}
    # every shard is encoded with that one vocabulary: decoding a shard gives back its sentences
    for f in FRACTIONS:
        expected = [index.get(w, 0) for i in data.shard_sentences(f) for w in (*sentences[i].split(), EOS)]
        assert data.shard_stream(f, "word").tolist() == expected
    # a frequent word outside the smallest shard is still in the vocabulary
    small = {w for i in data.shard_sentences(FRACTIONS[0]) for w in sentences[i].split()}
    assert set(data.words[2:]) - small


def test_char_vocabulary_and_unknown_characters(corpus: Path, sentences: list[str]) -> None:
    data = prepare(corpus, min_char_count=2)
    counts = Counter("".join(sentences))
    assert data.chars[:2] == ("", BOUNDARY)
    assert set(data.chars[2:]) == {c for c, k in counts.items() if k >= 2}
    assert counts["E"] == 1 and "E" not in data.chars  # "Every": the only capital E -> unknown
    stream = data.shard_stream(1.0, "char")
    order = data.shard_sentences(1.0)
    text = "".join(sentences[i] + "\n" for i in order)
    index = {c: i for i, c in enumerate(data.chars) if c}
    assert stream.tolist() == [index.get(c, 0) for c in text]


def test_lowercase_applies_to_both_vocabularies(corpus: Path) -> None:
    data = prepare(corpus, lowercase=True, min_char_count=1)
    assert "The" not in data.words and "the" in data.words
    assert not any(c.isupper() for c in data.chars)


def test_shards_are_nested_and_deterministic(corpus: Path, sentences: list[str]) -> None:
    a = prepare(corpus, cache=corpus / "a", shuffle_seed=3)
    b = prepare(corpus, cache=corpus / "b", shuffle_seed=3)
    c = prepare(corpus, cache=corpus / "c", shuffle_seed=4)
    assert np.array_equal(a.permutation, b.permutation)
    assert not np.array_equal(a.permutation, c.permutation)
    assert sorted(a.permutation.tolist()) == list(range(len(sentences)))
    for family in ("word", "char"):
        for small, large in itertools.pairwise(FRACTIONS):
            assert set(a.shard_sentences(small)) < set(a.shard_sentences(large))
            s, big = a.shard_stream(small, family), a.shard_stream(large, family)
            assert np.array_equal(big[: len(s)], s)  # the smaller shard's stream is a prefix
        assert np.array_equal(a.shard_stream(0.25, family), b.shard_stream(0.25, family))


def test_train_size_is_monotone_and_counts_tokens(corpus: Path, sentences: list[str]) -> None:
    domain = LMDomain()
    data = prepare(corpus)
    for family, count in (("word", lambda s: len(s.split()) + 1), ("char", lambda s: len(s) + 1)):
        sizes = [domain.train_size(data, f, family) for f in FRACTIONS]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
        for f, size in zip(FRACTIONS, sizes, strict=True):
            assert size == sum(count(sentences[i]) for i in data.shard_sentences(f))
            assert size == len(data.shard_stream(f, family))
    assert domain.train_size(data, 1.0, "word") == sum(len(s.split()) + 1 for s in sentences)
    assert domain.unit_for("word") == "words" and domain.unit_for("char") == "characters"


def test_heldout_split_overlaps_no_shard(tmp_path: Path, sentences: list[str], write_lines: Writer) -> None:
    lines = [f"{s} ({i})" for i, s in enumerate(sentences * 5)]  # 100 distinct sentences
    write_lines(tmp_path / "train" / "news.en-00001", lines)
    data = prepare(tmp_path, valid=None, valid_fraction=0.1, vocab_size=1000, min_char_count=1)
    assert data.num_sentences == 90
    valid_text = "".join(data.chars[i] for i in data.valid_char_ids)
    train_text = "".join(data.chars[i] for i in data.char_ids)
    held_out = [s for s in lines if f"{s}\n" in valid_text]
    assert len(held_out) == 10 and not any(f"{s}\n" in train_text for s in held_out)
    assert len(data.valid_char_ids) == sum(len(s) + 1 for s in held_out)


def test_validation_caps_and_subset(tmp_path: Path, sentences: list[str], write_lines: Writer) -> None:
    lines = [f"{s} ({i})" for i, s in enumerate(sentences * 5)]
    write_lines(tmp_path / "train" / "news.en-00001", lines)
    full = prepare(tmp_path, cache=tmp_path / "full", valid=None, max_valid_words=25, max_valid_chars=70,
                   min_char_count=1)
    assert len(full.valid_word_ids) == 25 and len(full.valid_char_ids) == 70
    sub = prepare(tmp_path, cache=tmp_path / "sub", valid=None, max_sentences=40, min_char_count=1)
    assert sub.num_sentences == 40
    # the subset's shards are the full split's small shards (same sentences, same order)
    decode = lambda d, f: "".join(d.chars[i] for i in d.shard_stream(f, "char"))  # noqa: E731
    assert decode(sub, 0.5) == decode(full, 20 / 95) and decode(sub, 1.0) == decode(full, 40 / 95)


def test_prepare_reuses_its_cache(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = prepare(corpus)
    [folder] = [p for p in (corpus / "cache").iterdir() if not p.name.startswith(".")]
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the text was read again")

    monkeypatch.setattr(lm_domain, "tokenize_corpus", no_reading)
    second = prepare(corpus)
    for name in ARRAYS:
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert (first.words, first.chars, first.key) == (second.words, second.chars, second.key)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp
    # other settings, or an edited file, are a different cache entry (and the text is read again)
    with pytest.raises(AssertionError, match="read again"):
        prepare(corpus, vocab_size=50)
    edited = corpus / "train" / "news.en-00002-of-00002"
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="read again"):
        prepare(corpus)
