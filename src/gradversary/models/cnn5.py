"""GREAT's 5-layer CNN student for CIFAR-10 distillation.

Sinha, Chen, Badrinarayanan & Rabinovich, "Gradient Adversarial Training of Neural Networks",
arXiv:1806.08028 (2018), supplement, "CNN-5+ResNet-18": three 3x3 convolutions with padding 1 of
32, 64 and 128 channels (the second and third with stride 2), then two linear layers, the
penultimate one of 128 units; every layer but the last is followed by BatchNorm and ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from .base import MODELS, FeatureClassifier
from .digits import input_normalization

__all__ = ["CNN5Config", "cnn5"]


def _act(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU()
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.2)
    raise ValueError(f"activation must be 'relu' or 'leaky_relu', got {kind!r}")


@dataclass
class CNN5Config:
    """Options of ``cnn5``.

    Args:
        channels: output channels of the convolutions; the first has stride 1, the others 2
            (the paper: 32, 64, 128). Fewer entries make a shallower network (GREAT's
            discriminator: "a shallower version of the student").
        hidden: units of the penultimate linear layer (the paper: 128).
        batch_norm: BatchNorm after every layer but the last (the paper).
        activation: ``relu`` or ``leaky_relu`` (slope 0.2, GREAT's auxiliary networks).
        mean: per-channel mean subtracted inside the model (null: none).
        std: per-channel std divided inside the model (needs ``mean``).
    """

    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    hidden: int = 128
    batch_norm: bool = True
    activation: Literal["relu", "leaky_relu"] = "relu"
    mean: list[float] | None = None
    std: list[float] | None = None


@MODELS.register("cnn5", CNN5Config)
def cnn5(in_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32, 64, 128),
         hidden: int = 128, batch_norm: bool = True, activation: str = "relu",
         mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> FeatureClassifier:
    """GREAT's CNN-5 student: conv3x3-32, conv3x3-64/2, conv3x3-128/2 | FC128, K (BN + ReLU).

    The features are the 128 units of the penultimate layer (after BatchNorm and ReLU); the
    head is the last linear layer. About 1.15 M parameters for 3 x 32 x 32 inputs, 10 classes.

    Shape:
        input: (N, C, H, W) in [0, 1]; output: (N, K); features: (N, hidden).
    """
    if len(in_shape) != 3:
        raise ValueError(f"cnn5 expects (C, H, W) inputs, got {tuple(in_shape)}")
    if not channels or min(channels) < 1 or hidden < 1:
        raise ValueError(f"need >= 1 positive channel count and hidden >= 1, got "
                         f"channels={list(channels)}, hidden={hidden}")
    c, h, w = (int(s) for s in in_shape)
    layers: list[nn.Module] = input_normalization(c, mean, std)
    c_in = c
    for i, c_out in enumerate(channels):
        layers += [nn.Conv2d(c_in, int(c_out), 3, 1 if i == 0 else 2, 1, bias=not batch_norm),
                   *([nn.BatchNorm2d(int(c_out))] if batch_norm else []), _act(activation)]
        c_in = int(c_out)
    layers.append(nn.Flatten())
    with torch.no_grad():
        flat = int(nn.Sequential(*layers).eval()(torch.zeros(1, c, h, w)).shape[1])
    layers += [nn.Linear(flat, hidden, bias=not batch_norm),
               *([nn.BatchNorm1d(hidden)] if batch_norm else []), _act(activation)]
    model = FeatureClassifier(nn.Sequential(*layers), nn.Linear(hidden, num_classes), hidden,
                              num_classes)
    model.build_spec = {"name": "cnn5", "in_shape": (c, h, w),
                        "options": {"channels": [int(x) for x in channels], "hidden": int(hidden),
                                    "batch_norm": batch_norm, "activation": activation,
                                    "mean": list(mean) if mean is not None else None,
                                    "std": list(std) if std is not None else None}}
    return model


cnn5.example_in_shape = (3, 16, 16)  # used by the registry smoke test
