"""Atomic, code-free checkpoints.

A checkpoint is a ``torch.save`` of tensors and plain containers only, so it loads with
``torch.load(weights_only=True)``: opening one can never run code. Writes go to a temporary
file in the same folder, are flushed to disk and then renamed over the old file, so a crash
mid-write leaves the previous checkpoint intact; a process killed mid-write leaves only a
hidden ``.<name>.*.tmp`` file, which :func:`remove_stale_temporaries` clears when a run starts
or resumes.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io import default_mode

__all__ = ["save_checkpoint", "load_checkpoint", "remove_stale_temporaries"]

FORMAT = "gradversary-checkpoint-v1"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a missing or corrupt file raises
    :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not a gradversary checkpoint: "
                              f"{_reason(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a gradversary checkpoint")
    return state


def _reason(e: Exception) -> str:
    """Why torch could not load a file, without torch's advice to load it with code execution
    allowed (``weights_only=False``) or to allow-list its classes: a gradversary checkpoint
    never needs either, so a file that does is not one."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    if "WeightsUnpickler error:" in text:
        rest = text.split("WeightsUnpickler error:", 1)[1]
        detail = next((ln.strip() for ln in rest.splitlines() if ln.strip()), "")
        detail = re.split(r"\.\s+(?=Please|Check)", detail)[0].rstrip(".")
        return ("it cannot be read as plain data"
                + (f" ({detail})" if detail else "") + "; gradversary reads checkpoints as plain "
                "data only, never as code")
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    keep = [s for s in sentences
            if not re.search(r"weights_only|trust|safe_globals|arbitrary code", s, re.IGNORECASE)]
    return " ".join(keep) or type(e).__name__


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the hidden ``.<name>.<random>.tmp`` files that an interrupted atomic write (of a
    checkpoint, or of a text file by :func:`gradversary.io.atomic_write_text`) left in
    ``folder``. Only call this while no other process writes to ``folder``. Returns the removed
    paths."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(".*.tmp"):
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
