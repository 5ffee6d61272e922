"""Proxy A-distance: how well a classifier tells two samples apart.

Ben-David, Blitzer, Crammer & Pereira, "Analysis of Representations for Domain Adaptation",
NIPS 2006; used in Ganin et al., JMLR 2016, section 5.1.4:

    PAD = 2 (1 - 2 err)

where err is the held-out error of a classifier trained to separate the two samples. PAD is
near 0 for indistinguishable samples and near 2 for separable ones (it is clipped to [0, 2]).
The paper uses a linear SVM; here the classifier is L2-regularised logistic regression
(``classifier="linear"``) or a one-hidden-layer MLP (``"mlp"``, for shifts with equal means
such as a rotation), on standardised features, trained on half of each sample and tested on the
other half.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .domain_classifier import fit_logistic, fit_mlp, standardize

__all__ = ["PADResult", "proxy_a_distance"]


@dataclass(frozen=True)
class PADResult:
    """PAD, the held-out domain-classification error, and the sizes used."""

    pad: float
    error: float
    n_a: int
    n_b: int


def proxy_a_distance(a: Tensor, b: Tensor, seed: int = 0, max_per_domain: int | None = 5000,
                     weight_decay: float = 1e-3, classifier: str = "linear") -> PADResult:
    """The proxy A-distance between samples ``a`` and ``b``.

    Args:
        a, b: samples (N_a, *) and (N_b, *), flattened to features; each needs >= 4 rows.
        seed: seeds the subsampling and the train/test halves.
        max_per_domain: subsample each side to at most this many rows (None: all).
        weight_decay: the classifier's L2 penalty.
        classifier: ``linear`` (the paper's choice) or ``mlp``.

    Shape:
        a: (N_a, *), b: (N_b, *) with the same trailing size.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(400, 3, generator=g)
        >>> proxy_a_distance(x, x + 10).pad
        2.0
    """
    a, b = a.reshape(a.shape[0], -1).float(), b.reshape(b.shape[0], -1).float()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if min(len(a), len(b)) < 4:
        raise ValueError("each sample needs at least 4 rows")
    g = torch.Generator().manual_seed(seed)

    def split(x):
        idx = torch.randperm(len(x), generator=g)
        if max_per_domain:
            idx = idx[:max_per_domain]
        h = len(idx) // 2
        return x[idx[:h]], x[idx[h:]]

    (a_tr, a_te), (b_tr, b_te) = split(a), split(b)
    a_tr, b_tr, a_te, b_te = standardize(a_tr, b_tr, a_te, b_te)
    x_tr = torch.cat([a_tr, b_tr])
    y_tr = torch.cat([torch.zeros(len(a_tr)), torch.ones(len(b_tr))])
    if classifier == "linear":
        w, bias = fit_logistic(x_tr, y_tr, weight_decay)

        def score(z):
            return z.double() @ w + bias
    elif classifier == "mlp":
        score = fit_mlp(x_tr, y_tr, weight_decay=weight_decay, seed=seed)
    else:
        raise ValueError(f"classifier must be 'linear' or 'mlp', got {classifier!r}")
    pred_a = score(a_te) > 0
    pred_b = score(b_te) > 0
    # balanced error, so unequal sample sizes do not bias PAD
    err = 0.5 * (pred_a.double().mean() + (~pred_b).double().mean())
    err = float(err)
    pad = min(max(2.0 * (1.0 - 2.0 * err), 0.0), 2.0)
    return PADResult(pad, err, len(a), len(b))
