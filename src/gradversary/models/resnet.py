"""CIFAR-style residual networks: GREAT's ResNet-18 and a small member of the family for CPUs.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385), in the CIFAR form used by GREAT (Sinha et al., "Gradient Adversarial
Training of Neural Networks", arXiv:1806.08028, section 3.1 and supplement): a 3x3 stem with no
max-pool, stages of BasicBlocks (two 3x3 convolutions and an identity or 1x1 shortcut), global
average pooling, one linear layer.

The options GREAT needs beyond the paper's network:

- ``norm``: ``batch`` (the paper), ``group`` (GroupNorm) or ``none``. GREAT backpropagates twice
  through the network; with autograd's rule, BatchNorm's double backward was most of a GREAT
  step on a CPU (shared REFERENCE.md; the GREAT methods now use the closed form of
  :mod:`gradversary.nn.double_backward`). The other choices are *separate, named*
  configurations (they change the model, not just its speed).
- ``activation``: ``relu`` (main network) or ``leaky_relu`` (slope 0.2: GREAT's auxiliary
  networks).
- ``mean``/``std``: a per-channel :class:`~gradversary.models.digits.Normalize` inside the model,
  so inputs (and attacks) stay in [0, 1].

The convolution stack runs channels-last (:class:`~gradversary.models.digits.ChannelsLastSequential`:
the same parameters and values as ``nn.Sequential``; oneDNN's CPU kernels are faster in that
layout, and a one-channel stem takes the col2im input gradient). Measured on resnet_small, batch
128, one thread, at stop 27: a training step on MNIST about 1.15x faster (ERM), 1.5x for fast AT
and 1.25x for GREAT, whose steps take input gradients. The strided 1x1 shortcut is a
:class:`SubsampleConv2d`, which keeps clear of a torch kernel that corrupts memory in that layout.

Each factory records how it was called in ``model.build_spec`` (name and options), so a method
can build a sibling network of the same architecture (GREAT's auxiliary network).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from .base import MODELS, FeatureClassifier
from .digits import ChannelsLastSequential, input_normalization

__all__ = ["BasicBlock", "SubsampleConv2d", "activation_layer", "norm_layer", "ResNetConfig", "ResNetSmallConfig", "resnet", "resnet18", "resnet_small"]

Norm = Literal["batch", "group", "none"]
Activation = Literal["relu", "leaky_relu"]


def norm_layer(kind: str, channels: int, groups: int) -> nn.Module:
    """A 2-d normalisation layer of ``kind`` ('batch', 'group' with ``groups`` groups, 'none')."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, groups), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', got {kind!r}")


def activation_layer(kind: str) -> nn.Module:
    """The activation module named ``kind`` ('relu' or 'leaky_relu')."""
    if kind == "relu":
        return nn.ReLU()
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.2)
    raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {kind!r}")


