"""Modules: gradient reversal, discriminators, gradient alignment layers, and layers with a
cheap double backward."""

from .batchnorm import adapt_batchnorm, batchnorm_layers, batchnorm_statistics_of
from .discriminator import DomainDiscriminator
from .double_backward import convert_double_backward, revert_double_backward
from .gal import GradientAlignmentLayer
from .grl import GradientReversal

__all__ = ["GradientReversal", "DomainDiscriminator", "GradientAlignmentLayer",
           "convert_double_backward", "revert_double_backward", "adapt_batchnorm", "batchnorm_layers",
           "batchnorm_statistics_of"]
