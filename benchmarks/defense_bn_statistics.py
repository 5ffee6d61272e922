"""Adversarially trained runs with BatchNorm, evaluated with their running statistics and with
statistics re-estimated on clean or on attacked training images: clean and single-step accuracy.

    python benchmarks/defense_bn_statistics.py RUN_DIR [RUN_DIR ...] --eps 0.3
        [--n 1000] [--out docs/results/great_defense_bn.md] [--note TEXT] [--data-root DIR]

A run that trains on perturbed batches only (fast AT, PGD-AT) learns its BatchNorm running
statistics on perturbed images. Each run's deployed checkpoint is evaluated
(``gradversary.analysis.batchnorm.adversarial_bn_row``) on the robustness evaluation's test
images with its running statistics, with statistics of clean training images and with those
of the same images under the attack, each time clean and under fast AT's own attack (one FGSM
step of 1.25 eps from a random start), crafted against the model as evaluated. Nothing is trained. The file names this
command, the commit, the seeds and the wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from gradversary.analysis.batchnorm import adversarial_bn_row
from gradversary.report.markdown import markdown_table, write_script_results


def blocks(rows: list[dict], note: str) -> list[str]:
    """The file's paragraphs and table, below its provenance header."""
    sets = ("running", "clean_stats", "attack_stats")
    body = [[r["label"], r["method"], r["seed"], r["steps"], r["bn_layers"],
             *(f"{100 * r[k][m]:.1f}" for k in sets for m in ("clean", "fgsm_rs"))] for r in rows]
    header = ["run", "method", "seed", "step", "BN layers",
              *(f"{m}: {name} statistics" for name in ("running", "clean", "attack") for m in ("clean", "FGSM-RS"))]
    eps = sorted({r["eps"] for r in rows})
    n = sorted({r["n"] for r in rows})
    return [
        f"Accuracy (%) of each run's deployed checkpoint on {', '.join(map(str, n))} test images "
        "(the robustness evaluation's seeded subsample) with three sets of BatchNorm statistics "
        "and the same weights: the running statistics it learnt in training; statistics "
        "re-estimated on 5,000 clean training images; and statistics re-estimated on those "
        "images under the attack (*attack*; crafted against the model with its running "
        "statistics). BatchNorm in training mode normalises each batch by its own moments, so "
        "a model trained on perturbed batches only learns its running statistics on perturbed "
        "images, and one that alternates clean and perturbed batches (FGSM 50/50) learns each "
        "kind under that kind's moments and deploys their average. *FGSM-RS*: fast AT's "
        "training attack, one FGSM step of 1.25 eps from a random start clipped to [0, 1], at "
        f"eps {', '.join(map(str, eps))}, crafted against the model as evaluated (white-box for "
        "each set of statistics). An FGSM-RS accuracy above the clean one means the model reads "
        "the single step instead of resisting it (catastrophic overfitting, Wong et al. 2020; "
        "label leaking, Kurakin et al. 2017). Test-time statistics of the attack's images are "
        "a diagnostic, not a defense: a deployed model does not know which images are attacked.",
        note, markdown_table(header, body)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories (each with config.yaml and checkpoints/)")
    ap.add_argument("--eps", type=float, required=True, help="L-infinity radius of the attack on [0, 1] inputs")
    ap.add_argument("--n", type=int, default=1000, help="test images (default 1000)")
    ap.add_argument("--out", default="docs/results/great_defense_bn.md")
    ap.add_argument("--title", default="BatchNorm statistics of adversarially trained ResNets")
    ap.add_argument("--note", default="", help="a paragraph printed above the table")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)
    if not 0.0 < args.eps <= 1.0:
        ap.error(f"--eps must be in (0, 1], got {args.eps}")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    for run in args.runs:
        row = adversarial_bn_row(run, args.eps, data_root=args.data_root, n=args.n)
        path = Path(run)
        row["label"] = f"{path.parent.name}/{path.name}"
        rows.append(row)
        print(f"{row['label']}: clean {row['running']['clean']:.3f} -> {row['clean_stats']['clean']:.3f} "
              f"with clean statistics; FGSM-RS {row['running']['fgsm_rs']:.3f} -> "
              f"{row['attack_stats']['fgsm_rs']:.3f} with the attack's", flush=True)
    write_script_results(args.out, "defense_bn_statistics.py", argv if argv is not None else sys.argv[1:],
                         t0, None, args.title, blocks(rows, args.note),
                         seeds=sorted({int(r["seed"]) for r in rows}))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
