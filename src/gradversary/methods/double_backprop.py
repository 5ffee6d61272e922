"""Double backpropagation: cross-entropy plus a penalty on the input gradient.

Drucker & LeCun, "Improving Generalization Performance Using Double Backpropagation",
IEEE Transactions on Neural Networks 3(6), 1992.

Objective, for source examples (x_i, y_i):

    L = (1/N) sum_i [ CE(f(x_i), y_i) + w ||d CE(f(x_i), y_i) / d x_i||^2 ]

The input gradient is taken from the **sum**-reduced cross-entropy, so each example's gradient
is its own (independent of the batch size), and with ``create_graph=True`` so the penalty
trains the network. It is the smallest method with a second-order term, and the reference for
the engine's DDP equality test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ..functional import input_gradient
from ..models.base import FeatureClassifier
from .base import METHODS, Batch, Method, MethodOutput

__all__ = ["DoubleBackpropConfig", "DoubleBackprop"]


@dataclass
class DoubleBackpropConfig:
    """Args: weight: w, the weight of the squared input-gradient norm."""

    weight: float = 0.01


@METHODS.register("double_backprop", DoubleBackpropConfig)
class DoubleBackprop(Method):
    """Source cross-entropy plus w times the mean squared norm of each example's input gradient.

    Shape:
        batch.x_s: (N, *), batch.y_s: (N,); the target inputs are ignored.

    Metrics: ``src_acc``, ``grad_norm`` (mean L2 norm of the input gradients).
    """

    uses_target = False
    double_backprop = True

    def __init__(self, model: FeatureClassifier, cfg: DoubleBackpropConfig | None = None):
        super().__init__(model)
        self.cfg = cfg or DoubleBackpropConfig()

    def per_example_input_gradient(self, ce):
        """Hook for the reduction of the loss that the input gradient is taken from:
        the sum (each example's own gradient). Shape: ce (N,) -> scalar."""
        return ce.sum()

    def forward(self, batch: Batch) -> MethodOutput:
        x = batch.x_s.detach().requires_grad_()
        logits = self.model(x)
        ce = F.cross_entropy(logits, batch.y_s, reduction="none")
        g = input_gradient(self.per_example_input_gradient(ce), x, create_graph=True)
        sq = g.flatten(1).square().sum(1)
        task_loss, penalty = ce.mean(), sq.mean()
        loss = task_loss + self.cfg.weight * penalty
        metrics = {"src_acc": (logits.detach().argmax(-1) == batch.y_s).float().mean(),
                   "grad_norm": sq.detach().sqrt().mean()}
        return MethodOutput(loss, {"task_loss": task_loss, "grad_penalty": penalty}, metrics)
