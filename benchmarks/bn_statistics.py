"""Trained runs evaluated with their own BatchNorm running statistics and with statistics
re-estimated on the unlabelled target training images (AdaBN), as a Markdown table.

    python benchmarks/bn_statistics.py RUN_DIR [RUN_DIR ...] [--out docs/results/bn_statistics.md]
        [--title TEXT] [--note TEXT] [--data-root DIR]

Each run's last checkpoint is loaded (``Trainer.from_run_dir``) and evaluated on the labelled
test splits three times (``gradversary.analysis.batchnorm.bn_shift_row``): with the running
statistics it was trained to, with the target domain's statistics (AdaBN, Li et al. 2017: no
target labels, so an honest test-time option), and with the source domain's statistics, which
isolates how much of the running averages is the target's. Nothing is trained. The file names
this command, the commit, the seeds and the wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from gradversary.analysis.batchnorm import bn_shift_row
from gradversary.report.markdown import markdown_table, write_script_results


def _acc(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def blocks(rows: list[dict], note: str) -> list[str]:
    """The file's paragraphs and table, below its provenance header."""
    body = [[r["label"], r["method"], r["seed"], r["steps"], r["bn_layers"],
             _acc(r["running"].get("target_test_acc")), _acc(r["target_stats"].get("target_test_acc")),
             _acc(r["source_stats"].get("target_test_acc")),
             _acc(r["running"].get("source_test_acc")), _acc(r["source_stats"].get("source_test_acc"))]
            for r in rows]
    header = ["run", "method", "seed", "step", "BN layers", "target acc: running statistics",
              "target acc: target statistics (AdaBN)", "target acc: source statistics",
              "source acc: running statistics", "source acc: source statistics"]
    return [
        "Test accuracy of each run's last checkpoint, evaluated with three sets of BatchNorm "
        "statistics and the same weights. *target statistics (AdaBN)* re-estimates every "
        "BatchNorm layer's mean and variance on the target domain's unlabelled training "
        "images (Li et al., arXiv:1603.04779): no target labels are used, so it is an honest "
        "test-time option. *source statistics* does the same with the source training images.",
        note, markdown_table(header, body)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories (each with config.yaml and checkpoints/)")
    ap.add_argument("--out", default="docs/results/bn_statistics.md")
    ap.add_argument("--title", default="BatchNorm statistics under domain shift (AdaBN)")
    ap.add_argument("--note", default="", help="a paragraph printed above the table")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    for run in args.runs:
        row = bn_shift_row(run, data_root=args.data_root)
        path = Path(run)
        row["label"] = f"{path.parent.name}/{path.name}"
        rows.append(row)
        print(f"{row['label']}: target {row['running'].get('target_test_acc', float('nan')):.3f} -> "
              f"{row['target_stats'].get('target_test_acc', float('nan')):.3f} with AdaBN", flush=True)
    write_script_results(args.out, "bn_statistics.py", argv if argv is not None else sys.argv[1:], t0, None,
                         args.title, blocks(rows, args.note), seeds=sorted({int(r["seed"]) for r in rows}))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
