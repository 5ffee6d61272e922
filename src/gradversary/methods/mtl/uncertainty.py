"""Multi-task learning with uncertainty weighting.

Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018 (arXiv:1705.07115). With one learned log-variance s_i per
task (s_i = log sigma_i^2, started at 0):

    L(theta, s) = sum_i J_i(theta) / (2 exp(s_i)) + s_i / 2

(the same form for every task, as in the shared REFERENCE.md). GREAT's comparison (Sinha et al.,
arXiv:1806.08028, supplement) normalises the weights c_i = 1 / (2 exp(s_i)) to sum to 1 for a
fair comparison to GradNorm. The normalised weights cannot themselves be the objective of s (it
would be unbounded below: shifting every s_i by -t keeps the normalised weights and lowers
sum_i s_i / 2), so with ``normalize`` the two roles are split, in one backward:

    loss = sum_i sg[c_i / sum_j c_j] J_i  +  sum_i (c_i sg[J_i] + s_i / 2)

where sg is stop-gradient: the network gets the normalised weights, s gets exactly Kendall's
gradient d L / d s_i = -c_i J_i + 1/2 (optimum at 2 c_i J_i = 1, i.e. exp(s_i) = J_i). Without
``normalize`` the loss is L itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...models.base import FeatureClassifier
from ..base import METHODS, Batch, MethodOutput
from .base import MultiTaskMethod

__all__ = ["UncertaintyConfig", "UncertaintyWeighting"]


@dataclass
class UncertaintyConfig:
    """Options of ``mtl_uncertainty``.

    Args:
        normalize: train the network with the weights normalised to sum to 1 (GREAT's
            comparison); false: Kendall et al.'s loss as it is.
    """

    normalize: bool = True


@METHODS.register("mtl_uncertainty", UncertaintyConfig)
class UncertaintyWeighting(MultiTaskMethod):
    """Multi-task learning with learned homoscedastic-uncertainty weights (Kendall et al.).

    Optimizers: "main" (the model) and "weights" (the log-variances ``log_var``). Loss parts:
    ``<task>_loss``. Metrics: ``src_acc`` and ``w_<task>`` (the weight each task's loss gets).

    Shape:
        batch.x_s: (N, C, H, W); batch.y_s: (N,); batch.targets[k]: (N, C_k, H, W).
    """

    def __init__(self, model: FeatureClassifier, cfg: UncertaintyConfig | None = None):
        super().__init__(model)
        self.cfg = cfg or UncertaintyConfig()
        self.log_var = nn.Parameter(torch.zeros(len(self.tasks)))

    def param_groups(self) -> dict[str, list[dict]]:
        return self._weights_param_groups([self.log_var], "weights")

    def forward(self, batch: Batch) -> MethodOutput:
        z = self.model.encode(batch.x_s)
        outputs = {t: self.model.decode(t, z) for t in self.tasks}
        losses = self.task_losses(outputs, batch).mean(1)
        c = 0.5 * torch.exp(-self.log_var)
        if self.cfg.normalize:
            w = (c / c.sum()).detach()
            loss = (w * losses).sum() + (c * losses.detach() + 0.5 * self.log_var).sum()
        else:
            w = c.detach()
            loss = (c * losses + 0.5 * self.log_var).sum()
        metrics = {"src_acc": self.class_accuracy(outputs, batch.y_s),
                   **{f"w_{t}": v for t, v in zip(self.tasks, w)}}
        return MethodOutput(loss, self.parts(losses), metrics)
