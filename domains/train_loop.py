"""The pieces of the shared ``train`` loop (``domains.training``): one optimizer update and the divergence watch.

Divergence is part of the product's contract (a diverged trial is recorded as such, never crashed): a
non-finite step loss stops the call at once, and a finite but exploding mean (above the task's threshold,
e.g. a multiple of the loss of uniform guessing) counts as diverged too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   clip: float, sync: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   scaler: torch.amp.GradScaler | None = None) -> float:
    """Backward, gradient-norm clipping (``clip`` <= 0: none) and one update; the loss as a float.

    ``sync`` (a task's ``Task.synced``) averages the gradients of data-parallel replicas before they are clipped,
    and the loss with them. ``scaler`` scales the loss for float16 mixed precision (a disabled one does nothing)."""
    optimizer.zero_grad(set_to_none=True)
    (loss if scaler is None else scaler.scale(loss)).backward()
    if sync is not None:
        loss = sync(loss)
    if clip > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return loss.item()


class LossMeter:
    """Mean step loss of one ``train`` call and whether the run diverged in it."""

    def __init__(self, threshold: float) -> None:
        self.threshold, self.total, self.steps, self.non_finite = threshold, 0.0, 0, False

    def add(self, value: float) -> bool:
        """Count one step's loss; False when it is not finite (stop training)."""
        self.steps += 1
        self.total += value
        self.non_finite = self.non_finite or not math.isfinite(value)
        return not self.non_finite

    @property
    def diverged(self) -> bool:
        return self.non_finite or (self.steps > 0 and self.total / self.steps > self.threshold)

    @property
    def mean(self) -> float:
        """The mean loss; NaN when diverged or nothing was trained."""
        return math.nan if self.diverged or not self.steps else self.total / self.steps
