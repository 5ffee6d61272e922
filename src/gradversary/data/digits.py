"""Digit domain adaptation tasks: MNIST, MNIST-M and USPS (the DANN paper's digit protocol).

Data: MNIST (LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998); MNIST-M (Ganin & Lempitsky, "Unsupervised Domain
Adaptation by Backpropagation", ICML 2015; Ganin et al., "Domain-Adversarial Training of Neural
Networks", JMLR 17(59), 2016, arXiv:1505.07818); USPS (Hull, "A database for handwritten text
recognition research", IEEE TPAMI 16(5), 1994). File provenance and checksums: the data root's
``MANIFEST.md``.
"""

from __future__ import annotations

import difflib
import functools
import logging
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, DataError
from .registry import DATASETS
from .root import require_file, resolve_data_root
from .task import DATask, DomainData

__all__ = ["CHECKSUMS", "SOURCES", "DigitsConfig", "digits", "to_images", "read_npz", "data_dir",
           "domain_name"]

#: sha256 of each staged file (from the data root's MANIFEST.md).
CHECKSUMS: dict[str, str] = {
    "mnist.npz": "290bf974740ecfe91d1a02b98c88b22d78409fa36bd249be9ac57511faabd73b",
    "mnist_m.npz": "23e9ca7a9c875cb32193f30eb91e1a799040dd2dc051bc193e3f2faeea57d871",
    "usps.npz": "af2f5839f20e4499da2ae8d4089783becc20ce57ded6eb6b78f41eb7db202303",
}

log = logging.getLogger(__name__)

_MANIFEST = "packed as described in the data root's MANIFEST.md"

#: where each file comes from (from the MANIFEST), quoted in errors.
SOURCES: dict[str, str] = {
    "mnist.npz": "github.com/rasbt/mnist-pngs @ d26bd33bf1e454dd15bd4fe8b8ba64c76308f91c "
                 f"(train/<label>/<k>.png, test/<label>/<k>.png), {_MANIFEST}",
    "mnist_m.npz": "github.com/ShichengChen/Domain-Adversarial-Training-of-Neural-Networks @ "
                   "dae4e088b27b9e0d6c8d586fa9972f86c97cb503 (mnist_m/; the first 20,000 train "
                   f"images and all 9,001 test images), {_MANIFEST}",
    "usps.npz": "github.com/niuers/Learning-From-Data-A-Short-Course @ "
                f"879a698b960e5867f7c2b11f8938fa89c3d21839 (data/usps.h5), {_MANIFEST}",
}

_FILES = {"mnist": "mnist.npz", "mnist_m": "mnist_m.npz", "usps": "usps.npz",
          "svhn": "svhn.npz", "syn_numbers": "syn_numbers.npz"}

# Where the digit sets that are not staged can be obtained: their names are accepted so that
# configs can say what they mean, but without a known checksum (CHECKSUMS) asking for one
# raises a DataError that names the expected file and this place.
_ELSEWHERE = {
    "svhn": "http://ufldl.stanford.edu/housenumbers/ (cropped digits, 'Format 2': train_32x32.mat "
            "and test_32x32.mat, 'for non-commercial use only'; Netzer et al., NIPS Workshop 2011)",
    "syn_numbers": "the DANN authors' page http://sites.skoltech.ru/compvision/projects/grl/ "
                   "(Syn Numbers, Ganin & Lempitsky, ICML 2015)",
}

DOMAINS = tuple(_FILES)
_ALIASES = {"mnistm": "mnist_m", "synnumbers": "syn_numbers", "syn": "syn_numbers"}


def domain_name(name: str, valid: tuple[str, ...], aliases: Mapping[str, str], what: str) -> str:
    """The canonical domain name for ``name`` (case-insensitive, ``-`` = ``_``, or an alias).

    Raises:
        ConfigError: for an unknown name, suggesting the closest valid one.

    Example:
        >>> domain_name("MNIST-M", DOMAINS, _ALIASES, "digits.source")
        'mnist_m'
    """
    key = str(name).strip().replace("-", "_")
    for cand in (key, key.lower()):
        if cand in valid:
            return cand
        if cand in aliases:
            return aliases[cand]
    close = difflib.get_close_matches(key.lower(), valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"{what}: unknown domain {name!r}{hint} (choose one of {', '.join(valid)})")


