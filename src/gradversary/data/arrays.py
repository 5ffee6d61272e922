"""Your own data: a domain adaptation task from one ``.npz`` file."""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .registry import DATASETS
from .task import DATask, DomainData

__all__ = ["ArraysConfig", "arrays"]

_KEYS = "x_source, y_source, x_target, and optionally y_target, x_source_test, y_source_test, x_target_test, y_target_test"


@dataclass
class ArraysConfig:
    """Options of the ``arrays`` dataset.

    Args:
        path: an ``.npz`` with arrays ``x_source`` (N, *), ``y_source`` (N,), ``x_target``
            (M, *) and optionally ``y_target`` (M,) and ``{x,y}_{source,target}_test``.
            Integer images (uint8) are scaled to [0, 1]; NHWC images are not reordered.
        num_classes: K (default: 1 + the largest source label, with a warning when some
            class id below it has no source example).
    """

    path: str = ""
    num_classes: int | None = None


def _load(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"arrays: file {str(path)!r} does not exist (expected keys: {_KEYS})")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"arrays: cannot read {str(path)!r} as .npz: {e}") from None


def _x(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def _y(a: np.ndarray | None) -> torch.Tensor | None:
    if a is None:
        return None
    if not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and np.all(np.mod(a, 1) == 0):
            a = a.astype(np.int64)
        else:
            raise DataError(f"arrays: labels must be integers, got dtype {a.dtype}")
    return torch.from_numpy(a.astype(np.int64))


def _warn_gaps(ys: torch.Tensor, k: int) -> None:
    """Warn when K, inferred as 1 + the largest label, counts class ids without examples (a
    stray label widens the classifier head silently otherwise)."""
    present = set(torch.unique(ys[ys >= 0]).tolist())
    missing = [c for c in range(k) if c not in present]
    if not missing:
        return
    shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
    warnings.warn(
        f"arrays: data.num_classes is not set, so the model gets {k} classes (1 + the largest "
        f"source label, {k - 1}), but only {len(present)} of the class ids 0..{k - 1} have source "
        f"examples (none of {shown}); set data.num_classes, or check the labels",
        UserWarning, stacklevel=3)


@DATASETS.register("arrays", ArraysConfig)
def arrays(root=None, path: str = "", num_classes: int | None = None) -> DATask:
    """A task from your own ``.npz`` (x_source, y_source, x_target, optional test splits)."""
    if not path:
        raise DataError("arrays: set data.path to an .npz file")
    z = _load(Path(path))
    missing = [k for k in ("x_source", "y_source", "x_target") if k not in z]
    if missing:
        raise DataError(f"arrays: {path!r} lacks {', '.join(missing)} (expected keys: {_KEYS})")
    ys = _y(z["y_source"])
    k = num_classes if num_classes is not None else (int(ys.max()) + 1 if ys.numel() else 2)
    if num_classes is None:
        _warn_gaps(ys, k)
    evals = {}
    for dom in ("source", "target"):
        xk, yk = f"x_{dom}_test", f"y_{dom}_test"
        if xk in z and yk in z:
            evals[f"{dom}_test"] = DomainData(_x(z[xk]), _y(z[yk]), f"{dom}_test")
    if "target_test" not in evals and "y_target" in z:
        # transductive protocol: report on the (unlabelled during training) target sample
        evals["target_test"] = DomainData(_x(z["x_target"]), _y(z["y_target"]), "target_test")
    return DATask(
        source=DomainData(_x(z["x_source"]), ys, "source"),
        target=DomainData(_x(z["x_target"]), None, "target"),
        num_classes=max(k, 2),
        eval=evals,
        name=Path(path).stem,
    )
