"""The DANN suite's own pieces: its table, the reverse-validation grid and a data check.

The suite itself is data, ``configs/bench/dann.yaml``. DANN's headline figure is the
checkpoint chosen **without target labels** by ``--select`` (default DEV, on 10% of the source
held out); the last step and the oracle (the best evaluation on target labels) are beside it,
labelled. Where a group has a ``grid``, each DANN run first takes its hyper-parameters from a
grid search scored by reverse validation (no target labels) on the split of one seed.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from ..config_files import read_config_file
from ..data.office_caltech import vocabulary_check
from ..engine.config import resolve_config
from ..engine.trainer import Trainer, build_task
from ..errors import DataError
from ..io import atomic_write_text
from ..report.markdown import fmt_mean_std, lookup, markdown_table, mean_std
from ..selection import DEFAULT_VALIDATORS
from ..selection.reverse import reverse_validation
from ..selection.rules import validator_pick
from .parallel import map_jobs
from .records import same_config
from .runner import STAGES, TABLES, BenchRun

__all__ = ["collapsed", "dann_table", "grid_search"]

# reverse validation picks no checkpoint: every grid point is scored at its last step
_PLAIN = ["selection.criterion=last", "selection.rule=min"]


def grid_search(config: Path, over: list[str], grid: dict[str, list], seed: int, cache: Path,
                data_root: str | None, progress: bool = False) -> dict:
    """Score every grid point by reverse validation (in memory); the best's overrides with all
    scores, also written to ``cache`` (JSON, with the config and grid it was made for)."""
    from tqdm.auto import tqdm

    raw = read_config_file(config)
    base = resolve_config(raw, [*over, *_PLAIN])
    task = build_task(base, data_root)
    scores = []
    for values in tqdm(list(itertools.product(*grid.values())), disable=not progress, leave=False):
        point = [f"{k}={json.dumps(v)}" for k, v in zip(grid, values)]
        cfg = resolve_config(raw, [*over, *_PLAIN, *point])
        cfg.train.progress = False

        def fit(t, cfg=cfg):
            tr = Trainer(cfg, task=t, persist=False)
            tr.fit()
            return tr.method.eval().predict_logits

        rv = reverse_validation(task, fit, seed=seed)
        scores.append({"overrides": point, "reverse_acc": rv.reverse_acc,
                       "source_val_acc": rv.source_val_acc})
    best = max(scores, key=lambda r: (r["reverse_acc"], r["source_val_acc"]))
    result = {"overrides": best["overrides"], "criterion": "reverse validation", "scores": scores}
    key = json.dumps({"config": base.to_dict(), "grid": grid}, sort_keys=True)
    atomic_write_text(cache, json.dumps({"key": key, "result": result}, indent=1) + "\n")
    return result


def _grid_matches(saved: dict | None, base, grid: dict) -> bool:
    try:
        old = json.loads(saved["key"])
        return old["grid"] == grid and same_config(old["config"], base)
    except Exception:  # noqa: BLE001 - an unreadable or outdated cache is simply not a match
        return False


@STAGES.register("reverse_validation_grid")
class ReverseValidationGrid:
    """Before training: each DANN run of a group with a ``grid`` option takes the grid point
    that reverse validation ranks first on the split of ``grid.seed`` (one search a row), or
    of its own seed when ``grid.seed`` is null. Searches are cached beside the runs and in the
    records; with ``report_only`` a run whose search is missing is left out."""

    def before(self, run: BenchRun) -> dict:
        searches: dict[Path, tuple] = {}
        for j in run.jobs:
            g = run.group_of(j).options.get("grid")
            if not g or j.label != g.get("label", "DANN"):
                continue
            gseed = j.seed if g.get("seed", 0) is None else g.get("seed", 0)
            grid = g["quick" if run.quick else "full"]
            cache = run.out_dir / run.size / j.row / f"grid-s{gseed}.json"
            over = [o for o in j.overrides if not o.startswith("train.seed=")] + [f"train.seed={gseed}"]
            searches.setdefault(cache, (j.config, over, grid, gseed, cache, run.data_root,
                                        run.progress and run.jobs_n == 1))
            j.extra["grid"] = cache
        chosen, todo = {}, []
        for cache, (config, over, grid, *_rest) in searches.items():
            base = resolve_config(read_config_file(config), [*over, *_PLAIN])
            found = [json.loads(cache.read_text())] if cache.exists() else []
            found.append(run.records.read(run.size, cache.parent.name, cache.stem))
            if (saved := next((s for s in found if _grid_matches(s, base, grid)), None)) is not None:
                chosen[cache] = saved["result"]
            elif not run.report_only:
                todo.append(cache)
        chosen |= dict(zip(todo, map_jobs(grid_search, [searches[c] for c in todo], run.jobs_n, "grids", run.progress)))
        for cache in (c for c in chosen if c.exists()):
            run.records.write(run.size, cache.parent.name, cache.stem, json.loads(cache.read_text()))
        for j in (j for j in run.jobs if "grid" in j.extra):
            j.extra["grid"] = chosen.get(j.extra["grid"])
            j.overrides += j.extra["grid"]["overrides"] if j.extra["grid"] else []
        run.jobs = [j for j in run.jobs if j.extra.get("grid", True) is not None]  # report-only, no search
        return {}


@STAGES.register("vocabulary_check")
class VocabularyCheck:
    """The nearest-class-mean check of the staged Office-Caltech features, measured now."""

    def before(self, run: BenchRun) -> dict:
        if not any(run.group_of(j).options.get("vocabulary_check") for j in run.jobs):
            return {}
        try:
            chk = vocabulary_check(run.data_root)
        except DataError as e:  # the rows are then n/a anyway
            return {"error": str(e)}
        ins, cross = chk["in_domain"].values(), chk["cross_domain"].values()
        return {"in_min": min(ins), "in_max": max(ins), "cross_min": min(cross),
                "cross_max": max(cross), "chance": chk["chance"]}


def collapsed(summary: dict) -> bool:
    """Whether a run ended with source test accuracy within 5 points of chance (1/K): its
    network died. (A fixed multiple of chance would flag every binary run under 0.75.)"""
    acc = lookup(summary, "final/source_test_acc")
    return acc is not None and acc < 1.0 / max(2, summary.get("num_classes", 10)) + 0.05


def _cell(runs: list[dict], path: str, expected: int = 0, digits: int = 3) -> tuple[str, list[float]]:
    """Mean ± std of ``path`` over runs; "(n=k)" when fewer than ``expected`` seeds are in."""
    vals = [v for r in runs if (v := lookup(r, path)) is not None]
    text = fmt_mean_std(vals, digits) if vals else "n/a"
    return text + (f" (n={len(vals)})" if vals and len(vals) < expected else ""), vals


_COLUMNS = ["task", "source-only (selected)", "DANN (selected)", "source-only last", "DANN last",
            f"DANN ({DEFAULT_VALIDATORS})", "DANN oracle", "train on target", "paper: source-only / DANN",
            "time / DANN run (s)"]


@TABLES.register("dann")
def dann_table(data: dict, suite) -> list[str]:
    """One table a group: source-only and DANN under the same selection rule, last step,
    oracle, train-on-target, the paper; then the grid choices, ESS and averages."""
    o = data["options"]
    select = o["select"] if o["select_rule"] == "min" else f"{o['select']}, {o['select_rule'].replace('_', '-')} rule"
    n = len(data["seeds"])
    lines = [suite.notes["intro"].format(select=select, validators=DEFAULT_VALIDATORS), ""]
    for gname, group in suite.groups.items():
        rows = {k: d for k, d in data["rows"].items() if d["group"] == gname}
        if not rows:
            continue
        table, avg, wins = [], {k: [] for k in ("so_sel", "sel", "so_last", "last")}, {"sel": 0, "last": 0}
        for name, d in rows.items():
            runs, cells = d["runs"], next(r for r in suite.rows if r.name == name).cells
            so_sel, so_sel_v = _cell(runs.get("source-only", []), "selection/metrics/target_test_acc", n)
            so, so_v = _cell(runs.get("source-only", []), "final/target_test_acc", n)
            sel, sel_v = _cell(runs.get("DANN", []), "selection/metrics/target_test_acc", n)
            last, last_v = _cell(runs.get("DANN", []), "final/target_test_acc", n)
            dead = sum(1 for r in runs.get("DANN", []) if collapsed(r))
            paper = " / ".join(f"{d['paper'][k]:.3f}" if k in d["paper"] else "–" for k in ("source-only", "DANN"))
            picked = [{"validators": p} for r in runs.get("DANN", []) if (p := validator_pick(r)) is not None]
            table.append([d["title"], so_sel, sel, so, last + (f" ({dead} collapsed)" if dead else ""),
                          _cell(picked, "validators/target_test_acc", n)[0],
                          _cell(runs.get("DANN", []), "oracle/target_test_acc", n)[0],
                          _cell(runs.get("train on target", []), "final/target_test_acc", n)[0]
                          if "train on target" in cells else "–", paper,
                          _cell(runs.get("DANN", []), "wall_time_s", 0, 0)[0]])
            for key, dv, bv in (("sel", sel_v, so_sel_v), ("last", last_v, so_v)):
                if dv and bv:  # DANN against source-only under the same rule
                    avg[key].append(mean_std(dv)[0])
                    avg["so_" + key].append(mean_std(bv)[0])
                    wins[key] += mean_std(dv)[0] > mean_std(bv)[0]
        note = [] if not group.note else [group.note.format(**data["stages"].get("vocabulary_check", {}))
                                          if "error" not in data["stages"].get("vocabulary_check", {})
                                          else f"Vocabulary check not run: {data['stages']['vocabulary_check']['error']}", ""]
        lines += [f"## {group.title}", "", *note, markdown_table(_COLUMNS, table)]
        lines += _ess_line(rows, select, suite.notes["ess"])
        gseed = group.options.get("grid", {}).get("seed", 0)
        picks = [f"- {d['title']}: {'; '.join(chosen)} ("
                 + (f"on the split of seed {gseed}, used for every seed" if gseed is not None else "per seed") + ")"
                 for d in rows.values()
                 if (chosen := {", ".join(r["grid"]["overrides"]): None for r in d["runs"].get("DANN", []) if "grid" in r})]
        if picks:
            lines += ["DANN hyper-parameters chosen by reverse validation (no target labels):", "", *picks, ""]
        for key, what in (("sel", f"checkpoints selected by `{select}`"), ("last", "last step")):
            if (k := len(avg[key])) > 1:
                lines += [f"Average over {k} rows, {what}: source-only {sum(avg['so_' + key]) / k:.3f}, "
                          f"DANN {sum(avg[key]) / k:.3f}; DANN ahead on {wins[key]} of {k}.", ""]
    return lines


def _ess_line(rows: dict, select: str, text: str) -> list[str]:
    """The importance weights' effective sample size at the selected checkpoints (IWCV and
    DEV only): a few effective examples make the weighted risk noise."""
    ess = sorted(e for d in rows.values() for runs in d["runs"].values() for r in runs
                 if (e := lookup(r, "selection/metrics/select_ess")) is not None)
    if not ess or not select.startswith(("dev", "iwcv")):
        return []
    return [text.format(select=select, n=len(ess), median=ess[len(ess) // 2], lo=ess[0], hi=ess[-1]), ""]
