"""Distillation losses: Hinton's soft targets and Sobolev gradient matching.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014 Deep
Learning Workshop, arXiv:1503.02531. Czarnecki, Osindero, Jaderberg, Swirszcz & Pascanu,
"Sobolev Training for Neural Networks", NeurIPS 2017, arXiv:1706.04859. Both are the baselines
of GREAT's distillation experiments (Sinha et al., arXiv:1806.08028, section 3.2 and the
supplement).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["kd_loss", "project_gradient", "random_directions", "sobolev_distance"]


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """Hinton's soft-target term: T^2 KL(softmax(t / T) || softmax(s / T)), averaged per example.

        L = T^2 (1/N) sum_i sum_k q_ik (log q_ik - log p_ik),
        q = softmax(t / T), p = softmax(s / T)

    The factor T^2 keeps the gradient's scale independent of T (Hinton et al., section 2). The
    reduction is ``batchmean`` (sum over classes, mean over examples): ``mean`` would also
    divide by K and is not the KL divergence. The teacher's logits are used as given; pass
    them detached (or computed under ``no_grad``).

    Args:
        student_logits: s.
        teacher_logits: t.
        T: the temperature, > 0.

    Shape:
        student_logits, teacher_logits: (N, K); output: () scalar.

    Example:
        >>> s = torch.tensor([[0.0, 0.0]]); t = torch.tensor([[0.0, 0.0]])
        >>> kd_loss(s, t, T=4.0)
        tensor(0.)
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"expected student and teacher logits of one shape (N, K), got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if T <= 0:
        raise ValueError(f"the temperature T must be positive, got {T}")
    log_p = F.log_softmax(student_logits / T, dim=1)
    log_q = F.log_softmax(teacher_logits.to(student_logits.dtype) / T, dim=1)
    return T * T * F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)


def random_directions(like: Tensor, k: int, generator: torch.Generator | None = None,
                      shard: tuple[int, int] = (0, 1)) -> Tensor:
    """k standard normal directions per example, for :func:`project_gradient`.

    Args:
        like: a batch of gradients; the directions get its device and dtype.
        k: directions per example.
        generator: a torch generator on ``like``'s device (default: the global RNG).
        shard: ``(rank, world_size)`` when ``like`` is one DDP rank's rows of a global batch:
            the directions are drawn for the global batch and the rank keeps its rows, so the
            ranks draw what one process draws.

    Shape:
        like: (N, *); output: (N, k, *).
    """
    if k < 1:
        raise ValueError(f"need k >= 1 directions, got {k}")
    rank, world = shard
    n = like.shape[0]
    d = torch.randn((world * n, k, *like.shape[1:]), generator=generator, device=like.device, dtype=like.dtype)
    return d[rank * n:(rank + 1) * n]


def project_gradient(g: Tensor, directions: Tensor) -> Tensor:
    """Projections of each example's gradient onto its directions: <g_i, v_ij>.

    For an input gradient g_i = d J_i / d x_i this is the directional derivative of J_i along
    v_ij, the value a Jacobian-vector product (forward mode) would give.

    Shape:
        g: (N, *); directions: (N, k, *); output: (N, k).
    """
    if directions.shape[:1] != g.shape[:1] or directions.shape[2:] != g.shape[1:]:
        raise ValueError(f"directions must be (N, k, *) for gradients (N, *), got "
                         f"{tuple(directions.shape)} for {tuple(g.shape)}")
    return torch.einsum("nd,nkd->nk", g.flatten(1), directions.flatten(2))


def sobolev_distance(g_student: Tensor, g_teacher: Tensor, directions: Tensor | None = None) -> Tensor:
    """Sobolev training's gradient-matching term, per example, averaged over the batch.

    Exact (``directions`` is ``None``): the squared L2 distance of the gradients,

        D = (1/N) sum_i ||g_s,i - g_t,i||^2.

    Projected (Czarnecki et al., section 3, "stochastic Sobolev training"): the mean squared
    difference of k directional derivatives,

        D_k = (1/N) sum_i (1/k) sum_j <g_s,i - g_t,i, v_ij>^2,

    an unbiased estimate of D when the v_ij are standard normal (E[<u, v>^2] = ||u||^2).

    Args:
        g_student: the student's gradients (differentiable, to train the student).
        g_teacher: the teacher's gradients (a constant).
        directions: (N, k, *) directions from :func:`random_directions`, or ``None``.

    Shape:
        g_student, g_teacher: (N, *); output: () scalar.

    Example:
        >>> gs, gt = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 4.0]])
        >>> sobolev_distance(gs, gt)
        tensor(25.)
        >>> sobolev_distance(gs, gt, torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
        tensor(12.5000)
    """
    if g_student.shape != g_teacher.shape:
        raise ValueError(f"gradients differ in shape: {tuple(g_student.shape)} and "
                         f"{tuple(g_teacher.shape)}")
    diff = g_student - g_teacher.to(g_student.dtype)
    if directions is None:
        return diff.flatten(1).square().sum(1).mean()
    return project_gradient(diff, directions).square().mean(1).mean()
