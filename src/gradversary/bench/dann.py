"""The DANN benchmark: the paper's tables, over seeds, under honest model selection.

``gradversary bench dann [--quick] [--seeds 3] [--only PATTERN]`` trains, for every table row,
source-only, DANN and (where the data allows) train-on-target, then writes
``docs/results/dann.md`` and ``docs/results/dann.json``.

- Every run is kept in ``<out-dir>/<row>/<label>-s<seed>``; a run whose resolved config is
  unchanged and whose summary exists is reused, so an interrupted benchmark continues where
  it stopped, and rows can be filled in over several sessions.
- DANN's headline figure is the checkpoint chosen **without target labels**, by the criterion
  in ``--select`` (default DEV, on 10% of the source held out). The last step and the oracle
  (the best evaluation on target labels) are shown beside it, labelled.
"""

from __future__ import annotations

import fnmatch
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from ..data.office_caltech import vocabulary_check
from ..engine.config import resolve_config
from ..engine.trainer import Trainer
from ..errors import DataError
from ..io import atomic_write_text
from ..report.markdown import fmt_mean_std, markdown_table, mean_std
from .compare import _lookup, git_commit
from .parallel import map_jobs
from .records import RunRecords, canonical_config

__all__ = ["Row", "ROWS", "import_records", "run_dann_bench"]


@dataclass
class Row:
    """One table row: configs by column label and the paper's figures (target accuracy).

    Args:
        name: row key (also the run sub-folder).
        title: shown in the table.
        configs: label -> (config file under ``configs/dann``, overrides).
        paper: label -> the paper's figure.
        quick: overrides applied with ``--quick``.
        group: table the row belongs to.
        grid: DANN hyper-parameter grid, override key -> values; each seed picks its setting
            by reverse validation (no target labels) before the DANN run.
        quick_grid: the grid used with ``--quick``.
        grid_seed: the seed whose data split and initialisation reverse validation uses; its
            choice then serves every seed, as the paper picks one setting per task. ``None``
            chooses per seed (costs the grid once per seed).
        max_seeds: label -> at most this many of the requested seeds (the first ones), for
            reference columns too costly to repeat (train-on-target).
    """

    name: str
    title: str
    configs: dict[str, tuple[str, list[str]]]
    paper: dict[str, float] = field(default_factory=dict)
    quick: list[str] = field(default_factory=list)
    group: str = "digits"
    grid: dict[str, list] = field(default_factory=dict)
    quick_grid: dict[str, list] = field(default_factory=dict)
    grid_seed: int | None = 0
    max_seeds: dict[str, int] = field(default_factory=dict)


# --quick: the whole table in under 10 minutes on 2 cores: 8m16s wall (15 CPU-minutes) alone on
# an idle machine, from scratch (no runs, records or mSDA cache), at commit f982ae0
_DIGITS_QUICK = ["train.steps=250", "train.eval_every=125", "data.max_source=3000",
                 "data.max_target=3000", "data.max_test=1000"]
_FEATURES_QUICK = ["train.steps=200", "train.eval_every=100"]


def _digits(name, title, src, tgt, paper) -> Row:
    return Row(name, title, {
        "source-only": (f"{name}_source_only.yaml", []),
        "DANN": (f"{name}.yaml", []),
        "train on target": (f"{name}_source_only.yaml", [f"data.source={tgt}"]),
    }, paper, _DIGITS_QUICK, "digits", max_seeds={"train on target": 1})


_AMAZON = {"b": "books", "d": "dvd", "e": "electronics", "k": "kitchen"}
# The paper's grid for the shallow DANN (section 5.1.3): lambda from 9 log-spaced values in
# [0.01, 1], hidden layer of 50 or 100 units, chosen by reverse validation.
_AMAZON_GRID = {"method.lambda_schedule.value": [round(10 ** (-2 + k / 4), 4) for k in range(9)],
                "model.hidden": [[50], [100]]}
_AMAZON_QUICK_GRID = {"method.lambda_schedule.value": [0.1, 1.0]}
# Table 1 of the paper, raw features: (DANN, NN)
_AMAZON_PAPER = {"bd": (.784, .790), "be": (.733, .747), "bk": (.779, .778), "db": (.723, .720),
                 "de": (.754, .732), "dk": (.783, .778), "eb": (.713, .709), "ed": (.738, .733),
                 "ek": (.854, .854), "kb": (.709, .708), "kd": (.740, .739), "ke": (.843, .841)}


