"""Office-Caltech-10 SURF, 12 pairs: 1-NN, source-only and DANN from ``configs/office_surf/``.

    python benchmarks/office_surf.py [--out runs/office_surf] [--seed 0] [--steps N] [--only AW,CA]
        [--select dev] [--set KEY=VALUE ...] [--data-root DIR]

Trains each pair's ``<pair>_source_only.yaml`` and ``<pair>.yaml`` (one seed; a finished run
directory is reused), and prints, per pair, the source-only 1-NN of the GFK/JDA protocol beside
each method's target accuracy at the last step, at the checkpoint selected without target
labels (``selection.criterion``, default DEV) and, labelled as such, the oracle (the best
evaluation on target labels: not an honest figure). Target accuracies in %. ``--set`` adds
config overrides to every run (e.g. ``data.normalize=l1``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gradversary.data.office_caltech_surf import (
    PUBLISHED_1NN,
    load_domain,
    nearest_neighbour_accuracy,
)
from gradversary.engine import Trainer, load_config

PAIRS = ("CA", "CW", "CD", "AC", "AW", "AD", "WC", "WA", "WD", "DC", "DA", "DW")
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "office_surf"


def _run(cfg_file: Path, out: Path, args) -> dict:
    over = [f"train.seed={args.seed}", "train.progress=false", "train.threads=1",
            f"selection.criterion={args.select}", f"out_dir={out}"]
    over += args.set
    if args.steps:
        over.append(f"train.steps={args.steps}")
    cfg = load_config(cfg_file, over)
    run_dir = out / f"{cfg_file.stem}-s{args.seed}"
    done = run_dir / "summary.json"
    if done.exists() and (run_dir / "config.yaml").exists():
        return json.loads(done.read_text())
    return Trainer(cfg, run_dir=run_dir, data_root=args.data_root).fit()


def _acc(summary: dict) -> tuple[float, float, float]:
    last = summary["final"]["target_test_acc"]
    sel = summary["selection"]["metrics"]["target_test_acc"]
    orc = summary.get("oracle", {}).get("target_test_acc", float("nan"))
    return 100 * last, 100 * sel, 100 * orc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/office_surf")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--only", default=",".join(PAIRS))
    ap.add_argument("--select", default="dev")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    pairs = [p.strip().upper() for p in args.only.split(",")]
    print("| pair | 1-NN | source-only last / selected / oracle | DANN last / selected / oracle |")
    print("|---|---|---|---|")
    rows = []
    for p in pairs:
        xs, ys = load_domain(args.data_root, p[0])
        xt, yt = load_domain(args.data_root, p[1])
        nn1 = 100 * nearest_neighbour_accuracy(xs, ys, xt, yt)  # the protocol's features
        so = _acc(_run(CONFIGS / f"{p.lower()}_source_only.yaml", out, args))
        da = _acc(_run(CONFIGS / f"{p.lower()}.yaml", out, args))
        rows.append((nn1, so, da))
        assert abs(nn1 - PUBLISHED_1NN[f"{p[0]}->{p[1]}"]) < 0.005
        print(f"| {p[0]}->{p[1]} | {nn1:.2f} | {so[0]:.2f} / {so[1]:.2f} / {so[2]:.2f} | "
              f"{da[0]:.2f} / {da[1]:.2f} / {da[2]:.2f} |", flush=True)
    n = len(rows)
    mean = [sum(r[0] for r in rows) / n] + [sum(r[k][i] for r in rows) / n for k in (1, 2) for i in range(3)]
    print(f"| mean | {mean[0]:.2f} | {mean[1]:.2f} / {mean[2]:.2f} / {mean[3]:.2f} | "
          f"{mean[4]:.2f} / {mean[5]:.2f} / {mean[6]:.2f} |")
    for i, what in enumerate(("last step", "selected")):
        wins = sum(r[2][i] > r[1][i] for r in rows)
        ties = sum(r[2][i] == r[1][i] for r in rows)
        print(f"DANN above source-only ({what}): {wins} of {n} pairs ({ties} ties)")


if __name__ == "__main__":
    main()
