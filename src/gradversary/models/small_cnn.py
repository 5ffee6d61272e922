"""The small convolutional networks of the adversarial-training papers' MNIST experiments.

Two convolutions with ReLU (each optionally followed by 2x2 max pooling), then fully connected
layers. The defaults are Wong, Rice & Kolter's MNIST network ("Fast is better than free",
ICLR 2020; their ``mnist_net``): conv 4x4-16 stride 2 padding 1, conv 4x4-32 stride 2 padding 1,
FC 100, 10. Madry et al.'s MNIST network (ICLR 2018) is ``channels: [32, 64], kernel: 5,
stride: 1, padding: 2, pool: true, hidden: [1024]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .base import MODELS, FeatureClassifier
from .digits import input_normalization

__all__ = ["SmallCNNConfig", "small_cnn"]


@dataclass
class SmallCNNConfig:
    """Options of ``small_cnn``.

    Args:
        channels: output channels of the convolutions (Wong et al.: 16, 32; Madry et al.: 32, 64).
        kernel, stride, padding: of every convolution (Wong et al.: 4, 2, 1; Madry et al.: 5, 1, 2).
        pool: 2x2 max pooling after each convolution (Madry et al.).
        hidden: the fully connected layers before the last (Wong et al.: [100]; Madry et al.: [1024]).
        mean, std: per-channel normalisation inside the model (null: none; both papers feed [0, 1]).
    """

    channels: list[int] = field(default_factory=lambda: [16, 32])
    kernel: int = 4
    stride: int = 2
    padding: int = 1
    pool: bool = False
    hidden: list[int] = field(default_factory=lambda: [100])
    mean: list[float] | None = None
    std: list[float] | None = None


@MODELS.register("small_cnn", SmallCNNConfig)
def small_cnn(in_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (16, 32),
              kernel: int = 4, stride: int = 2, padding: int = 1, pool: bool = False,
              hidden: Sequence[int] = (100,), mean: Sequence[float] | None = None,
              std: Sequence[float] | None = None) -> FeatureClassifier:
    """Convolutions (ReLU, optional max pooling), then FC layers with ReLU; the last hidden
    layer is the feature layer, the final linear layer the head.

    About 0.17 M parameters with the defaults on 1 x 28 x 28 inputs, 10 classes (3.3 M with
    Madry et al.'s settings).

    Shape:
        input: (N, C, H, W) in [0, 1]; output: (N, K); features: (N, hidden[-1]).
    """
    if len(in_shape) != 3:
        raise ValueError(f"small_cnn expects (C, H, W) inputs, got {tuple(in_shape)}")
    if not channels or min(channels) < 1 or not hidden or min(hidden) < 1:
        raise ValueError(f"need positive channel and hidden sizes, got channels={list(channels)}, "
                         f"hidden={list(hidden)}")
    if kernel < 1 or stride < 1 or padding < 0:
        raise ValueError(f"need kernel >= 1, stride >= 1, padding >= 0, got {kernel}, {stride}, {padding}")
    c, h, w = (int(s) for s in in_shape)
    layers: list[nn.Module] = input_normalization(c, mean, std)
    c_in = c
    for c_out in channels:
        layers += [nn.Conv2d(c_in, int(c_out), kernel, stride, padding), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
        c_in = int(c_out)
    layers.append(nn.Flatten())
    with torch.no_grad():
        width = int(nn.Sequential(*layers).eval()(torch.zeros(1, c, h, w)).shape[1])
    for units in hidden:
        layers += [nn.Linear(width, int(units)), nn.ReLU()]
        width = int(units)
    model = FeatureClassifier(nn.Sequential(*layers), nn.Linear(width, num_classes), width, num_classes)
    model.build_spec = {"name": "small_cnn", "in_shape": (c, h, w),
                        "options": {"channels": [int(x) for x in channels], "kernel": int(kernel),
                                    "stride": int(stride), "padding": int(padding), "pool": bool(pool),
                                    "hidden": [int(x) for x in hidden],
                                    "mean": list(mean) if mean is not None else None,
                                    "std": list(std) if std is not None else None}}
    return model


small_cnn.example_in_shape = (1, 28, 28)  # used by the registry smoke test
