"""The GREAT multi-task benchmark: Table 4 of Sinha et al. (arXiv:1806.08028) at CPU scale.

``gradversary bench great-mtl [--quick] [--seeds N] [--jobs 2]`` trains (or reuses, as the DANN
benchmark does: a run whose resolved config is unchanged is reused or resumed) one run per
config of ``configs/great_mtl/`` (equal weights, uncertainty weighting, GradNorm, GREAT-MTL) and
seed on CIFAR-10 (JPEG subset) made multi-task, then writes ``docs/results/great_mtl.md``
(``_quick.md``) and JSON:

- the paper's Table 4 layout: class % error; colour, edge and autoencoder RMSE on the test split,
  mean ± std over seeds, with the paper's figures beside it;
- whether the paper's claim holds here (GREAT close to or better than GradNorm on every column);
- the step time of every method and its ratio to equal weighting, timed in this invocation with
  the steps of the methods interleaved (one thread), so a busy machine slows all alike;
- plots of the task classifier's accuracy and of the GAL weights over training.
"""

from __future__ import annotations

import fnmatch
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..io import atomic_write_text, read_metrics
from ..report.markdown import fmt_mean_std, markdown_table, mean_std
from ..report.plots import curves_plot
from .compare import git_commit
from .dann import _resolve, _run
from .parallel import map_jobs
from .step_time import interleaved_step_times

__all__ = ["CONFIGS", "LABELS", "PAPER", "QUICK_OVERRIDES", "run_great_mtl_bench"]

CONFIGS = ["equal", "uncertainty", "gradnorm", "great_mtl"]
LABELS = {"equal": "Equal", "uncertainty": "Uncertainty", "gradnorm": "GradNorm",
          "great_mtl": "GREAT"}
COLUMNS = {"class_err": "class % error", "colour_rmse": "colour", "edge_rmse": "edge",
           "autoencoder_rmse": "autoencoder"}
#: Table 4, CIFAR-10 (the shared REFERENCE.md): class % error, colour, edge, autoencoder RMSE
PAPER = {"equal": (24.0, .131, .349, .113), "uncertainty": (26.6, .111, .270, .090),
         "gradnorm": (23.5, .116, .270, .091), "great_mtl": (24.2, .114, .252, .087)}
#: "close": within 1.5 points of class error, or 5% of an RMSE
TOLERANCE = {"class_err": ("abs", 1.5), "colour_rmse": ("rel", 0.05), "edge_rmse": ("rel", 0.05),
             "autoencoder_rmse": ("rel", 0.05)}

# --quick: a smoke test of the whole pipeline in minutes on 2 busy cores: 500 training images,
# 100 steps of 32, 300 test images, one thread per run (150 steps of 64 took over 10 minutes
# in one process beside other benchmarks: GradNorm's step costs about 2.3 equal ones)
QUICK_OVERRIDES = ["train.steps=100", "train.batch_size=32", "train.eval_every=0",
                   "train.threads=1", "data.per_class=50", "data.max_test=300"]


def run_great_mtl_bench(seeds: Sequence[int], out_dir: str | Path = "runs/bench/great_mtl",
                        results: str | Path = "docs/results/great_mtl.md", quick: bool = False,
                        config_dir: str | Path = "configs/great_mtl", only: str | None = None,
                        overrides: Sequence[str] = (), data_root: str | None = None,
                        progress: bool = True, command: str = "", jobs: int = 1,
                        timing_steps: int = 8) -> Path:
    """Train or reuse every config over ``seeds``, time the steps, write the results.

    Args:
        seeds: training seeds.
        out_dir: parent of the run directories (``full/`` or ``quick/`` below it).
        results: the Markdown file (JSON and plots beside it).
        quick: :data:`QUICK_OVERRIDES`.
        config_dir: folder of ``equal.yaml``, ``uncertainty.yaml``, ``gradnorm.yaml``,
            ``great_mtl.yaml``.
        only: glob on the config stems.
        overrides: applied to every config after the quick ones.
        jobs: training processes of one thread each.
        timing_steps: timed steps per method (after one untimed), interleaved across methods.
    """
    t0 = time.perf_counter()
    git_commit()  # read once, now: the files written below must not mark the tree dirty
    stems = [s for s in CONFIGS if only is None or fnmatch.fnmatch(s, only)]
    if not stems:
        raise ValueError(f"no config matches {only!r}; configs: {', '.join(CONFIGS)}")
    config_dir, results = Path(config_dir), Path(results)
    for s in stems:
        if not (config_dir / f"{s}.yaml").is_file():
            raise ValueError(f"config {str(config_dir / (s + '.yaml'))!r} does not exist")
    out_dir = Path(out_dir) / ("quick" if quick else "full")
    jobs_list, keys, cfgs = [], [], {}
    for seed in seeds:
        for s in stems:
            cfg = _resolve(config_dir, f"{s}.yaml",
                           [*(QUICK_OVERRIDES if quick else []), *overrides, f"train.seed={seed}"])
            cfg.name = f"{s}-s{seed}"
            cfgs.setdefault(s, cfg)
            jobs_list.append((cfg, out_dir / s / cfg.name, data_root, progress and jobs <= 1))
            keys.append((s, seed))
    summaries = map_jobs(_run, jobs_list, jobs, "training", progress)
    runs: dict[str, list[dict]] = {s: [] for s in stems}
    for (s, seed), (_, run_dir, _, _), summary in zip(keys, jobs_list, summaries):
        runs[s].append({"seed": seed, "run_dir": str(run_dir), "summary": summary})
    timing = time_steps(cfgs, data_root, timing_steps)
    plots = _plots(runs, results)
    return _write(runs, timing, plots, list(seeds), results, quick, command,
                  time.perf_counter() - t0)