def _amazon(pair: str) -> Row:
    dann, nn = _AMAZON_PAPER[pair]
    s, t = (_AMAZON[c] for c in pair)
    return Row(f"amazon_{pair}", f"Amazon {s} → {t}", {
        "source-only": (f"amazon_{pair}_source_only.yaml", []),
        "DANN": (f"amazon_{pair}.yaml", []),
    }, {"source-only": nn, "DANN": dann}, _FEATURES_QUICK, "amazon",
        grid=_AMAZON_GRID, quick_grid=_AMAZON_QUICK_GRID)


# Table 1 of the paper, mSDA features: (DANN, NN)
_AMAZON_MSDA_PAPER = {"bd": (.829, .824), "be": (.804, .770), "bk": (.843, .842), "db": (.825, .823),
                      "de": (.809, .768), "dk": (.849, .853), "eb": (.774, .770), "ed": (.781, .759),
                      "ek": (.881, .863), "kb": (.718, .721), "kd": (.789, .789), "ke": (.856, .850)}


def _amazon_msda(pair: str) -> Row:
    dann, nn = _AMAZON_MSDA_PAPER[pair]
    s, t = (_AMAZON[c] for c in pair)
    return Row(f"amazon_msda_{pair}", f"Amazon {s} → {t} (mSDA)", {
        "source-only": (f"amazon_msda_{pair}_source_only.yaml", []),
        "DANN": (f"amazon_msda_{pair}.yaml", []),
    }, {"source-only": nn, "DANN": dann}, [*_FEATURES_QUICK, "data.msda_layers=1"], "amazon_msda")


_OFFICE = {"a": "amazon", "c": "caltech", "d": "dslr", "w": "webcam"}


def _office(pair: str) -> Row:
    s, t = (_OFFICE[c] for c in pair)
    return Row(f"office_caltech_{pair}", f"Office-Caltech {s} → {t}", {
        "source-only": (f"office_caltech_{pair}_source_only.yaml", []),
        "DANN": (f"office_caltech_{pair}.yaml", []),
    }, {}, _FEATURES_QUICK, "office_caltech")


ROWS: list[Row] = [
    _digits("mnist_mnistm", "MNIST → MNIST-M", "mnist", "mnist_m",
            {"source-only": .5225, "DANN": .7666, "train on target": .9596}),
    Row("mnist_mnistm_clip", "MNIST → MNIST-M, paper recipe + gradient clipping (beyond the paper)", {
        "DANN": ("mnist_mnistm_clip.yaml", []),
    }, {"source-only": .5225, "DANN": .7666}, _DIGITS_QUICK, "digits"),
    Row("mnist_mnistm_bn_adam", "MNIST → MNIST-M, BatchNorm + Adam (beyond the paper)", {
        "source-only": ("mnist_mnistm_bn_adam_source_only.yaml", []),
        "DANN": ("mnist_mnistm_bn_adam.yaml", []),
    }, {"source-only": .5225, "DANN": .7666}, _DIGITS_QUICK, "digits"),
    _digits("mnist_usps", "MNIST → USPS", "mnist", "usps", {}),
    _digits("usps_mnist", "USPS → MNIST", "usps", "mnist", {}),
    *[_amazon(p) for p in _AMAZON_PAPER],
    *[_amazon_msda(p) for p in _AMAZON_MSDA_PAPER],
    *[_office(a + b) for a in _OFFICE for b in _OFFICE if a != b],
]

_GROUP_TITLES = {
    "digits": "Digits (paper Table 2)",
    "amazon": "Amazon reviews, raw features (paper Table 1; its NN column is our source-only)",
    "amazon_msda": "Amazon reviews, mSDA features (paper Table 1; its NN column is our source-only)",
    "office_caltech": "Office-Caltech-10, BoVW-800 features (not in the paper)",
}


def _resolve(config_dir: Path, fname: str, overrides: Sequence[str]):
    path = config_dir / fname
    raw = yaml.safe_load(path.read_text())
    return resolve_config(raw, list(overrides))


def _same_config(run_dir: Path, cfg) -> bool:
    """Whether ``run_dir`` was made with this resolved config (the progress bar aside).

    The saved config is resolved again first, so options added to the library since the run
    was made compare equal when they hold their defaults (a new option must not retrain every
    finished run); a saved config that no longer resolves does not match.
    """
    path = run_dir / "config.yaml"
    if not path.exists():
        return False
    try:
        return canonical_config(yaml.safe_load(path.read_text())) == canonical_config(cfg)
    except Exception:  # noqa: BLE001 - an unreadable or outdated config is simply not a match
        return False


