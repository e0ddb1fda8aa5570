"""Image training throughput (images/s): `python benchmarks/throughput.py image [options]`.

Trains the ``resnet`` family through the domain's own task (data cursor, augmentation, normalization,
optimizer step and the per-step loss read-back included) and reports images per second:

* CPU, fp32 NCHW, at two widths; the ratio column is against the first width (the baseline);
* when CUDA is available, for each width: plain fp32 NCHW (baseline) vs channels_last + autocast (bfloat16
  where supported, else float16 with a gradient scaler), as trials run on a GPU.

The default data is scikit-learn's digits upscaled to ``--image-size`` (real images, nothing downloaded);
``--train`` takes any source the domain reads (an ImageNet folder measures decoding in DataLoader workers too).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from timing import timed_train

from domains.base import TrialSetup
from domains.image import ImageDomain
from domains.image.data import ImageData


def measure(data: ImageData, widths: list[int], *, depth: int, batch_size: int, steps: int, warmup: int,
            repeats: int, threads: int, device: str, fast: bool | None = None) -> list[dict[str, Any]]:
    """Images/s per width (``fast`` None: fp32 and channels_last + AMP as two rows per width).

    Runs are interleaved (round robin over the configurations, ``repeats`` rounds of ``steps`` steps after
    ``warmup`` steps each) and the best round is kept, so a neighbour's load hits every configuration alike.
    """
    modes = [False, True] if fast is None else [fast]
    tasks = []
    for w in widths:
        for m in modes:
            setup = TrialSetup("resnet", 1.0, w, {"depth": depth, "batch_size": batch_size}, seed=0,
                               threads=threads, device=device)
            task = ImageDomain().build_task(data, setup, channels_last=m, amp=m)
            task.train(warmup)
            tasks.append((w, m, task))
    best: dict[int, float] = {}
    images: dict[int, float] = {}
    for _ in range(repeats):
        for i, (_, _, task) in enumerate(tasks):
            stats, seconds = timed_train(task, steps, device)
            rate = stats.samples / seconds
            best[i], images[i] = max(best.get(i, 0.0), rate), stats.samples
    rows = []
    for i, (w, m, task) in enumerate(tasks):
        mode = f"channels_last + AMP ({str(task.amp_dtype).removeprefix('torch.')})" if m else "fp32 NCHW"
        rows.append({"device": device, "width": w, "params": task.num_params, "mode": mode, "steps": steps,
                     "repeats": repeats, "images": images[i], "images_per_s": best[i]})
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="throughput.py image", description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="builtin:digits", help="image source (default: builtin:digits)")
    parser.add_argument("--image-size", type=int, default=32, help="network input side (default 32)")
    parser.add_argument("--widths", type=int, nargs=2, default=[16, 32], help="two widths (first = baseline)")
    parser.add_argument("--depth", type=int, default=18)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed round on CPU")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the best is kept")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads per trial")
    parser.add_argument("--gpu-steps", type=int, default=50, help="steps per timed round on the GPU")
    parser.add_argument("--cache", default=None, help="prepare() cache folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        data = ImageDomain().prepare({"train": args.train, "image_size": args.image_size, "hflip": False},
                                     Path(args.cache or tmp))
        common = {"depth": args.depth, "batch_size": args.batch_size, "threads": args.threads}
        rows = measure(data, args.widths, steps=args.steps, warmup=args.warmup, repeats=args.repeats,
                       device="cpu", fast=False, **common)
        for r in rows:
            r["ratio"] = r["images_per_s"] / rows[0]["images_per_s"]
            r["baseline"] = f"cpu width {args.widths[0]}"
        if torch.cuda.is_available():
            gpu = measure(data, args.widths, steps=args.gpu_steps, warmup=5, repeats=args.repeats,
                          device="cuda", **common)
            for base, fast in zip(gpu[::2], gpu[1::2], strict=True):  # per width: fp32, then channels_last + AMP
                for r in (base, fast):
                    r["ratio"] = r["images_per_s"] / base["images_per_s"]
                    r["baseline"] = f"cuda fp32 width {base['width']}"
            rows += gpu
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (GPU rows skipped)"
    print(f"image training throughput: resnet depth {args.depth}, {args.image_size}x{args.image_size} inputs "
          f"({data.channels} channel(s)), batch {args.batch_size}, {args.threads} CPU thread(s); GPU: {gpu}")
    print(f"{'device':<6} {'width':>5} {'params':>10} {'mode':<34} {'images/s':>10} {'ratio':>6}  baseline")
    for r in rows:
        print(f"{r['device']:<6} {r['width']:>5} {r['params']:>10,} {r['mode']:<34} {r['images_per_s']:>10.1f} "
              f"{r['ratio']:>6.2f}  {r['baseline']}")
    return 0
