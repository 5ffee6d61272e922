"""Training-mode batch normalisation with a hand-written, cheaper double backward.

GREAT, GREACE's reversed variant and Sobolev distillation backpropagate through a network's
backward pass (double backprop). With BatchNorm in training mode, autograd's double backward of
the fused kernel (``NativeBatchNormBackwardBackward0``) is the largest single cost of such a
step on a CPU. :func:`batch_norm_train` computes the same function with the same fused kernels
for the forward and the first backward, and closes the second backward in a short formula.

Notation, per channel, over its M = N * H * W entries (E is the mean over them):
mu = E[x], r = (E[(x - mu)^2] + eps)^(-1/2), xc = x - mu, xhat = xc r, y = gamma xhat + beta.

First backward (incoming gradient gy):

    gx = gamma r (gy - E[gy] - xhat E[gy xhat]),   ggamma = sum gy xhat,   gbeta = sum gy

Second backward: with a, b, c the gradients reaching gx, ggamma, gbeta, and the per-channel
scalars S = E[gy xc], A1 = sum a (gy - E[gy]), A2 = sum a xc,

    d/dgy    = gamma r (a - E[a] - xhat E[a xhat]) + b xhat + c
    d/dgamma = r (A1 - r^2 S A2)
    d/dx     = gamma r^3 [ (3 r^2 S A2 - A1) xc / M - S (a - E[a]) - A2 (gy - E[gy]) / M ]
               + b (r (gy - E[gy]) - r^3 S xc)

(differentiate gx = gamma r (gy - E[gy]) - gamma r^3 xc E[gy xc] and ggamma = r sum gy xc in x,
using dr = -r^3 E[xc dx] and dxc = dx - E[dx]). ``tests/test_batchnorm.py`` checks it against
autograd's double backward of ``torch.nn.functional.batch_norm`` and with ``gradgradcheck``.
The third derivative is not provided (nothing here needs it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._engine import wanted_inputs

__all__ = ["batch_norm_train"]


def _channel_view(t: Tensor, dim: int) -> Tensor:
    """(C,) -> (1, C, 1, ...) for broadcasting against a (N, C, *) tensor of ``dim`` dims."""
    return t.view(1, -1, *([1] * (dim - 2)))


def _bn_backward(gy: Tensor, x: Tensor, weight: Tensor | None, mean: Tensor, invstd: Tensor,
                 eps: float, mask) -> tuple:
    """The fused kernel: (gamma r (gy - E[gy] - xhat E[gy xhat]), sum gy xhat, sum gy)."""
    return torch.ops.aten.native_batch_norm_backward(gy, x, weight, None, None, mean, invstd,
                                                     True, eps, list(mask))


def _channel_dot(u: Tensor, v: Tensor) -> Tensor:
    """(N, C, *) x (N, C, *) -> (C,): sum of u v per channel, in one fused pass (the kernel's
    weight gradient with mean 0 and inverse std 1 is exactly that sum)."""
    c = u.shape[1]
    zeros, ones = u.new_zeros(c), u.new_ones(c)
    return _bn_backward(u, v, None, zeros, ones, 0.0, (False, True, False))[1]


class _BatchNormBackward(torch.autograd.Function):
    """The first backward of training-mode BatchNorm as a function of (gy, x, gamma), with the
    second backward written out (see the module docstring).

    The second backward costs three fused reductions (one of them also gives d/dgy) and three
    elementwise passes: d/dx is written as k1 x + k2 a + k3 gy + k0 with per-channel k.
    """

    @staticmethod
    def forward(ctx, gy, x, weight, mean, invstd, eps, mask):
        ctx.set_materialize_grads(False)
        gx, s_gy_xhat, s_gy = _bn_backward(gy, x, weight, mean, invstd, eps, (mask[0], True, True))
        ctx.save_for_backward(gy, x, weight, mean, invstd, s_gy_xhat, s_gy)
        ctx.eps = eps
        return (gx if mask[0] else None, s_gy_xhat if mask[1] else None,
                s_gy if mask[2] else None)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, a, b, c):
        gy, x, weight, mean, invstd, s_gy_xhat, s_gy = ctx.saved_tensors
        need_gy, need_x, need_w = ctx.needs_input_grad[:3]
        m = x.numel() // x.shape[1]
        r = invstd
        gamma = weight if weight is not None else torch.ones_like(r)
        e_gy = s_gy / m
        s = s_gy_xhat / (r * m)  # S = E[gy xc]
        # d/dx = k_xc (x - mu) + k_a (a - E[a]) + k_gy (gy - E[gy])
        k_xc, k_gy = torch.zeros_like(r), torch.zeros_like(r)
        k_a = e_a = None
        ggy = dgamma = None
        if a is not None:
            ggy, s_a_xhat, s_a = _bn_backward(a, x, weight, mean, invstd, ctx.eps,
                                              (need_gy, True, True))
            e_a = s_a / m
            a2 = s_a_xhat / r  # sum a xc
            a1 = _channel_dot(a, gy) - s_a * e_gy  # sum a (gy - E[gy])
            g_r3 = gamma * r ** 3
            k_xc = g_r3 * (3.0 * r * r * s * a2 - a1) / m
            k_a = -g_r3 * s
            k_gy = -g_r3 * a2 / m
            if weight is not None and need_w:
                dgamma = r * (a1 - r * r * s * a2)
        if b is not None:
            k_xc = k_xc - b * r ** 3 * s
            k_gy = k_gy + b * r
        d = x.dim()
        gxx = None
        if need_x and (a is not None or b is not None):
            k0 = -k_xc * mean - k_gy * e_gy - (k_a * e_a if k_a is not None else 0.0)
            gxx = torch.addcmul(_channel_view(k0, d), x, _channel_view(k_xc, d))
            gxx.addcmul_(gy, _channel_view(k_gy, d))
            if k_a is not None:
                gxx.addcmul_(a, _channel_view(k_a, d))
        if need_gy and (b is not None or c is not None):  # from ggamma = sum gy xhat, gbeta = sum gy
            extra = torch.zeros_like(gy) if ggy is None else ggy
            if b is not None:
                extra = extra + _channel_view(b * r, d) * (x - _channel_view(mean, d))
            if c is not None:
                extra = extra + _channel_view(c, d)
            ggy = extra
        return ggy, gxx, dgamma, None, None, None, None


class _BatchNormTrain(torch.autograd.Function):
    """Training-mode BatchNorm: fused kernels forward and backward, :class:`_BatchNormBackward`
    when the backward itself is being differentiated (``create_graph=True``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var,
                                                  True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.tensor_args = (True, weight is not None, bias is not None)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, invstd = ctx.saved_tensors
        grad_mode = torch.is_grad_enabled()
        # what this backward pass needs (a backward restricted to the parameters skips the
        # input gradient of a layer whose input is a leaf that requires grad)
        need = wanted_inputs(ctx, ctx.tensor_args)
        mask = (need[0], weight is not None and need[1], need[2])
        if grad_mode:
            gx, gw, gb = _BatchNormBackward.apply(gy, x, weight, mean, invstd, ctx.eps, mask)
        else:
            gx, gw, gb = _bn_backward(gy, x, weight, mean, invstd, ctx.eps, mask)
        return (gx if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None,
                None, None, None, None)


def batch_norm_train(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                     running_mean: Tensor | None, running_var: Tensor | None,
                     momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """``F.batch_norm(..., training=True)`` with a cheaper double backward.

    The same values, running-statistics update and first derivatives as
    :func:`torch.nn.functional.batch_norm` in training mode (the same fused kernels); its
    derivative of the backward pass (what double backprop needs) is the closed form of the
    module docstring instead of autograd's, and is itself not differentiable again.

    Args:
        x: the input.
        weight, bias: the affine parameters gamma and beta (or None).
        running_mean, running_var: updated in place with ``momentum`` (or None).
        momentum: the running statistics' update factor.
        eps: added to the variance.

    Shape:
        x: (N, C, *) with N * prod(*) > 1; weight, bias, running_*: (C,); output: like x.
    """
    if x.dim() < 2:
        raise ValueError(f"batch_norm_train expects (N, C, *) inputs, got {tuple(x.shape)}")
    if x.numel() // x.shape[1] <= 1:
        raise ValueError(f"expected more than 1 value per channel when training, got input of "
                         f"shape {tuple(x.shape)}")
    return _BatchNormTrain.apply(x, weight, bias, running_mean, running_var, momentum, eps)
