"""NMT training throughput (target tokens/s) per family at two widths, eager against ``torch.compile``.

    python benchmarks/throughput.py nmt [--widths 64 256] [--steps 40] [--threads 1] [--no-compile]

Each row trains the very task a trial builds (``NMTDomain.build_task``: same batches, optimizer, clipping) on
the offline gettext De→En corpus, first eagerly (the baseline, measured in the same run) and then with the model
under ``torch.compile(dynamic=True)`` (one graph for all sequence lengths instead of a recompile per shape).
Reported: steady-state target tokens/s after ``--warmup`` steps, their ratio, the compiled warm-up's extra
seconds (compiling; less once inductor's on-disk cache holds a similar graph, as for the second width of a
family) and the training steps after which compiling pays for itself. On CUDA (when available) it runs there,
with larger default widths; the domain's ``device`` is what Ray gives the trial.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from timing import sync, timed_train

from domains.base import TrialSetup
from domains.nmt import NMTDomain
from domains.nmt.task import NMTTask

FAMILIES = ("lstm", "transformer")


def measure(task: NMTTask, warmup: int, steps: int, device: str) -> tuple[float, float, float]:
    """(warm-up seconds, steady target tokens/s, steady seconds per step) of ``task.train``."""
    start = time.perf_counter()
    task.train(warmup)
    sync(device)
    warm = time.perf_counter() - start
    stats, elapsed = timed_train(task, steps, device)
    if not math.isfinite(stats.loss):
        raise RuntimeError(f"training diverged while benchmarking: {stats}")
    return warm, stats.samples / elapsed, elapsed / max(1, stats.steps)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="throughput.py nmt", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    ap.add_argument("--widths", type=int, nargs=2, default=[256, 1024] if cuda else [64, 256])
    ap.add_argument("--steps", type=int, default=40, help="timed steps per setting")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (they include compiling)")
    ap.add_argument("--batch-size", type=int, default=64 if cuda else 32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=8000 if cuda else 2000)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (a quickstart trial has 1)")
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    args = ap.parse_args(argv)
    device = "cuda" if cuda else "cpu"
    torch.set_num_threads(args.threads)
    domain = NMTDomain()
    with tempfile.TemporaryDirectory() as tmp:
        source = domain.source_model(train="builtin:offline-de-en", vocab_size=args.vocab, max_tokens=64,
                                     max_valid_pairs=100, bleu_pairs=10)
        data = domain.prepare(source, Path(tmp))
    where = torch.cuda.get_device_name() if cuda else f"CPU, {args.threads} thread(s)"
    print(f"NMT training throughput on {where}: offline De→En ({data.num_pairs} pairs, vocab {data.vocab_size}), "
          f"batch {args.batch_size} pairs, {args.layers} layers, {args.steps} timed steps after {args.warmup}")
    head = (f"{'family':<12} {'width':>5} {'params':>9} {'eager tok/s':>12} {'compiled tok/s':>15} {'ratio':>6} "
            f"{'compile warm-up s':>18} {'pays off after':>15}")
    print(head)
    print("-" * len(head))
    for family in FAMILIES:
        for width in args.widths:
            hp = {"batch_size": args.batch_size, "layers": args.layers, "lr": 1e-3}
            setup = TrialSetup(family=family, fraction=1.0, width=width, hparams=hp, seed=0, threads=args.threads,
                               device=device)
            eager = domain.build_task(data, setup)
            warm_e, tps_e, step_e = measure(eager, args.warmup, args.steps, device)
            row = f"{family:<12} {width:>5} {eager.num_params:>9,} {tps_e:>12,.0f}"
            if args.no_compile:
                print(row, flush=True)
                continue
            compiled = domain.build_task(data, setup)
            compiled.model = torch.compile(compiled.model, dynamic=True)
            warm_c, tps_c, step_c = measure(compiled, args.warmup, args.steps, device)
            extra, saved = max(0.0, warm_c - warm_e), step_e - step_c
            payoff = "never" if saved <= 0 else f"{extra / saved:,.0f} steps"
            print(f"{row} {tps_c:>15,.0f} {tps_c / tps_e:>5.2f}x {extra:>18.1f} {payoff:>15}", flush=True)
    return 0
