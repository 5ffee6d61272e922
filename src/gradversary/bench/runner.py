"""One benchmark runner: a suite is a spec under ``configs/bench/``, not a module.

``gradversary bench SUITE`` reads ``configs/bench/SUITE.yaml`` (:class:`Suite`): rows, each a
few cells (a config file plus overrides), seeds, the paper's figures, quick-size overrides,
options and notes. The runner then

1. resolves every cell and seed into a run (``<out-dir>/<variant>/<row>/<label>-s<seed>``);
2. runs the suite's stages that come before training (a hyper-parameter grid);
3. reuses a finished run directory or a run record with the same resolved config
   (:func:`~gradversary.bench.records.same_config`), resumes an unfinished one and trains the
   rest, in parallel one-thread processes, recording each run as it ends;
4. runs the stages that come after (evaluations, step timing);
5. writes the results as JSON, with the provenance once (command, commit and dirty flag, seeds,
   versions, wall time), and the Markdown as a pure render of that JSON: a common header, then
   the suite's registered table function (:data:`TABLES`).

With ``report_only`` nothing is trained or measured: runs come from run directories and records.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import from_dict
from ..config_files import read_config_file
from ..engine.config import resolve_config
from ..engine.distributed import spawn_ranks
from ..engine.teacher import teacher_fingerprint
from ..engine.trainer import Trainer
from ..errors import ConfigError, DivergenceError, TeacherChangedError
from ..io import atomic_write_text, git_commit, read_metrics
from ..registry import Registry
from ..report.markdown import provenance, provenance_lines
from ..report.tables import TABLES
from .parallel import map_jobs
from .records import RunRecords, same_config

log = logging.getLogger(__name__)

__all__ = ["SPEC_DIR", "STAGES", "TABLES", "BenchRun", "Job", "Suite", "list_suites", "load_suite",
           "run_suite", "render", "suite_status", "train_or_resume"]

SPEC_DIR = Path("configs/bench")
#: stage name -> class with ``before(run)`` and/or ``after(run) -> dict`` (JSON for the table)
STAGES = Registry("bench stage")


@dataclass
class Cell:
    """One column of a row: a config file (under ``Suite.config_dir``) and its overrides."""

    config: str
    overrides: list[str] = field(default_factory=list)
    max_seeds: int | None = None
    seeds: list[int] | None = None


@dataclass
class Row:
    """A table row: cells by label; ``vars`` fill ``{name}`` fields of the group's cells."""

    name: str
    title: str = ""
    group: str = ""
    cells: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class Group:
    """Rows shown together: title, note, default cells, quick overrides, stage options."""

    title: str = ""
    note: str = ""
    cells: dict[str, Any] = field(default_factory=dict)
    quick: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Suite:
    """A benchmark suite as data (``configs/bench/<name>.yaml``).

    Args:
        name: CLI name (``gradversary bench <name>``); results: file stem under docs/results.
        title, quick_title: the results heading, and what ``--quick`` adds to it.
        table: registered table function; stages: registered stages, in order.
        seeds, quick_seeds: default seeds at full size and with ``--quick``.
        quick: overrides of every run with ``--quick`` (before the group's).
        options: per-suite CLI options, ``name -> {default, help, choices, override, variant}``:
            ``override`` (``"selection.criterion={}"``) sets every run; ``variant: true`` keeps
            runs under a non-default value apart (``full-<value>``).
        notes: prose printed with the table, by key; reference: where the paper's figures
            come from; settings: stage name -> its settings.
        keep_diverged: a run stopped by the divergence watch (:class:`~gradversary.errors.
            DivergenceError`) is a result, recorded as diverged at its step (the table says
            so), instead of an error that stops the suite.
    """

    name: str
    results: str
    title: str
    table: str
    seeds: list[int]
    rows: list[Row]
    summary: str = ""
    quick_title: str = " (quick, reduced size: a smoke test, not a result)"
    quick_seeds: list[int] = field(default_factory=lambda: [0])
    quick: list[str] = field(default_factory=list)
    groups: dict[str, Group] = field(default_factory=dict)
    options: dict[str, dict] = field(default_factory=dict)
    stages: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    reference: str = ""
    settings: dict[str, dict] = field(default_factory=dict)
    config_dir: str = "configs"
    out_dir: str = ""
    keep_diverged: bool = False

    def __post_init__(self) -> None:
        self.groups = {k: from_dict(Group, v, f"groups.{k}") if isinstance(v, dict) else v
                       for k, v in self.groups.items()}
        for row in self.rows:  # a row's cells: its own, else its group's, with {name} filled
            cells = row.cells or self.groups.setdefault(row.group, Group()).cells
            row.cells = {k.format(name=row.name): from_dict(Cell, _fill(c if isinstance(c, dict) else {"config": c},
                         {"name": row.name, **row.vars}), f"rows.{row.name}.cells.{k}") for k, c in cells.items()}


