"""Sobolev training: the student matches the teacher's input gradients directly.

Czarnecki, Osindero, Jaderberg, Swirszcz & Pascanu, "Sobolev Training for Neural Networks",
NeurIPS 2017, arXiv:1706.04859; the direct-regression baseline in GREAT's supplement (Sinha et
al., arXiv:1806.08028: 84.98% dense and 66.50% sparse on CNN-5 + ResNet-18, CIFAR-10). The
gradients matched are those GREAT's discriminator sees, of each example's cross-entropy:

    g_s,i = d CE(f_theta(x_i), y_i) / d x_i,   g_t,i = d CE(T(x_i), y_i) / d x_i
    L = CE(f_theta(x), y) + weight * (1/N) sum_i ||g_s,i - g_t,i||^2

With ``projections: k > 0`` the squared distance is replaced by its stochastic estimate on k
random normal directions per example (Czarnecki et al., section 3): the mean squared
difference of the directional derivatives <g, v>, as a Jacobian-vector product would give
them; see :func:`~gradversary.functional.sobolev_distance`. The full gradients are still formed
here (double backprop through the student), so the projection changes the objective's noise,
not its cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ..errors import ConfigError
from ..functional import input_gradient, random_directions, sobolev_distance
from ..models.base import FeatureClassifier
from ._distill_common import DistillMethod
from .base import METHODS, Batch, MethodOutput

__all__ = ["SobolevConfig", "Sobolev"]


@dataclass
class SobolevConfig:
    """Options of ``sobolev``.

    Args:
        weight: weight of the gradient-matching term beside the cross-entropy.
        projections: 0 matches the full gradients; k > 0 matches k random projections of them
            per example (drawn from the global RNG at every step).
        teacher_run: the teacher's finished run directory (loaded by the engine).
    """

    weight: float = 1.0
    projections: int = 0
    teacher_run: str | None = None

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ConfigError(f"sobolev.weight must be >= 0, got {self.weight}")
        if self.projections < 0:
            raise ConfigError(f"sobolev.projections must be >= 0, got {self.projections}")


@METHODS.register("sobolev", SobolevConfig)
class Sobolev(DistillMethod):
    """Sobolev distillation: cross-entropy plus the squared distance of input gradients.

    Loss parts: ``task_loss`` (CE) and ``grad_loss`` (the mean squared gradient distance,
    exact or projected). Metrics: ``src_acc``, ``grad_norm`` and ``teacher_grad_norm`` (mean
    L2 norms of the two gradients).

    Shape:
        batch.x_s: (N, *), batch.y_s: (N,).
    """

    double_backprop = True

    def __init__(self, model: FeatureClassifier, cfg: SobolevConfig | None = None):
        cfg = cfg or SobolevConfig()
        super().__init__(model, cfg.teacher_run)
        self.cfg = cfg

    def forward(self, batch: Batch) -> MethodOutput:
        y = batch.y_s
        x = batch.x_s.detach().requires_grad_()
        logits = self.model(x)
        ce_sum = F.cross_entropy(logits, y, reduction="sum")
        g_s = input_gradient(ce_sum, x, create_graph=True)
        g_t = self.teacher_input_gradient(batch.x_s, y)
        k = self.cfg.projections
        dirs = random_directions(g_s, k, shard=batch.shard) if k else None
        grad_loss = sobolev_distance(g_s, g_t, dirs)
        task_loss = ce_sum / y.shape[0]
        metrics = {"src_acc": (logits.detach().argmax(-1) == y).float().mean(),
                   "grad_norm": g_s.detach().flatten(1).norm(dim=1).mean(),
                   "teacher_grad_norm": g_t.flatten(1).norm(dim=1).mean()}
        return MethodOutput(task_loss + self.cfg.weight * grad_loss,
                            {"task_loss": task_loss, "grad_loss": grad_loss}, metrics)
