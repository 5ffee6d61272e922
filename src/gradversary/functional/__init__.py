"""Pure tensor functions: gradient reversal and differentiable input gradients."""

from .gradients import input_gradient
from .grl import grad_reverse

__all__ = ["grad_reverse", "input_gradient"]
