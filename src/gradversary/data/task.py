"""Domain samples and adaptation tasks, validated on construction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import DataError

__all__ = ["DomainData", "DATask"]


@dataclass
class DomainData:
    """One domain's examples, in memory.

    Args:
        x: inputs, float.
        y: integer class labels, or ``None`` for an unlabelled sample.
        name: a label for messages and reports ("source", "target_test", ...).
        targets: further per-example float targets by task name (multi-task learning:
            colourisation, edges, ...), or ``None``. They travel with ``y`` (the sampler indexes
            them, :meth:`unlabelled` drops them) and reach a method as ``Batch.targets``.

    Shape:
        x: (N, *in_shape); y: (N,); targets[k]: (N, *) for every task k.
    """

    x: Tensor
    y: Tensor | None = None
    name: str = "domain"
    targets: Mapping[str, Tensor] | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def unlabelled(self, name: str | None = None) -> DomainData:
        """The same inputs without labels (nor further targets)."""
        return DomainData(self.x, None, name or self.name)

    def take(self, idx: Tensor, name: str | None = None) -> DomainData:
        """The examples ``idx`` (labels and targets included). Shape: idx (M,) -> M examples."""
        targets = None if self.targets is None else {k: v[idx] for k, v in self.targets.items()}
        return DomainData(self.x[idx], None if self.y is None else self.y[idx],
                          name or self.name, targets)


@dataclass
class DATask:
    """An unsupervised domain adaptation task.

    Args:
        source: labelled source training sample.
        target: target training sample; its labels, if any, are never shown to a method.
        num_classes: K; labels must lie in [0, K).
        eval: labelled samples to report on, by name (``source_test``, ``target_test``...).
        name: a label for reports.

    Raises:
        DataError: when a domain is empty, the domains' input shapes differ, labels are out of
            range or not integers, or inputs are not finite.
    """

    source: DomainData
    target: DomainData
    num_classes: int
    eval: Mapping[str, DomainData] = field(default_factory=dict)
    name: str = "task"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise DataError(f"{self.name}: num_classes must be >= 2, got {self.num_classes}")
        domains = {"source": self.source, "target": self.target, **dict(self.eval)}
        for key, d in domains.items():
            _check_domain(d, key, self.num_classes)
        if self.source.y is None:
            raise DataError(f"{self.name}: the source domain needs labels")
        shape = self.source.in_shape
        for key, d in domains.items():
            if d.in_shape != shape:
                raise DataError(
                    f"{self.name}: input shape of {key!r} is {d.in_shape} but the source's is "
                    f"{shape}; bring the domains to one shape first (e.g. resize, repeat channels)"
                )
        # The target's labels are dropped so that no method can read them during training.
        self.target = self.target.unlabelled(self.target.name)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.source.in_shape


def _check_domain(d: DomainData, key: str, num_classes: int) -> None:
    if not isinstance(d.x, Tensor):
        raise DataError(f"{key}: inputs must be a torch.Tensor, got {type(d.x).__name__}")
    if d.x.dim() < 2:
        raise DataError(f"{key}: inputs must have shape (N, ...), got {tuple(d.x.shape)}")
    if len(d) == 0:
        raise DataError(f"{key}: the domain is empty (0 examples)")
    if not d.x.is_floating_point():
        raise DataError(f"{key}: inputs must be floating point, got {d.x.dtype}")
    # fast path: a sum is finite only if every element is (overflow falls back to the full check)
    if not bool(torch.isfinite(d.x.sum())) and not bool(torch.isfinite(d.x).all()):
        raise DataError(f"{key}: inputs contain NaN or infinite values")
    for k, t in (d.targets or {}).items():
        if not isinstance(t, Tensor) or t.dim() < 1 or t.shape[0] != d.x.shape[0]:
            raise DataError(f"{key}: target {k!r} must be a tensor of shape ({d.x.shape[0]}, ...), "
                            f"got {tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise DataError(f"{key}: target {k!r} must be finite floating point, got {t.dtype}")
    if d.y is None:
        return
    if d.y.dim() != 1 or d.y.shape[0] != d.x.shape[0]:
        raise DataError(
            f"{key}: labels must have shape ({d.x.shape[0]},), got {tuple(d.y.shape)}"
        )
    if d.y.is_floating_point() or d.y.dtype == torch.bool:
        raise DataError(f"{key}: labels must be integers, got {d.y.dtype}")
    lo, hi = int(d.y.min()), int(d.y.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(
            f"{key}: labels must lie in [0, {num_classes - 1}], found values from {lo} to {hi}"
        )
