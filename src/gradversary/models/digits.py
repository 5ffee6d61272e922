"""The DANN paper's digit networks (Ganin et al., JMLR 2016, Figure 4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import MODELS, FeatureClassifier

__all__ = ["DANNMNISTConfig", "dann_mnist", "Normalize"]


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


@dataclass
class DANNMNISTConfig:
    """Args: mean: per-channel input mean subtracted in the model (the paper's mean
    subtraction); head_hidden: the label predictor's hidden layers (the paper: 100, 100)."""

    mean: list[float] | None = None
    head_hidden: list[int] | None = None


@MODELS.register("dann_mnist", DANNMNISTConfig)
def dann_mnist(in_shape: Sequence[int], num_classes: int, mean: Sequence[float] | None = None,
               head_hidden: Sequence[int] | None = None) -> FeatureClassifier:
    """The DANN MNIST network: conv5x5-32, pool, conv5x5-48, pool | FC100, FC100, K.

    The features (where the domain classifier attaches) are the flattened second pooling
    output: 48 x 4 x 4 = 768 for 28 x 28 inputs.

    Shape:
        input: (N, C, 28, 28) in [0, 1]; output: (N, K).
    """
    if len(in_shape) != 3:
        raise ValueError(f"dann_mnist needs (C, H, W) inputs, got {tuple(in_shape)}")
    c, h, w = (int(s) for s in in_shape)
    layers: list[nn.Module] = []
    if mean is not None:
        if len(mean) != c:
            raise ValueError(f"mean has {len(mean)} channels, inputs have {c}")
        layers.append(Normalize(mean))
    layers += [nn.Conv2d(c, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
               nn.Conv2d(32, 48, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
    feats = nn.Sequential(*layers)
    with torch.no_grad():
        fdim = int(feats(torch.zeros(1, c, h, w)).shape[1])
    hidden = list(head_hidden) if head_hidden is not None else [100, 100]
    head: list[nn.Module] = []
    width = fdim
    for hd in hidden:
        head += [nn.Linear(width, hd), nn.ReLU()]
        width = hd
    head.append(nn.Linear(width, num_classes))
    return FeatureClassifier(feats, nn.Sequential(*head), fdim, num_classes)


dann_mnist.example_in_shape = (3, 28, 28)  # used by the registry smoke test
