"""The dataset registry: a name -> factory returning a :class:`DATask`."""

from __future__ import annotations

from ..registry import Registry

__all__ = ["DATASETS", "create_task"]

DATASETS = Registry("dataset")


def create_task(name: str, root=None, **params):
    """Build the registered task ``name``; ``root`` is the data root (may be unused)."""
    from ..config import from_dict

    entry = DATASETS.get(name)
    cfg = from_dict(entry.config, params, path=f"data {name}") if entry.config else None
    return entry.factory(root=root, **(vars(cfg) if cfg else {}))
