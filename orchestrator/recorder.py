"""Driver-side Tune callback that turns every finished trial into one row of the results store."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import time
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ray.tune import Callback, Stopper
from ray.tune.experiment import Trial

from fitting.store import ResultsStore
from orchestrator.contract import TrialPlan, TrialReport, trial_status
from sweepstore import redact

log = logging.getLogger(__name__)
WRITE_ATTEMPTS = 3  # a row write is tried this often (object stores fail transiently) before the sweep stops
RETRY_SECONDS = 1.0  # first pause between attempts; doubled each time

# Sweeps of this driver process that must stop, by storage, with the reason: results that cannot be written, or
# a storage lease another driver took over. ``StopRequested`` (pickled with the Tuner, so a restored Tuner has it
# too) ends the Tune run; the recorder stores no further rows.
_STOPS: dict[str, str] = {}


def request_stop(storage_uri: str, reason: str) -> None:
    """Stop the sweep on ``storage_uri`` as soon as Tune next looks (the first reason given is kept)."""
    _STOPS.setdefault(storage_uri, reason)


def stop_reason(storage_uri: str) -> str | None:
    """Why the sweep on ``storage_uri`` was asked to stop in this process, or None."""
    return _STOPS.get(storage_uri)


def clear_stop(storage_uri: str) -> None:
    """Forget an earlier stop (a new sweep run in the same process tries the store afresh)."""
    _STOPS.pop(storage_uri, None)


class StopRequested(Stopper):
    """Ends the whole Tune run once ``request_stop`` was called for its storage: further trials would be lost."""

    def __init__(self, storage_uri: str) -> None:
        self.storage_uri = storage_uri

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return stop_reason(self.storage_uri) is not None


@cache
def code_version() -> str:
    """Git commit of the checkout (with ``-dirty``), else the installed package version."""
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=repo,
                             capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        try:
            return version("scaling-sweep")
        except PackageNotFoundError:
            return "unknown"


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _finite_or_none(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def _placement(last: TrialReport | None) -> dict[str, Any]:
    """Node, GPU ids and wall-clock span of the attempt that sent the last result (None when it sent none)."""
    if last is None:
        return {"node_id": None, "gpu_ids": None, "run_started_at": None, "run_ended_at": None}
    ids = last.gpu_ids
    return {"node_id": last.node_id, "gpu_ids": None if ids is None else [g for g in ids.split(",") if g],
            "run_started_at": _utc(last.run_started_at) if last.run_started_at is not None else None,
            "run_ended_at": _utc(last.reported_at) if last.reported_at is not None else None}


def _error_text(trial: Trial) -> str:
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:2000] if lines else "trial failed (no error file)"


class ResultsRecorder(Callback):
    """Buffers per-iteration results and writes the trial's row and history when it finishes."""

    def __init__(self, storage_uri: str) -> None:
        self.storage_uri = storage_uri
        self._store: ResultsStore | None = None
        self._history: dict[str, dict[int, dict[str, Any]]] = {}
        self._last: dict[str, TrialReport] = {}
        self._first_seen: dict[str, float] = {}
        self.written = 0

    @property
    def store(self) -> ResultsStore:
        if self._store is None:
            self._store = ResultsStore(self.storage_uri)
        return self._store

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._first_seen.setdefault(trial.trial_id, time.time())

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        report = TrialReport.from_result(result)
        if report is None:
            return
        self._first_seen.setdefault(trial.trial_id, time.time() - report.elapsed)
        self._last[trial.trial_id] = report
        # keyed by our own iteration counter: a retried trial re-reports iterations after its checkpoint
        history = self._history.setdefault(trial.trial_id, {})
        history[report.iteration] = {
            "iteration": report.iteration, "steps": int(report.steps), "samples": float(report.samples),
            "train_loss": float(report.train_loss), "metrics": report.metrics, "train_extra": report.train_extra,
            "time": float(report.elapsed), "train_flops": report.train_flops,
        }
        # a restored trial re-sends what it did before its checkpoint: a resumed driver never saw those results
        for entry in json.loads(report.restored_history or "[]"):
            history.setdefault(int(entry["iteration"]), entry)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        last = self._last.get(trial.trial_id)
        self._write(trial, *trial_status(last), last)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._write(trial, "errored", "error", self._last.get(trial.trial_id), error=_error_text(trial))

    def _write(self, trial: Trial, status: str, reason: str, last: TrialReport | None,
               error: str | None = None) -> None:
        plan = TrialPlan.of(trial.config)
        best, final = (last.best, last.metrics) if last else ({}, {})
        elapsed = last.elapsed if last else 0.0
        now = time.time()
        started = self._first_seen.get(trial.trial_id, now - elapsed)
        row = {  # the store's columns (fitting.store.RESULT_SCHEMA): names kept, old stores stay readable
            "trial_key": plan.trial_key, "config_key": plan.config_key, "trial_id": trial.trial_id,
            "sweep": plan.sweep, "domain": plan.domain, "family": plan.family,
            "fraction": plan.fraction, "train_size": plan.train_size, "size_unit": plan.size_unit,
            "width": plan.width, "num_params": last.num_params if last else None, "hparams": plan.hparams,
            "seed": plan.seed, "status": status, "stop_reason": reason, "metric": plan.primary_metric,
            "best_value": _finite_or_none(best.get(plan.primary_metric, math.nan)),
            "best_metrics": best, "final_metrics": final,
            "steps": last.steps if last else 0, "samples": last.samples if last else 0.0,
            "iterations": last.iteration if last else 0, "restores": last.restores if last else 0,
            "wall_seconds": float(elapsed), "started_at": _utc(started), "finished_at": _utc(now),
            "code_version": code_version(), "error": error, **_placement(last),
            "non_embedding_params": last.non_embedding_params if last else None,
            "train_flops": last.train_flops if last else None, "flops_per_step": last.flops_per_step if last else None,
            # judged by the trial at its own end: none for a trial ASHA stopped or one that failed after it
            "converged": last.converged if last and status == "completed" else None,
        }
        history = sorted(self._history.pop(trial.trial_id, {}).values(), key=lambda h: h["iteration"])
        if stop_reason(self.storage_uri):
            # the sweep is stopping (the store failed, or another driver took it over): Tune ends the remaining
            # trials as terminated, and a row would record them as finished. Without one, `resume` runs them again.
            log.warning("trial %s not recorded: the sweep is stopping; resume runs it again", plan.trial_key)
            return
        pause = RETRY_SECONDS
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:  # each file is replaced atomically: a failed attempt leaves the old file or none, never half
                self.store.write_trial(row, history)
                self.written += 1
                return
            except OSError as exc:
                if attempt == WRITE_ATTEMPTS:
                    request_stop(self.storage_uri, f"trial results could not be written to "
                                                   f"{redact(self.storage_uri)} ({type(exc).__name__}: {exc}); free "
                                                   f"space or fix access")
                    log.error("could not write the results of trial %s to %s after %d attempts (%s); stopping the "
                              "sweep: free space or fix access, then resume", plan.trial_key,
                              redact(self.storage_uri), attempt, exc)
                    return
                log.warning("writing the results of trial %s failed (%s); retrying in %.0f s", plan.trial_key,
                            exc, pause)
                time.sleep(pause)
                pause *= 2
            except Exception:  # a bad row, not a bad store: never lose the sweep over it; logged for recovery
                log.exception("could not write results for trial %s: %s", plan.trial_key, row)
                return
