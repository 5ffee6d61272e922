"""Iterated FGSM (the basic iterative method): k projected signed-gradient steps from x."""

from __future__ import annotations

from torch import Tensor, nn

from .base import ATTACKS, Attack

__all__ = ["IFGSM"]


@ATTACKS.register("ifgsm")
class IFGSM(Attack):
    r"""Iterated FGSM (BIM): ``steps`` signed-gradient steps from the clean input, projected each time.

    Kurakin, Goodfellow and Bengio, "Adversarial examples in the physical world", ICLR 2017
    workshop, arXiv:1607.02533. GREAT (Sinha et al., arXiv:1806.08028) reports it with k = 10.

    .. math::
        x_0 = x, \quad
        x_{i+1} = \Pi_{B_\infty(x,\epsilon) \cap [0,1]}\big(x_i + \alpha\,\mathrm{sign}\,
        \nabla_x J(x_i)\big), \quad i < k,

    with J as in :class:`~gradversary.attacks.fgsm.FGSM` and alpha = eps / k by default, so the
    k steps can just reach the border of the ball. The last iterate is returned (no random start,
    no best-iterate tracking: that is :class:`~gradversary.attacks.pgd.PGD`).

    Args:
        eps: L-infinity radius.
        steps: k, the number of steps.
        step_size: alpha; ``None`` means eps / k.

    Shape:
        x: (N, C, H, W) in [0, 1]; y, target: (N,); output: (N, C, H, W).
    """

    def __init__(self, eps: float, steps: int = 10, step_size: float | None = None):
        super().__init__(eps)
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = int(steps)
        self.step_size = self.eps / self.steps if step_size is None else float(step_size)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        x_adv = x.clone()
        for _ in range(self.steps):
            grad, _ = self.gradient(model, x_adv, y, target)
            x_adv = self.project(x_adv + self.step_size * grad.sign(), x)
        return x_adv
