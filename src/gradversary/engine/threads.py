"""How many intra-op threads a run uses: ``train.threads`` (an int, or ``auto``).

PyTorch's default is one intra-op thread per core it sees. On a shared machine that is a trap
for small models: OpenMP's worker threads spin-wait at every parallel region, and when another
process holds one of the cores each region waits for the descheduled thread. The moons demo
(``configs/moons/dann.yaml``, 500 steps) measured 63.6 s with the default against 4.0 s with
one thread on two cores with one busy process (issue 14; ``benchmarks/threads.py`` measures it
again: ``docs/results/threads.md``).

``auto`` resolves to

- **1** when the model is small: the forward FLOPs of one training batch (one example's
  forward FLOPs, counted by :class:`torch.utils.flop_counter.FlopCounterMode`, times the batch
  size) are below :data:`SMALL_BATCH_FLOPS`. A parallel region costs a few microseconds to
  open; below this size the work per region is too small to pay for it, and contention makes
  the wait far longer. The moons MLP (73 kFLOP a batch) is small; the DANN MNIST network
  (1.0 GFLOP a batch of 128) is not, and its two threads are ~1.5x faster than one on an idle
  two-core machine.
- otherwise **the cores actually available**: the CPU affinity mask
  (:func:`os.sched_getaffinity`), capped by a cgroup CPU quota (v2 ``cpu.max``, v1
  ``cpu.cfs_quota_us / cpu.cfs_period_us``, rounded down, at least 1), shared among the
  processes of a ``torchrun`` launch on this machine (``LOCAL_WORLD_SIZE``), capped by
  ``OMP_NUM_THREADS`` when it is set (the user's explicit word) and by :data:`MAX_AUTO_THREADS`.

OpenMP's passive wait policy (``OMP_WAIT_POLICY=PASSIVE``, read when torch loads) is left to
the environment: it removed the contention penalty in ``docs/results/threads.md``, but its cost
on an idle machine is not measured yet.

The count does not depend on the machine's momentary load, so a run and its resumption use the
same count on the same machine. The resolved count is logged and recorded in the run's
``summary.json`` (``threads``); ``config.yaml`` keeps ``auto``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "SMALL_BATCH_FLOPS", "MAX_AUTO_THREADS", "parse_cpu_max", "parse_cfs_quota", "cgroup_cpu_limit",
    "available_cpus", "batch_flops", "choose_threads", "apply_threads",
]

log = logging.getLogger(__name__)

#: below this many forward FLOPs per training batch, ``auto`` uses one thread
SMALL_BATCH_FLOPS = 20e6
#: ``auto`` never uses more threads than this (intra-op scaling flattens beyond it)
MAX_AUTO_THREADS = 16

_CGROUP = Path("/sys/fs/cgroup")


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"<quota> <period>"``, or ``"max ..."``
    for no limit); ``None`` when unlimited."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    period = float(parts[1]) if len(parts) > 1 else 100000.0
    quota = float(parts[0])
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs_quota(quota: str, period: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` (quota -1: no
    limit); ``None`` when unlimited."""
    q, p = float(quota.strip()), float(period.strip())
    return q / p if q > 0 and p > 0 else None


def _cgroup_dirs(proc_cgroup: str, root: Path) -> list[tuple[str, Path]]:
    """Candidate ``(version, directory)`` pairs from ``/proc/self/cgroup``: the process's own
    cgroup and, as in a container whose namespace hides the path, the mount root."""
    out = []
    for line in proc_cgroup.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        path = path.strip().lstrip("/")
        if hid == "0" and controllers == "":
            out += [("v2", root / path), ("v2", root)]
        elif "cpu" in controllers.split(","):
            base = root / controllers
            if not base.is_dir():
                base = root / "cpu"
            out += [("v1", base / path), ("v1", base)]
    return out


def cgroup_cpu_limit(root: str | Path = _CGROUP, proc_cgroup: str | None = None) -> float | None:
    """CPUs allowed by the process's cgroup quota (v2 or v1), ``None`` when unlimited or
    unknown. ``root`` and ``proc_cgroup`` (the text of ``/proc/self/cgroup``) are for tests."""
    root = Path(root)
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    limits = []
    for version, d in _cgroup_dirs(proc_cgroup, root):
        try:
            if version == "v2":
                lim = parse_cpu_max((d / "cpu.max").read_text())
            else:
                lim = parse_cfs_quota((d / "cpu.cfs_quota_us").read_text(),
                                      (d / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError, IndexError):
            continue
        if lim is not None:
            limits.append(lim)
    return min(limits) if limits else None


def available_cpus(affinity: Sequence[int] | None = None, quota: float | None = None) -> int:
    """Cores this process may use: the affinity mask's size, capped by a CPU quota (rounded
    down, at least 1). Defaults read the running process."""
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        quota = cgroup_cpu_limit() if quota is None else quota
    n = max(1, len(affinity))
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return n


def batch_flops(forward: Callable[[Tensor], Tensor], in_shape: Sequence[int], batch_size: int,
                device: torch.device | str = "cpu") -> float:
    """Forward FLOPs of one training batch: one zero example through ``forward`` (under
    ``no_grad``; matmuls and convolutions counted), times ``batch_size``.

    Shape:
        the example: (1, *in_shape).
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward(torch.zeros(1, *in_shape, device=device))
    return float(counter.get_total_flops()) * batch_size


def choose_threads(setting: int | str, available: int, flops: float, env_cap: int | None = None,
                   processes: int = 1) -> int:
    """The thread count for ``train.threads`` (pure: every input is given).

    Args:
        setting: an int >= 1 (used as is) or ``"auto"``.
        available: cores available (:func:`available_cpus`).
        flops: forward FLOPs of one training batch (:func:`batch_flops`).
        env_cap: ``OMP_NUM_THREADS`` if set, an upper bound for ``auto``.
        processes: training processes sharing these cores (``torchrun``'s
            ``LOCAL_WORLD_SIZE``); ``auto`` gives each its share.
    """
    if setting != "auto":
        return int(setting)
    if flops < SMALL_BATCH_FLOPS:
        return 1
    n = min(available // max(1, processes), MAX_AUTO_THREADS)
    if env_cap is not None:
        n = min(n, env_cap)
    return max(1, n)


def _env_int(name: str) -> int | None:
    try:
        v = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return v if v >= 1 else None


def apply_threads(setting: int | str | None, model: torch.nn.Module, in_shape: Sequence[int],
                  batch_size: int) -> int:
    """Resolve ``train.threads`` for ``model`` (its ``forward`` on inputs of ``in_shape``), set
    torch's intra-op thread count and return it. ``None`` keeps PyTorch's default."""
    if setting is None:
        return torch.get_num_threads()
    if setting == "auto":
        modes = [(m, m.training) for m in model.modules()]
        model.eval()  # no BatchNorm update, no dropout draw: the run's RNG stream is untouched
        try:
            device = next(model.parameters(), torch.zeros(())).device
            flops = batch_flops(model, in_shape, batch_size, device)
        finally:
            for m, mode in modes:
                m.training = mode
        cores, cap = available_cpus(), _env_int("OMP_NUM_THREADS")
        n = choose_threads("auto", cores, flops, cap, _env_int("LOCAL_WORLD_SIZE") or 1)
        log.info("train.threads auto: %d thread(s) (%.3g forward FLOPs a batch, %d core(s) available%s)",
                 n, flops, cores, f", OMP_NUM_THREADS={cap}" if cap else "")
    else:
        n = choose_threads(setting, 0, 0.0)
    torch.set_num_threads(n)
    return n
