"""ReLU, LeakyReLU and 2-d max pooling with a double backward that adds no zeros.

Autograd's derivative of these layers' backward (``threshold_backward``,
``leaky_relu_backward``, ``max_pool2d_with_indices_backward``) with respect to the forward
input is ``zeros_like``: a full-size tensor of zeros that the engine then adds into that input's
gradient. Double backprop (GREAT, Sobolev) meets it at every such layer of every step. The
backward of a piecewise-linear layer is linear in the incoming gradient g, through a mask or
argmax indices that the forward pass fixed, so its derivative is that same map applied to the
new gradient a, and (almost everywhere) nothing with respect to the input:

    relu:         gx = g [y > 0]                      d/dg: a [y > 0]          d/dx: 0
    leaky relu:   gx = g (1 if x > 0 else s)          d/dg: a (1 if x > 0 else s)
    max pool:     gx = g scattered to the argmax      d/dg: a gathered at the argmax

The functions here give the same values and first derivatives as torch's; their backward
nodes have no edge to the input, so no zeros are made. ``tests/test_double_backward.py``
checks them against autograd to the second derivative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["relu", "leaky_relu", "max_pool2d"]

_aten = torch.ops.aten


def _masked(g: Tensor, t: Tensor, slope: float) -> Tensor:
    """The first derivative's map: ``t`` is the output (relu) or the input (leaky relu)."""
    if slope == 0.0:
        return _aten.threshold_backward(g, t, 0)
    return _aten.leaky_relu_backward(g, t, slope, False)


class _MaskedGrad(torch.autograd.Function):
    """g -> g masked; linear in g, constant in the saved tensor."""

    @staticmethod
    def forward(ctx, g, t, slope):
        ctx.save_for_backward(t)
        ctx.slope = slope
        return _masked(g, t, slope)

    @staticmethod
    @once_differentiable
    def backward(ctx, a):
        (t,) = ctx.saved_tensors
        return _masked(a, t, ctx.slope), None, None


class _Rectifier(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, slope):
        y = F.relu(x) if slope == 0.0 else F.leaky_relu(x, slope)
        ctx.save_for_backward(y if slope == 0.0 else x)
        ctx.slope = slope
        return y

    @staticmethod
    def backward(ctx, g):
        (t,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the backward is differentiated
            return _MaskedGrad.apply(g, t, ctx.slope), None
        return _masked(g, t, ctx.slope), None


def relu(x: Tensor) -> Tensor:
    """``F.relu`` with the double backward of the module docstring. Shape: any -> same."""
    return _Rectifier.apply(x, 0.0)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """``F.leaky_relu`` (slope > 0) with the double backward of the module docstring.
    Shape: any -> same."""
    if negative_slope <= 0.0:
        raise ValueError(f"leaky_relu: negative_slope must be > 0, got {negative_slope}")
    return _Rectifier.apply(x, float(negative_slope))


def _gather_at(a: Tensor, idx: Tensor) -> Tensor:
    """``a`` (N, C, H, W) read at the flat argmax ``idx`` (N, C, H', W'), in ``idx``'s layout."""
    out = a.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
    if idx.dim() == 4 and idx.stride(1) == 1 and idx.shape[1] > 1:
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class _PoolGrad(torch.autograd.Function):
    """g -> g scattered to the argmax; linear in g."""

    @staticmethod
    def forward(ctx, g, x, idx, geom):
        ctx.save_for_backward(idx)
        return _aten.max_pool2d_with_indices_backward(g, x, *geom, idx)

    @staticmethod
    @once_differentiable
    def backward(ctx, a):
        (idx,) = ctx.saved_tensors
        return _gather_at(a, idx), None, None, None


class _MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, geom):
        y, idx = _aten.max_pool2d_with_indices(x, *geom)
        ctx.save_for_backward(x, idx)
        ctx.geom = geom
        return y

    @staticmethod
    def backward(ctx, g):
        x, idx = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _PoolGrad.apply(g, x, idx, ctx.geom), None
        return _aten.max_pool2d_with_indices_backward(g, x, *ctx.geom, idx), None


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False) -> Tensor:
    """``F.max_pool2d`` (no indices returned) with the double backward of the module docstring.

    Shape:
        x: (N, C, H, W) -> (N, C, H', W').
    """
    pair = lambda v: [v, v] if isinstance(v, int) else list(v)  # noqa: E731
    k = pair(kernel_size)
    geom = (k, pair(stride) if stride not in (None, [], ()) else k, pair(padding), pair(dilation),
            bool(ceil_mode))
    return _MaxPool.apply(x, geom)
