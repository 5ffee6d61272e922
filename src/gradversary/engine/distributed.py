"""Multi-process data-parallel training with ``torch.distributed`` (launched by torchrun).

``torchrun --nproc-per-node 2 -m gradversary.cli.main train cfg.yaml`` (gloo on CPU, nccl on
GPU; multi-node through torchrun's own ``--nnodes``/``--rdzv-*`` flags). Each rank draws the same
global batch and keeps its shard, so N ranks reproduce one process on the global batch.

Two traps, both guarded by ``tests/test_ddp.py``:

- ``static_graph=True`` silently skips the gradient all-reduce when the step uses double
  backprop; :func:`wrap_ddp` refuses it.
- An input gradient that feeds a loss must come from a **sum**-reduced loss
  (:func:`gradversary.functional.input_gradient`); a mean-reduced one scales with the local
  batch size and breaks equality with single-process training.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "dist_info", "init_distributed", "shutdown_distributed", "wrap_ddp", "is_main",
           "mean_over_ranks", "spawn_ranks"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """Read the rank layout from an initialised process group, else from torchrun's env vars."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(device: str = "cpu") -> DistInfo:
    """Initialise the default process group when launched with several ranks.

    gloo for CPU, nccl for CUDA. A no-op for a single process or an existing group.
    """
    info = dist_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
        info = dist_info()
    return info


def shutdown_distributed() -> None:
    """Destroy the default process group if one is initialised (end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0 (and without distributed training)."""
    return dist_info().rank == 0


def wrap_ddp(module: nn.Module, device: str = "cpu", static_graph: bool = False,
             find_unused_parameters: bool = False) -> nn.Module:
    """Wrap ``module`` in DistributedDataParallel with settings safe for double backprop.

    Raises:
        ValueError: for ``static_graph=True``, which silently skips the gradient sync in steps
            that use double backprop.
    """
    if static_graph:
        raise ValueError(
            "static_graph=True is refused: with a double-backprop term DDP skips the gradient "
            "all-reduce without an error and the ranks drift apart"
        )
    kwargs = {}
    if str(device).startswith("cuda"):
        idx = torch.device(device).index
        kwargs["device_ids"] = [idx if idx is not None else dist_info().local_rank]
    return nn.parallel.DistributedDataParallel(
        module, static_graph=False, find_unused_parameters=find_unused_parameters, **kwargs
    )


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``t`` over the ranks (``t`` itself without a process group).

    Every rank must call it with a tensor of the same shape, at the same point."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_entry(rank: int, fn: Callable[..., Any], world: int, port: int, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    try:
        fn(*args)
    finally:
        shutdown_distributed()


def spawn_ranks(fn: Callable[..., Any], nproc: int, *args: Any) -> None:
    """Run ``fn(*args)`` on ``nproc`` local ranks (spawned processes; gloo on CPU), as
    ``torchrun --standalone --nproc-per-node nproc`` would: each rank sees the usual ``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` (its share of the cores), and a
    :class:`~gradversary.engine.Trainer` built there trains its shard of every batch. Returns
    when every rank has ended; a rank's exception is raised here with its traceback.

    ``fn`` must be a module-level function and ``args`` picklable."""
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    import torch.multiprocessing as mp

    mp.spawn(_rank_entry, args=(fn, nproc, _free_port(), args), nprocs=nproc, join=True)
