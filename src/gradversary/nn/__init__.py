"""Modules: gradient reversal and discriminators."""

from .discriminator import DomainDiscriminator
from .grl import GradientReversal

__all__ = ["GradientReversal", "DomainDiscriminator"]
