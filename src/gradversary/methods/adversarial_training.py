"""Adversarial training with FGSM examples: the baseline of GREAT's Tables 1 and 2.

Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015
(arXiv:1412.6572), in the form of Sinha et al., "Gradient Adversarial Training of Neural
Networks", arXiv:1806.08028, supplement: "The adversarially trained network is fed clean
samples and adversarial samples with equal probability. The total loss used for training the
network is 0.5 * (L_clean + L_adv) ... single-step FGSM and eps = 0.2 for both datasets."

Read here as: each step a coin with P(adversarial) = ``adv_prob`` (0.5) decides the batch;

    adversarial step:  L = 0.5 (CE(f(x), y) + CE(f(x'), y)),  x' = clip_[0,1](x + eps sign(grad_x CE))
    clean step:        L = CE(f(x), y)

``adv_prob = 1`` gives Goodfellow et al.'s every-step 0.5/0.5 mixture (the other reading of the
sentence). x' is a constant (no graph): the loss is not differentiated through the attack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..attacks import FGSM
from ..models.base import FeatureClassifier
from .base import METHODS, Batch, Method, MethodOutput

__all__ = ["AdversarialTrainingConfig", "AdversarialTraining"]


@dataclass
class AdversarialTrainingConfig:
    """Options of ``adversarial_training``.

    Args:
        eps: FGSM's L-infinity radius on [0, 1] inputs (the paper: 0.2 on CIFAR-10 and SVHN;
            our MNIST configs use 0.3, the usual MNIST budget and the largest evaluated).
        adv_prob: probability that a step is adversarial (the paper's "equal probability").
    """

    eps: float = 0.2
    adv_prob: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps must be in [0, 1], got {self.eps}")
        if not 0.0 <= self.adv_prob <= 1.0:
            raise ValueError(f"adv_prob must be in [0, 1], got {self.adv_prob}")


@METHODS.register("adversarial_training", AdversarialTrainingConfig)
class AdversarialTraining(Method):
    """FGSM adversarial training: clean or 0.5 (clean + adversarial) cross-entropy by a coin.

    The FGSM example comes from :class:`gradversary.attacks.FGSM`: the model is in eval mode
    while it is made (BatchNorm uses its running statistics and they are not updated; the
    training mode is restored), inputs must be in [0, 1], and the result is detached.

    The coin is ``self.coin``, a callable returning True for an adversarial step; by default it
    draws from the global torch RNG, which the engine seeds and saves in checkpoints, so runs
    are reproducible and resume exactly. Tests may replace it.

    Shape:
        batch.x_s: (N, *) in [0, 1], batch.y_s: (N,); the target inputs are ignored.

    Loss parts and metrics: ``clean_loss`` and ``src_acc`` on the clean batch; ``adv_loss``,
    ``adv_acc`` on the FGSM batch (0 on clean steps: divide a logged mean by ``adv_frac``);
    ``adv_frac``, 1 on adversarial steps and 0 on clean ones.
    """

    uses_target = False

    def __init__(self, model: FeatureClassifier, cfg: AdversarialTrainingConfig | None = None):
        super().__init__(model)
        self.cfg = cfg or AdversarialTrainingConfig()
        self.attack = FGSM(self.cfg.eps)
        self.coin: Callable[[], bool] = self._draw

    def _draw(self) -> bool:
        return bool(torch.rand(()) < self.cfg.adv_prob)

    def forward(self, batch: Batch) -> MethodOutput:
        x, y = batch.x_s, batch.y_s
        logits = self.model(x)
        clean_loss = F.cross_entropy(logits, y)
        zero = clean_loss.new_zeros(())
        adv_loss, adv_acc, adv = zero, zero, self.coin()
        if adv:
            x_adv = self.attack(self.model, x, y).detach()
            adv_logits = self.model(x_adv)
            adv_loss = F.cross_entropy(adv_logits, y)
            adv_acc = (adv_logits.detach().argmax(-1) == y).float().mean()
            loss = 0.5 * (clean_loss + adv_loss)
        else:
            loss = clean_loss
        metrics = {"src_acc": (logits.detach().argmax(-1) == y).float().mean(),
                   "adv_acc": adv_acc, "adv_frac": zero + float(adv)}
        return MethodOutput(loss, {"clean_loss": clean_loss, "adv_loss": adv_loss}, metrics)
