"""A small logistic-regression domain classifier shared by PAD, IWCV and DEV."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fit_logistic", "fit_mlp", "standardize"]


def standardize(*xs: Tensor, rel_floor: float = 0.0) -> list[Tensor]:
    """Z-score every tensor with the mean and std of all of them together. Shape: (N_i, F).

    ``rel_floor`` > 0 divides no feature by less than ``rel_floor`` times the largest std: a
    nearly constant feature (a ReLU unit dead on almost every input) is then not blown up into
    a huge value wherever it happens to fire, which lets a classifier separate on noise."""
    allx = torch.cat(xs)
    sd = allx.std(0)
    floor = max(1e-6, rel_floor * float(sd.max())) if rel_floor > 0 else 1e-6
    mu, sd = allx.mean(0), sd.clamp_min(floor)
    return [(x - mu) / sd for x in xs]


def fit_logistic(x: Tensor, y: Tensor, weight_decay: float = 1e-3, max_iter: int = 200) -> tuple[Tensor, Tensor]:
    """L2-regularised logistic regression by L-BFGS, in float64 for a repeatable optimum.

    Args:
        x: features (N, F), preferably standardised.
        y: binary labels (N,) in {0, 1}.
        weight_decay: L2 penalty on the weights (not the bias).
        max_iter: L-BFGS iterations.

    Returns:
        (w, b) with logits = x @ w + b. Shape: w (F,), b ().
    """
    x = x.detach().double()
    y = y.detach().double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y)
        loss = loss + 0.5 * weight_decay * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fit_mlp(x: Tensor, y: Tensor, hidden: int = 64, steps: int = 300, weight_decay: float = 1e-3,
            seed: int = 0):
    """A one-hidden-layer domain classifier (full-batch Adam), for shifts a linear one misses
    (a rotation about the mean, say). Returns a function mapping (N, F) to logits (N,)."""
    g = torch.Generator().manual_seed(seed)
    w1 = (torch.randn(x.shape[1], hidden, generator=g) / x.shape[1] ** 0.5).requires_grad_()
    b1 = torch.zeros(hidden, requires_grad=True)
    w2 = (torch.randn(hidden, generator=g) / hidden ** 0.5).requires_grad_()
    b2 = torch.zeros((), requires_grad=True)
    params = [w1, b1, w2, b2]
    opt = torch.optim.Adam(params, lr=1e-2, weight_decay=weight_decay)
    x, y = x.detach().float(), y.detach().float()

    def f(z: Tensor) -> Tensor:
        return torch.relu(z.float() @ w1 + b1) @ w2 + b2

    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(f(x), y).backward()
        opt.step()
    return lambda z: f(z).detach()
