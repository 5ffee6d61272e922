"""Importance-weighted validation risks: IWCV and Deep Embedded Validation (DEV).

Both estimate the *target* risk of a model from labelled *source* validation data, by weighting
each validation example with w(x) = p_T(x) / p_S(x), itself estimated by a domain classifier:

    w(x) = (n_S / n_T) * P(target | x) / P(source | x)

- IWCV: Sugiyama, Krauledat & Mueller, "Covariate Shift Adaptation by Importance Weighted
  Cross Validation", JMLR 8, 2007. Risk = mean_i w_i l_i.
- DEV: You, Wang, Long & Jordan, "Towards Accurate Model Selection in Deep Unsupervised Domain
  Adaptation", ICML 2019. The weights are computed on the model's features, and a control
  variate cuts the variance: with eta = -Cov(w l, w) / Var(w),
  Risk = mean(w l) + eta mean(w) - eta.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .domain_classifier import fit_logistic, standardize

__all__ = ["importance_weights", "iwcv_risk", "dev_risk", "WeightedRisk"]


@dataclass(frozen=True)
class WeightedRisk:
    """An estimated target risk, its standard error (the per-example terms' std / sqrt(M)),
    and the weights' effective sample size."""

    risk: float
    ess: float
    se: float = 0.0


def importance_weights(source_train: Tensor, target_train: Tensor, source_val: Tensor,
                       weight_decay: float = 1e-3, clip: float | None = 100.0) -> Tensor:
    """Estimate w(x) = p_T(x) / p_S(x) at ``source_val`` with a logistic domain classifier.

    Args:
        source_train: source features (N_s, F) to fit the domain classifier.
        target_train: target features (N_t, F) to fit it.
        source_val: held-out source features (M, F) to weight.
        weight_decay: the classifier's L2 penalty.
        clip: cap on the weights (None: no cap).

    Returns:
        weights (M,), float64, normalised to mean 1.
    """
    xs, xt, xv = (t.reshape(t.shape[0], -1).float() for t in (source_train, target_train, source_val))
    xs, xt, xv = standardize(xs, xt, xv)
    x = torch.cat([xs, xt])
    y = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))])
    w, b = fit_logistic(x, y, weight_decay)
    logit = xv.double() @ w + b  # log P(t|x) / P(s|x)
    ratio = torch.exp(logit.clamp(-30, 30)) * (len(xs) / len(xt))
    if clip is not None:
        ratio = ratio.clamp(max=clip)
    return ratio / ratio.mean()


def _se(terms: Tensor) -> float:
    """Standard error of the mean of per-example terms, (M,)."""
    return float(terms.std(unbiased=True) / len(terms) ** 0.5) if len(terms) > 1 else 0.0


def _ess(w: Tensor) -> float:
    return float(w.sum() ** 2 / w.square().sum())


def iwcv_risk(losses: Tensor, weights: Tensor) -> WeightedRisk:
    """Importance-weighted mean of per-example validation losses. Shape: (M,), (M,)."""
    losses, weights = losses.double(), weights.double()
    terms = weights * losses
    return WeightedRisk(float(terms.mean()), _ess(weights), _se(terms))


def dev_risk(losses: Tensor, weights: Tensor) -> WeightedRisk:
    """Deep Embedded Validation risk with its control variate. Shape: (M,), (M,).

    Example:
        >>> l = torch.tensor([1.0, 0.0, 1.0, 0.0]); w = torch.ones(4)
        >>> dev_risk(l, w).risk
        0.5
    """
    losses, weights = losses.double(), weights.double()
    wl = weights * losses
    var = weights.var(unbiased=True)
    if var <= 1e-12:
        eta = 0.0
    else:
        cov = ((wl - wl.mean()) * (weights - weights.mean())).sum() / (len(weights) - 1)
        eta = float(-cov / var)
    terms = wl + eta * weights - eta  # the estimate is the mean of these per-example terms
    return WeightedRisk(float(terms.mean()), _ess(weights), _se(terms))
