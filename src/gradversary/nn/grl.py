"""The gradient reversal layer as a module."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..functional.grl import grad_reverse

__all__ = ["GradientReversal"]


class GradientReversal(nn.Module):
    """Identity forward, gradient times ``-coeff`` backward (Ganin et al., JMLR 2016).

    The coefficient is a buffer: it follows ``.to()``, is saved in ``state_dict`` and is set by
    the training engine through a schedule (:class:`gradversary.schedules.DANNLambda`). The
    forward pass never changes it, so evaluation cannot move it.

    Args:
        coeff: initial reversal coefficient lambda.

    Shape:
        input: (N, *), output: (N, *), the same tensor values.

    Example:
        >>> grl = GradientReversal(2.0)
        >>> x = torch.ones(2, requires_grad=True)
        >>> grl(x).sum().backward()
        >>> x.grad
        tensor([-2., -2.])
    """

    coeff: Tensor

    def __init__(self, coeff: float = 1.0):
        super().__init__()
        self.register_buffer("coeff", torch.tensor(float(coeff)))

    def set_coeff(self, value: float) -> None:
        """Set lambda in place (keeps the buffer's device and dtype)."""
        self.coeff.fill_(float(value))

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.coeff)

    def extra_repr(self) -> str:
        return f"coeff={float(self.coeff):.4g}"
