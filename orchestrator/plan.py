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
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from domains.base import Domain
from domains.registry import UnknownDomainError, get_domain
from orchestrator.contract import TrialPlan, TrialStopping
from orchestrator.spec import (
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


def plan_trials(spec: SweepSpec, domains: Mapping[str, ResolvedDomain]) -> list[TrialPlan]:
    """Every (domain × family × shard × width × configuration × seed) trial of the sweep.

    Each distinct configuration is checked by its domain first: a value no trial could train with fails the
    plan (naming domain, family and hyperparameter), not hundreds of trials later."""
    trials: list[TrialPlan] = []
    problems: dict[str, None] = {}  # ordered set: one line per distinct problem
    for name, rd in domains.items():
        dspec, plugin = rd.spec, rd.plugin
        es = dspec.early_stopping
        for family in dspec.family_specs():
            info = plugin.family(family)
            metric = info.metric if es.metric == "primary" else es.metric
            defaults = plugin.hparam_defaults(family)
            stopping = TrialStopping(**dspec.stopping_for(family))
            if "decay_steps" in defaults:  # a schedule decays over the trial's budget unless told otherwise
                defaults = {**defaults, "decay_steps": stopping.max_steps}
            for width in dspec.widths_for(family):
                rng = random.Random(f"{spec.seed}/{name}/{family}/{width}")
                configs = _expand_hparams(dspec.hparams_for(family), dspec.samples, rng)
                resources = dspec.resources.for_width(width)
                workers = dspec.resources.workers_for(width)
                threads = max(1, int(resources["cpu"]))
                for hp in configs:
                    hparams = {**defaults, **hp}
                    try:
                        plugin.check_hparams(family, hparams)
                    except (ValueError, TypeError) as exc:
                        problems[f"  domains.{name}.hparams ({family}): {exc}"] = None
                        continue
                    for fraction in dspec.fractions():
                        config_key = _digest([spec.name, name, family, fraction, width, hparams])
                        for seed in range(spec.seed, spec.seed + dspec.seeds):
                            key = f"{name}-{family}-f{fraction:.6g}-w{width}-{config_key}-s{seed}"
                            trials.append(TrialPlan(
                                trial_key=key, config_key=config_key, sweep=spec.name, domain=name,
                                family=family, fraction=float(fraction), width=width, hparams=hparams, seed=seed,
                                metric=metric, primary_metric=info.metric, size_unit=plugin.unit_for(family),
                                stopping=stopping, threads=threads,
                                resources=resources, workers=workers))
    if problems:
        raise SpecError(f"invalid sweep spec {spec.name!r}:\n" + "\n".join(problems))
    return trials


def group_key(plan: TrialPlan, fields: tuple[str, ...]) -> tuple[Any, ...]:
    """The ASHA group of a trial: trials compete only with trials sharing this key (``early_stopping.group_by``)."""
    values = {"domain": plan.domain, "family": plan.family, "fraction": plan.fraction, "width": plan.width,
              "config": plan.config_key}
    return tuple(values[f] for f in fields)


def format_plan(trials: list[TrialPlan]) -> str:
    """The trial table: counts per domain / family / shard with the widths, and the total."""
    rows = Counter((t.domain, t.family, t.fraction) for t in trials)
    widths: dict[tuple[str, str, float], set[int]] = {}
    for t in trials:
        widths.setdefault((t.domain, t.family, t.fraction), set()).add(t.width)
    lines = [f"{'domain':<10} {'family':<12} {'shard':>10} {'widths':<24} {'trials':>7}"]
    for (domain, family, fraction), n in sorted(rows.items()):
        ws = ",".join(str(w) for w in sorted(widths[(domain, family, fraction)]))
        lines.append(f"{domain:<10} {family:<12} {fraction:>10.5g} {ws:<24} {n:>7}")
    per_domain = Counter(t.domain for t in trials)
    lines.append("")
    for domain, n in sorted(per_domain.items()):
        lines.append(f"{domain}: {n} trials")
    lines.append(f"total: {len(trials)} trials")
    return "\n".join(lines)
