"""PGD adversarial training: minimise the cross-entropy at the PGD point of each example.

Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018 (arXiv:1706.06083), section 4 and Appendix C (MNIST: eps 0.3,
40 steps of 0.01 from a uniform random start, trained on adversarial examples only):

    min_theta  E_(x, y) [ max_{||delta||_inf <= eps} CE(f_theta(x + delta), y) ]

with the inner maximum approximated by k steps of projected sign-gradient ascent,

    x_0 = Pi(x + u), u ~ U[-eps, eps]^d;   x_{i+1} = Pi(x_i + step sign(grad_x CE(f(x_i), y)))

(Pi: onto the eps-ball around x and onto [0, 1]), and the loss taken at the **last** iterate
x_k, as in Madry et al.'s code (not the worst iterate that :class:`~gradversary.attacks.PGD`
keeps for evaluation). x_k is a constant: the loss is not differentiated through the attack.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks import eval_mode
from ..attacks.base import uniform_like
from ..models.base import FeatureClassifier
from .base import METHODS, Batch, Method, MethodOutput

__all__ = ["PGDATConfig", "PGDAdversarialTraining", "pgd_linf", "train_on_perturbed"]


@dataclass
class PGDATConfig:
    """Options of ``pgd_at`` (defaults: Madry et al.'s MNIST settings).

    Args:
        eps: L-infinity radius on [0, 1] inputs.
        step_size: the ascent step (0.01 on MNIST).
        steps: k, the number of ascent steps (40 on MNIST).
        random_start: start from a uniform point of the eps-ball (Madry et al.: yes).
    """

    eps: float = 0.3
    step_size: float = 0.01
    steps: int = 40
    random_start: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps must be in [0, 1], got {self.eps}")
        if self.step_size <= 0 or self.steps < 1:
            raise ValueError(f"step_size must be > 0 and steps >= 1, got {self.step_size}, {self.steps}")


def pgd_linf(model: nn.Module, x: Tensor, y: Tensor, eps: float, step_size: float, steps: int,
             random_start: bool = True, shard: tuple[int, int] = (0, 1)) -> Tensor:
    """The last iterate of L-infinity PGD on the summed cross-entropy (Madry et al.).

    Random starts draw from the global torch RNG (the engine seeds it and saves its state), for
    the global batch of which ``x`` is the rows ``shard`` (``Batch.shard``; DDP).
    The caller chooses the model's mode; parameters' ``.grad`` are left alone.

    Shape:
        x: (N, *) in [0, 1]; y: (N,); output: (N, *), detached, within eps of x and in [0, 1].
    """
    x = x.detach()
    lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    x_adv = x.clone()
    if random_start:
        x_adv = torch.minimum(torch.maximum(x + uniform_like(x, -eps, eps, None, shard), lo), hi)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y, reduction="sum"), x_adv)
        x_adv = torch.minimum(torch.maximum(x_adv.detach() + step_size * g.sign(), lo), hi)
    return x_adv.detach()


def train_on_perturbed(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor) -> MethodOutput:
    """Cross-entropy of ``model`` on the perturbed batch ``x_adv`` (the loss trained on), with
    its accuracy ``adv_acc`` and the mean L-infinity size ``pert_linf`` of ``x_adv - x``.

    Shape:
        x, x_adv: (N, C, H, W) in [0, 1]; y: (N,).
    """
    logits = model(x_adv)
    adv_loss = F.cross_entropy(logits, y)
    with torch.no_grad():
        metrics = {"adv_acc": (logits.argmax(-1) == y).float().mean(),
                   "pert_linf": (x_adv - x).flatten(1).abs().amax(1).mean()}
    return MethodOutput(adv_loss, {"adv_loss": adv_loss}, metrics)


@METHODS.register("pgd_at", PGDATConfig)
class PGDAdversarialTraining(Method):
    """Madry et al.'s PGD adversarial training: the cross-entropy at the last PGD iterate.

    The attack runs with every submodule in eval mode (BatchNorm uses and keeps its running
    statistics; the modes are restored after), like the FGSM baseline
    (:mod:`gradversary.methods.adversarial_training`); the training forward pass sees only the
    adversarial batch.

    Shape:
        batch.x_s: (N, *) in [0, 1], batch.y_s: (N,); the target inputs are ignored.

    Loss parts and metrics: ``adv_loss`` (the loss trained on), ``adv_acc`` on the PGD batch,
    ``pert_linf`` (mean L-infinity size of the perturbation).
    """

    uses_target = False

    def __init__(self, model: FeatureClassifier, cfg: PGDATConfig | None = None):
        super().__init__(model)
        self.cfg = cfg or PGDATConfig()

    def forward(self, batch: Batch) -> MethodOutput:
        x, y, c = batch.x_s, batch.y_s, self.cfg
        with eval_mode(self.model):
            x_adv = pgd_linf(self.model, x, y, c.eps, c.step_size, c.steps, c.random_start, batch.shard)
        return train_on_perturbed(self.model, x, x_adv, y)
