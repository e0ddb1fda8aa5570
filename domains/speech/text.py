"""Transcripts as character ids, greedy CTC decoding and error rates (CER, WER).

Characters, not word pieces, are the output units of both families (as in Deep Speech 2 and LAS). Id 0 is
reserved: it is the CTC blank for the CTC family and the end-of-sentence token for the attention decoder;
character ``alphabet[i]`` has id ``i + 1``. Transcripts are lowercased and characters outside the alphabet
are dropped (LibriSpeech transcripts are upper-case letters, apostrophes and spaces: nothing is dropped).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchaudio.functional import edit_distance

DEFAULT_ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"
BLANK = 0  # CTC blank / attention end-of-sentence


def normalize(text: str, alphabet: str = DEFAULT_ALPHABET) -> str:
    """Lowercase, keep alphabet characters only, collapse runs of spaces (a space is the word boundary)."""
    allowed = set(alphabet)
    kept = "".join(c for c in text.lower() if c in allowed)
    return " ".join(kept.split()) if " " in allowed else kept


def encode(text: str, alphabet: str = DEFAULT_ALPHABET) -> np.ndarray:
    """Character ids (1-based) of an already normalized transcript."""
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    return np.fromiter((index[c] for c in text), dtype=np.int16, count=len(text))


def decode(ids: Sequence[int] | np.ndarray | torch.Tensor, alphabet: str = DEFAULT_ALPHABET) -> str:
    """The string of character ids; id 0 (blank / end) and out-of-range ids are skipped."""
    values = ids.tolist() if isinstance(ids, np.ndarray | torch.Tensor) else ids
    return "".join(alphabet[i - 1] for i in values if 0 < i <= len(alphabet))


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor | Sequence[int],
               alphabet: str = DEFAULT_ALPHABET) -> list[str]:
    """Best-path CTC decoding of (batch, time, classes) scores: argmax per frame, merge repeats, drop blanks."""
    best = log_probs.argmax(dim=-1).cpu()
    out = []
    for row, n in zip(best, lengths, strict=True):
        path = torch.unique_consecutive(row[: int(n)])
        out.append(decode(path[path != BLANK], alphabet))
    return out


def error_counts(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[int, int, int, int]:
    """(character edits, reference characters, word edits, reference words) summed over utterances."""
    char_edits = char_total = word_edits = word_total = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        char_edits += edit_distance(ref, hyp)
        char_total += len(ref)
        ref_words = ref.split()
        word_edits += edit_distance(ref_words, hyp.split())
        word_total += len(ref_words)
    return char_edits, char_total, word_edits, word_total


def cer(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus character error rate: Levenshtein edits over reference characters (spaces count)."""
    edits, total, _, _ = error_counts(hypotheses, references)
    return edits / max(total, 1)


def wer(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus word error rate: word-level Levenshtein edits over reference words."""
    _, _, edits, total = error_counts(hypotheses, references)
    return edits / max(total, 1)
