"""Expand a validated spec into the exact list of trials, before Ray starts.

Planning ourselves (rather than letting Tune sample) makes ``scaling-sweep plan`` print the real trial table,
gives every trial a deterministic key (so results are idempotent across restarts), and lets a resumed sweep
skip what is already stored. Random hyperparameters are drawn per (family, width, sample index) from the
spec's seed, so the same configurations are tried on every shard: shard-to-shard differences are data, not
luck of the draw.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from domains.base import Domain
from domains.registry import UnknownDomainError, get_domain
from orchestrator.budgets import asha_rungs, shard_budget
from orchestrator.contract import TrialPlan, TrialStopping
from orchestrator.spec import (
    Budget,
    Choice,
    DomainSpec,
    Grid,
    LogUniform,
    SpecError,
    SweepSpec,
    Uniform,
    format_validation_error,
)


@dataclass(frozen=True)
class ResolvedDomain:
    """A domain of the spec, checked against its plugin."""

    name: str
    spec: DomainSpec
    plugin: Domain
    source: BaseModel


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def resolve_domains(spec: SweepSpec) -> dict[str, ResolvedDomain]:
    """Check every domain, family, hyperparameter name and data section against the installed plugins."""
    problems: list[str] = []
    resolved: dict[str, ResolvedDomain] = {}
    for name, dspec in spec.domains.items():
        try:
            plugin = get_domain(name)
        except UnknownDomainError as exc:
            problems.append(f"  domains.{name}: {exc}")
            continue
        try:
            source = plugin.source_model.model_validate(dspec.data)
        except ValidationError as exc:
            detail = format_validation_error(exc, "").split("\n", 1)[1]
            problems.append("\n".join(f"  domains.{name}.data.{line.strip()}" for line in detail.splitlines()))
            source = None
        for family in dspec.family_specs():
            if family not in plugin.families:
                problems.append(f"  domains.{name}.families: unknown family {family!r}; "
                                f"allowed: {', '.join(sorted(plugin.families))}")
                continue
            allowed = plugin.hparam_defaults(family)
            for hp in dspec.hparams_for(family):
                if hp not in allowed:
                    problems.append(f"  domains.{name}.hparams.{hp}: not a hyperparameter of {name}/{family}; "
                                    f"allowed: {', '.join(sorted(allowed))}")
            if not dspec.widths_for(family):
                problems.append(f"  domains.{name}.widths: no widths given for family {family!r}")
        metric = dspec.early_stopping.metric
        if metric != "primary":
            for family in dspec.family_specs():
                info = plugin.families.get(family)
                if info is not None and metric not in info.metrics:
                    problems.append(f"  domains.{name}.early_stopping.metric: {family!r} does not report "
                                    f"{metric!r}; allowed: primary, {', '.join(sorted(info.metrics))}")
        if source is not None:
            resolved[name] = ResolvedDomain(name, dspec, plugin, source)
    if problems:
        raise SpecError(f"invalid sweep spec {spec.name!r}:\n" + "\n".join(problems))
    return resolved


def _expand_hparams(space: Mapping[str, Any], samples: int, rng: random.Random) -> list[dict[str, Any]]:
    """Cartesian product of grid axes × ``samples`` draws of the random ones (one draw if none are random)."""
    grid_axes = {k: v.grid for k, v in space.items() if isinstance(v, Grid)}
    fixed = {k: v for k, v in space.items() if not isinstance(v, Grid | Choice | LogUniform | Uniform)}
    randoms = {k: v for k, v in space.items() if isinstance(v, Choice | LogUniform | Uniform)}
    draws: list[dict[str, Any]] = []
    for _ in range(samples if randoms else 1):
        draw = {}
        for k, v in sorted(randoms.items()):
            if isinstance(v, Choice):
                draw[k] = rng.choice(v.choice)
            elif isinstance(v, LogUniform):
                lo, hi = v.loguniform
                draw[k] = float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.4g}")
            else:
                draw[k] = float(f"{rng.uniform(*v.uniform):.4g}")
        draws.append(draw)
    names = sorted(grid_axes)
    configs = []
    for values in itertools.product(*(grid_axes[n] for n in names)):
        for draw in draws:
            configs.append({**fixed, **dict(zip(names, values, strict=True)), **draw})
    return configs


def _by_shard(rd: ResolvedDomain) -> bool:
    """Whether a domain's lengths depend on the shard (any of them in epochs or examples)."""
    es = rd.spec.early_stopping
    lengths = [es.grace_period] + [rd.spec.stopping_for(f)[n] for f in rd.spec.family_specs()
                                   for n in ("max_steps", "eval_every")]
    return any(isinstance(x, Budget) for x in lengths)