STANDARDIZE = ("none", "per_domain", "pooled_mean")


@dataclass
class DigitsConfig:
    """Options of the ``digits`` dataset.

    Args:
        source: labelled source domain: ``mnist``, ``mnist_m`` or ``usps`` (``svhn`` and
            ``syn_numbers`` are accepted names but not staged: asking for them raises).
        target: unlabelled target domain, from the same names.
        size: images are resized to ``size`` x ``size`` (28: the DANN paper's MNIST network).
        channels: 3 (grey digits repeated, the paper's choice) or 1 (colour turned to grey).
        max_source: keep a random ``max_source`` of the source training images (quick runs).
        max_target: likewise for the target training images.
        max_test: likewise for each evaluation split.
        disjoint: when the pair is MNIST and MNIST-M, drop from MNIST's training split the
            digits that the staged MNIST-M training images were made from (see :func:`digits`).
        seed: seed of the subsampling.
        standardize: ``none`` (inputs in [0, 1]) or ``per_domain``: each domain's images are
            standardised per channel with the mean and std of that domain's own training
            images (no labels used; the target's statistics come from its unlabelled training
            split), the normalisation several DANN ports apply. Inputs then leave [0, 1], so
            keep ``none`` for attacks. ``pooled_mean``: every image has the per-channel mean
            of the two domains' training images subtracted (the average of the source's and
            the target's means; no labels used), the mean subtraction of the tf-dann port of
            the paper's MNIST -> MNIST-M experiment. Use it with a model that subtracts no
            mean of its own.
        binarize: MNIST's pixels are thresholded at 0 (a pixel > 0 becomes 1), as the tf-dann
            port prepares its MNIST source. Only MNIST is changed; other domains raise.
    """

    source: str = "mnist"
    target: str = "mnist_m"
    size: int = 28
    channels: int = 3
    max_source: int | None = None
    max_target: int | None = None
    max_test: int | None = None
    disjoint: bool = False
    seed: int = 0
    standardize: str = "none"
    binarize: bool = False

    def __post_init__(self) -> None:
        if self.standardize not in STANDARDIZE:
            raise ConfigError(f"digits.standardize must be one of {', '.join(map(repr, STANDARDIZE))}, "
                              f"got {self.standardize!r}")
        self.source = domain_name(self.source, DOMAINS, _ALIASES, "digits.source")
        self.target = domain_name(self.target, DOMAINS, _ALIASES, "digits.target")
        if self.size < 8:
            raise ConfigError(f"digits.size must be >= 8, got {self.size}")
        if self.channels not in (1, 3):
            raise ConfigError(f"digits.channels must be 1 or 3, got {self.channels}")
        for k in ("max_source", "max_target", "max_test"):
            v = getattr(self, k)
            if v is not None and v < 1:
                raise ConfigError(f"digits.{k} must be >= 1 (or null for all), got {v}")
        if self.binarize and "mnist" not in (self.source, self.target):
            raise ConfigError("digits.binarize thresholds MNIST's pixels, and neither domain is MNIST "
                              f"({self.source} -> {self.target})")


def data_dir(root) -> Path:
    """The data root as a path: ``root`` if given (checked to be a folder), else the default."""
    return resolve_data_root(root)


