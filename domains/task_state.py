"""What every task's checkpoint holds besides its own cursor: model, optimizer and the torch RNG streams.

A restored trial must continue the very run it left (same dropout masks, same next batch), so the RNG
states travel with the weights. Each task adds its data cursor and counters as keyword extras.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch


def snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
             **extra: Any) -> dict[str, Any]:
    """A deep copy of model, optimizer, RNG states and ``extra``: training on does not change it."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
             **extra}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return copy.deepcopy(state)


def restore(state: Mapping[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            device: torch.device) -> None:
    """Load what ``snapshot`` saved into ``model``, ``optimizer`` and this process's RNGs."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if "rng" in state:
        torch.set_rng_state(state["rng"].cpu())
    if "cuda_rng" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