def _run(cfg, run_dir: Path, data_root: str | None, progress: bool) -> dict:
    """Train, resume, or reuse a finished run with the same resolved config; return its summary."""
    same = _same_config(run_dir, cfg)
    if same and (run_dir / "summary.json").exists():
        return json.loads((run_dir / "summary.json").read_text())
    cfg.train.progress = progress
    resume = same and (run_dir / "checkpoints" / "last.pt").exists()
    # a fresh start (another config, or no checkpoint yet) replaces what the directory held
    return Trainer(cfg, run_dir=run_dir, data_root=data_root).fit(resume=resume, force=not resume)


def run_dann_bench(seeds: Sequence[int], out_dir: str | Path = "runs/bench/dann",
                   results: str | Path = "docs/results/dann.md", quick: bool = False,
                   only: str | None = None, select: str = "dev", config_dir: str | Path = "configs/dann",
                   data_root: str | None = None, progress: bool = True, command: str = "",
                   rows: Sequence[Row] | None = None, report_only: bool = False,
                   jobs: int = 1, select_rule: str = "min", records: str | Path | bool = True) -> Path:
    """Run the benchmark rows (default :data:`ROWS`) matching ``only`` (a glob on row names)
    and write the results. With ``report_only``, nothing is trained: finished runs are
    tabulated and missing ones left out (their cells read n/a).

    Two stages: the reverse-validation grid searches (one per row, or per seed), then every
    run; with ``jobs`` > 1 each stage runs in that many one-thread processes. ``select`` and
    ``select_rule`` set every run's ``selection.criterion`` and ``selection.rule``.

    ``records`` (default: ``<results stem>_runs/`` beside the results; ``False``: off) keeps a
    :class:`~gradversary.bench.records.RunRecords` of every finished run and grid search, and
    a cell whose run directory is missing is taken from its record when the resolved config
    matches: the table can be filled over several sessions on different machines.
    """
    t0 = time.perf_counter()
    git_commit()  # read once, now: the files written below must not mark the tree dirty
    results = Path(results)
    config_dir, grid_dir = Path(config_dir), Path(out_dir) / ("quick" if quick else "full")
    rec = RunRecords(None if records is False else
                     results.with_name(results.stem + "_runs") if records is True else records)
    # runs under another selection live beside the default ones (full-iwcv, full-dev-one_se),
    # so that comparing rules retrains nothing of the other; grid choices do not depend on it
    suffix = "" if (select, select_rule) == ("dev", "min") else "-" + select + (
        f"-{select_rule}" if select_rule != "min" else "")
    out_dir = grid_dir.with_name(grid_dir.name + suffix)
    rows = [r for r in (ROWS if rows is None else rows) if only is None or fnmatch.fnmatch(r.name, only)]
    if not rows:
        raise ValueError(f"no benchmark row matches {only!r}; rows: {', '.join(r.name for r in ROWS)}")
    cells_of = _cells(rows, seeds, quick, select, select_rule)
    grids: dict[Path, tuple] = {}
    for row in rows:
        for _label, _seed, fname, over, gseed in cells_of[row.name]:
            if gseed is not None:
                cache = grid_dir / row.name / f"grid-s{gseed}.json"
                g_over = [o for o in over if not o.startswith("train.seed=")] + [f"train.seed={gseed}"]
                grid = row.quick_grid if quick else row.grid
                grids.setdefault(cache, (config_dir, fname, g_over, grid, gseed, cache, data_root,
                                         progress and jobs == 1, f"{row.name} grid"))
                rec.restore_file(grid_dir.name, row.name, cache.name, cache)
    if report_only:
        chosen = {c: json.loads(c.read_text())["result"] for c in grids if c.exists()}
    else:
        chosen = dict(zip(grids, map_jobs(_grid_search, list(grids.values()), jobs, "grids", progress)))
    for cache in grids:
        rec.keep_file(grid_dir.name, cache.parent.name, cache)
    data = {row.name: {"title": row.title, "group": row.group, "paper": row.paper, "runs": {}}
            for row in rows}
    todo, found = [], []  # (row, label, cell, cfg, cache); summaries in table order
    for row in rows:
        for label, seed, fname, over, gseed in cells_of[row.name]:
            cache = None if gseed is None else grid_dir / row.name / f"grid-s{gseed}.json"
            if cache is not None and cache not in chosen:
                continue  # report-only, grid never searched: nothing to show
            cfg = _resolve(config_dir, fname, [*over, *(chosen[cache]["overrides"] if cache else [])])
            cfg.name = f"{label.replace(' ', '_')}-s{seed}"
            run_dir = out_dir / row.name / cfg.name
            summary = None
            if _same_config(run_dir, cfg) and (run_dir / "summary.json").exists():
                summary = json.loads((run_dir / "summary.json").read_text())
            elif (summary := rec.get(out_dir.name, row.name, cfg.name, cfg)) is None:
                if not report_only:
                    todo.append((row.name, label, cfg, cache))
                continue
            found.append((row.name, label, cfg, cache, summary))
    commit, cmd = git_commit(), command or "gradversary bench dann"

    def record(i: int, summary: dict) -> None:  # as each run ends: a stopped bench keeps them
        name, _, cfg, _ = todo[i]
        rec.put(out_dir.name, name, cfg.name, cfg, summary, commit, cmd)

    fresh = map_jobs(_run, [(cfg, out_dir / name / cfg.name, data_root, progress and jobs == 1)
                            for name, _, cfg, _ in todo], jobs, "runs", progress, on_result=record)
    for name, _, cfg, _, summary in found:  # a run directory not yet recorded
        if "record" not in summary and rec.get(out_dir.name, name, cfg.name, cfg) is None:
            rec.put(out_dir.name, name, cfg.name, cfg, summary, commit, cmd)
    done = [*found, *((n, lab, cfg, cache, s) for (n, lab, cfg, cache), s in zip(todo, fresh))]
    for name, label, _cfg, cache, summary in done:
        if cache is not None:
            summary = {**summary, "grid": chosen[cache]}
        data[name]["runs"].setdefault(label, []).append(summary)
    for d in data.values():  # seeds in order, whichever way each run was found
        for runs in d["runs"].values():
            runs.sort(key=lambda r: r.get("seed", 0))
    notes = {"office_caltech": _office_note(data_root)} if any(r.group == "office_caltech" for r in rows) else {}
    wall = time.perf_counter() - t0
    return _write(data, rows, seeds, results, quick, _rule_name(select, select_rule), command, wall, notes)


