"""LM prepare at scale: tokenizing throughput (words/s) and peak memory, parallel against one process, and the
peak memory of one trial on the prepared corpus, at several corpus sizes.

    nice python benchmarks/lm_prepare.py --words 5e6 50e6 --workdir /tmp/lm-prepare

For each size a corpus is generated in the Billion Word layout (100 training files ``news.en-000NN-of-00100``
and a held-out file): the offline English sentences (``domains.lm.offline_corpus``; ~69k distinct sentences)
drawn at random with replacement until the size is reached, the held-out file from sentences never drawn. Then,
each in a fresh process, so that peak memory is that run's alone:

* ``prepare`` with one process (the baseline) and with the default worker count (one per CPU), each on an empty
  cache: wall time of ``LMDomain.prepare``, training words/s, and the peak resident memory of the process tree
  (the driver plus its tokenizer processes, sampled from /proc every 50 ms). The two caches must be equal byte
  for byte (checked);
* one trial: a process that receives the prepared data as a pickle (as from Ray's object store), builds the
  word LSTM task on the full corpus (fraction 1, the largest shard: the worst case), trains ``--steps`` steps
  and evaluates once; its peak resident memory (``ru_maxrss``). Acceptance (issue 16): the trial's peak at the
  largest size is within 1.2x of its peak at the smallest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

FILES = 100
VALID_SENTENCES = 2000
PAGE = os.sysconf("SC_PAGE_SIZE")


def generate(out: Path, words: int, seed: int = 0) -> dict[str, Any]:
    """A Billion-Word-layout corpus of about ``words`` training words (without ``</s>``) under ``out``."""
    from domains.lm.offline_corpus import TRAIN_DIR, VALID_DIR, english_sentences

    done = out / "GENERATED.json"
    if done.is_file() and json.loads(done.read_text())["target_words"] == words:
        return json.loads(done.read_text())
    shutil.rmtree(out, ignore_errors=True)
    sentences = english_sentences()
    valid, base = sentences[:VALID_SENTENCES], sentences[VALID_SENTENCES:]
    lengths = np.array([len(s.split()) for s in base])
    rng = np.random.default_rng(seed)
    per_file, total, n_sentences = words // FILES, 0, 0
    (out / TRAIN_DIR).mkdir(parents=True)
    for k in range(FILES):
        picks = rng.integers(len(base), size=int(per_file / lengths.mean() * 1.1) + 10)
        count = int(np.searchsorted(np.cumsum(lengths[picks]), per_file)) + 1
        picks = picks[:count]
        total += int(lengths[picks].sum())
        n_sentences += len(picks)
        text = "".join(base[i] + "\n" for i in picks)
        (out / TRAIN_DIR / f"news.en-{k + 1:05d}-of-{FILES:05d}").write_text(text, encoding="utf-8")
    (out / VALID_DIR).mkdir(parents=True)
    (out / VALID_DIR / "news.en.heldout-00000-of-00001").write_text("".join(s + "\n" for s in valid),
                                                                    encoding="utf-8")
    info = {"target_words": words, "train_words": total, "train_sentences": n_sentences, "files": FILES,
            "bytes": sum(p.stat().st_size for p in (out / TRAIN_DIR).iterdir())}
    done.write_text(json.dumps(info))
    return info


def source(corpus: Path, workers: int | None) -> dict[str, Any]:
    from domains.lm.offline_corpus import TRAIN_GLOB, VALID_GLOB

    return {"train": str(corpus / TRAIN_GLOB), "valid": str(corpus / VALID_GLOB), "prepare_workers": workers}


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, from /proc."""
    parent, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)], rss[int(entry)] = int(fields[1]), int(fields[21]) * PAGE
    members, grew = {root}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in members} - members
        members |= more
        grew = bool(more)
    return sum(rss.get(p, 0) for p in members)


