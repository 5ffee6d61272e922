"""Training methods, one paper per file, registered by name."""

from . import adversarial_training, dann, double_backprop, erm, greace, great, great_greace  # noqa: F401  (registers)
from .base import METHODS, Batch, Method, MethodOutput, create_method

__all__ = ["METHODS", "Batch", "Method", "MethodOutput", "create_method"]
