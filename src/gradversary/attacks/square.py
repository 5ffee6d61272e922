"""Square Attack (L-infinity): score-based random search with localised square updates."""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor, nn

from ..errors import DataError
from .base import ATTACKS, Attack, make_generator

__all__ = ["Square", "margin_loss"]

logger = logging.getLogger(__name__)

# Iterations (of a 10,000-query budget) after which the paper halves p.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def margin_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    r"""The margin that the Square Attack minimises; negative exactly when the attack succeeds.

    Untargeted: :math:`f_y(x) - \max_{k \ne y} f_k(x)`; targeted:
    :math:`\max_{k \ne t} f_k(x) - f_t(x)`.

    Shape:
        logits: (N, K) with K >= 2; y, target: (N,); output: (N,).
    """
    cls = (y if target is None else target)[:, None]
    own = logits.gather(1, cls)[:, 0]
    other = logits.scatter(1, cls, -torch.inf).amax(dim=1)
    return own - other if target is None else other - own


@ATTACKS.register("square")
class Square(Attack):
    r"""Square Attack, L-infinity: gradient-free random search over vertices of the eps-ball.

    Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient black-box
    adversarial attack via random search", ECCV 2020, arXiv:1912.00049.

    Only the model's scores are used (under ``no_grad``), so masked or obfuscated gradients do
    not stop it. With L the :func:`margin_loss`:

    - start from vertical stripes: :math:`x_0 = \Pi(x + \epsilon\,s)`, one random sign
      :math:`s \in \{-1, 1\}` per channel and column;
    - at iteration i, draw a square window of side :math:`h_i = \mathrm{round}(\sqrt{p_i H W})`
      (at least 1, at most min(H, W) - 1) at a uniform position, and per channel a sign
      :math:`\rho \in \{-1, 1\}`; the candidate equals :math:`\Pi(x + \epsilon\rho)` inside the
      window and the current iterate outside (the paper's :math:`\Pi(\hat x + 2\epsilon\rho)`);
    - keep the candidate if it lowers L; stop an example once L < 0 (fooled) or its query
      budget is spent.

    :math:`p_i` starts at ``p_init`` and is halved after iterations 10, 50, 200, 500, 1000, 2000,
    4000, 6000 and 8000 of a 10,000-query budget; with ``rescale_schedule`` those points are
    scaled to ``n_queries`` as in the paper. Defaults follow AutoAttack's standard Square
    (p_init 0.8, 5,000 queries); the paper uses p_init 0.05 on ImageNet.

    Args:
        eps: L-infinity radius.
        n_queries: model evaluations per example, the initial one included.
        p_init: initial fraction of pixels changed per iteration.
        rescale_schedule: scale the schedule's halving points to ``n_queries``.
        seed: seed of the random search (``None``: the global RNG).

    Shape:
        x: (N, C, H, W) in [0, 1]; y, target: (N,); output: (N, C, H, W).
    """

    def __init__(self, eps: float, n_queries: int = 5000, p_init: float = 0.8,
                 rescale_schedule: bool = True, seed: int | None = None):
        super().__init__(eps)
        if int(n_queries) < 1 or not 0 < float(p_init) <= 1:
            raise ValueError(f"need n_queries >= 1 and 0 < p_init <= 1, got {n_queries}, {p_init}")
        self.n_queries = int(n_queries)
        self.p_init = float(p_init)
        self.rescale_schedule = bool(rescale_schedule)
        self.seed = seed
        self._generator = make_generator(seed)

    def p_at(self, i: int) -> float:
        """The fraction p_i of pixels changed at iteration i (1-based)."""
        it = int(i / self.n_queries * 10000) if self.rescale_schedule else i
        return self.p_init / 2 ** sum(it > b for b in _HALVINGS)

    def _signs(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        s = torch.randint(0, 2, shape, generator=self._generator) * 2 - 1
        return s.to(device=like.device, dtype=like.dtype)

    @torch.no_grad()
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if x.dim() != 4:
            raise DataError(f"the Square attack needs images (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        x_best = self.project(x + self.eps * self._signs((n, c, 1, w), x), x)
        loss = margin_loss(model(x_best), y, target)
        queries = torch.ones(n, dtype=torch.long)
        for i in range(1, self.n_queries):
            idx = (loss >= 0).nonzero()[:, 0]
            if idx.numel() == 0:
                break
            side = max(1, min(round(math.sqrt(self.p_at(i) * h * w)), min(h, w) - 1))
            mask = self._window(idx.numel(), side, h, w, x.device)
            x_a = x[idx]
            vertex = (x_a + self.eps * self._signs((idx.numel(), c, 1, 1), x)).clamp(0.0, 1.0)
            cand = torch.where(mask, vertex, x_best[idx])
            cand_loss = margin_loss(model(cand), y[idx], None if target is None else target[idx])
            queries[idx.cpu()] += 1
            better = cand_loss < loss[idx]
            x_best[idx[better]] = cand[better]
            loss[idx[better]] = cand_loss[better]
        fooled = loss < 0
        logger.debug(
            "square: %d/%d fooled, median queries of the fooled %s", int(fooled.sum()), n,
            int(queries[fooled.cpu()].median()) if bool(fooled.any()) else "-",
        )
        return x_best

    def _window(self, n: int, side: int, h: int, w: int, device: torch.device) -> Tensor:
        """A (n, 1, h, w) bool mask of one side x side square per example, at a uniform place."""
        top = torch.randint(0, h - side + 1, (n, 1), generator=self._generator).to(device)
        left = torch.randint(0, w - side + 1, (n, 1), generator=self._generator).to(device)
        rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
        in_rows = (rows >= top) & (rows < top + side)
        in_cols = (cols >= left) & (cols < left + side)
        return in_rows[:, None, :, None] & in_cols[:, None, None, :]
