"""Which planned trial to run next, chosen by what it does to the exponents' intervals per unit of compute.

Pure Python (no Ray): the searcher (``orchestrator.adaptive.searcher``) feeds it finished trials and asks it for
the next one. Why this order of moves:

1. **A small design across the whole shard range** (``initial_shards`` shards from the smallest to the largest,
   the middle width and middle configuration): the learning curve's slope is pinned by its ends.
2. **Bracketing before variance.** A shard's point is the best configuration there; if that best sits at the edge
   of the widths (or of a numeric hyperparameter's values) tried at that shard, the point is biased, not noisy,
   and β_p is censored. The neighbour past the edge is run first (from the planned grid, or the spec's
   ``extra_widths``). Nothing else is trusted until every point is bracketed or the grid has no neighbour left.
3. **Expected reduction of the interval per unit of compute.** Each shard point is modelled as the fit sees it,
   log ε_i = a + β_g·log m_i + e_i with Var(e_i) = τ² + σ_t²/k_i (τ: noise shared by a shard, σ_t: trial noise
   estimated from seeds of one configuration, k_i: seeds of the best configuration), so the slope's half-width is
   t_{n−2}·sqrt(Σ(x_i − x̄)²·Var(e_i))/Sxx. A move is a new shard point (its predicted-best width and its
   bracketing neighbours) or one more seed of a shard's best configuration; the one with the largest predicted
   relative narrowing per unit of predicted cost runs. β_p is a regression on the same log m design, so the same
   ranking serves its target.

The sweep stops when every family meets its target (with every point bracketed), when the budget is spent or the
next useful trial would overspend it, or when the grid has nothing left that narrows the interval; ``stop`` says
which. Trial keys are the planner's, so a chosen trial is the same trial a grid sweep would run.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fitting.curves import CurveFit, fit_family
from orchestrator.adaptive.spec import AdaptiveStrategy
from orchestrator.contract import TrialPlan

log = logging.getLogger(__name__)

BRACKET_TRIALS = 3  # a new shard point costs its predicted-best width and the two neighbours that bracket it
FamilyId = tuple[str, str]  # (domain, family)


@dataclass(frozen=True)
class Observation:
    """A finished trial as the policy sees it: the best value of the family's fitted metric, its size, its cost."""

    value: float  # nan: diverged, errored or no finite value (tried, but no measurement)
    num_params: int | None
    cost: float  # in the budget's unit
    status: str = "completed"


@dataclass(frozen=True)
class Decision:
    """One proposed trial and why."""

    key: str
    family: FamilyId
    reason: str
    cost: float  # predicted, in the budget's unit
    gain: float | None = None  # predicted relative narrowing of the target interval (0.18: −18 %)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "family": "/".join(self.family), "reason": self.reason, "cost": self.cost,
                "gain": self.gain}


@dataclass
class FamilyStatus:
    """The live fit of one family, for the progress display and the dashboard."""

    domain: str
    family: str
    beta_g: float | None = None
    beta_g_ci: tuple[float, float] | None = None
    beta_p: float | None = None
    beta_p_ci: tuple[float, float] | None = None
    points: int = 0
    met: bool = False
    note: str = ""

    def halfwidth(self, which: str) -> float | None:
        ci = self.beta_g_ci if which == "beta_g" else self.beta_p_ci
        return None if ci is None or not all(map(math.isfinite, ci)) else (ci[1] - ci[0]) / 2

    def line(self, target_g: float, target_p: float | None) -> str:
        def show(name: str, value: float | None, ci: tuple[float, float] | None, target: float | None) -> str:
            text = f"{name} –" if value is None else f"{name} {value:+.3f}"
            hw = self.halfwidth("beta_g" if name == "β_g" else "beta_p")
            if ci is not None and hw is not None:
                text += f" [{ci[0]:+.3f}, {ci[1]:+.3f}] ±{hw:.3f}"
            return text + (f" (target ±{target:g})" if target else "")

        parts = [show("β_g", self.beta_g, self.beta_g_ci, target_g),
                 show("β_p", self.beta_p, self.beta_p_ci, target_p), f"{self.points} shard points"]
        state = "target met" if self.met else self.note
        return f"{self.domain}/{self.family}: " + ", ".join(parts) + (f"; {state}" if state else "")


