"""The DANN paper's digit networks (Ganin et al., JMLR 2016, Figure 4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..functional.conv import one_channel_channels_last
from ..nn.double_backward import Conv2d as FastConv2d
from .base import MODELS, FeatureClassifier

__all__ = ["ChannelsLastSequential", "DANNMNISTConfig", "dann_mnist", "Normalize", "input_normalization"]


class Normalize(nn.Module):
    """Subtract a per-channel mean (and divide by a std) inside the model, so inputs stay in
    [0, 1] for attacks and data loaders (the DANN paper mean-subtracts its inputs).

    Shape:
        input: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float] | None = None):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std if std is not None else [1.0] * len(mean),
                                                 dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class InstanceStandardize(nn.Module):
    """Standardise each image's channels by their own mean and standard deviation over the
    pixels (the input instance normalisation of Shu et al.'s DIRT-T digit networks, ICLR 2018,
    arXiv:1802.08735): a colour cast or a contrast change of the whole image is removed before
    the first layer, for both domains alike. Differentiable, so attacks and double backprop
    see through it.

    Shape:
        input: (N, C, H, W) -> (N, C, H, W); each (n, c) plane has mean 0 and (biased) std 1,
        ``eps`` keeping a flat plane finite.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = float(eps)

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        return (x - mean) / torch.sqrt(var + self.eps)


class _FlattenKeepLayout(torch.autograd.Function):
    """``x.flatten(1)`` whose gradient comes back in ``x``'s memory layout.

    Flattening a channels-last (N, C, H, W) tensor in (C, H, W) order copies it, and the
    copy's gradient is an NCHW tensor; every layer below would then mix layouts (ReLU's
    backward and the convolutions' run several times slower). The backward here returns the
    gradient channels-last when ``x`` was, with differentiable ops, so double backprop works.

    Shape:
        x: (N, C, H, W) -> (N, C H W).
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.shape = x.shape
        ctx.channels_last = x.dim() == 4 and x.stride(1) == 1 and x.shape[1] > 1
        return x.flatten(1)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        g = g.reshape(ctx.shape)
        return g.contiguous(memory_format=torch.channels_last) if ctx.channels_last else g


class ChannelsLastSequential(nn.Sequential):
    """``nn.Sequential`` that runs its layers on a channels-last copy of a 4-D input.

    Same values (to float rounding) and the same parameter names as ``nn.Sequential``; only the
    memory layout differs. On the CPU builds we run, ``max_pool2d`` on an NCHW tensor is about
    8x slower than on a channels-last one (a (128, 32, 24, 24) pooling: ~80 ms against ~9 ms on
    one thread) and oneDNN's convolutions are faster too, so the DANN digit network's training
    step takes about two thirds of the time and its evaluation about half. A final ``Flatten``
    reads the output in (C, H, W) order whatever its layout, and hands its gradient back
    channels-last, so that the backward pass (and GREAT's double backward) stays in one layout.
    A one-channel ``Conv2d`` becomes :class:`gradversary.nn.double_backward.Conv2d` (same
    parameters and values), whose input gradient, taken by every attack and adversarial
    training step, avoids oneDNN's slow one-channel kernel.

    Shape:
        input: (N, C, H, W) (or any shape, passed through unchanged) -> as the layers give.
    """

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        for m in self:  # a one-channel first layer: its input gradient by col2im (3x faster)
            if type(m) is nn.Conv2d and m.in_channels == 1 and m.groups == 1:
                m.__class__ = FastConv2d

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            # one channel: contiguous(channels_last) would keep the NCHW strides and every
            # layer would run NCHW (max_pool2d ~15x slower on a (128, 32, 24, 24) MNIST batch)
            x = (one_channel_channels_last(x) if x.shape[1] == 1
                 else x.contiguous(memory_format=torch.channels_last))
        for i, layer in enumerate(self):
            last_flatten = i == len(self) - 1 and isinstance(layer, nn.Flatten) and x.dim() == 4
            x = _FlattenKeepLayout.apply(x) if last_flatten else layer(x)
        return x