def _office_note(data_root: str | None) -> list[str]:
    """The vocabulary check of the staged Office-Caltech file, measured now, as report lines."""
    try:
        chk = vocabulary_check(data_root)
    except DataError as e:  # the rows are then n/a anyway
        return [f"Vocabulary check not run: {e}", ""]
    ins, cross = chk["in_domain"].values(), chk["cross_domain"].values()
    return [
        "Read these rows with care. A nearest-class-mean classifier (cosine to the class means of "
        "the raw features, no training; `gradversary.data.office_caltech.vocabulary_check`, run "
        f"by this command) scores {min(ins):.2f} to {max(ins):.2f} inside a domain (5-fold) but "
        f"{min(cross):.2f} to {max(cross):.2f} from one domain to another (12 pairs; chance "
        f"{chk['chance']:.2f}). Feature i of the staged file does not seem to mean the same visual "
        "word in every domain, so no method that reads the features as given can transfer much; "
        "these rows test the code path, not domain adaptation.", ""]


def _cells(rows: Sequence[Row], seeds, quick: bool, select: str, select_rule: str) -> dict[str, list]:
    """Row name -> its cells ``(label, seed, config file, overrides, grid seed or None)``."""
    cells_of: dict[str, list] = {row.name: [] for row in rows}
    for row in rows:
        grid = row.quick_grid if quick else row.grid
        for label, (fname, extra) in row.configs.items():
            for seed in list(seeds)[:row.max_seeds.get(label, len(seeds))]:
                over = [*extra, f"train.seed={seed}", f"selection.criterion={select}"]
                if select_rule != "min":  # the default stays out, so finished runs still match
                    over.append(f"selection.rule={select_rule}")
                if quick:
                    over += row.quick
                gseed = None
                if grid and label == "DANN":
                    gseed = seed if row.grid_seed is None else row.grid_seed
                cells_of[row.name].append((label, seed, fname, over, gseed))
    return cells_of


