"""Batch composition: which examples make each training step's batch.

A :class:`BatchComposer` owns the source and target samplers and the batch augmentation. A
method that uses the target gets half source, half target; every draw is keyed on the seed, the
rank and the step, so a resumed or sharded run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.augment import STREAMS, AugmentConfig, augment_batch
from ..data.sampler import DomainSampler
from ..data.task import DATask
from ..methods.base import Batch

__all__ = ["BatchComposer"]


class BatchComposer:
    """Draws training batches from ``task``'s source (and target) training splits.

    Args:
        task: the task whose ``source`` (and ``target``) inputs are drawn.
        batch_size: examples per step in all (over the ranks' shards: each rank draws its own).
        uses_target: split the batch half source / half target.
        seed: the run's seed.
        rank, world_size: this process's shard.
        augment: random crop / flip settings, or ``None``.
        device: where batches are moved.
    """

    def __init__(self, task: DATask, batch_size: int, uses_target: bool, seed: int, rank: int = 0,
                 world_size: int = 1, augment: AugmentConfig | None = None,
                 device: torch.device | str = "cpu"):
        self.n_s = batch_size // 2 if uses_target else batch_size
        self.n_t = batch_size - self.n_s
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.augment, self.device = augment, torch.device(device)
        self.x_s, self.y_s, self.x_t = task.source.x, task.source.y, task.target.x
        self.targets_s = dict(task.source.targets or {})
        self.source = DomainSampler(len(task.source), self.n_s, seed, rank, world_size)
        self.target = (DomainSampler(len(task.target), self.n_t, seed + 7919, rank, world_size)
                       if self.n_t else None)

    def next(self, step: int) -> Batch:
        """The batch of (0-based) ``step``.

        Shape:
            x_s: (n_s, *), y_s: (n_s,), x_t: (n_t, *) or ``None``; targets as the source's.
        """
        dev = self.device
        i = self.source.next()
        x_s = self.x_s[i].to(dev, non_blocking=True)
        y_s = self.y_s[i].to(dev, non_blocking=True)
        x_t = None
        if self.target is not None:
            x_t = self.x_t[self.target.next()].to(dev, non_blocking=True)
        targets = {k: v[i].to(dev, non_blocking=True) for k, v in self.targets_s.items()} or None
        aug = self.augment  # keyed on (seed, step): resumes and shards exactly
        if aug is not None:
            key = (self.seed, step)
            x_s = augment_batch(x_s, aug, *key, STREAMS["source"], self.rank, self.world_size)
            if x_t is not None and aug.target:
                x_t = augment_batch(x_t, aug, *key, STREAMS["target"], self.rank, self.world_size)
        return Batch(x_s, y_s, x_t, targets, (self.rank, self.world_size))

    def state_dict(self) -> dict[str, Any]:
        return {"source": self.source.state_dict(),
                **({"target": self.target.state_dict()} if self.target else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.source.load_state_dict(state["source"])
        if self.target:
            self.target.load_state_dict(state["target"])
