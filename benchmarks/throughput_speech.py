"""Speech training throughput: seconds of audio trained per second of wall time, per family at two widths.

Trains each family on the builtin eSpeak corpus (real English read by eSpeak NG, 40 log-mel bins, batches
of 16 utterances of about 1.4 s) for a few warm-up steps, then times ``--steps`` optimizer steps. The
baseline is the smaller width of the same family on the same device, measured in the same run; the ratio
column is throughput / baseline. Runs on the CPU (``--threads`` threads) and, when CUDA is available, on the
GPU as well (synchronized before the clock is read).

    python benchmarks/throughput.py speech [--widths 64 256] [--steps 30] [--threads 1] [--cache DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from timing import timed_train

from domains.base import TrialSetup
from domains.speech import SpeechDomain
from domains.speech.data import SpeechData

HPARAMS = {
    "ds2": {"rnn_layers": 3, "rnn_type": "gru", "conv_channels": 32, "dropout": 0.1},
    "attention": {"enc_layers": 4, "dec_layers": 2, "conv_channels": 32, "dropout": 0.1},
}


def measure(data: SpeechData, family: str, width: int, device: str, steps: int, threads: int,
            batch_size: int) -> tuple[int, float]:
    """(parameters, seconds of audio per second) over ``steps`` steps after 3 warm-up steps."""
    setup = TrialSetup(family=family, fraction=1.0, width=width, seed=0, threads=threads, device=device,
                       hparams={**HPARAMS[family], "batch_size": batch_size})
    task = SpeechDomain().build_task(data, setup)
    task.train(3)
    stats, seconds = timed_train(task, steps, device)
    return task.num_params, stats.extra["audio_seconds"] / seconds


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="throughput.py speech", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs=2, default=[64, 256])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--families", nargs="+", default=["ds2", "attention"], choices=sorted(HPARAMS))
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "scaling-sweep" / "bench-speech")
    args = ap.parse_args(argv)
    domain = SpeechDomain()
    data = domain.prepare(domain.source_model(train="builtin:espeak", n_mels=40, espeak_max_words=4), args.cache)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"speech training throughput: {data.n_train} utterances ({data.shard_hours(1.0) * 3600:.0f} s of audio), "
          f"batch {args.batch_size}, {args.steps} timed steps, CPU threads {args.threads}")
    print(f"{'device':<7} {'family':<10} {'width':>6} {'params':>10} {'audio s/s':>10} {'vs baseline':>12}")
    for device in devices:
        for family in args.families:
            base = None
            for width in args.widths:
                params, rate = measure(data, family, width, device, args.steps, args.threads, args.batch_size)
                base = base or rate
                print(f"{device:<7} {family:<10} {width:>6} {params:>10,} {rate:>10.1f} {rate / base:>11.2f}x",
                      flush=True)
    if "cuda" not in devices:
        print("(no CUDA device here: GPU rows are measured only where one is available)")
    return 0
