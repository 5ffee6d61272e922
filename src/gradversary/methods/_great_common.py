"""What GREAT, GREACE and GRE(AT+CE) share: the auxiliary network and the one training step.

Sinha, Chen, Badrinarayanan & Rabinovich, "Gradient Adversarial Training of Neural Networks",
arXiv:1806.08028, section 2.1 and Algorithm 1. The three methods differ only in two switches:

- ``reverse``: the auxiliary loss flows back, reversed and scaled by alpha, into the main
  network through the input gradient (GREAT; double backpropagation);
- ``greace``: the main network's cross-entropy gets eq. 6's weights on negative classes.

How one step fits the engine's single ``loss.backward()`` and its two optimizers ("main" for
the model, "aux" for the auxiliary network):

    x -> f -> a --CE or GREACE--> task_loss                      (main: full gradient)
              \\-> g = masked dC/dx (create_graph) -> [normalize] -> GRL(alpha) -> aux -> aux_loss
    loss = task_loss + aux_loss

The backward pass gives the auxiliary network d aux_loss / d theta' unscaled (Algorithm 1 line
6: it learns at the full rate), and the gradient reversal layer turns the gradient reaching g
into -alpha d aux_loss / d g, which double backprop carries into the main network (line 7).
So the main parameters receive d task_loss / d theta - alpha d aux_loss / d theta and the
auxiliary parameters d aux_loss / d theta'; each optimizer then steps its own parameters. Both
gradients are taken at the same weights (simultaneous updates, as in DANN), whereas Algorithm 1
can be read as updating the auxiliary network first and evaluating the reversed gradient with
the new weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import greace_adjust, masked_input_gradient, normalize_gradient
from ..models.base import MODELS, FeatureClassifier, create_model
from ..models.digits import Normalize
from ..nn import GradientReversal
from ..registry import spec_field
from ..schedules import Schedule, create_schedule
from .base import Batch, Method, MethodOutput

__all__ = ["GradientAuxConfig", "GradientAdversarial", "build_auxiliary"]


@dataclass
class GradientAuxConfig:
    """Options shared by ``great``, ``greace`` and ``great_greace``.

    Args:
        normalize: how the gradient is rescaled before the auxiliary network: ``none`` (the
            paper), ``l2`` (per example) or ``channel_l2`` (per location); see
            :func:`~gradversary.functional.normalize_gradient`.
        masked: feed the masked gradient (true-class path only, the paper) or, if false, the
            full cross-entropy gradient (the paper's "unmasked" variant).
        aux_model: options that override the auxiliary network's; it is otherwise a copy of
            the main network's architecture with LeakyReLU(0.2) and no input normalisation.
            ``{name: ...}`` builds another registered model instead.
    """

    normalize: Literal["none", "l2", "channel_l2"] = "none"
    masked: bool = True
    aux_model: dict = spec_field(MODELS, fill=False)  # overrides: the main model's are the defaults


def build_auxiliary(model: FeatureClassifier, overrides: dict | None = None) -> FeatureClassifier:
    """GREAT's auxiliary network: the main network's architecture with LeakyReLU(0.2).

    Models that record ``build_spec`` (the ResNets) are rebuilt from their registered name and
    options with ``activation: leaky_relu`` and no ``mean``/``std`` (its input is a gradient,
    not an image), then ``overrides``. Other models are deep-copied with every ``nn.ReLU``
    replaced by ``nn.LeakyReLU(0.2)``, every ``Normalize`` by the identity, and fresh weights.
    The number of classes is the main network's.
    """
    overrides = dict(overrides or {})
    spec = getattr(model, "build_spec", None)
    if spec is not None or "name" in overrides:
        spec = spec or {"in_shape": None, "options": {}}
        name = overrides.pop("name", spec.get("name"))
        opts = dict(spec["options"]) if name == spec.get("name") else {}
        if name == spec.get("name"):
            opts.update({k: v for k, v in (("activation", "leaky_relu"), ("mean", None),
                                           ("std", None)) if k in opts})
        opts.update(overrides)
        if spec["in_shape"] is None:
            raise ValueError("aux_model.name needs a main model that records its input shape "
                             "(build_spec); build the auxiliary network yourself")
        return create_model(name, spec["in_shape"], model.num_classes, **opts)
    if overrides:
        raise ValueError(f"aux_model options {sorted(overrides)} need a main model built with a "
                         "build_spec (e.g. resnet18, resnet_small), or aux_model.name")
    aux = copy.deepcopy(model)
    for parent in list(aux.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, child_name, nn.LeakyReLU(0.2))
            elif isinstance(child, Normalize):
                setattr(parent, child_name, nn.Identity())
    for m in aux.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return aux


class GradientAdversarial(Method):
    """Base of the GREAT family: a main network, an auxiliary network on its input gradients.

    Subclasses set ``reverse`` and ``greace`` and provide the schedules ``alpha`` and ``beta``
    (a missing one is the constant 0) and GREACE's ``form`` (see
    :func:`~gradversary.functional.greace_adjust`).

    Shape:
        batch.x_s: (N, *) in any range, batch.y_s: (N,); the target inputs are ignored.

    Metrics:
        ``src_acc`` (main network on the batch), ``aux_acc`` (the auxiliary network's accuracy
        at telling the true class from the gradient: 1/K means the gradients carry no class
        information it can read), ``grad_norm`` (mean L2 norm of the masked gradients before
        normalisation), and ``alpha``/``beta`` as used.
    """

    uses_target = False
    reverse: bool = False
    greace: bool = False

    @property
    def double_backprop(self) -> bool:  # the reversed aux loss is taken through the gradient
        return self.reverse

    def __init__(self, model: FeatureClassifier, cfg: GradientAuxConfig,
                 alpha: Schedule | None = None, beta: Schedule | None = None, form: str = "eq6"):
        super().__init__(model)
        self.cfg = cfg
        self.form = form
        self.aux = build_auxiliary(model, cfg.aux_model)
        self.grl = GradientReversal(0.0)
        self.alpha = alpha or create_schedule({"name": "constant", "value": 0.0})
        self.beta = beta or create_schedule({"name": "constant", "value": 0.0})

    def param_groups(self) -> dict[str, list[dict]]:
        """Two optimizers: "main" (the model) and "aux" (the auxiliary network)."""
        return {"main": [{"params": [p for p in self.model.parameters() if p.requires_grad]}],
                "aux": [{"params": [p for p in self.aux.parameters() if p.requires_grad]}]}

    def schedules(self) -> dict[str, Schedule]:
        return {**({"alpha": self.alpha} if self.reverse else {}),
                **({"beta": self.beta} if self.greace else {})}

    def forward(self, batch: Batch) -> MethodOutput:
        y = batch.y_s
        x = batch.x_s.detach().requires_grad_()
        logits = self.model(x)
        g = masked_input_gradient(logits, x, y, masked=self.cfg.masked, create_graph=self.reverse)
        g_in = normalize_gradient(g, self.cfg.normalize)
        if self.reverse:
            self.grl.set_coeff(self.alpha.value)
            g_in = self.grl(g_in)
        aux_logits = self.aux(g_in)
        aux_loss = F.cross_entropy(aux_logits, y)
        ce = F.cross_entropy(logits, y, reduction="none")
        beta = self.beta.value if self.greace else 0.0
        if self.greace:
            ce = ce + greace_adjust(logits, aux_logits, y, beta, self.form)
        task_loss = ce.mean()
        with torch.no_grad():
            metrics: dict[str, Tensor] = {
                "src_acc": (logits.argmax(-1) == y).float().mean(),
                "aux_acc": (aux_logits.argmax(-1) == y).float().mean(),
                "grad_norm": g.detach().flatten(1).norm(dim=1).mean(),
            }
            if self.reverse:
                metrics["alpha"] = self.grl.coeff.clone()
            if self.greace:
                metrics["beta"] = logits.new_tensor(float(beta))
        return MethodOutput(task_loss + aux_loss, {"task_loss": task_loss, "aux_loss": aux_loss},
                            metrics)
