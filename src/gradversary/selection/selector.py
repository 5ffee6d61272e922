"""The checkpoint selector: what each evaluation scores without target labels, and which
checkpoint is kept.

:class:`CheckpointSelector` owns the selection state of a run: the fixed subsets that the
criterion's domain classifier is fitted on, the fixed samples the label-free validators see, and
``best``, the selected checkpoint so far. The engine asks it for the selection figures at each
evaluation (:meth:`CheckpointSelector.score`) and then whether the checkpoint is the new pick
(:meth:`CheckpointSelector.update`); writing ``best.pt`` stays the engine's job.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..data.task import DomainData
from .criteria import checkpoint_risk, robust_risk
from .validators import build_inputs, resolve_validators, score_validators

__all__ = ["CheckpointSelector"]


def _subset(x: Tensor, m: int, g: torch.Generator) -> Tensor:
    return x[torch.randperm(len(x), generator=g)[:m]]


class CheckpointSelector:
    """Scores checkpoints without target labels and keeps the selected one.

    Args:
        criterion: ``last`` or a registered criterion (:data:`gradversary.selection.CRITERIA`).
        rule: ``min`` (lowest risk) or ``one_se`` (latest within one SE of the minimum).
        validators: label-free validators to score at each evaluation (names or a group name,
            see :func:`gradversary.selection.validators.resolve_validators`).
        max_fit: examples per domain for the criterion's fit and the validators' samples.
        seed: the run's seed (the subsets are drawn from their own generators).
        x_s, x_t: the source and target training inputs, (N_s, *) and (N_t, *).
        robust: ``robust_val``'s ``(eps, steps, n)``.
    """

    def __init__(self, criterion: str, rule: str, validators: Any, max_fit: int, seed: int,
                 x_s: Tensor, x_t: Tensor, robust: tuple[float, int, int] | None = None):
        self.criterion, self.rule, self.seed, self.robust = criterion, rule, seed, robust
        self.best: dict[str, Any] = {}
        if criterion == "robust_val" and robust is None:
            raise ValueError("robust_val needs robust=(eps, steps, n)")
        if criterion not in ("last", "robust_val"):
            g = torch.Generator().manual_seed(seed + 104729)
            self.fit_s, self.fit_t = _subset(x_s, max_fit, g), _subset(x_t, max_fit, g)
        self.validators = resolve_validators(validators)
        if self.validators:  # fixed samples, so that successive evaluations are comparable
            g = torch.Generator().manual_seed(seed + 130363)
            self.val_t, self.val_s = _subset(x_t, max_fit, g), _subset(x_s, max_fit, g)

    @classmethod
    def from_config(cls, selection: Any, seed: int, x_s: Tensor, x_t: Tensor) -> CheckpointSelector:
        """From a run's ``selection`` section (criterion, rule, validators, max_fit, robust_*)."""
        return cls(selection.criterion, selection.rule, selection.validators, selection.max_fit,
                   seed, x_s, x_t, (selection.robust_eps, selection.robust_steps, selection.robust_n)
                   if selection.criterion == "robust_val" else None)

    def score(self, features: Callable[[Tensor], Tensor], logits: Callable[[Tensor], Tensor],
              val: DomainData | None, device: torch.device,
              model: torch.nn.Module | None = None) -> tuple[dict[str, float], dict[str, float]]:
        """The validators' scores (``score_<name>``) and the criterion's ``select_risk``,
        ``select_ess`` and ``select_se`` for the model given by ``features``/``logits`` (the
        module ``model`` itself for ``robust_val``'s attack); and the wall-clock seconds they
        took, by part. ``val`` is the held-out labelled source."""
        metrics: dict[str, float] = {}
        seconds: dict[str, float] = {}
        if self.validators:
            t0 = time.perf_counter()
            inp = build_inputs(logits, features, self.val_t, self.val_s,
                               val.x if val is not None else None, val.y if val is not None else None,
                               device, seed=self.seed)
            scores, seconds = score_validators(self.validators, inp)
            seconds = {"inputs": time.perf_counter() - t0 - sum(seconds.values()), **seconds}
            metrics.update(scores)
        if self.criterion == "robust_val":
            if model is None:
                raise ValueError("robust_val attacks the model: pass it to score()")
            t0 = time.perf_counter()
            eps, steps, n = self.robust
            r = robust_risk(model, val.x[:n].to(device), val.y[:n].to(device), eps, steps, self.seed)
            seconds["robust_val"] = time.perf_counter() - t0
        elif self.criterion != "last":
            r = checkpoint_risk(self.criterion, features, logits, self.fit_s, self.fit_t, val.x,
                                val.y, device)
        if self.criterion != "last":
            metrics["select_risk"], metrics["select_ess"] = r["risk"], r["ess"]
            metrics["select_se"] = r["se"]
        return metrics, seconds

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """Whether the checkpoint of ``step`` scored ``metrics`` is the new pick (then the
        caller saves it as ``best.pt``). With ``rule: min`` the lowest risk so far; with
        ``one_se`` the latest checkpoint whose risk is within one standard error of the
        minimum so far. Once the final minimum has been seen, the minimum no longer moves, so
        the last checkpoint picked is exactly the latest one within one SE of the final
        minimum."""
        risk = metrics.get("select_risk")
        if risk is None:
            return False
        lo, lo_se = self.best.get("min_risk", math.inf), self.best.get("min_se", 0.0)
        if risk < lo:
            lo, lo_se = risk, metrics.get("select_se", 0.0)
        if self.rule == "one_se":
            keep = risk <= lo + lo_se
        else:
            keep = risk < self.best.get("risk", math.inf)
        if not keep:
            self.best.update(min_risk=lo, min_se=lo_se)
            return False
        self.best = {"step": step, "risk": risk, "metrics": dict(metrics), "min_risk": lo,
                     "min_se": lo_se}
        return True

    def summary(self, step: int, last_eval: dict[str, float]) -> dict[str, Any]:
        """The summary's ``selection`` entry: the pick, or the last evaluation without one."""
        pick = ({"step": self.best["step"], "metrics": self.best["metrics"]} if self.best
                else {"step": step, "metrics": dict(last_eval)})
        return {"criterion": self.criterion, "rule": self.rule, **pick}

    def state_dict(self) -> dict[str, Any]:
        return {"best": json.dumps(self.best)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = json.loads(state.get("best", "{}"))
