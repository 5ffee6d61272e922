"""The gap between 2-process gloo DDP and one process on the global batch.

    python benchmarks/ddp_equality.py [--steps 20]

Trains double backprop (a loss with a second-order term) and DANN for a few steps, once in one
process and once on two gloo ranks (torch.multiprocessing), and prints the largest absolute
parameter difference, as the DDP equality figure.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile

import torch
import torch.multiprocessing as mp

from gradversary.engine import Trainer, resolve_config

CONFIGS = {
    "double_backprop": {"method": {"name": "double_backprop", "weight": 0.5},
                        "model": {"name": "mlp", "hidden": [32], "activation": "tanh"}},
    "dann": {"method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [32]}},
}


def _cfg(name: str, steps: int):
    return resolve_config({**CONFIGS[name], "optim": {"lr": 0.05},
                           "train": {"steps": steps, "batch_size": 64, "eval_every": 0,
                                     "progress": False}})


def _params(name, steps, run_dir):
    tr = Trainer(_cfg(name, steps), run_dir=run_dir)
    tr.fit()
    return {k: v.detach().clone() for k, v in tr.method.state_dict().items()}


def _rank(rank, port, name, steps, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.save(_params(name, steps, os.path.join(out, "ddp")), os.path.join(out, f"r{rank}.pt"))
    import torch.distributed as dist

    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in CONFIGS:
        with tempfile.TemporaryDirectory() as out:
            single = _params(name, args.steps, os.path.join(out, "single"))
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            mp.spawn(_rank, args=(port, name, args.steps, out), nprocs=2, join=True)
            r0 = torch.load(os.path.join(out, "r0.pt"), weights_only=True)
            r1 = torch.load(os.path.join(out, "r1.pt"), weights_only=True)
        gap = max(float((single[k] - r0[k]).abs().max()) for k in single)
        ranks = max(float((r1[k] - r0[k]).abs().max()) for k in r0)
        print(f"{name:<16} {args.steps} steps: max |DDP(2 ranks) - single| = {gap:.2e}; "
              f"max |rank0 - rank1| = {ranks:.2e}")


if __name__ == "__main__":
    main()
