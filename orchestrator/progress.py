"""A compact progress display: trials running / done / stopped per domain, one line per change.

An adaptive sweep adds its own lines (``extra``): per family the live β_g and β_p with their intervals, and the
compute spent against the budget, printed whenever they change (terminal and ``ray job logs`` alike)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from orchestrator.contract import TrialPlan, TrialReport, trial_status


class ProgressDisplay(Callback):
    """Prints per-domain trial counts when they change (at most every ``every`` seconds) and at the end."""

    def __init__(self, total: int, every: float = 5.0, out: TextIO | None = None,
                 extra: Callable[[], list[str]] | None = None) -> None:
        self.total = total
        self.extra = extra
        self._last_extra: list[str] = []
        self.every = every
        self._out = out  # None: whatever sys.stdout is when printing (a stream object would not pickle)
        self._start = time.monotonic()
        self._last_print = 0.0
        self._last_line = ""
        self._outcomes: dict[str, Counter[str]] = {}

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    def _domain(self, trial: Trial) -> str:
        return TrialPlan.of(trial.config).domain

    def record_outcome(self, trial: Trial, result: dict[str, Any] | None, errored: bool = False) -> None:
        outcome = "errored" if errored else trial_status(TrialReport.from_result(result))[0]
        self._outcomes.setdefault(self._domain(trial), Counter())[outcome] += 1

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.record_outcome(trial, trial.last_result)
        self._maybe_print(trials, force=False)
        self.print_extra()  # a finished trial refits the adaptive sweep's families

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.record_outcome(trial, trial.last_result, errored=True)
        self._maybe_print(trials, force=False)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._maybe_print(trials, force=False)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._maybe_print(trials, force=True)

    def line(self, trials: list[Trial]) -> str:
        running: Counter[str] = Counter()
        pending: Counter[str] = Counter()
        for t in trials:
            if t.status == Trial.RUNNING:
                running[self._domain(t)] += 1
            elif t.status in (Trial.PENDING, Trial.PAUSED):
                pending[self._domain(t)] += 1
        parts = []
        for d in sorted(set(running) | set(pending) | set(self._outcomes)):
            o = self._outcomes.get(d, Counter())
            parts.append(f"{d}: {running[d]} running, {pending[d]} pending, {o['completed']} completed, "
                         f"{o['stopped']} stopped early, {o['diverged']} diverged, {o['errored']} errored")
        done = sum(sum(c.values()) for c in self._outcomes.values())
        of = f"/{self.total}" if self.total else ""  # an adaptive sweep does not know its total in advance
        return f"[{time.monotonic() - self._start:6.0f}s] {done}{of} done | " + " | ".join(parts)

    def _maybe_print(self, trials: list[Trial], force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_print < self.every:
            return
        line = self.line(trials)
        if line.split("|", 1)[1] == self._last_line.split("|", 1)[-1] and not force:
            return
        self._last_print, self._last_line = now, line
        print(line, file=self.out, flush=True)
        self.print_extra()

    def print_extra(self) -> None:
        """The adaptive sweep's live fits and compute, when they changed since last printed."""
        if self.extra is None:
            return
        lines = self.extra()
        if lines != self._last_extra:
            self._last_extra = lines
            for text in lines:
                print(f"         {text}", file=self.out, flush=True)
