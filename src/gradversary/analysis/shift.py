"""Distribution-shift monitoring: the proxy A-distance between two samples.

``gradversary shift A B`` where each of A and B is either

- an ``.npz`` file (the array under ``--key``, else ``x``, ``x_train``, ``x_source`` or the only
  array), or
- a registered dataset's part: ``NAME[(opt=value,...)]:PART`` with PART one of ``source``,
  ``target``, ``source_test``, ``target_test``, e.g. ``digits:target`` or
  ``amazon(source=books,target=kitchen):target``.

With ``--features RUN_DIR`` both samples are first mapped through that run's trained feature
extractor, to measure the shift a model actually sees.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..config import parse_value
from ..data.registry import create_task
from ..data.root import LazyRoot
from ..errors import DataError
from ..selection.pad import PADResult, proxy_a_distance

__all__ = ["load_sample", "measure_shift"]

_SPEC = re.compile(r"^(?P<name>\w+)(?:\((?P<opts>[^)]*)\))?(?::(?P<part>\w+))?$")
_KEYS = ("x", "x_train", "x_source")


def _from_npz(path: Path, key: str | None) -> Tensor:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            pick = key or next((k for k in _KEYS if k in names), names[0] if len(names) == 1 else None)
            if pick is None or pick not in names:
                raise DataError(f"{path}: say which array to use with --key (arrays: {', '.join(names)})")
            a = z[pick]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"cannot read {str(path)!r} as .npz: {e}") from None
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def load_sample(spec: str, data_root: str | None = None, key: str | None = None) -> Tensor:
    """The inputs (N, *) named by ``spec`` (an .npz path or ``NAME[(opts)]:PART``)."""
    if spec.endswith(".npz") or Path(spec).is_file():
        return _from_npz(Path(spec), key)
    m = _SPEC.match(spec)
    if not m:
        raise DataError(f"cannot parse {spec!r}: expected FILE.npz or NAME[(opt=value,...)]:PART")
    opts = {}
    for item in filter(None, (m["opts"] or "").split(",")):
        if "=" not in item:
            raise DataError(f"{spec!r}: option {item!r} is not key=value")
        k, v = item.split("=", 1)
        opts[k.strip()] = parse_value(v.strip())
    task = create_task(m["name"], root=LazyRoot(data_root), **opts)
    part = m["part"] or "target"
    parts = {"source": task.source, "target": task.target, **task.eval}
    if part not in parts:
        raise DataError(f"{spec!r}: unknown part {part!r}; choose from {', '.join(parts)}")
    return parts[part].x


def measure_shift(a: Tensor, b: Tensor, features=None, max_per_domain: int = 5000,
                  seed: int = 0, classifier: str = "linear") -> PADResult:
    """PAD between samples ``a`` and ``b``, optionally in the space of ``features``."""
    if features is not None:
        with torch.no_grad():
            a = torch.cat([features(a[i:i + 512]) for i in range(0, len(a), 512)])
            b = torch.cat([features(b[i:i + 512]) for i in range(0, len(b), 512)])
    if a.shape[1:] != b.shape[1:]:
        raise DataError(f"the samples differ in shape: {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}")
    return proxy_a_distance(a, b, seed=seed, max_per_domain=max_per_domain, classifier=classifier)
