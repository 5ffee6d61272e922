"""Checkpoint scores without target labels, computed during training.

Each criterion maps the current model to a *risk* estimate (lower is better) from labelled
source validation data and unlabelled target data only:

- ``source_val``: the error on held-out source (ignores the shift);
- ``iwcv``: the importance-weighted source validation loss, weights from a domain classifier
  on the model's features (Sugiyama et al., JMLR 2007);
- ``dev``: Deep Embedded Validation, IWCV with a control variate (You et al., ICML 2019);
- ``dev_cv``: DEV whose domain classifier is calibrated: its L2 penalty chosen by held-out
  log-loss, and nearly constant features not blown up by the standardisation. It costs about
  three times ``dev``'s domain-classifier fit. On the digit networks ``dev``'s weights are
  often degenerate (an effective sample size of 3-30 of 729-6,000 held-out images). Mostly
  this is the data, not the estimator: a logistic classifier tells the domains apart on
  held-out features 99% of the time for a source-only network and 79-90% for DANN's, so the
  true ratio is extreme; calibration raised the effective sample size only from 15 to 72 of
  729 (USPS -> MNIST, DANN) and 210 to 261 of 6,000 (MNIST -> USPS). Kept apart from ``dev``
  so that runs made under it keep their meaning;
- ``robust_val``: the error on held-out source under PGD (:func:`robust_risk`), for
  adversarial training: the robust early stopping of Rice, Wong & Kolter ("Overfitting in
  adversarially robust deep learning", ICML 2020), which also catches the catastrophic
  overfitting of single-step training (Wong, Rice & Kolter, ICLR 2020, stop when PGD accuracy
  on training data collapses).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .weighting import dev_risk, importance_weights, iwcv_risk

__all__ = ["CRITERIA", "checkpoint_risk", "robust_risk"]

CRITERIA = ("last", "source_val", "iwcv", "dev", "dev_cv", "robust_val")


@torch.no_grad()
def _apply(fn: Callable[[Tensor], Tensor], x: Tensor, device, bs: int = 1024) -> Tensor:
    return torch.cat([fn(x[i:i + bs].to(device)).float().cpu() for i in range(0, len(x), bs)])


@torch.no_grad()
def checkpoint_risk(criterion: str, features: Callable[[Tensor], Tensor],
                    logits: Callable[[Tensor], Tensor], source_fit: Tensor, target_fit: Tensor,
                    source_val_x: Tensor, source_val_y: Tensor, device="cpu") -> dict[str, float]:
    """Estimate the target risk of the current model.

    Args:
        criterion: one of ``source_val``, ``iwcv``, ``dev``, ``dev_cv``.
        features: the model's feature extractor, (N, *) -> (N, F).
        logits: the model's classifier, (N, *) -> (N, K).
        source_fit, target_fit: source and target inputs to fit the domain classifier.
        source_val_x, source_val_y: held-out labelled source, (M, *) and (M,).

    Returns:
        ``{"risk": ..., "se": ..., "ess": ...}``: the estimate, its standard error (for the
        one-standard-error rule) and the importance weights' effective sample size (M for
        ``source_val``).
    """
    if criterion == "robust_val":
        raise ValueError("robust_val attacks the model itself: use robust_risk")
    if criterion not in CRITERIA[1:]:
        raise ValueError(f"unknown selection criterion {criterion!r}; choose from {CRITERIA}")
    out = _apply(logits, source_val_x, device)
    y = source_val_y.to(out.device)
    if criterion == "source_val":
        err = float((out.argmax(-1) != y).float().mean())
        return {"risk": err, "se": (err * (1 - err) / max(len(y), 1)) ** 0.5, "ess": float(len(y))}
    losses = F.cross_entropy(out, y, reduction="none")
    fs, ft, fv = (_apply(features, x, device) for x in (source_fit, target_fit, source_val_x))
    if criterion == "dev_cv":
        w = importance_weights(fs, ft, fv, weight_decay="cv", rel_std_floor=1e-2)
    else:
        w = importance_weights(fs, ft, fv)
    r = (iwcv_risk if criterion == "iwcv" else dev_risk)(losses, w)
    return {"risk": r.risk, "se": r.se, "ess": r.ess}


def robust_risk(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, seed: int,
                batch_size: int = 500) -> dict[str, float]:
    """The error of ``model`` on ``(x, y)`` under PGD (``steps`` steps of 2.5 eps / steps from
    one seeded random start, stopping each image at its first success), with its binomial
    standard error; ``ess`` is the number of images.

    Shape:
        x: (M, C, H, W) in [0, 1], on the model's device; y: (M,).
    """
    from ..attacks.evaluate import robust_accuracy
    from ..attacks.pgd import PGD

    acc = robust_accuracy(model, PGD(eps, steps, seed=seed, early_stop=True), (x, y.long()),
                          batch_size).accuracy
    err = 1.0 - acc
    return {"risk": err, "se": (err * (1 - err) / max(len(y), 1)) ** 0.5, "ess": float(len(y))}
