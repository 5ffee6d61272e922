"""Per-example objectives an attack maximises, registered by name.

Each takes logits (N, K), true labels y (N,) and optional targets (N,) and returns (N,); a
larger value means a stronger attack. Cross-entropy is the classic choice; the margin and DLR
losses do not saturate when the softmax does, which keeps multi-step attacks honest against
models with over-confident (or deliberately flattened) logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ATTACK_LOSSES", "ce_loss", "margin_loss", "dlr_loss"]


def _other_max(logits: Tensor, cls: Tensor) -> Tensor:
    """max_{j != cls} z_j, shape (N,)."""
    masked = logits.scatter(1, cls[:, None], -torch.inf)
    return masked.max(dim=1).values


def ce_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """CE(z, y) untargeted; -CE(z, t) targeted."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def margin_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Carlini-Wagner margin: max_{j != y} z_j - z_y untargeted; z_t - max_{j != t} z_j targeted.

    Positive exactly when the attack succeeds (ties aside).
    """
    if target is None:
        return _other_max(logits, y) - logits.gather(1, y[:, None])[:, 0]
    return logits.gather(1, target[:, None])[:, 0] - _other_max(logits, target)


def dlr_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Difference of logits ratio (Croce & Hein, ICML 2020, AutoAttack), invariant to shifting
    and rescaling the logits.

    Untargeted: -(z_y - max_{j != y} z_j) / (z_(1) - z_(3)); targeted:
    -(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2), with z_(i) the i-th largest logit. Needs
    K >= 3 (K >= 4 targeted).
    """
    k = logits.shape[1]
    need = 3 if target is None else 4
    if k < need:
        raise ValueError(f"the DLR loss needs at least {need} classes, got {k}")
    top = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    if target is None:
        return -(z_y - _other_max(logits, y)) / (top[:, 0] - top[:, 2] + 1e-12)
    z_t = logits.gather(1, target[:, None])[:, 0]
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


ATTACK_LOSSES = {"ce": ce_loss, "margin": margin_loss, "dlr": dlr_loss}
