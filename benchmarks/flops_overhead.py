"""What counting a trial's training FLOPs costs: the quickstart LM's families and widths, count vs training.

``TrainingTask`` counts one step's forward + backward with ``FlopCounterMode`` on its first step (domains.flops:
fused RNN kernels off, the task copied, buffers and RNG put back). This times that count against the mean of
ordinary training steps, per family and width of ``orchestrator/sweeps/quickstart.yaml``'s LM part (its data, its
hyperparameters, one thread as its trials get), and prints the count as steps of training and as a share of a
trial that runs to the quickstart's ``max_steps``. Counts are cached per process; this clears the cache per task.

    python benchmarks/flops_overhead.py [--steps 40] [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domains import flops
from domains.base import TrialSetup
from domains.lm import LMDomain
from orchestrator.presets import preset_path
from orchestrator.spec import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="ordinary steps timed per task")
    parser.add_argument("--cache", default=None, help="prepared-data cache folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    part = load_spec(preset_path("quickstart")).domains["lm"]
    domain = LMDomain()
    cache = Path(args.cache or tempfile.mkdtemp(prefix="flops-overhead-"))
    data = domain.prepare(part.data, cache)
    print(f"{'family':<10} {'width':>5} {'GFLOP/step':>11} {'count s':>8} {'step s':>8} {'steps':>6} "
          f"{'of a max_steps trial':>21}")
    for family in part.family_specs():
        hparams, max_steps = part.hparams_for(family), part.stopping_for(family)["max_steps"]
        for width in part.widths_for(family):
            setup = TrialSetup(family=family, fraction=1.0, width=width, hparams=hparams, seed=0, threads=1)
            task = domain.build_task(data, setup)
            task.train(2)  # warm-up (first-call allocations), the count included
            flops._cache.clear()
            batch = task.next_batch(task.rank_share)
            began = time.perf_counter()
            figure = flops.count_step_flops(task, batch)
            counted = time.perf_counter() - began
            began = time.perf_counter()
            task.train(args.steps)
            step = (time.perf_counter() - began) / args.steps
            print(f"{family:<10} {width:>5} {figure / 1e9:>11.4f} {counted:>8.4f} {step:>8.4f} "
                  f"{counted / step:>6.2f} {counted / (step * max_steps):>21.2%}")


if __name__ == "__main__":
    main()
