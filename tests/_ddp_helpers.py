"""The per-rank entry point of the DDP test, and the mean-reduction trap as a method."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from gradversary.methods.base import METHODS
from gradversary.methods.double_backprop import DoubleBackprop


@dataclass
class MeanReducedConfig:
    weight: float = 500.0  # the mean-reduced penalty is ~N^-2 smaller: weigh it up to show


class MeanReducedDoubleBackprop(DoubleBackprop):
    """The trap: the input gradient of a mean-reduced loss scales with 1 / N_local."""

    def per_example_input_gradient(self, ce):
        return ce.mean()


if "double_backprop_mean_test" not in METHODS:
    METHODS.register("double_backprop_mean_test", MeanReducedConfig)(MeanReducedDoubleBackprop)

METHOD = {"sum": {"name": "double_backprop", "weight": 0.5},
          "mean": {"name": "double_backprop_mean_test"},
          # GRE(AT+CE): a second network on double-backprop gradients, a second optimizer, the
          # GREACE-adjusted cross-entropy; constant coefficients so every step uses them
          "great_greace": {"name": "great_greace", "alpha_schedule": {"name": "constant", "value": 1.0},
                           "beta_schedule": {"name": "constant", "value": 2.0}},
          # DANN on small images with random crops, padding and flips of source and target:
          # each rank must augment its shard exactly as one process augments those rows
          "augment": {"name": "dann"},
          # per-example random starts: each rank must draw its rows of the global batch's noise
          "pgd_at": {"name": "pgd_at", "eps": 0.1, "step_size": 0.05, "steps": 2},
          "fast_at": {"name": "fast_at", "eps": 0.1}}
IMAGES = {"augment", "pgd_at", "fast_at"}  # trained on small images in [0, 1]


def config(reduction: str, seed: int = 0):
    from gradversary.engine import resolve_config

    optim = {"name": "sgd", "lr": 0.1, "momentum": 0.9}
    if reduction == "great_greace":
        optim["groups"] = {"aux": {"name": "sgd", "lr": 0.1, "momentum": 0.9}}
    return resolve_config({
        "method": METHOD[reduction],
        "model": {"name": "mlp", "hidden": [16], "activation": "tanh"},
        "optim": optim,
        "train": {"steps": 6, "batch_size": 64, "eval_every": 3, "progress": False, "seed": seed,
                  **({"augment": {"crop": 6, "pad": 1, "flip": True}} if reduction == "augment" else {})},
    })


def final_params(reduction: str, run_dir: str):
    from _resume_child import image_task

    from gradversary.engine import Trainer

    tr = Trainer(config(reduction), run_dir=run_dir, task=image_task() if reduction in IMAGES else None)
    tr.fit()
    return tr, {k: v.detach().clone() for k, v in tr.method.state_dict().items()}


def rank_main(reduction: str, out_dir: str) -> None:
    """One rank of the test, run by :func:`gradversary.engine.distributed.spawn_ranks`."""
    torch.set_num_threads(1)
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    tr, params = final_params(reduction, os.path.join(out_dir, "run"))
    assert tr.dist.world_size == world
    assert isinstance(tr.net, torch.nn.parallel.DistributedDataParallel)
    assert tr.net.static_graph is False
    torch.save(params, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