def time_steps(cfgs: dict, data_root: str | None, steps: int) -> dict[str, float]:
    """Median seconds per training step of each config, steps interleaved across configs
    (:func:`interleaved_step_times`, one thread, each its own batches). The models are freshly
    initialised (step time does not depend on the weights)."""
    from ..engine.trainer import Trainer

    trainers = {s: Trainer(c, data_root=data_root, persist=False) for s, c in cfgs.items()}
    return interleaved_step_times(trainers, steps)


def _plots(runs: dict[str, list[dict]], results: Path) -> dict[str, str]:
    """Task-classifier accuracy and GAL statistics over training (GREAT-MTL runs)."""
    if "great_mtl" not in runs:
        return {}
    aux, gal = {}, {}
    for r in runs["great_mtl"]:
        rec = read_metrics(Path(r["run_dir"]) / "metrics.jsonl", kind="train")
        steps = [x["step"] for x in rec]
        aux[f"seed {r['seed']}"] = (steps, [x.get("aux_acc", float("nan")) for x in rec])
        if not gal:  # the first seed's GALs
            keys = ["gal_mean", "gal_min", "gal_max"] + sorted(k for k in rec[0] if k.startswith("gal_")
                                                            and k not in ("gal_mean", "gal_min",
                                                                          "gal_max", "gal_std"))
            gal = {k.removeprefix("gal_"): (steps, [x[k] for x in rec]) for k in keys}
    out = {}
    n_tasks = len([k for k in gal if k not in ("mean", "min", "max")]) or 4
    aux["chance"] = (next(iter(aux.values()))[0], [1 / n_tasks] * len(next(iter(aux.values()))[0]))
    p = curves_plot(aux, results.with_name(results.stem + "_aux_acc.png"), "task classifier accuracy",
                    "GREAT-MTL: accuracy of the task classifier on GAL-scaled gradients")
    if p:
        out["task classifier accuracy"] = p.name
    p = curves_plot(gal, results.with_name(results.stem + "_gal.png"), "GAL weight",
                    f"GREAT-MTL GAL weights (seed {runs['great_mtl'][0]['seed']}): all, and mean per task")
    if p:
        out["GAL weights"] = p.name
    return out


def _means(runs: dict[str, list[dict]]) -> dict[str, dict[str, list[float]]]:
    return {s: {c: [r["summary"]["final"][f"test_{c}"] for r in rs] for c in COLUMNS}
            for s, rs in runs.items()}


def _verdict(vals: dict[str, dict[str, list[float]]]) -> tuple[str, dict[str, str]]:
    """Per column, GREAT against GradNorm: better, close or worse; and the sentence."""
    if "great_mtl" not in vals or "gradnorm" not in vals:
        return "GREAT or GradNorm was not run: no verdict.", {}
    cols = {}
    for c, (kind, tol) in TOLERANCE.items():
        g, n = mean_std(vals["great_mtl"][c])[0], mean_std(vals["gradnorm"][c])[0]
        slack = tol if kind == "abs" else tol * n
        cols[c] = "better" if g <= n else ("close" if g - n <= slack else "worse")
    worse = [COLUMNS[c] for c, v in cols.items() if v == "worse"]
    detail = ", ".join(f"{COLUMNS[c]} {v}" for c, v in cols.items())
    if worse:
        return (f"**The paper's claim does not hold at this scale**: GREAT is worse than GradNorm "
                f"beyond the tolerance on {', '.join(worse)} ({detail}).", cols)
    return (f"**The paper's claim holds at this scale**: GREAT is close to or better than GradNorm "
            f"on every column ({detail}).", cols)


