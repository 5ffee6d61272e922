"""Training methods, one paper per file, registered by name."""

# registers: one paper per module; great_distill, kd, sobolev: distillation; mtl: multi-task
from . import (  # noqa: F401
    adversarial_training,
    cdan,
    dann,
    double_backprop,
    erm,
    fast_at,
    greace,
    great,
    great_distill,
    great_greace,
    kd,
    mdd,
    mtl,
    pgd_at,
    sobolev,
)
from .base import METHODS, Batch, Method, MethodOutput, create_method

__all__ = ["METHODS", "Batch", "Method", "MethodOutput", "create_method"]