@functools.lru_cache(maxsize=8)
def _read_npz_cached(path: str, size: int, mtime_ns: int) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"cannot read {path!r} as .npz: {e}") from None
    for a in arrays.values():
        a.setflags(write=False)  # shared by every caller in this process
    return arrays


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz``, decoded once per process and file version (read-only)."""
    st = path.stat()
    return _read_npz_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


def to_images(x: np.ndarray, size: int, channels: int, chunk: int = 4096) -> Tensor:
    """uint8 NHWC images as float32 NCHW in [0, 1], resized and with ``channels`` channels.

    Resizing is bilinear with antialiasing (``F.interpolate(..., antialias=True)``), done on the
    uint8 images in chunks of ``chunk``: results are rounded to whole grey levels, within 1/255
    of a float resize and about 6 times faster. Images already ``size`` x ``size`` are only
    rescaled, so MNIST at 28 is exactly ``x / 255``. Colour becomes grey by ITU-R BT.601 luma
    (0.299 R + 0.587 G + 0.114 B). Grey becomes 3 channels as a stride-0 view (``expand``),
    which saves two copies of the data; call ``.contiguous()`` before writing into it in place.

    Shape:
        x: (N, H, W, C) uint8 with C in {1, 3} -> (N, channels, size, size) float32.
    """
    n, h, w, c = x.shape
    if c not in (1, 3) or x.dtype != np.uint8:
        raise DataError(f"images must be uint8 with 1 or 3 channels, got {x.dtype} {tuple(x.shape)}")
    c_mid = 1 if (c == 1 or channels == 1) else 3
    out = torch.empty(n, c, size, size, dtype=torch.float32)
    for i in range(0, n, chunk):
        t = _readonly_tensor(x[i:i + chunk]).permute(0, 3, 1, 2)
        if (h, w) != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        out[i:i + chunk].copy_(t)  # uint8 -> float32 in one pass
    out.div_(255.0)
    if c == 3 and channels == 1:
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        out = (out * luma).sum(1, keepdim=True).clamp_(0.0, 1.0)
    return out.expand(-1, channels, -1, -1) if c_mid < channels else out


def _readonly_tensor(a: np.ndarray) -> Tensor:
    """A tensor sharing the memory of a read-only array; only ever read from."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


def _subsample(n: int, k: int | None, seed: int, stream: int) -> np.ndarray | None:
    """Sorted random indices of ``k`` of ``n`` examples (None: keep all)."""
    if k is None or k >= n:
        return None
    g = torch.Generator().manual_seed(seed * 1_000_003 + stream)
    return np.sort(torch.randperm(n, generator=g)[:k].numpy())


def _domain_file(root, name: str) -> dict[str, np.ndarray]:
    fname, where = _FILES[name], _ELSEWHERE.get(name)
    if fname not in CHECKSUMS:
        path = data_dir(root) / fname
        if not path.is_file():
            raise DataError(
                f"digits: {name!r} is not available: its file {str(path)!r} does not exist (it is "
                f"not part of the staged data; see the data root's MANIFEST.md). Obtain the data "
                f"from {where} and convert it to {fname!r} in the data root (x_train/x_test uint8 "
                f"NHWC, y_train/y_test int64 in 0..9)"
            )
        # a user's own conversion: no published checksum to check it against
        log.warning("digits: %s has no known checksum; loading it unverified", path)
    else:
        path = require_file(data_dir(root), fname, CHECKSUMS[fname], SOURCES.get(fname, where))
    z = read_npz(path)
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z]
    if missing:
        raise DataError(f"digits: {str(path)!r} lacks the arrays {', '.join(missing)}")
    return z


