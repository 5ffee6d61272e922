"""The gradient alignment layer (GAL): identity forward, elementwise gradient scaling backward.

Sinha, Chen, Badrinarayanan & Rabinovich, "Gradient Adversarial Training of Neural Networks",
arXiv:1806.08028 (2018), section 2.3 and Algorithm 3. A GAL sits between the shared encoder
and one task decoder; with weights gamma of the shape of the shared feature (without N):

    forward:  GAL(z) = z                  backward:  dL/dz = gamma * dL/dGAL(z)   (elementwise)

so the encoder receives sum_i gamma_i * g_i from the tasks' gradients g_i. The weights start at
one and stay positive; they get **no** gradient through this layer (the layer only rescales
what flows through it): GREAT-MTL trains them through :attr:`GradientAlignmentLayer.weight`
used elsewhere, with the task classifier's reversed gradient. In eval mode the layer is skipped
(the tensor is returned as is, no autograd node): GALs are dropped at inference.

Positivity: gamma = exp(rho), rho initialised to 0. The paper restricts gamma to be positive
and reports that a low learning rate kept it so; a clamp would need a step after every optimizer
update (the engine has no such hook) and has zero gradient once clamped, while softplus changes
the scale of the updates with gamma. The exponential is positive by construction and makes the
updates multiplicative (Adam moves log gamma by about the learning rate per step, whatever the
size of gamma), which suits a scale factor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["GradientAlignmentLayer", "scale_gradient"]


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(weight)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (weight,) = ctx.saved_tensors
        # weight is treated as a constant: the layer only rescales, it never learns from this
        return grad * weight.detach(), None


def scale_gradient(x: Tensor, weight: Tensor) -> Tensor:
    """Identity on ``x``; its gradient is multiplied elementwise by ``weight`` (broadcast over N).

    ``weight`` receives no gradient from this function. The backward is itself differentiable
    in the incoming gradient, so double backpropagation through it works.

    Shape:
        x: (N, *S); weight: S (or broadcastable to it); output: (N, *S).

    Example:
        >>> x = torch.ones(2, 3, requires_grad=True)
        >>> scale_gradient(x, torch.tensor([1.0, 2.0, 3.0])).sum().backward()
        >>> x.grad
        tensor([[1., 2., 3.],
                [1., 2., 3.]])
    """
    return _ScaleGradient.apply(x, weight)


class GradientAlignmentLayer(nn.Module):
    """A GAL: identity forward; backward, the gradient times ``weight`` elementwise.

    Args:
        shape: the shared feature's shape without the batch dimension, e.g. (F, H, W).

    Attributes:
        log_weight: the trained parameter rho (zeros at start); ``weight`` = exp(rho) > 0.

    Shape:
        input: (N, *shape); output: the same tensor (in eval mode, the very same object).

    Example:
        >>> gal = GradientAlignmentLayer((2,))
        >>> gal.weight
        tensor([1., 1.], grad_fn=<ExpBackward0>)
    """

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.log_weight = nn.Parameter(torch.zeros(self.shape))

    @property
    def weight(self) -> Tensor:
        """gamma = exp(rho), positive, differentiable in rho. Shape: ``shape``."""
        return self.log_weight.exp()

    def forward(self, z: Tensor) -> Tensor:
        if not self.training:
            return z
        if tuple(z.shape[1:]) != self.shape:
            raise ValueError(f"GAL of shape {self.shape} got a tensor of shape {tuple(z.shape)}")
        return scale_gradient(z, self.weight)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"
