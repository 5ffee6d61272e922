"""What every multi-task method shares: per-task losses, initial losses, per-task evaluation.

A multi-task method trains a :class:`~gradversary.models.multitask.MultiTaskResNet` (a shared
encoder, the ``class`` head and dense decoders) on batches whose ``y_s`` are the class labels
and whose ``targets`` hold one tensor per dense task. Subclasses only say how the task losses
J_1..J_T are combined into the one loss the engine backpropagates.

Losses: J_class = mean_n CE(logits_n, y_n); J_k = mean_n mean_(c,h,w) (out_k - t_k)^2 for a
dense task k. Evaluation: class accuracy, cross-entropy and % error; RMSE of every dense task,
sqrt of the squared error averaged over every pixel, channel and example of the split (Table 4
of Sinha et al., arXiv:1806.08028).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data.task import DomainData
from ...errors import ConfigError
from ...models.base import FeatureClassifier
from ..base import Batch, Method

__all__ = ["MultiTaskMethod"]


class MultiTaskMethod(Method):
    """Base of the multi-task methods (equal weights, uncertainty, GradNorm, GREAT-MTL).

    Args:
        model: a multi-task model: ``tasks`` (``class`` first), ``encode(x)`` -> shared feature,
            ``decode(task, z)`` -> that task's output.

    Buffers:
        initial_losses: J_i at the first training step (zeros until then, with
            ``has_initial`` false), saved with the method, for the methods that normalise by it.

    Shape:
        batch.x_s: (N, C, H, W); batch.y_s: (N,); batch.targets[k]: (N, C_k, H, W) for every
        dense task k of the model.
    """

    multi_task = True
    initial_losses: Tensor
    has_initial: Tensor

    def __init__(self, model: FeatureClassifier):
        if not all(hasattr(model, a) for a in ("tasks", "encode", "decode")):
            raise ConfigError(f"{type(self).__name__} needs a multi-task model (e.g. mtl_resnet), "
                              f"got {type(model).__name__}")
        super().__init__(model)
        self.tasks: tuple[str, ...] = tuple(model.tasks)
        self.register_buffer("initial_losses", torch.zeros(len(self.tasks)))
        self.register_buffer("has_initial", torch.tensor(False))

    def task_losses(self, outputs: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """Per-example losses of every task, stacked in ``self.tasks`` order. Shape: (T, N)."""
        targets = batch.targets or {}
        missing = [t for t in self.tasks[1:] if t not in targets]
        if missing:
            raise ConfigError(f"the batch lacks targets for the tasks {missing}; use a multi-task "
                              f"dataset (e.g. cifar10_mtl) whose targets match the model's tasks")
        rows = [F.cross_entropy(outputs["class"], batch.y_s, reduction="none")]
        for t in self.tasks[1:]:
            out, tgt = outputs[t], targets[t]
            if out.shape != tgt.shape:
                raise ValueError(f"task {t!r}: the decoder gives {tuple(out.shape)}, the target "
                                 f"is {tuple(tgt.shape)}")
            rows.append((out - tgt).square().flatten(1).mean(1))
        return torch.stack(rows)

    def capture_initial(self, losses: Tensor) -> Tensor:
        """Record J_i(0) on the first training step; return the recorded values. Shape: (T,)."""
        if self.training and not bool(self.has_initial):
            self.initial_losses.copy_(losses.detach())
            self.has_initial.fill_(True)
        return self.initial_losses

    def parts(self, losses: Tensor) -> dict[str, Tensor]:
        """Named task losses J_i (``<task>_loss``) for the training log. losses: (T,)."""
        return {f"{t}_loss": v for t, v in zip(self.tasks, losses)}

    @staticmethod
    def class_accuracy(outputs: Mapping[str, Tensor], y: Tensor) -> Tensor:
        return (outputs["class"].detach().argmax(-1) == y).float().mean()

    @torch.no_grad()
    def evaluate(self, splits: Mapping[str, DomainData], batch_size: int = 1024) -> dict[str, float]:
        """Per split: ``<split>_acc``, ``_loss`` (CE), ``_class_err`` (%), ``_<task>_rmse``."""
        out: dict[str, float] = {}
        dev = self.device
        for name, d in splits.items():
            if d.y is None:
                continue
            correct, ce, sq = 0.0, 0.0, {t: 0.0 for t in self.tasks[1:]}
            count = {t: 0 for t in self.tasks[1:]}
            for i in range(0, len(d), batch_size):
                z = self.model.encode(d.x[i:i + batch_size].to(dev))
                y = d.y[i:i + batch_size].to(dev)
                logits = self.model.decode("class", z)
                correct += float((logits.argmax(-1) == y).sum())
                ce += float(F.cross_entropy(logits, y, reduction="sum"))
                for t in self.tasks[1:]:
                    if d.targets is None or t not in d.targets:
                        continue
                    tgt = d.targets[t][i:i + batch_size].to(dev)
                    sq[t] += float((self.model.decode(t, z) - tgt).square().sum())
                    count[t] += tgt.numel()
            out[f"{name}_acc"] = correct / len(d)
            out[f"{name}_loss"] = ce / len(d)
            out[f"{name}_class_err"] = 100.0 * (1.0 - correct / len(d))
            for t in self.tasks[1:]:
                if count[t]:
                    out[f"{name}_{t}_rmse"] = math.sqrt(sq[t] / count[t])
        return out

    def _weights_param_groups(self, extra: nn.Module | list[nn.Parameter], name: str) -> dict[str, list[dict]]:
        """"main" (the model) and ``name`` (``extra``'s parameters)."""
        params = list(extra.parameters()) if isinstance(extra, nn.Module) else list(extra)
        return {"main": [{"params": [p for p in self.model.parameters() if p.requires_grad]}],
                name: [{"params": params}]}
