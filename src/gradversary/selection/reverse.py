"""Reverse validation (Ganin et al., JMLR 2016, section 5.1.2; after Zhong et al., ECML 2010).

Scores a hyper-parameter setting without target labels:

1. split the source and the target 90/10: S', S_v and T', T_v;
2. train the model eta on S' (labelled) and T' (unlabelled);
3. self-label T' with eta;
4. train a *reverse* model eta_r with the self-labelled T' as its labelled source and S' as its
   unlabelled target (same method and hyper-parameters);
5. score eta_r on the held-out source S_v: the reverse validation accuracy.

A good setting makes eta label the target well, so that a model trained on eta's target labels
transfers back to the source. The held-out pieces also serve early stopping (step 6 of the
paper): the source risk on S_v and the self-labelled risk on T_v.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.task import DATask, DomainData

__all__ = ["ReverseValidation", "split_task", "reverse_validation"]

#: a training function: a task in, a predictor (inputs (N, *) -> logits (N, K)) out
FitFn = Callable[[DATask], Callable[[Tensor], Tensor]]


@dataclass(frozen=True)
class ReverseValidation:
    """The reverse validation score and its parts.

    Args:
        reverse_acc: accuracy of the reverse model on held-out source (higher is better).
        source_val_acc: accuracy of the forward model on held-out source.
        target_self_agreement: agreement of the forward model's labels on held-out target
            with the reverse model's predictions there.
    """

    reverse_acc: float
    source_val_acc: float
    target_self_agreement: float


def split_task(task: DATask, holdout: float = 0.1, seed: int = 0) -> tuple[DATask, DomainData, DomainData]:
    """Split a task's source and target into train (90%) and held-out (10%) parts.

    Returns (task on S' and T', held-out source S_v with labels, held-out target T_v unlabelled).
    """
    g = torch.Generator().manual_seed(seed)

    def cut(d: DomainData):
        idx = torch.randperm(len(d), generator=g)
        k = max(1, round(holdout * len(d)))
        keep, held = idx[k:], idx[:k]
        y = d.y
        return (DomainData(d.x[keep], y[keep] if y is not None else None, d.name),
                DomainData(d.x[held], y[held] if y is not None else None, d.name + "_val"))

    s_tr, s_val = cut(task.source)
    t_tr, t_val = cut(task.target)
    sub = DATask(s_tr, t_tr, task.num_classes, eval={"source_val": s_val}, name=task.name + "-rv")
    return sub, s_val, t_val


@torch.no_grad()
def _predict(predict: Callable[[Tensor], Tensor], x: Tensor, bs: int = 1024) -> Tensor:
    return torch.cat([predict(x[i:i + bs]).argmax(-1).cpu() for i in range(0, len(x), bs)])


def reverse_validation(task: DATask, fit: FitFn, holdout: float = 0.1, seed: int = 0) -> ReverseValidation:
    """Run reverse validation for one setting, with ``fit`` training a model on a task.

    Args:
        task: the adaptation task (its target labels, if any, are never used).
        fit: trains the method with the setting under test and returns a predictor.
        holdout: the held-out share of each domain.
        seed: seeds the split.
    """
    sub, s_val, t_val = split_task(task, holdout, seed)
    forward = fit(sub)
    t_labels = _predict(forward, sub.target.x)
    if t_labels.unique().numel() < 2:
        # a degenerate labelling cannot train a reverse classifier: the worst score
        return ReverseValidation(0.0, float((_predict(forward, s_val.x) == s_val.y).float().mean()), 0.0)
    rev_task = DATask(DomainData(sub.target.x, t_labels, "target_selflabelled"),
                      DomainData(sub.source.x, None, "source_unlabelled"),
                      task.num_classes, eval={}, name=task.name + "-reverse")
    reverse = fit(rev_task)
    rev_acc = float((_predict(reverse, s_val.x) == s_val.y).float().mean())
    src_acc = float((_predict(forward, s_val.x) == s_val.y).float().mean())
    agree = float((_predict(reverse, t_val.x) == _predict(forward, t_val.x)).float().mean())
    return ReverseValidation(rev_acc, src_acc, agree)
