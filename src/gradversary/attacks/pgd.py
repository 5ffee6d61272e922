"""L-infinity PGD with a random start and restarts, keeping each example's worst point."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from ..config import suggest
from ..errors import ConfigError
from .base import ATTACKS, Attack, make_generator, uniform_like
from .losses import ATTACK_LOSSES

__all__ = ["PGD"]

logger = logging.getLogger(__name__)


@ATTACKS.register("pgd")
class PGD(Attack):
    r"""Projected gradient descent in the L-infinity ball, with random start and restarts.

    Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018, arXiv:1706.06083.

    .. math::
        x_0 = \Pi(x + u),\ u \sim U[-\epsilon, \epsilon]^d, \qquad
        x_{i+1} = \Pi_{B_\infty(x,\epsilon) \cap [0,1]}\big(x_i + \alpha\,\mathrm{sign}\,
        \nabla_x J(x_i)\big),

    with J = CE(f(x), y) untargeted and J = -CE(f(x), t) targeted (``loss="ce"``), or the
    Carlini-Wagner margin (``"margin"``) or AutoAttack's DLR loss (``"dlr"``), which do not
    saturate with over-confident logits (see :mod:`gradversary.attacks.losses`). Every iterate x_0 ... x_k of
    every restart is a candidate; per example the attack keeps the worst one, ranked first by
    success (misclassified, or classified as the target), then by J. Restarts after the first
    run only on the examples not yet fooled, so more restarts never make the attack weaker.
    With ``early_stop``, an example also stops within a run at its first successful iterate:
    the set of fooled examples, hence every accuracy, is the same (success at any iterate
    already counts), for fewer gradient evaluations; only the returned point of a fooled
    example differs (its first success instead of its highest-loss success), which matters
    where the points are reused elsewhere (a transfer attack wants the latter).

    Args:
        eps: L-infinity radius.
        steps: k, gradient steps per restart.
        step_size: alpha; ``None`` means 2.5 eps / k (Madry et al.'s choice).
        restarts: number of runs from independent random starts.
        random_start: start from a uniform point of the ball (``False``: from x; then restarts
            beyond the first repeat the same run and are skipped).
        seed: seed of the random starts (``None``: the global RNG).
        loss: the objective J: ``ce``, ``margin`` or ``dlr``.
        early_stop: stop each example at its first success (see above).

    Shape:
        x: (N, C, H, W) in [0, 1]; y, target: (N,); output: (N, C, H, W).
    """

    def __init__(self, eps: float, steps: int = 40, step_size: float | None = None,
                 restarts: int = 1, random_start: bool = True, seed: int | None = None,
                 loss: str = "ce", early_stop: bool = False):
        super().__init__(eps)
        if loss not in ATTACK_LOSSES:
            raise ConfigError("pgd loss: " + suggest(str(loss), ATTACK_LOSSES))
        self.loss = loss
        if int(steps) < 1 or int(restarts) < 1:
            raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
        self.steps = int(steps)
        self.step_size = 2.5 * self.eps / self.steps if step_size is None else float(step_size)
        self.restarts = int(restarts)
        self.random_start = bool(random_start)
        self.seed = seed
        self.early_stop = bool(early_stop)
        self._generator = make_generator(seed)

    def objective(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """The configured loss J, per example (N,)."""
        return ATTACK_LOSSES[self.loss](logits, y, target)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        best = x.clone()
        best_obj = torch.full((x.shape[0],), -torch.inf, device=x.device, dtype=x.dtype)
        best_ok = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        restarts = self.restarts if self.random_start else 1
        for r in range(restarts):
            idx = torch.arange(x.shape[0], device=x.device) if r == 0 else (~best_ok).nonzero()[:, 0]
            if idx.numel() == 0:
                break
            t = None if target is None else target[idx]
            cand, obj, ok = self._run(model, x[idx], y[idx], t)
            better = _better(ok, obj, best_ok[idx], best_obj[idx])
            sel = idx[better]
            best[sel], best_obj[sel], best_ok[sel] = cand[better], obj[better], ok[better]
            logger.debug("pgd restart %d: %d/%d fooled", r + 1, int(best_ok.sum()), x.shape[0])
        return best

    def _run(self, model: nn.Module, x: Tensor, y: Tensor,
             target: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """One PGD run; the worst iterate per example, its objective and its success flag."""
        x_adv = x.clone()
        if self.random_start:
            x_adv = self.project(x + uniform_like(x, -self.eps, self.eps, self._generator), x)
        best, best_obj = x_adv.clone(), torch.full_like(y, -torch.inf, dtype=x.dtype)
        best_ok = torch.zeros_like(y, dtype=torch.bool)
        active = torch.arange(x.shape[0], device=x.device)  # examples still iterated
        for i in range(self.steps + 1):
            xa, ya = x_adv[active], y[active]
            ta = None if target is None else target[active]
            if i < self.steps:
                grad, logits = self.gradient(model, xa, ya, ta)
            else:
                with torch.no_grad():
                    logits = model(xa)
            obj, ok = self.objective(logits, ya, ta).detach(), self.success(logits, ya, ta)
            better = _better(ok, obj, best_ok[active], best_obj[active])
            sel = active[better]
            best[sel], best_obj[sel], best_ok[sel] = xa[better], obj[better], ok[better]
            if i < self.steps:
                x_adv[active] = self.project(xa + self.step_size * grad.sign(), x[active])
                if self.early_stop:
                    active = active[~best_ok[active]]
                    if active.numel() == 0:
                        break
        return best, best_obj, best_ok


def _better(ok: Tensor, obj: Tensor, best_ok: Tensor, best_obj: Tensor) -> Tensor:
    """Where (ok, obj) beats (best_ok, best_obj): success first, then a higher objective."""
    return (ok & ~best_ok) | ((ok == best_ok) & (obj > best_obj))
