"""Plots (matplotlib is an optional extra: ``pip install gradversary[plots]``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)

__all__ = ["have_matplotlib", "save_figure", "decision_boundary_plot", "curves_plot", "embed_2d", "feature_embedding_plot"]


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write (110 dpi, parent folders made) and close a matplotlib figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def decision_boundary_plot(panels: Sequence[tuple[str, object]], source, target, path: str | Path,
                           resolution: int = 200) -> Path | None:
    """Decision regions of 2-D classifiers over the source (labelled) and target points.

    Args:
        panels: ``(title, method)`` pairs; each method has ``predict_logits`` on (N, 2) inputs.
        source: labelled :class:`DomainData` (N, 2), drawn as circles coloured by class.
        target: :class:`DomainData` (M, 2), drawn as crosses (coloured by class when labelled).
        path: PNG file to write.

    Returns the path, or ``None`` when matplotlib is not installed.
    """
    if not have_matplotlib():
        log.warning("matplotlib is not installed: skipping %s (pip install gradversary[plots])", path)
        return None
    plt = pyplot()
    pts = torch.cat([source.x, target.x])
    lo, hi = pts.min(0).values - 0.5, pts.max(0).values + 0.5
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], resolution),
                            torch.linspace(lo[1], hi[1], resolution), indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (title, method) in zip(axes[0], panels):
        was = method.training
        method.eval()
        with torch.no_grad():
            dev = next(method.parameters()).device
            prob = method.predict_logits(grid.to(dev)).softmax(-1)[:, 1].cpu()
        method.train(was)
        ax.contourf(gx, gy, prob.reshape(gx.shape), levels=[0, 0.5, 1], colors=["#c6dbef", "#fdd0a2"], alpha=0.8)
        ax.contour(gx, gy, prob.reshape(gx.shape), levels=[0.5], colors="k", linewidths=1)
        ax.scatter(source.x[:, 0], source.x[:, 1], c=source.y, cmap="coolwarm", s=8, label="source")
        tc = target.y if target.y is not None else "grey"
        ax.scatter(target.x[:, 0], target.x[:, 1], c=tc, cmap="coolwarm", marker="x", s=10, alpha=0.6, label="target")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="lower left", fontsize=8)
    return save_figure(fig, path)


def curves_plot(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | Path,
                ylabel: str = "", title: str = "") -> Path | None:
    """Line plot of named (steps, values) series; ``None`` without matplotlib."""
    if not have_matplotlib():
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def embed_2d(x, method: str = "tsne", seed: int = 0):
    """2-D embedding of features (N, F): t-SNE (needs scikit-learn) or PCA (torch only).

    Returns a (N, 2) numpy array and the name of the method actually used.
    """
    import numpy as np

    x = torch.as_tensor(x).reshape(len(x), -1).double()
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            log.warning("scikit-learn is not installed: using PCA instead of t-SNE "
                        "(pip install gradversary[sklearn])")
            method = "pca"
        else:
            perp = float(min(30.0, max(5.0, (len(x) - 1) / 3)))
            z = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perp).fit_transform(x.numpy())
            return np.asarray(z), "t-SNE"
    xc = x - x.mean(0)
    _, _, v = torch.linalg.svd(xc, full_matrices=False)
    return (xc @ v[:2].T).numpy(), "PCA"


def feature_embedding_plot(panels: Sequence[tuple[str, object, object]], path: str | Path,
                           method: str = "tsne", seed: int = 0) -> Path | None:
    """Side-by-side 2-D embeddings of source (blue) and target (red) features, as in the DANN
    paper's Figure 1 (source-only beside DANN).

    Args:
        panels: ``(title, source_features (N, F), target_features (M, F))`` triples.
        path: PNG file.
        method: ``tsne`` (falls back to PCA without scikit-learn) or ``pca``.
    """
    if not have_matplotlib():
        log.warning("matplotlib is not installed: skipping %s", path)
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.3), squeeze=False)
    for ax, (title, fs, ft) in zip(axes[0], panels):
        fs, ft = torch.as_tensor(fs), torch.as_tensor(ft)
        z, used = embed_2d(torch.cat([fs.reshape(len(fs), -1), ft.reshape(len(ft), -1)]), method, seed)
        ax.scatter(z[: len(fs), 0], z[: len(fs), 1], s=4, c="tab:blue", alpha=0.6, label="source")
        ax.scatter(z[len(fs):, 0], z[len(fs):, 1], s=4, c="tab:red", alpha=0.6, label="target")
        ax.set_title(f"{title} ({used})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="best", fontsize=8, markerscale=3)
    return save_figure(fig, path)
