"""Step time of every defense over ERM's on the same batch, on the MNIST fast CNN, in one process.

    python benchmarks/great_step_time.py [--steps 20] [--threads 1] [--skip pgd_at]

Every config of ``configs/great/convergence/`` (the DANN paper's MNIST network ``dann_mnist``,
no BatchNorm; Adam; the GREAT family's auxiliary network and its optimizer) is built on one
batch of 128 random 1x28x28 images and stepped in turn, one step each per round
(``gradversary.bench.step_time.interleaved_step_times``), at mid-training (progress 0.5, so
alpha and beta are non-zero). Printed: ms per step and the ratio to ERM's step in the same
rounds (the issue's goal: GREAT at most 3.5x on the faithful maths). The FGSM 50/50 baseline is
timed on its adversarial steps (its coin forced to "adversarial"); a clean step costs as ERM's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from gradversary.analysis.step_time import interleaved_step_times
from gradversary.data import DATask, DomainData
from gradversary.engine import Trainer, resolve_config
from gradversary.methods import Batch

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "great" / "convergence"
ORDER = ("erm", "adversarial_training", "fast_at", "pgd_at", "great", "greace", "greace_prob",
         "greace_centered", "great_greace", "great_greace_prob")


def _task(n: int = 256) -> DATask:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return DATask(DomainData(x, y, "source"), DomainData(x.clone(), None, "target"), 10)


def measure(steps: int, threads: int, names=ORDER) -> dict[str, tuple[float, float]]:
    """name -> (ms per step, ratio to ERM's median step in the same rounds)."""
    g = torch.Generator().manual_seed(1)
    batch = Batch(torch.rand(128, 1, 28, 28, generator=g), torch.randint(0, 10, (128,), generator=g))
    trainers = {}
    for name in names:
        raw = yaml.safe_load((CONFIG_DIR / f"mnist_{name}.yaml").read_text())
        raw["train"] = {"steps": 10, "batch_size": 128, "progress": False, "eval_every": 0}
        tr = Trainer(resolve_config(raw), persist=False, task=_task())
        if name == "adversarial_training":
            tr.method.coin = lambda: True
        tr._set_progress(0.5)
        trainers[name] = tr
    med = interleaved_step_times(trainers, steps, batch, threads=threads)
    return {k: (1e3 * v, v / med["erm"]) for k, v in med.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip", default="", help="comma-separated configs to leave out")
    args = ap.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    names = [n for n in ORDER if n not in skip or n == "erm"]
    res = measure(args.steps, args.threads, names)
    print(f"torch {torch.__version__}; dann_mnist on 1x28x28, batch 128, {args.threads} thread(s), "
          f"median of {args.steps} interleaved steps")
    for name, (ms, ratio) in res.items():
        print(f"  {name:<22} {ms:8.1f} ms  x ERM {ratio:6.2f}")


if __name__ == "__main__":
    main()
