"""The GREAT distillation benchmark: Table 3's layout (CNN-5 student, ResNet teacher) plus Sobolev.

Sinha, Chen, Badrinarayanan & Rabinovich, "Gradient Adversarial Training of Neural Networks",
arXiv:1806.08028, section 3.2, Table 3 and the supplement. ``gradversary bench great-distill
[--quick] [--seeds N] [--jobs J]``:

1. trains the teacher once (``configs/great_distill/teacher.yaml``, seed 0) under
   ``<out-dir>/{full,quick}/teacher``, or reuses it;
2. trains, or reuses, one student per method (``erm``, ``kd``, ``sobolev``, ``great_distill``),
   regime (dense: all training images; sparse: a fixed class-balanced 5%) and seed, from
   ``configs/great_distill/<method>_<regime>.yaml`` with ``method.teacher_run`` pointing at
   that teacher (``J`` one-thread processes at a time);
3. times a few training steps of every method on one batch, in this process, one after the
   other (the GREAT-distill / KD step-time ratio);
4. writes ``docs/results/great_distill.md`` (``_quick.md``) and the JSON beside it.

The data is CIFAR-10 (JPEG subset), a lossy 12,000-image subset: the figures are not CIFAR-10
figures and are compared with the paper's only in direction.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..io import atomic_write_text
from ..report.markdown import fmt_mean_std, markdown_table, mean_std
from .compare import git_commit
from .dann import _resolve, _run
from .parallel import map_jobs
from .step_time import interleaved_step_times

__all__ = ["METHODS", "REGIMES", "PAPER", "QUICK_OVERRIDES", "run_great_distill_bench"]

#: table rows: method name -> label (the paper's order, Sobolev added before GREAT)
METHODS = {"erm": "Baseline (ERM)", "kd": "Distillation (KD)", "sobolev": "Sobolev",
           "great_distill": "GREAT"}
#: table columns: regime -> label
REGIMES = {"dense": "dense (100%)", "sparse": "sparse (5%)"}
#: Table 3, CIFAR-10, CNN(S) + RN(T), test accuracy %; Sobolev from the supplement
PAPER = {"erm": (84.74, 65.41), "kd": (85.69, 66.45), "sobolev": (84.98, 66.50),
         "great_distill": (85.72, 66.55)}

# --quick: a smoke test of the pipeline in minutes on two busy cores; not a result.
QUICK_TEACHER = ["train.steps=200", "train.eval_every=0", "train.threads=1", "data.max_test=500"]
QUICK_OVERRIDES = {"dense": ["train.steps=60", "train.eval_every=0", "train.threads=1",
                             "data.max_test=500"],
                   "sparse": ["train.steps=40", "train.eval_every=0", "train.threads=1",
                              "data.max_test=500"]}


def run_great_distill_bench(seeds: Sequence[int], out_dir: str | Path = "runs/bench/great_distill",
                            results: str | Path = "docs/results/great_distill.md", quick: bool = False,
                            config_dir: str | Path = "configs/great_distill", data_root: str | None = None,
                            progress: bool = True, command: str = "", jobs: int = 1,
                            overrides: Sequence[str] = (), timing_steps: int = 5) -> Path:
    """Train or reuse the teacher and every student, time the methods, write the results.

    Args:
        seeds: the students' seeds (the teacher always uses seed 0).
        out_dir: parent of the run directories (``full/`` or ``quick/`` below it).
        results: the Markdown results file (JSON beside it).
        quick: :data:`QUICK_TEACHER` and :data:`QUICK_OVERRIDES` on top of the configs.
        config_dir: folder of ``teacher.yaml`` and ``<method>_<regime>.yaml``.
        jobs: students trained at a time, each in a one-thread process.
        overrides: applied to every student after the quick ones.
        timing_steps: steps timed per method (after one warm-up step); 0 skips the timing.
    """
    t0 = time.perf_counter()
    git_commit()  # read once, now: the files written below must not mark the tree dirty
    config_dir = Path(config_dir)
    out = Path(out_dir) / ("quick" if quick else "full")
    for name in ["teacher", *(f"{m}_{r}" for m in METHODS for r in REGIMES)]:
        if not (config_dir / f"{name}.yaml").is_file():
            raise ValueError(f"config {str(config_dir / (name + '.yaml'))!r} does not exist")
    tcfg = _resolve(config_dir, "teacher.yaml", [*(QUICK_TEACHER if quick else []), "train.seed=0"])
    tcfg.name = "teacher"
    teacher_dir = out / "teacher"
    teacher = _run(tcfg, teacher_dir, data_root, progress)

    run_jobs, keys = [], []
    for seed in seeds:
        for regime in REGIMES:
            for method in METHODS:
                over = [*(QUICK_OVERRIDES[regime] if quick else []), *overrides,
                        f"train.seed={seed}"]
                if method != "erm":
                    over.append(f"method.teacher_run={teacher_dir}")
                cfg = _resolve(config_dir, f"{method}_{regime}.yaml", over)
                cfg.name = f"{method}_{regime}-s{seed}"
                run_jobs.append((cfg, out / regime / method / cfg.name, data_root,
                                 progress and jobs == 1))
                keys.append((method, regime))
    summaries = map_jobs(_run, run_jobs, jobs, "students", progress)
    runs: dict[str, dict[str, list[dict]]] = {m: {r: [] for r in REGIMES} for m in METHODS}
    for (method, regime), s in zip(keys, summaries):
        runs[method][regime].append(s)
    timing = (_step_times(config_dir, teacher_dir, data_root, timing_steps, quick)
              if timing_steps else {})
    wall = time.perf_counter() - t0
    teacher = {**teacher, "model": dict(tcfg.model)}
    return _write(Path(results), runs, teacher, timing, seeds, quick, command, wall, config_dir)


def _step_times(config_dir: Path, teacher_dir: Path, data_root, steps: int, quick: bool) -> dict:
    """Median seconds per training step of each method on the dense configs' first batch.

    The methods are stepped in turn on the same batch (:func:`interleaved_step_times`), in this
    process with one thread, so they share the machine's load alike.
    """
    from ..engine.trainer import Trainer

    trainers = {}
    for method in METHODS:
        over = ["train.threads=1", "data.max_test=10", *(["data.per_class=100"] if quick else [])]
        if method != "erm":
            over.append(f"method.teacher_run={teacher_dir}")
        cfg = _resolve(config_dir, f"{method}_dense.yaml", over)
        cfg.train.progress = False
        trainers[method] = Trainer(cfg, persist=False, data_root=data_root)
    batch = trainers["erm"]._next_batch()
    med = interleaved_step_times(trainers, steps, batch)
    return {"seconds_per_step": med, "steps": steps, "batch_size": int(batch.y_s.shape[0]),
            "threads": 1, "ratio_great_distill_kd": med["great_distill"] / med["kd"],
            "ratio_great_distill_erm": med["great_distill"] / med["erm"]}


def _acc(runs: list[dict]) -> list[float]:
    return [100 * r["final"]["source_test_acc"] for r in runs if "source_test_acc" in r.get("final", {})]


def _verdict(runs: dict) -> str:
    """Whether GREAT has the best mean sparse accuracy, and by how much against the noise."""
    means = {m: mean_std(v) for m in METHODS if (v := _acc(runs[m]["sparse"]))}
    if "great_distill" not in means or len(means) < 2:
        return "The claim cannot be checked: sparse runs are missing."
    best_other = max((m for m in means if m != "great_distill"), key=lambda m: means[m][0])
    g, o = means["great_distill"], means[best_other]
    gap = g[0] - o[0]
    noise = max(g[1], o[1])
    if min(len(_acc(runs[m]["sparse"])) for m in ("great_distill", best_other)) < 2:
        word = "holds" if gap > 0 else "does not hold"
        return (f"**With one seed the paper's claim nominally {word}** (GREAT {gap:+.2f} points "
                f"against {METHODS[best_other]} in the sparse regime); one seed measures no spread.")
    if gap > 0:
        strength = ("larger than" if gap > noise else "within") + " the seed-to-seed spread"
        return (f"**The paper's claim holds at this scale**: GREAT has the best mean sparse "
                f"accuracy, {gap:.2f} points above {METHODS[best_other]} ({strength}, std up to "
                f"{noise:.2f}).")
    return (f"**The paper's claim does not hold at this scale**: in the sparse regime "
            f"{METHODS[best_other]} is ahead of GREAT by {-gap:.2f} points (std up to {noise:.2f}).")


def _write(results: Path, runs, teacher, timing, seeds, quick, command, wall, config_dir) -> Path:
    t_acc = 100 * teacher["final"].get("source_test_acc", float("nan"))
    header = ["method", *(f"{REGIMES[r]}" for r in REGIMES), "paper (CIFAR-10): dense / sparse",
              "s / step (runs)"]
    rows = []
    for m, label in METHODS.items():
        cells = [fmt_mean_std(v, 2) if (v := _acc(runs[m][r])) else "n/a" for r in REGIMES]
        per_step = [s["wall_time_s"] / s["steps"] for r in REGIMES for s in runs[m][r] if s.get("steps")]
        rows.append([label, *cells, " / ".join(f"{p:.2f}" for p in PAPER[m]),
                     f"{statistics.median(per_step):.3f}" if per_step else "n/a"])
    lines = [
        "# GREAT for knowledge distillation: CIFAR-10 (JPEG subset)"
        + (" (quick, reduced size: a smoke test, not a result)" if quick else ""), "",
        "Generated by a benchmark command; do not edit by hand.", "",
        f"- command: `{command or 'gradversary bench great-distill'}`",
        f"- commit: `{git_commit()}`",
        f"- seeds: {', '.join(map(str, seeds))} (students); teacher: seed 0, trained once",
        f"- wall time of this invocation: {wall:.0f} s (runs reused from earlier invocations "
        "are not re-timed)",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.machine()}",
        f"- configs: `{config_dir}/<method>_<regime>.yaml`, teacher `{config_dir}/teacher.yaml`"
        + (f"; quick overrides: teacher `{' '.join(QUICK_TEACHER)}`, students "
           f"`{' '.join(QUICK_OVERRIDES['dense'])}` (dense), `{' '.join(QUICK_OVERRIDES['sparse'])}` "
           "(sparse)" if quick else ""),
        "",
        "Data: **CIFAR-10 (JPEG subset)**, the staged 10,000 training and 2,000 test images "
        "re-encoded as JPEG at quality 75: not CIFAR-10, so the paper's column is a reference "
        "for direction only. Dense: all 10,000 training images; sparse: a fixed, class-balanced "
        "5% (50 per class, the same for every method and seed). Student: the paper's CNN-5. "
        f"Teacher: {_describe_model(teacher)}, test accuracy **{t_acc:.2f}%**. No per-batch "
        "augmentation (the engine has none; the paper uses random crops and flips).", "",
        "Test accuracy (%) at the last step, mean ± std over seeds.", "",
        markdown_table(header, rows),
        _verdict(runs), "",
    ]
    if timing:
        sps = timing["seconds_per_step"]
        lines += ["## Step time", "",
                  f"Median of {timing['steps']} steps per method, batch {timing['batch_size']}, "
                  "one thread, the methods stepped in turn in one process (so they share the "
                  "machine's load alike):", "",
                  markdown_table(["method", "s / step", "× ERM"],
                                 [[METHODS[m], f"{sps[m]:.3f}", f"{sps[m] / sps['erm']:.1f}"]
                                  for m in METHODS]),
                  f"**GREAT-distill / KD step-time ratio: {timing['ratio_great_distill_kd']:.2f}** "
                  "(GREAT adds the student's double backprop, the teacher's input gradient and "
                  "the discriminator on 2N gradients; KD only a teacher forward pass).", ""]
    atomic_write_text(results, "\n".join(lines) + "\n")
    atomic_write_text(results.with_suffix(".json"), json.dumps(
        {"seeds": list(seeds), "quick": quick, "command": command, "commit": git_commit(),
         "wall_time_s": round(wall, 1), "data": "CIFAR-10 (JPEG subset)", "paper": PAPER,
         "teacher": teacher, "timing": timing, "verdict": _verdict(runs), "runs": runs},
        indent=1) + "\n")
    return results


def _describe_model(teacher: dict) -> str:
    """The teacher network in words: name, widths and blocks per stage."""
    m = teacher.get("model", {})
    extra = ", ".join(f"{k} {m[k]}" for k in ("widths", "blocks") if k in m)
    return f"`{m.get('name', '?')}`" + (f" ({extra})" if extra else "")
