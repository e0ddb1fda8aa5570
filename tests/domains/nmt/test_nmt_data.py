"""NMT data: both layouts, malformed corpora, dropped-pair counts, one shared tokenizer, nested shards, cache."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

from domains import registry
from domains.base import DataSourceError
from domains.cache import MANIFEST
from domains.nmt import NMTDomain
from domains.nmt import domain as nmt_domain
from domains.nmt.data import NMTData
from domains.nmt.offline_corpus import write_corpus
from orchestrator.cli import main as cli_main

Writer = Callable[[Path, list[str] | str], Path]
FRACTIONS = [2.0**k for k in range(-3, 1)]


@pytest.fixture
def corpus(tmp_path: Path, pairs: list[tuple[str, str]], write_lines: Writer) -> Path:
    """WMT layout: train.de/train.en and valid.de/valid.en."""
    write_lines(tmp_path / "train.de", [d for d, _ in pairs[2:]])
    write_lines(tmp_path / "train.en", [e for _, e in pairs[2:]])
    write_lines(tmp_path / "valid.de", [d for d, _ in pairs[:2]])
    write_lines(tmp_path / "valid.en", [e for _, e in pairs[:2]])
    return tmp_path


def prepare(root: Path, cache: Path | None = None, **data: object) -> NMTData:
    settings = {"train": str(root / "train"), "valid": str(root / "valid"), "vocab_size": 120, **data}
    domain = NMTDomain()
    return domain.prepare(domain.source_model(**settings), cache or root / "cache")


def decode(data: NMTData, split: str, side: str, i: int) -> str:
    s = getattr(data, split)
    ids, off = (s.src_ids, s.src_offsets) if side == "src" else (s.tgt_ids, s.tgt_offsets)
    return data.processor().decode(ids[off[i]:off[i + 1]].tolist())


def test_aligned_files_and_tsv_give_the_same_pairs(corpus: Path, pairs: list[tuple[str, str]],
                                                   write_lines: Writer) -> None:
    write_lines(corpus / "tsv" / "train.tsv", [f"{d}\t{e}" for d, e in pairs[2:]])
    aligned = prepare(corpus, cache=corpus / "c1")
    tsv = prepare(corpus, cache=corpus / "c2", train=str(corpus / "tsv" / "train.tsv"))
    by_dir = prepare(corpus, cache=corpus / "c3", train=str(corpus / "tsv"))
    for data in (aligned, tsv, by_dir):
        assert data.num_pairs == len(pairs) - 2
        got = [(decode(data, "train", "src", i), decode(data, "train", "tgt", i)) for i in range(data.num_pairs)]
        assert got == pairs[2:]  # German source, English target, file order
        assert data.valid_refs == tuple(e for _, e in pairs[:2])
    assert np.array_equal(aligned.train.tgt_ids, tsv.train.tgt_ids)
    both = prepare(corpus, cache=corpus / "c4", train=[str(corpus / "train"), str(corpus / "tsv" / "*.tsv")])
    assert both.num_pairs == 2 * (len(pairs) - 2)


def test_mismatched_line_counts_raise_naming_both_files(corpus: Path, write_lines: Writer) -> None:
    write_lines(corpus / "train.en", (corpus / "train.en").read_text().splitlines()[:-1])
    with pytest.raises(DataSourceError, match="not aligned") as err:
        prepare(corpus)
    assert "train.de has 18 lines" in str(err.value) and "train.en has 17" in str(err.value)


def test_u2028_inside_a_line_does_not_break_alignment(corpus: Path, write_lines: Writer) -> None:
    """str.splitlines would split this line in two and shift every later pair."""
    en = (corpus / "train.en").read_text().splitlines()
    en[3] = "The printer\u2028is not ready ."
    write_lines(corpus / "train.en", en)
    assert prepare(corpus).num_pairs == 18


@pytest.mark.parametrize(("name", "message"), [("missing", "names no parallel text"),
                                               ("only-source", "has no aligned file")])
def test_missing_files_raise(corpus: Path, write_lines: Writer, name: str, message: str) -> None:
    if name == "only-source":
        write_lines(corpus / "only-source.de", ["Hallo Welt ."])
    with pytest.raises(DataSourceError, match=message):
        prepare(corpus, train=str(corpus / name))


def test_non_utf8_file_raises_naming_file_and_line(corpus: Path) -> None:
    bad = corpus / "valid.de"
    bad.write_bytes(b"Erste Zeile .\n" + "Größe in Latin-1 .\n".encode("latin-1"))
    with pytest.raises(DataSourceError, match="not UTF-8") as err:
        prepare(corpus)
    assert str(bad) in str(err.value) and "line 2" in str(err.value)


def test_bad_pairs_are_dropped_counted_and_logged(corpus: Path, pairs: list[tuple[str, str]], write_lines: Writer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    rows = [f"{d}\t{e}" for d, e in pairs[2:]]
    rows[1] = "Nur eine Spalte"  # malformed: no tab
    rows[4] = f"{pairs[4][0]}\t   "  # empty target
    rows.append(" ".join(["Sehr"] * 100) + "\t" + " ".join(["very"] * 100) + " long .")  # over-long
    write_lines(corpus / "train.tsv", rows)
    with caplog.at_level(logging.WARNING, logger="domains.nmt.data"):
        data = prepare(corpus, train=str(corpus / "train.tsv"), max_tokens=80, max_dropped_fraction=0.25)
    report = data.report["train"]
    assert (report["read"], report["malformed"], report["empty"], report["too_long"]) == (19, 1, 1, 1)
    assert report["examples"]["malformed"] == ["train.tsv:2"] and report["examples"]["empty"] == ["train.tsv:5"]
    assert data.num_pairs == 16
    assert "19 pairs read, 17 used; dropped 1 empty (train.tsv:5)" in caplog.text
    assert "1 malformed (train.tsv:2)" in caplog.text and "1 too-long" in caplog.text
    # the same corpus with a strict threshold is malformed, and says why
    with pytest.raises(DataSourceError, match=r"looks malformed.*1 malformed"):
        prepare(corpus, cache=corpus / "strict", train=str(corpus / "train.tsv"), max_tokens=80,
                max_dropped_fraction=0.05)


def test_a_tsv_without_tabs_is_malformed(corpus: Path, pairs: list[tuple[str, str]], write_lines: Writer) -> None:
    write_lines(corpus / "train.tsv", [f"{d} | {e}" for d, e in pairs])
    with pytest.raises(DataSourceError, match="train split looks malformed: 20 pairs read; dropped 20 malformed"):
        prepare(corpus, train=str(corpus / "train.tsv"))


@pytest.fixture
def nmt_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``nmt`` entry point, added in-process when the installed package does not (yet) declare it."""
    found = registry.installed_domains()
    if "nmt" not in found:
        ep = EntryPoint(name="nmt", value="domains.nmt:NMTDomain", group=registry.ENTRY_POINT_GROUP)
        monkeypatch.setattr(registry, "installed_domains", lambda: {**found, "nmt": ep})


