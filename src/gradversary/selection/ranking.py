"""Ranking validators on finished runs: weighted Spearman correlation, regret, and the
leave-one-task-out choice of a default selection criterion.

A *checkpoint* is one evaluation of one run: its target accuracy (read only here, to judge the
validators, never to choose) and its validators' scores (higher is better). A *selection
group* is the set of checkpoints a user chooses among: one task, one method and one seed, over
every evaluation of every run of that cell (a hyper-parameter grid adds its runs to the group).

- Weighted Spearman correlation (Musgrave, Belongie & Lim, "Three New Validators and a
  Large-Scale Benchmark Ranking for Unsupervised Domain Adaptation", arXiv:2208.07360, and
  their code, powerful-benchmarker): the Pearson correlation of the ranks of the scores and of
  the accuracies, each checkpoint weighted by w_i = (d_i / max_j d_j)^2, d_i the dense rank of
  its *score* (so that what a validator ranks near the top counts most).
  ``weight_by="max"`` instead weights by the square of the larger of the two normalised ranks.
- Regret of a group: max accuracy (the oracle) minus the accuracy of the checkpoint with the
  highest score (the first of ties).
- Leave-one-task-out (LOTO): for each task family, the candidate criterion with the lowest mean
  regret over the *other* families is chosen, and its regret on the held-out family recorded;
  the mean of those is an honest estimate of the regret of the choice rule.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["average_ranks", "weighted_spearman", "regret", "rank_mean_scores",
           "LotoResult", "leave_one_task_out", "candidate_scores"]


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..N, ties sharing their average rank. Shape: (N,) -> (N,).

    Example:
        >>> average_ranks([10, 30, 20, 30]).tolist()
        [1.0, 3.5, 2.0, 3.5]
    """
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    return ranks


def _dense_ranks(x: np.ndarray) -> np.ndarray:
    return np.unique(x, return_inverse=True)[1].astype(float) + 1


def weighted_spearman(scores: Sequence[float], acc: Sequence[float], power: float = 2.0,
                      weight_by: str = "score") -> float:
    """Musgrave et al.'s weighted Spearman correlation of validator scores with accuracy.

    Args:
        scores: validator scores (N,), higher is better; non-finite scores count as the lowest.
        acc: target accuracies (N,).
        power: exponent of the weights.
        weight_by: ``score``, w_i = (dense rank of score_i / its max)^power (the authors'
            code); ``max``, w_i = max(r^s_i, r^a_i)^power with r the dense ranks divided by
            their maxima.

    Returns:
        the weighted Pearson correlation of the average ranks, in [-1, 1]; 0 when either
        side is constant.
    """
    s = np.asarray(scores, dtype=float)
    a = np.asarray(acc, dtype=float)
    if s.shape != a.shape or s.ndim != 1:
        raise ValueError(f"scores and acc must be 1-d of one length, got {s.shape}, {a.shape}")
    finite = np.isfinite(s)
    if not finite.any():
        return 0.0
    s = np.where(finite, s, s[finite].min() - 1.0)
    ds = _dense_ranks(s)
    w = ds / ds.max()
    if weight_by == "max":
        da = _dense_ranks(a)
        w = np.maximum(w, da / da.max())
    elif weight_by != "score":
        raise ValueError(f"weight_by must be 'score' or 'max', got {weight_by!r}")
    w = w ** power
    rs, ra = average_ranks(s), average_ranks(a)
    ms, ma = np.average(rs, weights=w), np.average(ra, weights=w)
    cov = np.sum(w * (rs - ms) * (ra - ma))
    vs, va = np.sum(w * (rs - ms) ** 2), np.sum(w * (ra - ma) ** 2)
    if vs <= 0 or va <= 0:
        return 0.0
    return float(cov / np.sqrt(vs * va))


def regret(scores: Sequence[float], acc: Sequence[float]) -> float:
    """Oracle accuracy minus the accuracy of the highest-scored checkpoint (first of ties;
    non-finite scores are never picked unless all are). Shape: (N,), (N,)."""
    s = np.asarray(scores, dtype=float)
    a = np.asarray(acc, dtype=float)
    s = np.where(np.isfinite(s), s, -np.inf)
    return float(a.max() - a[int(np.argmax(s))])


def rank_mean_scores(columns: Sequence[Sequence[float]]) -> np.ndarray:
    """Combine validators: the mean over validators of each checkpoint's rank normalised to
    [0, 1] within the group ((rank - 1) / (N - 1); 1 for a single checkpoint).
    Shape: V columns of (N,) -> (N,)."""
    out = []
    for c in columns:
        c = np.asarray(c, dtype=float)
        c = np.where(np.isfinite(c), c, -np.inf)
        r = average_ranks(c)
        out.append((r - 1) / (len(c) - 1) if len(c) > 1 else np.ones(1))
    return np.mean(out, axis=0)


def candidate_scores(group_scores: Mapping[str, Sequence[float]], max_combo: int = 3
                     ) -> dict[str, np.ndarray]:
    """Every candidate criterion's scores on one group: each validator alone, and the rank
    mean of every combination of 2..``max_combo`` validators (named ``a+b``)."""
    names = sorted(group_scores)
    out = {n: np.asarray(group_scores[n], dtype=float) for n in names}
    for k in range(2, max_combo + 1):
        for combo in itertools.combinations(names, k):
            out["+".join(combo)] = rank_mean_scores([group_scores[n] for n in combo])
    return out


@dataclass(frozen=True)
class LotoResult:
    """The leave-one-task-out choice.

    Args:
        chosen: the criterion chosen on all tasks (the default).
        per_task: for each held-out task, (criterion chosen without it, its regret there).
        loto_regret: mean over tasks of the held-out regrets.
        all_task_regret: mean over tasks of the chosen criterion's regret (in-sample).
    """

    chosen: str
    per_task: dict[str, tuple[str, float]]
    loto_regret: float
    all_task_regret: float


def leave_one_task_out(table: Mapping[str, Mapping[str, float]],
                       candidates: Sequence[str] | None = None) -> LotoResult:
    """Choose a criterion by leave-one-task-out regret.

    Args:
        table: ``table[criterion][task]`` = mean regret of the criterion on the task.
        candidates: criteria allowed (default: all in ``table``). Ties go to the first in
            ``candidates`` order.

    Returns:
        :class:`LotoResult`. Each criterion must have a regret on every task.
    """
    cands = list(candidates) if candidates is not None else list(table)
    tasks = sorted({t for c in cands for t in table[c]})
    for c in cands:
        missing = set(tasks) - set(table[c])
        if missing:
            raise ValueError(f"criterion {c!r} has no regret on tasks {sorted(missing)}")
    if len(tasks) < 2:
        raise ValueError("leave-one-task-out needs at least two tasks")

    def mean_over(c: str, ts: Sequence[str]) -> float:
        return float(np.mean([table[c][t] for t in ts]))

    def best(ts: Sequence[str]) -> str:
        return min(cands, key=lambda c: mean_over(c, ts))

    per_task = {}
    for t in tasks:
        c = best([u for u in tasks if u != t])
        per_task[t] = (c, float(table[c][t]))
    chosen = best(tasks)
    return LotoResult(chosen, per_task, float(np.mean([r for _, r in per_task.values()])),
                      mean_over(chosen, tasks))
