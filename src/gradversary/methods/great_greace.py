"""GRE(AT+CE): GREAT and GREACE together, the paper's full adversarial defense.

Sinha, Chen, Badrinarayanan & Rabinovich, "Gradient Adversarial Training of Neural Networks",
arXiv:1806.08028 (2018), section 2.1, Algorithm 1 and eq. 7:

    min_theta  J^(theta, x, y) + alpha max_theta'  J(theta', grad J-(theta, x, y), y)

with J^ GREACE's cross-entropy (eq. 6, weights from the auxiliary network's softmax), J- the
masked cross-entropy whose input gradient the auxiliary network classifies, and the max over
theta' realised by gradient reversal with coefficient alpha. alpha and beta ramp as
max (1 - (1 - p)^0.9); alpha_max = 1, beta_max = 2 (CIFAR-10) or 10 (SVHN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..models.base import FeatureClassifier
from ..registry import spec_field
from ..schedules import SCHEDULES, create_schedule
from ._great_common import GradientAdversarial, GradientAuxConfig
from .base import METHODS

__all__ = ["GreatGreaceConfig", "GreatGreace"]


@dataclass
class GreatGreaceConfig(GradientAuxConfig):
    """Options of ``great_greace``: those of :class:`GradientAuxConfig` and

    Args:
        alpha_schedule: the reversal coefficient alpha (default: PolyRamp, max 1, power 0.9).
        beta_schedule: the GREACE penalty beta (default: PolyRamp, max 2, power 0.9).
        form: GREACE's added logit gradient: ``eq6`` (the paper, the default), ``prob``
            (bounded) or ``centered`` (diagnostic); see
            :func:`~gradversary.functional.greace_adjust`.
    """

    alpha_schedule: dict = spec_field(SCHEDULES, {"name": "poly_ramp", "max": 1.0, "power": 0.9},
                                      name="poly_ramp")
    beta_schedule: dict = spec_field(SCHEDULES, {"name": "poly_ramp", "max": 2.0, "power": 0.9},
                                     name="poly_ramp")
    form: Literal["eq6", "prob", "centered"] = "eq6"


@METHODS.register("great_greace", GreatGreaceConfig)
class GreatGreace(GradientAdversarial):
    """GRE(AT+CE): GREACE's cross-entropy plus GREAT's reversed auxiliary loss.

    Optimizers: "main" (model) and "aux" (auxiliary network). Loss parts: ``task_loss``
    (GREACE; value = plain CE) and ``aux_loss``. Metrics: ``src_acc``, ``aux_acc``,
    ``grad_norm``, ``alpha``, ``beta``.

    Shape:
        batch.x_s: (N, *), batch.y_s: (N,).
    """

    reverse = True
    greace = True

    def __init__(self, model: FeatureClassifier, cfg: GreatGreaceConfig | None = None):
        cfg = cfg or GreatGreaceConfig()
        super().__init__(model, cfg,
                         alpha=create_schedule(cfg.alpha_schedule, default="poly_ramp"),
                         beta=create_schedule(cfg.beta_schedule, default="poly_ramp"),
                         form=cfg.form)
