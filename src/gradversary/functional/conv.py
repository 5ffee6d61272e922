"""2-d convolution with a hand-written double backward that uses the fused weight-gradient kernel.

Double backprop (GREAT, Sobolev) differentiates a convolution's input gradient
gx = conv_transpose(gy, W) once more. Autograd's rule for that computes the weight term as a
convolution of the transposed tensors (batch and channels swapped, copied), which on a CPU costs
more than the weight-gradient kernel that computes the same sum. Here, with a the gradient that
reaches gx and aW the one that reaches the weight gradient gW = corr(x, gy):

    d/dgy = conv(a, W) + conv(x, aW) + ab          (ab: the one reaching the bias gradient)
    d/dW  = the weight gradient of a convolution with input a and output gradient gy
    d/dx  = the input gradient of a convolution with weight aW and output gradient gy

all with the layer's stride, padding, dilation and groups. ``tests/test_double_backward.py``
checks it against autograd's double backward of ``torch.nn.functional.conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._engine import wanted_inputs

__all__ = ["conv2d", "one_channel_channels_last"]


def one_channel_channels_last(t: Tensor) -> Tensor:
    """A one-channel (N, 1, H, W) tensor with channels-last strides (same values and bytes).

    With one channel both layouts hold the same bytes, and ``contiguous(memory_format=
    torch.channels_last)`` keeps the NCHW strides, so the convolution that reads it writes an
    NCHW output; these strides make it write channels-last.
    """
    t = t.contiguous()
    return t.as_strided(t.shape, (t.stride(0), 1, t.stride(2), t.stride(3)))


def _input_grad_one_channel(gy, x, w, geom):
    """The input gradient of a one-input-channel convolution, W^T gy put back in place.

    oneDNN's backward-data kernel for C_in = 1 runs about 3x slower than folding W^T gy back
    (col2im) on a CPU, and folding about 2x slower than what is done here for stride 1 and
    dilation 1: one matrix product gives each kernel offset's plane, (kH kW, N, H', W'), and
    the kH kW planes are added into the (padded) input at their offsets. A (128, 32, 24, 24)
    gradient of MNIST's first 5x5 layer on one thread: ~16 ms (oneDNN), ~5.6 ms (fold),
    ~2.6 ms (planes). GREAT and every input-gradient method take it at least twice a step;
    plain training never does (the first layer's input needs no gradient). Other strides and
    dilations fold.

    Shape:
        gy: (N, C_out, H', W'); x: (N, 1, H, W); w: (C_out, 1, kH, kW); output: like x.
    """
    stride, padding, dilation, _ = geom
    n, c, ho, wo = gy.shape
    kh, kw = (int(k) for k in w.shape[2:])
    if tuple(stride) != (1, 1) or tuple(dilation) != (1, 1):
        cols = torch.matmul(w.reshape(c, -1).t(), gy.reshape(n, c, -1))
        return F.fold(cols, tuple(x.shape[2:]), (kh, kw), dilation=dilation, padding=padding,
                      stride=stride).to(memory_format=torch.contiguous_format)
    # (kH kW, N H' W'): a view of gy's channels-last bytes needs no copy (else one is made)
    planes = torch.mm(w.reshape(c, kh * kw).t(), gy.permute(0, 2, 3, 1).reshape(-1, c).t())
    planes = planes.view(kh * kw, n, ho, wo)
    (ph, pw), (h, wd) = padding, x.shape[2:]
    out = gy.new_zeros(n, h + 2 * ph, wd + 2 * pw)
    for i in range(kh):
        for j in range(kw):
            out[:, i:i + ho, j:j + wo] += planes[i * kw + j]
    return out[:, ph:ph + h, pw:pw + wd].unsqueeze(1).contiguous()


def _conv_backward(gy, x, w, has_bias, geom, mask):
    stride, padding, dilation, groups = geom
    fold = mask[0] and x.shape[1] == 1 and groups == 1
    if fold:
        mask = (False, *mask[1:])
    out = list(torch.ops.aten.convolution_backward(
        gy, x, w, [w.shape[0]] if has_bias else None, stride, padding, dilation, False, [0, 0],
        groups, list(mask))) if any(mask) else [None, None, None]
    if fold:
        out[0] = _input_grad_one_channel(gy, x, w, geom)
    return tuple(out)


class _ConvBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gy, x, w, has_bias, geom, mask):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(gy, x, w)
        ctx.geom, ctx.has_bias = geom, has_bias
        return _conv_backward(gy, x, w, has_bias, geom, mask)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, a, a_w, a_b):
        gy, x, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.geom
        need_gy, need_x, need_w = ctx.needs_input_grad[:3]
        ggy = gx = gw = None
        if a is not None and a.shape[1] == 1 and gy.stride(1) == 1 and gy.shape[1] > 1:
            a = one_channel_channels_last(a)  # so that conv2d(a, w) comes out channels-last, like gy
        if need_gy:
            if a is not None:
                ggy = F.conv2d(a, w, None, stride, padding, dilation, groups)
            if a_w is not None:
                t = F.conv2d(x, a_w, None, stride, padding, dilation, groups)
                ggy = t if ggy is None else ggy + t
            if a_b is not None:
                t = a_b.view(1, -1, 1, 1)
                ggy = t.expand_as(gy).clone() if ggy is None else ggy + t
        if need_w and a is not None:
            gw = _conv_backward(gy, a, w, False, ctx.geom, (False, True, False))[1]
        if need_x and a_w is not None:
            gx = _conv_backward(gy, x, a_w, False, ctx.geom, (True, False, False))[0]
        return ggy, gx, gw, None, None, None


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, geom):
        ctx.save_for_backward(x, w)
        ctx.geom, ctx.has_bias = geom, b is not None
        ctx.tensor_args = (True, True, b is not None)
        stride, padding, dilation, groups = geom
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        grad_mode = torch.is_grad_enabled()  # create_graph: the backward is differentiated
        # what this backward pass needs (a backward restricted to the parameters skips the
        # input gradient of a layer whose input is a leaf that requires grad)
        need = wanted_inputs(ctx, ctx.tensor_args)
        mask = (need[0], need[1], ctx.has_bias and need[2])
        backward = _ConvBackward.apply if grad_mode else _conv_backward
        gx, gw, gb = backward(gy, x, w, ctx.has_bias, ctx.geom, mask)
        return (gx if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None, None)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=(1, 1), padding=(0, 0),
           dilation=(1, 1), groups: int = 1) -> Tensor:
    """``F.conv2d`` (numeric padding only) with the double backward of the module docstring.

    Shape:
        x: (N, C_in, H, W); weight: (C_out, C_in / groups, kH, kW); output: (N, C_out, H', W').
    """
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    geom = (pair(stride), pair(padding), pair(dilation), int(groups))
    return _Conv2d.apply(x, weight, bias, geom)
