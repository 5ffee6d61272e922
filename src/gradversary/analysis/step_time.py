"""Step times of several methods measured side by side in one process.

Benchmarks report a method's cost as a ratio to its baseline's *measured in the same run*: the
trainers step in turn (one step each per round, after a warm-up round), on one thread, so that
whatever else the machine is doing slows them alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

import torch

__all__ = ["interleaved_step_times"]


def interleaved_step_times(trainers: Mapping, steps: int, batch=None, threads: int = 1) -> dict[str, float]:
    """Median seconds per ``train_step`` of each trainer.

    Args:
        trainers: name -> :class:`~gradversary.engine.Trainer` (built, not fitted).
        steps: timed rounds (after one warm-up round).
        batch: one :class:`~gradversary.methods.Batch` for every trainer ("same batch"); ``None``
            draws each trainer's own next batch.
        threads: torch threads while timing (restored afterwards).

    Raises:
        ValueError: ``steps`` < 1 or no trainers.
    """
    if steps < 1 or not trainers:
        raise ValueError(f"need at least one trainer and one timed step (steps={steps})")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    try:
        for r in range(steps + 1):
            for name, tr in trainers.items():
                b = tr._next_batch() if batch is None else batch
                start = time.perf_counter()
                tr.train_step(b)
                if r:  # round 0 warms up
                    times[name].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return {name: statistics.median(v) for name, v in times.items()}
