"""GREAT for knowledge distillation: a discriminator tells student from teacher input gradients.

Sinha, Chen, Badrinarayanan & Rabinovich, "Gradient Adversarial Training of Neural Networks",
arXiv:1806.08028 (2018), section 2.2, eq. 8 and Algorithm 2. A binary classifier f (weights
omega) learns to tell the teacher's input gradients (label 1) from the student's (label 0);
the student f_theta is trained against it by gradient reversal:

    g_s = d J(theta, x, y) / d x,   g_t = d J(tau, x, y) / d x         (J: cross-entropy)
    C' = BCE(f(g_t), 1) + BCE(f(g_s), 0)                               (Algorithm 2, line 6)
    omega <- omega - lr grad_omega C'                                  (line 7)
    theta <- theta - lr [(1 - alpha) grad_theta J - alpha grad_theta BCE(f(g_s), 0)]  (8-10)

alpha = 0.1, the paper's single setting. The teacher's gradient is a constant (no graph); the
student's is kept differentiable (double backprop), and a gradient reversal layer of
coefficient alpha between g_s and f turns the discriminator's loss into the student's reversed
signal, so one backward of

    loss = (1 - alpha) J + C'

gives both updates at the same weights (as in :mod:`._great_common`). Both gradient batches
pass through f as **one** concatenated batch: with BatchNorm in f, two separate batches would
each be normalised by their own statistics and f could not see a difference of scale.

The discriminator is the student's architecture with LeakyReLU(0.2), no input normalisation,
fresh weights and one output (:func:`~._great_common.build_auxiliary`); ``aux_model`` options
make it smaller: the main text uses "a shallower version of the student model", while the
supplement gives CNN-5's discriminator the student's own architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..functional import input_gradient, normalize_gradient
from ..models.base import MODELS, FeatureClassifier
from ..nn import GradientReversal
from ..registry import spec_field
from ._distill_common import DistillMethod
from ._great_common import build_auxiliary
from .base import METHODS, Batch, MethodOutput

__all__ = ["GREATDistillConfig", "GREATDistill", "binary_discriminator"]


@dataclass
class GREATDistillConfig:
    """Options of ``great_distill``.

    Args:
        alpha: the loss balance of eq. 8a: (1 - alpha) on the cross-entropy, alpha on the
            reversed discriminator signal (the paper: 0.1 in every experiment).
        normalize: rescale both gradients before the discriminator: ``none`` (the paper),
            ``l2`` or ``channel_l2`` (see :func:`~gradversary.functional.normalize_gradient`).
        aux_model: options overriding the discriminator's architecture (a copy of the
            student's), e.g. ``{channels: [32, 64]}`` for a shallower CNN-5.
        teacher_run: the teacher's finished run directory (loaded by the engine).
    """

    alpha: float = 0.1
    normalize: Literal["none", "l2", "channel_l2"] = "none"
    aux_model: dict = spec_field(MODELS, fill=False)  # overrides: the main model's are the defaults
    teacher_run: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"great_distill.alpha must be in [0, 1], got {self.alpha}")


def binary_discriminator(model: FeatureClassifier, overrides: dict | None = None) -> FeatureClassifier:
    """The student's auxiliary copy (LeakyReLU(0.2), fresh weights) with one output logit.

    The last linear layer of the head becomes ``Linear(in, 1)``.

    Shape:
        input: like the student's; output: (N, 1) logits of "this is a teacher gradient".
    """
    aux = build_auxiliary(model, overrides)
    if isinstance(aux.head, nn.Linear):
        aux.head = nn.Linear(aux.head.in_features, 1)
    else:
        last = [n for n, m in aux.head.named_modules() if isinstance(m, nn.Linear)]
        if not last:
            raise ValueError("the student's head has no linear layer to turn into a binary output")
        parent_name, _, child = last[-1].rpartition(".")
        parent = aux.head.get_submodule(parent_name) if parent_name else aux.head
        setattr(parent, child, nn.Linear(getattr(parent, child).in_features, 1))
    aux.num_classes = 1
    return aux


@METHODS.register("great_distill", GREATDistillConfig)
class GREATDistill(DistillMethod):
    """GREAT distillation: the student's input gradients are trained to pass as the teacher's.

    Optimizers: "main" (the student) and "aux" (the discriminator). Loss parts:
    ``task_loss`` (J, the student's CE) and ``aux_loss`` (C', the discriminator's two BCEs);
    the total is (1 - alpha) J + C'. Metrics: ``src_acc``, ``disc_acc`` (the discriminator's
    accuracy over both halves; 0.5 when it cannot tell them apart), ``grad_norm`` and
    ``teacher_grad_norm`` (mean L2 norms of g_s and g_t before normalisation), ``alpha``.

    Shape:
        batch.x_s: (N, *), batch.y_s: (N,); the discriminator sees (2N, *).
    """

    double_backprop = True

    def __init__(self, model: FeatureClassifier, cfg: GREATDistillConfig | None = None):
        cfg = cfg or GREATDistillConfig()
        super().__init__(model, cfg.teacher_run)
        self.cfg = cfg
        self.aux = binary_discriminator(model, cfg.aux_model)
        self.grl = GradientReversal(cfg.alpha)

    def param_groups(self) -> dict[str, list[dict]]:
        """Two optimizers: "main" (the student) and "aux" (the discriminator)."""
        return {"main": [{"params": [p for p in self.model.parameters() if p.requires_grad]}],
                "aux": [{"params": [p for p in self.aux.parameters() if p.requires_grad]}]}

    def forward(self, batch: Batch) -> MethodOutput:
        y = batch.y_s
        n = y.shape[0]
        x = batch.x_s.detach().requires_grad_()
        logits = self.model(x)
        ce_sum = F.cross_entropy(logits, y, reduction="sum")
        g_s = input_gradient(ce_sum, x, create_graph=True)          # line 4
        g_t = self.teacher_input_gradient(batch.x_s, y)             # line 5, no graph
        d_in = torch.cat([normalize_gradient(g_t, self.cfg.normalize),
                          self.grl(normalize_gradient(g_s, self.cfg.normalize))])
        d_logits = self.aux(d_in).squeeze(1)
        is_teacher = torch.cat([torch.ones(n), torch.zeros(n)]).to(d_logits)
        aux_loss = (F.binary_cross_entropy_with_logits(d_logits[:n], is_teacher[:n])
                    + F.binary_cross_entropy_with_logits(d_logits[n:], is_teacher[n:]))  # line 6
        task_loss = ce_sum / n                                       # line 3
        loss = (1.0 - self.cfg.alpha) * task_loss + aux_loss          # lines 7-10 via the GRL
        with torch.no_grad():
            metrics: dict[str, Tensor] = {
                "src_acc": (logits.argmax(-1) == y).float().mean(),
                "disc_acc": ((d_logits > 0).to(is_teacher) == is_teacher).float().mean(),
                "grad_norm": g_s.detach().flatten(1).norm(dim=1).mean(),
                "teacher_grad_norm": g_t.flatten(1).norm(dim=1).mean(),
                "alpha": self.grl.coeff.clone(),
            }
        return MethodOutput(loss, {"task_loss": task_loss, "aux_loss": aux_loss}, metrics)
