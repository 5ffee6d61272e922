"""Conditional Domain Adversarial Networks (CDAN and CDAN+E).

Long, Cao, Wang & Jordan, "Conditional Adversarial Domain Adaptation", NeurIPS 2018
(arXiv:1705.10667).

The domain discriminator D sees the multilinear map of the features f (N, F) and the class
probabilities g = softmax(G_y(f)) (N, K), treated as constants (no gradient flows into g, as in
the authors' code):

    T_tensor(f, g) = g (x) f                                 (N, K F)   the outer product, flattened
    T_random(f, g) = (R_f f) . (R_g g) / sqrt(d)             (N, d)     when K F > max_multilinear

with R_f (d, F), R_g (d, K) fixed standard-normal matrices (sampled once, saved with the model)
and ``.`` the element-wise product; E[<T_random(f, g), T_random(f', g')>] = <g (x) f, g' (x) f'>.
The objective is DANN's with T in place of f:

    min_{G_f, G_y} max_D  L_y(source) - lambda E(D, T)
    E(D, T) = sum_{i in s} w_i / W_s . BCE(D(T_i), 1) / 2 + sum_{j in t} w_j / W_t . BCE(D(T_j), 0) / 2

realised with one backward pass through a gradient reversal layer on T. CDAN uses w = 1 (then E
is the mean binary cross-entropy). CDAN+E (entropy conditioning) sets w = 1 + exp(-H(g)), with
H the entropy of the prediction, and W_s, W_t the sums of w over each domain's examples (the
normalisation of the paper's Eq. 9 and of the authors' code), so that confident examples, whose
conditioning is more trustworthy, weigh more. The weights are constants of the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.base import FeatureClassifier
from ..nn import DomainDiscriminator, GradientReversal
from ..registry import spec_field
from ..schedules import SCHEDULES, Schedule, create_schedule
from .base import METHODS, Batch, Method, MethodOutput, batched, joint_pass, label_metrics

__all__ = ["CDANConfig", "CDANEConfig", "CDAN", "MultilinearMap", "entropy_weights"]


class MultilinearMap(nn.Module):
    """The conditioning map T(f, g): the flattened outer product g (x) f, or its randomised
    estimate (R_f f) . (R_g g) / sqrt(d) when ``randomized_dim`` is given.

    Args:
        feature_dim: F.
        num_classes: K.
        randomized_dim: d, or None for the exact map (output size K F).

    Shape:
        f: (N, F), g: (N, K) -> (N, K F) or (N, d).
    """

    def __init__(self, feature_dim: int, num_classes: int, randomized_dim: int | None = None):
        super().__init__()
        self.randomized_dim = randomized_dim
        if randomized_dim is not None:
            self.register_buffer("r_f", torch.randn(randomized_dim, feature_dim))
            self.register_buffer("r_g", torch.randn(randomized_dim, num_classes))
        self.out_features = randomized_dim if randomized_dim is not None else feature_dim * num_classes

    def forward(self, f: Tensor, g: Tensor) -> Tensor:
        if self.randomized_dim is None:
            return (g.unsqueeze(2) * f.unsqueeze(1)).flatten(1)
        return (f @ self.r_f.T) * (g @ self.r_g.T) / math.sqrt(self.randomized_dim)


def entropy_weights(p: Tensor, n_s: int) -> Tensor:
    """CDAN+E's example weights 1 + exp(-H(p)), divided by twice their sum within each domain
    (the first ``n_s`` rows are the source), so each domain's weights sum to 1/2.

    Shape:
        p: (N, K) probabilities -> (N,).
    """
    h = -(p * torch.log(p.clamp_min(1e-12))).sum(1)
    w = 1.0 + torch.exp(-h)
    return torch.cat([w[:n_s] / (2 * w[:n_s].sum()), w[n_s:] / (2 * w[n_s:].sum())])


@dataclass
class CDANConfig:
    """Options of :class:`CDAN`.

    Args:
        disc_hidden: hidden sizes of the domain discriminator (the authors': [1024, 1024]).
        disc_batch_norm: BatchNorm in the discriminator's hidden layers.
        lambda_schedule: the GRL coefficient schedule (default: the DANN ramp by progress,
            gamma 10; Transfer-Learning-Library: ``{name: warm_start_lambda, gamma: 0.001}``).
        domain_weight: weight of the domain loss (the discriminator's own rate).
        entropy: CDAN+E's entropy conditioning.
        randomized: the randomised map (true), the exact one (false), or null: the randomised
            map when K F > ``max_multilinear``.
        randomized_dim: d, the randomised map's output size (the authors': 1024).
        max_multilinear: the largest K F for which ``auto`` keeps the exact map.
    """

    disc_hidden: list[int] = field(default_factory=lambda: [1024, 1024])
    disc_batch_norm: bool = True
    lambda_schedule: dict = spec_field(SCHEDULES, {"name": "dann_lambda", "gamma": 10.0}, name="dann_lambda")
    domain_weight: float = 1.0
    entropy: bool = False
    randomized: bool | None = None
    randomized_dim: int = 1024
    max_multilinear: int = 4096


@dataclass
class CDANEConfig(CDANConfig):
    """Options of ``cdan_e``: :class:`CDANConfig` with entropy conditioning on."""

    entropy: bool = True


@METHODS.register("cdan_e", CDANEConfig)
@METHODS.register("cdan", CDANConfig)
class CDAN(Method):
    """CDAN (``cdan``) and CDAN+E (``cdan_e``): a domain discriminator on the multilinear map of
    features and predictions, through gradient reversal.

    Args:
        model: the feature extractor and label head.
        cfg: a :class:`CDANConfig`.

    Shape:
        batch.x_s: (N_s, *), batch.y_s: (N_s,), batch.x_t: (N_t, *); one feature pass over the
        concatenated (N_s + N_t) batch (BatchNorm statistics over both domains).

    Metrics:
        ``src_acc``; ``domain_acc`` (the discriminator's accuracy on the batch); ``grl_lambda``;
        ``tgt_entropy`` (mean prediction entropy on the target batch).
    """

    uses_target = True

    def __init__(self, model: FeatureClassifier, cfg: CDANConfig | None = None):
        super().__init__(model)
        self.cfg = cfg = cfg or CDANConfig()
        if cfg.randomized_dim < 1 or cfg.max_multilinear < 1:
            raise ValueError("cdan: randomized_dim and max_multilinear must be >= 1")
        size = model.feature_dim * model.num_classes
        rand = size > cfg.max_multilinear if cfg.randomized is None else cfg.randomized
        self.map = MultilinearMap(model.feature_dim, model.num_classes, cfg.randomized_dim if rand else None)
        self.grl = GradientReversal(0.0)
        self.discriminator = DomainDiscriminator(self.map.out_features, cfg.disc_hidden,
                                                 batch_norm=cfg.disc_batch_norm)
        self.lambda_schedule = create_schedule(cfg.lambda_schedule, default="dann_lambda")

    def schedules(self) -> dict[str, Schedule]:
        return {"grl_lambda": self.lambda_schedule}

    def conditioned(self, feats: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        """The discriminator's input T(f, softmax(logits)) (g detached) and the probabilities."""
        p = F.softmax(logits, dim=1).detach()
        return self.map(feats, p), p

    def forward(self, batch: Batch) -> MethodOutput:
        feats, logits, n_s = joint_pass(self.model, batch, "CDAN")
        lam = self.lambda_schedule.value
        self.grl.set_coeff(lam)
        task_loss = F.cross_entropy(logits[:n_s], batch.y_s)
        t, p = self.conditioned(feats, logits)
        d_logits = self.discriminator(self.grl(t))
        d_labels = torch.cat([feats.new_ones(n_s), feats.new_zeros(feats.shape[0] - n_s)])
        bce = F.binary_cross_entropy_with_logits(d_logits, d_labels, reduction="none")
        if self.cfg.entropy:
            domain_loss = (entropy_weights(p, n_s) * bce).sum()
        else:
            domain_loss = bce.mean()
        loss = task_loss + self.cfg.domain_weight * domain_loss
        with torch.no_grad():
            pt = p[n_s:]
            metrics = {
                "src_acc": (logits[:n_s].argmax(-1) == batch.y_s).float().mean(),
                "domain_acc": ((d_logits > 0).float() == d_labels).float().mean(),
                "grl_lambda": torch.tensor(float(lam)),
                "tgt_entropy": -(pt * torch.log(pt.clamp_min(1e-12))).sum(1).mean(),
            }
        return MethodOutput(loss, {"task_loss": task_loss, "domain_loss": domain_loss}, metrics)

    def domain_logits(self, x: Tensor) -> Tensor:
        """Discriminator logits (N,) for inputs (N, *): > 0 means "source"."""
        feats = self.model.features(x)
        return self.discriminator(self.conditioned(feats, self.model.head(feats))[0])

    @torch.no_grad()
    def evaluate(self, splits, batch_size: int = 1024) -> dict[str, float]:
        """Label accuracies, plus ``domain_acc``: the discriminator's balanced accuracy at telling
        ``source_test`` from ``target_test`` (when both are there)."""
        out: dict[str, float] = {}
        domain: dict[str, Tensor] = {}
        for name, d in splits.items():
            if d.y is None:
                continue
            feats = batched(self.model.features, d.x, batch_size, self.device)
            logits = self.model.head(feats)
            out.update(label_metrics(name, logits, d.y))
            if name in ("source_test", "target_test"):
                domain[name] = self.discriminator(self.conditioned(feats, logits)[0])
        if len(domain) == 2:
            ps, pt = domain["source_test"], domain["target_test"]
            out["domain_acc"] = 0.5 * float((ps > 0).float().mean() + (pt <= 0).float().mean())
        return out
