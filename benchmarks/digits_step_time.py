"""The digits recipes' training step (``configs/digits/``) against a plain PyTorch loop of the
same recipe, on the same batch, timed side by side in one process.

    python benchmarks/digits_step_time.py [--steps 30] [--threads 1] [--out docs/results/step_time_digits.md]

For source-only, DANN, CDAN and MDD (MNIST -> USPS configs: LeNet with the 256 BN bottleneck, or
MDD's 1024 bottleneck and heads), the engine's ``train_step`` and a hand-written loop (plain
``nn.Sequential`` modules in NCHW, a GRL ``autograd.Function``, ``torch.optim.SGD`` with
Nesterov, the learning rate set by hand each step) run in turn, one step each per round, on
one batch of 128 source + 128 target random 1x28x28 images (source-only: the 256 as labelled
source, "the same combined batch"). The MNIST -> MNIST-M row's recipe
(``mnist_mnistm_bn_decay_dann.yaml``: fungtion/DANN's BatchNorm network on 3x28x28 images, one
pass per domain, the 100-unit BatchNorm domain head, Adam with the inverse decay) is timed the
same way against its own plain loop. Prints the median ms per step, ours / plain, each method
over ERM, and the share of the step spent in the domain discriminator (its forward and
backward alone on the same features, timed in the same rounds). ``--out`` also writes them as a
results file with the issue's targets (ours / plain <= 1.05) and the machine's load average.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gradversary.config_files import read_config_file
from gradversary.data import DATask, DomainData
from gradversary.engine import Trainer, resolve_config
from gradversary.methods import Batch
from gradversary.report.markdown import markdown_table, write_script_results

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "digits"


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.coeff * g, None


def _lenet(bottleneck: int, drop_bottleneck: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(20, 50, 5), nn.Dropout2d(0.5),
        nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(500, bottleneck), nn.BatchNorm1d(bottleneck), nn.ReLU(),
        *([nn.Dropout(drop_bottleneck)] if drop_bottleneck else []))


def _disc(fin: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(fin, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
                         nn.Linear(1024, 1024), nn.BatchNorm1d(1024), nn.ReLU(), nn.Linear(1024, 1))


class Plain:
    """One method's recipe written as a plain loop step: ``step(x_s, y_s, x_t, i)``."""

    def __init__(self, kind: str, lr: float, wd: float, lr_gamma: float):
        self.kind = kind
        mdd = kind == "mdd"
        self.backbone = _lenet(1024 if mdd else 256, 0.5 if mdd else 0.0)
        fdim = 1024 if mdd else 256
        if mdd:
            self.head = nn.Sequential(nn.Linear(fdim, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10))
            self.adv = nn.Sequential(nn.Linear(fdim, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10))
        else:
            self.head = nn.Linear(fdim, 10)
            self.adv = _disc(fdim * 10 if kind == "cdan" else fdim) if kind in ("dann", "cdan") else nn.Identity()
        params = [p for m in (self.backbone, self.head, self.adv) for p in m.parameters()]
        self.opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd, nesterov=True)
        self.lr, self.lr_gamma = lr, lr_gamma
        for m in (self.backbone, self.head, self.adv):
            m.train()

    def step(self, x_s, y_s, x_t, i: int) -> None:
        for g in self.opt.param_groups:
            g["lr"] = self.lr * (1 + self.lr_gamma * i) ** -0.75
        n = x_s.shape[0]
        norm = lambda x: (x - 0.5) / 0.5  # noqa: E731
        if self.kind == "erm":
            loss = F.cross_entropy(self.head(self.backbone(norm(x_s))), y_s)
        else:
            f = self.backbone(norm(torch.cat([x_s, x_t])))
            y = self.head(f)
            loss = F.cross_entropy(y[:n], y_s)
            lam = 2 / (1 + math.exp(-i / 1000)) - 1
            if self.kind == "mdd":
                a = self.adv(_Reverse.apply(f, 0.1 * lam))
                h = y.detach().argmax(1)
                p_t = F.softmax(a[n:], 1).gather(1, h[n:, None]).squeeze(1)
                loss = loss + 4.0 * F.cross_entropy(a[:n], h[:n]) - torch.log(
                    torch.clamp(1 - p_t + 1e-6, max=1.0)).mean()
            else:
                if self.kind == "cdan":
                    g = F.softmax(y, 1).detach()
                    f = torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)
                d = self.adv(_Reverse.apply(f, lam)).squeeze(1)
                lab = torch.cat([torch.ones(n), torch.zeros(x_t.shape[0])])
                loss = loss + F.binary_cross_entropy_with_logits(d, lab)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