@dataclass(frozen=True)
class Candidate:
    """A planned trial as the policy indexes it."""

    key: str
    family: FamilyId
    fraction: float
    train_size: float
    width: int
    hp: str  # the hyperparameters as canonical JSON: one configuration at one width
    seed: int
    extra: bool = False  # a width from ``extra_widths``: run only past an edge

    @classmethod
    def of(cls, plan: TrialPlan, extra: bool = False) -> Candidate:
        return cls(plan.trial_key, (plan.domain, plan.family), plan.fraction,
                   float(plan.train_size if plan.train_size is not None else plan.fraction), plan.width,
                   json.dumps(plan.hparams, sort_keys=True, default=str), plan.seed, extra)


def _numeric_axes(hps: Iterable[str]) -> dict[str, list[float]]:
    """Hyperparameters that take several numeric values among ``hps``, with their sorted values."""
    values: dict[str, set[float]] = {}
    for hp in hps:
        for k, v in json.loads(hp).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                values.setdefault(k, set()).add(float(v))
    return {k: sorted(v) for k, v in values.items() if len(v) > 1}


def _log_distance(a: Mapping[str, Any], b: Mapping[str, Any], axes: Iterable[str]) -> float:
    d = 0.0
    for k in axes:
        x, y = a.get(k), b.get(k)
        if isinstance(x, int | float) and isinstance(y, int | float) and x > 0 and y > 0:
            d += math.log(x / y) ** 2
        elif x != y:
            d += 100.0
    return d


@dataclass
class _Family:
    """One family's pool, observations and live fit."""

    fid: FamilyId
    pool: dict[tuple[float, int, str, int], Candidate]
    fit: CurveFit | None = None
    dirty: bool = True
    status: FamilyStatus | None = None
    shards: list[float] = field(default_factory=list)
    sizes: dict[float, float] = field(default_factory=dict)
    widths: dict[float, list[int]] = field(default_factory=dict)  # fraction -> widths in the pool
    grid_widths: list[int] = field(default_factory=list)  # the spec's own widths (no extras)

    def __post_init__(self) -> None:
        self.shards = sorted({c.fraction for c in self.pool.values()})
        self.sizes = {c.fraction: c.train_size for c in self.pool.values()}
        for c in self.pool.values():
            self.widths.setdefault(c.fraction, [])
            if c.width not in self.widths[c.fraction]:
                self.widths[c.fraction].append(c.width)
        for ws in self.widths.values():
            ws.sort()
        self.grid_widths = sorted({c.width for c in self.pool.values() if not c.extra})

    def hps(self, fraction: float, width: int) -> list[str]:
        return sorted({c.hp for c in self.pool.values() if c.fraction == fraction and c.width == width})

    def seeds(self, fraction: float, width: int, hp: str) -> list[int]:
        return sorted(c.seed for c in self.pool.values() if (c.fraction, c.width, c.hp) == (fraction, width, hp))

    def key(self, fraction: float, width: int, hp: str, seed: int) -> str | None:
        c = self.pool.get((fraction, width, hp, seed))
        return c.key if c else None

    def nearest_hp(self, fraction: float, width: int, like: str) -> str | None:
        """The configuration at ``width`` closest to ``like`` (the same values when the grid has them)."""
        hps = self.hps(fraction, width)
        if not hps:
            return None
        if like in hps:
            return like
        target = json.loads(like)
        axes = set(_numeric_axes(hps)) | set(target)
        return min(hps, key=lambda h: (_log_distance(json.loads(h), target, axes), h))

    def middle_hp(self, fraction: float, width: int) -> str | None:
        """The configuration nearest the middle of every searched numeric range (log scale)."""
        hps = self.hps(fraction, width)
        if not hps:
            return None
        axes = _numeric_axes(hps)
        mid = {k: float(np.exp(np.median(np.log(v)))) if min(v) > 0 else float(np.median(v))
               for k, v in axes.items()}
        return min(hps, key=lambda h: (_log_distance(json.loads(h), mid, axes), h))


