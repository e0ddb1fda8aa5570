"""Per-trial scheduling overhead of a sweep, against plain Ray Tune defaults in the same run.

Runs the same N short real LM trials twice on local Ray: once as scaling-sweep runs them (actors reused,
per-group ASHA, results recorder) and once with Tune's default of a fresh actor per trial. Overhead per
trial = (Tuner.fit wall time x concurrency - summed trial wall time) / N. Prints both and their ratio.

    python benchmarks/overhead.py [--trials 30] [--cpus 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from domains.lm.offline_corpus import TRAIN_GLOB, VALID_GLOB, write_corpus
from fitting.store import ResultsStore
from orchestrator.runner import init_ray, run_sweep
from orchestrator.spec import parse_spec


def spec(corpus: Path, storage: Path, trials: int) -> dict:
    return {
        "name": "overhead", "storage": str(storage),
        "domains": {"lm": {
            "data": {"train": str(corpus / TRAIN_GLOB), "valid": str(corpus / VALID_GLOB), "vocab_size": 500,
                     "max_valid_words": 200, "max_valid_chars": 800},
            "families": ["word"], "shards": [1.0], "widths": [8],
            "hparams": {"batch_size": 4, "bptt": 8, "lr": {"grid": [0.001 * (i + 1) for i in range(trials)]}},
            "early_stopping": {"grace_period": 2, "max_steps": 4, "eval_every": 2, "patience": None},
        }},
    }


def measure(corpus: Path, trials: int, cpus: int, reuse: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_sweep(parse_spec(spec(corpus, Path(tmp), trials)), progress=False, reuse_actors=reuse)
        rows = ResultsStore(outcome.storage).read_results().to_pylist()
        assert len(rows) == trials, f"expected {trials} rows, got {len(rows)}"
        busy = sum(r["wall_seconds"] for r in rows)
        return outcome.tune_seconds, (outcome.tune_seconds * cpus - busy) / trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus", max_sentences=2000, valid_sentences=200)
        init_ray(num_cpus=args.cpus)
        measure(corpus, 4, args.cpus, True)  # warm-up: imports, first actors
        base_wall, base_per = measure(corpus, args.trials, args.cpus, reuse=False)
        ours_wall, ours_per = measure(corpus, args.trials, args.cpus, reuse=True)
    print(f"{args.trials} short LM trials on {args.cpus} CPUs")
    print(f"{'setting':<36} {'Tuner.fit s':>12} {'overhead s/trial':>17}")
    print(f"{'Tune defaults (fresh actor/trial)':<36} {base_wall:>12.1f} {base_per:>17.2f}")
    print(f"{'scaling-sweep (reused actors)':<36} {ours_wall:>12.1f} {ours_per:>17.2f}")
    ratio = base_per / max(ours_per, 1e-9)
    print(f"speed-up of the whole fit: {base_wall / ours_wall:.1f}x; overhead ratio: {ratio:.1f}x")


if __name__ == "__main__":
    main()
