"""Reproducible, resumable, shardable mini-batch index streams."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DomainSampler"]


class DomainSampler:
    """Endless shuffled mini-batches of indices into one domain.

    Each epoch is a fresh permutation drawn from a generator seeded by ``(seed, epoch)``, so
    the stream depends only on the seed and the position: its whole state is two integers,
    and resuming from them continues the exact same stream. Batches that would straddle an
    epoch end take the rest of the next epoch's permutation, so every batch is full.

    Under DDP every rank draws the same global batch and keeps the slice ``rank`` of
    ``world_size`` equal parts, so the ranks together see exactly the single-process batch.

    Args:
        n: number of examples in the domain.
        batch_size: global batch size B.
        seed: stream seed.
        rank, world_size: this process's shard of each global batch; B must divide evenly.

    Example:
        >>> s = DomainSampler(5, 2, seed=0)
        >>> [len(s.next()) for _ in range(3)]
        [2, 2, 2]
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if n <= 0:
            raise ValueError("cannot sample from an empty domain")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by world size {world_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def next(self) -> Tensor:
        """The next global batch's indices, this rank's shard of them. Shape: (B / world,)."""
        parts, need = [], self.batch_size
        while need:
            take = min(need, self.n - self.pos)
            parts.append(self._perm[self.pos:self.pos + take])
            self.pos += take
            need -= take
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
        idx = torch.cat(parts)
        shard = self.batch_size // self.world_size
        return idx[self.rank * shard:(self.rank + 1) * shard]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation(self.epoch)