@DATASETS.register("digits", DigitsConfig)
def digits(root=None, source: str = "mnist", target: str = "mnist_m", size: int = 28,
           channels: int = 3, max_source: int | None = None, max_target: int | None = None,
           max_test: int | None = None, disjoint: bool = False, seed: int = 0,
           standardize: str = "none", binarize: bool = False) -> DATask:
    """Digits: MNIST, MNIST-M, USPS as source and target (the DANN paper's digit protocol).

    Protocol: the source is the source domain's training split (labelled), the target is the
    target domain's training split (its labels dropped); ``eval`` holds ``source_test`` and
    ``target_test``, the two domains' test splits.

    Common shape: every domain becomes float32 NCHW in [0, 1] at ``size`` x ``size`` with
    ``channels`` channels. As in the DANN paper, MNIST-M (32 x 32 RGB) is resized to 28 x 28 and
    MNIST's grey channel is repeated 3 times; USPS (16 x 16 grey) is upsampled the same way.
    Resizing is bilinear with antialiasing; see :func:`to_images`. The paper's mean subtraction
    is not done here: inputs stay in [0, 1] and the model subtracts the mean (``dann_mnist``'s
    ``mean``).

    MNIST-M training image i was made from MNIST ``x_train[i]`` (and test image i from
    ``x_test[i]``; MANIFEST.md), so with the full splits, the paper's protocol, the first 20,000
    MNIST training digits are also the staged MNIST-M training digits (20,000 of the original
    59,001) under colour patches. ``disjoint=True`` removes those digits from MNIST's training
    split when the pair is MNIST and MNIST-M.

    Subsampling (``max_*``) draws without replacement with a generator seeded by ``seed``, one
    stream per split; the kept indices into each split are in ``task.meta["indices"]``.

    Shape:
        source.x: (N_s, channels, size, size), source.y: (N_s,) in 0..9; target.x:
        (N_t, channels, size, size); eval splits likewise, with labels.
    """
    cfg = DigitsConfig(source, target, size, channels, max_source, max_target, max_test,
                       disjoint, seed, standardize, binarize)
    files = {"source": _domain_file(root, cfg.source), "target": _domain_file(root, cfg.target)}
    pair = {cfg.source, cfg.target}
    splits = {  # name -> (domain, split, cap, stream)
        "source": ("source", "train", cfg.max_source, 0),
        "target": ("target", "train", cfg.max_target, 1),
        "source_test": ("source", "test", cfg.max_test, 2),
        "target_test": ("target", "test", cfg.max_test, 3),
    }
    made: dict[str, DomainData] = {}
    indices: dict[str, list[int] | None] = {}
    for key, (dom, split, cap, stream) in splits.items():
        z = files[dom]
        x, y = z[f"x_{split}"], z[f"y_{split}"]
        base = np.arange(len(x))
        if (cfg.disjoint and split == "train" and pair == {"mnist", "mnist_m"}
                and getattr(cfg, dom) == "mnist"):
            base = base[len(files["target" if dom == "source" else "source"]["x_train"]):]
        sub = _subsample(len(base), cap, cfg.seed, stream)
        idx = base if sub is None else base[sub]
        whole = len(idx) == len(x)
        xi, yi = (x, y) if whole else (x[idx], y[idx])
        if cfg.binarize and getattr(cfg, dom) == "mnist":
            xi = np.where(xi > 0, np.uint8(255), np.uint8(0))
        indices[key] = None if whole else idx.tolist()
        made[key] = DomainData(to_images(xi, cfg.size, cfg.channels),
                               torch.tensor(yi, dtype=torch.int64), key)
    stats = {}
    if cfg.standardize == "per_domain":
        for dom in ("source", "target"):
            x = made[dom].x
            mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True).clamp_min(1e-6)
            stats[dom] = (mean.flatten().tolist(), std.flatten().tolist())
            for key in (dom, f"{dom}_test"):
                made[key] = DomainData((made[key].x - mean) / std, made[key].y, key)
    elif cfg.standardize == "pooled_mean":
        mean = (made["source"].x.mean((0, 2, 3), keepdim=True)
                + made["target"].x.mean((0, 2, 3), keepdim=True)) / 2
        stats["pooled_mean"] = mean.flatten().tolist()
        for key in made:
            made[key] = DomainData(made[key].x - mean, made[key].y, key)
    return DATask(
        source=made["source"],
        target=made["target"],
        num_classes=10,
        eval={"source_test": made["source_test"], "target_test": made["target_test"]},
        name=f"{cfg.source}->{cfg.target}",
        meta={"source": cfg.source, "target": cfg.target, "size": cfg.size,
              "channels": cfg.channels, "indices": indices, "standardize": stats},
    )