def input_normalization(channels: int, mean: Sequence[float] | None,
                        std: Sequence[float] | None, kind: str = "dataset") -> list[nn.Module]:
    """``[Normalize(mean, std)]`` checked against ``channels``, or ``[]`` when ``mean`` is None;
    ``kind="instance"``: ``[InstanceStandardize()]`` (``mean``/``std`` must then be None)."""
    if kind == "instance":
        if mean is not None or std is not None:
            raise ValueError("input_norm: instance standardises each image itself; set mean "
                             "and std to null")
        return [InstanceStandardize()]
    if kind != "dataset":
        raise ValueError(f"input_norm must be 'dataset' or 'instance', got {kind!r}")
    if mean is None:
        if std is not None:
            raise ValueError("std needs mean")
        return []
    if len(mean) != channels or (std is not None and len(std) != channels):
        raise ValueError(f"mean/std need {channels} values (one per input channel)")
    return [Normalize(mean, std)]


@dataclass
class DANNMNISTConfig:
    """Args: mean: per-channel input mean subtracted in the model (the paper's mean
    subtraction); std: and divided by (default none); head_hidden: the label predictor's
    hidden layers (the paper: 100, 100); batch_norm: BatchNorm after each conv and hidden
    linear layer (not in the paper; a common stabiliser of DANN ports); dropout: dropout
    before each hidden linear layer of the head, or only before those listed in
    dropout_layers (0-based; fungtion/DANN's port: [1]); channels: the two convolutions'
    widths (the paper: 32, 48; fungtion/DANN: 64, 50); conv_dropout: Dropout2d after the
    second convolution (and its BatchNorm), as in that port."""

    mean: list[float] | None = None
    head_hidden: list[int] | None = None
    batch_norm: bool = False
    dropout: float = 0.0
    std: list[float] | None = None
    channels: list[int] = field(default_factory=lambda: [32, 48])
    conv_dropout: float = 0.0
    dropout_layers: list[int] | None = None

    def __post_init__(self) -> None:
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ValueError(f"dann_mnist.channels must be two positive widths, got {self.channels}")
        if not 0.0 <= self.conv_dropout < 1.0:
            raise ValueError(f"dann_mnist.conv_dropout must be in [0, 1), got {self.conv_dropout}")


@MODELS.register("dann_mnist", DANNMNISTConfig)
def dann_mnist(in_shape: Sequence[int], num_classes: int, mean: Sequence[float] | None = None,
               head_hidden: Sequence[int] | None = None, batch_norm: bool = False,
               dropout: float = 0.0, std: Sequence[float] | None = None,
               channels: Sequence[int] = (32, 48), conv_dropout: float = 0.0,
               dropout_layers: Sequence[int] | None = None) -> FeatureClassifier:
    """The DANN MNIST network: conv5x5-32, pool, conv5x5-48, pool | FC100, FC100, K.

    The features (where the domain classifier attaches) are the flattened second pooling
    output: 48 x 4 x 4 = 768 for 28 x 28 inputs. Each ReLU comes after its max pooling: the
    two orders are the same function with the same gradients (ReLU is monotone and exact, and
    where it ties values at zero their gradient is zero), and the ReLU then runs on a quarter
    of the values (about 10% of a training step, more of an attack's).

    Shape:
        input: (N, C, 28, 28) in [0, 1]; output: (N, K).
    """
    c = int(in_shape[0]) if len(in_shape) == 3 else 0

    def bn2(ch):
        return [nn.BatchNorm2d(ch)] if batch_norm else []

    c1, c2 = (int(v) for v in channels)
    drop2d = [nn.Dropout2d(conv_dropout)] if conv_dropout > 0 else []
    feats, fdim = _conv_features(in_shape, [
        nn.Conv2d(c, c1, 5), *bn2(c1), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(c1, c2, 5), *bn2(c2), *drop2d, nn.MaxPool2d(2), nn.ReLU()], mean, std)
    hidden = list(head_hidden) if head_hidden is not None else [100, 100]
    return FeatureClassifier(feats, _mlp_head(fdim, hidden, num_classes, batch_norm, dropout,
                                              dropout_layers), fdim, num_classes)


