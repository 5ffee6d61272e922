"""Loading a finished run's network as a frozen teacher for distillation methods.

A method that declares ``needs_teacher = True`` (see :mod:`gradversary.methods._distill_common`)
names a run directory in ``teacher_run``; the trainer calls :func:`load_teacher` and hands the
result to ``method.set_teacher``. The weights are those the run deploys: the selected
checkpoint (``best.pt``) when the run selected one, else the last one, with its averaged (EMA)
weights when it kept them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..config import read_yaml
from ..errors import CheckpointError, ConfigError
from ..models.base import create_model
from .checkpoint import load_checkpoint

__all__ = ["load_teacher", "teacher_fingerprint"]


def _deployed(run_dir: Path) -> Path:
    best = run_dir / "checkpoints" / "best.pt"
    return best if best.is_file() else run_dir / "checkpoints" / "last.pt"


def _deployed_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The network weights ``run_dir`` deploys (its averaged ones when it kept them), by name
    within the model."""
    state = load_checkpoint(_deployed(run_dir), map_location="cpu")
    weights = {name[len("model."):]: v for name, v in state["method"].items() if name.startswith("model.")}
    for name, v in state.get("ema", {}).items():
        if name.startswith("model."):
            weights[name[len("model."):]] = v
    return weights


def teacher_fingerprint(run_dir: str | Path | None) -> str | None:
    """The first 16 hex digits of the SHA-256 of the weights ``run_dir`` deploys (names,
    dtypes, shapes and values), or ``None`` when the run is not finished (no ``summary.json``)
    or has no checkpoint. A student records it when it starts, so that a teacher trained again
    to other weights (another config or seed in the same directory) is noticed on resume and by
    the benchmark's reuse of finished runs, while one trained again to the same weights (a
    deterministic run repeated on a new machine) keeps its students. The checkpoint's other
    contents (wall time, optimizer state) do not count."""
    if not run_dir or not (Path(run_dir) / "summary.json").is_file() or not _deployed(Path(run_dir)).is_file():
        return None
    h = hashlib.sha256()
    for name, v in sorted(_deployed_weights(Path(run_dir)).items()):
        v = v.detach().cpu().contiguous()
        h.update(f"{name}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def load_teacher(run_dir: str | Path | None, in_shape: Sequence[int], num_classes: int,
                 device: torch.device | str = "cpu") -> nn.Module:
    """The model of the finished run ``run_dir``, frozen, for inputs ``in_shape`` and K classes.

    Raises:
        ConfigError: no ``run_dir`` was given.
        CheckpointError: the folder is not a run directory, the run is unfinished (no
            ``summary.json``), or its model does not take ``in_shape`` inputs to
            ``num_classes`` logits.

    Shape:
        the teacher maps (N, *in_shape) to (N, num_classes).
    """
    if not run_dir:
        raise ConfigError("this method needs a teacher: set method.teacher_run to a finished "
                          "run directory (e.g. one made by `gradversary train`)")
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"teacher run {str(run_dir)!r} is not a run directory (no config.yaml)")
    if not (run_dir / "summary.json").is_file():
        raise CheckpointError(f"teacher run {str(run_dir)!r} is unfinished (no summary.json); "
                              "finish it first (`gradversary train ... --resume`)")
    summary = json.loads((run_dir / "summary.json").read_text())
    k = summary.get("num_classes")
    if k is not None and int(k) != int(num_classes):
        raise CheckpointError(f"teacher run {str(run_dir)!r} predicts {k} classes, the student's "
                              f"task has {num_classes}")
    spec = dict(read_yaml(run_dir / "config.yaml", "teacher run config")["model"])
    weights = _deployed_weights(run_dir)
    model = create_model(spec.pop("name"), tuple(in_shape), num_classes, **spec)
    try:
        model.load_state_dict(weights)
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *in_shape))
    except RuntimeError as e:
        raise CheckpointError(f"teacher run {str(run_dir)!r} does not fit the student's task "
                              f"(inputs {tuple(in_shape)}, {num_classes} classes): {e}") from None
    if tuple(out.shape) != (2, num_classes):
        raise CheckpointError(f"teacher run {str(run_dir)!r} maps inputs {tuple(in_shape)} to "
                              f"{tuple(out.shape[1:])}, not ({num_classes},)")
    model.requires_grad_(False)
    return model.to(device)
