"""How long one family's fit takes, and what each stage of it costs, against the M2 baseline in the same run.

The service refits a family whenever one of its trials lands, so ``fit_family`` sits on the request path. This
times, on one synthetic sweep (8 shards × 30 trials, tests/fitting/synthetic.py) and best of ``--repeat`` runs:

* the M2 baseline (power + floor, robust in log space) on the 8 best-per-shard points;
* ``fit_family`` with ``n_boot=0`` (aggregate, form choice, best size, the averaged extrapolation and its three
  backtests; no parameter intervals) and with its defaults (all of that and the intervals);
* aggregating 10,000 trial rows to the best configuration per shard.

Figures are printed as seconds and as multiples of the M2 baseline measured here, since machines are noisy.

    python benchmarks/fit_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fitting.aggregate import aggregate, best_per_shard, load_rows, usable_trials
from fitting.curves import fit_family
from fitting.laws import fit_power_floor
from tests.fitting.synthetic import floor, sweep


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls after one warm-up call (imports, caches)."""
    fn()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def ten_thousand_rows() -> pa.Table:
    """10 shards × 5 widths × 4 learning rates × 50 seeds of one family, in the store's row layout."""
    rng = np.random.default_rng(0)
    rows = []
    for k in range(10):
        size = 1000 * 2**k
        for w in range(5):
            for lr in (1e-3, 3e-3, 1e-2, 3e-2):
                config = f"sw-lm-word-{size}-{w}-{lr:g}"
                for s in range(50):
                    value = float(np.exp(rng.normal(0, 0.05)))
                    rows.append({"trial_key": f"{config}-{s}", "config_key": config, "domain": "lm",
                                 "family": "word", "fraction": size / 512e3, "train_size": float(size),
                                 "width": 32 * 2**w, "num_params": 10 * 4**w, "hparams": json.dumps({"lr": lr}),
                                 "seed": s, "status": "completed", "metric": "val_loss", "best_value": value,
                                 "best_metrics": json.dumps({"val_loss": value})})
    return pa.Table.from_pylist(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    np.seterr(all="ignore")
    df = load_rows(sweep(floor))
    points = best_per_shard(usable_trials(df))
    m = np.array([p.train_size for p in points])
    e = np.array([p.best_error for p in points])
    base = best_time(lambda: fit_power_floor(m, e), args.repeat)
    stages = {
        "M2 power+floor on the 8 points (baseline)": base,
        "fit_family, n_boot=0 (no parameter intervals)": best_time(lambda: fit_family(df, n_boot=0), args.repeat),
        "fit_family, defaults": best_time(lambda: fit_family(df), args.repeat),
    }
    rows = load_rows(ten_thousand_rows())
    stages["aggregate 10,000 trial rows"] = best_time(lambda: aggregate(rows), args.repeat)
    print(f"{'stage':58s} {'seconds':>8s} {'× M2':>8s}")
    for label, seconds in stages.items():
        print(f"{label:58s} {seconds:8.4f} {seconds / base:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
