"""The GREAT suites' own pieces (Sinha et al., "Gradient Adversarial Training of Neural
Networks", arXiv:1806.08028): the robustness evaluation stage, step timing and the GAL plots
(their tables are in :mod:`gradversary.report.great_tables`).

The suites are data: ``configs/bench/great_defense.yaml`` (Table 1 layout plus honest
attacks and gradient-masking checks, every defense at convergence; ``great_defense_short.yaml``
is the first 300-step table), ``great_mtl.yaml`` (Table 4) and ``great_distill.yaml``
(Table 3).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..analysis.mtl import GAL_PLOTS, gal_plots
from ..analysis.robustness import RobustnessSettings, compare_plots, load_or_attack
from ..analysis.step_time import interleaved_step_times
from ..engine.trainer import Trainer
from .parallel import map_jobs
from .runner import STAGES, BenchRun

__all__ = ["MTLPlots", "Robustness", "StepTime"]

_KEEP = ("split", "step", "transfer_from", "tables", "curve", "zero_gradient_share", "checks", "wall_time_s")


def _settings(run: BenchRun, group) -> RobustnessSettings:
    if run.quick:
        return RobustnessSettings.quick(**group.options.get("quick_evaluate", {}))
    return RobustnessSettings(**group.options.get("evaluate", {}))


def _saved(run: BenchRun, job) -> dict | None:
    """The recorded evaluation of ``job``, if it was made with today's settings."""
    saved = run.records.read(run.variant, job.row, job.cell + ".robustness")
    if saved is None or RobustnessSettings.from_saved(saved["settings"]).key_dict() != _settings(
            run, run.group_of(job)).key_dict():
        return None
    return saved


def _to_attack(run: BenchRun, job) -> bool:
    """Whether ``job`` will be attacked in this invocation: no evaluation recorded under
    today's settings, and not recorded as diverged."""
    if _saved(run, job) is not None:
        return False
    found = run.records.get(run.variant, job.row, job.cell, job.cfg if job.cfg is not None else job.resolve())
    return not (found or {}).get("diverged")


@STAGES.register("robustness")
class Robustness:
    """After training: every run's deployed model under GREAT's Table 1 attacks, PGD, APGD,
    Square, transfer from the ERM run of its group and seed, and the gradient-masking checks
    (:mod:`gradversary.analysis.robustness`); kept in the run directory and in the records, and
    reused while the settings are unchanged. Plots of each group (with ``report_only`` only
    while the run directories are there).
    A diverged run (``keep_diverged``) is not evaluated; the table says where it stopped."""

    @staticmethod
    def needs_model(run: BenchRun, job, summary: dict) -> bool:
        """True for a finished run with no recorded evaluation under today's settings, and for
        the ERM run another run of its group and seed is still to be attacked from (transfer).
        An ERM run made again for that is evaluated again too, so that its records describe
        the model the transfer attack used."""
        if summary.get("diverged"):
            return False
        if _saved(run, job) is None:
            return True
        return summary.get("method") == "erm" and any(
            _to_attack(run, o) for o in run.jobs
            if o.seed == job.seed and o.row != job.row and run.group_of(o) is run.group_of(job))

    def after(self, run: BenchRun) -> dict:
        todo, keep = [], []
        for j in run.jobs:
            s = _settings(run, run.group_of(j))
            if j.summary.get("diverged"):
                pass
            elif (j.run_dir / "checkpoints" / "last.pt").exists() and not run.report_only:
                base = _transfer_source(run, j)
                todo.append((j, (j.run_dir, s, run.data_root, base, run.command,
                                 run.progress and run.jobs_n == 1)))
            elif (saved := _saved(run, j)) is not None:
                j.extra["robustness"] = saved["robustness"]
            else:
                continue  # never evaluated with these settings: nothing to show
            keep.append(j)

        def record(i: int, ev: dict) -> None:  # as each evaluation ends, not once all have
            j, args = todo[i]
            j.extra["robustness"] = {k: ev[k] for k in _KEEP}
            run.records.write(run.variant, j.row, j.cell + ".robustness",
                              {"settings": dataclasses.asdict(args[1]), "robustness": j.extra["robustness"]})

        map_jobs(load_or_attack, [a for _, a in todo], run.jobs_n, "attacks", run.progress, on_result=record)
        run.jobs = keep
        out = {}
        for gname, group in run.suite.groups.items():
            jobs = [j for j in keep if run.group_of(j) is group]
            if jobs:
                out[gname] = {"settings": dataclasses.asdict(_settings(run, group)),
                              "plots": _plots(run, gname, jobs)}
        return out


