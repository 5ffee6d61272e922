"""Layers with a cheap double backward, and a converter for existing models.

Double backprop (GREAT, GREACE's reversed variant, Sobolev distillation, gradient penalties)
differentiates a network's backward pass. For two layers, autograd's rule for that second
derivative is much slower on a CPU than a closed form built on the fused first-derivative
kernels:

- BatchNorm in training mode (:func:`~gradversary.functional.batch_norm_train`): about 9x
  faster on a 128 x 16 x 28 x 28 activation;
- 2-d convolution (:func:`~gradversary.functional.conv2d`): the weight term by the
  weight-gradient kernel instead of a convolution of transposed copies, about 2.5x faster;
- ReLU, LeakyReLU and 2-d max pooling (:mod:`gradversary.functional.piecewise`): no
  full-size tensor of zeros for the derivative with respect to their input.

The layers here are torch's ``BatchNorm1d/2d/3d`` and ``Conv2d`` with only that change: the same
values, running statistics, first derivatives, parameters, buffers, hooks and ``state_dict``
keys. They take the fast path only while autograd records (training); otherwise, and for
configurations the closed forms do not cover (a non-zero padding mode, string padding), they
run torch's code. :func:`convert_double_backward` switches an existing model over in place.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..functional import piecewise
from ..functional.batchnorm import batch_norm_train
from ..functional.conv import conv2d

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Conv2d", "LeakyReLU", "MaxPool2d", "ReLU",
           "convert_double_backward", "revert_double_backward"]


class _FastBatchNorm:
    """Mixin for torch's ``_BatchNorm`` layers (see the module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        batch_stats = self.training or not self.track_running_stats
        if not batch_stats or not torch.is_grad_enabled():
            return super().forward(x)
        self._check_input_dim(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        track = self.training and self.track_running_stats
        return batch_norm_train(x, self.weight, self.bias, self.running_mean if track else None,
                                self.running_var if track else None, momentum, self.eps)


class BatchNorm1d(_FastBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` with a cheap double backward. Shape: (N, C) or (N, C, L)."""


class BatchNorm2d(_FastBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with a cheap double backward. Shape: (N, C, H, W)."""


class BatchNorm3d(_FastBatchNorm, nn.BatchNorm3d):
    """``nn.BatchNorm3d`` with a cheap double backward. Shape: (N, C, D, H, W)."""


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with a cheap double backward. Shape: (N, C_in, H, W) -> (N, C_out, H', W')."""

    def forward(self, x: Tensor) -> Tensor:
        if (not torch.is_grad_enabled() or self.padding_mode != "zeros"
                or isinstance(self.padding, str)):
            return super().forward(x)
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups)


class ReLU(nn.ReLU):
    """``nn.ReLU`` whose double backward adds no zeros
    (:func:`~gradversary.functional.piecewise.relu`). Shape: any -> same."""

    def forward(self, x: Tensor) -> Tensor:
        if not torch.is_grad_enabled() or self.inplace:
            return super().forward(x)
        return piecewise.relu(x)


class LeakyReLU(nn.LeakyReLU):
    """``nn.LeakyReLU`` whose double backward adds no zeros. Shape: any -> same."""

    def forward(self, x: Tensor) -> Tensor:
        if not torch.is_grad_enabled() or self.inplace or self.negative_slope <= 0:
            return super().forward(x)
        return piecewise.leaky_relu(x, self.negative_slope)


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` whose double backward adds no zeros
    (:func:`~gradversary.functional.piecewise.max_pool2d`). Shape: (N, C, H, W) -> (N, C, H', W')."""

    def forward(self, x: Tensor) -> Tensor:
        if not torch.is_grad_enabled() or self.return_indices or x.dim() != 4:
            return super().forward(x)
        return piecewise.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                                    self.ceil_mode)


_SWAP = {nn.BatchNorm1d: BatchNorm1d, nn.BatchNorm2d: BatchNorm2d, nn.BatchNorm3d: BatchNorm3d,
         nn.Conv2d: Conv2d, nn.ReLU: ReLU, nn.LeakyReLU: LeakyReLU, nn.MaxPool2d: MaxPool2d}


def convert_double_backward(module: nn.Module) -> nn.Module:
    """Give every ``torch.nn.BatchNorm1d/2d/3d``, ``Conv2d``, ``ReLU``, ``LeakyReLU`` and
    ``MaxPool2d`` in ``module`` the cheap double
    backward, in place: only the class changes (to this module's layer of the same kind), so
    parameters, buffers, hooks and ``state_dict`` stay. Subclasses of torch's layers (e.g.
    ``SyncBatchNorm``, LoRA wrappers) are left alone. Returns ``module``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
        >>> type(convert_double_backward(net)[1]).__module__
        'gradversary.nn.double_backward'
    """
    for m in module.modules():
        new = _SWAP.get(type(m))
        if new is not None:
            m.__class__ = new
    return module


def revert_double_backward(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_double_backward` in place: this module's layers become torch's
    again (e.g. to time or check against autograd's own double backward). Returns ``module``.
    """
    back = {new: old for old, new in _SWAP.items()}
    for m in module.modules():
        old = back.get(type(m))
        if old is not None:
            m.__class__ = old
    return module
