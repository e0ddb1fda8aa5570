"""Training throughput per domain: `python benchmarks/throughput.py {nmt,image,speech} [options]`.

Each domain's measurement lives in `benchmarks/throughput_<domain>.py` (a `main(argv)`), because what is
counted differs: target tokens/s for NMT, images/s for image models, seconds of audio per second for speech.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

DOMAINS = ("nmt", "image", "speech")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in DOMAINS:
        print(f"usage: python benchmarks/throughput.py {{{','.join(DOMAINS)}}} [options]", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    return importlib.import_module(f"throughput_{argv[0]}").main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
