"""FGSM: one signed-gradient step of size eps."""

from __future__ import annotations

from torch import Tensor, nn

from .base import ATTACKS, Attack

__all__ = ["FGSM"]


@ATTACKS.register("fgsm")
class FGSM(Attack):
    r"""Fast Gradient Sign Method: a single step of size eps along the sign of the input gradient.

    Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015,
    arXiv:1412.6572.

    .. math::
        x' = \Pi_{[0,1]}\big(x + \epsilon\,\mathrm{sign}\,\nabla_x J(x)\big), \quad
        J = \mathrm{CE}(f(x), y) \text{ untargeted},\ J = -\mathrm{CE}(f(x), t) \text{ targeted}.

    For a linear model and two classes this is the exact maximiser of the loss over the ball.

    Args:
        eps: L-infinity radius.

    Shape:
        x: (N, C, H, W) in [0, 1]; y, target: (N,); output: (N, C, H, W).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
        ...     _ = model.bias.zero_()
        >>> x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
        >>> FGSM(eps=0.1)(model, x, y)  # lowers w_0 - w_1 = (2, -2) along its sign
        tensor([[0.4000, 0.6000]])
    """

    def __init__(self, eps: float):
        super().__init__(eps)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        grad, _ = self.gradient(model, x, y, target)
        return x + self.eps * grad.sign()