def plan_trials(spec: SweepSpec, domains: Mapping[str, ResolvedDomain],
                prepared: Mapping[str, Any] | None = None) -> list[TrialPlan]:
    """Every (domain × family × shard × width × configuration × seed) trial of the sweep.

    Each distinct configuration is checked by its domain first: a value no trial could train with fails the
    plan (naming domain, family and hyperparameter), not hundreds of trials later. With ``prepared`` (the domains'
    prepared data) every trial gets its shard's ``train_size`` and budgets in epochs or examples become steps of
    the real shard; without it, of the spec's ``planning.train_examples`` (placeholders when unstated). Trial
    keys never depend on the data."""
    trials: list[TrialPlan] = []
    graces: list[int] = []  # each trial's own ASHA grace period in steps (its shard's), for _group_rungs
    problems: dict[str, None] = {}  # ordered set: one line per distinct problem
    for name, rd in domains.items():
        dspec, plugin = rd.spec, rd.plugin
        data = prepared.get(name) if prepared is not None else None
        es = dspec.early_stopping
        for family in dspec.family_specs():
            info = plugin.family(family)
            metric = info.metric if es.metric == "primary" else es.metric
            defaults = plugin.hparam_defaults(family)
            stop = dspec.stopping_for(family)
            decays = "decay_steps" in defaults and "decay_steps" not in dspec.hparams_for(family)
            for width in dspec.widths_for(family):
                rng = random.Random(f"{spec.seed}/{name}/{family}/{width}")
                configs = _expand_hparams(dspec.hparams_for(family), dspec.samples, rng)
                resources = dspec.resources.for_width(width)
                workers = dspec.resources.workers_for(width)
                threads = max(1, int(resources["cpu"]))
                for hp in configs:
                    hparams = {**defaults, **hp}
                    for fraction in dspec.fractions():
                        try:
                            budget = shard_budget(rd.spec, rd.plugin, family, fraction, hparams, data)
                            trial_hp = hparams
                            if decays:  # a schedule decays over the trial's budget unless told otherwise
                                trial_hp = {**hparams, "decay_steps": budget.max_steps}
                            plugin.check_hparams(family, trial_hp)
                        except (ValueError, TypeError) as exc:
                            problems[f"  domains.{name}.hparams ({family}): {exc}"] = None
                            break
                        stopping = TrialStopping(max_steps=budget.max_steps, eval_every=budget.eval_every,
                                                 patience=stop["patience"], min_delta=stop["min_delta"],
                                                 patience_after=budget.grace)
                        # the key names the budget as the spec gives it: the same trials whatever the data's size
                        key_hp = {**trial_hp, "decay_steps": _key_length(stop["max_steps"])} if decays else trial_hp
                        config_key = _digest([spec.name, name, family, fraction, width, key_hp])
                        train_size = plugin.train_size(data, fraction, family) if data is not None else None
                        for seed in range(spec.seed, spec.seed + dspec.seeds):
                            key = f"{name}-{family}-f{fraction:.6g}-w{width}-{config_key}-s{seed}"
                            trials.append(TrialPlan(
                                trial_key=key, config_key=config_key, sweep=spec.name, domain=name,
                                family=family, fraction=float(fraction), width=width, hparams=trial_hp,
                                seed=seed, metric=metric, primary_metric=info.metric,
                                size_unit=plugin.unit_for(family), stopping=stopping, threads=threads,
                                resources=resources, workers=workers, train_size=train_size))
                            graces.append(budget.grace)
    if problems:
        raise SpecError(f"invalid sweep spec {spec.name!r}:\n" + "\n".join(problems))
    return _group_rungs(trials, graces, domains)


def _key_length(length: int | Budget) -> int | str:
    return length if isinstance(length, int) else length.model_dump_json(exclude_none=True)


def _group_rungs(trials: list[TrialPlan], graces: list[int],
                 domains: Mapping[str, ResolvedDomain]) -> list[TrialPlan]:
    """Trials whose lengths depend on the shard carry their ASHA group's grace period and max_t in steps: the
    smallest grace and the longest budget of the group, so every trial of a group is judged at the same rungs."""
    by_shard = {name for name, rd in domains.items() if _by_shard(rd)}
    if not by_shard:
        return trials
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, t in enumerate(trials):
        if t.domain in by_shard:
            group_by = domains[t.domain].spec.early_stopping.group_by
            groups.setdefault((t.domain, *group_key(t, group_by)), []).append(i)
    out = list(trials)
    for members in groups.values():
        max_t = max(trials[i].stopping.max_steps for i in members)
        grace = max(1, min(min(graces[i] for i in members), max_t))
        for i in members:
            out[i] = replace(trials[i], stopping=replace(trials[i].stopping, asha_grace=grace, asha_max_t=max_t))
    return out


