"""Input gradients that can themselves be trained through (double backpropagation).

Used wherever a loss is put on a gradient tensor: gradient penalties, GREAT's auxiliary
classifier on input gradients (Sinha et al., arXiv:1806.08028), Sobolev distillation.

Take the gradient from a **sum**-reduced loss: a mean-reduced loss scales the gradient by
1/N_local, which differs between one process with the global batch and each DDP rank with its
shard, and breaks their equality (see ``tests/test_ddp.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["input_gradient"]


def input_gradient(loss_sum: Tensor, inputs: Tensor, create_graph: bool = True) -> Tensor:
    """d loss_sum / d inputs, kept differentiable when ``create_graph`` is true.

    Args:
        loss_sum: a scalar loss, reduced by **sum** over the batch, so that each example's
            gradient does not depend on how many examples share the batch.
        inputs: the tensor to differentiate against; it must require grad and be part of the
            graph of ``loss_sum``.
        create_graph: keep the graph of the gradient, so a loss on it trains the network
            (double backprop). Use ``False`` for a teacher's gradient or a diagnostic.

    Shape:
        loss_sum: () ; inputs: (N, *) ; output: (N, *), like ``inputs``.

    Example:
        >>> x = torch.tensor([[1.0, 2.0]], requires_grad=True)
        >>> input_gradient((x ** 2).sum(), x)
        tensor([[2., 4.]], grad_fn=<MulBackward0>)
    """
    if loss_sum.dim() != 0:
        raise ValueError(f"loss_sum must be a scalar, got shape {tuple(loss_sum.shape)}")
    if not inputs.requires_grad:
        raise ValueError("inputs must require grad to take an input gradient")
    (grad,) = torch.autograd.grad(loss_sum, inputs, create_graph=create_graph, retain_graph=True)
    return grad
