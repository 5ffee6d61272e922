"""A method with a double-backprop term, and the per-rank entry point of the DDP test."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from gradversary.functional import input_gradient
from gradversary.methods.base import METHODS, Batch, Method, MethodOutput


@dataclass
class GradPenaltyConfig:
    weight: float = 0.5
    reduction: Literal["sum", "mean"] = "sum"


class GradPenalty(Method):
    """CE plus weight * mean_i ||d CE_i / d x_i||^2 (a double-backprop term)."""

    def __init__(self, model, cfg=None):
        super().__init__(model)
        self.cfg = cfg or GradPenaltyConfig()

    def forward(self, batch: Batch) -> MethodOutput:
        x = batch.x_s.clone().requires_grad_()
        ce = F.cross_entropy(self.model(x), batch.y_s, reduction="none")
        # The trap under test: a mean-reduced loss scales the input gradient by 1 / N_local.
        reduced = ce.sum() if self.cfg.reduction == "sum" else ce.mean()
        g = input_gradient(reduced, x, create_graph=True)
        penalty = g.flatten(1).square().sum(1).mean()
        loss = ce.mean() + self.cfg.weight * penalty
        return MethodOutput(loss, {"task_loss": ce.mean(), "penalty": penalty})


if "grad_penalty_test" not in METHODS:
    METHODS.register("grad_penalty_test", GradPenaltyConfig)(GradPenalty)


def config(reduction: str, seed: int = 0):
    from gradversary.engine import resolve_config

    return resolve_config({
        # with a mean-reduced gradient the penalty is ~N^-2 smaller: weigh it up so the
        # trap shows clearly
        "method": {"name": "grad_penalty_test", "reduction": reduction,
                   "weight": 0.5 if reduction == "sum" else 500.0},
        "model": {"name": "mlp", "hidden": [16], "activation": "tanh"},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"steps": 6, "batch_size": 64, "eval_every": 3, "progress": False, "seed": seed},
    })


def final_params(reduction: str, run_dir: str):
    from gradversary.engine import Trainer

    tr = Trainer(config(reduction), run_dir=run_dir)
    tr.fit()
    return tr, {k: v.detach().clone() for k, v in tr.method.state_dict().items()}


def rank_main(rank: int, world: int, port: int, reduction: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    tr, params = final_params(reduction, os.path.join(out_dir, "run"))
    assert tr.dist.world_size == world
    assert isinstance(tr.net, torch.nn.parallel.DistributedDataParallel)
    assert tr.net.static_graph is False
    torch.save(params, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
