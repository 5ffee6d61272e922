"""Marginalized stacked denoising autoencoders (mSDA), in closed form.

Chen, Xu, Weinberger & Sha, "Marginalized Denoising Autoencoders for Domain Adaptation",
ICML 2012. Used for the DANN paper's second Amazon table (Ganin et al., JMLR 2016, section
5.1.3), where the representation is 30,000-dimensional: the 5,000 raw features and five
layers of 5,000.

One layer, with inputs X (d, n), a constant row appended, X' = [X; 1], and each input feature
dropped (set to 0) with probability p: the linear map W (d, d + 1) that best reconstructs X
from its corruptions, *in expectation over infinitely many corruptions*, is

    W = P Q^-1,   S = X' X'^T,   q = [1 - p, ..., 1 - p, 1],
    Q_ij = S_ij q_i q_j  (i != j),   Q_ii = S_ii q_i,   P_ij = S_ij q_j  (rows i < d),

and the layer's output is h = tanh(W X'). Layers stack on the previous layer's output, and the
representation is the concatenation of the input and every layer's output. Fitting uses the
source and target inputs together (unsupervised).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["msda_fit", "msda_transform", "msda_cached"]


def _layer(x: Tensor, noise: float, reg: float) -> Tensor:
    """W (d, d + 1) for inputs x (n, d); the scatter matrix in x's dtype, the solve in float64."""
    n, d = x.shape
    xb = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], 1)          # (n, d + 1)
    s = (xb.T @ xb).double()                                          # (d + 1, d + 1)
    q = torch.full((d + 1,), 1.0 - noise, dtype=torch.float64)
    q[-1] = 1.0
    qmat = s * torch.outer(q, q)
    qmat.diagonal().copy_(s.diagonal() * q)
    p = s[:d] * q                                                     # (d, d + 1)
    qmat.diagonal().add_(reg)                                         # ridge for stability
    # W Q = P  <=>  Q^T W^T = P^T, and Q is symmetric
    return torch.linalg.solve(qmat, p.T).T


def msda_fit(x: Tensor, noise: float = 0.5, layers: int = 5, reg: float = 1e-5,
             dtype: torch.dtype = torch.float64) -> list[Tensor]:
    """Learn the mSDA layers on inputs x (source and target together).

    Args:
        x: inputs (n, d).
        noise: the corruption (drop) probability p.
        layers: number of stacked layers.
        reg: ridge added to the diagonal of Q.
        dtype: precision of the large matrix products (float32 halves the time; the linear
            solve is always in float64).

    Returns:
        the layer weights, each (d, d + 1), in ``dtype``.
    """
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"noise must be in [0, 1), got {noise}")
    h = x.to(dtype)
    ws = []
    for _ in range(layers):
        w = _layer(h, noise, reg).to(dtype)
        ws.append(w)
        h = torch.tanh(torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype)], 1) @ w.T)
    return ws


def msda_transform(x: Tensor, ws: list[Tensor], chunk: int = 4096) -> Tensor:
    """The stacked representation [x, h_1, ..., h_L] (n, d (L + 1)), float32.

    Example:
        >>> x = torch.rand(50, 4)
        >>> msda_transform(x, msda_fit(x, 0.5, layers=2)).shape
        torch.Size([50, 12])
    """
    outs = []
    for i in range(0, len(x), chunk):
        h = x[i:i + chunk].to(ws[0].dtype) if ws else x[i:i + chunk]
        parts = [h]
        for w in ws:
            h = torch.tanh(torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype)], 1) @ w.T)
            parts.append(h)
        outs.append(torch.cat(parts, 1).float())
    return torch.cat(outs)


def msda_cached(x_fit: Tensor, key: str, noise: float, layers: int, cache_dir=None) -> list[Tensor]:
    """:func:`msda_fit` in float32, cached on disk under ``cache_dir`` (default
    ``$GRADVERSARY_CACHE`` or ``~/.cache/gradversary``) by ``key`` and the settings."""
    import hashlib
    import os
    import tempfile
    from pathlib import Path

    base = Path(cache_dir or os.environ.get("GRADVERSARY_CACHE") or Path.home() / ".cache" / "gradversary")
    digest = hashlib.sha256(f"{key}|{noise}|{layers}|{tuple(x_fit.shape)}".encode()).hexdigest()[:16]
    path = base / "msda" / f"{digest}.pt"
    if path.exists():
        try:
            return list(torch.load(path, weights_only=True))
        except Exception:  # a damaged cache entry is recomputed
            path.unlink(missing_ok=True)
    ws = msda_fit(x_fit, noise, layers, dtype=torch.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        torch.save(ws, f)
    os.replace(tmp, path)  # a private cache: mkstemp's 0o600 is fine here
    return ws