def import_records(old_json: str | Path, config_dir: str | Path = "configs/dann",
                   records: str | Path | None = None, rows: Sequence[Row] | None = None) -> dict[str, int]:
    """Turn an earlier ``dann.json`` (written before records existed) into run records.

    Each run of the old file becomes the record of its cell when the config it would have
    today is the one it ran with, as far as can be checked: the row's config files must be
    unchanged in git between the commit that wrote the old file (read from the ``.md`` beside
    it) and now. Records are marked ``imported``; their commit is that of the old file, since
    the runs' own commits were not kept. Grid choices become grid caches.

    Returns:
        counts: ``imported``, ``skipped`` (config files changed, or no such row/label).
    """
    import subprocess

    old_json, config_dir = Path(old_json), Path(config_dir)
    old = json.loads(old_json.read_text())
    md = old_json.with_suffix(".md")
    commit = next((ln.split("`")[1] for ln in md.read_text().splitlines()
                   if ln.startswith("- commit: `")), "") if md.exists() else ""
    if not commit or commit.endswith("-dirty"):
        raise ValueError(f"{md}: no clean commit line; cannot check that the configs are unchanged")
    rec = RunRecords(records or old_json.with_name(old_json.stem + "_runs"))
    quick, select = old.get("quick", False), old.get("select", "dev")
    if "," in select:
        raise ValueError(f"{old_json}: select {select!r}: only the default rule (min) can be imported")
    variant = ("quick" if quick else "full") + ("" if select == "dev" else f"-{select}")
    by_name = {r.name: r for r in (ROWS if rows is None else rows)}
    counts = {"imported": 0, "skipped": 0}
    for name, d in old["rows"].items():
        row = by_name.get(name)
        for label, runs in d.get("runs", {}).items():
            if row is None or label not in row.configs:
                counts["skipped"] += len(runs)
                continue
            fname, extra = row.configs[label]
            unchanged = subprocess.run(["git", "diff", "--quiet", commit, "--", str(config_dir / fname)],
                                       capture_output=True).returncode == 0
            for r in runs:
                if not unchanged:
                    counts["skipped"] += 1
                    continue
                seed = r["seed"]
                over = [*extra, f"train.seed={seed}", f"selection.criterion={select}",
                        *(row.quick if quick else [])]
                grid = (row.quick_grid if quick else row.grid) if label == "DANN" else {}
                if grid and "grid" in r:
                    gseed = seed if row.grid_seed is None else row.grid_seed
                    g_over = [o for o in over if not o.startswith("train.seed=")] + [f"train.seed={gseed}"]
                    base = _resolve(config_dir, fname, [*g_over, "selection.criterion=last",
                                                        "selection.rule=min"])
                    key = json.dumps({"config": base.to_dict(), "grid": grid}, sort_keys=True)
                    cache = rec.root / ("quick" if quick else "full") / name / f"grid-s{gseed}.json"
                    if not cache.exists():
                        atomic_write_text(cache, json.dumps({"key": key, "result": r["grid"]}, indent=1) + "\n")
                    over = [*over, *r["grid"]["overrides"]]
                cfg = _resolve(config_dir, fname, over)
                cfg.name = f"{label.replace(' ', '_')}-s{seed}"
                summary = {k: v for k, v in r.items() if k != "grid"}
                rec.put(variant, name, cfg.name, cfg, summary, commit,
                        f"imported from {old_json.name} by gradversary bench dann --import-records",
                        imported=True)
                counts["imported"] += 1
    return counts


def _rule_name(select: str, rule: str) -> str:
    return select if rule == "min" else f"{select}, {rule.replace('_', '-')} rule"


def _same_grid(saved_key: str | None, base, grid: dict[str, list]) -> bool:
    """Whether a cached grid search was made for this config and grid. The cached config is
    resolved again, so options added to the library since then compare equal at their
    defaults (as in :func:`_same_config`)."""
    try:
        old = json.loads(saved_key)
        return old["grid"] == grid and resolve_config(old["config"], []).to_dict() == base.to_dict()
    except Exception:  # noqa: BLE001 - an unreadable or outdated cache is simply not a match
        return False


