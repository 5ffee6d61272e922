"""The collapse watch: a warning when the task loss climbs back to chance level.

A network whose units die (a ReLU collapse) keeps finite losses, so no NaN check sees it; its
task loss, having fallen well below chance (ln K for K classes), returns to it. The watch keeps
the lowest task loss seen, and it is saved in the checkpoint so that a resumed run warns exactly
when an uninterrupted one would.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["CollapseWatch"]


class CollapseWatch:
    """Warns once when the task loss, after falling below ``low`` * ln K, climbs above
    ``high`` * ln K.

    Args:
        num_classes: K.
        low, high: the shares of chance level (ln K) that define "well below" and "back at".

    Example:
        >>> w = CollapseWatch(2)
        >>> [w.check(loss, step) is not None for step, loss in enumerate([0.7, 0.1, 0.69])]
        [False, False, True]
    """

    def __init__(self, num_classes: int, low: float = 0.5, high: float = 0.95):
        self.num_classes = num_classes
        self.chance = math.log(num_classes)
        self.low, self.high = low, high
        self.best_loss = math.inf
        self.fired = False

    def check(self, loss: float | None, step: int) -> str | None:
        """Record the task loss at ``step``; the warning message the first time the loss is
        back at chance after having been well below it, else ``None``."""
        if loss is None or self.fired:
            return None
        self.best_loss = min(self.best_loss, loss)
        if self.best_loss < self.low * self.chance and loss > self.high * self.chance:
            self.fired = True
            return (f"task loss {loss:.3f} at step {step} is back at chance level "
                    f"(ln {self.num_classes} = {self.chance:.3f}) after reaching "
                    f"{self.best_loss:.3f}: the network has probably collapsed")
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "fired": self.fired}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_loss = float(state.get("best_loss", math.inf))
        self.fired = bool(state.get("fired", False))
