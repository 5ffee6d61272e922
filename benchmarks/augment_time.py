"""The cost of batch augmentation per batch, beside a training step of the same batch size.

    python benchmarks/augment_time.py [--n 128] [--side 28] [--repeats 7]

Times :func:`gradversary.data.augment.augment_batch` on an (n, 1, side, side) batch (pad 2 +
random crop back to ``side`` + flip; a flip alone; a 32 -> 28 crop of 3-channel images), and
one ERM step of the DANN paper's MNIST network on that batch, interleaved so that the machine's
load slows both alike. Prints the median of ``repeats`` rounds, in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from gradversary.data.augment import AugmentConfig, augment_batch
from gradversary.models.base import create_model


def _ms(fn, reps: int) -> float:
    t = time.perf_counter()
    for i in range(reps):
        fn(i)
    return (time.perf_counter() - t) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--side", type=int, default=28)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.rand(args.n, 1, args.side, args.side)
    x3 = torch.rand(args.n, 3, args.side + 4, args.side + 4)
    y = torch.randint(0, 10, (args.n,))
    model = create_model("dann_mnist", (1, args.side, args.side), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(_):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    cases = {
        f"pad 2, crop {args.side}, flip": (x, AugmentConfig(crop=args.side, pad=2, flip=True)),
        "flip only": (x, AugmentConfig(flip=True)),
        f"3 x {args.side + 4}^2 -> crop {args.side}": (x3, AugmentConfig(crop=args.side)),
    }
    rounds: dict[str, list[float]] = {k: [] for k in [*cases, "ERM step (dann_mnist)"]}
    for _ in range(args.repeats):
        for name, (xb, cfg) in cases.items():
            rounds[name].append(_ms(lambda i, xb=xb, cfg=cfg: augment_batch(xb, cfg, 0, i), 50))
        rounds["ERM step (dann_mnist)"].append(_ms(step, 10))
    for name, ts in rounds.items():
        print(f"{name:<28} {statistics.median(ts):8.3f} ms  (batch {args.n})")


if __name__ == "__main__":
    main()