def _fill(d: Any, names: dict) -> Any:
    """``d`` with ``{name}`` fields of its strings filled (``{run_dir:...}`` stays)."""
    if isinstance(d, str):
        return d.format(**names) if "{" in d and "{run_dir:" not in d else d
    if isinstance(d, dict):
        return {k: _fill(v, names) for k, v in d.items()}
    return [_fill(v, names) for v in d] if isinstance(d, list) else d


def load_suite(name: str, spec_dir: str | Path = SPEC_DIR) -> Suite:
    """The suite ``name`` (``great-defense`` or ``great_defense``) from its spec file."""
    path = Path(spec_dir) / f"{name.replace('-', '_')}.yaml"
    if not path.is_file():
        raise ConfigError(f"no bench suite {name!r}; suites: {', '.join(list_suites(spec_dir))}")
    return from_dict(Suite, read_config_file(path), path.stem)


def list_suites(spec_dir: str | Path = SPEC_DIR) -> dict[str, str]:
    """Suite name -> one-line summary, for every spec under ``spec_dir``."""
    specs = (read_config_file(p) for p in sorted(Path(spec_dir).glob("*.yaml")))
    return {raw["name"]: raw.get("summary", "") for raw in specs}


@dataclass
class Job:
    """One run of a cell and seed; ``summary`` once trained or found, ``extra`` goes with it."""

    row: str
    label: str
    seed: int
    config: Path
    overrides: list[str]
    cfg: Any = None
    run_dir: Path | None = None
    summary: dict | None = None
    extra: dict = field(default_factory=dict)
    waits: bool = False  # trains after the others (it names another row's run directory)

    @property
    def cell(self) -> str:
        return f"{self.label.replace(' ', '_')}-s{self.seed}"  # the name BenchRun.run_dir uses

    def resolve(self, more: list[str] = ()) -> Any:
        """The resolved config of this job, named after its cell."""
        cfg = resolve_config(read_config_file(self.config), [*self.overrides, *more])
        cfg.name = self.cell
        return cfg


