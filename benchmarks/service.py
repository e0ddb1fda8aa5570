"""Latency and throughput of the fitting service over a store of 10,000 trials, against no-cache baselines.

Writes 10,000 synthetic trials (4 domains, 2–3 families each, 8 nested shards, widths × learning rates ×
seeds, one Parquet file per trial in the store's schema) into a temporary store, starts ``python -m
fitting.service`` in a subprocess on loopback and measures, over real HTTP:

* indexing at start (every file read once) and the cold first ``GET /curves/{domain}`` (rows + fits);
* warm ``GET /curves/{domain}`` p50/p99 over sequential keep-alive requests;
* requests/s and latency under concurrent load from a second process (raw asyncio HTTP/1.1 keep-alive client);
* the next request after one new trial lands (incremental read, one family refitted);

and, in this process on the same store, what a handler without the index and caches would pay per request:
re-read the whole store and refit (the naive baseline), or keep the rows but refit (no fit cache).

    python benchmarks/service.py [--trials 10000] [--requests 300] [--concurrency 8] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

from fitting.service.engine import CurvesEngine
from fitting.store import ResultsStore

# (domain, size unit, [(family, primary metric, α, β_g, γ)])
DOMAINS = [
    ("lm", "words", [("word", "val_xent", 40.0, -0.066 * 3, 2.0), ("char", "val_bpc", 12.0, -0.094 * 2, 0.6)]),
    ("nmt", "tokens", [("lstm", "val_xent", 30.0, -0.13 * 2, 1.0), ("transformer", "val_xent", 25.0, -0.3, 0.8)]),
    ("image", "images", [("resnet", "val_top1_error", 20.0, -0.309, 0.05),
                         ("wide_resnet", "val_top1_error", 18.0, -0.309, 0.04),
                         ("vgg", "val_top1_error", 24.0, -0.28, 0.06)]),
    ("speech", "hours", [("ds2", "val_cer", 3.0, -0.299, 0.02), ("attention", "val_cer", 3.5, -0.3, 0.02)]),
]
SHARDS = [2.0 ** -k for k in range(7, -1, -1)]  # 8 nested fractions
WIDTHS = (32, 64, 128, 256, 512)
LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
SEEDS = 3  # at least; more when a shard needs more trials than widths × lrs × 3
FULL_SIZE = 1.0e7


def _rows(total: int) -> list[dict[str, Any]]:
    """``total`` trial rows spread evenly over domains, families and shards (widths × lrs × seeds each)."""
    rng = np.random.default_rng(0)
    now = datetime.now(tz=UTC)
    families = [(d, unit, f) for d, unit, fams in DOMAINS for f in fams]
    rows: list[dict[str, Any]] = []
    for i, (domain, unit, (family, metric, alpha, beta, gamma)) in enumerate(families):
        n_family = total // len(families) + (1 if i < total % len(families) else 0)
        for j, frac in enumerate(SHARDS):
            m = frac * FULL_SIZE
            ideal = 3.0 * m**0.6
            n_shard = n_family // len(SHARDS) + (1 if j < n_family % len(SHARDS) else 0)
            seeds = max(SEEDS, math.ceil(n_shard / (len(WIDTHS) * len(LRS))))
            combos = [(w, lr, s) for s in range(seeds) for w in WIDTHS for lr in LRS][:n_shard]
            for width, lr, seed in combos:
                ratio = width / 128
                penalty = 1 + 0.1 * math.log2(ratio) ** 2 + 0.05 * abs(math.log10(lr / 1e-3))
                value = float((alpha * m**beta + gamma) * penalty * math.exp(rng.normal(0, 0.03)))
                config = f"{domain}-{family}-{frac:g}-{width}-{lr:g}"
                best = {metric: value}
                if domain == "image":
                    best["val_top5_error"] = value * 0.45
                rows.append({
                    "trial_key": f"{config}-s{seed}", "config_key": config, "trial_id": f"t{len(rows):05d}",
                    "sweep": "bench", "domain": domain, "family": family, "fraction": frac, "train_size": m,
                    "size_unit": unit, "width": width, "num_params": round(ideal * ratio),
                    "hparams": json.dumps({"lr": lr}), "seed": seed, "status": "completed",
                    "stop_reason": "patience", "metric": metric, "best_value": value,
                    "best_metrics": json.dumps(best), "final_metrics": json.dumps(best), "steps": 1000,
                    "samples": m, "iterations": 10, "restores": 0, "wall_seconds": 60.0, "started_at": now,
                    "finished_at": now, "code_version": "bench", "error": None,
                })
    return rows


def _write_chunk(args: tuple[str, list[dict[str, Any]]]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fitting.store import RESULT_SCHEMA

    results_dir, rows = args
    for row in rows:
        pq.write_table(pa.Table.from_pylist([row], schema=RESULT_SCHEMA), f"{results_dir}/{row['trial_key']}.parquet")
    return len(rows)


def write_store(root: Path, total: int) -> float:
    """One Parquet file per trial under ``root/results`` (the store's layout and schema), in 2 processes."""
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    rows = _rows(total)
    t0 = time.perf_counter()
    with Pool(2) as pool:
        written = sum(pool.map(_write_chunk, [(str(results), rows[i::8]) for i in range(8)]))
    assert written == total == len(list(results.glob("*.parquet")))
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------ clients
class Client:
    """Sequential keep-alive HTTP/1.1 client (http.client: little overhead on the measuring side)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str) -> tuple[int, bytes, float]:
        try:
            return self._get(path)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()  # the server closed an idle keep-alive connection: reconnect once
            return self._get(path)

    def _get(self, path: str) -> tuple[int, bytes, float]:
        t0 = time.perf_counter()
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        body = resp.read()
        return resp.status, body, time.perf_counter() - t0


async def _worker(port: int, paths: list[str], deadline: float, lat: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    while time.perf_counter() < deadline:
        path = paths[i % len(paths)]
        i += 1
        t0 = time.perf_counter()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        lat.append(time.perf_counter() - t0)
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(1)
    writer.close()


async def _load(port: int, paths: list[str], concurrency: int, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    errors: list[int] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_worker(port, paths, t0 + seconds, lat, errors) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    q = np.quantile(np.array(lat), [0.5, 0.99])
    return {"requests": len(lat), "rps": len(lat) / wall, "p50": float(q[0]), "p99": float(q[1]),
            "errors": len(errors)}


def load_client_main(argv: list[str]) -> None:
    """Entry of the second process: raw asyncio keep-alive connections, results as JSON on stdout."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args(argv)
    print(json.dumps(asyncio.run(_load(args.port, args.paths, args.concurrency, args.seconds))))


# ---------------------------------------------------------------------------------------------- baselines
def naive_request(root: str, domain: str, n_boot: int) -> float:
    """What a handler without index or caches does: read every file, fit each family of the domain, serialize."""
    import pyarrow.compute as pc

    from fitting.aggregate import load_rows
    from fitting.curves import fit_family
    from fitting.report import to_json
    from fitting.service.fits import extrapolation_check

    t0 = time.perf_counter()
    table = ResultsStore(root).read_results()
    rows = load_rows(table.filter(pc.equal(table["domain"], domain)))
    fits = []
    for _, sub in rows.groupby("family"):
        fit = fit_family(sub, n_boot=n_boot)
        extrapolation_check(fit)
        fits.append(fit)
    json.dumps(to_json(fits))
    return time.perf_counter() - t0


def refit_request(engine: Any, domain: str) -> float:
    """Rows kept in memory, but every request refits (a fit cache that never hits)."""
    from fitting.service.fits import FitCache

    t0 = time.perf_counter()
    engine.fits = FitCache(n_boot=engine.fits.n_boot)
    engine._responses.clear()
    engine.curves(domain)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------------- main
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(client: Client, proc: subprocess.Popen, timeout: float = 300) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            status, body, _ = client.get("/healthz")
            if status == 200 and json.loads(body)["ready"]:
                return time.perf_counter() - t0
        except (ConnectionError, OSError, http.client.HTTPException):
            client.conn.close()
        time.sleep(0.02)
    raise TimeoutError("server not ready")


def _rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MB; NaN elsewhere."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return math.nan


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load-client":
        load_client_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=300, help="sequential warm requests")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of the concurrent load")
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--baseline-requests", type=int, default=1, help="naive full re-read + refit requests")
    args = ap.parse_args()
    domains = [d for d, _, _ in DOMAINS]
    load_before = os.getloadavg()[0]
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        write_s = write_store(root, args.trials)
        print(f"wrote {args.trials} trials ({len(domains)} domains) in {write_s:.1f} s", flush=True)
        port = _free_port()
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115 (closed below, after the server)
        t_spawn = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "fitting.service", "--results", str(root), "--port",
                                 str(port), "--bootstrap", str(args.bootstrap)], stdout=log, stderr=log,
                                env=env, cwd=repo)
        try:
            client = Client(port)
            _wait_ready(client, proc)
            ready_s = time.perf_counter() - t_spawn
            metrics = client.get("/metrics")[1].decode()
            index_s = float(next(line.split()[-1] for line in metrics.splitlines()
                                 if line.startswith("scaling_sweep_store_refresh_duration_seconds_sum")))
            rss_indexed = _rss_mb(proc.pid)
            cold, totals = {}, {}
            for d in domains:
                status, body, cold[d] = client.get(f"/curves/{d}")
                assert status == 200, status
                totals[d] = json.loads(body)["trials"]["total"]
            warm = []
            for i in range(args.requests):
                status, _, dt = client.get(f"/curves/{domains[i % len(domains)]}")
                assert status == 200
                warm.append(dt)
            paths = [f"/curves/{d}" for d in domains]
            out = subprocess.run([sys.executable, __file__, "--load-client", "--port", str(port), "--concurrency",
                                  str(args.concurrency), "--seconds", str(args.seconds), *paths],
                                 capture_output=True, text=True, check=True, env=env, cwd=repo)
            load = json.loads(out.stdout)
            # one more trial lands (atomically, as a sweep writes it): the next request sees it
            late = next(r for r in _rows(64) if r["domain"] == "lm")
            ResultsStore(str(root)).write_trial({**late, "trial_key": "lm-late-trial", "best_value": 0.5 * late[
                "best_value"]})
            status, body, live_s = client.get("/curves/lm")
            assert status == 200 and json.loads(body)["trials"]["total"] == totals["lm"] + 1
            _, _, after_live = client.get("/curves/lm")
            _, svg, plot_cold = client.get("/curves/lm/plot.svg")
            _, _, plot_warm = client.get("/curves/lm/plot.svg")
            rss_end = _rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()

        t0 = time.perf_counter()
        ResultsStore(str(root)).list_files()
        listing_s = time.perf_counter() - t0
        engine = CurvesEngine(str(root), n_boot=args.bootstrap)
        engine.index.refresh(force=True)
        engine.curves("lm")
        refit = statistics.median(refit_request(engine, "lm") for _ in range(3))
        naive = statistics.median(naive_request(str(root), "lm", args.bootstrap)
                                  for _ in range(args.baseline_requests))
        engine.close()

    p50, p99 = (float(v) for v in np.quantile(np.array(warm), [0.5, 0.99]))
    cold_max = max(cold.values())
    print()
    print(f"fitting service, {args.trials} trials over {len(domains)} domains, {os.cpu_count()} CPUs, "
          f"{args.bootstrap} bootstrap replicates; load average at start {load_before:.1f}, "
          f"at end {os.getloadavg()[0]:.1f}")
    rows = [
        ("start: server up and every results file indexed", _ms(ready_s), f"of which indexing {_ms(index_s)} "
         f"({index_s / args.trials * 1e3:.2f} ms/file)"),
        (f"cold first GET /curves/{{domain}} (max over {len(domains)}; lm)", f"{_ms(cold_max)}; {_ms(cold['lm'])}",
         "target <= 1 s"),
        (f"warm GET /curves/{{domain}} p50 ({args.requests} sequential)", _ms(p50), ""),
        (f"warm GET /curves/{{domain}} p99 ({args.requests} sequential)", _ms(p99), "target <= 20 ms"),
        (f"concurrent load: {args.concurrency} connections, 2nd process",
         f"{load['rps']:.0f} req/s", f"p50 {_ms(load['p50'])}, p99 {_ms(load['p99'])}, errors {load['errors']}"),
        ("next GET after 1 new trial (read 1 file, refit 1 family)", _ms(live_s),
         f"then {_ms(after_live)} (one more listing), naive {naive / live_s:.0f}x slower"),
        ("GET /curves/lm/plot.svg cold / warm", f"{_ms(plot_cold)} / {_ms(plot_warm)}", f"{len(svg) // 1024} KiB"),
        ("baseline: re-read whole store + refit per request", _ms(naive),
         f"{naive / p50:.0f}x warm p50, {naive / cold['lm']:.0f}x cold lm"),
        ("baseline: rows in memory, refit per request", _ms(refit), f"{refit / p50:.0f}x warm p50"),
        ("one full listing of the store (avoided per request)", _ms(listing_s), f"{listing_s / p50:.1f}x warm p50"),
        ("server memory (RSS) indexed / at the end", f"{rss_indexed:.0f} / {rss_end:.0f} MB", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>18}  note")
    print("-" * (width + 50))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>18}  {note}")
    ok = p99 <= 0.020 and cold_max <= 1.0
    print(f"\ntargets {'met' if ok else 'MISSED'}: warm p99 {_ms(p99)} (<= 20 ms), cold {_ms(cold_max)} (<= 1 s)")


if __name__ == "__main__":
    main()
