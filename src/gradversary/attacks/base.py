"""The attack contract: a base class that owns the ceremony, and the attack registry.

An attack is a small subclass of :class:`Attack` that writes only :meth:`Attack.perturb`. The
base class:

- checks that images are in [0, 1] and labels have shape (N,);
- puts the model (every submodule) in eval mode and restores each submodule's previous mode
  afterwards, also when the attack raises;
- runs under ``torch.enable_grad()`` (an evaluation loop under ``no_grad`` still works) and takes
  gradients with ``torch.autograd.grad`` on the input only, so parameters' ``.grad`` never change;
- projects the result onto the L-infinity ball of radius ``eps`` around the input and onto
  [0, 1], and returns it detached, on the input's device and dtype.

Targeted mode is "the caller gave target labels": ``attack(model, x, y, target=t)``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from gradversary.attacks import create_attack
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).train()
    >>> x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0])
    >>> x_adv = create_attack("fgsm", eps=0.1)(model, x, y)
    >>> x_adv.shape, bool((x_adv - x).abs().max() <= 0.1 + 1e-6), model.training
    (torch.Size([3, 1, 2, 2]), True, True)
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import DataError
from ..registry import Registry
from .losses import ce_loss

__all__ = [
    "ATTACKS", "Attack", "create_attack", "list_attacks", "eval_mode",
    "worst_class_targets", "random_targets", "make_generator", "uniform_like",
]

logger = logging.getLogger(__name__)

ATTACKS = Registry("attack")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule of ``model`` in eval mode; restore each one's own mode on exit.

    Restoring per submodule (not ``model.train(was_training)``) keeps mixed modes intact, e.g. a
    frozen BatchNorm kept in eval inside a model that trains. The modes are restored also when
    the body raises.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


class Attack:
    """Base class of L-infinity attacks on classifiers with inputs in [0, 1].

    Subclasses implement :meth:`perturb`; calling the attack runs the checks, the mode handling
    and the final projection around it.

    Args:
        eps: radius of the L-infinity ball, in the units of the [0, 1] images.

    Shape:
        x: (N, C, H, W) images in [0, 1] (any (N, *) works for attacks that need no image layout);
        y: (N,) true labels; target: (N,) target labels or ``None``; output: like ``x``.
    """

    def __init__(self, eps: float):
        eps = float(eps)
        if not (math.isfinite(eps) and eps >= 0):
            raise ValueError(f"eps must be a finite number >= 0, got {eps}")
        self.eps = eps

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}=<{type(v).__name__}>" if isinstance(v, nn.Module) else f"{k}={v!r}"
            for k, v in vars(self).items() if not k.startswith("_")
        )
        return f"{type(self).__name__}({args})"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        """Adversarial images for ``model`` at ``(x, y)``; targeted at ``target`` if given."""
        x, y, target = self.check_inputs(x, y, target)
        with eval_mode(model), torch.enable_grad():
            x_adv = self.perturb(model, x, y, target)
        return self.project(x_adv.detach(), x)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """The attack itself; ``model`` is already in eval mode. Subclasses implement this."""
        raise NotImplementedError

    # --- helpers shared by the attacks -------------------------------------------------------

    @staticmethod
    def check_inputs(x: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Validate shapes, dtypes and the [0, 1] range; return detached ``x`` and long labels."""
        if not isinstance(x, Tensor) or x.dim() < 2 or not x.is_floating_point():
            raise DataError(f"x must be a floating tensor of shape (N, *), got {_describe(x)}")
        if not bool(((x >= 0) & (x <= 1)).all()):
            raise DataError(
                "attack inputs must be images in [0, 1] (normalisation belongs inside the model); "
                f"got values in [{x.min().item():.4g}, {x.max().item():.4g}]"
            )
        labels = []
        for name, t in (("y", y), ("target", target)):
            if t is None:
                labels.append(None)
                continue
            if not isinstance(t, Tensor) or t.shape != (x.shape[0],) or t.is_floating_point():
                raise DataError(
                    f"{name} must be integer labels of shape ({x.shape[0]},), got {_describe(t)}"
                )
            labels.append(t.to(device=x.device, dtype=torch.long))
        return x.detach(), labels[0], labels[1]

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Clamp ``x_adv`` to the L-infinity ball of radius eps around ``x`` and to [0, 1]."""
        x_adv = torch.minimum(torch.maximum(x_adv, x - self.eps), x + self.eps)
        return x_adv.clamp(0.0, 1.0)

    @staticmethod
    def objective(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """Per-example objective the attack maximises: CE(y) untargeted, -CE(target) targeted.

        Shape:
            logits: (N, K); y, target: (N,); output: (N,).
        """
        return ce_loss(logits, y, target)

    @staticmethod
    def success(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """Per-example success (N,) bool: misclassified, or classified as ``target``."""
        pred = logits.argmax(dim=-1)
        return pred != y if target is None else pred == target

    def gradient(self, model: nn.Module, x_adv: Tensor, y: Tensor,
                 target: Tensor | None) -> tuple[Tensor, Tensor]:
        """Input gradient of the summed objective at ``x_adv``, and the logits there.

        Uses ``torch.autograd.grad`` with respect to the input only, so no parameter's ``.grad``
        is touched. The sum (not the mean) keeps each example's gradient independent of the batch.

        Shape:
            x_adv: (N, *); output: gradient like ``x_adv`` and detached logits (N, K).
        """
        x_adv = x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        (grad,) = torch.autograd.grad(self.objective(logits, y, target).sum(), x_adv)
        return grad, logits.detach()


def make_generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed``, or ``None`` (the global RNG) when ``seed`` is None."""
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def uniform_like(x: Tensor, low: float, high: float, generator: torch.Generator | None,
                 shard: tuple[int, int] = (0, 1)) -> Tensor:
    """Uniform noise in [low, high) like ``x``, drawn on the CPU (so a seed gives the same
    numbers on every device) and moved to ``x``'s device and dtype.

    With ``shard = (rank, world_size)``, ``x`` is that rank's rows of a global batch of
    ``world_size * N``: the noise is drawn for the whole global batch and the rank keeps its
    rows, so every rank consumes the generator alike and the ranks together draw exactly what
    one process draws for the global batch.

    Shape:
        x: (N, *); output: (N, *).
    """
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
    if world == 1:
        u = torch.rand(tuple(x.shape), generator=generator, dtype=x.dtype)
    else:
        n = x.shape[0]
        u = torch.rand((world * n, *x.shape[1:]), generator=generator, dtype=x.dtype)[rank * n:(rank + 1) * n]
    return (low + (high - low) * u).to(x.device)


