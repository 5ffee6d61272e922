"""Auto-PGD (L-infinity): APGD-CE and APGD-T, AutoAttack's gradient attacks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import ATTACKS, Attack, make_generator, uniform_like
from .losses import ce_loss, dlr_loss

__all__ = ["APGD", "APGDT", "APGDRun", "apgd_checkpoints"]


def apgd_checkpoints(n_iter: int) -> list[int]:
    """The iterations w_j at which APGD may halve its step size.

    w_j = ceil(p_j n_iter) with p_0 = 0, p_1 = 0.22 and
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), for p_j <= 1 (duplicates dropped).

    Example:
        >>> apgd_checkpoints(100)
        [22, 41, 57, 70, 80, 87, 93, 99]
    """
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({max(1, math.ceil(round(pj * n_iter, 9))) for pj in p[1:]})


@dataclass
class APGDRun:
    """One APGD run, per example.

    Shape:
        x: (N, *) the point kept (successful first, then the highest objective); objective: (N,);
        success: (N,) bool; step_size: (N,) the final eta; x_max: (N, *) the highest-objective
        iterate and f_max: (N,) its objective (the paper's output).
    """

    x: Tensor
    objective: Tensor
    success: Tensor
    step_size: Tensor
    x_max: Tensor
    f_max: Tensor


@ATTACKS.register("apgd_ce")
class APGD(Attack):
    r"""APGD-CE: projected gradient ascent with momentum and an adaptive step size.

    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020 (arXiv:2003.01690), Algorithm 1, L-infinity. With P the
    projection onto the eps-ball around x and [0, 1], eta^(0) = 2 eps and alpha = 0.75:

    .. math::
        x^{(1)} = P(x^{(0)} + \eta\,\mathrm{sign}\nabla f(x^{(0)})),\quad
        z^{(k+1)} = P(x^{(k)} + \eta\,\mathrm{sign}\nabla f(x^{(k)})),\\
        x^{(k+1)} = P\big(x^{(k)} + \alpha(z^{(k+1)} - x^{(k)}) + (1 - \alpha)(x^{(k)} - x^{(k-1)})\big).

    At each checkpoint w_j of :func:`apgd_checkpoints`, per example, eta is halved and the
    iterate restarts from the best point so far (x_max, with its gradient) if
    (1) the objective rose in fewer than rho (w_j - w_{j-1}) of the steps since w_{j-1}, or
    (2) eta was not halved at w_{j-1} and f_max has not risen since. f is the cross-entropy
    (untargeted) or -CE of the caller's target labels. Every iterate is a candidate: the attack
    returns, per example, a successful one if any (the highest objective among them), else x_max.
    Restarts after the first run only on the examples not yet fooled.

    Args:
        eps: L-infinity radius.
        steps: N_iter, gradient evaluations per run (AutoAttack: 100).
        restarts: runs from independent random starts.
        rho: the checkpoint's share of rising steps (0.75).
        momentum: alpha (0.75).
        random_start: start from a uniform point of the ball (AutoAttack does; the paper's
            Algorithm 1 starts from its x^(0)).
        seed: seed of the random starts (``None``: the global RNG).
        early_stop: stop each example at its first successful iterate. The set of fooled
            examples, hence every accuracy, is the same (a success at any iterate already
            counts, and no example's path depends on another's), for fewer gradient
            evaluations; a fooled example's returned point is its first success instead of its
            highest-objective one. Robustness evaluations use it, as they do for PGD.

    Shape:
        x: (N, C, H, W) in [0, 1]; y, target: (N,); output: (N, C, H, W).
    """

    def __init__(self, eps: float, steps: int = 100, restarts: int = 1, rho: float = 0.75,
                 momentum: float = 0.75, random_start: bool = True, seed: int | None = None,
                 early_stop: bool = False):
        super().__init__(eps)
        if int(steps) < 1 or int(restarts) < 1:
            raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
        self.steps, self.restarts = int(steps), int(restarts)
        self.rho, self.momentum = float(rho), float(momentum)
        self.random_start, self.seed = bool(random_start), seed
        self.early_stop = bool(early_stop)
        self._generator = make_generator(seed)

    def loss(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """The objective f per example (N,): CE, or -CE of ``target``."""
        return ce_loss(logits, y, target)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        return self.attack_runs(model, x, y, target, target, self.restarts)

    def attack_runs(self, model: nn.Module, x: Tensor, y: Tensor, loss_target: Tensor | None,
                    hit_target: Tensor | None, runs: int, best: tuple | None = None) -> Tensor:
        """``runs`` runs (each on the examples not yet fooled), merged into ``best``
        ``(x, objective, success)`` (default: x itself, never better than a candidate)."""
        if best is None:
            best = (x.clone(), torch.full((x.shape[0],), -torch.inf, device=x.device, dtype=x.dtype),
                    torch.zeros(x.shape[0], dtype=torch.bool, device=x.device))
        bx, bobj, bok = best
        for _ in range(runs):
            idx = (~bok).nonzero()[:, 0]
            if idx.numel() == 0:
                break
            lt = None if loss_target is None else loss_target[idx]
            ht = None if hit_target is None else hit_target[idx]
            r = self.run(model, x[idx], y[idx], lt, ht)
            better = _better(r.success, r.objective, bok[idx], bobj[idx])
            sel = idx[better]
            bx[sel], bobj[sel], bok[sel] = r.x[better], r.objective[better], r.success[better]
        return bx

    def _eval(self, model, x, y, lt, ht, grad: bool):
        if grad:
            x = x.detach().requires_grad_(True)
            logits = model(x)
            f = self.loss(logits, y, lt)
            (g,) = torch.autograd.grad(f.sum(), x)
        else:
            with torch.no_grad():
                logits = model(x)
                f = self.loss(logits, y, lt)
            g = None
        return f.detach(), g, self.success(logits.detach(), y, ht)

    def run(self, model: nn.Module, x: Tensor, y: Tensor, loss_target: Tensor | None = None,
            hit_target: Tensor | None = None) -> APGDRun:
        """One run of Algorithm 1 on a batch (the model already in eval mode, under grad).

        ``loss_target`` enters the objective; ``hit_target`` decides success (``None``:
        misclassification). With ``early_stop``, each step evaluates the model only on the
        examples not yet fooled; every per-example quantity (eta, the rise counts, the
        checkpoints) is its own, so the others follow the same path as without it.
        """
        n, view = x.shape[0], (-1,) + (1,) * (x.dim() - 1)
        eta = torch.full((n,), 2.0 * self.eps, device=x.device, dtype=x.dtype)
        cur = x.clone()
        if self.random_start:
            cur = self.project(x + uniform_like(x, -self.eps, self.eps, self._generator), x)
        f, g, ok = self._eval(model, cur, y, loss_target, hit_target, grad=True)
        prev = cur.clone()
        bx, bobj, bok = cur.clone(), f.clone(), ok.clone()
        x_max, f_max, g_max = cur.clone(), f.clone(), g.clone()
        checks = set(apgd_checkpoints(self.steps))
        rises = torch.zeros(n, device=x.device)
        last_w, last_fmax = 0, f_max.clone()
        last_halved = torch.zeros(n, dtype=torch.bool, device=x.device)
        active = ~ok if self.early_stop else torch.ones(n, dtype=torch.bool, device=x.device)
        for k in range(self.steps):  # makes x^(k+1) for the active examples
            a = active.nonzero()[:, 0]
            if a.numel() == 0:
                break
            cur_a, x_a = cur[a], x[a]
            z = self.project(cur_a + eta[a].view(view) * g[a].sign(), x_a)
            nxt = z if k == 0 else self.project(
                cur_a + self.momentum * (z - cur_a) + (1 - self.momentum) * (cur_a - prev[a]), x_a)
            prev[a], cur[a] = cur_a, nxt
            f_a, g_a, ok_a = self._eval(model, nxt, y[a], _part(loss_target, a),
                                        _part(hit_target, a), grad=k + 1 < self.steps)
            rises[a] += (f_a > f[a]).to(rises.dtype)
            f[a] = f_a
            better = _better(ok_a, f_a, bok[a], bobj[a])
            sel = a[better]
            bx[sel], bobj[sel], bok[sel] = nxt[better], f_a[better], ok_a[better]
            up = f_a > f_max[a]
            x_max[a[up]], f_max[a[up]] = nxt[up], f_a[up]
            if g_a is not None:
                g[a] = g_a
                g_max[a[up]] = g_a[up]
            if k + 1 in checks:
                cond1 = rises < self.rho * (k + 1 - last_w)
                cond2 = ~last_halved & (f_max <= last_fmax)
                halve = (cond1 | cond2) & active
                eta[halve] = eta[halve] / 2
                if g_a is not None:
                    cur[halve], g[halve] = x_max[halve], g_max[halve]
                rises.zero_()
                last_w, last_fmax, last_halved = k + 1, f_max.clone(), halve
            if self.early_stop:
                active[a[ok_a]] = False
        return APGDRun(bx, bobj, bok, eta, x_max, f_max)


@ATTACKS.register("apgd_t")
class APGDT(APGD):
    r"""APGD-T: APGD on the targeted DLR loss, once per each of the top-k other classes.

    Croce & Hein, ICML 2020 (arXiv:2003.01690), section 4 and AutoAttack's "APGD-T". The
    objective is the targeted difference of logits ratio

    .. math::
        \mathrm{DLR}_t(z, y) = -\frac{z_y - z_t}{z_{\pi_1} - (z_{\pi_3} + z_{\pi_4}) / 2}

    (:func:`~gradversary.attacks.losses.dlr_loss`; pi sorts the logits in decreasing order).
    Untargeted use: the targets are the ``n_target_classes`` most likely classes other than
    the top one at the clean input, in turn (AutoAttack: 9), each run on the examples not yet
    misclassified; success is misclassification. With target labels from the caller, the runs
    use them and success means reaching them. With fewer than 4 classes the DLR denominator is
    undefined and the loss is the plain margin z_t - z_y.

    Args:
        eps, steps, restarts, rho, momentum, random_start, seed, early_stop: as :class:`APGD`
            (restarts per target class).
        n_target_classes: k, the number of target classes tried (at most K - 1).

    Shape:
        x: (N, C, H, W) in [0, 1]; y, target: (N,); output: (N, C, H, W).
    """

    def __init__(self, eps: float, steps: int = 100, restarts: int = 1, n_target_classes: int = 9,
                 rho: float = 0.75, momentum: float = 0.75, random_start: bool = True,
                 seed: int | None = None, early_stop: bool = False):
        super().__init__(eps, steps, restarts, rho, momentum, random_start, seed, early_stop)
        if int(n_target_classes) < 1:
            raise ValueError(f"n_target_classes must be >= 1, got {n_target_classes}")
        self.n_target_classes = int(n_target_classes)

    def loss(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if target is None:
            raise ValueError("APGD-T's loss needs target classes")
        if logits.shape[1] >= 4:
            return dlr_loss(logits, y, target)
        return logits.gather(1, target[:, None])[:, 0] - logits.gather(1, y[:, None])[:, 0]

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if target is not None:
            return self.attack_runs(model, x, y, target, target, self.restarts)
        with torch.no_grad():
            logits = model(x)
        order = logits.argsort(dim=1, descending=True)
        ok = logits.argmax(1) != y  # already misclassified: nothing to attack
        best = (x.clone(), torch.full((x.shape[0],), -torch.inf, device=x.device, dtype=x.dtype), ok)
        for i in range(1, min(self.n_target_classes, logits.shape[1] - 1) + 1):
            self.attack_runs(model, x, y, order[:, i], None, self.restarts, best)
        return best[0]


def _part(t: Tensor | None, idx: Tensor) -> Tensor | None:
    return None if t is None else t[idx]


def _better(ok: Tensor, obj: Tensor, best_ok: Tensor, best_obj: Tensor) -> Tensor:
    """Where (ok, obj) beats (best_ok, best_obj): success first, then a higher objective."""
    return (ok & ~best_ok) | ((ok == best_ok) & (obj > best_obj))
