"""What per-group ASHA saves, and what it costs the fit: one LM sweep run four ways on local Ray.

The same planned trials (word LSTM on the quickstart's offline English, wsd schedule, 5 nested shards x 2 widths x
6 learning rates: 6 configurations per (shard, width)) run with per-group ASHA plus each trial's patience (the
default), with patience only, with no early stopping (every trial to its budget), and with no early stopping again
under another trial seed ("rerun": the noise floor, how often no stopping agrees with itself). Budgets are per
shard (``{epochs: ...}``), so the small shards are not trained for hundreds of epochs. Reported for each way, as a
fraction of no early stopping: compute (Σ training tokens x parameters over trials, and Tuner.fit wall time), and
against it: |Δβ_g|, |Δβ_p|, on how many shards the best configuration (width, learning rate) is the same, and the
largest relative gap between a shard's best error and the no-stopping one (how much a different best costs).

The learning rates are a log-spaced grid in 1-3-10 steps, as users build one (``--lrs grid``; ``grid2``: a factor
2 apart; ``random``: 6 log-uniform draws in [0.002, 0.05], the earlier design). Random draws can cluster: two rates
a few % apart tie, and "same best" then says which of two equal configurations a run happened to favour.

Target (issue 13): ASHA ≤ 25% of the no-stopping compute, |Δβ_g| ≤ 0.01, same best configuration on ≥ 80% of shards.

    python benchmarks/asha_efficiency.py [--quick] [--cpus 2] [--lrs grid|grid2|random] [--ways asha,rerun]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from fitting.aggregate import aggregate, load_rows
from fitting.curves import fit_store
from fitting.store import ResultsStore
from orchestrator.runner import init_ray, run_sweep
from orchestrator.spec import parse_spec

# per-group ASHA as the benchmark runs it by default: rungs from an eighth of an epoch of the shard, reduction
# factor 4, the configurations of one shard compared across widths; evaluations every eighth of an epoch.
# Measured on the 2-core machine, shared with other jobs (load 10-28: wall times are not comparable), 60 trials a
# way, `python benchmarks/asha_efficiency.py` (wsd, 1-3-10 grid), log /tmp/asha_helper/final.log:
#   way        compute  |dbeta_g|  |dbeta_p|  same best  largest error gap
#   asha        26.3%     0.0076     0.202      3 of 5     2.83%  (1.0: lr 0.1 for 0.03; 0.0625: width 32 for 16)
#   patience    81.6%     0.0023     0.000      5 of 5     1.62%
#   none       100.0%     -          -          -          -      (9,852 steps, beta_g -0.0815, beta_p 0.202)
#   rerun      100.0%     0.0000     0.000      4 of 5     1.06%  (0.125: lr 0.003 for 0.1, 1.1% apart)
# Not met: compute 26.3% > 25% and same best 3 of 5 < 80%; |dbeta_g| holds. The noise floor is 4 of 5 (80%): the
# target asks ASHA to agree with no stopping as often as no stopping agrees with itself under another seed. The
# same ASHA with the plan's sorted start order (before this scheduler shuffled starts; same command on that code):
# 43.9% / 0.0048 / 0.101 / 4 of 5 (gap 3.4%): the shuffle trades one shard's best for 18 points of compute.
# Earlier runs of this file (none: 9,852 steps in every design):
#   random draws, cosine: ASHA 22.8% / 0.0057 / 0.004 / 1 of 5; grace 1/4 epoch 24.1% / 0.0122 / 0.205 / 0 of 5;
#     rf 3 17.2% / 0.0124 / 0.205 / 0 of 5; per width 30.8% / 0.0037 / 0.410 / 1 of 5; patience 83.1%, 4 of 5
#   random draws, wsd: ASHA 21.6% / 0.0055 / 0.306 / 1 of 5 (gap 3.0%); patience 80.0%, 2 of 5 (gap 1.3%)
#   grid2 (factor 2), wsd, plan-order starts: ASHA 31.3% / 0.0097 / 0.105 / 2 of 5 (gap 2.6%); patience 80.1% /
#     0.0003 / 0.000 / 3 of 5 (gap 0.3%); rerun 100% / 0.0014 / 0.202 / 4 of 5 (gap 0.8%): another seed flips the
#     smallest shard's best between two configurations 0.01% apart
# Why the target is out of reach here (learning curves of the no-stopping runs, replayed offline through the real
# scheduler): the curves of a shard's configurations cross late. On the smallest shard a slow rate (0.01) overtakes
# the fast ones (0.03, 0.1) only three quarters into its 34 steps, the fast ones having overfit by step 10; on the
# largest shard lr 0.1 leads lr 0.03 (width 32) for the first third to half of the budget, and 0.03 ends 2.8%
# better. Any rung before those crossings stops the eventual best; rungs after them cost most of the compute. Even
# synchronous successive halving (every configuration of a shard to a rung, then the best quarter on; not what async
# ASHA can do without pausing trials) on the 1-3-10 grid's curves: grace 1/8 epoch 15.4% of the compute, same best
# 1 of 5; grace >= 12 steps 21.0%, 1 of 5; >= 24 steps 28.5%, 3 of 5. Async ASHA replayed there: 54% in the plan's
# (sorted) start order, 31-39% in shuffled orders, same best 2-4 of 5. A peer floor (cut only among rf-1 recorded
# configurations) cost 4-12 points of compute for +1 to -1 shards of same best, and was dropped.
ASHA = {"grace_period": {"epochs": 0.125, "min_steps": 2}, "reduction_factor": 4,
        "group_by": ["domain", "family", "fraction"]}
# "rerun": no early stopping again under another trial seed (the same configurations): how often no stopping agrees
# with itself, the noise floor of "same best" and of the error gap.
WAYS = ("asha", "patience", "none", "rerun")
# learning-rate grids as users build them: log-spaced around the word LSTM's best Adam rate, in 1-3-10 steps
# ("grid", a factor ~3 apart) or a factor 2 apart ("grid2")
GRIDS = {"grid": (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1), "grid2": (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08)}


def sweep_spec(storage: Path, way: str, quick: bool, asha: dict[str, Any] | None = None,
               schedule: str = "wsd", lrs: str = "grid") -> dict[str, Any]:
    stopping: dict[str, Any] = {
        "max_steps": {"epochs": 6, "min_steps": 30, "max_steps": 150 if quick else 300},
        "eval_every": {"epochs": 0.125, "min_steps": 2, "max_steps": 25}, "patience": 3, **(asha or ASHA)}
    if way != "asha":
        stopping["enabled"] = False
    if way in ("none", "rerun"):
        stopping["patience"] = None
    lr = {"grid": list(GRIDS[lrs])} if lrs in GRIDS else {"loguniform": [0.002, 0.05]}
    grid = lrs in GRIDS
    # another trial seed, the same configurations: random draws also follow the sweep's seed, so there the rerun
    # trains both seeds and is judged on the second's trials only
    reseed = {} if way != "rerun" else {"seed": 1} if grid else {"seeds": 2}
    return {
        "name": "asha-efficiency", "storage": str(storage),  # one name: the same trial keys in every way
        **({"seed": 1} if reseed.get("seed") else {}),
        "domains": {"lm": {
            "data": {"train": "builtin:offline-english", "max_sentences": 5000, "vocab_size": 2000,
                     "max_valid_words": 4000, "max_valid_chars": 16000},
            "families": {"word": {"widths": [16] if quick else [16, 32]}},
            "hparams": {"lr": lr, "schedule": schedule},
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


def run_way(way: str, quick: bool, tmp: Path, asha: dict[str, Any], schedule: str, lrs: str) -> Outcome:
    storage = tmp / way
    outcome = run_sweep(parse_spec(sweep_spec(storage, way, quick, asha, schedule, lrs)), progress=False)
    table = ResultsStore(outcome.storage).read_results()
    if way == "rerun" and lrs not in GRIDS:  # both seeds trained: judge the second one's trials only
        table = table.filter(pc.equal(table["seed"], 1))
    rows = table.to_pylist()
    compute = sum((r["samples"] or 0.0) * (r["num_params"] or 0) for r in rows)
    fit = fit_store(table, n_boot=0)["lm"]["word"]
    points = aggregate(load_rows(table))
    out = Outcome(way, len(rows), sum(r["steps"] or 0 for r in rows), compute, outcome.tune_seconds,
                  fit.beta_g, fit.beta_p, {p.fraction: p.config_key for p in points},
                  {p.fraction: p.best_error for p in points})
    print(f"{way}: {out}", flush=True)  # each way as it ends: a long run cut short keeps what it measured
    return out


def delta(a: float | None, b: float | None) -> float:
    return abs(a - b) if a is not None and b is not None else math.nan


def same_best(r: Outcome, ref: Outcome) -> int:
    return sum(r.best.get(f) == k for f, k in ref.best.items())


def error_gap(r: Outcome, ref: Outcome) -> float:
    """The largest relative gap between a shard's best error and the reference's (non-zero where bests differ)."""
    return max((abs(r.error[f] / e - 1) for f, e in ref.error.items() if f in r.error), default=math.nan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 shards x 1 width x 6 learning rates, 150-step cap")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--grace-epochs", type=float, default=ASHA["grace_period"]["epochs"])
    ap.add_argument("--reduction-factor", type=float, default=ASHA["reduction_factor"])
    ap.add_argument("--per-width", action="store_true", help="ASHA groups per (shard, width), not per shard")
    ap.add_argument("--schedule", default="wsd", help="the learning-rate schedule of every trial (cosine, wsd, ...)")
    ap.add_argument("--lrs", choices=(*GRIDS, "random"), default="grid",
                    help=f"learning rates: a log-spaced grid {GRIDS}, or 6 log-uniform draws in [0.002, 0.05]")
    ap.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated subset of {WAYS} (none always runs)")
    ap.add_argument("--keep", type=Path, help="keep every way's storage under this folder (default: a temp folder)")
    args = ap.parse_args()
    ways = [w for w in WAYS if w in args.ways.split(",") or w == "none"]
    unknown = set(args.ways.split(",")) - set(WAYS)
    if unknown:
        ap.error(f"--ways: unknown {sorted(unknown)}; allowed: {', '.join(WAYS)}")
    asha = {**ASHA, "grace_period": {**ASHA["grace_period"], "epochs": args.grace_epochs},
            "reduction_factor": args.reduction_factor}
    if args.per_width:
        asha["group_by"] = ["domain", "family", "fraction", "width"]
    init_ray(num_cpus=args.cpus)
    with contextlib.ExitStack() as stack:
        tmp = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        # the reference first, then ASHA and the noise floor: a long run cut short keeps what matters most
        order = [w for w in ("none", "asha", "rerun", "patience") if w in ways]
        results = {way: run_way(way, args.quick, tmp, asha, args.schedule, args.lrs) for way in order}
    ref = results["none"]
    print(f"LM word sweep, {ref.trials} trials a way ({'quick' if args.quick else 'full'}, {args.schedule} "
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
        print(f"noise floor: no stopping under another trial seed picks the same best on {same_best(rerun, ref)}"
              f"/{len(ref.best)} shards (largest error gap {error_gap(rerun, ref):.2%})")
    if "asha" in results:
        r = results["asha"]
        same = same_best(r, ref) / len(ref.best)
        met = r.compute / ref.compute <= 0.25 and delta(r.beta_g, ref.beta_g) <= 0.01 and same >= 0.8
        print(f"issue 13 target (ASHA <= 25% compute, |dbeta_g| <= 0.01, same best on >= 80% of shards): "
              f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
