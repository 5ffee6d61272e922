"""DANN step time over ERM step time on the same combined batch, measured in one process.

    python benchmarks/step_time.py [--repeats 7] [--steps 30] [--threads 2]

Both methods train the DANN paper's MNIST network (Figure 4) on the same 128 random 3x28x28
images: ERM on all 128 as labelled source, DANN on 64 source + 64 target (one forward of 128,
plus the domain head of 100 units). The two are timed in interleaved rounds and the median
ratio is printed, so the machine's drift affects both alike. It also reports the moons MLP.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradversary.data import DATask, DomainData
from gradversary.engine import Trainer, resolve_config
from gradversary.methods import Batch


def _task(shape, n=256):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, *shape, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return DATask(DomainData(x, y, "source"), DomainData(x.clone(), None, "target"), 10)


def _trainer(method, model, shape, batch):
    cfg = resolve_config({"method": {"name": method}, "model": model,
                          "train": {"steps": 10, "batch_size": batch, "progress": False}})
    return Trainer(cfg, run_dir="/tmp/gradversary-bench-unused", task=_task(shape))


def _time(tr, batch: Batch, steps: int) -> float:
    tr._set_progress(0.5)
    tr.train_step(batch)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step(batch)
    return (time.perf_counter() - t0) / steps


def measure(model: dict, shape, repeats: int, steps: int) -> dict:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(128, *shape, generator=g)
    y = torch.randint(0, 10, (128,), generator=g)
    erm, dann = _trainer("erm", model, shape, 128), _trainer("dann", model, shape, 128)
    b_erm, b_dann = Batch(x, y), Batch(x[:64], y[:64], x[64:])
    te, td = [], []
    for _ in range(repeats):
        te.append(_time(erm, b_erm, steps))
        td.append(_time(dann, b_dann, steps))
    ratios = [d / e for d, e in zip(td, te)]
    return {"erm_ms": 1e3 * statistics.median(te), "dann_ms": 1e3 * statistics.median(td),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128 (DANN: 64 + 64)")
    for name, model, shape in [("DANN MNIST CNN", {"name": "dann_mnist"}, (3, 28, 28)),
                               ("moons MLP 15-15", {"name": "mlp", "hidden": [15, 15]}, (2,))]:
        r = measure(model, shape, args.repeats, args.steps)
        print(f"{name:<16} ERM {r['erm_ms']:.2f} ms  DANN {r['dann_ms']:.2f} ms  "
              f"DANN/ERM {r['ratio']:.3f} (range {r['ratio_min']:.3f}-{r['ratio_max']:.3f})")


if __name__ == "__main__":
    main()
