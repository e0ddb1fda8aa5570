"""The train/evaluate loop every domain's task shares; a domain supplies batches, a loss and its metrics.

``TrainingTask.train`` owns the step: the next batch (this replica's share of it, ``Task.rank_share``), the
learning rate of the step (``HParams.lr_at``), the loss, backward, the data-parallel gradient average
(``Task.synced``), clipping, the update, the divergence watch and what the call consumed. ``evaluate`` owns eval
mode and the NaN metrics of a diverged run; ``start_cooldown`` anneals a plateaued wsd run before patience stops
it; ``state_dict`` owns model, optimizer, RNG streams, step count, the divergence flag, the cooldown and the FLOPs
of a step (counted on the first step trained, ``domains.flops``). A domain's task
implements the hooks below the line ``--- hooks``.
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from domains.base import Share, Task, TrainStats
from domains.flops import step_flops
from domains.hparams import HParams
from domains.parameters import count_parameters
from domains.task_state import restore, snapshot
from domains.train_loop import LossMeter, optimizer_step

log = logging.getLogger(__name__)


@contextmanager
def evaluation(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode (dropout off, batch-norm statistics frozen) for the block, then as it was."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class TrainingTask(Task):
    """A model, its optimizer and the shared loop. Subclasses call ``super().__init__`` with the built model."""

    divergence_threshold: float = math.inf  # a call's mean loss above this counts as diverged
    scaler: torch.amp.GradScaler | None = None  # mixed-precision loss scaling, where a task uses it

    def __init__(self, model: torch.nn.Module, hp: HParams, device: str | torch.device = "cpu") -> None:
        self.hp, self.device = hp, torch.device(device)
        self.model = model.to(self.device)
        self.optimizer = hp.optimizer_for(self.model)
        self.num_params = count_parameters(self.model)
        self.non_embedding_params = count_parameters(self.model, embeddings=False)
        # training FLOPs of one step on this process's share of a batch (domains.flops), counted on the first
        # step trained; NaN when counting failed (the trial trains on without the figure)
        self.flops_per_step: float | None = None
        self.steps_done = 0  # optimizer updates so far: the schedule's clock
        self.diverged = False
        self.cooldown: tuple[int, int] | None = None  # (start, steps) of a cooldown patience began (wsd)

    def start_cooldown(self, max_steps: int) -> bool:
        length = self.hp.cooldown_steps(self.steps_done)
        if self.cooldown is not None or length is None or self.steps_done >= max_steps:
            return False
        self.cooldown = (self.steps_done, min(length, max_steps - self.steps_done))
        return True

    @property
    def cooldown_end(self) -> int | None:
        return None if self.cooldown is None else sum(self.cooldown)

    def train(self, steps: int) -> TrainStats:
        """``steps`` updates; a non-finite or exploding loss stops early with loss = NaN."""
        if self.diverged:
            return TrainStats(loss=math.nan, samples=0.0, steps=0, extra={"diverged": 1.0})
        self.model.train()
        meter, totals = LossMeter(self.divergence_threshold), {}
        for _ in range(steps):
            batch = self.next_batch(self.rank_share)
            if self.flops_per_step is None:
                self.flops_per_step = self._count_flops(batch)
            lr = self.hp.lr_at(self.steps_done, self.cooldown)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss = self.loss(batch)
            value = optimizer_step(loss, self.model, self.optimizer, self.hp.clip_norm, self.synced, self.scaler)
            self.steps_done += 1
            for name, count in self.counts(batch).items():
                totals[name] = totals.get(name, 0.0) + count
            if not meter.add(value):
                break
        self.diverged = meter.diverged
        samples, extra = self.summary(totals, meter.steps)
        return TrainStats(loss=meter.mean, samples=samples, steps=meter.steps,
                          extra={**extra, "diverged": float(self.diverged)})

    def _count_flops(self, batch: Any) -> float:
        try:
            return step_flops(self, batch)
        except Exception:  # a missing FLOP figure must never cost the trial
            log.warning("%s: could not count the FLOPs of a training step", type(self).__name__, exc_info=True)
            return math.nan

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The validation metrics (NaN for a diverged run: no pass over the validation set)."""
        if self.diverged:
            return {name: math.nan for name in self.metric_names()}
        with evaluation(self.model):
            return self.validate()

    def state_dict(self) -> dict[str, Any]:
        """A deep copy: training on afterwards does not change what was returned."""
        extra = {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}
        return snapshot(self.model, self.optimizer, self.device, steps=self.steps_done, diverged=self.diverged,
                        flops_per_step=self.flops_per_step, cooldown=self.cooldown, **extra, **self.identity(),
                        **self.reader_state())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = {k: state[k] for k in self.identity()}
        if saved != self.identity():
            raise ValueError(f"{type(self).__name__} state is from another shard or batch size "
                             f"(saved {saved}; this task {self.identity()})")
        restore(state, self.model, self.optimizer, self.device)
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.steps_done, self.diverged = int(state["steps"]), bool(state["diverged"])
        self.flops_per_step = state.get("flops_per_step")  # checkpoints of older code lack it: counted again
        cooldown = state.get("cooldown")  # likewise: no cooldown begun
        self.cooldown = None if cooldown is None else (int(cooldown[0]), int(cooldown[1]))
        self.load_reader_state(state)

    # --- hooks ------------------------------------------------------------------------------------------
    def next_batch(self, share: Share) -> Any:
        """The next training batch, cut to ``share`` (this replica's part): by default the examples of
        ``next_ids`` shared, then loaded. Override where the share must be taken mid-way (after augmentation)."""
        return self.load_batch(share(self.next_ids()))

    def next_ids(self) -> Any:
        """The ids of the whole next batch (array or list), advancing the reader's cursor."""
        raise NotImplementedError(f"{type(self).__name__} implements neither next_batch nor next_ids")

    def load_batch(self, ids: Any) -> Any:
        """The batch of ``ids`` on this task's device."""
        raise NotImplementedError(f"{type(self).__name__} implements neither next_batch nor load_batch")

    @abc.abstractmethod
    def loss(self, batch: Any) -> torch.Tensor:
        """The training objective of one batch (a scalar to minimize)."""

    def counts(self, batch: Any) -> Mapping[str, float]:
        """What one step consumed (tokens, images, seconds), summed over a ``train`` call for ``summary``."""
        return {}

    def summary(self, totals: Mapping[str, float], steps: int) -> tuple[float, dict[str, float]]:
        """(samples in the domain's size unit, extra statistics) of a ``train`` call from its ``counts``; by
        default the ``samples`` count and no extras."""
        return float(totals.get("samples", 0.0)), {}

    @abc.abstractmethod
    def metric_names(self) -> tuple[str, ...]:
        """The names ``validate`` returns."""

    @abc.abstractmethod
    def validate(self) -> dict[str, float]:
        """Metrics on the fixed validation split (called in eval mode, without gradients); lower is better."""

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be this task's: the batch size, and where a domain can tell, the
        shard's size."""
        return {"batch_size": self.hp.batch_size}

    def reader_state(self) -> dict[str, Any]:
        """The data reader's cursor and counters, for ``state_dict``."""
        return {}

    def load_reader_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``reader_state`` saved."""