class SubsampleConv2d(nn.Conv2d):
    """A 1x1 convolution with stride s, taken as a stride-1 convolution of every s-th row and
    column of its input: the same values, parameters and ``state_dict`` as ``nn.Conv2d(c_in,
    c_out, 1, s)``.

    Why: the ResNets run channels-last (:class:`~gradversary.models.digits.ChannelsLastSequential`,
    about 1.2-1.5x faster steps on a CPU), and torch 2.13's CPU weight gradient of a *strided*
    1x1 convolution on a channels-last float32 input with few input channels writes out of
    bounds (glibc aborts: "double free or corruption"; measured at stop 27 on 8 x C x 8 x 8
    inputs: C = 3, 4 and 6 aborted under MALLOC_CHECK_=3; stride 1, and C = 7 to 32, were clean).
    Subsampling first avoids that kernel for every width.

    Shape:
        input: (N, C_in, H, W) -> (N, C_out, ceil(H / s), ceil(W / s)).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, bias: bool = True):
        super().__init__(c_in, c_out, 1, stride, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        sh, sw = self.stride
        return F.conv2d(x[:, :, ::sh, ::sw], self.weight, self.bias)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection: act(n2(c2(act(n1(c1 x)))) + s(x)).

    The shortcut s is the identity, or a strided 1x1 convolution (and norm) when the shape
    changes. Convolutions carry a bias only when there is no normalisation after them.

    Shape:
        input: (N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, norm: str = "batch",
                 activation: str = "relu", groups: int = 32):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.n1 = norm_layer(norm, c_out, groups)
        self.act1 = activation_layer(activation)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.n2 = norm_layer(norm, c_out, groups)
        self.act2 = activation_layer(activation)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(SubsampleConv2d(c_in, c_out, stride, bias=bias),
                                          norm_layer(norm, c_out, groups))

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.n1(self.conv1(x)))
        out = self.n2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


def resnet(in_shape: Sequence[int], num_classes: int, widths: Sequence[int], blocks: Sequence[int],
           norm: str = "batch", activation: str = "relu", mean: Sequence[float] | None = None,
           std: Sequence[float] | None = None, norm_groups: int = 32) -> FeatureClassifier:
    """A CIFAR-style ResNet: stem conv3x3 -> stages of BasicBlocks -> global average pool | linear.

    Stage i has ``blocks[i]`` blocks of ``widths[i]`` channels; the first stage keeps the
    resolution, each later one halves it. The features are the pooled ``widths[-1]`` channels.

    Args:
        in_shape: (C, H, W), any number of channels and any size >= 1.
        num_classes: K.
        widths: channels per stage (the stem has ``widths[0]``).
        blocks: BasicBlocks per stage.
        norm: ``batch``, ``group`` or ``none``.
        activation: ``relu`` or ``leaky_relu`` (slope 0.2).
        mean: per-channel mean subtracted inside the model (null: none).
        std: per-channel std divided inside the model (needs ``mean``).
        norm_groups: GroupNorm groups (reduced to gcd(channels, norm_groups) per layer).

    Shape:
        input: (N, C, H, W) in [0, 1]; output: (N, K); features: (N, widths[-1]).
    """
    if len(in_shape) != 3:
        raise ValueError(f"resnet expects (C, H, W) inputs, got {tuple(in_shape)}")
    if not widths or len(widths) != len(blocks) or min(blocks) < 1 or min(widths) < 1:
        raise ValueError(f"need one positive width per stage and >= 1 block each, got "
                         f"widths={list(widths)}, blocks={list(blocks)}")
    c = int(in_shape[0])
    pre = input_normalization(c, mean, std)
    layers: list[nn.Module] = [*pre, nn.Conv2d(c, widths[0], 3, 1, 1, bias=norm == "none"),
                               norm_layer(norm, widths[0], norm_groups), activation_layer(activation)]
    c_in = widths[0]
    for i, (w, n) in enumerate(zip(widths, blocks)):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            layers.append(BasicBlock(c_in, w, stride, norm, activation, norm_groups))
            c_in = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return FeatureClassifier(ChannelsLastSequential(*layers), nn.Linear(c_in, num_classes), c_in, num_classes)


@dataclass
class ResNetConfig:
    """Options of ``resnet18``: see :func:`resnet` (norm, activation, mean, std, norm_groups)."""

    norm: Norm = "batch"
    activation: Activation = "relu"
    mean: list[float] | None = None
    std: list[float] | None = None
    norm_groups: int = 32


@dataclass
class ResNetSmallConfig(ResNetConfig):
    """Options of ``resnet_small``: those of ``resnet18`` plus the stage widths and depths."""

    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    norm_groups: int = 8


def _spec(model: FeatureClassifier, name: str, in_shape, **options) -> FeatureClassifier:
    model.build_spec = {"name": name, "in_shape": tuple(int(s) for s in in_shape),
                        "options": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                                    for k, v in options.items()}}
    return model


@MODELS.register("resnet18", ResNetConfig)
def resnet18(in_shape: Sequence[int], num_classes: int, norm: str = "batch",
             activation: str = "relu", mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None, norm_groups: int = 32) -> FeatureClassifier:
    """ResNet-18 for 32x32 inputs (CIFAR form): widths 64-128-256-512, BasicBlocks [2, 2, 2, 2].

    GREAT's main and auxiliary network on CIFAR-10 and SVHN (Sinha et al., arXiv:1806.08028,
    supplement); 11.2 M parameters for 3 x 32 x 32 inputs and 10 classes.

    Shape:
        input: (N, C, H, W) in [0, 1]; output: (N, K); features: (N, 512).
    """
    model = resnet(in_shape, num_classes, [64, 128, 256, 512], [2, 2, 2, 2], norm, activation,
                   mean, std, norm_groups)
    return _spec(model, "resnet18", in_shape, norm=norm, activation=activation, mean=mean,
                 std=std, norm_groups=norm_groups)


@MODELS.register("resnet_small", ResNetSmallConfig)
def resnet_small(in_shape: Sequence[int], num_classes: int, norm: str = "batch",
                 activation: str = "relu", mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, norm_groups: int = 8,
                 widths: Sequence[int] = (16, 32, 64), blocks: Sequence[int] = (1, 1, 1)) -> FeatureClassifier:
    """A small CIFAR-style ResNet for CPUs: widths 16-32-64, one BasicBlock per stage.

    The same family as ``resnet18`` (3x3 stem, BasicBlocks, global pooling), with about 78 k
    parameters for 1 x 28 x 28 inputs and 10 classes.

    Shape:
        input: (N, C, H, W) in [0, 1]; output: (N, K); features: (N, widths[-1]).
    """
    model = resnet(in_shape, num_classes, widths, blocks, norm, activation, mean, std, norm_groups)
    return _spec(model, "resnet_small", in_shape, norm=norm, activation=activation, mean=mean,
                 std=std, norm_groups=norm_groups, widths=widths, blocks=blocks)


resnet18.example_in_shape = (3, 32, 32)  # used by the registry smoke test
resnet_small.example_in_shape = (1, 28, 28)

