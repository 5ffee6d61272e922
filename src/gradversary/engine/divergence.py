"""The runaway watch: stop a run whose loss or gradient norm grows by orders of magnitude.

A NaN check does not see a run that runs away with finite numbers: GREACE as the paper writes
it (eq. 6) took the task loss from about 1 to 1e8 on MNIST while every value stayed finite
(issue 18). The watch reads the engine's training records (one every ``log_every`` steps: the
window means of the loss and of the parameter-gradient norm), and fires when the median of
the last ``window`` records is more than ``ratio`` times the smallest such median seen so far
(the reference, taken no lower than a floor):

    stat_t = median(x_{t - window + 1}, ..., x_t)
    fire if stat_t > ratio * max(min_{s < t} stat_s, floor)

The median over a window ignores a single spike; the floor keeps a run that fits its batches
to a loss near 0 from being stopped by an ordinary bump. One object owns this state; the
trainer saves it in its checkpoints, so a resumed run watches on as if never stopped.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

__all__ = ["DivergenceConfig", "DivergenceWatch"]


@dataclass
class DivergenceConfig:
    """``train.divergence``: when a finite run counts as diverged (NaN always does).

    Args:
        enabled: watch at all (``false``: only a non-finite loss stops a run).
        window: training records per median (each is ``train.log_every`` steps).
        loss_ratio: fire when the loss's median exceeds this multiple of its reference
            (null: do not watch the loss).
        loss_floor: the loss reference is never below this.
        grad_ratio: the same for the global L2 norm of the parameters' gradients, before any
            clipping (null: do not watch it).
        grad_floor: the gradient-norm reference is never below this.
    """

    enabled: bool = True
    window: int = 5
    loss_ratio: float | None = 1e3
    loss_floor: float = 1e-2
    grad_ratio: float | None = 1e4
    grad_floor: float = 1e-3

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"divergence.window must be >= 1, got {self.window}")
        for k in ("loss_ratio", "grad_ratio"):
            v = getattr(self, k)
            if v is not None and not v > 1:
                raise ValueError(f"divergence.{k} must be > 1 (or null), got {v}")
        if not (self.loss_floor > 0 and self.grad_floor > 0):
            raise ValueError("divergence.loss_floor and grad_floor must be > 0")


class DivergenceWatch:
    """Reads training records and says when the run is running away.

    Args:
        cfg: the thresholds.

    Example:
        >>> w = DivergenceWatch(DivergenceConfig(window=1, loss_ratio=100))
        >>> [w.update(s, {"loss": v}) for s, v in ((10, 1.0), (20, 0.5), (30, 20.0))]
        [None, None, None]
        >>> print(w.update(40, {"loss": 60.0}))
        loss 60 (median of the last 1 records) at step 40 is above 100x its smallest median 0.5 (at step 20; floor 0.01): the run is running away
    """

    #: record key watched -> the config's (ratio, floor) attribute names and a label
    KEYS = {"loss": ("loss_ratio", "loss_floor", "loss"),
            "param_grad_norm": ("grad_ratio", "grad_floor", "gradient norm")}

    def __init__(self, cfg: DivergenceConfig | None = None):
        self.cfg = cfg or DivergenceConfig()
        self.recent: dict[str, list[float]] = {k: [] for k in self.KEYS}
        self.best: dict[str, tuple[float, int]] = {}  # key -> (smallest median, its step)

    @property
    def watches_gradients(self) -> bool:
        """Whether the trainer should measure the parameter-gradient norm."""
        return self.cfg.enabled and self.cfg.grad_ratio is not None

    def update(self, step: int, record: dict[str, Any]) -> str | None:
        """Take one training record (its step and window means); a message if it diverged."""
        if not self.cfg.enabled:
            return None
        for key, (ratio_name, floor_name, label) in self.KEYS.items():
            ratio, value = getattr(self.cfg, ratio_name), record.get(key)
            if ratio is None or value is None or not math.isfinite(value):
                continue
            recent = self.recent[key]
            recent.append(float(value))
            del recent[:-self.cfg.window]
            if len(recent) < self.cfg.window:
                continue
            stat = statistics.median(recent)
            if key in self.best:
                ref, at = self.best[key]
                limit = ratio * max(ref, getattr(self.cfg, floor_name))
                if stat > limit:
                    return (f"{label} {stat:.4g} (median of the last {len(recent)} records) at "
                            f"step {step} is above {ratio:g}x its smallest median {ref:.4g} (at "
                            f"step {at}; floor {getattr(self.cfg, floor_name):g}): the run is "
                            "running away")
            if key not in self.best or stat < self.best[key][0]:
                self.best[key] = (stat, step)
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"recent": {k: list(v) for k, v in self.recent.items()},
                "best": {k: [v, s] for k, (v, s) in self.best.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent = {k: list(state.get("recent", {}).get(k, [])) for k in self.KEYS}
        self.best = {k: (float(v), int(s)) for k, (v, s) in state.get("best", {}).items()}
