"""Office-Caltech-10 tasks on 800-d bag-of-visual-words features (fully transductive).

Data: K. Saenko, B. Kulis, M. Fritz, T. Darrell, "Adapting Visual Category Models to New
Domains", ECCV 2010; B. Gong, Y. Shi, F. Sha, K. Grauman, "Geodesic Flow Kernel for
Unsupervised Domain Adaptation", CVPR 2012 (the 10 shared classes and four domains). The staged
features are MATLAB ``bagOfFeatures`` vectors, not Gong et al.'s SURF features: report results
as "Office-Caltech-10, BoVW-800 features". Provenance and checksum: the data root's
``MANIFEST.md``.

Caveat, measured on the staged file: the features look like four separate vocabularies, one per
domain, not one shared vocabulary. The per-feature word frequencies of two domains correlate at
-0.05 to 0.02, and so do the class-mean vectors of the same class in two domains. A logistic
regression trained on one domain scores 0.12 to 0.29 on another (chance about 0.1 to 0.15),
while 5-fold cross-validation inside a domain gives 0.55 to 0.78. Feature i does not seem to
mean the same visual word in every domain, so cross-domain results on this file say little
about domain adaptation. The loader logs a warning once per process.

**For cross-domain work use** ``office_caltech_surf`` (:mod:`gradversary.data.office_caltech_surf`):
the same images, in the same order, with Gong et al.'s SURF features over one shared codebook.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .digits import data_dir, domain_name, read_npz
from .registry import DATASETS
from .root import require_file
from .task import DATask, DomainData

__all__ = ["FILE", "SHA256", "SOURCE", "DOMAINS", "ALIASES", "OfficeCaltechConfig", "office_caltech",
           "normalize_features", "read_domain", "domain_pair_task",
           "nearest_class_mean_check", "vocabulary_check"]

FILE = "office_caltech10_bovw800.npz"
#: sha256 of the staged file (from the data root's MANIFEST.md).
SHA256 = "f9bdb699dee71fbf949aa490ab8843732b69fc40814afba8aaadcf2af99ac96d"
#: where it comes from (from the MANIFEST), quoted in errors.
SOURCE = ("github.com/BUPT-GAMMA/IJCAI2020-DCKM @ ccd014fb3fea40cf0f77050d32491fd67b7499b7, "
          "data/{amazon,caltech,dslr,webcam}.mat (keys X_train, label), converted to one .npz "
          "as described in the data root's MANIFEST.md")

DOMAINS = ("amazon", "caltech", "dslr", "webcam")
ALIASES = {"a": "amazon", "c": "caltech", "d": "dslr", "w": "webcam"}
NUM_CLASSES = 10
_log = logging.getLogger(__name__)
_warned = False


@dataclass
class OfficeCaltechConfig:
    """Options of the ``office_caltech`` dataset.

    Args:
        source: labelled source domain: ``amazon``, ``caltech``, ``dslr``, ``webcam`` (or
            ``A``, ``C``, ``D``, ``W``).
        target: unlabelled target domain, from the same names.
        normalize: ``zscore`` (per feature, mean and std over source and target together),
            ``l1`` (word presence (x + 1) / 2 divided by its sum, a histogram over the visual
            words an image contains) or ``none`` (the file's values).
    """

    source: str = "amazon"
    target: str = "webcam"
    normalize: Literal["zscore", "l1", "none"] = "zscore"

    def __post_init__(self) -> None:
        self.source = domain_name(self.source, DOMAINS, ALIASES, "office_caltech.source")
        self.target = domain_name(self.target, DOMAINS, ALIASES, "office_caltech.target")
        if self.normalize not in ("zscore", "l1", "none"):
            raise ConfigError(f"office_caltech.normalize: choose zscore, l1 or none, got "
                              f"{self.normalize!r}")


def normalize_features(xs: Tensor, xt: Tensor, how: str) -> tuple[Tensor, Tensor]:
    """Normalise source and target features alike.

    ``zscore`` uses statistics of the source and target samples pooled (the target is
    unlabelled training data in the transductive protocol; no label is used); a feature that
    is constant there is only centred. ``l1`` maps values in [-1, 1] to [0, 1] and divides each
    row by its sum (an all-zero row stays zero).

    Shape:
        xs: (N_s, F), xt: (N_t, F) -> the same shapes.
    """
    if how == "zscore":
        both = torch.cat([xs, xt]).double()
        mean, std = both.mean(0), both.std(0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return ((xs - mean) / std).float(), ((xt - mean) / std).float()
    if how == "l1":
        def l1(x: Tensor) -> Tensor:
            p = (x + 1) / 2
            return p / p.sum(1, keepdim=True).clamp_min(1e-12)
        return l1(xs), l1(xt)
    return xs, xt


def read_domain(z: dict[str, np.ndarray], name: str, path: str,
                what: str = "office_caltech") -> tuple[Tensor, Tensor]:
    """Domain ``name``'s arrays ``x_<name>``, ``y_<name>`` of an Office-Caltech ``.npz``
    (labels 1..10 are shifted to 0..9); ``what`` names the dataset in errors.

    Shape:
        -> x (N, F) float32, y (N,) int64 in 0..9.
    """
    xk, yk = f"x_{name}", f"y_{name}"
    if xk not in z or yk not in z:
        raise DataError(f"{what}: {path!r} lacks {xk!r} or {yk!r} (has {sorted(z)})")
    x, y = z[xk], z[yk].astype(np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise DataError(f"{what}: {path!r}: {xk} {x.shape} and {yk} {y.shape} do not "
                        f"form (N, F) features with (N,) labels")
    lo, hi = int(y.min()), int(y.max())
    if (lo, hi) == (1, NUM_CLASSES):  # MATLAB-style 1..10
        y = y - 1
    elif lo < 0 or hi >= NUM_CLASSES:
        raise DataError(f"{what}: {path!r}: labels of {name} run from {lo} to {hi}; "
                        f"expected 0..9 (or 1..10)")
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


@DATASETS.register("office_caltech", OfficeCaltechConfig)
def office_caltech(root=None, source: str = "amazon", target: str = "webcam",
                   normalize: str = "zscore") -> DATask:
    """Office-Caltech-10 (BoVW-800): 10 object classes across amazon, caltech, dslr, webcam.

    Fully transductive protocol (as in the DANN paper's Office experiments): the source is all
    of the source domain (labelled), the target all of the target domain (labels dropped);
    ``eval`` holds ``target_test`` (all of the target, with labels: the reported number) and
    ``source_test`` (all of the source, i.e. training accuracy). Domain sizes: amazon 958,
    caltech 1,123, dslr 157, webcam 295. The features in the file are binary, -1 or +1 (a
    visual word absent or present). Read the module's caveat before reporting results: the
    domains do not appear to share one vocabulary.

    Shape:
        source.x: (N_s, 800), source.y: (N_s,) in 0..9; target.x: (N_t, 800); eval splits
        likewise, with labels.
    """
    global _warned
    cfg = OfficeCaltechConfig(source, target, normalize)
    path = require_file(data_dir(root), FILE, SHA256, SOURCE)
    z = read_npz(path)
    xs, ys = read_domain(z, cfg.source, str(path))
    xt, yt = read_domain(z, cfg.target, str(path))
    xs, xt = normalize_features(xs, xt, cfg.normalize)
    if not _warned and cfg.source != cfg.target:
        _warned = True
        _log.warning("office_caltech: the staged BoVW-800 features do not appear to share one "
                     "visual vocabulary across domains (see the gradversary.data.office_caltech "
                     "docstring); cross-domain accuracies on this file are near chance. Use the "
                     "'office_caltech_surf' dataset (the standard SURF features, one shared "
                     "codebook) instead")
    return domain_pair_task(xs, ys, xt, yt, cfg.source, cfg.target, cfg.normalize)


def domain_pair_task(xs: Tensor, ys: Tensor, xt: Tensor, yt: Tensor, source: str, target: str,
                     normalize: str) -> DATask:
    """An Office-Caltech task of two domains: each domain's rows serve for training and, whole,
    as its test split (the standard protocol: every target image is scored).

    Shape:
        xs: (N_s, F), ys: (N_s,), xt: (N_t, F), yt: (N_t,).
    """
    return DATask(
        source=DomainData(xs, ys, "source"),
        target=DomainData(xt, yt, "target"),
        num_classes=NUM_CLASSES,
        eval={"source_test": DomainData(xs, ys, "source_test"),
              "target_test": DomainData(xt, yt, "target_test")},
        name=f"{source}->{target}",
        meta={"source": source, "target": target, "normalize": normalize},
    )


def _ncm_predict(x: Tensor, y: Tensor, xq: Tensor, num_classes: int) -> Tensor:
    """Nearest class mean by cosine: class means of (x, y), the closest one for each row of xq."""
    means = torch.stack([x[y == k].mean(0) if (y == k).any() else torch.zeros(x.shape[1], dtype=x.dtype)
                         for k in range(num_classes)])
    means = means / means.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (xq @ means.T).argmax(1)


def nearest_class_mean_check(domains: dict[str, tuple[Tensor, Tensor]], folds: int = 5,
                             seed: int = 0) -> dict:
    """Whether features mean the same thing in every domain: a nearest-class-mean classifier
    (cosine to the class means, no training) scored inside each domain (``folds``-fold) and
    from each domain to every other. With a shared feature space the cross-domain accuracy
    falls somewhat below the in-domain one; near chance while in-domain is high, feature i does
    not mean the same thing across domains.

    Args:
        domains: name -> (x, y), x (N, F) float, y (N,) int in 0..C-1.

    Returns:
        ``{"in_domain": {name: acc}, "cross_domain": {"a->b": acc}, "chance": max class share
        of the targets, averaged}``.
    """
    if len(domains) < 2:
        raise ValueError("nearest_class_mean_check needs at least two domains")
    c = 1 + max(int(y.max()) for _, y in domains.values())
    g = torch.Generator().manual_seed(seed)
    out: dict = {"in_domain": {}, "cross_domain": {}}
    for name, (x, y) in domains.items():
        x = x.double()
        fold = torch.randperm(len(x), generator=g) % folds
        correct = 0
        for i in range(folds):
            te = fold == i
            correct += int((_ncm_predict(x[~te], y[~te], x[te], c) == y[te]).sum())
        out["in_domain"][name] = correct / len(x)
    chance = []
    for a, (xa, ya) in domains.items():
        for b, (xb, yb) in domains.items():
            if a != b:
                pred = _ncm_predict(xa.double(), ya, xb.double(), c)
                out["cross_domain"][f"{a}->{b}"] = float((pred == yb).double().mean())
                chance.append(float(torch.bincount(yb, minlength=c).max()) / len(yb))
    out["chance"] = sum(chance) / len(chance)
    return out


def vocabulary_check(root=None) -> dict:
    """:func:`nearest_class_mean_check` on the staged file's four domains (raw +-1 features)."""
    path = require_file(data_dir(root), FILE, SHA256, SOURCE)
    z = read_npz(path)
    return nearest_class_mean_check({d: read_domain(z, d, str(path)) for d in DOMAINS})
