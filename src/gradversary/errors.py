"""Exceptions raised by gradversary.

Every error a user can cause derives from :class:`GradversaryError`, so a caller (or the CLI)
can catch them all and print a one-line message instead of a traceback.
"""

from __future__ import annotations


class GradversaryError(Exception):
    """Base class of the library's user-facing errors."""


class ConfigError(GradversaryError, ValueError):
    """A configuration is invalid: an unknown key, a wrong type, a bad value."""


class DataError(GradversaryError, ValueError):
    """Input data is unusable: wrong shapes, labels out of range, an empty domain, a bad file."""


class CheckpointError(GradversaryError, RuntimeError):
    """A checkpoint is missing, corrupt or does not match the run."""


class TeacherChangedError(ConfigError):
    """A distillation run's teacher is not the one it started with (its deployed checkpoint
    differs), so the run cannot be continued or reused as it is."""


class RunExistsError(GradversaryError, FileExistsError):
    """A run directory already holds a run, and neither resuming nor overwriting was asked."""


class DivergenceError(GradversaryError, FloatingPointError):
    """Training produced a non-finite loss, or a finite one running away.

    Args:
        step: the (1-based) optimisation step whose loss was not finite, or at which the
            runaway watch fired.
        parts: the named loss parts at that step, to show which one diverged.
        checkpoint: the checkpoint kept, if one had been written.
        reason: what the runaway watch saw (``None``: a non-finite loss).
    """

    def __init__(self, step: int, parts: dict[str, float] | None = None, checkpoint: str | None = None,
                 reason: str | None = None):
        self.step = step
        self.parts = dict(parts or {})
        self.checkpoint = checkpoint
        self.reason = reason
        detail = ", ".join(f"{k}={v:.4g}" for k, v in self.parts.items())
        msg = (f"training diverged: {reason}" if reason else f"loss is not finite at step {step}")
        msg += f" ({detail})" if detail else ""
        msg += (
            f"; the last good checkpoint is kept at {checkpoint}" if checkpoint
            else "; no checkpoint had been written yet"
        )
        super().__init__(msg)
