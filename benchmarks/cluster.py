"""Scheduling throughput and GPU-slot utilization on a simulated GPU cluster, against plain Ray Tune defaults.

Starts a CPU head plus GPU worker nodes (``tests/ray_cluster.py``: real Ray nodes on this machine declaring GPUs)
and runs the same N short real LM trials twice, each from its own driver process joined through ``RAY_ADDRESS``:

* scaling-sweep: ``scaling-sweep run`` (actors reused, per-group ASHA, per-trial resources by width);
* Tune defaults: a ``tune.Tuner`` over the same trainable, trial configurations and resources, with Tune's own
  ``ASHAScheduler`` on the same rungs (one for the whole sweep) and otherwise a default ``TuneConfig`` (a fresh
  actor per trial); the results recorder is its only callback.

Both are measured from their results rows: trials started per second and GPU-slot utilization, from the first
trial's start to the last one's (while trials were queued; ``orchestrator.utilization``). Small widths ask for a
quarter GPU, the largest for a whole one.

    python benchmarks/cluster.py [--trials 500] [--steps 40] [--gpu-nodes 2] [--one-shape] [--no-baseline]
                                 [--no-tune-loggers]

On 2 cores the baseline is the slow part: a fresh actor per trial costs ~5 s of imports, so 100 trials take
~10 minutes in all and 500 about an hour.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from domains.lm.offline_corpus import TRAIN_GLOB, VALID_GLOB, write_corpus
from fitting.store import ResultsStore
from orchestrator.plan import plan_trials, resolve_domains
from orchestrator.spec import parse_spec
from orchestrator.utilization import busy_fraction, oversubscribed, queued_window, spans, started_per_second

WIDTHS = [8, 16, 32, 64]  # 64 takes a whole GPU


def spec(corpus: Path, storage: Path, trials: int, steps: int, one_shape: bool = False) -> dict[str, Any]:
    """``trials`` trials: 4 widths x trials/4 learning rates on the full shard, ASHA over 2 rungs; width 64 on a
    whole GPU unless ``one_shape``."""
    lrs = math.ceil(trials / len(WIDTHS))
    return {
        "name": "cluster-bench", "storage": str(storage),
        "domains": {"lm": {
            "data": {"train": str(corpus / TRAIN_GLOB), "valid": str(corpus / VALID_GLOB), "vocab_size": 500,
                     "max_valid_words": 200, "max_valid_chars": 800},
            "families": ["word"], "shards": [1.0], "widths": WIDTHS,
            "hparams": {"batch_size": 8, "bptt": 16, "lr": {"grid": [round(1e-4 * (i + 1), 6) for i in range(lrs)]}},
            "resources": {"cpu": 1, "gpu": 0.25, "rules": [] if one_shape else [{"min_width": 64, "gpu": 1}]},
            "early_stopping": {"grace_period": steps // 2, "max_steps": steps, "eval_every": steps // 2,
                               "patience": None},
        }},
    }


def tune_defaults_driver(spec_file: Path) -> None:
    """Driver process of the baseline: the sweep's trials through a default ``tune.Tuner``."""
    from dataclasses import replace

    import ray
    from ray import tune

    from orchestrator.recorder import ResultsRecorder
    from orchestrator.runner import init_ray, prepare_domains, trial_resources
    from orchestrator.trainable import run_trial

    s = parse_spec(yaml.safe_load(spec_file.read_text()))
    domains = resolve_domains(s)
    prepared = prepare_domains(domains, s.storage)
    trials = [replace(t, train_size=domains[t.domain].plugin.train_size(prepared[t.domain], t.fraction, t.family))
              for t in plan_trials(s, domains)]
    init_ray()  # joins RAY_ADDRESS
    refs = {name: ray.put(p) for name, p in prepared.items()}
    trainable = tune.with_resources(tune.with_parameters(run_trial, prepared_refs=refs), trial_resources)
    stopping = s.domains["lm"].early_stopping
    # Tune's own ASHA over the same rungs, one for the whole sweep; everything else at Tune's defaults (a fresh
    # actor per trial)
    asha = tune.schedulers.ASHAScheduler(time_attr="steps", metric="objective", mode="min",
                                         max_t=s.domains["lm"].max_steps(), grace_period=stopping.grace_period,
                                         reduction_factor=stopping.reduction_factor)
    tuner = tune.Tuner(trainable, param_space={"trial": tune.grid_search([t.to_config() for t in trials])},
                       tune_config=tune.TuneConfig(scheduler=asha),
                       run_config=tune.RunConfig(name="tune-defaults", storage_path=f"{s.storage}/tune",
                                                 callbacks=[ResultsRecorder(s.storage)], verbose=0))
    tuner.fit()


