"""GREAT for multi-task learning: gradient alignment layers against a task classifier.

Sinha, Chen, Badrinarayanan & Rabinovich, "Gradient Adversarial Training of Neural Networks",
arXiv:1806.08028 (2018), section 2.3, Algorithm 3 and eq. 9. A gradient alignment layer GAL_i
(weights gamma_i of the shared feature's shape, started at 1, positive) sits between the shared
encoder's output z and decoder i. With C_i = J_i / J_i(0) (losses normalised by their first
values) and g_i = d C_i / d z_i the task gradient at the GAL's output:

    decoders:   omega_i <- grad C_i                                  (Algorithm 3, line 6)
    encoder:    theta   <- sum_i gamma_i * g_i                       (line 7)
    classifier: theta'  <- grad CE(A(gamma_i * g_i), i)              (lines 8-9)
    GALs:       gamma_i <- -grad_gamma CE(A(gamma_i * g_i), i)        (lines 10-11: reversed)

How one step fits the engine's single ``loss.backward()`` and its three optimizers ("main": the
model; "aux": the task classifier A; "gal": the GALs):

    x -> encoder -> z -> GAL_i -> z_i -> decoder_i -> C_i                        (every task i)
    g_i = d (sum_n l_i[n] / J_i(0)) / d z_i    (autograd.grad, no graph: a constant)
    h_i = GRL(gamma_i) * g_i -> A -> CE(., i) = aux_loss
    loss = sum_i C_i + aux_loss

The GAL is the identity forward and multiplies the gradient by gamma_i backward, so the encoder
receives sum_i gamma_i * dC_i/dz and each decoder dC_i/domega_i. g_i is detached, so aux_loss
reaches only A (its gradient, line 9) and, through the gradient reversal layer, gamma_i (the
negated gradient, line 10); gamma_i gets nothing from the task losses (the GAL passes no gradient
to its weights). g_i is the gradient of the sum-reduced normalised loss, so each example's
gradient tensor g_i[n] (one input of A, labelled i) does not depend on the batch size; the
encoder's gradient is the same up to the 1/N of the mean. The only extra work over equal
weighting is one backward pass per task through its decoder, and A on T x N gradient tensors:
no double backpropagation. Both gradients are taken at the same weights (simultaneous
updates), whereas Algorithm 3 can be read as updating A before the GALs. In eval mode the GALs
are the identity and A is unused: GREAT-MTL deploys exactly the network equal weighting would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...functional import normalize_gradient
from ...models.base import FeatureClassifier
from ...models.resnet import resnet
from ...nn import GradientAlignmentLayer, GradientReversal
from ..base import METHODS, Batch, MethodOutput
from .base import MultiTaskMethod

__all__ = ["GREATMTLConfig", "GREATMTL"]


@dataclass
class GREATMTLConfig:
    """Options of ``great_mtl``.

    Args:
        aux_widths: channels of the task classifier's stages (a small ResNet with
            LeakyReLU(0.2), one BasicBlock per stage, each after the first halving the
            resolution; the paper: a ResNet-11 halving 256 input channels over 4 modules).
        aux_norm: the classifier's normalisation (``batch``, ``group``, ``none``).
        normalize: rescale each gradient tensor before the classifier: ``none`` (the paper),
            ``l2`` or ``channel_l2`` (:func:`~gradversary.functional.normalize_gradient`).
        reverse_coeff: the reversal coefficient on the GALs' gradient (the paper: 1).
    """

    aux_widths: list[int] = field(default_factory=lambda: [64, 32, 16, 8])
    aux_norm: Literal["batch", "group", "none"] = "batch"
    normalize: Literal["none", "l2", "channel_l2"] = "none"
    reverse_coeff: float = 1.0


@METHODS.register("great_mtl", GREATMTLConfig)
class GREATMTL(MultiTaskMethod):
    """GREAT-MTL: GALs rescale the task gradients so that a task classifier cannot tell them apart.

    Optimizers: "main" (model), "aux" (task classifier), "gal" (GAL weights). Loss parts:
    ``<task>_loss`` (J_i, not normalised) and ``aux_loss``. Metrics: ``src_acc``, ``aux_acc``
    (the classifier's accuracy at naming the task of a gradient tensor; 1/T is chance),
    ``gal_mean``/``gal_std``/``gal_min``/``gal_max`` over every GAL weight and ``gal_<task>``
    (the mean of each task's GAL).

    Shape:
        batch.x_s: (N, C, H, W); batch.y_s: (N,); batch.targets[k]: (N, C_k, H, W); the GALs
        and the classifier's input: the shared feature's (F, h, w).
    """

    def __init__(self, model: FeatureClassifier, cfg: GREATMTLConfig | None = None):
        super().__init__(model)
        self.cfg = cfg or GREATMTLConfig()
        shape = tuple(model.feature_shape)
        self.gals = nn.ModuleDict({t: GradientAlignmentLayer(shape) for t in self.tasks})
        widths = list(self.cfg.aux_widths)
        self.aux = resnet(shape, len(self.tasks), widths, [1] * len(widths), self.cfg.aux_norm,
                          "leaky_relu", norm_groups=8)
        self.grl = GradientReversal(self.cfg.reverse_coeff)

    def param_groups(self) -> dict[str, list[dict]]:
        return {**self._weights_param_groups(self.gals, "gal"),
                "aux": [{"params": [p for p in self.aux.parameters() if p.requires_grad]}]}

    def gal_weights(self) -> Tensor:
        """Every task's gamma, stacked in task order. Shape: (T, F, h, w)."""
        return torch.stack([self.gals[t].weight for t in self.tasks])

    def forward(self, batch: Batch) -> MethodOutput:
        z = self.model.encode(batch.x_s)
        z_in = {t: self.gals[t](z) for t in self.tasks}
        outputs = {t: self.model.decode(t, z_in[t]) for t in self.tasks}
        per_example = self.task_losses(outputs, batch)  # (T, N)
        losses = per_example.mean(1)
        c0 = self.capture_initial(losses)
        grads = [torch.autograd.grad(per_example[i].sum() / c0[i], z_in[t], retain_graph=True)[0]
                 for i, t in enumerate(self.tasks)]
        gamma = self.grl(self.gal_weights())  # the GALs learn from the reversed gradient
        h = torch.cat([gamma[i] * g.detach() for i, g in enumerate(grads)])  # (T N, F, h, w)
        h = normalize_gradient(h, self.cfg.normalize)
        n = batch.x_s.shape[0]
        labels = torch.arange(len(self.tasks), device=h.device).repeat_interleave(n)
        aux_logits = self.aux(h)
        aux_loss = F.cross_entropy(aux_logits, labels)
        loss = (losses / c0).sum() + aux_loss
        with torch.no_grad():
            g_all = self.gal_weights()
            metrics = {"src_acc": self.class_accuracy(outputs, batch.y_s),
                       "aux_acc": (aux_logits.argmax(-1) == labels).float().mean(),
                       "gal_mean": g_all.mean(), "gal_std": g_all.std(), "gal_min": g_all.min(),
                       "gal_max": g_all.max(),
                       **{f"gal_{t}": g_all[i].mean() for i, t in enumerate(self.tasks)}}
        return MethodOutput(loss, {**self.parts(losses), "aux_loss": aux_loss}, metrics)
