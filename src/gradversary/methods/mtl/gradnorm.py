"""Multi-task learning with GradNorm.

Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks", ICML 2018 (arXiv:1711.02257). Task weights w_i > 0 with
sum_i w_i = T; on the last shared layer W:

    G_i = || grad_W (w_i J_i) ||_2,     r_i = (J_i / J_i(0)) / mean_j (J_j / J_j(0))
    L_grad = sum_i | G_i - sg[mean_j G_j r_i^alpha] |            (target held constant)

the network is trained on sum_i w_i J_i and only the weights on L_grad. One backward does both:

    loss = sum_i sg[w_i] J_i + L_grad

G_i = w_i ||grad_W J_i|| exactly (w_i is a scalar that W does not depend on), so the norms are
taken without a graph (``create_graph=False``: no double backprop) and L_grad reaches only the
weights. Departures from the paper's Algorithm 1, and from LibMTL's ``GradNorm``:

- weights: w = T softmax(rho), rho trained by its own optimizer ("weights"): positive and
  summing to T by construction, where the paper takes a gradient step on w and renormalises
  (the engine has no post-step hook). LibMTL uses the same parametrisation.
- W: the last shared layer (:meth:`MultiTaskResNet.last_shared_layer`), as the paper says;
  ``layer: shared`` takes every encoder parameter. LibMTL always takes all shared parameters
  (its docs say "last shared layer"; its issue #64) unless the gradient is taken w.r.t. the
  shared representation; T backward passes through the whole encoder per step cost much more.
- J_i(0): the losses of the first training step (the paper's t = 0); LibMTL uses the mean loss
  of the first epoch and trains that epoch with equal weights.
- alpha: 0.6 for CIFAR (Sinha et al., arXiv:1806.08028, section 3.3), 1.5 in LibMTL's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ...models.base import FeatureClassifier
from ..base import METHODS, Batch, MethodOutput
from .base import MultiTaskMethod

__all__ = ["GradNormConfig", "GradNorm"]


@dataclass
class GradNormConfig:
    """Options of ``mtl_gradnorm``.

    Args:
        alpha: asymmetry; larger pushes harder towards equal training rates (CIFAR: 0.6).
        layer: ``last`` (the last shared layer, the paper) or ``shared`` (every encoder
            parameter, as LibMTL).
    """

    alpha: float = 0.6
    layer: Literal["last", "shared"] = "last"


@METHODS.register("mtl_gradnorm", GradNormConfig)
class GradNorm(MultiTaskMethod):
    """Multi-task learning with GradNorm's adaptive loss weights (Chen et al., ICML 2018).

    Optimizers: "main" (the model) and "weights" (``logits`` rho; w = T softmax(rho)). Loss
    parts: ``<task>_loss`` and ``gradnorm_loss`` (L_grad). Metrics: ``src_acc``, ``w_<task>``
    and ``gnorm_<task>`` (G_i).

    Shape:
        batch.x_s: (N, C, H, W); batch.y_s: (N,); batch.targets[k]: (N, C_k, H, W).
    """

    def __init__(self, model: FeatureClassifier, cfg: GradNormConfig | None = None):
        super().__init__(model)
        self.cfg = cfg or GradNormConfig()
        self.logits = nn.Parameter(torch.zeros(len(self.tasks)))

    def param_groups(self) -> dict[str, list[dict]]:
        return self._weights_param_groups([self.logits], "weights")

    def weights(self) -> torch.Tensor:
        """w = T softmax(rho), positive, summing to T. Shape: (T,)."""
        return len(self.tasks) * torch.softmax(self.logits, 0)

    def shared_parameters(self) -> list[nn.Parameter]:
        """W: the last shared layer's weight, or every encoder parameter (``layer: shared``)."""
        if self.cfg.layer == "last":
            return [self.model.last_shared_layer().weight]
        return [p for p in self.model.encoder.parameters() if p.requires_grad]

    def forward(self, batch: Batch) -> MethodOutput:
        z = self.model.encode(batch.x_s)
        outputs = {t: self.model.decode(t, z) for t in self.tasks}
        losses = self.task_losses(outputs, batch).mean(1)
        w = self.weights()
        shared = self.shared_parameters()
        norms = []
        for j in losses:
            grads = torch.autograd.grad(j, shared, retain_graph=True, allow_unused=True)
            norms.append(torch.sqrt(sum(g.square().sum() for g in grads if g is not None)))
        G = w * torch.stack(norms).detach()
        ratio = losses.detach() / self.capture_initial(losses)
        r = ratio / ratio.mean()
        target = (G.mean() * r ** self.cfg.alpha).detach()
        l_grad = (G - target).abs().sum()
        loss = (w.detach() * losses).sum() + l_grad
        metrics = {"src_acc": self.class_accuracy(outputs, batch.y_s),
                   **{f"w_{t}": v.detach() for t, v in zip(self.tasks, w)},
                   **{f"gnorm_{t}": v.detach() for t, v in zip(self.tasks, G)}}
        return MethodOutput(loss, {**self.parts(losses), "gradnorm_loss": l_grad}, metrics)
