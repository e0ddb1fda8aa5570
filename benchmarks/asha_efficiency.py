"""What per-group ASHA saves, and what it costs the fit: one LM sweep run four ways on local Ray.

The same planned trials (word LSTM on the quickstart's offline English, wsd schedule, 5 nested shards x 2 widths x 4
learning rates x 3 dropouts: 12 configurations per (shard, width), 24 per shard) run with per-group early stopping
plus each trial's patience (the default: synchronous successive halving per shard, ``ASHA``), with patience only,
with no early stopping (every trial to its budget), and with no early stopping again under another trial seed
("rerun": the noise floor, how often no stopping agrees with itself). Budgets are per shard (``{epochs: 12}``,
``BUDGET``), so the small shards are not trained for hundreds of epochs and the largest is trained to its minimum.
Reported for each way, as a fraction of no early stopping: compute (Σ training tokens x parameters over trials, and
wall time from the first trial's start to the last one's end), and against it: |Δβ_g|, |Δβ_p|, on how many shards
the best configuration (width, learning rate, dropout) is the same, and the largest relative gap between a shard's
best error and the no-stopping one (how much a different best costs). With the rerun: on how many shards each way's
pick is, in the no-stopping run, within seed noise of the best (the 95 % band of two trials' difference). From the
no-stopping learning curves: the least compute ANY rank-consistent early stopping (ASHA, successive halving, median
stopping) needs to keep every shard's best (``rank_bound``).

``--lrs`` picks the configurations: ``wide`` (the default) crosses learning rates 0.003-0.1 with dropouts 0.2-0.6,
so that most shards' best learning rate and dropout lie inside the searched ranges (``lr-dropout``, 0.003-0.03 x 0.1
and 0.4, had the best learning rate at its top edge on 4 of 5 shards and the best dropout on 5 of 5, the fit's
``hparam_at_edge`` warnings); ``grid`` is 6 learning rates in 1-3-10 steps, ``grid2`` a factor 2 apart, ``random`` 6
log-uniform draws in [0.002, 0.05]. On the learning-rate-only designs the optimum is flat and "same best" says which
of two equal configurations a seed favoured. Ways already stored under ``--keep`` are reused (the none and rerun
ways hold no ASHA setting), so ASHA variants cost one ASHA run each: ``--grace-epochs``, ``--grace-min-steps``,
``--reduction-factor``, ``--patience``, ``--no-synchronous`` (Ray's async ASHA inside each group).

Target (issue 13): ASHA ≤ 25% of the no-stopping compute, |Δβ_g| ≤ 0.01, same best configuration on ≥ 80% of shards.

    python benchmarks/asha_efficiency.py [--quick] [--cpus 2] [--lrs wide|lr-dropout|grid|grid2|random] [--seed 0]
                                         [--ways asha,rerun] [--epochs 12] [--max-steps 1200] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from fitting.aggregate import aggregate, load_rows
from fitting.curves import fit_store
from fitting.store import ResultsStore
from orchestrator.runner import init_ray, run_sweep
from orchestrator.spec import parse_spec

# per-group early stopping as the benchmark runs it by default: synchronous successive halving per shard (every
# configuration of a shard reaches a rung before any passes it; ``early_stopping.synchronous``), rungs from an eighth
# of an epoch of the shard but not before step 50, reduction factor 4, the configurations of one shard compared
# across widths; evaluations every eighth of an epoch, patience 8 (a pass over the shard without improvement);
# nothing stops a trial before its grace period.
# Measured on the 2-core machine, 120 trials a way (12 epochs a trial up to 1,200 steps, wsd, wide),
# `python benchmarks/asha_efficiency.py --keep DIR [--seed 1] [--no-synchronous]`, logs /tmp/s12/*.log. Wall
# times of runs that had the machine to themselves only (none, seed 0: 532 s):
#   seed 0 (rerun: 1)   compute  wall  |dbeta_g|  |dbeta_p|  same best  within seed noise  largest error gap
#   asha (synchronous)   24.3%    29%    0.0000     0.000      5 of 5      5 of 5            0.29%
#   asha (async)         31.1%     -     0.0000     0.000      5 of 5      5 of 5            0.29%
#   patience             84.1%     -     0.0000     0.000      5 of 5      5 of 5            0.29%
#   rerun               100.0%     -     0.0012     0.202      4 of 5      5 of 5            0.36%
#   seed 1 (the settings fixed before it ran)
#   asha (synchronous)   23.6%  137 s    0.0000     0.000      5 of 5        -               0.00%
#   asha (async)         31.5%  185 s    0.0000     0.000      5 of 5        -               0.00%
# Least compute of any rank-consistent stopping that keeps every shard's best: 10.4% (seed 0), 11.5% (seed 1). The
# synchronous decisions are deterministic (a second seed-0 run: the same 11,423 steps). Async ASHA (seed 0, 2 workers,
# 24 configurations a shard) let 6-12 of 24 past the first rung (halving: 6) and ran 4 to the budget on shard 0.5
# and 4 past step 760 on shard 1 (halving: 2 and 2): the first arrival at a rung always passes, and one passed is
# never stopped at that rung again.
# Replayed offline on the no-stopping curves (same rungs, no patience): grace floors 20 and 30 lose the best
# configuration on 3-5 of 5 shards (the best of the small shards ranks 10th-21st of 24 until 40% of their budget);
# on the earlier lr-dropout design (12 configurations a shard) synchronous halving spends 26% and keeps the best on
# 2 of 5 shards (its top two ended 0.03-0.5% apart on 3 shards: ties that only running both to the end separates).
# lr-dropout with async ASHA (60 trials a way, logs /tmp/s11/*.log): seed 0: 29.7%, |dbeta_g| 0.0011, 3 of 5 (within
# seed noise 4 of 5), patience 85.9% 5 of 5, rerun 4 of 5; seed 1: 29.5%, 0.0009, 3 of 5, patience 87.6% 4 of 5,
# rerun 3 of 5; rank bound 20.1% / 23.0%. Before patience waited for the grace period (grace floor 50, patience 3):
# ASHA 23.2%, 2 of 5; patience (3 evaluations, ~9 steps on shard 0.25) stopped the eventual best of shards 0.125
# and 0.25 at steps 19-23, in the first steps' transient, at 5.50 and 5.52 against 5.28 and 4.92 at the budget.
# The 1-3-10 learning-rate grid (--lrs grid, before the grace floor; /tmp/s9/cool.log): ASHA 16.9% / 0.0000 /
# 0.105 / 3 of 5 (gap 1.56%), patience 71.4% / 5 of 5, rerun 2 of 5: its optimum is flat (a shard's best two end
# 0.06-0.7% apart against a 1.5% seed band). Earlier, at 6 epochs up to 300 steps (the two largest shards' best
# still improving at the cap): ASHA 26.3% / 0.0076 / 3 of 5; in the plan's sorted start order (before this
# scheduler shuffled starts) 43.9% / 4 of 5; random draws and cosine 21.6-22.8%, 1 of 5; grid2 31.3%, 2 of 5.
ASHA = {"grace_period": {"epochs": 0.125, "min_steps": 50}, "reduction_factor": 4, "patience": 8,
        "group_by": ["domain", "family", "fraction"], "synchronous": True}
# every trial's budget: (epochs of its shard, step ceiling). 12 epochs at every shard: the earlier (6, 300) gave the
# largest shard 3 epochs, and the best configurations of the two largest shards were still improving at the cap
# (converged False), the under-trained shard points issue 13 is about; at 12 epochs the largest shard's best reaches
# its minimum within the budget (converged), at 2.6x the steps
BUDGET = (12.0, 1200)
# "rerun": no early stopping again under another trial seed (the same configurations): how often no stopping agrees
# with itself, the noise floor of "same best" and of the error gap.
WAYS = ("asha", "patience", "none", "rerun")
# learning rates as users grid them: log-spaced around the word LSTM's best Adam rate, in 1-3-10 steps ("grid", a
# factor ~3 apart) or a factor 2 apart ("grid2"); "lr-dropout" crosses three of them with two dropouts (DROPOUTS)
GRIDS = {"grid": (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1), "grid2": (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08),
         "lr-dropout": (0.003, 0.01, 0.03), "wide": (0.003, 0.01, 0.03, 0.1)}
DROPOUTS = {"lr-dropout": (0.1, 0.4), "wide": (0.2, 0.4, 0.6)}


def sweep_spec(storage: Path, way: str, quick: bool, asha: dict[str, Any] | None = None,
               schedule: str = "wsd", lrs: str = "wide", budget: tuple[float, int] = BUDGET,
               seed: int = 0) -> dict[str, Any]:
    epochs, cap = budget
    stopping: dict[str, Any] = {
        "max_steps": {"epochs": epochs, "min_steps": 30, "max_steps": 150 if quick else cap},
        "eval_every": {"epochs": 0.125, "min_steps": 2, "max_steps": 25}}
    if way in ("asha", "patience"):  # the grace period holds patience back too
        stopping.update(asha or ASHA)
    if way != "asha":
        stopping["enabled"] = False
    if way in ("none", "rerun"):  # no stopping: ASHA's settings, left out, play no part (nor change the spec)
        stopping["patience"] = None
    lr = {"grid": list(GRIDS[lrs])} if lrs in GRIDS else {"loguniform": [0.002, 0.05]}
    grid = lrs in GRIDS
    # another trial seed, the same configurations: random draws also follow the sweep's seed, so there the rerun
    # trains both seeds and is judged on the second's trials only
    reseed = {} if way != "rerun" else {"seed": seed + 1} if grid else {"seeds": 2}
    return {
        "name": "asha-efficiency", "storage": str(storage),  # one name: the same trial keys in every way
        "seed": reseed.get("seed", seed),
        "domains": {"lm": {
            "data": {"train": "builtin:offline-english", "max_sentences": 5000, "vocab_size": 2000,
                     "max_valid_words": 4000, "max_valid_chars": 16000},
            "families": {"word": {"widths": [16] if quick else [16, 32]}},
            "hparams": {"lr": lr, "schedule": schedule,
                        **({"dropout": {"grid": list(DROPOUTS[lrs])}} if lrs in DROPOUTS else {})},
            **({"samples": 6} if not grid else {}),
            **({"seeds": reseed["seeds"]} if "seeds" in reseed else {}),
            "shards": {"base": 2, "from": -2 if quick else -4, "to": 0},
            "early_stopping": stopping,
            "resources": {"cpu": 1},
        }},
    }


@dataclass
class Outcome:
    way: str
    trials: int
    steps: float
    compute: float  # Σ tokens x parameters
    wall: float
    beta_g: float | None
    beta_p: float | None
    best: dict[float, str]  # shard fraction -> best configuration key
    error: dict[float, float]  # shard fraction -> the best configuration's error (the fitted point)
    values: dict[str, tuple[float, float]]  # configuration key -> (shard fraction, its best value)
    bound: dict[float, tuple[float, float]]  # shard -> (rank-consistent stopping's least compute, no stopping's)


def run_way(way: str, quick: bool, tmp: Path, asha: dict[str, Any], schedule: str, lrs: str,
            budget: tuple[float, int], seed: int = 0) -> Outcome:
    storage = tmp / way
    outcome = run_sweep(parse_spec(sweep_spec(storage, way, quick, asha, schedule, lrs, budget, seed)), progress=False)
    store = ResultsStore(outcome.storage)
    table = store.read_results()
    if way == "rerun" and lrs not in GRIDS:  # both seeds trained: judge the second one's trials only
        table = table.filter(pc.equal(table["seed"], pc.max(table["seed"])))
    rows = table.to_pylist()
    compute = sum((r["samples"] or 0.0) * (r["num_params"] or 0) for r in rows)
    fit = fit_store(table, n_boot=0)["lm"]["word"]
    points = aggregate(load_rows(table))
    best = {p.fraction: p.config_key for p in points}
    # the stored trials' span, not this call's: a way reused from --keep keeps the wall time it was measured with
    wall = (max(r["finished_at"] for r in rows) - min(r["started_at"] for r in rows)).total_seconds()
    out = Outcome(way, len(rows), sum(r["steps"] or 0 for r in rows), compute, wall,
                  fit.beta_g, fit.beta_p, best, {p.fraction: p.best_error for p in points},
                  {r["config_key"]: (r["fraction"], r["best_value"]) for r in rows},
                  rank_bound(rows, best, store.read_history) if way == "none" else {})
    # each way as it ends: a long run cut short keeps what it measured
    print(f"{way}: {out.trials} trials, {out.steps:.0f} steps, compute {out.compute:.4g}, {out.wall:.0f} s, beta_g "
          f"{out.beta_g}, beta_p {out.beta_p}, best {out.best}, error {out.error}", flush=True)
    return out


def rank_bound(rows: list[dict[str, Any]], best: dict[float, str],
               read_history: Callable[[str], Any]) -> dict[float, tuple[float, float]]:
    """Per shard, the least compute (fraction of running every configuration to its budget) of ANY early stopping
    that is rank-consistent (never stops a configuration while one ranked worse by best-so-far at the same point
    of the budget runs on) and keeps the shard's eventual best: at every point, the eventual best and every
    configuration ranked at or above it must still run. ASHA, successive halving and median stopping are of this
    kind; a bound above 25 % says no such scheduler can keep that shard's best within 25 %, however tuned.
    Returns (least compute, compute of no stopping) per shard, in steps x parameters."""
    out = {}
    for fraction in best:
        group = [r for r in rows if r["fraction"] == fraction]
        curves = {}
        for r in group:
            hist = read_history(r["trial_key"])
            vals = [json.loads(m or "{}").get(r["metric"], math.nan) for m in hist["metrics"].to_pylist()]
            curves[r["config_key"]] = (np.array(hist["steps"].to_pylist(), float),
                                       np.fmin.accumulate(np.nan_to_num(np.array(vals, float), nan=np.inf)))
        winner = curves[best[fraction]]
        grid = np.unique(np.concatenate([c[0] for c in curves.values()]))
        params = {r["config_key"]: r["num_params"] for r in group}

        def at(curve: tuple[np.ndarray, np.ndarray], step: float) -> float:
            i = np.searchsorted(curve[0], step, side="right") - 1
            return curve[1][i] if i >= 0 else np.inf

        used = 0.0
        for lo, hi in zip(np.concatenate([[0.0], grid[:-1]]), grid, strict=True):
            w = at(winner, hi)
            used += (hi - lo) * sum(params[k] for k, c in curves.items() if hi <= c[0][-1] and at(c, hi) <= w)
        out[fraction] = used, sum(params[k] * c[0][-1] for k, c in curves.items())
    return out


def within_noise(r: Outcome, ref: Outcome, band: float) -> int:
    """Shards where the configuration r picked is, in the reference run, within ``band`` (relative, log) of the
    reference's best: the same best up to what another seed moves a trial by."""
    return sum(ref.values.get(r.best.get(f, ""), (f, math.inf))[1] <= e * math.exp(band)
               for f, e in ref.error.items())