class AdaptivePolicy:
    """Proposes the next planned trial (``next``) from the finished ones (``observe``), per the module's rules."""

    def __init__(self, trials: Iterable[TrialPlan], strategy: AdaptiveStrategy,
                 extra_widths: Iterable[int] = ()) -> None:
        self.strategy = strategy
        extras = set(extra_widths)
        pools: dict[FamilyId, dict[tuple[float, int, str, int], Candidate]] = {}
        self.candidates: dict[str, Candidate] = {}
        for t in trials:
            c = Candidate.of(t, extra=t.width in extras)
            pools.setdefault(c.family, {})[(c.fraction, c.width, c.hp, c.seed)] = c
            self.candidates[c.key] = c
        self.families = {fid: _Family(fid, pool) for fid, pool in sorted(pools.items())}
        self.observed: dict[str, Observation] = {}

    # ------------------------------------------------------------------ bookkeeping
    def observe(self, key: str, obs: Observation) -> None:
        """A trial finished (or was read from the store); its family refits at the next proposal."""
        if key not in self.candidates:
            return
        self.observed[key] = obs
        self.families[self.candidates[key].family].dirty = True

    @property
    def spent(self) -> float:
        return float(sum(o.cost for o in self.observed.values() if math.isfinite(o.cost)))

    @property
    def budget(self) -> float:
        return self.strategy.budget.amount

    def _frame(self, fam: _Family) -> pd.DataFrame:
        rows = []
        for key, o in self.observed.items():
            c = self.candidates[key]
            if c.family != fam.fid:
                continue
            rows.append({"trial_key": key, "config_key": f"{c.fraction:.6g}/{c.width}/{c.hp}", "domain": c.family[0],
                         "family": c.family[1], "fraction": c.fraction, "train_size": c.train_size,
                         "width": c.width, "num_params": o.num_params, "hparams": json.loads(c.hp), "seed": c.seed,
                         "status": o.status if math.isfinite(o.value) else "diverged", "metric": "value",
                         "best_value": o.value})
        return pd.DataFrame(rows)

    def refit(self, fam: _Family) -> FamilyStatus:
        """Fit the family's finished trials as ``fitting.curves.fit_family`` does for the user."""
        if not fam.dirty and fam.status is not None:
            return fam.status
        frame = self._frame(fam)
        status = FamilyStatus(*fam.fid)
        fam.fit = None
        if not frame.empty:
            try:
                fit = fit_family(frame, form=self.strategy.form, n_boot=self.strategy.n_boot, seed=0)
            except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
                # the best-size law failed on this design: steer by β_g alone rather than stop the sweep
                log.warning("%s/%s: fit with the best model size failed (%s: %s); refitting without it",
                            *fam.fid, type(exc).__name__, exc)
                fit = fit_family(frame.assign(num_params=None), form=self.strategy.form,
                                 n_boot=self.strategy.n_boot, seed=0)
                status.note = f"β_p not fitted ({type(exc).__name__} in the best-size fit)"
            status.points = len(fit.points)
            if fit.ok:
                fam.fit = fit
                status.beta_g, status.beta_g_ci = fit.beta_g, fit.beta_g_ci
                status.beta_p, status.beta_p_ci = fit.beta_p, fit.beta_p_ci
        fam.status, fam.dirty = status, False
        return status

    def statuses(self) -> list[FamilyStatus]:
        return [self.refit(f) for f in self.families.values()]

    # ------------------------------------------------------------------ shard points and edges
    def _scores(self, fam: _Family, fraction: float) -> dict[tuple[int, str], float]:
        """Median over seeds of each tried (width, configuration) at a shard; nan when none measured."""
        vals: dict[tuple[int, str], list[float]] = {}
        for c in fam.pool.values():
            if c.fraction == fraction and c.key in self.observed:
                vals.setdefault((c.width, c.hp), []).append(self.observed[c.key].value)
        return {k: (float(np.median([x for x in v if math.isfinite(x)])) if any(map(math.isfinite, v))
                    else math.nan) for k, v in vals.items()}

    def _best(self, fam: _Family, fraction: float) -> tuple[int, str] | None:
        scores = {k: v for k, v in self._scores(fam, fraction).items() if math.isfinite(v)}
        return min(scores, key=lambda k: (scores[k], k)) if scores else None

    def _tried(self, key: str | None, busy: set[str]) -> bool:
        return key is None or key in self.observed or key in busy

    def _edges(self, fam: _Family, busy: set[str]) -> list[Decision]:
        """Runs past the edge of what a shard has tried, where its best sits at that edge."""
        out: list[Decision] = []
        for f in fam.shards:
            best = self._best(fam, f)
            if best is None:
                continue
            width, hp = best
            tried = sorted({w for (w, _h) in self._scores(fam, f)})
            seed = min(fam.seeds(f, width, hp))
            pool = fam.widths[f]
            i = pool.index(width)
            for side, j in (("upper", i + 1), ("lower", i - 1)):
                at_edge = width == (tried[-1] if side == "upper" else tried[0])
                if not at_edge or not 0 <= j < len(pool):
                    continue
                w2 = pool[j]
                hp2 = fam.nearest_hp(f, w2, hp)
                key = fam.key(f, w2, hp2, min(fam.seeds(f, w2, hp2))) if hp2 else None
                if self._tried(key, busy):
                    continue
                past = " (beyond the grid: extra width)" if fam.pool[(f, w2, hp2, min(fam.seeds(f, w2, hp2)))].extra \
                    else ""
                out.append(Decision(key, fam.fid, f"shard {f:.4g}, width {w2}{past}: best width {width} at the "
                                                  f"{side} edge of the widths tried there", self._cost(fam, f, w2)))
            hps = fam.hps(f, width)
            scores = self._scores(fam, f)
            tried_hps = [h for h in hps if (width, h) in scores]
            mine = json.loads(hp)
            for axis, values in _numeric_axes(hps).items():
                seen = sorted({float(json.loads(h)[axis]) for h in tried_hps if axis in json.loads(h)})
                v = float(mine.get(axis, math.nan))
                if not seen or v not in (seen[0], seen[-1]):
                    continue
                for side, step in (("upper", 1), ("lower", -1)):
                    if v != (seen[-1] if side == "upper" else seen[0]):
                        continue
                    k = values.index(v) + step
                    if not 0 <= k < len(values):
                        continue
                    want = {**mine, axis: values[k]}
                    match = [h for h in hps if json.loads(h) == want] or \
                        [h for h in hps if float(json.loads(h).get(axis, math.nan)) == values[k]]
                    if not match:
                        continue
                    h2 = min(match, key=lambda h: (_log_distance(json.loads(h), mine, set(mine) - {axis}), h))
                    key = fam.key(f, width, h2, seed)
                    if self._tried(key, busy):
                        continue
                    out.append(Decision(key, fam.fid, f"shard {f:.4g}, width {width}, {axis}={values[k]:g}: best "
                                                      f"{axis} {v:g} at the {side} edge of the values tried there",
                                        self._cost(fam, f, width)))
        return out

    # ------------------------------------------------------------------ cost model
    def _params(self, fam: _Family, width: int) -> float:
        """Parameters of a width: measured, else a log-log line through the measured widths (slope 2 with one)."""
        seen: dict[int, float] = {}
        for key, o in self.observed.items():
            c = self.candidates[key]
            if c.family == fam.fid and o.num_params:
                seen[c.width] = float(o.num_params)
        if width in seen:
            return seen[width]
        if not seen:
            return float(width) ** 2
        ws = np.log(np.array(sorted(seen), float))
        ps = np.log(np.array([seen[w] for w in sorted(seen)]))
        slope = float(np.polyfit(ws, ps, 1)[0]) if len(ws) > 1 else 2.0
        i = int(np.argmin(np.abs(ws - math.log(width))))
        return float(math.exp(ps[i] + slope * (math.log(width) - ws[i])))

    def _cost(self, fam: _Family, fraction: float, width: int) -> float:
        """Predicted cost of one trial: measured cost per parameter, as a log-log line in the shard's size."""
        xs, ys = [], []
        for key, o in self.observed.items():
            c = self.candidates[key]
            if c.family == fam.fid and o.num_params and o.cost > 0:
                xs.append(math.log(c.train_size))
                ys.append(math.log(o.cost / o.num_params))
        params = self._params(fam, width)
        if not xs:
            return params
        x = math.log(fam.sizes[fraction])
        if len(set(xs)) > 1:
            slope, icpt = np.polyfit(xs, ys, 1)
            return float(params * math.exp(icpt + slope * x))
        return float(params * math.exp(float(np.median(ys))))

    # ------------------------------------------------------------------ interval model
    def _noise(self, fam: _Family, fit: CurveFit) -> tuple[float, float]:
        """(τ², σ_t²): noise a shard point keeps however many seeds, and trial noise (from seeds of one config)."""
        x = np.log([p.train_size for p in fit.points])
        y = np.log([p.best_error for p in fit.points])
        n = len(x)
        resid = y - np.polyval(np.polyfit(x, y, 1), x) if n > 2 else np.zeros(n)
        s2 = float(resid @ resid) / max(n - 2, 1) if n > 2 else 0.05 ** 2
        groups: dict[tuple[float, int, str], list[float]] = {}
        for key, o in self.observed.items():
            c = self.candidates[key]
            if c.family == fam.fid and math.isfinite(o.value) and o.value > 0:
                groups.setdefault((c.fraction, c.width, c.hp), []).append(math.log(o.value))
        within = [np.var(v, ddof=1) for v in groups.values() if len(v) > 1]
        k_mean = float(np.mean([len(p.seeds) for p in fit.points]))
        sigma_t2 = float(np.mean(within)) if within else s2 / 2 * k_mean
        tau2 = max(s2 - sigma_t2 / k_mean, 0.1 * s2)
        return tau2, sigma_t2

    @staticmethod
    def _halfwidth(x: list[float], k: list[int], tau2: float, sigma_t2: float) -> float:
        n = len(x)
        if n < 3:
            return math.inf
        xa = np.array(x)
        xc = xa - xa.mean()
        sxx = float(xc @ xc)
        if sxx <= 0:
            return math.inf
        v = tau2 + sigma_t2 / np.array(k, float)
        return float(stats.t.ppf(0.975, n - 2) * math.sqrt(float(xc ** 2 @ v)) / sxx)

    def _gains(self, fam: _Family, busy: set[str]) -> list[Decision]:
        """New shard points and extra seeds, each with its predicted narrowing of the interval per unit cost."""
        fit = fam.fit
        if fit is None or len(fit.points) < 3:
            return []
        tau2, sigma_t2 = self._noise(fam, fit)
        used = {p.fraction for p in fit.points}
        x = [math.log(p.train_size) for p in fit.points]
        k = [len(p.seeds) for p in fit.points]
        now = self._halfwidth(x, k, tau2, sigma_t2)
        out: list[Decision] = []
        pending = {self.candidates[b].fraction for b in busy if self.candidates[b].family == fam.fid}
        for i, p in enumerate(fit.points):  # one more seed of the shard's best configuration
            width, hp = p.best_width, json.loads(json.dumps(p.hparams, sort_keys=True, default=str))
            hp_s = json.dumps(hp, sort_keys=True, default=str)
            if width is None or p.fraction in pending:
                continue
            for s in fam.seeds(p.fraction, width, hp_s):
                key = fam.key(p.fraction, width, hp_s, s)
                if not self._tried(key, busy):
                    k2 = list(k)
                    k2[i] += 1
                    gain = 1 - self._halfwidth(x, k2, tau2, sigma_t2) / now
                    cost = self._cost(fam, p.fraction, width)
                    out.append(Decision(key, fam.fid, f"shard {p.fraction:.4g}, width {width}, seed {s}: "
                                                      f"{-gain:+.0%} interval for {cost:.3g} (another seed of the "
                                                      f"shard's best)", cost, gain))
                    break
        tried = {f for f in fam.shards if self._scores(fam, f)}
        for f in fam.shards:  # a new shard point at its predicted-best width
            if f in tried or f in used or f in pending:
                continue
            width = self._predicted_width(fam, f)
            near = min(used, key=lambda g: (abs(math.log(g / f)), g))
            best = self._best(fam, near)
            hp = fam.nearest_hp(f, width, best[1]) if best else fam.middle_hp(f, width)
            if hp is None:
                continue
            key = fam.key(f, width, hp, min(fam.seeds(f, width, hp)))
            if self._tried(key, busy):
                continue
            gain = 1 - self._halfwidth([*x, math.log(fam.sizes[f])], [*k, 1], tau2, sigma_t2) / now
            cost = self._cost(fam, f, width) * BRACKET_TRIALS
            out.append(Decision(key, fam.fid, f"shard {f:.4g}, width {width}: {-gain:+.0%} interval for {cost:.3g} "
                                              f"(a new shard point with its bracketing widths)", cost, gain))
        return out

    def _predicted_width(self, fam: _Family, fraction: float) -> int:
        """The grid width nearest the best size the current fit predicts at this shard (else the nearest shard's)."""
        pool = [w for w in fam.widths[fraction] if w in fam.grid_widths] or fam.widths[fraction]
        fit = fam.fit
        if fit is not None and fit.size_fit is not None:
            want = float(fit.size_fit.predict(fam.sizes[fraction]))
            if math.isfinite(want) and want > 0:
                return min(pool, key=lambda w: (abs(math.log(self._params(fam, w) / want)), w))
        measured = [f for f in fam.shards if self._best(fam, f)]
        near = min(measured, key=lambda g: abs(math.log(g / fraction)))
        return min(pool, key=lambda w: (abs(math.log(w / self._best(fam, near)[0])), w))  # type: ignore[index]

    # ------------------------------------------------------------------ the design
    def _design(self, fam: _Family) -> list[tuple[str, str]]:
        """The first trials: ``initial_shards`` shards spread over the range, middle width and configuration."""
        n = min(self.strategy.initial_shards, len(fam.shards))
        picks = sorted({round(i) for i in np.linspace(0, len(fam.shards) - 1, n)})
        out = []
        for i in picks:
            f = fam.shards[i]
            widths = [w for w in fam.widths[f] if w in fam.grid_widths] or fam.widths[f]
            width = widths[(len(widths) - 1) // 2]
            hp = fam.middle_hp(f, width)
            if hp is None:
                continue
            key = fam.key(f, width, hp, min(fam.seeds(f, width, hp)))
            if key:
                out.append((key, f"initial design: shard {f:.4g}, width {width} (middle width and configuration; "
                                 f"{len(picks)} shards over the whole range)"))
        return out

    def met(self, fam: _Family, busy: set[str]) -> bool:
        status = self.refit(fam)
        hw_g, hw_p = status.halfwidth("beta_g"), status.halfwidth("beta_p")
        target = self.strategy.target
        ok = hw_g is not None and hw_g <= target.beta_g_halfwidth and status.points >= self.strategy.min_points
        if target.beta_p_halfwidth is not None:
            ok = ok and hw_p is not None and hw_p <= target.beta_p_halfwidth
        ok = ok and not self._edges(fam, set())  # a bracketing run still going keeps the family open
        status.met = ok
        return ok

    def next(self, busy: Iterable[str] = ()) -> Decision | str | None:
        """The next trial to run; a stop reason (str) when the sweep is done; None to wait for running trials."""
        busy = set(busy)
        left = self.budget - self.spent
        if left <= 0:
            return f"budget spent: {self.spent:.4g} of {self.budget:.4g} {self.strategy.budget.unit}"
        first: list[Decision] = []
        edges: list[Decision] = []
        gains: list[Decision] = []
        open_families = 0
        for fam in self.families.values():
            if self.met(fam, busy):
                fam.status.note = ""  # type: ignore[union-attr]
                continue
            open_families += 1
            design = [Decision(k, fam.fid, why, self._cost(fam, self.candidates[k].fraction,
                                                           self.candidates[k].width))
                      for k, why in self._design(fam) if not self._tried(k, busy)]
            first += design
            edges += self._edges(fam, busy)
            if not design:
                gains += [g for g in self._gains(fam, busy) if g.gain is not None and g.gain > 0]
            fam.status.note = "bracketing" if edges else "narrowing"  # type: ignore[union-attr]
        if open_families == 0:
            if busy:  # the stop is said of the final data: running trials may still move the fit
                return None
            return "targets met: " + "; ".join(
                f"{'/'.join(f.fid)} β_g ±{f.status.halfwidth('beta_g'):.3g}"  # type: ignore[union-attr]
                for f in self.families.values())
        for group, order in ((first, None), (edges, "cost"), (gains, "score")):
            if not group:
                continue
            if order == "cost":
                group = sorted(group, key=lambda d: (d.cost, d.key))
            elif order == "score":
                group = sorted(group, key=lambda d: (-(d.gain or 0) / max(d.cost, 1e-300), d.key))
            fits = [d for d in group if d.cost <= left or not self.observed]
            if fits:
                return fits[0]
            if not busy:
                return (f"budget spent: the next useful trial ({group[0].reason}) would cost {group[0].cost:.4g} "
                        f"{self.strategy.budget.unit}, {left:.4g} left of {self.budget:.4g}")
            return None
        if busy:
            return None
        return "no planned trial left that narrows the interval (grid exhausted); targets not met"
