"""Margin Disparity Discrepancy (MDD).

Zhang, Liu, Long & Jordan, "Bridging Theory and Algorithm for Domain Adaptation", ICML 2019
(arXiv:1904.05801).

An auxiliary (adversarial) classifier f' reads the features through a gradient reversal layer.
With f the label head, h_f(x) = argmax_k f(psi(x))_k its predicted class (a constant), and
sigma the softmax, the auxiliary head minimises (the paper's Eq. 29-30, the cross-entropy
surrogate of the margin disparity)

    L_adv = gamma * (1/N_s) sum_{i in s} CE(f'(psi(x_i)), h_f(x_i))
            - (1/N_t) sum_{j in t} log(1 - sigma(f'(psi(x_j)))_{h_f(x_j)})

that is, f' agrees with f on the source and disagrees with it on the target; gamma > 1 is the
margin (the paper: gamma = exp(rho), 4 on Office-31; Transfer-Learning-Library also uses 4 for
digits). The features psi maximise L_adv through the reversal, which minimises the estimated
margin disparity discrepancy, while psi and f minimise the source cross-entropy:

    min_{psi, f} L_y(source) + eta * MDD,   MDD = -L_adv at the f' that minimises L_adv.

One backward pass of ``L_y + w * L_adv`` with the reversal's coefficient lambda realises both:
f' steps on w dL_adv, psi on dL_y - lambda w dL_adv, f on dL_y only (h_f is an argmax). The
log is taken of ``min(1 - sigma + 1e-6, 1)`` to keep its gradient finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.base import FeatureClassifier
from ..models.lenet import classifier_head, init_linears
from ..nn import GradientReversal
from ..registry import spec_field
from ..schedules import SCHEDULES, Schedule, create_schedule
from .base import METHODS, Batch, Method, MethodOutput, joint_pass

__all__ = ["MDDConfig", "MDD", "mdd_losses"]


def mdd_losses(y_s: Tensor, a_s: Tensor, y_t: Tensor, a_t: Tensor) -> tuple[Tensor, Tensor]:
    """The source and target disparities of MDD: CE(a_s, argmax y_s) and
    -log(1 - softmax(a_t)[argmax y_t]), each a mean; L_adv = margin * first + second.

    Shape:
        y_s, a_s: (N_s, K) main and auxiliary logits on the source; y_t, a_t: (N_t, K).
    """
    src = F.cross_entropy(a_s, y_s.argmax(1))
    p_t = F.softmax(a_t, dim=1).gather(1, y_t.argmax(1, keepdim=True)).squeeze(1)
    tgt = -torch.log(torch.clamp(1.0 - p_t + 1e-6, max=1.0)).mean()
    return src, tgt


@dataclass
class MDDConfig:
    """Options of :class:`MDD`.

    Args:
        margin: gamma (4, the paper's Office-31 value and Transfer-Learning-Library's default).
        adv_hidden: hidden widths of the auxiliary classifier f' (the library: [1024]); use the
            same structure as the model's head.
        adv_dropout: dropout after each hidden layer of f' (the library: 0.5).
        lambda_schedule: the reversal's coefficient (default: the library's warm start, rising
            to 0.1 by step: 0.1 (2 / (1 + exp(-i / 1000)) - 1)).
        domain_weight: eta, the weight of L_adv (the library's trade-off, 1).
        adv_init_std: the Linear layers of f' drawn from N(0, std^2) with bias 0 (the library:
            0.01, with the model's ``head_init_std`` 0.01); null: torch's default.
    """

    margin: float = 4.0
    adv_hidden: list[int] = field(default_factory=lambda: [1024])
    adv_dropout: float = 0.5
    lambda_schedule: dict = spec_field(
        SCHEDULES, {"name": "warm_start_lambda", "gamma": 1e-3, "max": 0.1}, name="warm_start_lambda")
    domain_weight: float = 1.0
    adv_init_std: float | None = None

    def __post_init__(self) -> None:
        if self.margin <= 0:
            raise ValueError(f"mdd: margin must be > 0, got {self.margin}")


@METHODS.register("mdd", MDDConfig)
class MDD(Method):
    """MDD: an auxiliary classifier behind gradient reversal, trained to agree with the label
    head on the source and disagree on the target (margin gamma).

    Args:
        model: the feature extractor and label head.
        cfg: an :class:`MDDConfig`.

    Shape:
        batch.x_s: (N_s, *), batch.y_s: (N_s,), batch.x_t: (N_t, *); one feature pass over the
        concatenated batch.

    Metrics:
        ``src_acc``; ``aux_src_agree``/``aux_tgt_agree`` (how often f' predicts f's class on
        each domain's batch); ``mdd`` (-L_adv on the batch); ``grl_lambda``.
    """

    uses_target = True

    def __init__(self, model: FeatureClassifier, cfg: MDDConfig | None = None):
        super().__init__(model)
        self.cfg = cfg or MDDConfig()
        self.grl = GradientReversal(0.0)
        self.adv_head = classifier_head(model.feature_dim, self.cfg.adv_hidden, model.num_classes,
                                        self.cfg.adv_dropout)
        init_linears([self.adv_head], self.cfg.adv_init_std)
        self.lambda_schedule = create_schedule(self.cfg.lambda_schedule, default="warm_start_lambda")

    def schedules(self) -> dict[str, Schedule]:
        return {"grl_lambda": self.lambda_schedule}

    def forward(self, batch: Batch) -> MethodOutput:
        feats, logits, n_s = joint_pass(self.model, batch, "MDD")
        lam = self.lambda_schedule.value
        self.grl.set_coeff(lam)
        adv = self.adv_head(self.grl(feats))
        task_loss = F.cross_entropy(logits[:n_s], batch.y_s)
        y = logits.detach()
        src, tgt = mdd_losses(y[:n_s], adv[:n_s], y[n_s:], adv[n_s:])
        adv_loss = self.cfg.margin * src + tgt
        loss = task_loss + self.cfg.domain_weight * adv_loss
        with torch.no_grad():
            agree = (adv.argmax(1) == y.argmax(1)).float()
            metrics = {
                "src_acc": (logits[:n_s].argmax(-1) == batch.y_s).float().mean(),
                "aux_src_agree": agree[:n_s].mean(),
                "aux_tgt_agree": agree[n_s:].mean(),
                "mdd": -adv_loss.detach(),
                "grl_lambda": torch.tensor(float(lam)),
            }
        return MethodOutput(loss, {"task_loss": task_loss, "adv_loss": adv_loss}, metrics)
