"""The language-modeling domain. ``LMDomain`` is imported on first use, so the tokenizer's worker processes
(``domains.lm.tokenize_corpus``) start without importing torch."""

from __future__ import annotations

from typing import Any

__all__ = ["LMDomain"]


def __getattr__(name: str) -> Any:
    if name == "LMDomain":
        from domains.lm.domain import LMDomain

        return LMDomain
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
