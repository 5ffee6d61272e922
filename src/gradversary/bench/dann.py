"""The DANN suite's own stages: the reverse-validation grid and a data check (its table is
:func:`gradversary.report.uda_tables.dann_table`).

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
from ..selection.reverse import reverse_validation
from .parallel import map_jobs
from .records import same_config
from .runner import STAGES, BenchRun

__all__ = ["grid_search"]

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
    records; with ``report_only`` a run whose search is missing is left out.

    With ``grid.apply: false`` the search is only scored and recorded (one a row, for every
    cell of the row), and no run takes its choice: the validators' ranking reads the scores
    to rank reverse validation as a hyper-parameter criterion beside the cheap validators.
    """

    def before(self, run: BenchRun) -> dict:
        searches: dict[Path, tuple] = {}
        for j in run.jobs:
            g = run.group_of(j).options.get("grid")
            if not g or (g.get("apply", True) and j.label != g.get("label", "DANN")):
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
            if not run.group_of(j).options["grid"].get("apply", True):
                del j.extra["grid"]  # scored and recorded only
                continue
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