dann_mnist.example_in_shape = (3, 28, 28)  # used by the registry smoke test


def _conv_features(in_shape: Sequence[int], layers: list[nn.Module], mean,
                   std=None) -> tuple[nn.Module, int]:
    """Normalize (optional), the conv stack, Flatten; and the flattened feature size."""
    if len(in_shape) != 3:
        raise ValueError(f"expected (C, H, W) inputs, got {tuple(in_shape)}")
    c, h, w = (int(s) for s in in_shape)
    feats = ChannelsLastSequential(*input_normalization(c, mean, std), *layers, nn.Flatten())
    with torch.no_grad():
        fdim = int(feats(torch.zeros(1, c, h, w)).shape[1])
    return feats, fdim


def _mlp_head(fdim: int, hidden: Sequence[int], num_classes: int, batch_norm: bool = False,
              dropout: float = 0.0, dropout_layers: Sequence[int] | None = None) -> nn.Sequential:
    """[Dropout] Linear [BatchNorm] ReLU blocks, then the K-way linear layer; the dropout is
    before every hidden Linear, or only before those numbered in ``dropout_layers``."""
    layers: list[nn.Module] = []
    width = fdim
    where = set(range(len(hidden))) if dropout_layers is None else {int(i) for i in dropout_layers}
    if where - set(range(len(hidden))):
        raise ValueError(f"dropout_layers {sorted(where)} name hidden layers that do not exist "
                         f"(there are {len(hidden)})")
    for i, hd in enumerate(hidden):
        layers += [*([nn.Dropout(dropout)] if dropout > 0 and i in where else []), nn.Linear(width, hd),
                   *([nn.BatchNorm1d(hd)] if batch_norm else []), nn.ReLU()]
        width = hd
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


@dataclass
class DANNConvConfig:
    """Args: mean: per-channel mean subtracted in the model (null: none)."""

    mean: list[float] | None = None


@MODELS.register("dann_svhn", DANNConvConfig)
def dann_svhn(in_shape: Sequence[int], num_classes: int, mean: Sequence[float] | None = None) -> FeatureClassifier:
    """The DANN SVHN network: conv5x5-64, pool, conv5x5-64, pool, conv5x5-128 | FC3072, FC2048, K.

    Ganin et al., JMLR 2016, Figure 4 (for Syn Numbers -> SVHN, SVHN -> MNIST); its domain
    head is 1024-1024-1 (``method.disc_hidden: [1024, 1024]``). Pools are 3x3, stride 2.

    Shape:
        input: (N, 3, 32, 32) in [0, 1]; output: (N, K).
    """
    c = int(in_shape[0]) if len(in_shape) == 3 else 0
    feats, fdim = _conv_features(in_shape, [
        nn.Conv2d(c, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 128, 5, padding=2), nn.ReLU()], mean)
    return FeatureClassifier(feats, _mlp_head(fdim, [3072, 2048], num_classes), fdim, num_classes)


@MODELS.register("dann_gtsrb", DANNConvConfig)
def dann_gtsrb(in_shape: Sequence[int], num_classes: int, mean: Sequence[float] | None = None) -> FeatureClassifier:
    """The DANN GTSRB network: conv5x5-96, pool, conv3x3-144, pool, conv5x5-256, pool | FC512, K.

    Ganin et al., JMLR 2016, Figure 4 (Syn Signs -> GTSRB, 43 classes, 40x40 inputs); its
    domain head is 1024-1024-1. Pools are 2x2, stride 2.

    Shape:
        input: (N, 3, 40, 40) in [0, 1]; output: (N, K).
    """
    c = int(in_shape[0]) if len(in_shape) == 3 else 0
    feats, fdim = _conv_features(in_shape, [
        nn.Conv2d(c, 96, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(96, 144, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(144, 256, 5), nn.ReLU(), nn.MaxPool2d(2)], mean)
    return FeatureClassifier(feats, _mlp_head(fdim, [512], num_classes), fdim, num_classes)


dann_svhn.example_in_shape = (3, 32, 32)
dann_gtsrb.example_in_shape = (3, 40, 40)
