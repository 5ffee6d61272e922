"""Office-Caltech-10 with the standard 800-d SURF features (fully transductive).

Data: K. Saenko, B. Kulis, M. Fritz, T. Darrell, "Adapting Visual Category Models to New
Domains", ECCV 2010; features: B. Gong, Y. Shi, F. Sha, K. Grauman, "Geodesic Flow Kernel for
Unsupervised Domain Adaptation", CVPR 2012 (the ``*_SURF_L10.mat`` files: SURF descriptors
quantised into 800 bins with **one codebook for all four domains**). The file stores the raw
histogram counts; provenance and checksum: the data root's ``MANIFEST.md``.

Protocol of the GFK / JDA papers (``normalize: l1_zscore``, the default): each row is divided by
its sum (a histogram), then each feature is z-scored **within its own domain** with the
population standard deviation (MATLAB ``zscore(x, 1)``). The target's statistics use no label.
With it, source-only 1-NN reproduces the published baseline of Long et al. (JDA, ICCV 2013) on
all 12 pairs (mean 31.37; :data:`PUBLISHED_1NN`, :func:`nearest_neighbour_accuracy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..errors import ConfigError
from .digits import data_dir, domain_name, read_npz
from .office_caltech import ALIASES, DOMAINS, domain_pair_task, read_domain
from .registry import DATASETS
from .root import require_file
from .task import DATask

__all__ = ["FILE", "SHA256", "SOURCE", "PUBLISHED_1NN", "OfficeCaltechSurfConfig", "office_caltech_surf",
           "gfk_normalize", "nearest_neighbour_accuracy", "load_domain"]

FILE = "office_caltech10_surf.npz"
#: sha256 of the staged file (from the data root's MANIFEST.md).
SHA256 = "49329d2f619eedb4e38088330a9980e95acf393cf4e0f6e98b8bd9c7f3230e12"
SOURCE = ("github.com/VisionLearningGroup/CORAL @ 339844fa3336b74a51a170b6c2848056931c0311, "
          "code/CORAL_Source_Code.zip, data/*_SURF_L10.mat (keys fts, labels), converted to one "
          ".npz as described in the data root's MANIFEST.md")
#: Source-only 1-NN target accuracy (%) per pair "S->T" (domain initials), from Long et al.,
#: "Transfer Feature Learning with Joint Distribution Adaptation", ICCV 2013, Table (NN column);
#: mean 31.37.
PUBLISHED_1NN = {"C->A": 23.70, "C->W": 25.76, "C->D": 25.48, "A->C": 26.00, "A->W": 29.83,
                 "A->D": 25.48, "W->C": 19.86, "W->A": 22.96, "W->D": 59.24, "D->C": 26.27,
                 "D->A": 28.50, "D->W": 63.39}

_NORMALIZE = ("l1_zscore", "l1_zscore_pooled", "l1", "none")


@dataclass
class OfficeCaltechSurfConfig:
    """Options of the ``office_caltech_surf`` dataset.

    Args:
        source: labelled source domain: ``amazon``, ``caltech``, ``dslr``, ``webcam`` (or
            ``A``, ``C``, ``D``, ``W``).
        target: unlabelled target domain, from the same names.
        normalize: ``l1_zscore`` (the GFK/JDA protocol: row sums to 1, then z-score per
            feature within each domain), ``l1_zscore_pooled`` (row sums to 1, then z-score with
            the statistics of source and target pooled: the domains' difference in mean and
            scale is kept), ``l1`` (row sums to 1 only) or ``none`` (raw counts).
    """

    source: str = "amazon"
    target: str = "webcam"
    normalize: Literal["l1_zscore", "l1_zscore_pooled", "l1", "none"] = "l1_zscore"

    def __post_init__(self) -> None:
        self.source = domain_name(self.source, DOMAINS, ALIASES, "office_caltech_surf.source")
        self.target = domain_name(self.target, DOMAINS, ALIASES, "office_caltech_surf.target")
        if self.normalize not in _NORMALIZE:
            raise ConfigError(f"office_caltech_surf.normalize: choose one of {', '.join(_NORMALIZE)}, "
                              f"got {self.normalize!r}")


def gfk_normalize(x: Tensor, how: str = "l1_zscore") -> Tensor:
    """Counts normalised as ``how`` says (computed in float64), with statistics over the rows
    of ``x`` (one domain, for the protocol).

    ``l1`` divides each row by its sum (an all-zero row stays zero); ``l1_zscore`` then
    subtracts each feature's mean and divides by its population std over the rows of ``x``
    (a constant feature is only centred).

    Shape:
        x: (N, F) -> (N, F) float32.

    Example:
        >>> gfk_normalize(torch.tensor([[1., 3.], [3., 1.]]))
        tensor([[-1.,  1.],
                [ 1., -1.]])
    """
    if how not in ("l1_zscore", "l1", "none"):
        raise ValueError(f"normalize: choose l1_zscore, l1 or none, got {how!r}")
    x = x.double()
    if how != "none":
        x = x / x.sum(1, keepdim=True).clamp_min(1e-300)
    if how == "l1_zscore":
        std = x.std(0, correction=0)
        x = (x - x.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))
    return x.float()


def load_domain(root, domain: str, normalize: str = "l1_zscore") -> tuple[Tensor, Tensor]:
    """One domain of the staged file, normalised. Shape: -> x (N, 800) float32, y (N,) int64."""
    name = domain_name(domain, DOMAINS, ALIASES, "office_caltech_surf domain")
    path = require_file(data_dir(root), FILE, SHA256, SOURCE)
    x, y = read_domain(read_npz(path), name, str(path), what="office_caltech_surf")
    return gfk_normalize(x, normalize), y


@DATASETS.register("office_caltech_surf", OfficeCaltechSurfConfig)
def office_caltech_surf(root=None, source: str = "amazon", target: str = "webcam",
                        normalize: str = "l1_zscore") -> DATask:
    """Office-Caltech-10 (SURF-800, Gong et al.): 10 classes across amazon, caltech, dslr, webcam.

    Fully transductive: the source is all of the source domain (labelled), the target all of
    the target domain (labels dropped); ``eval`` holds ``target_test`` (all of the target, with
    labels: the reported number) and ``source_test`` (all of the source, i.e. training
    accuracy). Domain sizes: amazon 958, caltech 1,123, dslr 157, webcam 295.

    Shape:
        source.x: (N_s, 800), source.y: (N_s,) in 0..9; target.x: (N_t, 800); eval splits
        likewise, with labels.
    """
    cfg = OfficeCaltechSurfConfig(source, target, normalize)
    pooled = cfg.normalize == "l1_zscore_pooled"
    xs, ys = load_domain(root, cfg.source, "l1" if pooled else cfg.normalize)
    xt, yt = load_domain(root, cfg.target, "l1" if pooled else cfg.normalize)
    if pooled:  # one z-score for both domains (no label used)
        both = gfk_normalize(torch.cat([xs, xt]), "l1_zscore")  # rows already sum to 1
        xs, xt = both[:len(xs)], both[len(xs):]
    return domain_pair_task(xs, ys, xt, yt, cfg.source, cfg.target, cfg.normalize)


def nearest_neighbour_accuracy(xs: Tensor, ys: Tensor, xt: Tensor, yt: Tensor) -> float:
    """Target accuracy of the source-only 1-nearest-neighbour classifier (Euclidean, float64;
    a tie goes to the first source row).

    Shape:
        xs: (N_s, F), ys: (N_s,), xt: (N_t, F), yt: (N_t,).

    Example:
        >>> nearest_neighbour_accuracy(torch.tensor([[0.], [10.]]), torch.tensor([0, 1]),
        ...                            torch.tensor([[1.], [9.], [6.]]), torch.tensor([0, 1, 0]))
        0.6666666666666666
    """
    d = torch.cdist(xt.double(), xs.double())
    return float((ys[d.argmin(1)] == yt).double().mean())
