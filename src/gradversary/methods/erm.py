"""Empirical risk minimisation on the labelled source: the source-only baseline."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ..models.base import FeatureClassifier
from .base import METHODS, Batch, Method, MethodOutput

__all__ = ["ERMConfig", "ERM"]


@dataclass
class ERMConfig:
    """ERM has no options; the dataclass exists so that unknown keys are rejected."""


@METHODS.register("erm", ERMConfig)
class ERM(Method):
    """Source-only training: minimise the cross-entropy of the labelled source batch.

    Objective: L = (1/N_s) sum_i CE(G_y(G_f(x_i)), y_i).

    Shape:
        batch.x_s: (N_s, *), batch.y_s: (N_s,). The target inputs, if any, are ignored.
    """

    uses_target = False

    def __init__(self, model: FeatureClassifier, cfg: ERMConfig | None = None):
        super().__init__(model)
        self.cfg = cfg or ERMConfig()

    def forward(self, batch: Batch) -> MethodOutput:
        logits = self.model(batch.x_s)
        task_loss = F.cross_entropy(logits, batch.y_s)
        acc = (logits.detach().argmax(-1) == batch.y_s).float().mean()
        return MethodOutput(task_loss, {"task_loss": task_loss}, {"src_acc": acc})