def _describe(t: Any) -> str:
    if isinstance(t, Tensor):
        return f"tensor of shape {tuple(t.shape)} and dtype {t.dtype}"
    return repr(type(t).__name__)


def create_attack(name: str, /, **kwargs: Any) -> Attack:
    """Build the attack registered as ``name``; an unknown keyword raises with a suggestion."""
    return ATTACKS.create(name, **kwargs)


def list_attacks() -> list[str]:
    """Names of the registered attacks, sorted."""
    return ATTACKS.names()


@torch.no_grad()
def worst_class_targets(model: nn.Module, x: Tensor) -> Tensor:
    """The least likely class under ``model`` for each input: the "worst" target of GREAT's Table 1.

    Sinha et al., "Gradient Adversarial Training of Neural Networks", arXiv:1806.08028.

    Shape:
        x: (N, *); output: (N,) long, ``argmin_k f_k(x)``.
    """
    with eval_mode(model):
        return model(x).argmin(dim=-1)


def random_targets(y: Tensor, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """A class drawn uniformly among the K - 1 classes other than ``y``: the "random" target.

    Args:
        y: true labels.
        num_classes: K, at least 2.
        generator: a CPU ``torch.Generator`` for reproducible draws (global RNG if ``None``).

    Shape:
        y: (N,); output: (N,) long, on ``y``'s device, never equal to ``y``.
    """
    if num_classes < 2:
        raise ValueError(f"random targets need at least 2 classes, got {num_classes}")
    shift = torch.randint(1, num_classes, tuple(y.shape), generator=generator)
    return (y.long() + shift.to(y.device)) % num_classes
