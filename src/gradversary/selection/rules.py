"""Choosing a checkpoint after the fact, from a run's evaluation history.

The trainer applies its selection rule while training (it keeps ``best.pt``); a finished run's
summary also keeps every evaluation's risk estimate (``history``), so another rule can be
scored on it without training again. The rules here match the trainer's exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["RULES", "choose_checkpoint"]

RULES = ("min", "one_se")


def choose_checkpoint(history: Sequence[dict[str, Any]], rule: str = "min",
                      min_ess: float = 0.0) -> dict[str, Any]:
    """The evaluation a selection rule picks from a run's history.

    Args:
        history: evaluations in step order, each with ``step`` and, for a scored run,
            ``select_risk`` (lower is better), ``select_se`` and ``select_ess``.
        rule: ``min``, the first evaluation of lowest risk; ``one_se``, the latest one whose
            risk is within one standard error (that of the minimum) of the minimum.
        min_ess: evaluations whose importance weights have a smaller effective sample size
            are not trusted and not candidates; when none is left, the last evaluation is
            chosen (the schedule's end point). 0 trusts all.

    Returns:
        the chosen history entry.

    Raises:
        ValueError: for an empty history or an unknown rule.
    """
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose from {RULES}")
    if not history:
        raise ValueError("empty history: the run was never evaluated")
    scored = [h for h in history if h.get("select_risk") is not None
              and h.get("select_ess", float("inf")) >= min_ess]
    if not scored:
        return history[-1]
    best = min(scored, key=lambda h: h["select_risk"])  # min() keeps the first of ties
    if rule == "min":
        return best
    bound = best["select_risk"] + best.get("select_se", 0.0)
    return [h for h in scored if h["select_risk"] <= bound][-1]
