"""Model size, the x-axis of the model-size law: trainable parameters with or without embeddings.

Small sequence models are mostly vocabulary tables (an NMT LSTM of width 128 is 96% embeddings and softmax), so a
parameter count with them hides how the network itself grows; the count without them (as in Kaplan et al. 2020)
is the second model size the fits can use. What counts as an embedding:

* the parameters of every ``nn.Embedding``, ``nn.EmbeddingBag`` and ``nn.AdaptiveLogSoftmaxWithLoss`` module;
* whatever a module declares through an optional method ``embedding_parameters(self) -> Iterable[nn.Parameter]``
  (any module of the model may define it; each one's declaration is taken): output projections onto a
  vocabulary, which are plain ``nn.Linear`` layers a type check cannot tell from a hidden layer.

A parameter shared between modules (tied input and output embeddings) counts once, and is an embedding when
either of its users says so. An image classifier's last layer is a model part, not a vocabulary table: no
image model declares it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

EMBEDDING_MODULES = (nn.Embedding, nn.EmbeddingBag, nn.AdaptiveLogSoftmaxWithLoss)


def embedding_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The embedding and vocabulary-output parameters of ``model`` (a parameter may come more than once)."""
    for module in model.modules():
        if isinstance(module, EMBEDDING_MODULES):
            yield from module.parameters()
        declared = getattr(module, "embedding_parameters", None)
        if callable(declared):
            yield from declared()


def count_parameters(model: nn.Module, embeddings: bool = True) -> int:
    """Trainable parameters of ``model``, each shared one once; ``embeddings=False`` leaves out the embedding
    tables and vocabulary output layers (``embedding_parameters``)."""
    trainable: dict[int, torch.Tensor] = {id(p): p for p in model.parameters() if p.requires_grad}
    if not embeddings:
        for p in embedding_parameters(model):
            trainable.pop(id(p), None)
    return sum(p.numel() for p in trainable.values())
