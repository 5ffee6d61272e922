"""Self-contained k-means and adjusted mutual information (no scikit-learn needed).

Used by the ClassAMI validator (:mod:`gradversary.selection.validators`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["kmeans", "adjusted_mutual_info"]


def kmeans(x: Tensor, k: int, iters: int = 50, seed: int = 0) -> Tensor:
    """Lloyd's k-means with k-means++ seeding (Arthur & Vassilvitskii, SODA 2007).

    Args:
        x: points (N, F).
        k: number of clusters (at most N).
        iters: maximum Lloyd iterations (stops early when the assignment is stable).
        seed: seeds the k-means++ draws.

    Returns:
        cluster index of each point, (N,) int64 in [0, k).
    """
    x = x.reshape(len(x), -1).double()
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"kmeans: need 1 <= k <= N, got k={k}, N={n}")
    g = torch.Generator().manual_seed(seed)
    centres = [x[int(torch.randint(n, (1,), generator=g))]]
    d2 = (x - centres[0]).square().sum(1)
    for _ in range(1, k):
        total = float(d2.sum())
        idx = int(torch.multinomial(d2 / total, 1, generator=g)) if total > 0 else \
            int(torch.randint(n, (1,), generator=g))
        centres.append(x[idx])
        d2 = torch.minimum(d2, (x - x[idx]).square().sum(1))
    c = torch.stack(centres)
    assign = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        new = torch.cdist(x, c).argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if len(members):  # an emptied cluster keeps its old centre
                c[j] = members.mean(0)
    return assign


def _lg(v) -> np.ndarray:
    """log Gamma, elementwise (float64)."""
    return torch.lgamma(torch.as_tensor(v, dtype=torch.float64)).numpy()


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def adjusted_mutual_info(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> float:
    """Adjusted mutual information of two labelings, arithmetic-mean normalisation
    (Vinh, Epps & Bailey, JMLR 11, 2010):

        AMI = (MI - E[MI]) / (0.5 (H(a) + H(b)) - E[MI])

    with E[MI] the expected mutual information under the hypergeometric model of random
    labelings with the same cluster sizes. 1 for identical labelings (up to renaming),
    about 0 for independent ones.

    Shape: a, b (N,) integer labels.
    """
    a = np.asarray(a).ravel()
    b = np.asarray(b).ravel()
    if a.shape != b.shape:
        raise ValueError(f"labelings differ in length: {a.shape} vs {b.shape}")
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    if len(ua) == len(ub) == 1 or len(ua) == len(ub) == len(a):
        return 1.0
    n = len(a)
    table = np.zeros((len(ua), len(ub)))
    np.add.at(table, (ia, ib), 1)
    ra, rb = table.sum(1), table.sum(0)
    nz = table > 0
    mi = float((table[nz] / n * np.log(n * table[nz] / np.outer(ra, rb)[nz])).sum())
    emi = 0.0
    for ai in ra:
        for bj in rb:
            lo, hi = max(1, int(ai + bj - n)), int(min(ai, bj))
            if lo > hi:
                continue
            nij = np.arange(lo, hi + 1, dtype=float)
            log_p = (_lg(ai + 1) + _lg(bj + 1) + _lg(n - ai + 1) + _lg(n - bj + 1) - _lg(n + 1)
                     - _lg(nij + 1) - _lg(ai - nij + 1) - _lg(bj - nij + 1) - _lg(n - ai - bj + nij + 1))
            emi += float((nij / n * np.log(n * nij / (ai * bj)) * np.exp(log_p)).sum())
    denom = 0.5 * (_entropy(ra) + _entropy(rb)) - emi
    if abs(denom) < 1e-12:
        return 0.0
    return (mi - emi) / denom
