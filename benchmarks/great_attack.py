"""Robust accuracy of trained runs under FGSM, PGD, APGD-CE, APGD-T and Square, and the worst case.

    python benchmarks/great_attack.py RUN_DIR... [--eps 0.1,0.3] [--n 1000] [--out FILE.json]

Each run's deployed classifier is attacked on the first ``n`` images of a seeded permutation of
its ``source_test`` split (MNIST test for the GREAT configs) at each eps (L-infinity, [0, 1]
images): FGSM; PGD (``--pgd-steps`` steps of 2.5 eps / steps, random start); APGD-CE and APGD-T
(Croce & Hein 2020; ``--apgd-steps`` iterations, APGD-T over the 9 most likely other classes:
AutoAttack's standard budgets at the default 100); Square (``--square-queries``). The worst
case counts an image only if it is correct clean and under every attack
(:func:`gradversary.attacks.evaluate_attacks`). Prints one line per run and eps and writes the
figures as JSON (with the command, the seconds each attack took and the settings).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from gradversary.attacks import APGD, APGDT, FGSM, PGD, Square, evaluate_attacks
from gradversary.engine import Trainer

COLUMNS = ("clean", "fgsm", "pgd", "apgd_ce", "apgd_t", "square", "worst_case")


def attack_run(run_dir: str, eps_list, n: int, args) -> dict:
    tr = Trainer.from_run_dir(run_dir, args.data_root)
    test = tr.task.eval["source_test"]
    idx = torch.randperm(len(test.y), generator=torch.Generator().manual_seed(args.seed))[:n]
    x, y = test.x[idx], test.y[idx]
    out = {"run": run_dir, "step": tr.step, "n": int(len(y)), "by_eps": {}}
    with tr.deployed() as m:
        model = m.model
        for eps in eps_list:
            attacks = {"fgsm": FGSM(eps),
                       "pgd": PGD(eps, args.pgd_steps, seed=args.seed, early_stop=True),
                       "apgd_ce": APGD(eps, args.apgd_steps, seed=args.seed),
                       "apgd_t": APGDT(eps, args.apgd_steps, seed=args.seed),
                       "square": Square(eps, args.square_queries, seed=args.seed)}
            t0 = time.perf_counter()
            res = evaluate_attacks(model, attacks, (x, y), batch_size=args.batch_size)
            out["by_eps"][f"{eps:g}"] = {k: res[k].accuracy for k in COLUMNS}
            out["by_eps"][f"{eps:g}"]["seconds"] = round(time.perf_counter() - t0, 1)
            row = "  ".join(f"{k} {100 * res[k].accuracy:5.1f}" for k in COLUMNS)
            print(f"{Path(run_dir).name:<28} step {tr.step:5d} eps {eps:g}: {row}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--eps", default="0.1,0.3")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--pgd-steps", type=int, default=40)
    ap.add_argument("--apgd-steps", type=int, default=100)
    ap.add_argument("--square-queries", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-root", default=None, help="dataset folder")
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    eps_list = [float(e) for e in args.eps.split(",")]
    results = [attack_run(r, eps_list, args.n, args) for r in args.runs]
    if args.out:
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "settings": vars(args),
                                              "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
