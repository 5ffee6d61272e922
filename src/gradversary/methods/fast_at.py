"""Fast adversarial training: one FGSM step from a uniform random start.

Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial training", ICLR 2020
(arXiv:2001.03994), Algorithm 3 ("FGSM adversarial training with random initialization"):

    delta ~ U[-eps, eps]^d,  then (``clip_start``) clipped so that x + delta lies in [0, 1]
    delta <- clip_[-eps, eps](delta + alpha sign(grad_delta CE(f(x + delta), y))),
             then clipped so that x + delta lies in [0, 1]
    theta <- theta - lr grad_theta CE(f(x + delta), y)

with alpha = 1.25 eps (the paper's choice; 0.375 at the MNIST eps 0.3). The paper's Algorithm 3
clips nowhere; its code clips the result to the image domain, and the start too in its CIFAR-10
script but not in its MNIST one (locuslab/fast_adversarial, MNIST/train_mnist.py), whose
gradient is taken at the unclipped x + delta. On MNIST this matters: most pixels are 0 or 1,
where a start clipped to [0, 1] followed by a step alpha > eps lands on the same two values
(0 or eps) as FGSM without a random start, so the random start no longer randomises the
training point there; unclipped, a step towards the image keeps a random size. Unlike the paper's
FGSM 50/50 baseline (:mod:`gradversary.methods.adversarial_training`), the step is trained on
the adversarial batch only, and the random start is what keeps a single step from
"catastrophic overfitting". delta is a constant for the weight update.
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
from .pgd_at import train_on_perturbed

__all__ = ["FastATConfig", "FastAdversarialTraining", "fgsm_random_start"]


@dataclass
class FastATConfig:
    """Options of ``fast_at``.

    Args:
        eps: L-infinity radius on [0, 1] inputs (MNIST: 0.3).
        alpha: the FGSM step; ``None`` means 1.25 eps (Wong et al.).
        clip_start: clip the random start to [0, 1] before the gradient (Wong et al.'s CIFAR-10
            code); ``False`` takes the gradient at the unclipped start (their MNIST code).
    """

    eps: float = 0.3
    alpha: float | None = None
    clip_start: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps must be in [0, 1], got {self.eps}")
        if self.alpha is not None and self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")


@METHODS.register("fast_at", FastATConfig)
class FastAdversarialTraining(Method):
    """Wong et al.'s fast adversarial training: CE at FGSM-from-a-random-start points.

    The random start draws from the global torch RNG (seeded by the engine and saved in its
    checkpoints), for the global batch under DDP (``Batch.shard``). The FGSM gradient is taken with every submodule in eval mode (restored
    after), as for the other adversarial-training methods here; Wong et al. took it in
    training mode, which differs only for networks with BatchNorm or dropout.

    Shape:
        batch.x_s: (N, *) in [0, 1], batch.y_s: (N,); the target inputs are ignored.

    Loss parts and metrics: ``adv_loss``, ``adv_acc`` on the perturbed batch, ``pert_linf``.
    """

    uses_target = False

    def __init__(self, model: FeatureClassifier, cfg: FastATConfig | None = None):
        super().__init__(model)
        self.cfg = cfg or FastATConfig()

    @property
    def alpha(self) -> float:
        return 1.25 * self.cfg.eps if self.cfg.alpha is None else self.cfg.alpha

    def forward(self, batch: Batch) -> MethodOutput:
        x, y = batch.x_s.detach(), batch.y_s
        with eval_mode(self.model):
            x_adv = fgsm_random_start(self.model, x, y, self.cfg.eps, self.alpha, self.cfg.clip_start,
                                      batch.shard)
        return train_on_perturbed(self.model, x, x_adv, y)


def fgsm_random_start(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float,
                      clip_start: bool = True, shard: tuple[int, int] = (0, 1)) -> Tensor:
    """One FGSM step of size ``alpha`` on the summed cross-entropy from a uniform start in the
    eps-ball (clipped to [0, 1] first if ``clip_start``), projected onto the ball and [0, 1]:
    the training point of Wong et al.'s Algorithm 3.

    The start draws from the global torch RNG, for the global batch of which ``x`` is the rows
    ``shard`` (DDP). The caller chooses the model's mode; parameters' ``.grad`` are left alone.

    Shape:
        x: (N, *) in [0, 1]; y: (N,); output: (N, *), detached, within eps of x and in [0, 1].
    """
    x = x.detach()
    lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    x0 = x + uniform_like(x, -eps, eps, None, shard)
    if clip_start:
        x0 = torch.minimum(torch.maximum(x0, lo), hi)
    x0.requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(F.cross_entropy(model(x0), y, reduction="sum"), x0)
    return torch.minimum(torch.maximum(x0.detach() + alpha * g.sign(), lo), hi)
