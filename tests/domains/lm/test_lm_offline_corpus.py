"""The offline English corpus: Billion Word layout, deterministic, cached, usable by the LM domain."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from domains.base import TrialSetup
from domains.cache import MANIFEST
from domains.lm import LMDomain
from domains.lm.offline_corpus import TRAIN_GLOB, VALID_GLOB, is_sentence, tokenize, write_corpus


def lines_of(pattern: Path) -> list[str]:
    files = sorted(pattern.parent.glob(pattern.name))
    assert files, pattern
    return [line for f in files for line in f.read_text(encoding="utf-8").splitlines()]


def test_tokenize_like_billion_word() -> None:
    assert tokenize("Can't open '%s': No such file.") == "Can't open ' %s ' : No such file ."
    assert tokenize("use --no-rebase, or -v...") == "use --no-rebase , or -v ..."
    assert is_sentence("could not open file %s")
    assert not is_sentence("%s : %s")  # format-only
    assert not is_sentence("Cancel")  # a single label word
    assert not is_sentence("Файл не найден")  # not English


def test_corpus_layout_and_counts(corpus_dir: Path) -> None:
    train, valid = lines_of(corpus_dir / TRAIN_GLOB), lines_of(corpus_dir / VALID_GLOB)
    counts = json.loads((corpus_dir / MANIFEST).read_text())["counts"]
    assert len(train) == counts["train_sentences"] == 6000 and len(valid) == counts["valid_sentences"] == 600
    assert counts["train_words"] == sum(len(s.split()) for s in train)
    assert not set(train) & set(valid) and len(set(train)) == len(train)
    assert all(s and s == s.strip() and "  " not in s for s in train + valid)
    top = {w for w, _ in Counter(w for s in train for w in s.split()).most_common(30)}
    assert {"the", "to", "of", "is"} <= top  # English


def test_corpus_is_deterministic_and_not_rewritten(corpus_dir: Path, tmp_path: Path) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in corpus_dir.rglob("*") if p.is_file()}
    assert write_corpus(corpus_dir, max_sentences=6000, valid_sentences=600) == corpus_dir
    assert {p: p.stat().st_mtime_ns for p in corpus_dir.rglob("*") if p.is_file()} == stamps
    again = write_corpus(tmp_path, max_sentences=6000, valid_sentences=600)
    assert lines_of(again / TRAIN_GLOB) == lines_of(corpus_dir / TRAIN_GLOB)
    assert lines_of(again / VALID_GLOB) == lines_of(corpus_dir / VALID_GLOB)


def test_word_model_learns_on_the_offline_corpus(corpus_dir: Path, tmp_path: Path) -> None:
    domain = LMDomain()
    source = domain.source_model(train=str(corpus_dir / TRAIN_GLOB), valid=str(corpus_dir / VALID_GLOB),
                                 vocab_size=1000, max_valid_words=1000, max_valid_chars=4000)
    data = domain.prepare(source, tmp_path)
    sizes = [domain.train_size(data, 2.0**k, "word") for k in range(-4, 1)]
    assert sizes == sorted(sizes) and sizes[-1] > 40000
    task = domain.build_task(data, TrialSetup(family="word", fraction=1.0, width=32,
                                              hparams={"batch_size": 16, "bptt": 16}, seed=0))
    before = task.evaluate()["val_xent"]
    task.train(60)
    after = task.evaluate()["val_xent"]
    assert math.isfinite(after) and after < before - 1.0, (before, after)
