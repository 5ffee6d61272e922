"""What the distillation methods (``kd``, ``sobolev``, ``great_distill``) share: the teacher.

A distillation method declares ``needs_teacher = True`` and names a finished run directory in
its ``teacher_run`` option. The engine (not the method: methods do not import the engine)
loads that run's model, checks that its input and output shapes fit the student's task and
hands it over with :meth:`DistillMethod.set_teacher`.

The teacher is held **outside** the module tree: it is not a parameter of the method, so it
is in no optimizer, not seen by DDP, not switched to train mode by ``method.train()`` (its
BatchNorm statistics never move) and not saved in the student's checkpoints. The student's
resolved config keeps ``teacher_run``, so a resumed or reloaded run finds it again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import input_gradient
from ..models.base import FeatureClassifier
from .base import Method

__all__ = ["DistillMethod"]


class DistillMethod(Method):
    """Base of methods that learn from a frozen teacher network.

    Args:
        model: the student.
        teacher_run: the teacher's run directory (read by the engine), or ``None``.
    """

    needs_teacher = True
    uses_target = False

    def __init__(self, model: FeatureClassifier, teacher_run: str | None = None):
        super().__init__(model)
        self.teacher_run = teacher_run
        object.__setattr__(self, "_teacher", None)  # not a submodule (see the module docstring)

    def set_teacher(self, teacher: nn.Module) -> None:
        """Freeze ``teacher`` (eval mode, no gradients), move it to the student's device and keep it."""
        teacher.eval()
        teacher.requires_grad_(False)
        object.__setattr__(self, "_teacher", teacher.to(self.device))

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher; raises if none was set."""
        if self._teacher is None:
            raise RuntimeError(
                f"{type(self).__name__} needs a teacher: set method.teacher_run to a finished run "
                "directory (the engine loads it), or call set_teacher(model)")
        return self._teacher

    def _apply(self, fn, *args, **kwargs):
        """Moves and casts (``.to()``, ``.double()``) reach the teacher too."""
        out = super()._apply(fn, *args, **kwargs)
        if self._teacher is not None:
            self._teacher._apply(fn, *args, **kwargs)
        return out

    @torch.no_grad()
    def teacher_logits(self, x: Tensor) -> Tensor:
        """The teacher's logits, without a graph. Shape: x (N, *) -> (N, K)."""
        return self.teacher(x)

    def teacher_input_gradient(self, x: Tensor, y: Tensor) -> Tensor:
        """d J(tau, x_i, y_i) / d x_i of the teacher's cross-entropy (sum-reduced), no graph.

        Shape:
            x: (N, *); y: (N,); output: (N, *).
        """
        with torch.enable_grad():
            xt = x.detach().requires_grad_()
            loss = F.cross_entropy(self.teacher(xt), y, reduction="sum")
            return input_gradient(loss, xt, create_graph=False)
