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

__all__ = ["CV_WEIGHT_DECAYS", "importance_weights", "iwcv_risk", "dev_risk", "WeightedRisk"]


@dataclass(frozen=True)
class WeightedRisk:
    """An estimated target risk, its standard error (the per-example terms' std / sqrt(M)),
    and the weights' effective sample size."""

    risk: float
    ess: float
    se: float = 0.0


#: L2 penalties tried by the calibrated weights (``weight_decay="cv"``)
CV_WEIGHT_DECAYS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _heldout_log_loss(x: Tensor, y: Tensor, weight_decay: float, folds: int = 2, seed: int = 0) -> float:
    """Mean held-out binary log-loss of the logistic classifier over ``folds`` folds."""
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    total = 0.0
    for k in range(folds):
        test = perm[k::folds]
        train = torch.cat([perm[j::folds] for j in range(folds) if j != k])
        w, b = fit_logistic(x[train], y[train], weight_decay)
        logit = x[test].double() @ w + b
        total += float(torch.nn.functional.binary_cross_entropy_with_logits(logit, y[test].double())) * len(test)
    return total / len(x)


def importance_weights(source_train: Tensor, target_train: Tensor, source_val: Tensor,
                       weight_decay: float | str = 1e-3, clip: float | None = 100.0,
                       rel_std_floor: float = 0.0) -> Tensor:
    """Estimate w(x) = p_T(x) / p_S(x) at ``source_val`` with a logistic domain classifier.

    Args:
        source_train: source features (N_s, F) to fit the domain classifier.
        target_train: target features (N_t, F) to fit it.
        source_val: held-out source features (M, F) to weight.
        weight_decay: the classifier's L2 penalty, or ``"cv"``: the one of
            :data:`CV_WEIGHT_DECAYS` with the lowest 2-fold held-out log-loss. The ratio is
            only as good as the classifier's probabilities, and held-out log-loss is the
            score of those (a weak penalty on many features gives near-0/1 probabilities,
            hence a few huge weights).
        clip: cap on the weights (None: no cap).
        rel_std_floor: see :func:`~gradversary.selection.domain_classifier.standardize`.

    Returns:
        weights (M,), float64, normalised to mean 1.
    """
    xs, xt, xv = (t.reshape(t.shape[0], -1).float() for t in (source_train, target_train, source_val))
    xs, xt, xv = standardize(xs, xt, xv, rel_floor=rel_std_floor)
    x = torch.cat([xs, xt])
    y = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))])
    if weight_decay == "cv":
        weight_decay = min(CV_WEIGHT_DECAYS, key=lambda wd: _heldout_log_loss(x, y, wd))
    elif isinstance(weight_decay, str):
        raise ValueError(f"weight_decay must be a number or 'cv', got {weight_decay!r}")
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
