"""Metrics as JSON lines: one record per log or evaluation point."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..io import read_metrics

__all__ = ["MetricsLog"]


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf; keep them readable
    return v


class MetricsLog:
    """Append-only JSONL file of records ``{"kind": "train"|"eval", "step": ..., ...}``.

    Args:
        path: the ``metrics.jsonl`` file.
        enabled: ``False`` on non-zero DDP ranks: nothing is written.
    """

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records after ``step`` (used on resume, so a resumed run's log matches an
        uninterrupted one)."""
        if not self.enabled or not self.path.exists():
            return
        keep = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, self.path)