@dataclass
class Measured:
    label: str
    wall: float  # driver process, start to exit
    window: float  # first trial start to last trial start
    started_per_s: float
    utilization: float


def measure(label: str, command: list[str], env: dict[str, str], storage: Path, gpu_of: dict[str, float],
            gpus: dict[str, float]) -> Measured:
    t0 = time.monotonic()
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if out.returncode != 0:
        raise SystemExit(f"{label} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    rows = ResultsStore(str(storage)).read_results().to_pylist()
    if sorted(r["trial_key"] for r in rows) != sorted(gpu_of):
        raise SystemExit(f"{label}: {len(rows)} rows for {len(gpu_of)} planned trials")
    items = spans(rows, lambda row: gpu_of[row["trial_key"]])
    if problems := oversubscribed(items, gpus):
        raise SystemExit(f"{label}: GPU oversubscribed: {problems[:5]}")
    lo, hi = queued_window(items)
    return Measured(label, wall, hi - lo, started_per_second(items), busy_fraction(items, sum(gpus.values())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=500, help="rounded up to a multiple of 4")
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per trial (ASHA rung at half)")
    ap.add_argument("--gpu-nodes", type=int, default=2, help="worker nodes with 1 GPU and 4 CPUs each")
    ap.add_argument("--one-shape", action="store_true",
                    help="every width on a quarter GPU: no actor restarts between resource shapes")
    ap.add_argument("--no-baseline", action="store_true", help="scaling-sweep only (the baseline is the slow part)")
    ap.add_argument("--no-tune-loggers", action="store_true",
                    help="both drivers without Tune's per-trial CSV/JSON/TensorBoard files")
    ap.add_argument("--tune-defaults-driver", type=Path, help=argparse.SUPPRESS)  # internal: baseline driver
    args = ap.parse_args()
    if args.tune_defaults_driver:
        tune_defaults_driver(args.tune_defaults_driver)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the cluster harness lives under tests/
    from tests.ray_cluster import ray_cluster

    with tempfile.TemporaryDirectory(prefix="cluster-bench") as tmp:
        root = Path(tmp)
        corpus = write_corpus(root / "corpus", max_sentences=2000, valid_sentences=200)
        specs = {}
        for label in ("scaling-sweep", "tune-defaults"):
            data = spec(corpus, root / label, args.trials, args.steps, args.one_shape)
            (root / f"{label}.yaml").write_text(yaml.safe_dump(data))
            specs[label] = data
        parsed = parse_spec(specs["scaling-sweep"])
        planned = plan_trials(parsed, resolve_domains(parsed))
        gpu_of = {t.trial_key: float(t.resources["gpu"]) for t in planned}
        with ray_cluster(gpu_nodes=args.gpu_nodes, gpus_per_node=1, cpus_per_node=4) as cluster:
            env = {**cluster.env, **({"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"} if args.no_tune_loggers else {})}
            gpus = dict(cluster.gpus)
            ours = measure("scaling-sweep", [str(Path(sys.executable).parent / "scaling-sweep"), "run",
                                             str(root / "scaling-sweep.yaml"), "--quiet", "--bootstrap", "20"],
                           env, root / "scaling-sweep", gpu_of, gpus)
            base = None if args.no_baseline else measure(
                "tune-defaults", [sys.executable, __file__, "--tune-defaults-driver", str(root / "tune-defaults.yaml")],
                env, root / "tune-defaults", gpu_of, gpus)
    shapes = "every width a quarter GPU" if args.one_shape else "width 64 a whole GPU, others a quarter"
    print(f"{len(planned)} short LM trials ({args.steps} steps) on {args.gpu_nodes} simulated GPU nodes "
          f"({sum(gpus.values()):g} GPUs; {shapes}); Tune loggers {'off' if args.no_tune_loggers else 'on'}")
    print(f"{'setting':<16} {'driver s':>9} {'queued s':>9} {'trials started/s':>17} {'GPU-slot util':>14}")
    for m in (base, ours):
        if m is not None:
            print(f"{m.label:<16} {m.wall:>9.1f} {m.window:>9.1f} {m.started_per_s:>17.2f} {m.utilization:>14.3f}")
    if base is None:
        return
    print(f"scaling-sweep / Tune defaults: {ours.started_per_s / base.started_per_s:.1f}x trials started per second, "
          f"{ours.utilization / base.utilization:.2f}x GPU-slot utilization, "
          f"{base.wall / ours.wall:.1f}x faster end to end")


if __name__ == "__main__":
    main()
