"""Units of metrics, inferred from their names.

The results store records a metric's name but not its unit (the unit lives in the domain plugin, and loading a
plugin imports torch, which the service must not). Names follow the domains' conventions (``val_xent``,
``val_bpc``, ``val_top1_error``, ``val_cer``), so a short table of name patterns recovers the unit; an
unknown name has no unit (``None``) rather than a guess.
"""

from __future__ import annotations

# (substring of the normalized name, unit); first match wins, so specific patterns come first.
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("bpc", "bits/char"),
    ("bits", "bits"),
    ("ppl", "perplexity"),
    ("perplexity", "perplexity"),
    ("top5", "top-5 error rate (fraction)"),
    ("top1", "top-1 error rate (fraction)"),
    ("cer", "character error rate (fraction)"),
    ("wer", "word error rate (fraction)"),
    ("error", "error rate (fraction)"),
    ("err", "error rate (fraction)"),
    ("xent", "nats"),
    ("crossentropy", "nats"),
    ("nll", "nats"),
    ("loss", "nats"),
)

# Training-size unit (plural, as stored) -> what a cross-entropy in nats is counted per.
_PER = {"words": "word", "tokens": "token", "characters": "char", "chars": "char", "word pieces": "word piece",
        "subwords": "subword"}


def metric_unit(metric: str | None, size_unit: str | None = None) -> str | None:
    """The unit of ``metric`` ("nats/word" for ``val_xent`` of a word LM), or None when the name says nothing."""
    if not metric:
        return None
    name = metric.lower().replace("-", "").replace("_", "")
    for pattern, unit in _PATTERNS:
        if pattern in name:
            if unit == "nats" and size_unit and size_unit.lower() in _PER:
                return f"nats/{_PER[size_unit.lower()]}"
            return unit
    return None
