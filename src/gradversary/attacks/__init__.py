"""Adversarial attacks (L-infinity, images in [0, 1]) and robustness evaluation.

One small class per attack under :class:`Attack`, registered by name: ``fgsm``, ``ifgsm``,
``pgd``, ``apgd_ce``, ``apgd_t``, ``square``, ``transfer``. :func:`robust_accuracy` evaluates a model under an attack and
:func:`gradient_masking_checks` reads a table of accuracies for signs of gradient masking.
"""

from . import apgd, fgsm, ifgsm, pgd, square, transfer  # noqa: F401  (registers)
from .apgd import APGD, APGDT, apgd_checkpoints
from .base import (
    ATTACKS,
    Attack,
    create_attack,
    eval_mode,
    list_attacks,
    random_targets,
    worst_class_targets,
)
from .evaluate import (
    AccuracyTable,
    Check,
    RobustAccuracy,
    evaluate_attacks,
    gradient_masking_checks,
    robust_accuracy,
    worst_case,
    zero_gradient_share,
)
from .fgsm import FGSM
from .ifgsm import IFGSM
from .pgd import PGD
from .square import Square, margin_loss
from .transfer import Transfer

__all__ = [
    "ATTACKS", "Attack", "create_attack", "list_attacks", "eval_mode", "random_targets",
    "worst_class_targets", "AccuracyTable", "Check", "RobustAccuracy", "gradient_masking_checks",
    "robust_accuracy", "worst_case", "zero_gradient_share", "FGSM", "IFGSM", "PGD", "Square",
    "margin_loss", "Transfer", "APGD", "APGDT", "apgd_checkpoints", "evaluate_attacks",
]
