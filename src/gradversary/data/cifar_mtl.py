"""GREAT's CIFAR-10 multi-task set, built from CIFAR-10 (JPEG subset).

Sinha et al., "Gradient Adversarial Training of Neural Networks", arXiv:1806.08028, section
3.3 and supplement ("GREAT for multitask learning"). Every image of the staged JPEG subset (see
:mod:`gradversary.data.cifar10_jpeg`: 10,000 training and 2,000 test images re-encoded at JPEG
quality 75, *not* CIFAR-10) gives

- input: the greyscale image (ITU-R BT.601 luma) with salt-and-pepper noise on 4% of the pixels
  (salt or pepper with equal probability), then speckle noise x <- x + x n, n ~ N(0, 0.1^2)
  (the paper's "gaussian probability of 0.1", read as the standard deviation, which is also
  scikit-image's default speckle variance 0.01), clipped to [0, 1];
- ``y``: the class (cross-entropy);
- ``targets["colour"]``: the colour image (3 channels; MSE);
- ``targets["edge"]``: Canny edges with sigma 1 of the colour image (MSE on {0, 1} maps).
  scikit-image's ``feature.canny`` takes one channel, so the edges of the R, G and B channels are
  OR-ed: an edge between two colours of equal luma is still an edge of the colour image;
- ``targets["autoencoder"]``: the clean greyscale image (denoised reconstruction; MSE).

The noise is drawn once per image from a generator seeded by ``noise_seed`` (fixed inputs, as a
dataset built once), independently of which images a subset keeps. The edges need
scikit-image (``pip install 'gradversary[mtl]'``); they are computed once and cached on disk under
``$GRADVERSARY_CACHE`` or ``~/.cache/gradversary`` (``cifar_mtl/``), keyed by the file's
checksum and sigma.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .cifar10_jpeg import FILE, SHA256, SOURCE, balanced_subset
from .digits import read_npz, to_images
from .registry import DATASETS
from .root import require_file, resolve_data_root
from .task import DATask, DomainData

__all__ = ["CIFAR10MTLConfig", "cifar10_mtl", "add_noise", "canny_edges", "cached_edges"]

TASKS = ("colour", "edge", "autoencoder")


@dataclass
class CIFAR10MTLConfig:
    """Options of ``cifar10_mtl``.

    Args:
        salt_pepper: share of pixels set to 0 or 1 (the paper: 0.04).
        speckle: standard deviation of the multiplicative Gaussian noise (the paper: 0.1).
        canny_sigma: Gaussian width of the Canny detector (the paper: 1).
        noise_seed: seed of the noise (independent of the training seed).
        per_class: keep this many training images per class (null: all 1,000).
        subset_seed: seed of that class-balanced sample.
        max_test: keep the first ``max_test`` test images (null: all 2,000).
    """

    salt_pepper: float = 0.04
    speckle: float = 0.1
    canny_sigma: float = 1.0
    noise_seed: int = 0
    per_class: int | None = None
    subset_seed: int = 0
    max_test: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.salt_pepper <= 1.0 or self.speckle < 0 or self.canny_sigma <= 0:
            raise ConfigError("cifar10_mtl: salt_pepper must be in [0, 1], speckle >= 0, "
                              "canny_sigma > 0")
        for k in ("per_class", "max_test"):
            if getattr(self, k) is not None and getattr(self, k) < 1:
                raise ConfigError(f"cifar10_mtl.{k} must be >= 1, got {getattr(self, k)}")


def add_noise(grey: Tensor, salt_pepper: float, speckle: float, seed: int) -> Tensor:
    """Salt-and-pepper on a ``salt_pepper`` share of the pixels, then speckle x + x n, clipped.

    Shape:
        grey: (N, 1, H, W) in [0, 1] -> (N, 1, H, W) in [0, 1].
    """
    g = torch.Generator().manual_seed(seed)
    x = grey.clone()
    hit = torch.rand(x.shape, generator=g) < salt_pepper
    salt = torch.rand(x.shape, generator=g) < 0.5
    x[hit & salt], x[hit & ~salt] = 1.0, 0.0
    x = x + x * speckle * torch.randn(x.shape, generator=g)
    return x.clamp_(0.0, 1.0)


def canny_edges(images: np.ndarray, sigma: float) -> np.ndarray:
    """Canny edges (scikit-image, default thresholds) of each colour channel, OR-ed.

    Shape:
        images: (N, H, W, C) uint8 -> (N, H, W) bool.
    """
    try:
        from skimage import feature
    except ImportError as e:
        raise ImportError("the cifar10_mtl dataset computes Canny edges with scikit-image: "
                          "pip install 'gradversary[mtl]'") from e
    x = images.astype(np.float64) / 255.0
    out = np.zeros(images.shape[:3], dtype=bool)
    for i in range(len(x)):
        for c in range(x.shape[-1]):
            out[i] |= feature.canny(x[i, :, :, c], sigma=sigma)
    return out


def cached_edges(images: np.ndarray, key: str, sigma: float, cache_dir=None) -> np.ndarray:
    """:func:`canny_edges`, cached on disk by ``key`` (name the images' content) and sigma."""
    base = Path(cache_dir or os.environ.get("GRADVERSARY_CACHE")
                or Path.home() / ".cache" / "gradversary")
    path = base / "cifar_mtl" / f"{key}-canny{sigma:g}-{images.shape[0]}.npy"
    # the key names the images; the count guards against a key reused for other images
    if path.exists():
        try:
            edges = np.load(path, allow_pickle=False)
            if edges.shape == images.shape[:3]:
                return edges.astype(bool)
        except (OSError, ValueError):  # a damaged cache entry is recomputed
            pass
        path.unlink(missing_ok=True)
    edges = canny_edges(images, sigma)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy")
    with os.fdopen(fd, "wb") as f:
        np.save(f, edges.astype(np.uint8))
    os.replace(tmp, path)
    return edges


def _split(x: np.ndarray, y: np.ndarray, keep: np.ndarray | None, name: str, cfg: CIFAR10MTLConfig,
           stream: int) -> DomainData:
    """One split's inputs and targets; the noise is drawn for every image, then subset."""
    noisy = add_noise(to_images(x, 32, 1), cfg.salt_pepper, cfg.speckle, cfg.noise_seed * 2 + stream)
    if keep is not None:
        x, y, noisy = x[keep], y[keep], noisy[torch.from_numpy(keep)]
    key = hashlib.sha256(f"{SHA256}|{name}|{keep.tolist() if keep is not None else 'all'}".encode())
    edges = cached_edges(x, f"{name}-{key.hexdigest()[:16]}", cfg.canny_sigma)
    grey = to_images(x, 32, 1)
    targets = {"colour": to_images(x, 32, 3), "edge": torch.from_numpy(edges).float().unsqueeze(1),
               "autoencoder": grey}
    return DomainData(noisy, torch.from_numpy(y.astype(np.int64)), name, targets)


@DATASETS.register("cifar10_mtl", CIFAR10MTLConfig)
def cifar10_mtl(root=None, salt_pepper: float = 0.04, speckle: float = 0.1, canny_sigma: float = 1.0,
                noise_seed: int = 0, per_class: int | None = None, subset_seed: int = 0,
                max_test: int | None = None) -> DATask:
    """GREAT's CIFAR multi-task set from CIFAR-10 (JPEG subset): noisy grey in; class, colour,
    edges, clean grey out.

    Shape:
        inputs: (N, 1, 32, 32) in [0, 1]; labels (N,) in 0..9; targets colour (N, 3, 32, 32),
        edge (N, 1, 32, 32) in {0, 1}, autoencoder (N, 1, 32, 32).
    """
    cfg = CIFAR10MTLConfig(salt_pepper, speckle, canny_sigma, noise_seed, per_class, subset_seed,
                           max_test)
    path = require_file(resolve_data_root(root), FILE, SHA256, SOURCE)
    z = read_npz(path)
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z]
    if missing:
        raise DataError(f"{str(path)!r} lacks the arrays {missing}")
    keep = None if per_class is None else balanced_subset(z["y_train"], per_class, subset_seed)
    keep_test = None if max_test is None else np.arange(min(max_test, len(z["y_test"])))
    train = _split(z["x_train"], z["y_train"], keep, "source", cfg, 0)
    test = _split(z["x_test"], z["y_test"], keep_test, "test", cfg, 1)
    n_classes = int(z["y_train"].max()) + 1
    return DATask(train, DomainData(train.x[:16], None, "target"), n_classes, eval={"test": test},
                  name="CIFAR-10 (JPEG subset), multi-task",
                  meta={"train_images": len(train), "test_images": len(test), "file": FILE,
                        "tasks": ["class", *TASKS]})
