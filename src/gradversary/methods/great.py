"""GREAT for adversarial defense: the main network as the adversary of a gradient classifier.

Sinha, Chen, Badrinarayanan & Rabinovich, "Gradient Adversarial Training of Neural Networks",
arXiv:1806.08028 (2018), section 2.1, Algorithm 1 without line 8 (no GREACE).

An auxiliary network f' (a copy of the main network's architecture with LeakyReLU(0.2))
classifies the masked input gradient g = (p_y - 1) d a_y / d x into the true class y; the main
network f is trained against it through gradient reversal (eq. 7 with the plain cross-entropy):

    min_theta  CE(f(x), y) - alpha CE(f'(g(theta)), y),     min_theta'  CE(f'(g), y)

alpha ramps as alpha_max (1 - (1 - p)^0.9) with alpha_max = 1 (the supplement). The paper
notes that GREAT alone obfuscates gradients (robust to FGSM, not to iFGSM).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.base import FeatureClassifier
from ..registry import spec_field
from ..schedules import SCHEDULES, create_schedule
from ._great_common import GradientAdversarial, GradientAuxConfig
from .base import METHODS

__all__ = ["GREATConfig", "GREAT"]


@dataclass
class GREATConfig(GradientAuxConfig):
    """Options of ``great``: those of :class:`GradientAuxConfig` and

    Args:
        alpha_schedule: the reversal coefficient alpha (default: PolyRamp, max 1, power 0.9).
    """

    alpha_schedule: dict = spec_field(SCHEDULES, {"name": "poly_ramp", "max": 1.0, "power": 0.9},
                                      name="poly_ramp")


@METHODS.register("great", GREATConfig)
class GREAT(GradientAdversarial):
    """GREAT: an auxiliary network classifies input gradients; their class info is reversed away.

    Optimizers: "main" (model) and "aux" (auxiliary network). Loss parts: ``task_loss`` (CE)
    and ``aux_loss`` (the auxiliary network's CE on the gradients). Metrics: ``src_acc``,
    ``aux_acc``, ``grad_norm``, ``alpha``.

    Shape:
        batch.x_s: (N, *), batch.y_s: (N,).
    """

    reverse = True

    def __init__(self, model: FeatureClassifier, cfg: GREATConfig | None = None):
        cfg = cfg or GREATConfig()
        super().__init__(model, cfg, alpha=create_schedule(cfg.alpha_schedule, default="poly_ramp"))
