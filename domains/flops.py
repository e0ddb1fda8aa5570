"""Training FLOPs of one optimizer step, counted by ``torch.utils.flop_counter.FlopCounterMode``.

Why counted, not estimated from the parameter count: 6·N·tokens misses attention's quadratic part, convolutions'
weight sharing, the RNN time loop and whatever a domain's loss adds (a CTC head, a decoder run over the target);
the compute-optimal frontier needs the compute that was spent. The count is what FlopCounterMode counts (matrix
products, convolutions, attention; elementwise work is not counted): the forward and backward pass of one real
batch through the task's ``loss``, backward only where autograd computes it (no gradient of the input data).

Three things make the count right and harmless:

* kernels the counter has no formula for get one (``CUSTOM_FORMULAS``): the fused RNN kernels (oneDNN's LSTM on
  CPU, cuDNN's RNNs on GPU: every weight matrix on every token, backward twice the forward) and CPU flash
  attention (torch's formulas for the GPU flash kernels). Counting torch's native RNN cells instead (fused
  kernels off) gives the same figure up to gradients autograd skips, but costs ~20 steps of Python dispatch;
* the count runs on the batch the step is about to train on, through a shallow copy of the task (what ``loss``
  stores on the task, such as an LM's carried state or an image task's error count, lands on the copy); model
  buffers (batch-norm statistics) and the torch RNG states are put back and the gradients dropped, so the run
  trains exactly as it would have without it;
* one figure per (task type, model shapes, batch shapes, hyperparameters that are not the optimizer's) per
  process: trials that differ only in learning rate, seed or shard reuse it.

A variable-length batch (NMT, speech) gives the figure of the first batch of the trial: an estimate per step.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Hashable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from domains.hparams import HParams

# hyperparameters of the optimizer and its schedule: they change no shape and no FLOP count
OPTIMIZER_FIELDS = frozenset(f.name for f in dataclasses.fields(HParams)) - {"batch_size"}

_cache: dict[Hashable, float] = {}


def _cpu_flash(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_backward(grad: Any, query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
                        **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad, query, key, value)


def _matrices(values: Any) -> Iterator[Any]:
    for v in values:
        if isinstance(v, list | tuple) and v and not isinstance(v[0], int):
            yield from _matrices(v)
        elif isinstance(v, torch.Size) and len(v) == 2:
            yield v


def rnn_flops(input_shape: Any, weights: Any) -> int:
    """Forward FLOPs of a fused RNN kernel: every weight matrix (input-to-hidden, hidden-to-hidden, projection; of
    every layer and direction in the call) is applied to every time step of every sequence: 2 FLOPs per weight
    and token (biases and gate arithmetic are elementwise, not counted)."""
    tokens = math.prod(input_shape[:-1])  # (time, batch), (batch, time) or packed (tokens,)
    return 2 * tokens * sum(rows * cols for rows, cols in _matrices(weights))


def _fused_rnn(input_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    # mkldnn_rnn_layer(input, w_ih, w_hh, b_ih, b_hh, ...) and _cudnn_rnn(input, [weights], ...)
    return rnn_flops(input_shape, args[:4])


def _fused_rnn_backward(input_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    # the gradients of the input and hidden states and of the weights: twice the forward
    return 2 * rnn_flops(input_shape, args[:4])


# Kernels torch's counter has no formula for: CPU flash attention (torch's GPU flash formulas) and the fused RNN
# kernels (oneDNN's LSTM on CPU, cuDNN's RNNs on GPU), which would otherwise count as nothing.
_ATEN = torch.ops.aten
CUSTOM_FORMULAS = {_ATEN._scaled_dot_product_flash_attention_for_cpu: _cpu_flash,
                   _ATEN._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
                   _ATEN.mkldnn_rnn_layer: _fused_rnn, _ATEN.mkldnn_rnn_layer_backward: _fused_rnn_backward,
                   _ATEN._cudnn_rnn: _fused_rnn, _ATEN._cudnn_rnn_backward: _fused_rnn_backward}


class _Opaque(Exception):
    """A batch part whose shapes cannot be summarized."""


def _signature(value: Any) -> Hashable:
    if isinstance(value, torch.Tensor | np.ndarray):
        return ("T", tuple(value.shape), str(value.dtype))
    if isinstance(value, bool | int | float | str | type(None)):
        return type(value).__name__  # counts and durations vary per batch; they enter no matrix product
    if isinstance(value, tuple | list):
        return (type(value).__name__, tuple(_signature(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((str(k), _signature(v)) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__qualname__,
                tuple((f.name, _signature(getattr(value, f.name))) for f in dataclasses.fields(value)))
    raise _Opaque(type(value).__name__)


def shape_signature(batch: Any) -> Hashable | None:
    """A hashable summary of a batch's shapes (tensors and arrays by shape and dtype, containers and dataclasses
    part by part, scalars by type); None for a batch holding anything else (never cached)."""
    try:
        return _signature(batch)
    except _Opaque:
        return None


def flops_key(task: Any, batch: Any) -> Hashable | None:
    """What one per-step figure is valid for; None when the batch's shapes cannot be summarized."""
    shapes = shape_signature(batch)
    if shapes is None:
        return None
    hp = task.hp
    architecture = tuple((f.name, repr(getattr(hp, f.name))) for f in dataclasses.fields(hp)
                         if f.name not in OPTIMIZER_FIELDS)
    params = tuple((name, tuple(p.shape)) for name, p in task.model.named_parameters())
    return (type(task).__qualname__, type(task.model).__qualname__, str(task.device.type), params, architecture,
            shapes)


def count_step_flops(task: Any, batch: Any) -> float:
    """Forward + backward FLOPs of ``task.loss(batch)``; the task, its model and the RNGs are left as they were."""
    model: nn.Module = task.model
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    probe = copy.copy(task)  # attributes ``loss`` rebinds (carried state, counters) land on the copy
    try:
        with FlopCounterMode(display=False, custom_mapping=CUSTOM_FORMULAS) as counter:
            probe.loss(batch).backward()
        return float(counter.get_total_flops())
    finally:
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for live, saved in buffers:
                live.copy_(saved)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def step_flops(task: Any, batch: Any) -> float:
    """The training FLOPs of one step of ``task`` on a batch shaped like ``batch`` (this process's share of it),
    counted once per process for each ``flops_key``."""
    key = flops_key(task, batch)
    if key is not None and key in _cache:
        return _cache[key]
    flops = count_step_flops(task, batch)
    if key is not None:
        _cache[key] = flops
    return flops
