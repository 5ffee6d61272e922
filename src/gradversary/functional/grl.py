"""Gradient reversal as a pure function.

Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015, and
Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 17(59), 2016
(arXiv:1505.07818).

The gradient reversal layer R_lambda is the identity in the forward pass and multiplies the
incoming gradient by -lambda in the backward pass:

    R(x) = x,        dR/dx = -lambda I.

Placed between a feature extractor G_f and a domain classifier G_d, one backward pass of
L_y + L_d gives G_d the gradient of L_d (it learns to tell the domains apart) and G_f the
gradient of L_y - lambda L_d (it learns features the domain classifier cannot separate).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["grad_reverse"]


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, coeff: Tensor) -> Tensor:
        ctx.save_for_backward(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (coeff,) = ctx.saved_tensors
        # Written with differentiable ops, so double backprop through the GRL also works.
        return -coeff.to(grad.dtype) * grad, None


def grad_reverse(x: Tensor, coeff: float | Tensor = 1.0) -> Tensor:
    """Identity forward, gradient times ``-coeff`` backward.

    Args:
        x: any tensor.
        coeff: the reversal coefficient lambda >= 0 (a float or a 0-d tensor). The coefficient
            itself receives no gradient.

    Shape:
        x: (*), output: (*), the same.

    Example:
        >>> x = torch.ones(3, requires_grad=True)
        >>> grad_reverse(x, 0.5).sum().backward()
        >>> x.grad
        tensor([-0.5000, -0.5000, -0.5000])
    """
    if not isinstance(coeff, Tensor):
        coeff = torch.tensor(float(coeff))
    coeff = coeff.detach().to(x.device)
    return _GradReverse.apply(x, coeff)