def seed_band(rerun: Outcome, ref: Outcome) -> float:
    """A 95 % band for the log difference of two trials' values, 1.96 × the s.d. of the paired log ratios
    (another seed vs the reference) of the configurations within 10 % of their shard's best."""
    pairs = [math.log(rerun.values[k][1] / v) for k, (f, v) in ref.values.items()
             if k in rerun.values and v <= 1.1 * ref.error[f] and rerun.values[k][1] > 0]
    return 1.96 * float(np.std(pairs, ddof=1)) if len(pairs) >= 3 else math.nan


def delta(a: float | None, b: float | None) -> float:
    return abs(a - b) if a is not None and b is not None else math.nan


def same_best(r: Outcome, ref: Outcome) -> int:
    return sum(r.best.get(f) == k for f, k in ref.best.items())


def error_gap(r: Outcome, ref: Outcome) -> float:
    """The largest relative gap between a shard's best error and the reference's (non-zero where bests differ)."""
    return max((abs(r.error[f] / e - 1) for f, e in ref.error.items() if f in r.error), default=math.nan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="3 shards x 1 width (the design's configurations each), 150-step cap: a smoke run")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--grace-epochs", type=float, default=ASHA["grace_period"]["epochs"])
    ap.add_argument("--grace-min-steps", type=int, default=ASHA["grace_period"]["min_steps"],
                    help="the grace period's step floor")
    ap.add_argument("--patience", type=int, default=ASHA["patience"],
                    help="evaluations without improvement before a trial stops (asha and patience ways)")
    ap.add_argument("--reduction-factor", type=float, default=ASHA["reduction_factor"])
    ap.add_argument("--per-width", action="store_true", help="ASHA groups per (shard, width), not per shard")
    ap.add_argument("--synchronous", action=argparse.BooleanOptionalAction, default=ASHA["synchronous"],
                    help="successive halving inside each group (trials pause at rungs) instead of async ASHA")
    ap.add_argument("--schedule", default="wsd", help="the learning-rate schedule of every trial (cosine, wsd, ...)")
    ap.add_argument("--lrs", choices=(*GRIDS, "random"), default="wide",
                    help=f"configurations: learning-rate grids {GRIDS} (lr-dropout: x dropouts {DROPOUTS}), or 6 "
                         "log-uniform draws in [0.002, 0.05]")
    ap.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated subset of {WAYS} (none always runs)")
    ap.add_argument("--epochs", type=float, default=BUDGET[0], help="each trial's budget in epochs of its shard")
    ap.add_argument("--max-steps", type=int, default=BUDGET[1], help="the budget's step ceiling")
    ap.add_argument("--seed", type=int, default=0, help="the trials' seed (the rerun trains under seed + 1)")
    ap.add_argument("--keep", type=Path, help="keep every way's storage under this folder (default: a temp folder)")
    args = ap.parse_args()
    ways = [w for w in WAYS if w in args.ways.split(",") or w == "none"]
    unknown = set(args.ways.split(",")) - set(WAYS)
    if unknown:
        ap.error(f"--ways: unknown {sorted(unknown)}; allowed: {', '.join(WAYS)}")
    asha = {**ASHA, "grace_period": {"epochs": args.grace_epochs, "min_steps": args.grace_min_steps},
            "reduction_factor": args.reduction_factor, "patience": args.patience, "synchronous": args.synchronous}
    if args.per_width:
        asha["group_by"] = ["domain", "family", "fraction", "width"]
    init_ray(num_cpus=args.cpus)
    with contextlib.ExitStack() as stack:
        tmp = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        # the reference first, then ASHA and the noise floor: a long run cut short keeps what matters most
        order = [w for w in ("none", "asha", "rerun", "patience") if w in ways]
        results = {way: run_way(way, args.quick, tmp, asha, args.schedule, args.lrs, (args.epochs, args.max_steps),
                                  args.seed)
                   for way in order}
    ref = results["none"]
    print(f"LM word sweep, {ref.trials} trials a way ({'quick' if args.quick else 'full'}, budget {args.epochs:g} "
          f"epochs up to {args.max_steps} steps, {args.schedule} "
          f"schedule, {args.lrs} learning rates); ASHA: {asha}")
    print(f"{'way':<9} {'trials':>6} {'steps':>8} {'compute':>9} {'wall s':>7} {'wall':>6} {'beta_g':>8} "
          f"{'|dbeta_g|':>9} {'beta_p':>7} {'|dbeta_p|':>9} {'same best':>10} {'max error gap':>13}")
    for way in ways:
        r = results[way]
        same = same_best(r, ref)
        print(f"{way:<9} {r.trials:>6} {r.steps:>8.0f} {r.compute / ref.compute:>9.1%} {r.wall:>7.0f} "
              f"{r.wall / ref.wall:>6.0%} {r.beta_g if r.beta_g is not None else math.nan:>8.4f} "
              f"{delta(r.beta_g, ref.beta_g):>9.4f} {r.beta_p if r.beta_p is not None else math.nan:>7.3f} "
              f"{delta(r.beta_p, ref.beta_p):>9.3f} {same:>4}/{len(ref.best)} ({same / len(ref.best):.0%}) "
              f"{error_gap(r, ref):>13.2%}")
    if "rerun" in results:
        rerun = results["rerun"]
        band = seed_band(rerun, ref)
        print(f"noise floor: no stopping under another trial seed picks the same best on {same_best(rerun, ref)}"
              f"/{len(ref.best)} shards (largest error gap {error_gap(rerun, ref):.2%}); a trial's value moves "
              f"{band:.2%} between seeds (95 %); best within that of the no-stopping best: "
              + ", ".join(f"{w} {within_noise(results[w], ref, band)}/{len(ref.best)}" for w in ways if w != "none"))
    used, full = (sum(v[i] for v in ref.bound.values()) for i in (0, 1))
    print("least compute of any rank-consistent early stopping that keeps every shard's best (from the no-stopping "
          f"learning curves): {used / full:.1%} (" + ", ".join(f"shard {f:g}: {u / t:.0%}" for f, (u, t) in
                                                         sorted(ref.bound.items())) + ")")
    if "asha" in results:
        r = results["asha"]
        same = same_best(r, ref) / len(ref.best)
        met = r.compute / ref.compute <= 0.25 and delta(r.beta_g, ref.beta_g) <= 0.01 and same >= 0.8
        verdict = ("not judged on --quick (a 150-step cap, where the 50-step grace floor alone is a third of a "
                   "budget); run without it" if args.quick else "met" if met else "NOT met")
        print(f"issue 13 target (ASHA <= 25% compute, |dbeta_g| <= 0.01, same best on >= 80% of shards): {verdict}")


if __name__ == "__main__":
    main()
