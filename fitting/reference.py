"""The paper's reference exponents, as plain data, for the comparison columns of tables and the service.

Sources: Hestness et al. 2017, "Deep Learning Scaling is Predictable, Empirically" (arXiv:1712.00409), and the
same authors' 2019 follow-up (arXiv:1909.01736) for ranges. β_g is the learning-curve exponent
(ε ∝ m^β_g); β_p the best-model-size exponent (s ∝ m^β_p). Every listed β_g is the slope of a pure power law
(``form="power"``), so compare it with the power-law slope over the fitted shards, not with β of a fit with a
floor γ (the NMT note gives the paper's floor-fit values).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Reference:
    """One published pair of exponents for a (domain, family, metric)."""

    domain: str
    family: str  # "*" for the domain's default
    metric: str  # "*" for any metric of the family
    beta_g: float
    beta_p: float | None
    source: str
    form: str = "power"  # the law β_g belongs to: the paper fits a pure power law over the power-law region

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_PAPER = "Hestness et al. 2017"
REFERENCES: tuple[Reference, ...] = (
    Reference("nmt", "*", "*", -0.128, 0.68,
              f"{_PAPER}, De→En LSTM+attention, per-token validation cross-entropy; single models with a "
              "floor γ gave −0.36 / −0.30"),
    Reference("lm", "word", "*", -0.066, 0.70,
              f"{_PAPER}, Billion Word word LMs (LSTM, RHN), validation cross-entropy; β_p ≈ 0.68–0.72"),
    Reference("lm", "char", "*", -0.094, 0.85,
              f"{_PAPER}, Billion Word char LM (RHN depth 10), bits/char: β_g −0.092…−0.095; "
              "β_p midpoint of 0.78–0.92"),
    Reference("image", "*", "top1", -0.309, 0.573, f"{_PAPER}, ImageNet ResNets, top-1 validation error"),
    Reference("image", "*", "top5", -0.488, 0.573, f"{_PAPER}, ImageNet ResNets, top-5 validation error"),
    Reference("speech", "*", "*", -0.299, 0.54,
              f"{_PAPER}, Deep Speech 2 and attention enc-dec (both ≈ −0.30), CER / min. validation loss"),
)

# Which entry stands for a domain when a family or metric is not listed.
_DEFAULTS = {"nmt": ("*", "*"), "lm": ("word", "*"), "image": ("*", "top1"), "speech": ("*", "*")}


def _family_key(domain: str, family: str) -> str:
    """Map a concrete family name onto a listed one ("char_rhn" → "char"); "*" when none fits."""
    name = family.lower()
    if domain == "lm":
        return "char" if "char" in name else "word"
    return "*"


def _metric_key(domain: str, metric: str | None) -> str:
    """Map a metric name onto a listed one ("val_top5_error" → "top5")."""
    name = (metric or "").lower().replace("-", "").replace("_", "")
    if domain == "image":
        return "top5" if "top5" in name else "top1"
    return "*"


def reference_for(domain: str, family: str, metric: str | None = None) -> Reference | None:
    """The paper's exponents for a (domain, family, metric), or None for a domain the paper did not cover.

    Unknown families fall back to the domain default (word LM for ``lm`` unless the name says "char"; any
    family for the other domains); for ``image`` a metric name containing "top5" selects top-5, else top-1.
    """
    dom = domain.lower()
    if dom not in _DEFAULTS:
        return None
    fam, met = _family_key(dom, family), _metric_key(dom, metric)
    for ref in REFERENCES:
        if ref.domain == dom and ref.family == fam and ref.metric == met:
            return ref
    fam, met = _DEFAULTS[dom]
    return next((r for r in REFERENCES if r.domain == dom and r.family == fam and r.metric == met), None)