@dataclass
class BenchRun:
    """Everything one invocation knows; stages read it and add to ``jobs``."""

    suite: Suite
    seeds: list[int]
    quick: bool
    options: dict[str, Any]
    out_dir: Path
    records: RunRecords
    data_root: str | None = None
    jobs_n: int = 1
    nproc: int = 1
    progress: bool = False
    report_only: bool = False
    command: str = ""
    results: Path = Path(".")
    jobs: list[Job] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)

    @property
    def size(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def variant(self) -> str:
        return self.size + "".join(f"-{self.options[k]}" for k, o in self.suite.options.items()
                                   if o.get("variant") and self.options[k] != o.get("default"))

    def run_dir(self, row: str, label: str, seed: int) -> Path:
        """Where the run of ``row``'s cell ``label`` at ``seed`` lives under ``out_dir``."""
        return self.out_dir / self.variant / row / f"{label.replace(' ', '_')}-s{seed}"

    def group_of(self, job: Job) -> Group:
        return self.suite.groups[next(r.group for r in self.suite.rows if r.name == job.row)]


def train_or_resume(cfg, run_dir: Path, data_root: str | None, progress: bool,
                    keep_diverged: bool = False, nproc: int = 1) -> dict:
    """Train, or resume an unfinished run of the same resolved config; its summary.

    With ``keep_diverged``, a run the engine stops as diverged gets a summary saying so
    (``diverged``: step, reason, the checkpoint kept), written as its ``summary.json`` so that
    the suite reuses it like any finished run; otherwise the error propagates.

    With ``nproc`` > 1 the run trains on that many local DDP ranks (spawned here; gloo on CPU),
    which together take the steps of one process on the global batch (``tests/test_ddp.py``);
    the summary is read back from the run directory."""
    if nproc > 1:
        spawn_ranks(_train_rank, nproc, cfg, run_dir, data_root, keep_diverged)
        return json.loads((run_dir / "summary.json").read_text())
    cfg.train.progress = progress
    resume = same_config(run_dir / "config.yaml", cfg) and (run_dir / "checkpoints" / "last.pt").exists()
    # a fresh start here is deliberate (no run of this config to continue): overwrite
    trainer = Trainer(cfg, run_dir=run_dir, data_root=data_root)
    try:
        try:
            return trainer.fit(resume=resume, force=not resume)
        except TeacherChangedError as e:  # its steps so far learnt from another teacher
            log.warning("%s: started again", e)
            return trainer.fit(force=True)
    except DivergenceError as e:
        if not keep_diverged:
            raise
        summary = {"run": cfg.run_name, "method": cfg.method["name"], "data": cfg.data["name"],
                   "seed": cfg.train.seed, "steps": e.step, "final": {},
                   "wall_time_s": round(trainer.wall_time, 3),  # to the last step logged
                   "diverged": {"step": e.step, "reason": str(e), "checkpoint": e.checkpoint}}
        if trainer.writes:  # rank 0 (every rank stops at the same step: it watches global figures)
            atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary


def _train_rank(cfg, run_dir: Path, data_root: str | None, keep_diverged: bool) -> None:
    """One DDP rank of :func:`train_or_resume` (run by :func:`spawn_ranks`)."""
    train_or_resume(cfg, run_dir, data_root, False, keep_diverged)


_RUN_DIR = re.compile(r"\{run_dir:(\w+)\}")


def _with_dependencies(suite: Suite, rows: list, opts: list[str]) -> list:
    """``rows`` and every row they wait for (``{run_dir:ROW}`` in an override, transitively),
    in the suite's order: ``--only 'kd_*'`` selects the teacher too, which is reused if it is
    finished and trained first if not."""
    by_name = {r.name: r for r in suite.rows}
    need, todo = {r.name for r in rows}, list(rows)
    while todo:
        row = todo.pop()
        for dep in (d for c in row.cells.values() for o in [*c.overrides, *opts] for d in _RUN_DIR.findall(o)):
            if dep not in by_name:
                raise ValueError(f"row {row.name} of {suite.name} waits for row {dep!r}, which the suite does not have")
            if dep not in need:
                need.add(dep)
                todo.append(by_name[dep])
    return [r for r in suite.rows if r.name in need]


def _expand(run: BenchRun, only: str | None) -> list[Job]:
    s = run.suite
    rows = [r for r in s.rows if only is None or fnmatch.fnmatch(r.name, only)]
    if not rows:
        raise ValueError(f"no row of {s.name} matches {only!r}; rows: {', '.join(r.name for r in s.rows)}")
    opts = [o["override"].format(run.options[k]) for k, o in s.options.items() if "override" in o
            and not (o.get("omit_default") and run.options[k] == o.get("default"))]
    rows = _with_dependencies(s, rows, opts)
    jobs = []
    for row in rows:
        for label, c in row.cells.items():
            seeds = c.seeds if c.seeds is not None else run.seeds[:c.max_seeds or len(run.seeds)]
            for seed in seeds:
                over = [*c.overrides, f"train.seed={seed}", *opts]
                if run.quick:
                    over += [*s.quick, *s.groups[row.group].quick]
                path = Path(s.config_dir) / c.config
                if not path.is_file():
                    raise ValueError(f"config {str(path)!r} of row {row.name} does not exist")
                jobs.append(Job(row.name, label, seed, path, over))
    dirs = {j.row: run.run_dir(j.row, j.label, j.seed) for j in reversed(jobs)}  # a row's (first) run
    for j in jobs:  # {run_dir:ROW}: that row's run directory; the job trains after the others
        j.run_dir = run.run_dir(j.row, j.label, j.seed)
        j.waits = any("{run_dir:" in o for o in j.overrides)
        j.overrides = [_RUN_DIR.sub(lambda m: str(dirs[m[1]]), o) for o in j.overrides]
    return jobs


def _stages(run: BenchRun, hook: str) -> dict[str, Any]:
    out = {}
    for name in run.suite.stages:
        stage = STAGES.create(name)
        if hasattr(stage, hook):
            out[name] = getattr(stage, hook)(run)
    return out


def run_suite(suite: Suite, seeds: list[int] | None = None, quick: bool = False,
              options: dict[str, Any] | None = None, only: str | None = None,
              out_dir: str | Path | None = None, results: str | Path | None = None,
              records: bool | str | Path = True, **settings: Any) -> Path:
    """Run (or tabulate, with ``report_only=True``) ``suite`` and write its results.

    Args:
        seeds: default the suite's (``quick_seeds`` with ``quick``).
        options: the suite's options (defaults from the spec).
        only: glob on row names.
        records: ``True``: ``<results stem>_runs/`` beside the results; a path; ``False``: off.
        settings: ``data_root``, ``jobs_n``, ``nproc`` (DDP ranks per training run), ``progress``,
            ``report_only``, ``command``
            (fields of :class:`BenchRun`).
    """
    t0 = time.perf_counter()
    commit = git_commit()  # read once, now: the files written below must not mark the tree dirty
    run = _prepare(suite, seeds, quick, options, only, out_dir, results, records, **settings)
    rec, results = run.records, run.results
    stage_out = _stages(run, "before")
    cmd = run.command or f"gradversary bench {suite.name}"
    # the runs another waits for ({run_dir:ROW}) first; a waiting run is matched against the
    # finished runs and records only then, since a teacher trained again makes its students stale
    for waits in (False, True):
        wave = [j for j in run.jobs if j.waits == waits and not _reused(run, j, commit, cmd)]
        if run.report_only:
            continue

        def record(i: int, summary: dict, wave=wave) -> None:  # as each run ends
            rec.put(run.variant, wave[i].row, wave[i].cell, wave[i].cfg, summary, commit, cmd)

        # with DDP ranks per run (nproc), the runs train one after another
        fresh = map_jobs(train_or_resume, [(j.cfg, j.run_dir, run.data_root, run.progress and run.jobs_n == 1,
                                            suite.keep_diverged, run.nproc) for j in wave],
                         1 if run.nproc > 1 else run.jobs_n, "runs", run.progress, on_result=record)
        for j, s in zip(wave, fresh):
            j.summary = s
    missing, total = [j for j in run.jobs if j.summary is None], len(run.jobs)
    run.jobs = trained = [j for j in run.jobs if j.summary is not None]
    stage_out |= _stages(run, "after")  # a stage may leave out runs it has no result for
    data = _results_json(run, stage_out, time.perf_counter() - t0)
    kept = {id(j) for j in run.jobs}  # by identity: Job's dataclass equality compares every field
    data["missing"] = {"total": total, "rows": _by_row(missing),
                       "unevaluated": _by_row([j for j in trained if id(j) not in kept])}
    atomic_write_text(results.with_suffix(".json"), json.dumps(_without_histories(data), indent=1) + "\n")
    atomic_write_text(results, render(data, suite))
    return results


def _reused(run: BenchRun, j: Job, commit: str, cmd: str) -> bool:
    """Give ``j`` the summary of its finished run directory (recording it if the records lack
    it) or of its record, when there is one of the same config that learnt from today's
    teacher; ``False``: the run is to be made."""
    rec = run.records
    j.cfg = j.resolve()
    if same_config(j.run_dir / "config.yaml", j.cfg) and (j.run_dir / "summary.json").exists():
        summary = json.loads((j.run_dir / "summary.json").read_text())
        if _same_teacher(j.cfg, summary):
            j.summary = summary
            if rec.get(run.variant, j.row, j.cell, j.cfg) is None:
                rec.put(run.variant, j.row, j.cell, j.cfg, summary, commit, cmd)
            return True
        log.info("%s learnt from another teacher: it is made again", j.run_dir)
        return False
    found = rec.get(run.variant, j.row, j.cell, j.cfg)
    if found is not None and _same_teacher(j.cfg, found):
        if not run.report_only and _needs_model(run, j, found):
            log.info("%s: a stage has no result for its record and the model is gone: it is made again",
                     j.run_dir)
            return False
        j.summary = found
        return True
    return False


def _needs_model(run: BenchRun, j: Job, summary: dict) -> bool:
    """Whether a stage of the suite still has to read ``j``'s model, which only its run directory
    holds (a stage says so with ``needs_model(run, job, summary)``): on a machine without that
    directory the run is trained again rather than left out of the stage for good."""
    stages = (STAGES.create(name) for name in run.suite.stages)
    return any(s.needs_model(run, j, summary) for s in stages if hasattr(s, "needs_model"))


def _same_teacher(cfg, summary: dict) -> bool:
    """Whether a finished distillation run (or its record) learnt from the teacher now in its
    ``method.teacher_run`` directory; true without a teacher, and when either fingerprint is
    unknown (the teacher's directory is not here, or the run predates fingerprints)."""
    now = teacher_fingerprint(cfg.method.get("teacher_run"))
    then = (summary.get("teacher") or {}).get("fingerprint")
    return now is None or then is None or now == then


def _prepare(suite: Suite, seeds: list[int] | None, quick: bool, options: dict[str, Any] | None,
             only: str | None, out_dir: str | Path | None, results: str | Path | None,
             records: bool | str | Path, **settings: Any) -> BenchRun:
    """The invocation's :class:`BenchRun` with its jobs (the arguments of :func:`run_suite`)."""
    bad = set(options or {}) - set(suite.options)
    if bad:
        raise ValueError(f"{suite.name} has no option {sorted(bad)}; options: {sorted(suite.options)}")
    opts = {k: o.get("default") for k, o in suite.options.items()} | (options or {})
    stem = suite.results + ("_quick" if quick else "")
    results = Path(results or f"docs/results/{stem}.md")
    rec = RunRecords(None if records is False else results.with_name(results.stem + "_runs")
                     if records is True else records)
    run = BenchRun(suite, list(seeds or (suite.quick_seeds if quick else suite.seeds)), quick, opts,
                   Path(out_dir or suite.out_dir or f"runs/bench/{suite.results}"), rec,
                   results=results, **settings)
    run.jobs = _expand(run, only)
    run.selected = list(dict.fromkeys(j.row for j in run.jobs))
    return run


def suite_status(suite: Suite, seeds: list[int] | None = None, quick: bool = False,
                 options: dict[str, Any] | None = None, only: str | None = None,
                 out_dir: str | Path | None = None, results: str | Path | None = None,
                 records: bool | str | Path = True) -> list[list[str]]:
    """Where each run of an invocation stands, read from its run directory and the records;
    nothing is trained or written (``gradversary bench SUITE --status``).

    Returns:
        one row per run: row, cell, seed, state (``finished`` or ``finished: diverged at step
        N``, ``finished (record)``,
        ``unfinished`` with the last step logged and its share of the schedule, ``not
        started``, or a directory of another config, which a run would start again), the last
        evaluation's test accuracy, and the robustness evaluation (done, or how many attacks
        an interrupted one has kept).
    """
    run = _prepare(suite, seeds, quick, options, only, out_dir, results, records)
    out = []
    for j in run.jobs:
        j.cfg, d = j.resolve(), j.run_dir
        mine = same_config(d / "config.yaml", j.cfg)
        train, evals = _last_logged(d / "metrics.jsonl") if mine else (None, None)
        if mine and (d / "summary.json").exists():
            summary = json.loads((d / "summary.json").read_text())
            div = summary.get("diverged")
            state = f"finished: diverged at step {div['step']:,}" if div else "finished"
            if not _same_teacher(j.cfg, summary):
                state += ", from a teacher since trained again (a run makes it again)"
        elif run.records.get(run.variant, j.row, j.cell, j.cfg) is not None:
            state = "finished (record)"
        elif mine and train is not None:
            share = f" ({100 * train['p']:.0f}% of the schedule)" if train.get("p") else ""
            state = f"unfinished: step {train['step']:,}{share}"
        elif (d / "config.yaml").exists() and not mine:
            state = "another config in its directory (a run starts again)"
        else:
            state = "not started"
        acc = next((f"{evals[k]:.3f} ({k}, step {evals['step']:,})" for k in ("target_test_acc", "source_test_acc")
                    if evals and k in evals), "–")
        attacks = "–"
        if (d / "robustness.json").exists():
            attacks = "evaluated (robustness.json)"
        elif (d / "robustness.partial.json").exists():
            try:
                n = len(json.loads((d / "robustness.partial.json").read_text()).get("attacks", {}))
                attacks = f"interrupted after {n} attacks (resumes)"
            except (OSError, ValueError):
                attacks = "interrupted (unreadable; starts again)"
        out.append([j.row, j.label, str(j.seed), state, acc, attacks])
    return out


def _last_logged(path: Path) -> tuple[dict | None, dict | None]:
    """The last ``train`` and ``eval`` rows of a run's ``metrics.jsonl``."""
    rows = read_metrics(path)
    last = {r.get("kind"): r for r in rows}
    return last.get("train"), last.get("eval")


def _results_json(run: BenchRun, stages: dict, wall: float) -> dict:
    rows = {}
    for r in (r for r in run.suite.rows if r.name in run.selected):
        jobs = sorted((j for j in run.jobs if j.row == r.name), key=lambda j: j.seed)
        runs = {label: [{**j.summary, **j.extra} for j in jobs if j.label == label] for label in r.cells}
        rows[r.name] = {"title": r.title, "group": r.group, "paper": r.paper,
                        "runs": {k: v for k, v in runs.items() if v}}
    return {"suite": run.suite.name, "quick": run.quick, "seeds": run.seeds, "options": run.options,
            "provenance": provenance(run.command or f"gradversary bench {run.suite.name}", wall),
            "stages": stages, "rows": rows}


def _by_row(jobs: list[Job]) -> dict[str, dict[str, list[int]]]:
    """Runs as row -> cell label -> seeds."""
    out: dict[str, dict[str, list[int]]] = {}
    for j in jobs:
        out.setdefault(j.row, {}).setdefault(j.label, []).append(j.seed)
    return out


def _without_histories(data: dict) -> dict:
    """The results JSON as written: each run's summary without its per-evaluation ``history``,
    which the run records (``<results stem>_runs/``) and run directories keep; the table is
    rendered from the full data before this."""
    rows = {name: {**row, "runs": {label: [{k: v for k, v in r.items() if k != "history"} for r in runs]
                                   for label, runs in row["runs"].items()}}
            for name, row in data["rows"].items()}
    return {**data, "rows": rows}


def render(data: dict, suite: Suite) -> str:
    """The Markdown results file: the provenance header, then the suite's table function."""
    lines = [f"# {suite.title}" + (suite.quick_title if data["quick"] else ""), "",
             "Generated by a benchmark command; do not edit by hand.", "",
             *provenance_lines(data["provenance"], data["seeds"]), *_record_line(data),
             *_missing_line(data), ""]
    table: Callable = TABLES.get(suite.table).factory
    return "\n".join([*lines, *table(data, suite)]) + "\n"


def _missing_line(data: dict) -> list[str]:
    """A header line naming the selected runs not made yet (not trained, or trained but not
    evaluated by a stage): a table filled over several sittings says what it still lacks
    instead of leaving rows or seeds out silently."""
    missing = data.get("missing") or {}
    groups = [(what, missing.get(key) or {}) for what, key in
              (("not trained", "rows"), ("trained, not yet evaluated", "unevaluated"))]
    if not any(rows for _, rows in groups):
        return []

    def cell(row: str, label: str, seeds: list[int]) -> str:
        name = row if label == row else f"{row} {label}"
        return f"{name} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"

    n = sum(len(seeds) for _, rows in groups for cells in rows.values() for seeds in cells.values())
    parts = [f"{what}: " + "; ".join(cell(row, label, seeds) for row, cells in rows.items()
                                     for label, seeds in cells.items())
             for what, rows in groups if rows]
    return [f"- not yet run: {n} of the {missing['total']} runs selected, so the rows below show "
            f"the seeds done. {'. '.join(parts)}"]


def _record_line(data: dict) -> list[str]:
    """A header line naming the runs taken from records (earlier sessions or machines)."""
    runs = [r for d in data["rows"].values() for rs in d["runs"].values() for r in rs]
    recs = [r["record"] for r in runs if "record" in r]
    if not recs:
        return []
    commits = sorted({str(r.get("commit")) for r in recs})
    imported = sum(1 for r in recs if r.get("imported"))
    line = (f"- runs from records: {len(recs)} of {len(runs)} runs were made by earlier invocations "
            f"(commits {', '.join(f'`{c}`' for c in commits)}) and are read from their records "
            f"in `{Path(recs[0]['path']).parents[2].name}/` beside this file, each with its config, "
            "command and wall time")
    if imported:
        line += (f"; {imported} of them were imported from an earlier results file, whose runs' "
                 "own commits were not recorded (the commit is the one that wrote that file)")
    return [line]

