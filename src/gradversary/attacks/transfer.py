"""Transfer attack: a white-box attack run on a surrogate model, evaluated on the target."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .base import ATTACKS, Attack, create_attack

__all__ = ["Transfer"]


@ATTACKS.register("transfer")
class Transfer(Attack):
    r"""Transfer attack: adversarial examples crafted on a source model, used against another.

    Papernot, McDaniel and Goodfellow, "Transferability in Machine Learning: from Phenomena to
    Black-Box Attacks using Adversarial Samples", arXiv:1605.07277; recommended as a masking
    check by Carlini et al., "On Evaluating Adversarial Robustness", arXiv:1902.06705.

    .. math::
        x' = A_\epsilon(g, x, y) \quad \text{then evaluated on } f,

    where g is the source (for instance an independently trained baseline), f the attacked
    model, and A a white-box attack (PGD by default). The attacked model's gradients are never
    used, so a defence that only masks its own gradients does not stop it: if it beats
    white-box PGD on f, f's gradients are not to be trusted.

    Args:
        eps: L-infinity radius.
        source: the surrogate model g, on the same device as the inputs.
        attack: name of a registered attack, or an :class:`Attack` whose eps equals ``eps``.
        attack_kwargs: keyword arguments of the named attack (besides eps).

    Shape:
        x: (N, C, H, W) in [0, 1]; y, target: (N,); output: (N, C, H, W).
    """

    def __init__(self, eps: float, source: nn.Module, attack: str | Attack = "pgd",
                 attack_kwargs: dict[str, Any] | None = None):
        super().__init__(eps)
        if not isinstance(source, nn.Module):
            raise TypeError(f"source must be an nn.Module, got {type(source).__name__}")
        if isinstance(attack, Attack):
            if attack_kwargs:
                raise ValueError("attack_kwargs only apply when attack is given by name")
            if attack.eps != self.eps:
                raise ValueError(f"the inner attack's eps {attack.eps} differs from eps {self.eps}")
            self.attack = attack
        else:
            self.attack = create_attack(attack, eps=self.eps, **(attack_kwargs or {}))
        self.source = source

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        return self.attack(self.source, x, y, target)