def run_measured(args: list[str]) -> tuple[dict[str, Any], int]:
    """Run ``python this_file args`` (niced like us); (its JSON result, the peak RSS of its process tree)."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{args[0]} failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1]), peak[0]


def child_prepare(corpus: str, cache: str, workers: str, pickle_to: str) -> None:
    from domains.lm import LMDomain

    domain = LMDomain()
    src = domain.source_model(**source(Path(corpus), None if workers == "auto" else int(workers)))
    start = time.perf_counter()
    data = domain.prepare(src, Path(cache))
    seconds = time.perf_counter() - start
    Path(pickle_to).write_bytes(pickle.dumps(data))
    print(json.dumps({"seconds": seconds, "train_words": int(data.meta["train_words"]),
                      "train_chars": int(data.meta["train_chars"]), "pickle_bytes": len(pickle.dumps(data)),
                      "self_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def child_trial(pickled: str, steps: str) -> None:
    import torch

    from domains.base import TrialSetup
    from domains.lm import LMDomain

    data = pickle.loads(Path(pickled).read_bytes())
    setup = TrialSetup(family="word", fraction=1.0, width=64, hparams={"batch_size": 16, "bptt": 32}, seed=0)
    task = LMDomain().build_task(data, setup)
    torch.set_num_threads(1)
    start = time.perf_counter()
    stats = task.train(int(steps))
    metrics = task.evaluate()
    print(json.dumps({"seconds": time.perf_counter() - start, "loss": stats.loss, **metrics,
                      "shard_words": len(task._stream),
                      "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.suffix == ".npy":
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def measure(size: int, work: Path, steps: int) -> dict[str, Any]:
    corpus = work / f"corpus-{size}"
    t0 = time.perf_counter()
    info = generate(corpus, size)
    print(f"\n{size:,} words: corpus of {info['train_words']:,} words, {info['train_sentences']:,} sentences, "
          f"{info['bytes'] / 1e6:.0f} MB in {FILES} files (generated or found in {time.perf_counter() - t0:.0f} s)",
          flush=True)
    row: dict[str, Any] = {"corpus": info}
    digests = {}
    for label, workers in (("single", "1"), ("parallel", "auto")):
        cache = work / f"cache-{size}-{label}"
        shutil.rmtree(cache, ignore_errors=True)
        result, peak = run_measured(["_prepare", str(corpus), str(cache), workers, str(work / f"data-{size}.pkl")])
        [folder] = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
        digests[label] = folder_digest(folder)
        rate = result["train_words"] / result["seconds"]
        row[label] = {**result, "peak_tree_rss": peak, "words_per_s": rate}
        print(f"  prepare {label:8s} ({workers:>4s} workers): {result['seconds']:6.1f} s, {rate / 1e6:5.2f} M words/s, "
              f"peak RSS {peak / 2**20:6.0f} MiB (driver alone {result['self_maxrss'] / 2**20:.0f} MiB), "
              f"LMData pickle {result['pickle_bytes']} bytes", flush=True)
        if label == "single":
            shutil.rmtree(cache)  # the parallel cache is the one the trial maps
    row["identical"] = digests["single"] == digests["parallel"]
    print(f"  parallel speed-up {row['single']['seconds'] / row['parallel']['seconds']:.2f}x; arrays identical: "
          f"{row['identical']}", flush=True)
    trial, _ = run_measured(["_trial", str(work / f"data-{size}.pkl"), str(steps)])
    row["trial"] = trial
    print(f"  trial (word LSTM w64, shard = whole corpus {trial['shard_words']:,} words, {steps} steps + eval): "
          f"peak RSS {trial['maxrss'] / 2**20:.0f} MiB, {trial['seconds']:.1f} s, val_xent {trial['val_xent']:.3f}",
          flush=True)
    return row


def main(argv: list[str]) -> int:
    if argv and argv[0] == "_prepare":
        child_prepare(*argv[1:])
        return 0
    if argv and argv[0] == "_trial":
        child_trial(*argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=float, nargs="+", default=[5e6, 50e6])
    parser.add_argument("--workdir", type=Path, default=None, help="kept between runs (corpora are reused)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lm-prepare-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"workdir {work}; CPUs usable: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f}")
    rows = {int(w): measure(int(w), work, args.steps) for w in args.words}
    sizes = sorted(rows)
    small, large = rows[sizes[0]]["trial"]["maxrss"], rows[sizes[-1]]["trial"]["maxrss"]
    ratio = large / small
    print(f"\ntrial peak RSS {sizes[-1]:,} vs {sizes[0]:,} words: {ratio:.3f}x "
          f"({'within' if ratio <= 1.2 else 'NOT within'} 1.2x)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "trial_ratio": ratio}, indent=1))
    return 0 if ratio <= 1.2 and all(r["identical"] for r in rows.values()) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1:]))
