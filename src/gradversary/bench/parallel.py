"""Run independent benchmark jobs (trainings, evaluations, grid searches) in parallel processes.

Each job is ``fn(*args)`` with a top-level ``fn`` and picklable arguments; with more than one
worker, jobs run in spawned processes of one thread each, so N workers share N cores without
oversubscription, and results come back in the order of the jobs. A failing job does not stop
the others (their runs are on disk and are reused); its error is raised once all have ended.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["map_jobs"]


def _one_thread(fn: Callable, args: tuple) -> Any:
    os.environ["OMP_NUM_THREADS"] = "1"  # caps train.threads=auto (gradversary.engine.threads)
    torch.set_num_threads(1)
    return fn(*args)


def map_jobs(fn: Callable, jobs: Sequence[tuple], workers: int = 1, desc: str = "jobs",
             progress: bool = False, on_result: Callable[[int, Any], None] | None = None) -> list:
    """``[fn(*args) for args in jobs]``, in ``workers`` processes when ``workers`` > 1.

    ``on_result(i, result)`` runs in this process as soon as job ``i`` has succeeded (to keep
    a record of it even if a later job fails or the benchmark is stopped)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(jobs) <= 1:
        out = []
        for i, args in enumerate(jobs):
            out.append(fn(*args))
            if on_result is not None:
                on_result(i, out[-1])
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_one_thread, fn, tuple(args)) for args in jobs]
        index = {f: i for i, f in enumerate(futures)}
        for f in tqdm(as_completed(futures), total=len(futures), desc=desc,
                      disable=not progress, leave=False):
            if on_result is not None and f.exception() is None:
                on_result(index[f], f.result())
    return [f.result() for f in futures]
