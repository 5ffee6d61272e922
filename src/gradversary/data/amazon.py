"""Amazon reviews sentiment tasks: the DANN paper's text benchmark (raw 5,000-d features).

Data: J. Blitzer, M. Dredze, F. Pereira, "Biographies, Bollywood, Boom-boxes and Blenders:
Domain Adaptation for Sentiment Classification", ACL 2007; features as preprocessed by
M. Chen, Z. Xu, K. Weinberger, F. Sha, "Marginalized Denoising Autoencoders for Domain
Adaptation", ICML 2012, in the files of Ganin et al., "Domain-Adversarial Training of Neural
Networks", JMLR 17(59), 2016 (arXiv:1505.07818), section 5.1.3. Provenance and checksums: the
data root's ``MANIFEST.md``.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .digits import data_dir, domain_name
from .registry import DATASETS
from .root import require_file
from .task import DATask, DomainData

__all__ = ["CHECKSUMS", "SOURCE", "N_FEATURES", "AmazonConfig", "amazon", "parse_svmlight"]

N_FEATURES = 5000
DOMAINS = ("books", "dvd", "electronics", "kitchen")
_ALIASES = {"b": "books", "d": "dvd", "e": "electronics", "k": "kitchen"}

#: sha256 of each staged ``.svmlight.gz`` file (from the data root's MANIFEST.md).
CHECKSUMS: dict[str, str] = {
    "amazon_reviews/books_train.svmlight.gz":
        "25cd6d7b522c255c3f6859a0f6a9d053b07886a3db7a992dceb77e02f9198c39",
    "amazon_reviews/books_test.svmlight.gz":
        "4d0b03e746d95b58e34aca746ee851365387ab741b8290fd33710b802b416e0a",
    "amazon_reviews/dvd_train.svmlight.gz":
        "237ae630b3f5707cb3cbc799af52ff07745ea910b07fcc39749ac143eacd9f70",
    "amazon_reviews/dvd_test.svmlight.gz":
        "56b3af3916d822792e8c64c0a16605c244af329d4992361497bf66e4f54f53d7",
    "amazon_reviews/electronics_train.svmlight.gz":
        "295b0e63561ad78542cfc3a6e0c793ecc56c7796462e46e43a522ccc05fe53f3",
    "amazon_reviews/electronics_test.svmlight.gz":
        "f85a7f4c6da481948d6d50f621c0e5f58462de3f23a3862e46a86f7282349bb3",
    "amazon_reviews/kitchen_train.svmlight.gz":
        "faec2117228506193b3569e7220d5a238280ddb2ad00e8ba91c7fde326d809d8",
    "amazon_reviews/kitchen_test.svmlight.gz":
        "a019355488b96dc044f56d418b70f50496ef435b7f77f6d5b435dd7d1e37e0ea",
}

#: where the files come from (from the MANIFEST), quoted in errors.
SOURCE = ("github.com/GRAAL-Research/domain_adversarial_neural_network @ "
          "74eec5e0ae06bd6614bce048abba492c16a633e3, data/<domain>_<split>.svmlight "
          "(gzip -9, mtime 0; see the data root's MANIFEST.md)")


@dataclass
class AmazonConfig:
    """Options of the ``amazon`` dataset.

    Args:
        source: labelled source domain: ``books``, ``dvd``, ``electronics``, ``kitchen``
            (or ``B``, ``D``, ``E``, ``K``).
        target: unlabelled target domain, from the same names.
        features: ``raw``, the 5,000-d unigram/bigram counts, or ``msda``, the paper's
            30,000-d representation: the counts and 5 layers of marginalized stacked denoising
            autoencoders (:mod:`gradversary.data.msda`) fitted on the source and target
            ``_train`` inputs together (cached on disk; minutes on 2 cores the first time).
        msda_noise: mSDA's corruption probability.
        msda_layers: mSDA's number of layers.
        transform: ``none`` (raw counts, the paper's input), ``binary`` (1 where a count is
            positive) or ``log1p`` (log(1 + count)).
    """

    source: str = "books"
    target: str = "dvd"
    features: Literal["raw", "msda"] = "raw"
    transform: Literal["none", "binary", "log1p"] = "none"
    msda_noise: float = 0.5
    msda_layers: int = 5

    def __post_init__(self) -> None:
        self.source = domain_name(self.source, DOMAINS, _ALIASES, "amazon.source")
        self.target = domain_name(self.target, DOMAINS, _ALIASES, "amazon.target")
        if self.features not in ("raw", "msda"):
            raise ConfigError(f"amazon.features: choose raw or msda, got {self.features!r}")
        if self.transform not in ("none", "binary", "log1p"):
            raise ConfigError(f"amazon.transform: choose none, binary or log1p, got "
                              f"{self.transform!r}")


def parse_svmlight(text: str, n_features: int = N_FEATURES,
                   name: str = "<svmlight>") -> tuple[np.ndarray, np.ndarray]:
    """Dense features and 0/1 labels from svmlight text (labels -1/+1, 0-based indices).

    Each non-empty line is ``label index:value index:value ...`` with strictly increasing
    indices; ``#`` starts a comment.

    Shape:
        returns x: (N, n_features) float32 and y: (N,) int64 in {0, 1}.

    Raises:
        DataError: naming ``name`` and the line, for a malformed line, a label other than
            -1/+1 or an index outside [0, n_features).

    Example:
        >>> x, y = parse_svmlight("1 0:2 3:1\\n-1 1:5\\n", n_features=4)
        >>> x.tolist(), y.tolist()
        ([[2.0, 0.0, 0.0, 1.0], [0.0, 5.0, 0.0, 0.0]], [1, 0])
    """
    labels: list[float] = []
    counts: list[int] = []
    bodies: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        head, _, body = line.partition(" ")
        pairs = body.split()
        try:
            label = float(head)
        except ValueError:
            raise DataError(f"{name}, line {lineno}: the label {head!r} is not a number") from None
        if label not in (-1.0, 1.0):
            raise DataError(f"{name}, line {lineno}: labels must be -1 or +1, got {head!r}")
        if body.count(":") != len(pairs):
            raise DataError(f"{name}, line {lineno}: expected index:value pairs after the label")
        labels.append(label)
        counts.append(len(pairs))
        bodies.append(body)
    if not labels:
        raise DataError(f"{name}: no examples")
    try:
        flat = np.array(" ".join(bodies).replace(":", " ").split(), dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{name}: a feature index or value is not a number ({e})") from None
    idx, val = flat[0::2], flat[1::2]
    rows = np.repeat(np.arange(len(labels)), counts)
    if idx.size and (idx.min() < 0 or idx.max() >= n_features or np.any(idx != np.floor(idx))):
        raise DataError(f"{name}: feature indices must be integers in [0, {n_features}), found "
                        f"{idx.min():g} to {idx.max():g}")
    same_row = rows[1:] == rows[:-1]
    if np.any(np.diff(idx)[same_row] <= 0):
        raise DataError(f"{name}: feature indices must increase strictly within each line")
    x = np.zeros((len(labels), n_features), dtype=np.float32)
    x[rows, idx.astype(np.int64)] = val
    y = (np.asarray(labels) > 0).astype(np.int64)
    return x, y


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with gzip.open(path, "rb") as f:
            text = f.read().decode("ascii")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path!r} as gzip-compressed svmlight text: {e}") from None
    x, y = parse_svmlight(text, N_FEATURES, path)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _load(root: Path, domain: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    rel = f"amazon_reviews/{domain}_{split}.svmlight.gz"
    path = require_file(root, rel, CHECKSUMS[rel], SOURCE)
    st = path.stat()
    x, y = _read_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)
    return torch.tensor(x), torch.tensor(y)


def _transform(x: torch.Tensor, how: str) -> torch.Tensor:
    if how == "binary":
        return (x > 0).float()
    if how == "log1p":
        return torch.log1p(x)
    return x


@DATASETS.register("amazon", AmazonConfig)
def amazon(root=None, source: str = "books", target: str = "dvd", features: str = "raw",
           transform: str = "none", msda_noise: float = 0.5, msda_layers: int = 5) -> DATask:
    """Amazon reviews: sentiment (0 negative, 1 positive) across books, dvd, electronics, kitchen.

    Protocol (the DANN paper's): the source is the source domain's ``_train`` file (2,000
    labelled, balanced reviews), the target is the target domain's ``_train`` file (2,000
    reviews, labels dropped); ``eval`` holds ``target_test`` (the target's ``_test`` file, the
    paper's reported number) and ``source_test`` (the source's ``_test`` file). Labels -1/+1
    become 0/1. Inputs are dense float32 raw counts unless ``transform`` says otherwise.

    Shape:
        source.x: (2000, 5000), source.y: (2000,) in {0, 1}; target.x: (2000, 5000); eval
        splits: (N_test, 5000) with N_test 4,465 (books), 3,586 (dvd), 5,681 (electronics),
        5,945 (kitchen).
    """
    cfg = AmazonConfig(source, target, features, transform, msda_noise, msda_layers)
    base = data_dir(root)
    splits = {"source": (cfg.source, "train"), "target": (cfg.target, "train"),
              "source_test": (cfg.source, "test"), "target_test": (cfg.target, "test")}
    made = {}
    for key, (dom, split) in splits.items():
        x, y = _load(base, dom, split)
        made[key] = DomainData(_transform(x, cfg.transform), y, key)
    if cfg.features == "msda":
        from .msda import msda_cached, msda_transform

        fit_x = torch.cat([made["source"].x, made["target"].x])
        key = f"amazon|{cfg.source}|{cfg.target}|{cfg.transform}"
        ws = msda_cached(fit_x, key, cfg.msda_noise, cfg.msda_layers)
        for k, d in made.items():
            made[k] = DomainData(msda_transform(d.x, ws), d.y, k)
    return DATask(
        source=made["source"],
        target=made["target"],
        num_classes=2,
        eval={"source_test": made["source_test"], "target_test": made["target_test"]},
        name=f"{cfg.source}->{cfg.target}",
        meta={"source": cfg.source, "target": cfg.target, "features": cfg.features,
              "transform": cfg.transform, "msda": (cfg.msda_noise, cfg.msda_layers)},
    )
