"""The method contract: a batch in, a total loss with named parts and metrics out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..data.task import DomainData
from ..models.base import FeatureClassifier
from ..nn.double_backward import convert_double_backward
from ..registry import Registry
from ..schedules import Schedule

__all__ = ["METHODS", "Batch", "MethodOutput", "Method", "create_method", "batched", "joint_pass"]

METHODS = Registry("method", args=("model",), pass_config=True)


@dataclass
class Batch:
    """One training batch.

    Shape:
        x_s: (N_s, *) source inputs; y_s: (N_s,) source labels;
        x_t: (N_t, *) unlabelled target inputs, or ``None`` for methods that use no target;
        targets: further source targets by task name (multi-task learning), each (N_s, *), or
        ``None`` (the source :class:`DomainData` has none).
        shard: ``(rank, world_size)``: under DDP these are rows ``rank * N .. (rank + 1) * N - 1``
        of the global batch. A method that draws noise per example draws it for the global
        batch and keeps its rows (:func:`gradversary.attacks.base.uniform_like`), so N ranks
        draw what one process draws and their RNGs stay in step.
    """

    x_s: Tensor
    y_s: Tensor
    x_t: Tensor | None = None
    targets: dict[str, Tensor] | None = None
    shard: tuple[int, int] = (0, 1)


@dataclass
class MethodOutput:
    """What a training step returns.

    Args:
        loss: the scalar to backpropagate.
        parts: named loss terms, e.g. ``task_loss``, ``domain_loss`` (scalars).
        metrics: named training metrics, e.g. ``src_acc``, ``domain_acc`` (scalars).
    """

    loss: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, Tensor] = field(default_factory=dict)


class Method(nn.Module):
    """Base class of training methods.

    A method owns the model and any auxiliary modules (discriminators...). ``forward`` runs one
    training step's computation and returns a :class:`MethodOutput`; it never steps optimizers
    and never moves schedules. The engine reads three declarations:

    - ``uses_target``: whether batches must carry unlabelled target inputs;
    - :meth:`param_groups`: one entry per optimizer the method wants (default: one, "main");
    - :meth:`schedules`: named schedules that the engine steps with training progress;
    - ``needs_teacher``: the method distils from a finished run (it then has ``teacher_run`` and
      ``set_teacher``); the engine loads that frozen teacher.

    A method that backpropagates through the model's backward pass sets ``double_backprop``;
    its model's ``BatchNorm`` and ``Conv2d`` layers then get the closed-form second
    derivatives of :mod:`gradversary.nn.double_backward` (in place; the same values and
    gradients, several times cheaper on a CPU).
    """

    uses_target: bool = False
    double_backprop: bool = False
    needs_teacher: bool = False

    def __init__(self, model: FeatureClassifier):
        super().__init__()
        if self.double_backprop:
            convert_double_backward(model)
        self.model = model

    def forward(self, batch: Batch) -> MethodOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[dict]]:
        """Optimizer name -> torch param groups. The default: everything in one optimizer."""
        return {"main": [{"params": [p for p in self.parameters() if p.requires_grad]}]}

    def schedules(self) -> dict[str, Schedule]:
        """Schedules the engine steps with progress p, by name."""
        return {}

    @property
    def device(self) -> torch.device:
        """The device of the method's parameters."""
        return next(self.parameters()).device

    def predict_logits(self, x: Tensor) -> Tensor:
        """Class logits (N, K) for inputs (N, *): the deployed model."""
        return self.model(x)

    @torch.no_grad()
    def evaluate(self, splits: Mapping[str, DomainData], batch_size: int = 1024) -> dict[str, float]:
        """Accuracy (and cross-entropy) on every labelled split, as ``<split>_acc``/``_loss``.

        The caller puts the method in eval mode; nothing here moves a schedule.
        """
        out: dict[str, float] = {}
        for name, d in splits.items():
            if d.y is None:
                continue
            out.update(label_metrics(name, batched(self.predict_logits, d.x, batch_size, self.device), d.y))
        return out


def joint_pass(model: nn.Module, batch: Batch, method: str) -> tuple[Tensor, Tensor, int]:
    """Features and logits of the source and target inputs in one forward pass (BatchNorm sees
    both domains together), and the number of source rows ``n_s``.

    Raises:
        ValueError: the batch has no target inputs (``method`` names who needs them).

    Shape:
        batch.x_s: (N_s, ...), batch.x_t: (N_t, ...) -> features (N_s + N_t, F),
        logits (N_s + N_t, K); source rows first.
    """
    if batch.x_t is None:
        raise ValueError(f"{method} needs target inputs in every batch (batch.x_t is None)")
    feats = model.features(torch.cat([batch.x_s, batch.x_t]))
    return feats, model.head(feats), batch.x_s.shape[0]


def label_metrics(name: str, logits: Tensor, y: Tensor) -> dict[str, float]:
    """``{name}_acc`` and ``{name}_loss`` (cross-entropy) of logits (N, K) against labels (N,)."""
    y = y.to(logits.device)
    return {f"{name}_acc": float((logits.argmax(-1) == y).float().mean()),
            f"{name}_loss": float(nn.functional.cross_entropy(logits, y))}


def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int,
            device: torch.device | str | None = None) -> Tensor:
    """``fn`` applied to ``x`` in chunks of ``batch_size`` (moved to ``device``), concatenated."""
    return torch.cat([
        fn(x[i:i + batch_size].to(device) if device is not None else x[i:i + batch_size])
        for i in range(0, x.shape[0], batch_size)
    ])


def create_method(name: str, model: FeatureClassifier, **params) -> Method:
    """Build registered method ``name`` around ``model``, validating ``params``."""
    return METHODS.create(name, model, **params)
