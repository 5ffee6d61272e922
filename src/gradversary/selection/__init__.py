"""Model selection without target labels, and domain-shift measures."""

from .criteria import CRITERIA, checkpoint_risk
from .pad import PADResult, proxy_a_distance
from .ranking import leave_one_task_out, regret, weighted_spearman
from .reverse import ReverseValidation, reverse_validation, split_task
from .rules import DEFAULT_VALIDATORS, RULES, choose_by_validators, choose_checkpoint
from .validators import (
    VALIDATORS,
    ValidatorInputs,
    ValidatorScore,
    create_validator,
    score_validators,
)
from .weighting import WeightedRisk, dev_risk, importance_weights, iwcv_risk

__all__ = [
    "CRITERIA", "checkpoint_risk",
    "RULES", "choose_checkpoint", "DEFAULT_VALIDATORS", "choose_by_validators",
    "PADResult", "proxy_a_distance", "ReverseValidation", "reverse_validation", "split_task",
    "WeightedRisk", "dev_risk", "importance_weights", "iwcv_risk",
    "VALIDATORS", "ValidatorInputs", "ValidatorScore", "create_validator", "score_validators",
    "leave_one_task_out", "regret", "weighted_spearman",
]
