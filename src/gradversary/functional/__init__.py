"""Pure tensor functions: gradient reversal and differentiable input gradients."""

from .distill import kd_loss, project_gradient, random_directions, sobolev_distance
from .gradients import input_gradient
from .great import greace_adjust, masked_input_gradient, normalize_gradient
from .grl import grad_reverse

__all__ = ["grad_reverse", "input_gradient"]
__all__ += ["masked_input_gradient", "normalize_gradient", "greace_adjust"]
__all__ += ["kd_loss", "project_gradient", "random_directions", "sobolev_distance"]