def group_key(plan: TrialPlan, fields: tuple[str, ...]) -> tuple[Any, ...]:
    """The ASHA group of a trial: trials compete only with trials sharing this key (``early_stopping.group_by``)."""
    values = {"domain": plan.domain, "family": plan.family, "fraction": plan.fraction, "width": plan.width,
              "config": plan.config_key}
    return tuple(values[f] for f in fields)


def _span(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if math.isclose(lo, hi, rel_tol=1e-6) else f"{lo:{fmt}}-{hi:{fmt}}"


def _rungs(t: TrialPlan, rd: ResolvedDomain, max_t: int) -> list[int]:
    """ASHA's rungs for the trial's group: its own when its budgets depend on the shard, else the sweep-wide ones
    (one scheduler per sweep: max_t is the longest budget of every domain)."""
    es = rd.spec.early_stopping
    if not es.enabled:
        return []
    if t.stopping.asha_grace is not None and t.stopping.asha_max_t is not None:
        return asha_rungs(t.stopping.asha_grace, t.stopping.asha_max_t, es.reduction_factor)
    return asha_rungs(es.grace_steps(), max_t, es.reduction_factor)


def format_plan(trials: list[TrialPlan], domains: Mapping[str, ResolvedDomain] | None = None,
                prepared: Mapping[str, Any] | None = None) -> str:
    """The trial table: per domain / family / shard the widths and trials, and (given the resolved ``domains``)
    the budget in steps and epochs, the first evaluation in epochs and ASHA's rungs; then each family's data
    and parameter spans and the paper rules the plan breaks (``orchestrator.plan_rules``)."""
    keys = sorted({(t.domain, t.family, t.fraction) for t in trials})
    rows: dict[tuple[str, str, float], list[TrialPlan]] = {k: [] for k in keys}
    for t in trials:
        rows[(t.domain, t.family, t.fraction)].append(t)
    head = f"{'domain':<8} {'family':<12} {'shard':>10} {'widths':<26} {'trials':>6}"
    lines = [head + (f" {'steps':>13} {'epochs':>11} {'1st eval ep':>11}  rungs (steps)" if domains else "")]
    for key, group in rows.items():
        ws = ",".join(str(w) for w in sorted({t.width for t in group}))
        line = f"{key[0]:<8} {key[1]:<12} {key[2]:>10.5g} {ws:<26} {len(group):>6}"
        if domains:
            rd = domains[key[0]]
            data = prepared.get(key[0]) if prepared is not None else None
            budgets = [shard_budget(rd.spec, rd.plugin, t.family, t.fraction, t.hparams, data) for t in group]
            steps = _span([t.stopping.max_steps for t in group], "d")
            if all(b.known for b in budgets):
                epochs = _span([b.epochs(t.stopping.max_steps) for b, t in zip(budgets, group, strict=True)], ".3g")
                first = _span([b.epochs(t.stopping.eval_every) for b, t in zip(budgets, group, strict=True)], ".3g")
            else:
                epochs = first = "?"
            max_t = max(d.spec.max_steps() for d in domains.values())
            rungs = ",".join(str(r) for r in _rungs(group[0], rd, max_t)) or "-"
            line += f" {steps:>13} {epochs:>11} {first:>11}  {rungs}"
        lines.append(line)
    per_domain = Counter(t.domain for t in trials)
    lines.append("")
    for domain, n in sorted(per_domain.items()):
        lines.append(f"{domain}: {n} trials")
    lines.append(f"total: {len(trials)} trials")
    if domains:
        lines += _rule_lines(trials, domains, prepared)
    return "\n".join(lines)


def _rule_lines(trials: list[TrialPlan], domains: Mapping[str, ResolvedDomain],
                prepared: Mapping[str, Any] | None) -> list[str]:
    from orchestrator.plan_rules import family_spans, violations  # torch: only when the rules are printed

    spans = family_spans(trials, domains, prepared)
    lines = ["", "spans per family (parameters without / with embeddings and softmax):"]
    for s in spans:
        data = f"data {s.fractions[0]:.4g}-{s.fractions[1]:.4g} = {s.decades:.2f} decades"
        if s.params:
            without = [p[1] for p in s.params.values()]
            with_ = [p[0] for p in s.params.values()]
            params = (f"params {min(without):.3g}-{max(without):.3g} = {s.span(False):.0f}x without, "
                      f"{min(with_):.3g}-{max(with_):.3g} = {s.span(True):.1f}x with")
        else:
            params = "params not counted"
        need = f"; needs >= {s.needed:.0f}x (beta_p {s.beta_p:g} + 0.2)" if s.needed is not None else ""
        lines.append(f"  {s.domain}/{s.family}: {data}; {params}{need}")
    broken = violations(trials, domains, spans, prepared)
    lines.append("")
    lines += ["paper rules: all hold"] if not broken else [f"RULE BROKEN: {v}" for v in broken]
    return lines
