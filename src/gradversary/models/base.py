"""The model contract shared by every method: a feature extractor and a label head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..registry import Registry

__all__ = ["MODELS", "FeatureClassifier", "create_model", "mlp_layers"]

MODELS = Registry("model", context=("in_shape", "num_classes"))


class FeatureClassifier(nn.Module):
    """A classifier split into a feature extractor G_f and a label predictor G_y.

    DANN attaches its domain classifier to ``features``; GREAT takes gradients with respect
    to the input or the features. ``forward`` always returns logits, in train and eval mode.

    Args:
        features: module mapping inputs (N, *) to features (N, F).
        head: module mapping features (N, F) to logits (N, K).
        feature_dim: F.
        num_classes: K.

    Shape:
        input: (N, *) as the feature extractor expects; output: (N, K) logits.
    """

    def __init__(self, features: nn.Module, head: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.features = features
        self.head = head
        self.feature_dim = int(feature_dim)
        self.num_classes = int(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Class indices (N,) for inputs (N, *)."""
        return self.forward(x).argmax(dim=-1)


def mlp_layers(in_features: int, hidden: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """Linear + activation blocks: in_features -> hidden[0] -> ... -> hidden[-1]."""
    acts = {
        "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
    }
    if activation not in acts:
        raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), acts[activation]()]
        width = int(h)
    return nn.Sequential(*layers)


def create_model(name: str, in_shape: Sequence[int], num_classes: int, **params) -> FeatureClassifier:
    """Build a registered model for inputs of shape ``in_shape`` (without N) and K classes."""
    return MODELS.create(name, in_shape=tuple(in_shape), num_classes=int(num_classes), **params)
