"""What a resumed run may change: its saved config against the new one.

A checkpoint keeps the resolved config it was trained with. ``fit(resume=True)`` compares it
with the config given now, key by dotted key, and refuses any change that would make the
result a different run from the one that was started, naming the keys. Allowed:

- operational keys, which change how the run is carried out but not what is learnt:
  ``train.progress``, ``train.threads``, ``train.device``, ``train.log_every``,
  ``train.checkpoint_every``, ``train.eval_batch_size``, ``data.root`` (where the same data
  lives), ``name`` and ``out_dir``;
- ``train.eval_every``, when the run selects no checkpoint (``selection.criterion: last``):
  with a criterion, the evaluations are the candidates of the selection;
- ``train.steps`` / ``train.epochs``, when the total number of steps stays at least the step
  reached and every schedule of the run is constant or clocked by the step count (an
  :class:`~gradversary.schedules.IterationSchedule`, such as tllib's ``inverse_decay_steps``
  and ``warm_start_lambda``). Other schedules are functions of progress p = step / total
  steps, so a new total would move p: the steps already taken would have followed another
  schedule than the one the extended run claims. A run with, say, the DANN paper's ramp by
  progress therefore cannot be extended; train a new one. A step-clocked run extended from
  N to M steps is the M-step run: its first N steps are those of the M-step run.

Everything else (seed, optimizer, method, model, data, batch size, selection, ...) is refused.
The progress bar is ignored; every other allowed change is returned, for the run to record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError
from ..schedules import IterationSchedule, Schedule

__all__ = ["OPERATIONAL_KEYS", "config_changes", "check_resume_changes", "schedules_constant",
           "schedules_extendable"]

#: keys that never change what a run learns
OPERATIONAL_KEYS = frozenset({
    "train.threads", "train.device", "train.log_every", "train.checkpoint_every",
    "train.eval_batch_size", "data.root", "name", "out_dir",
})
_IGNORED = frozenset({"train.progress"})
_LENGTH_KEYS = frozenset({"train.steps", "train.epochs"})
_MISSING = "<unset>"


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old value, new value)}`` for every key whose value differs (a key on
    one side only shows ``'<unset>'`` on the other); the progress bar is left out.

    Example:
        >>> config_changes({"train": {"seed": 0, "steps": 5}}, {"train": {"seed": 7, "steps": 5}})
        {'train.seed': (0, 7)}
    """
    a, b = _flatten(old), _flatten(new)
    return {k: (a.get(k, _MISSING), b.get(k, _MISSING)) for k in sorted(set(a) | set(b))
            if k not in _IGNORED and a.get(k, _MISSING) != b.get(k, _MISSING)}


def schedules_constant(schedules: Iterable[Schedule], points: int = 11) -> bool:
    """Whether every schedule takes one value for all progress p in [0, 1] (checked on a grid)."""
    for s in schedules:
        values = {s.value_at(i / (points - 1)) for i in range(points)}
        if len(values) > 1:
            return False
    return True


def schedules_extendable(schedules: Iterable[Schedule]) -> bool:
    """Whether a run with these schedules may change its total number of steps: each one is
    clocked by the step count (its value at step i does not depend on the total) or constant.

    Example:
        >>> from gradversary.schedules import Constant, DANNLambda, WarmStartLambda
        >>> schedules_extendable([WarmStartLambda(), Constant(0.5)]), schedules_extendable([DANNLambda()])
        (True, False)
    """
    return schedules_constant(s for s in schedules if not isinstance(s, IterationSchedule))


def check_resume_changes(changes: Mapping[str, tuple[Any, Any]], *, step: int, old_total: int,
                         new_total: int, constant_schedules: bool, selects: bool) -> None:
    """Raise :class:`ConfigError` naming every change a resume at ``step`` may not make.

    Args:
        changes: from :func:`config_changes` (the checkpoint's config -> the new one).
        step: the step the checkpoint reached.
        old_total, new_total: the run's total steps before and after the change.
        constant_schedules: every schedule of the run is independent of the total number of
            steps (:func:`schedules_extendable`).
        selects: the run selects a checkpoint among its evaluations.
    """
    refused = []
    for key, (a, b) in changes.items():
        if key in OPERATIONAL_KEYS:
            continue
        if key == "train.eval_every" and not selects:
            continue
        if key in _LENGTH_KEYS:
            if new_total == old_total:
                continue
            if new_total < step:
                refused.append(f"{key} {a} -> {b} (the run is already at step {step})")
            elif not constant_schedules:
                refused.append(f"{key} {a} -> {b} (a schedule depends on progress p = step / "
                               f"total steps: a new total would change the part already trained)")
            continue
        refused.append(f"{key} {a} -> {b}")
    if refused:
        raise ConfigError(
            "cannot resume with a different config; changed: " + "; ".join(refused)
            + ". Resume with the config the run was started with (its config.yaml), or start a "
            "new run in another run directory (or overwrite this one with --force)"
        )
