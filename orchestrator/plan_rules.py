"""What ``scaling-sweep plan`` checks before a sweep spends GPU-hours: budgets per shard and the spans of data and
model size a family's learning curve and model-size law need.

A shard point is only trustworthy when its best model reached its minimum, so the first evaluation must come
within one epoch of the shard (else a small shard may be past its minimum before it is first seen), and β_p can
only be measured when the widths span more model sizes than the best size moves over the data span: at the
paper's β_p the best size grows (data span)^β_p; the rule asks for a margin of 0.2 in the exponent. Parameters are
counted without embeddings and softmax (with them, small sequence models are mostly vocabulary tables), on models
built once per width by the domain on the meta device (no memory, no data).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from domains.parameters import count_parameters
from fitting.reference import reference_for
from orchestrator.budgets import shard_budget
from orchestrator.contract import TrialPlan

BETA_P_MARGIN = 0.2  # the parameter span must reach (data span)^(paper β_p + this)
MAX_FIRST_EVAL_EPOCHS = 1.0
LM_MIN_DECADES = 2.5  # issue 16: paper-lm spans >= 2.5 decades of data ...
LM_MIN_PARAM_SPAN = 100.0  # ... and >= 100x in non-embedding parameters per family


@dataclass(frozen=True)
class FamilySpan:
    """One family's data span (decades) and parameter spans (ratio largest/smallest width), with the rule's bar."""

    domain: str
    family: str
    fractions: tuple[float, float]
    params: dict[int, tuple[int, int]] | None  # width -> (with, without embeddings); None: not countable
    beta_p: float | None  # the paper's, for this family's primary metric

    @property
    def decades(self) -> float:
        return math.log10(self.fractions[1] / self.fractions[0])

    def span(self, embeddings: bool) -> float | None:
        if not self.params:
            return None
        counts = [p[0] if embeddings else p[1] for p in self.params.values()]
        return max(counts) / max(min(counts), 1)

    @property
    def needed(self) -> float | None:
        """The non-embedding parameter span the rule asks for: (data span)^(β_p + margin)."""
        if self.beta_p is None:
            return None
        return (self.fractions[1] / self.fractions[0]) ** (self.beta_p + BETA_P_MARGIN)


def _model_data(rd: Any, prepared: Any | None) -> Any | None:
    if prepared is not None:
        return prepared
    hints = rd.spec.planning.data if rd.spec.planning is not None else {}
    return rd.plugin.planning_data(rd.source, hints)


def count_widths(rd: Any, family: str, hparams_by_width: Mapping[int, Mapping[str, Any]],
                 prepared: Any | None = None) -> dict[int, tuple[int, int]] | None:
    """(with, without embeddings) parameters of each width's model, built once by the domain on the meta device;
    None when the domain cannot build one without its data."""
    build = getattr(rd.plugin, "build_model", None)
    data = _model_data(rd, prepared)
    if build is None or data is None:
        return None
    counts = {}
    for width, hparams in sorted(hparams_by_width.items()):
        hp = rd.plugin.hparams_for(family).resolve(hparams)
        with torch.device("meta"):
            model = build(data, width, hp)
        counts[width] = (count_parameters(model), count_parameters(model, embeddings=False))
    return counts


def family_spans(trials: list[TrialPlan], domains: Mapping[str, Any],
                 prepared: Mapping[str, Any] | None = None) -> list[FamilySpan]:
    """The data and parameter spans of every (domain, family) of the plan."""
    firsts: dict[tuple[str, str], dict[int, Mapping[str, Any]]] = {}
    fractions: dict[tuple[str, str], list[float]] = {}
    for t in trials:
        firsts.setdefault((t.domain, t.family), {}).setdefault(t.width, t.hparams)
        fractions.setdefault((t.domain, t.family), []).append(t.fraction)
    spans = []
    for (domain, family), by_width in sorted(firsts.items()):
        rd = domains[domain]
        data = prepared.get(domain) if prepared is not None else None
        ref = reference_for(domain, family, rd.plugin.family(family).metric)
        fr = fractions[(domain, family)]
        spans.append(FamilySpan(domain, family, (min(fr), max(fr)), count_widths(rd, family, by_width, data),
                                ref.beta_p if ref is not None else None))
    return spans


def first_eval_epochs(trials: list[TrialPlan], domains: Mapping[str, Any],
                      prepared: Mapping[str, Any] | None = None) -> dict[tuple[str, str, float], float]:
    """The latest first evaluation, in epochs of the shard, of each (domain, family, shard) (nan: size unknown)."""
    out: dict[tuple[str, str, float], float] = {}
    for t in trials:
        data = prepared.get(t.domain) if prepared is not None else None
        rd = domains[t.domain]
        budget = shard_budget(rd.spec, rd.plugin, t.family, t.fraction, t.hparams, data)
        epochs = budget.epochs(t.stopping.eval_every)
        key = (t.domain, t.family, t.fraction)
        out[key] = max(out.get(key, -math.inf), epochs) if not math.isnan(epochs) else math.nan
    return out


def violations(trials: list[TrialPlan], domains: Mapping[str, Any],
               spans: list[FamilySpan] | None = None, prepared: Mapping[str, Any] | None = None) -> list[str]:
    """The paper rules the plan breaks, one line each (empty: every rule holds)."""
    found = []
    unknown: dict[tuple[str, str], int] = {}
    for (domain, family, fraction), epochs in sorted(first_eval_epochs(trials, domains, prepared).items()):
        if math.isnan(epochs):
            unknown[(domain, family)] = unknown.get((domain, family), 0) + 1
        elif epochs > MAX_FIRST_EVAL_EPOCHS + 1e-9:
            found.append(f"{domain}/{family} shard {fraction:.6g}: first evaluation after {epochs:.3g} epochs "
                         f"> {MAX_FIRST_EVAL_EPOCHS:g}")
    for (domain, family), n in unknown.items():
        found.append(f"{domain}/{family}: first evaluation in epochs unknown on {n} shards (the shard sizes are: "
                     f"give domains.{domain}.planning.train_examples)")
    for s in spans if spans is not None else family_spans(trials, domains, prepared):
        span = s.span(embeddings=False)
        name = f"{s.domain}/{s.family}"
        if span is None:
            found.append(f"{name}: parameters not counted (the domain needs its data, or planning.data hints)")
            continue
        if s.needed is not None and span < s.needed:
            ratio = s.fractions[1] / s.fractions[0]
            found.append(f"{name}: non-embedding parameter span {span:.0f}x < (data span {ratio:.0f}x)^"
                         f"({s.beta_p:g} + {BETA_P_MARGIN:g}) = {s.needed:.0f}x")
        if s.domain == "lm":
            if s.decades < LM_MIN_DECADES - 1e-9:
                found.append(f"{name}: data spans {s.decades:.2f} decades < {LM_MIN_DECADES:g}")
            if span < LM_MIN_PARAM_SPAN:
                found.append(f"{name}: non-embedding parameter span {span:.0f}x < {LM_MIN_PARAM_SPAN:g}x")
    return found