def _write(runs, timing, plots, seeds, results: Path, quick, command, wall) -> Path:
    vals = _means(runs)
    digits = {"class_err": 1, "colour_rmse": 3, "edge_rmse": 3, "autoencoder_rmse": 3}
    table = [[LABELS[s], *(fmt_mean_std(vals[s][c], digits[c]) for c in COLUMNS)] for s in runs]
    paper = [[LABELS[s], *(f"{v:g}" for v in PAPER[s])] for s in runs]
    verdict, cols = _verdict(vals)
    first = next(iter(runs.values()))[0]["summary"]
    base = timing.get("equal")
    tim = [[LABELS[s], f"{1000 * t:.0f}", f"{t / base:.2f}" if base else "–"] for s, t in timing.items()]
    tol = ", ".join(f"{COLUMNS[c]} " + (f"{t:g} points" if k == "abs" else f"{100 * t:g}%")
                    for c, (k, t) in TOLERANCE.items())
    lines = [
        "# GREAT multi-task learning (Table 4)" + (" (quick, reduced size: a smoke test, not a "
                                                    "result)" if quick else ""), "",
        "Generated by a benchmark command; do not edit by hand.", "",
        f"- command: `{command or 'gradversary bench great-mtl'}`",
        f"- commit: `{git_commit()}`",
        f"- seeds: {', '.join(map(str, seeds))}",
        f"- wall time of this invocation: {wall:.0f} s (runs reused from earlier invocations are "
        "not re-timed)",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.machine()}",
        f"- data: CIFAR-10 (JPEG subset) made multi-task (`cifar10_mtl`): "
        f"{first['steps']} steps per run",
        "- configs: " + ", ".join(f"`configs/great_mtl/{s}.yaml`" for s in runs),
        *([f"- quick overrides: `{' '.join(QUICK_OVERRIDES)}`"] if quick else []),
        "",
        "Noisy greyscale input (salt and pepper on 4% of the pixels, speckle 0.1); tasks: "
        "classification (cross-entropy), colourisation, Canny edges (sigma 1, of the colour "
        "image) and denoised reconstruction (MSE). Test split; mean ± std over seeds. The data "
        "is a lossy JPEG re-encoding of 12,000 CIFAR-10 images, and the network and training are "
        "far smaller than the paper's (ResNet-53 backbone, 50 epochs): compare the ordering of "
        "the methods, not the values.", "",
        "## Table 4 layout", "",
        markdown_table(["method", *COLUMNS.values()], table),
        "The paper's Table 4 (CIFAR-10, for reference):", "",
        markdown_table(["method", *COLUMNS.values()], paper),
        verdict + f" Close: within {tol} of GradNorm's mean.", "",
        "## Step time", "",
        "Median seconds per training step, one thread, the methods' steps interleaved in this "
        "invocation (fresh models, the configs' batch size), and the ratio to equal weighting:", "",
        markdown_table(["method", "ms / step", "ratio to Equal"], tim),
    ]
    if "great_mtl" in timing and base:
        lines += [f"GREAT-MTL / equal weighting step-time ratio: **{timing['great_mtl'] / base:.2f}**.",
                  ""]
    if plots:
        lines += ["## Figures", ""] + [f"![{k}]({v})\n" for k, v in plots.items()]
    atomic_write_text(results, "\n".join(lines) + "\n")
    atomic_write_text(results.with_suffix(".json"), json.dumps(
        {"seeds": seeds, "quick": quick, "command": command, "commit": git_commit(),
         "wall_time_s": round(wall, 1), "versions": {"python": platform.python_version(),
                                                      "torch": torch.__version__},
         "columns": COLUMNS, "paper": PAPER, "verdict": verdict, "verdict_columns": cols,
         "step_time_s": timing, "plots": plots,
         "methods": {s: {"label": LABELS[s], "runs": rs} for s, rs in runs.items()}},
        indent=1) + "\n")
    return results
