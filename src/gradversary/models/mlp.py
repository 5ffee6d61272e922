"""Multi-layer perceptrons for vector inputs (the moons toy, text and feature benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from .base import MODELS, FeatureClassifier, mlp_layers

__all__ = ["MLPConfig", "mlp"]


@dataclass
class MLPConfig:
    """Args of :func:`mlp`: hidden layer sizes and their activation."""

    hidden: list[int] = field(default_factory=lambda: [15])
    activation: str = "relu"


@MODELS.register("mlp", MLPConfig)
def mlp(in_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (15,),
        activation: str = "relu") -> FeatureClassifier:
    """MLP: the DANN paper's shallow network (one hidden layer) and its deeper kin.

    The features are the last hidden layer's activations; the head is one linear layer. The
    paper's toy moons network has one hidden layer of 15 units; its Amazon network 50 or 100.

    Shape:
        input: (N, D) with D = prod(in_shape); output: (N, K).
    """
    if not hidden:
        raise ValueError("mlp needs at least one hidden layer (the features)")
    d = 1
    for s in in_shape:
        d *= int(s)
    feats = nn.Sequential(nn.Flatten(), mlp_layers(d, hidden, activation))
    return FeatureClassifier(feats, nn.Linear(int(hidden[-1]), num_classes), int(hidden[-1]), num_classes)


mlp.example_in_shape = (2,)  # used by the registry smoke test