class PlainPort:
    """The MNIST -> MNIST-M recipe as a plain loop step: fungtion/DANN's network (conv 64 and
    50 with BatchNorm, Dropout2d, FC 100-100 with BatchNorm and one dropout), one pass per
    domain, the discriminator on both domains' features at once, Adam with the inverse decay,
    the domain loss weighted 2."""

    def __init__(self):
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 5), nn.BatchNorm2d(64), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(64, 50, 5),
            nn.BatchNorm2d(50), nn.Dropout2d(0.5), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(800, 100), nn.BatchNorm1d(100), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(100, 100), nn.BatchNorm1d(100), nn.ReLU(), nn.Linear(100, 10))
        self.disc = nn.Sequential(nn.Linear(800, 100), nn.BatchNorm1d(100), nn.ReLU(), nn.Linear(100, 1))
        self.opt = torch.optim.Adam([p for m in (self.features, self.head, self.disc) for p in m.parameters()],
                                    lr=1e-3)

    def step(self, x_s, y_s, x_t, p: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = 1e-3 * (1 + 10 * p) ** -0.75
        n = x_s.shape[0]
        f = torch.cat([self.features((x_s - 0.5) / 0.5), self.features((x_t - 0.5) / 0.5)])
        loss = F.cross_entropy(self.head(f[:n]), y_s)
        lam = 2 / (1 + math.exp(-10 * p)) - 1
        d = self.disc(_Reverse.apply(f, lam)).squeeze(1)
        lab = torch.cat([torch.ones(n), torch.zeros(x_t.shape[0])])
        loss = loss + 2.0 * F.binary_cross_entropy_with_logits(d, lab)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def _trainer(kind: str) -> Trainer:
    port = kind == "dann_port"
    name = "mnist_mnistm_bn_decay_dann" if port else f"mnist_usps_{kind if kind != 'erm' else 'source_only'}"
    raw = read_config_file(CONFIGS / f"{name}.yaml")
    raw["train"] = {**raw["train"], "batch_size": 256, "progress": False, "eval_every": 0, "bn_stats": "running"}
    raw["selection"] = {"criterion": "last"}
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(512, 3 if port else 1, 28, 28, generator=g), torch.randint(0, 10, (512,), generator=g)
    task = DATask(DomainData(x, y, "source"), DomainData(x.clone(), None, "target"), 10)
    tr = Trainer(resolve_config(raw), persist=False, task=task)
    tr._set_progress(0.2)
    return tr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write the figures as a results file")
    args = ap.parse_args(argv)
    t_start, load0 = time.perf_counter(), os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(256, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    recipe = {"erm": (0.01, 5e-4, 3e-4), "dann": (0.01, 1e-3, 1e-3), "cdan": (0.01, 1e-3, 1e-3),
              "mdd": (0.01, 5e-4, 2e-4)}
    ours = {k: _trainer(k) for k in recipe}
    plain = {k: Plain(k, *v) for k, v in recipe.items()}
    ours["dann_port"], plain["dann_port"] = _trainer("dann_port"), PlainPort()
    discs = {k: ours[k].method.discriminator for k in ("dann", "cdan", "dann_port")}
    din = {"dann": torch.randn(256, 256), "cdan": torch.randn(256, 2560), "dann_port": torch.randn(256, 800)}
    batches = {k: Batch(x, y) if k == "erm" else Batch(x[:128], y[:128], x[128:]) for k in recipe}
    x3 = torch.rand(256, 3, 28, 28, generator=g)
    batches["dann_port"] = Batch(x3[:128], y[:128], x3[128:])
    labels = {"erm": "source-only (ERM)", "dann": "DANN", "cdan": "CDAN", "mdd": "MDD",
              "dann_port": "DANN, MNIST -> MNIST-M port (BatchNorm, Adam)"}
    times: dict[str, list[float]] = {}

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        fn(*args)
        times.setdefault(name, []).append(time.perf_counter() - t0)

    def disc_step(k):
        d = din[k].requires_grad_()
        discs[k](d).sum().backward()

    for r in range(args.steps + 1):
        for k in labels:
            b = batches[k]
            timed(f"ours/{k}", ours[k].train_step, b)
            xs, ys, xt = (b.x_s, b.y_s, None) if k == "erm" else (b.x_s, b.y_s, b.x_t)
            timed(f"plain/{k}", plain[k].step, xs, ys, xt, 0.2 if k == "dann_port" else 2000)
            if k in discs:
                timed(f"disc/{k}", disc_step, k)
        if r == 0:
            times.clear()  # warm-up round
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    head = (f"torch {torch.__version__}, {args.threads} thread(s), batch 128 + 128 (ERM: 256 labelled), "
            f"median of {args.steps} interleaved rounds")
    print(head)
    rows = []
    for k, label in labels.items():
        ratio = med[f"ours/{k}"] / med[f"plain/{k}"]
        share = med[f"disc/{k}"] / med[f"ours/{k}"] if k in discs else None
        over_erm = med[f"ours/{k}"] / med["ours/erm"] if k in recipe else None  # LeNet's ERM: not the port's
        extra = f"  discriminator fwd+bwd {med[f'disc/{k}']:.1f} ms ({share:.0%} of the step)" if share else ""
        print(f"  {k:<9} ours {med[f'ours/{k}']:7.1f} ms  plain {med[f'plain/{k}']:7.1f} ms  "
              f"ours/plain {ratio:.3f}" + (f"  x ERM {over_erm:.2f}" if over_erm else "") + extra)
        rows.append([label, f"{med[f'ours/{k}']:.1f}", f"{med[f'plain/{k}']:.1f}", f"{ratio:.3f}",
                     "met" if ratio <= 1.05 else "**missed**", f"{over_erm:.2f}" if over_erm else "–",
                     f"{med[f'disc/{k}']:.1f} ({share:.0%})" if share else "–"])
    if args.out:
        write_script_results(
            args.out, "digits_step_time.py", argv if argv is not None else sys.argv[1:], t_start, load0,
            "Step time of the digits recipes against a plain PyTorch loop", [
                f"{head}. Each recipe's training step in the engine (*ours*) and in a hand-written "
                "loop of the same recipe (*plain*: nn.Sequential in NCHW, a GRL autograd.Function, "
                "torch.optim.SGD with Nesterov), on the same batch, stepped in turn in one process, "
                "so the machine's drift affects both alike. Target (issue 17): ours / plain <= 1.05. "
                "The domain discriminator's forward and backward alone on the same features, timed "
                "in the same rounds, gives its share of the step. The MNIST -> USPS configs of "
                "configs/digits/, and the MNIST -> MNIST-M port's (mnist_mnistm_bn_decay_dann.yaml, "
                "3x28x28, Adam; its plain loop is the same network and steps; x ERM is over "
                "LeNet's source-only step, so it is left out for the port).",
                markdown_table(["recipe", "ours (ms / step)", "plain (ms / step)", "ours / plain",
                                "target <= 1.05", "x ERM (ours)", "discriminator fwd+bwd, ms (share)"], rows)])
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
