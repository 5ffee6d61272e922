"""Pure tensor functions: gradient reversal, differentiable input gradients, and layers
with a closed-form double backward."""

from .batchnorm import batch_norm_train
from .conv import conv2d
from .distill import kd_loss, project_gradient, random_directions, sobolev_distance
from .gradients import input_gradient
from .great import greace_adjust, masked_input_gradient, normalize_gradient
from .grl import grad_reverse

__all__ = ["grad_reverse", "input_gradient"]
__all__ += ["masked_input_gradient", "normalize_gradient", "greace_adjust"]
__all__ += ["kd_loss", "project_gradient", "random_directions", "sobolev_distance"]
__all__ += ["batch_norm_train", "conv2d"]
