"""GREACE: cross-entropy with extra weight on the negative classes the gradients confuse.

Sinha, Chen, Badrinarayanan & Rabinovich, "Gradient Adversarial Training of Neural Networks",
arXiv:1806.08028 (2018), section 2.1, eq. 6; Algorithm 1 without the reversed gradient.

The main network's logit gradient becomes

    dC/da -> p - e_y + beta softmax(a') (1 - e_y)

where a' = f'(g) are the logits of the auxiliary network on the masked input gradient g.
Alone, GREACE keeps the auxiliary network (it must learn which classes the gradients confuse)
but nothing flows back from it into the main network: the gradient it sees is a constant
(no double backprop) and its softmax is a constant weight. beta ramps as
beta_max (1 - (1 - p)^0.9), beta_max = 2 for CIFAR-10 and 10 for SVHN (section 3.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..models.base import FeatureClassifier
from ..registry import spec_field
from ..schedules import SCHEDULES, create_schedule
from ._great_common import GradientAdversarial, GradientAuxConfig
from .base import METHODS

__all__ = ["GREACEConfig", "GREACE"]


@dataclass
class GREACEConfig(GradientAuxConfig):
    """Options of ``greace``: those of :class:`GradientAuxConfig` and

    Args:
        beta_schedule: the penalty beta (default: PolyRamp, max 2 (CIFAR-10), power 0.9).
        form: GREACE's added logit gradient: ``eq6`` (the paper, kept as the default; it
            diverges in long runs), ``prob`` (the gradient of the bounded penalty
            beta sum_{k != y} softmax(a')_k p_k) or ``centered`` (eq. 6's weights projected to
            sum to zero: a diagnostic); see :func:`~gradversary.functional.greace_adjust`.
    """

    beta_schedule: dict = spec_field(SCHEDULES, {"name": "poly_ramp", "max": 2.0, "power": 0.9},
                                     name="poly_ramp")
    form: Literal["eq6", "prob", "centered"] = "eq6"


@METHODS.register("greace", GREACEConfig)
class GREACE(GradientAdversarial):
    """GREACE: eq. 6's cross-entropy, weighted by an auxiliary classifier of input gradients.

    Optimizers: "main" (model) and "aux" (auxiliary network). Loss parts: ``task_loss`` (its
    value is the plain CE; its logit gradient is eq. 6's) and ``aux_loss``. Metrics:
    ``src_acc``, ``aux_acc``, ``grad_norm``, ``beta``.

    Shape:
        batch.x_s: (N, *), batch.y_s: (N,).
    """

    greace = True

    def __init__(self, model: FeatureClassifier, cfg: GREACEConfig | None = None):
        cfg = cfg or GREACEConfig()
        super().__init__(model, cfg, form=cfg.form,
                         beta=create_schedule(cfg.beta_schedule, default="poly_ramp"))
