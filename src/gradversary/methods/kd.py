"""Knowledge distillation with soft targets (Hinton et al.): GREAT's "Distillation" row.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014 Deep
Learning Workshop, arXiv:1503.02531. The student minimises

    L = alpha CE(s, y) + (1 - alpha) T^2 KL(softmax(t / T) || softmax(s / T))    (batchmean)

with s, t the student's and the frozen teacher's logits. GREAT (Sinha et al., arXiv:1806.08028,
supplement) picked alpha and T by grid search on CNN-5 + ResNet-18: alpha 0.1, T 20 in the
dense regime (all training images), alpha 0.99, T 20 in the sparse one (5%).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ..errors import ConfigError
from ..functional import kd_loss
from ..models.base import FeatureClassifier
from ._distill_common import DistillMethod
from .base import METHODS, Batch, MethodOutput

__all__ = ["KDConfig", "KD"]


@dataclass
class KDConfig:
    """Options of ``kd``.

    Args:
        alpha: weight of the cross-entropy on the labels; 1 - alpha weighs the soft targets.
        T: the temperature.
        teacher_run: the teacher's finished run directory (loaded by the engine).
    """

    alpha: float = 0.1
    T: float = 20.0
    teacher_run: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"kd.alpha must be in [0, 1], got {self.alpha}")
        if self.T <= 0:
            raise ConfigError(f"kd.T must be positive, got {self.T}")


@METHODS.register("kd", KDConfig)
class KD(DistillMethod):
    """Hinton distillation: alpha CE + (1 - alpha) T^2 KL(teacher || student) at temperature T.

    Loss parts: ``task_loss`` (CE) and ``kd_loss`` (T^2 KL, batchmean). Metrics: ``src_acc``,
    ``teacher_agreement`` (share of the batch where student and teacher pick the same class).

    Shape:
        batch.x_s: (N, *), batch.y_s: (N,).
    """

    def __init__(self, model: FeatureClassifier, cfg: KDConfig | None = None):
        cfg = cfg or KDConfig()
        super().__init__(model, cfg.teacher_run)
        self.cfg = cfg

    def forward(self, batch: Batch) -> MethodOutput:
        y = batch.y_s
        logits = self.model(batch.x_s)
        t_logits = self.teacher_logits(batch.x_s)
        task_loss = F.cross_entropy(logits, y)
        soft = kd_loss(logits, t_logits, self.cfg.T)
        loss = self.cfg.alpha * task_loss + (1.0 - self.cfg.alpha) * soft
        pred = logits.detach().argmax(-1)
        return MethodOutput(loss, {"task_loss": task_loss, "kd_loss": soft},
                            {"src_acc": (pred == y).float().mean(),
                             "teacher_agreement": (pred == t_logits.argmax(-1)).float().mean()})