def _grid_search(config_dir: Path, fname: str, over: list[str], grid: dict[str, list], seed: int,
                 cache: Path, data_root: str | None, progress: bool = False, desc: str = "grid") -> dict:
    """Score every grid point by reverse validation (in memory) and return the best's overrides
    with all scores. Results are cached in ``cache`` (JSON) for the same config and grid."""
    import itertools

    from tqdm.auto import tqdm

    from ..engine.trainer import build_task
    from ..selection.reverse import reverse_validation

    plain = ["selection.criterion=last", "selection.rule=min"]  # reverse validation picks no checkpoint
    base = _resolve(config_dir, fname, [*over, *plain])
    key = json.dumps({"config": base.to_dict(), "grid": grid}, sort_keys=True)
    if cache.exists():
        saved = json.loads(cache.read_text())
        if _same_grid(saved.get("key"), base, grid):
            return saved["result"]
    task = build_task(base, data_root)
    scores = []
    points = list(itertools.product(*grid.values()))
    for values in tqdm(points, desc=desc, disable=not progress, leave=False):
        point = [f"{k}={json.dumps(v)}" for k, v in zip(grid, values)]
        cfg = _resolve(config_dir, fname, [*over, *plain, *point])
        cfg.train.progress = False

        def fit(t, cfg=cfg):
            tr = Trainer(cfg, task=t, persist=False)
            tr.fit()
            model = tr.method.eval()
            return model.predict_logits

        rv = reverse_validation(task, fit, seed=seed)
        scores.append({"overrides": point, "reverse_acc": rv.reverse_acc,
                       "source_val_acc": rv.source_val_acc})
    best = max(scores, key=lambda r: (r["reverse_acc"], r["source_val_acc"]))
    result = {"overrides": best["overrides"], "criterion": "reverse validation", "scores": scores}
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps({"key": key, "result": result}, indent=1) + "\n")
    return result


def _cell(runs: list[dict], path: str, digits: int = 3, expected: int = 0) -> tuple[str, list[float]]:
    """Mean ± std of ``path`` over runs; "(n=k)" when fewer than ``expected`` seeds are in."""
    vals = [v for r in runs if (v := _lookup(r, path)) is not None]
    text = fmt_mean_std(vals, digits) if vals else "n/a"
    if vals and len(vals) < expected:
        text += f" (n={len(vals)})"
    return text, vals


def _provenance(data: dict, results: Path) -> list[str]:
    """Header lines naming the runs taken from records (earlier sessions or machines)."""
    recs = [r["record"] for d in data.values() for runs in d["runs"].values() for r in runs
            if "record" in r]
    total = sum(len(runs) for d in data.values() for runs in d["runs"].values())
    if not recs:
        return []
    commits = sorted({str(r.get("commit")) for r in recs})
    imported = sum(1 for r in recs if r.get("imported"))
    where = Path(recs[0]["path"]).parents[2]
    line = (f"- runs from records: {len(recs)} of {total} runs were made by earlier invocations "
            f"(commits {', '.join(f'`{c}`' for c in commits)}) and are read from their records "
            f"in `{where.name}/` beside this file, each with its config, command and wall time")
    if imported:
        line += (f"; {imported} of them were imported from an earlier results file, whose runs' "
                 "own commits were not recorded (the commit is the one that wrote that file)")
    return [line]


def _collapsed(summary: dict) -> bool:
    """Whether a run ended with source test accuracy within 5 points of chance (1/K): its
    network died. (A fixed multiple of chance would flag every binary run under 0.75.)"""
    acc = _lookup(summary, "final/source_test_acc")
    return acc is not None and acc < 1.0 / max(2, summary.get("num_classes", 10)) + 0.05


def _ess_line(grows: list[Row], data: dict, select: str) -> list[str]:
    """A line on the importance weights behind the selected checkpoints (IWCV and DEV only):
    their effective sample size against the held-out source examples. A few effective
    examples make the weighted risk noise, and the choice close to arbitrary."""
    ess = sorted(e for row in grows for runs in data[row.name]["runs"].values() for r in runs
                 if (e := _lookup(r, "selection/metrics/select_ess")) is not None)
    if not ess or not select.startswith(("dev", "iwcv")):
        return []
    return [f"Effective sample size of the `{select}` importance weights at the selected "
            f"checkpoints ({len(ess)} runs): median {ess[len(ess) // 2]:.0f}, range "
            f"{ess[0]:.0f}-{ess[-1]:.0f} (held-out source: 10% of the source training set). "
            "Where it is a few dozen or less, the weighted risk rests on a handful of examples "
            "and the choice of checkpoint is close to arbitrary.", ""]


