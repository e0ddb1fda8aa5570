"""Sweep metrics reach Ray's metrics endpoint (what the dashboard's Metrics view and Prometheus read)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from domains.lm.offline_corpus import TRAIN_GLOB, VALID_GLOB
from tests.s3_server import free_port

pytestmark = pytest.mark.slow


def test_trial_counts_best_metric_and_throughput_are_exported(corpus_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    script = textwrap.dedent(f'''
        import time, urllib.request, ray
        from orchestrator.runner import run_sweep
        from orchestrator.spec import parse_spec
        ray.init(num_cpus=2, include_dashboard=False, _metrics_export_port={port},
                 _system_config={{"metrics_report_interval_ms": 500}})
        spec = parse_spec({{"name": "metrics", "storage": "{tmp_path}", "domains": {{"lm": {{
            "data": {{"train": "{corpus_dir / TRAIN_GLOB}", "valid": "{corpus_dir / VALID_GLOB}",
                     "vocab_size": 500, "max_valid_words": 500, "max_valid_chars": 2000}},
            "families": ["word"], "shards": [0.5, 1.0], "widths": [8],
            "early_stopping": {{"grace_period": 10, "max_steps": 20, "eval_every": 10, "patience": None}}}}}}}})
        run_sweep(spec, progress=False)
        deadline = time.monotonic() + 60
        while True:
            text = urllib.request.urlopen("http://127.0.0.1:{port}/metrics").read().decode()
            lines = [ln for ln in text.splitlines() if ln.startswith("ray_scaling_sweep")]
            done = [ln for ln in lines if 'state="completed"' in ln and ln.endswith(" 2.0")]
            speed = [ln for ln in lines if ln.startswith("ray_scaling_sweep_samples_per_second")]
            if (done and speed) or time.monotonic() > deadline:
                break
            time.sleep(1)
        print("\\n".join(lines))
    ''')
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any('state="completed"' in ln and 'domain="lm"' in ln and ln.endswith(" 2.0") for ln in lines), lines
    best = [ln for ln in lines if ln.startswith("ray_scaling_sweep_best_metric") and 'metric="val_xent"' in ln]
    assert {'fraction="0.5"' in ln for ln in best} == {True, False}  # one gauge per shard
    assert all(0 < float(ln.rsplit(" ", 1)[1]) < 10 for ln in best)
    speed = [ln for ln in lines if ln.startswith("ray_scaling_sweep_samples_per_second")]
    assert speed and all(float(ln.rsplit(" ", 1)[1]) > 0 for ln in speed)
