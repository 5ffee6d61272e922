"""GREAT-MTL's training curves: the task classifier's accuracy and the GAL weights."""

from __future__ import annotations

from pathlib import Path

from ..io import read_metrics
from ..report.plots import curves_plot

__all__ = ["GAL_PLOTS", "gal_plots"]

#: plot title -> file name suffix (after the stem)
GAL_PLOTS = {"task classifier accuracy": "_aux_acc.png", "GAL weights": "_gal.png"}


def gal_plots(run_dirs: dict[int, Path], stem: Path) -> dict[str, str]:
    """Plot the task classifier's accuracy (every seed, with chance) and the first seed's GAL
    weights over training, read from the runs' ``metrics.jsonl``, as ``<stem>_aux_acc.png`` and
    ``<stem>_gal.png``; returns title -> file name of the plots written.

    Args:
        run_dirs: seed -> a GREAT-MTL run directory.
    """
    aux, gal = {}, {}
    for seed, run_dir in run_dirs.items():
        rec = read_metrics(Path(run_dir) / "metrics.jsonl", kind="train")
        steps = [x["step"] for x in rec]
        aux[f"seed {seed}"] = (steps, [x.get("aux_acc", float("nan")) for x in rec])
        if not gal:  # the first seed's GALs: summary statistics, then the mean per task
            keys = ["gal_mean", "gal_min", "gal_max", *sorted(k for k in rec[0] if k.startswith("gal_")
                                                              and k not in ("gal_mean", "gal_min", "gal_max", "gal_std"))]
            gal = {k.removeprefix("gal_"): (steps, [x[k] for x in rec]) for k in keys}
    n_tasks = len([k for k in gal if k not in ("mean", "min", "max")]) or 4
    first = next(iter(aux.values()))[0]
    aux["chance"] = (first, [1 / n_tasks] * len(first))
    files = {k: stem.with_name(stem.name + s) for k, s in GAL_PLOTS.items()}
    out = {}
    if curves_plot(aux, files["task classifier accuracy"], "task classifier accuracy",
                   "GREAT-MTL: accuracy of the task classifier on GAL-scaled gradients"):
        out["task classifier accuracy"] = files["task classifier accuracy"].name
    if curves_plot(gal, files["GAL weights"], "GAL weight",
                   f"GREAT-MTL GAL weights (seed {next(iter(run_dirs))}): all, and mean per task"):
        out["GAL weights"] = files["GAL weights"].name
    return out
