"""gradversary: learning with reversed gradients (DANN, GREAT) in PyTorch."""

from . import attacks, data, methods, models  # noqa: F401  (fill the registries)
from .functional import grad_reverse, input_gradient
from .nn import DomainDiscriminator, GradientReversal
from .schedules import DANNLambda, InverseDecay

__version__ = "0.1.0"

__all__ = [
    "grad_reverse", "input_gradient", "GradientReversal", "DomainDiscriminator",
    "DANNLambda", "InverseDecay", "__version__",
]