def _write(data: dict, rows: list[Row], seeds, results, quick, select, command, wall,
           notes: dict[str, list[str]] | None = None) -> Path:
    results = Path(results)
    lines = [
        "# DANN benchmark" + (" (quick, reduced size: not comparable with the paper)" if quick else ""),
        "", "Generated by a benchmark command; do not edit by hand.", "",
        f"- command: `{command or 'gradversary bench dann'}`",
        f"- commit: `{git_commit()}`",
        f"- seeds: {', '.join(map(str, seeds))}",
        f"- wall time of this invocation: {wall:.0f} s (runs reused from earlier invocations are not re-timed)",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.machine()}",
        *_provenance(data, results),
        "",
        "Target-domain test accuracy, mean ± std over seeds. **(selected)** is the checkpoint "
        f"chosen without target labels by `{select}` on 10% of the source held out, for DANN and "
        "source-only alike, so that the two are compared under the same rule; *last* is the "
        "final step; *oracle* is the best evaluation on target labels, an upper bound that is "
        "not an honest figure. Train-on-target is its last step. A run marked "
        "*collapsed* ended with source accuracy near chance (its network died).", "",
    ]
    header = ["task", "source-only (selected)", "DANN (selected)", "source-only last", "DANN last",
              "DANN oracle", "train on target", "paper: source-only / DANN", "time / DANN run (s)"]
    for group, title in _GROUP_TITLES.items():
        grows = [r for r in rows if r.group == group]
        if not grows:
            continue
        table = []
        avg: dict[str, list[float]] = {k: [] for k in ("so_sel", "sel", "so_last", "last")}
        wins = {"sel": 0, "last": 0}
        for row in grows:
            runs = data[row.name]["runs"]
            so_sel, so_sel_v = _cell(runs.get("source-only", []), "selection/metrics/target_test_acc",
                                     expected=len(seeds))
            so, so_v = _cell(runs.get("source-only", []), "final/target_test_acc", expected=len(seeds))
            sel, sel_v = _cell(runs.get("DANN", []), "selection/metrics/target_test_acc", expected=len(seeds))
            collapsed = sum(1 for r in runs.get("DANN", []) if _collapsed(r))
            last, last_v = _cell(runs.get("DANN", []), "final/target_test_acc", expected=len(seeds))
            orc, _ = _cell(runs.get("DANN", []), "oracle/target_test_acc", expected=len(seeds))
            tot, _ = _cell(runs.get("train on target", []), "final/target_test_acc", expected=len(seeds))
            tm, _ = _cell(runs.get("DANN", []), "wall_time_s", 0)
            paper = " / ".join(f"{row.paper[k]:.3f}" if k in row.paper else "–"
                               for k in ("source-only", "DANN"))
            if collapsed:
                last += f" ({collapsed} collapsed)"
            table.append([row.title, so_sel, sel, so, last, orc,
                          tot if "train on target" in row.configs else "–", paper, tm])
            for key, d, b in (("sel", sel_v, so_sel_v), ("last", last_v, so_v)):
                if d and b:  # DANN against source-only under the same rule
                    avg[key].append(mean_std(d)[0])
                    avg["so_" + key].append(mean_std(b)[0])
                    wins[key] += mean_std(d)[0] > mean_std(b)[0]
        lines += [f"## {title}", "", *(notes or {}).get(group, []), markdown_table(header, table)]
        picks = []
        for row in grows:
            chosen = {", ".join(r["grid"]["overrides"]): None
                      for r in data[row.name]["runs"].get("DANN", []) if "grid" in r}
            if chosen:
                where = (f"on the split of seed {row.grid_seed}, used for every seed"
                         if row.grid_seed is not None else "per seed")
                picks.append(f"- {row.title}: {'; '.join(chosen)} ({where})")
        lines += _ess_line(grows, data, select)
        if picks:
            lines += ["DANN hyper-parameters chosen by reverse validation (no target labels):", "",
                      *picks, ""]
        for key, what in (("sel", f"checkpoints selected by `{select}`"), ("last", "last step")):
            n = len(avg[key])
            if n > 1:
                lines += [f"Average over {n} rows, {what}: source-only "
                          f"{sum(avg['so_' + key]) / n:.3f}, DANN {sum(avg[key]) / n:.3f}; DANN ahead "
                          f"on {wins[key]} of {n}.", ""]
    atomic_write_text(results, "\n".join(lines) + "\n")
    atomic_write_text(results.with_suffix(".json"), json.dumps(
        {"seeds": list(seeds), "quick": quick, "select": select, "rows": data}, indent=1) + "\n")
    return results
