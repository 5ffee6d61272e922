"""Seeding and RNG state capture for exact resume."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["seed_everything", "rng_state", "set_rng_state", "global_state_preserved"]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA); optionally ask for deterministic kernels.

    Deterministic mode leaves ``torch.utils.deterministic.fill_uninitialized_memory`` off: by
    default it fills every new uninitialised tensor with NaN (a debugging aid, not part of
    determinism: no kernel here reads memory it has not written), which cost about 8% of a
    training step on a CPU.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False


def rng_state() -> dict:
    """The torch RNG states (CPU and every CUDA device) and Python's, as tensors and lists,
    so they load with ``weights_only=True``."""
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def global_state_preserved() -> Iterator[None]:
    """Run a block that seeds (:func:`seed_everything`) without changing the caller's global
    state: Python's, NumPy's and torch's CPU random streams, and torch's deterministic-
    algorithms switches, are put back on exit. For library entry points (the scikit-learn
    estimator) that train inside someone else's program."""
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    det = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    fill = torch.utils.deterministic.fill_uninitialized_memory
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        torch.use_deterministic_algorithms(det[0], warn_only=det[1])
        torch.utils.deterministic.fill_uninitialized_memory = fill