@pytest.mark.usefixtures("nmt_registered")
def test_malformed_corpus_fails_the_run_before_any_trial(corpus: Path, write_lines: Writer, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    write_lines(corpus / "valid.en", ["Only one line ."])
    spec = tmp_path / "sweep.yaml"
    spec.write_text(json.dumps({
        "name": "broken-nmt", "storage": str(tmp_path / "runs"),
        "domains": {"nmt": {"data": {"train": str(corpus / "train"), "valid": str(corpus / "valid"),
                                     "vocab_size": 100},
                            "families": ["lstm", "transformer"], "widths": [16], "shards": [0.5, 1.0],
                            "early_stopping": {"grace_period": 10, "max_steps": 20, "eval_every": 10}}}}))
    assert cli_main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "not aligned" in err and "valid.de has 2 lines" in err and "valid.en has 1" in err
    results = tmp_path / "runs" / "results"
    assert not results.exists() or not any(results.iterdir())  # no trial ran


def test_tokenizer_is_trained_once_on_the_training_split_and_shared(corpus: Path,
                                                                    pairs: list[tuple[str, str]]) -> None:
    data = prepare(corpus)
    sp = data.processor()
    assert data.vocab_size == sp.get_piece_size() <= 120
    train = pairs[2:]
    for f in FRACTIONS:  # every shard is encoded with that one model and decodes back to its pairs
        for i in data.shard_pairs(f):
            assert (decode(data, "train", "src", i), decode(data, "train", "tgt", i)) == train[i]
    # joint: pieces of both languages; learned on the whole split, not on a shard
    pieces = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
    assert {"▁The", "▁Die"} <= pieces
    smallest = {w for i in data.shard_pairs(FRACTIONS[0]) for w in " ".join(train[i]).split()}
    learned_elsewhere = [p for p in pieces if p.startswith("▁") and len(p) > 4 and p[1:] not in smallest
                         and any(p[1:] in " ".join(pair).split() for pair in train)]
    assert learned_elsewhere


def test_shards_are_nested_and_sizes_count_target_tokens(corpus: Path) -> None:
    domain = NMTDomain()
    a = prepare(corpus, cache=corpus / "a", shuffle_seed=3)
    b = prepare(corpus, cache=corpus / "b", shuffle_seed=3)
    c = prepare(corpus, cache=corpus / "c", shuffle_seed=4)
    assert np.array_equal(a.permutation, b.permutation) and not np.array_equal(a.permutation, c.permutation)
    assert sorted(a.permutation.tolist()) == list(range(a.num_pairs))
    for small, large in itertools.pairwise(FRACTIONS):
        s, big = a.shard_pairs(small), a.shard_pairs(large)
        assert np.array_equal(big[: len(s)], s)
    sizes = [domain.train_size(a, f, "lstm") for f in FRACTIONS]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    for f, size in zip(FRACTIONS, sizes, strict=True):
        idx = a.shard_pairs(f)
        assert size == sum(a.train.tgt_offsets[i + 1] - a.train.tgt_offsets[i] + 1 for i in idx)  # + </s>
    assert domain.train_size(a, 1.0, "transformer") == sizes[-1]
    assert domain.unit_for("lstm") == "target tokens"


def test_heldout_validation_overlaps_no_shard(tmp_path: Path, pairs: list[tuple[str, str]],
                                              write_lines: Writer) -> None:
    many = [(f"{d} ({i})", f"{e} ({i})") for i, (d, e) in enumerate(pairs * 5)]
    write_lines(tmp_path / "all.tsv", [f"{d}\t{e}" for d, e in many])
    data = prepare(tmp_path, train=str(tmp_path / "all.tsv"), valid=None, valid_fraction=0.1, bleu_pairs=50)
    assert data.num_pairs == 90 and len(data.valid) == 10
    train_targets = {decode(data, "train", "tgt", i) for i in range(data.num_pairs)}
    assert len(data.valid_refs) == 10 and not train_targets & set(data.valid_refs)
    assert data.report["valid"]["read"] == 10


def test_subset_and_validation_caps(tmp_path: Path, pairs: list[tuple[str, str]], write_lines: Writer) -> None:
    many = [(f"{d} ({i})", f"{e} ({i})") for i, (d, e) in enumerate(pairs * 5)]
    write_lines(tmp_path / "train.tsv", [f"{d}\t{e}" for d, e in many])
    write_lines(tmp_path / "valid.tsv", [f"{d}\t{e}" for d, e in many[:30]])
    data = prepare(tmp_path, train=str(tmp_path / "train.tsv"), valid=str(tmp_path / "valid.tsv"), max_pairs=40,
                   max_valid_pairs=12, bleu_pairs=5)
    assert data.num_pairs == 40 and len(data.valid) == 12 and data.valid_refs == tuple(e for _, e in many[:5])
    assert data.report["train"]["used"] == 40 and data.report["train"]["read"] == 100


def test_prepare_reuses_its_cache(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = prepare(corpus)
    [folder] = [p for p in (corpus / "cache").iterdir() if not p.name.startswith(".")]
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def no_reading(*args: object, **kwargs: object) -> list[tuple[str, str]]:
        raise AssertionError("the text was read again")

    monkeypatch.setattr(nmt_domain, "read_pairs", no_reading)
    second = prepare(corpus)
    assert np.array_equal(first.train.tgt_ids, second.train.tgt_ids)
    assert np.array_equal(first.permutation, second.permutation)
    assert (first.spm_model, first.valid_refs, first.key, first.report) == (second.spm_model, second.valid_refs,
                                                                            second.key, second.report)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp
    with pytest.raises(AssertionError, match="read again"):
        prepare(corpus, vocab_size=100)  # other settings: another cache entry
    edited = corpus / "train.en"
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="read again"):
        prepare(corpus)


def test_offline_corpus_is_german_to_english_and_deterministic(offline_de_en: Path, tmp_path: Path) -> None:
    counts = json.loads((offline_de_en / MANIFEST).read_text())["counts"]
    de = (offline_de_en / "train.de").read_text(encoding="utf-8").splitlines()
    en = (offline_de_en / "train.en").read_text(encoding="utf-8").splitlines()
    assert len(de) == len(en) == counts["train_pairs"] == 3000
    assert len((offline_de_en / "valid.en").read_text(encoding="utf-8").splitlines()) == 300
    assert all(d and e and d != e for d, e in zip(de, en, strict=True))
    words = lambda lines: {w.lower() for s in lines for w in s.split()}  # noqa: E731
    assert {"die", "der", "nicht", "ist"} <= words(de) and {"the", "not", "is", "file"} <= words(en)
    assert sum("ä" in s or "ö" in s or "ü" in s or "ß" in s for s in de) > 300
    stamps = {p: p.stat().st_mtime_ns for p in offline_de_en.iterdir()}
    assert write_corpus(offline_de_en, max_pairs=3000, valid_pairs=300) == offline_de_en
    assert {p: p.stat().st_mtime_ns for p in offline_de_en.iterdir()} == stamps  # found, not rewritten
    again = write_corpus(tmp_path, max_pairs=3000, valid_pairs=300)
    assert (again / "train.de").read_text() == (offline_de_en / "train.de").read_text()


def test_builtin_source_writes_the_offline_corpus_into_the_cache(tmp_path: Path) -> None:
    domain = NMTDomain()
    data = domain.prepare(domain.source_model(train="builtin:offline-de-en", max_pairs=500, vocab_size=300,
                                              max_valid_pairs=100, bleu_pairs=20), tmp_path)
    assert (tmp_path / "offline-de-en" / "train.de").is_file() and data.num_pairs <= 500
    assert len(data.valid_refs) == 20 and data.report["valid"]["read"] == 2000
    with pytest.raises(DataSourceError, match="German→English"):
        domain.prepare(domain.source_model(train="builtin:offline-de-en", source_lang="en", target_lang="de"),
                       tmp_path)
