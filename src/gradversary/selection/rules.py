"""Choosing a checkpoint after the fact, from a run's evaluation history.

The trainer applies its selection rule while training (it keeps ``best.pt``); a finished run's
summary also keeps every evaluation's risk estimate (``history``), so another rule can be
scored on it without training again. The rules here match the trainer's exactly.
:func:`choose_by_validators` picks from the label-free validators' scores kept in the same
history (``score_<name>``), one validator or the rank mean of several (``"snd+source_val"``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .ranking import rank_mean_scores

__all__ = ["DEFAULT_VALIDATORS", "RULES", "choose_by_validators", "choose_checkpoint", "rank_across_runs",
           "validator_pick"]

RULES = ("min", "one_se")
#: the default combination chosen by the validator ranking (docs/results/validators.md)
DEFAULT_VALIDATORS = "im+mixval+source_val"


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


def _validator_scores(history: Sequence[dict[str, Any]], criterion: str, last_key: str = "step"
                      ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The evaluations that carry every score ``criterion`` names, and their combined score."""
    names = [n for n in criterion.split("+") if n]
    if not names:
        raise ValueError(f"empty validator criterion {criterion!r}")

    def score(h: dict[str, Any], n: str):  # "last" scores the step: later is better
        return h.get(last_key) if n == "last" else h.get(f"score_{n}")

    cands = [h for h in history if all(score(h, n) is not None for n in names)]
    if not cands:
        raise ValueError(f"no evaluation in the history has the scores "
                         f"{[f'score_{n}' for n in names if n != 'last']} "
                         "(the run was made without these validators)")
    cols = [[float(score(h, n)) for h in cands] for n in names]
    return cands, (rank_mean_scores(cols) if len(names) > 1
                   else np.where(np.isfinite(cols[0]), cols[0], -np.inf))


def choose_by_validators(history: Sequence[dict[str, Any]], criterion: str = DEFAULT_VALIDATORS
                         ) -> dict[str, Any]:
    """The evaluation that label-free validators rank first in a run's history.

    Args:
        history: evaluations in step order, with ``score_<name>`` entries (higher is better).
        criterion: a validator name (``snd``), or names joined by ``+`` (``snd+source_val``):
            each evaluation's score rank within the history, normalised to [0, 1] and averaged
            over the validators (:func:`~gradversary.selection.ranking.rank_mean_scores`).
            ``last`` scores an evaluation by its step (as in the validators' ranking), so
            ``class_ami+last`` leans towards later checkpoints.

    Returns:
        the chosen history entry (the first of ties). Only evaluations that carry every named
        score are candidates; a non-finite score ranks lowest.

    Raises:
        ValueError: an empty criterion, or no evaluation carries all the named scores.
    """
    cands, score = _validator_scores(history, criterion)
    return cands[int(np.argmax(score))]


def rank_across_runs(histories: dict[str, tuple[Sequence[dict[str, Any]], float]],
                     criterion: str = DEFAULT_VALIDATORS) -> list[dict[str, Any]]:
    """Rank the evaluations of several runs together by label-free validators: choosing a
    setting (a schedule, a length, a weight) without target labels, as
    :func:`choose_by_validators` chooses a checkpoint within one run.

    Args:
        histories: run name -> (its evaluations with ``step`` and ``score_<name>``, the run's
            total steps). ``last`` scores an evaluation by its share of its own run's schedule
            (step / total), so runs of different lengths compare at their ends.
        criterion: as in :func:`choose_by_validators`; the rank mean is over the pooled
            evaluations.

    Returns:
        the pooled evaluations that carry the scores, best first (ties keep the given order),
        each with ``run``, ``share`` and ``combined`` (the criterion's score) added.

    Raises:
        ValueError: a total of steps that is not positive, or no evaluation with the scores.
    """
    pooled = []
    for name, (history, total) in histories.items():
        if not total or total <= 0:
            raise ValueError(f"run {name!r}: total steps must be positive, got {total!r}")
        pooled += [{**h, "run": name, "share": h["step"] / total} for h in history if "step" in h]
    cands, score = _validator_scores(pooled, criterion, last_key="share")
    order = sorted(range(len(cands)), key=lambda i: -score[i])  # stable: ties keep their order
    return [{**cands[i], "combined": float(score[i])} for i in order]


def validator_pick(summary: dict[str, Any], criterion: str = DEFAULT_VALIDATORS) -> dict[str, Any] | None:
    """The evaluation that label-free validators pick from a run summary's ``history``.

    Args:
        summary: a run summary (``Trainer.summary``) whose history holds ``score_<name>``.
        criterion: a validator or a rank mean of several (default :data:`DEFAULT_VALIDATORS`).

    Returns:
        ``{"criterion", "step", "target_test_acc"}``: the target accuracy of the evaluation the
        validators chose (read after the choice, which never sees it); None for a run made
        without the validators' scores (a warning says so when it has some scores, not these).
    """
    history = summary.get("history") or []
    try:
        pick = choose_by_validators(history, criterion)
    except ValueError as e:
        if any(k.startswith("score_") for h in history for k in h):
            warnings.warn(f"run {summary.get('run', '?')}: {e}; its validator-selected figure is n/a",
                          stacklevel=2)
        return None
    return {"criterion": criterion, "step": pick["step"], "target_test_acc": pick.get("target_test_acc")}
