"""Shared tiny real-English text for the LM domain tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from domains.lm import LMDomain
from domains.lm.data import LMData

# Real English (the opening of the Python tutorial's "if" and "for" sections and a few proverbs), with
# rare words on purpose so vocabulary cut-offs matter.
TEXT = """The if statement is used for conditional execution .
It selects exactly one of the suites by evaluating the expressions one by one until one is found to be true .
If all expressions are false , the suite of the else clause , if present , is executed .
The for statement is used to iterate over the elements of a sequence .
The expression list is evaluated once ; it should yield an iterable object .
A break statement executed in the first suite terminates the loop without executing the else clause .
A continue statement executed in the first suite skips the rest of the suite .
The while statement is used for repeated execution as long as an expression is true .
The try statement specifies exception handlers and cleanup code for a group of statements .
The with statement is used to wrap the execution of a block with methods defined by a context manager .
Assert statements are a convenient way to insert debugging assertions into a program .
The pass statement is a null operation ; nothing happens when it is executed .
The del statement deletes names , attributes or items .
The return statement may only occur syntactically nested in a function definition .
The yield statement is semantically equivalent to a yield expression .
The raise statement raises an exception , optionally chained to another one .
The import statement finds a module , loads and initializes it if necessary .
The global statement is a declaration which holds for the entire current code block .
A zebra quietly jumped over the sleeping aardvark .
Every cloud has a silver lining , said the quartermaster ."""

SENTENCES = TEXT.splitlines()


def _write(path: Path, lines: list[str] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lines if isinstance(lines, str) else "".join(f"{s}\n" for s in lines), encoding="utf-8")
    return path


@pytest.fixture
def sentences() -> list[str]:
    return list(SENTENCES)


@pytest.fixture
def write_lines() -> Callable[[Path, list[str] | str], Path]:
    """Write lines (or raw text) to a file, creating folders."""
    return _write


@pytest.fixture
def data(tmp_path: Path, sentences: list[str], write_lines: Callable[..., Path]) -> LMData:
    """The LM domain's prepared data for these sentences: the first two for validation, the rest for training."""
    write_lines(tmp_path / "train.txt", sentences[2:])
    write_lines(tmp_path / "valid.txt", sentences[:2])
    domain = LMDomain()
    source = domain.source_model(train=str(tmp_path / "train.txt"), valid=str(tmp_path / "valid.txt"),
                                 min_char_count=1)
    return domain.prepare(source, tmp_path / "cache")
