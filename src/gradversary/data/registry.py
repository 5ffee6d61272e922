"""The dataset registry: a name -> factory returning a :class:`DATask`."""

from __future__ import annotations

from ..registry import Registry

__all__ = ["DATASETS", "create_task"]

DATASETS = Registry("dataset", context=("root",))


def create_task(name: str, root=None, **params):
    """Build the registered task ``name``; ``root`` is the data root (may be unused)."""
    return DATASETS.create(name, root=root, **params)
