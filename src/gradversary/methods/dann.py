"""Domain-Adversarial Neural Networks.

Ganin, Ustinova, Ajakan, Germain, Larochelle, Laviolette, Marchand & Lempitsky,
"Domain-Adversarial Training of Neural Networks", JMLR 17(59):1-35, 2016 (arXiv:1505.07818).

Objective (eq. 9-10 of the paper), with G_f features, G_y the label head, G_d the domain head:

    E(theta_f, theta_y, theta_d) = L_y(source) - lambda * L_d(source + target)

found as a saddle point: theta_f, theta_y minimise E, theta_d maximises it. One backward pass
of ``L_y + w * L_d`` through a gradient reversal layer gives exactly these updates:

    theta_y <- theta_y - mu dL_y/dtheta_y
    theta_d <- theta_d - mu w dL_d/dtheta_d                     (full rate)
    theta_f <- theta_f - mu (dL_y/dtheta_f - lambda_p w dL_d/dtheta_f)

with lambda_p = 2 / (1 + exp(-gamma p)) - 1 (gamma = 10) scaling only the reversed gradient
into the features, so the domain classifier learns at the full rate from the first step.

With ``disc_rate: lambda`` the domain classifier's update is scaled by lambda_p as well, as in
eq. 15 of the JMLR paper (theta_d <- theta_d - mu lambda dL_d/dtheta_d), which follows from
taking the saddle point of E literally: the loss becomes ``L_y + lambda_p w L_d`` with a
unit-coefficient reversal, so the domain classifier starts slowly together with the reversal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from ..models.base import FeatureClassifier
from ..nn import DomainDiscriminator, GradientReversal
from ..registry import spec_field
from ..schedules import SCHEDULES, Schedule, create_schedule
from .base import METHODS, Batch, Method, MethodOutput, batched, label_metrics

__all__ = ["DANNConfig", "DANN"]


@dataclass
class DANNConfig:
    """Options of :class:`DANN`.

    Args:
        disc_hidden: hidden sizes of the domain classifier (the paper's MNIST head: [100]).
        disc_batch_norm: BatchNorm in the domain classifier's hidden layers.
        lambda_schedule: the GRL coefficient schedule; default the paper's ramp, gamma 10.
        domain_weight: w, weight of the domain loss for the domain classifier itself.
        bn_policy: how BatchNorm layers in the feature extractor see the two domains:
            ``joint`` (the paper: one forward pass over the concatenated batch, statistics over
            both domains) or ``separate`` (one pass per domain, per-domain batch statistics,
            with the running averages updated by both).
        disc_rate: ``full`` (the domain classifier learns at the full rate, as with a GRL in
            front of an unweighted domain loss) or ``lambda`` (its update is scaled by lambda_p,
            the JMLR paper's eq. 15).
    """

    disc_hidden: list[int] = field(default_factory=lambda: [100])
    disc_batch_norm: bool = False
    lambda_schedule: dict = spec_field(SCHEDULES, {"name": "dann_lambda", "gamma": 10.0}, name="dann_lambda")
    domain_weight: float = 1.0
    bn_policy: Literal["joint", "separate"] = "joint"
    disc_rate: Literal["full", "lambda"] = "full"


@METHODS.register("dann", DANNConfig)
class DANN(Method):
    """DANN: a label predictor and, through gradient reversal, a domain classifier.

    Args:
        model: the feature extractor and label head.
        cfg: a :class:`DANNConfig`.

    Shape:
        batch.x_s: (N_s, *), batch.y_s: (N_s,), batch.x_t: (N_t, *); the domain labels are
        1 for source and 0 for target, and the domain loss is the mean binary cross-entropy
        over all N_s + N_t examples.

    Metrics:
        ``src_acc`` (label accuracy on the source batch), ``domain_acc`` (the domain
        classifier's accuracy on the batch: 0.5 means the domains are indistinguishable),
        ``grl_lambda`` (the current coefficient).
    """

    uses_target = True

    def __init__(self, model: FeatureClassifier, cfg: DANNConfig | None = None):
        super().__init__(model)
        self.cfg = cfg or DANNConfig()
        self.grl = GradientReversal(0.0)
        self.discriminator = DomainDiscriminator(
            model.feature_dim, self.cfg.disc_hidden, batch_norm=self.cfg.disc_batch_norm
        )
        self.lambda_schedule = create_schedule(self.cfg.lambda_schedule, default="dann_lambda")

    def schedules(self) -> dict[str, Schedule]:
        return {"grl_lambda": self.lambda_schedule}

    def features(self, x_s: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """Features (N_s + N_t, F) of both domains under the configured BatchNorm policy."""
        if self.cfg.bn_policy == "joint":
            return self.model.features(torch.cat([x_s, x_t]))
        return torch.cat([self.model.features(x_s), self.model.features(x_t)])

    def forward(self, batch: Batch) -> MethodOutput:
        if batch.x_t is None:
            raise ValueError("DANN needs target inputs in every batch (batch.x_t is None)")
        n_s = batch.x_s.shape[0]
        lam = self.lambda_schedule.value
        scaled = self.cfg.disc_rate == "lambda"
        self.grl.set_coeff(1.0 if scaled else lam)
        feats = self.features(batch.x_s, batch.x_t)
        logits = self.model.head(feats[:n_s])
        task_loss = F.cross_entropy(logits, batch.y_s)
        d_logits = self.discriminator(self.grl(feats))
        d_labels = torch.cat([feats.new_ones(n_s), feats.new_zeros(feats.shape[0] - n_s)])
        domain_loss = F.binary_cross_entropy_with_logits(d_logits, d_labels)
        weight = self.cfg.domain_weight * (lam if scaled else 1.0)
        loss = task_loss + weight * domain_loss
        with torch.no_grad():
            metrics = {
                "src_acc": (logits.argmax(-1) == batch.y_s).float().mean(),
                "domain_acc": ((d_logits > 0).float() == d_labels).float().mean(),
                "grl_lambda": torch.tensor(float(lam)),
            }
        return MethodOutput(loss, {"task_loss": task_loss, "domain_loss": domain_loss}, metrics)

    def domain_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Domain-classifier logits (N,) for inputs (N, *): > 0 means "source"."""
        return self.discriminator(self.model.features(x))

    @torch.no_grad()
    def evaluate(self, splits, batch_size: int = 1024) -> dict[str, float]:
        """Label accuracies, plus ``domain_acc``: the domain classifier's balanced accuracy at
        telling ``source_test`` (or the first split) from ``target_test`` (or the second)."""
        names = list(splits)
        src = "source_test" if "source_test" in splits else (names[0] if names else None)
        tgt = "target_test" if "target_test" in splits else (names[1] if len(names) > 1 else None)
        out: dict[str, float] = {}
        domain: dict[str, torch.Tensor] = {}
        for name, d in splits.items():  # one feature pass per split feeds both heads
            if d.y is None and name not in (src, tgt):
                continue
            feats = batched(self.model.features, d.x, batch_size, self.device)
            if d.y is not None:
                out.update(label_metrics(name, self.model.head(feats), d.y))
            if name in (src, tgt):
                domain[name] = self.discriminator(feats)
        if src and tgt:
            ps, pt = domain[src], domain[tgt]
            out["domain_acc"] = 0.5 * float((ps > 0).float().mean() + (pt <= 0).float().mean())
        return out
