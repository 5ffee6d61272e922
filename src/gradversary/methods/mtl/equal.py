"""Multi-task learning with equal loss weights: the baseline of Table 4 (Sinha et al.,
arXiv:1806.08028, section 3.3).

    L = sum_i J_i        over the tasks i (classification and the dense tasks)
"""

from __future__ import annotations

from ...models.base import FeatureClassifier
from ..base import METHODS, Batch, MethodOutput
from .base import MultiTaskMethod

__all__ = ["EqualWeights"]


@METHODS.register("mtl_equal")
class EqualWeights(MultiTaskMethod):
    """Multi-task learning, the sum of the task losses (equal weights).

    One optimizer, "main". Loss parts: ``<task>_loss`` for every task. Metrics: ``src_acc``.

    Shape:
        batch.x_s: (N, C, H, W); batch.y_s: (N,); batch.targets[k]: (N, C_k, H, W).
    """

    def __init__(self, model: FeatureClassifier):
        super().__init__(model)

    def forward(self, batch: Batch) -> MethodOutput:
        z = self.model.encode(batch.x_s)
        outputs = {t: self.model.decode(t, z) for t in self.tasks}
        losses = self.task_losses(outputs, batch).mean(1)
        return MethodOutput(losses.sum(), self.parts(losses),
                            {"src_acc": self.class_accuracy(outputs, batch.y_s)})
