"""Run a short training and kill the process (os._exit) right after step KILL_AT.

``python _resume_child.py RUN_DIR KILL_AT [augment]``: the ``augment`` variant trains
:data:`CFG_AUGMENT` on :func:`image_task` (random crops, padding and flips of small images).
"""

import os
import sys

import torch

from gradversary.data import DATask, DomainData
from gradversary.engine import Trainer, resolve_config

CFG = {
    "method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [8]},
    "train": {"steps": 40, "eval_every": 10, "log_every": 5, "batch_size": 32, "progress": False,
              "seed": 11},
}
#: crops of 6 x 6 from 8 x 8 images padded by 1, flips; target augmented too
CFG_AUGMENT = {**CFG, "train": {**CFG["train"], "augment": {"crop": 6, "pad": 1, "flip": True}}}


def image_task(n: int = 96, side: int = 8) -> DATask:
    """Two classes of small grey images (a bright bar on the left or the right half, on noise);
    the target is the same, brighter and noisier. Shape: x (n, 1, side, side)."""
    g = torch.Generator().manual_seed(5)

    def domain(gain: float, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 2, (n,), generator=g)
        x = noise * torch.rand(n, 1, side, side, generator=g)
        col = torch.randint(0, side // 2, (n,), generator=g) + y * (side // 2)
        x[torch.arange(n), 0, :, col] += gain
        return x.clamp(0, 1), y

    xs, ys = domain(0.8, 0.2)
    xt, yt = domain(1.0, 0.4)
    return DATask(DomainData(xs, ys, "source"), DomainData(xt, yt, "target"), 2,
                  eval={"target_test": DomainData(xt, yt, "target_test")}, name="bars")


def main(run_dir: str, kill_at: int, variant: str = "plain") -> None:
    def kill(info):
        if info.step == kill_at:
            os._exit(17)  # no cleanup, like a SIGKILL

    if variant == "augment":
        Trainer(resolve_config(CFG_AUGMENT), run_dir=run_dir, task=image_task(), callbacks=[kill]).fit()
    else:
        Trainer(resolve_config(CFG), run_dir=run_dir, callbacks=[kill]).fit()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