def _transfer_source(run: BenchRun, job) -> Path | None:
    """The transfer attack's source for ``job``: the finished ERM run of its group and seed, in
    this invocation or left in the output directory by an earlier one (``--only`` selects one
    row at a time); ``None`` for the ERM run itself or when there is none yet."""
    group = run.group_of(job)
    for row in (r for r in run.suite.rows if run.suite.groups.get(r.group) is group):
        for label in row.cells:
            d = run.run_dir(row.name, label, job.seed)
            if d == job.run_dir or not (d / "summary.json").is_file():
                continue
            summary = json.loads((d / "summary.json").read_text())
            if summary.get("method") == "erm" and not summary.get("diverged") and (d / "checkpoints" / "last.pt").is_file():
                return d
    return None


def _plots(run: BenchRun, gname: str, jobs) -> dict[str, str]:
    """Accuracy against eps and saliency maps of the group's rows. The curves come from the
    evaluations (run directories or records); the saliency maps need the models, so they are
    drawn only while every row's first run directory still has its checkpoint (a fresh clone
    reuses the committed records without them), else the saliency file already beside the
    results is named. Nothing is trained or attacked here."""
    stem = run.results.with_name(run.results.stem + f"_{gname}")
    titles = {r.name: r.title for r in run.suite.rows}
    runs: dict[str, list] = {}
    for j in (j for j in jobs if "robustness" in j.extra):
        runs.setdefault(titles[j.row], []).append((j.run_dir, j.extra["robustness"]))
    if not runs:
        return {}
    models = all((pairs[0][0] / "checkpoints" / "last.pt").exists() for pairs in runs.values())
    seeds = sorted({j.seed for j in jobs if "robustness" in j.extra})
    out = compare_plots(runs, _settings(run, run.group_of(jobs[0])), stem,
                        f"mean over seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}",
                        run.data_root, saliency=models)
    if not models and (old := stem.with_name(f"{stem.name}_saliency.png")).exists():
        out["saliency"] = old.name
    return out


@STAGES.register("step_time")
class StepTime:
    """After training: the median step time of each row, the rows' steps interleaved in this
    process on one thread (:func:`~gradversary.analysis.step_time.interleaved_step_times`),
    from the first seed's config plus ``settings.step_time.overrides``; ``same_batch``: every
    row steps on the first row's batch. Recorded; read back with ``report_only``."""

    def after(self, run: BenchRun) -> dict:
        if run.report_only:
            return run.records.read(run.variant, "suite", "step_time") or {}
        o = run.suite.settings.get("step_time", {})
        over = [*o.get("overrides", []), *(o.get("quick_overrides", []) if run.quick else [])]
        first = {}
        for j in run.jobs:
            if j.row in o.get("rows", [r.name for r in run.suite.rows]):
                first.setdefault(j.row, j)
        trainers = {}
        for row, j in first.items():
            cfg = j.resolve(over)
            cfg.train.progress = False
            trainers[row] = Trainer(cfg, data_root=run.data_root, persist=False)
        batch = next(iter(trainers.values()))._next_batch() if o.get("same_batch") else None
        sps = interleaved_step_times(trainers, o.get("steps", 8), batch)
        out = {"seconds_per_step": sps, "steps": o.get("steps", 8), "threads": 1,
               "batch_size": None if batch is None else int(batch.y_s.shape[0])}
        run.records.write(run.variant, "suite", "step_time", out)
        return out


# ----------------------------------------------------------------------------- multi-task


@STAGES.register("mtl_plots")
class MTLPlots:
    """After training: GREAT-MTL's task-classifier accuracy and GAL weights over training,
    read from its runs' metrics (the files beside the results with ``report_only``)."""

    def after(self, run: BenchRun) -> dict:
        stem = run.results.with_name(run.results.stem)
        jobs = [j for j in run.jobs if j.row == "great_mtl" and (j.run_dir / "metrics.jsonl").exists()]
        if run.report_only or not jobs:
            return {k: f"{stem.name}{s}" for k, s in GAL_PLOTS.items() if stem.with_name(stem.name + s).exists()}
        return gal_plots({j.seed: j.run_dir for j in jobs}, stem)


# ----------------------------------------------------------------------------- distillation


