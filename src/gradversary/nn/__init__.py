"""Modules: gradient reversal, discriminators and gradient alignment layers."""

from .discriminator import DomainDiscriminator
from .gal import GradientAlignmentLayer
from .grl import GradientReversal

__all__ = ["GradientReversal", "DomainDiscriminator", "GradientAlignmentLayer"]
