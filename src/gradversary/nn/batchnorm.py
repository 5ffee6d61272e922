"""BatchNorm statistics re-estimated on one domain's unlabelled inputs (AdaBN).

AdaBN: Li, Wang, Shi, Liu & Hou, "Revisiting Batch Normalization For Practical Domain
Adaptation", ICLR 2017 workshop (arXiv:1603.04779). Every BatchNorm layer's running mean and
variance are replaced by the statistics of the target domain's training inputs, which needs no
target labels; the weights stay as trained. A network trained with per-domain batch statistics
(DANN's ``bn_policy: separate``, or source-only training) normalises target batches with
target statistics during training but, at test time in eval mode, with running averages that
mix or ignore the target domain; re-estimating them on the target removes that mismatch
(``train.bn_stats: target``; :mod:`gradversary.analysis.batchnorm` measures it).

Estimation: each BatchNorm layer sees the whole of ``x`` in batches, in train mode with every
other module (dropout) in eval mode, and keeps the cumulative average of the batch means and
(unbiased) batch variances (``momentum=None``), as :func:`torch.optim.swa_utils.update_bn`
does, but without dropout noise in the inputs of the layers.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["batchnorm_layers", "adapt_batchnorm", "batchnorm_statistics_of"]


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers (1d, 2d, 3d) of ``model`` that track running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, x: Tensor, batch_size: int = 256) -> int:
    """Re-estimate every BatchNorm layer's running statistics on ``x`` (AdaBN), in place.

    The model's mode and each layer's momentum are restored afterwards; only the running
    means, variances and batch counters change. Returns the number of layers re-estimated.

    Shape:
        x: (N, *) inputs of one domain as the model takes them, N >= 2 (a last batch of one
        joins the batch before it).
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 inputs to estimate batch statistics, got {x.shape[0]}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2, got {batch_size}")
    modes = {m: m.training for m in model.modules()}
    momenta = {bn: bn.momentum for bn in layers}
    device = next((p.device for p in model.parameters()), x.device)
    try:
        model.eval()
        for bn in layers:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches
            bn.train()
        starts = list(range(0, x.shape[0], batch_size))
        if len(starts) > 1 and x.shape[0] - starts[-1] < 2:  # no batch of one: merge it
            starts.pop()
        for i, s in enumerate(starts):
            e = starts[i + 1] if i + 1 < len(starts) else x.shape[0]
            model(x[s:e].to(device))
    finally:
        for bn, mom in momenta.items():
            bn.momentum = mom
        for m, was in modes.items():
            m.train(was)
    return len(layers)


@contextlib.contextmanager
def batchnorm_statistics_of(model: nn.Module, x: Tensor, batch_size: int = 256) -> Iterator[nn.Module]:
    """A context in which ``model`` normalises with statistics of ``x`` (AdaBN); its own running
    statistics are put back on exit.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
        >>> with batchnorm_statistics_of(net, torch.randn(100, 3) + 5):
        ...     pass
        >>> bool(net[1].running_mean.abs().max() == 0)
        True
    """
    saved = [copy.deepcopy(bn.state_dict()) for bn in batchnorm_layers(model)]
    try:
        adapt_batchnorm(model, x, batch_size)
        yield model
    finally:
        for bn, state in zip(batchnorm_layers(model), saved):
            bn.load_state_dict(state)
