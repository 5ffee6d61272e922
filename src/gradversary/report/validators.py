"""``gradversary validators``: rank the label-free validators on finished runs.

Reads the ``history`` of each run's ``summary.json`` (every evaluation's target accuracy beside
each validator's score, see :mod:`gradversary.selection.validators`), and writes a Markdown
report and a JSON file beside it: per task family the weighted Spearman correlation of each
validator with target accuracy and its regret, the default criterion chosen by leave-one-task-
out regret (:mod:`gradversary.selection.ranking`), the honest figure of that default beside the
last step and the oracle, and a plot of score against accuracy.

Target accuracy is read here only to *judge* validators; no validator reads it.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..io import atomic_write_text
from ..selection.ranking import (
    candidate_scores,
    leave_one_task_out,
    rank_mean_scores,
    regret,
    weighted_spearman,
)
from ..selection.rules import choose_checkpoint
from .markdown import markdown_table
from .plots import have_matplotlib, save_figure

__all__ = ["Checkpoint", "ReverseScore", "load_checkpoints", "load_reverse_scores", "rank_checkpoints", "render_markdown",
           "write_validators_report", "ESS_FLOOR"]

#: the ESS floor tried with the importance-weighted validators
ESS_FLOOR = 30.0
#: the baseline criterion "last": the score is the step
LAST = "last"


@dataclass
class Checkpoint:
    """One evaluation of one run: where it belongs, its target accuracy, its scores."""

    family: str
    task: str
    method: str
    seed: int
    run: str
    step: int
    acc: float
    scores: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)  # score_<v>_se / _ess
    setting: str = ""  # the run's hyper-parameter setting (the lambda schedule)


def task_of(cfg: Mapping[str, Any]) -> tuple[str, str]:
    """(task family, task name) of a resolved run config. Families are the units of the
    leave-one-task-out choice: moons, digits, amazon_raw, amazon_msda, office_caltech."""
    d = cfg.get("data", {})
    name = d.get("name", "?")
    if name == "amazon":
        fam = f"amazon_{d.get('features', 'raw')}"
    else:
        fam = name
    pair = f"{d['source']}->{d['target']}" if "source" in d and "target" in d else name
    return fam, f"{fam}:{pair}"


def _setting(cfg: Mapping[str, Any]) -> str:
    """A run's hyper-parameter setting as a short label: its lambda schedule."""
    lam = cfg.get("method", {}).get("lambda_schedule") or {}
    if not lam:
        return ""
    if lam.get("name") == "constant":
        return f"lambda {lam.get('value')}"
    return f"lambda {lam.get('name')}"


def _from_summary(summary: Mapping, cfg: Mapping, run: str) -> list[Checkpoint]:
    fam, task = task_of(cfg)
    setting = _setting(cfg)
    out = []
    for h in summary.get("history", []):
        if "target_test_acc" not in h:
            continue
        scores = {k[6:]: float(v) for k, v in h.items()
                  if k.startswith("score_") and not k.endswith(("_se", "_ess"))}
        if not scores:
            continue
        scores[LAST] = float(h["step"])
        extra = {k: float(v) for k, v in h.items() if k.endswith(("_se", "_ess"))}
        out.append(Checkpoint(fam, task, summary.get("method", cfg["method"]["name"]),
                              int(summary.get("seed", 0)), run, int(h["step"]),
                              float(h["target_test_acc"]), scores, extra, setting))
    return out


def load_checkpoints(paths: Sequence[str | Path], records: str | Path | Sequence[str | Path] | None = None,
                     exclude: Sequence[str] = ()) -> tuple[list[Checkpoint], list[dict]]:
    """Every scored evaluation under ``paths`` (run directories, or folders searched for
    ``summary.json``) and under ``records`` (one or more folders of bench record JSON files
    with ``config`` and ``summary``). Returns the checkpoints and one dict per run (name, seed,
    wall time, and for a record the folder it came from). A run or record whose path matches
    a glob of ``exclude`` (e.g. ``*pooled_*``) is left out.

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    found: list[tuple[str, dict, dict, str | None]] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{str(p)!r} does not exist")
        for s in ([p / "summary.json"] if (p / "summary.json").is_file()
                  else sorted(p.rglob("summary.json"))):
            cfg = yaml.safe_load((s.parent / "config.yaml").read_text())
            found.append((str(s.parent), json.loads(s.read_text()), cfg, None))
    roots = [] if records is None else [records] if isinstance(records, (str, Path)) else list(records)
    for root in map(Path, roots):
        if not root.exists():
            raise FileNotFoundError(f"{str(root)!r} does not exist")
        for r in sorted(root.rglob("*.json")):
            d = json.loads(r.read_text())
            if isinstance(d, dict) and "summary" in d and "config" in d:
                found.append((str(r), d["summary"], d["config"], str(root)))
    found = [f for f in found if not any(fnmatch.fnmatch(f[0], g) for g in exclude)]
    ckpts, runs = [], []
    for run, summary, cfg, root in found:
        cs = _from_summary(summary, cfg, run)
        if cs:
            ckpts += cs
            runs.append({"run": run, "records": root, "seed": summary.get("seed"), "steps": summary.get("steps"),
                         "wall_time_s": summary.get("wall_time_s", 0.0), "evaluations": len(cs),
                         "family": cs[0].family, "eval_cost_s": _eval_cost(summary)})
    return ckpts, runs


@dataclass(frozen=True)
class ReverseScore:
    """Reverse validation of one hyper-parameter setting, from a recorded grid search (the
    ``reverse_validation_grid`` bench stage): where it belongs and its score."""

    family: str
    task: str
    method: str
    steps: int
    setting: str
    seed: int  # the seed of the split it was scored on
    reverse_acc: float


def _with_override(cfg: Mapping[str, Any], override: str) -> dict:
    """A copy of a resolved config dict with one ``a.b.c=value`` override applied."""
    key, _, value = override.partition("=")
    out = json.loads(json.dumps(cfg))
    node = out
    *path, last = key.split(".")
    for k in path:
        node = node.setdefault(k, {})
    node[last] = yaml.safe_load(value)
    return out


def load_reverse_scores(records: str | Path | Sequence[str | Path] | None) -> list[ReverseScore]:
    """Every grid point scored by reverse validation in the record folders (``grid-s<seed>``
    files written by ``gradversary bench``), one :class:`ReverseScore` each."""
    roots = [] if records is None else [records] if isinstance(records, (str, Path)) else list(records)
    out = []
    for root in map(Path, roots):
        for r in sorted(root.rglob("grid-s*.json")):
            d = json.loads(r.read_text())
            try:
                base = json.loads(d["key"])["config"]
                scores = d["result"]["scores"]
                seed = int(r.stem.split("-s")[-1])
            except (KeyError, TypeError, ValueError):
                continue
            for sc in scores:
                cfg = base
                for o in sc["overrides"]:
                    cfg = _with_override(cfg, o)
                fam, task = task_of(cfg)
                out.append(ReverseScore(fam, task, cfg["method"]["name"], int(cfg["train"]["steps"]),
                                        _setting(cfg), seed, float(sc["reverse_acc"])))
    return out


def _eval_cost(summary: Mapping) -> dict[str, float]:
    """Mean seconds per evaluation: the evaluation and each validator (``eval_cost_s`` of the
    summary; runs of an earlier format kept ``cost_<v>_s`` and ``eval_time_s`` per entry)."""
    if summary.get("eval_cost_s"):
        return dict(summary["eval_cost_s"])
    hist = summary.get("history", [])
    keys = {k for h in hist for k in h if k.startswith("cost_") or k == "eval_time_s"}
    out = {}
    for k in keys:
        vals = [h[k] for h in hist if k in h]
        name = "evaluation" if k == "eval_time_s" else k[5:-2]
        out[name] = float(np.mean(vals))
    return out


def cost_table(runs: Sequence[Mapping]) -> dict[str, dict[str, float]]:
    """Per validator: mean seconds per evaluation over runs, and the median over runs of its
    ratio to the evaluation itself; also per task family."""
    out: dict[str, dict[str, float]] = {}
    names = sorted({k for r in runs for k in r["eval_cost_s"]} - {"evaluation"})
    for v in ["evaluation", *names]:
        rs = [r for r in runs if v in r["eval_cost_s"] and r["eval_cost_s"].get("evaluation")]
        if not rs:
            continue
        ratio = [r["eval_cost_s"][v] / r["eval_cost_s"]["evaluation"] for r in rs]
        fams = sorted({r["family"] for r in rs})
        out[v] = {"mean_s": float(np.mean([r["eval_cost_s"][v] for r in rs])),
                  "median_ratio": float(np.median(ratio)),
                  **{f"ratio_{f}": float(np.median([x for x, r in zip(ratio, rs) if r["family"] == f]))
                     for f in fams}}
    return out


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(xs, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _rule_regret(group: list[Checkpoint], name: str, rule: str, min_ess: float) -> float | None:
    """Regret of ``choose_checkpoint`` with validator ``name``'s negated score as the risk."""
    hist = []
    for c in group:
        if name not in c.scores:
            return None
        hist.append({"step": c.step, "select_risk": -c.scores[name],
                     "select_se": c.extra.get(f"score_{name}_se", 0.0),
                     "select_ess": c.extra.get(f"score_{name}_ess", float("inf"))})
    pick = hist.index(choose_checkpoint(hist, rule, min_ess))
    return max(c.acc for c in group) - group[pick].acc


def _group(ckpts: Sequence[Checkpoint], key) -> dict[tuple, list[Checkpoint]]:
    groups: dict[tuple, list[Checkpoint]] = defaultdict(list)
    for c in ckpts:
        groups[key(c)].append(c)
    for g in groups.values():
        g.sort(key=lambda c: (c.run, c.step))
    return dict(groups)


def _pick(g: list[Checkpoint], name: str, validators: Sequence[str], max_combo: int) -> int:
    """Index of the checkpoint that criterion ``name`` (a validator or a rank mean ``a+b``)
    picks in group ``g``."""
    if "+" in name:
        s = candidate_scores({u: [c.scores[u] for c in g] for u in validators}, max_combo)[name]
    else:
        s = np.asarray([c.scores[name] for c in g], dtype=float)
    return int(np.argmax(np.where(np.isfinite(s), s, -np.inf)))


def _cell_label(cell: tuple) -> str:
    fam, task, method, setting = cell
    return f"{task}/{method}" + (f" ({setting})" if setting else "")


def _regrets(groups: Mapping[tuple, list[Checkpoint]], validators: Sequence[str], max_combo: int
             ) -> dict[str, dict[tuple, float]]:
    """Regret of every candidate (validators and their rank means) in every group."""
    out: dict[str, dict[tuple, float]] = defaultdict(dict)
    for key, g in groups.items():
        acc = [c.acc for c in g]
        for name, s in candidate_scores({v: [c.scores[v] for c in g] for v in validators},
                                        max_combo).items():
            out[name][key] = regret(s, acc)
    return dict(out)


def _by_family(values: Mapping[tuple, float], cells: Sequence[tuple]) -> dict[str, float]:
    """Mean over each family's cells of the mean over the cell's groups (keys: cell + seed)."""
    cell_mean = {c: float(np.mean([v for k, v in values.items() if k[:4] == c])) for c in cells}
    fams = sorted({c[0] for c in cells})
    return {f: float(np.mean([cell_mean[c] for c in cells if c[0] == f])) for f in fams}


def _honest(groups, cells, default, loto, validators, max_combo) -> list[dict]:
    """Per cell: the default's pick, the pick of the criterion chosen without the cell's family
    (``loto``: family -> criterion), the last step and the oracle, mean +- std over seeds."""
    rows = []
    for cell in cells:
        gs = [g for k, g in groups.items() if k[:4] == cell]
        pick = [g[_pick(g, default, validators, max_combo)].acc for g in gs]
        held = [g[_pick(g, loto[cell[0]], validators, max_combo)].acc for g in gs]
        last = [max(g, key=lambda c: c.step).acc for g in gs]
        rows.append({"family": cell[0], "task": cell[1],
                     "method": cell[2] + (f" ({cell[3]})" if cell[3] else ""),
                     "seeds": len(gs), "default": _mean_std(pick), "last": _mean_std(last),
                     "loto": _mean_std(held), "loto_criterion": loto[cell[0]],
                     "oracle": _mean_std([max(c.acc for c in g) for g in gs])})
    return rows


def _rules(groups, validators) -> dict[str, dict[str, float]]:
    """Regret of ``selection.rule`` min / one_se, with and without the ESS floor."""
    out = {}
    for v in ("dev", "devn", "iwcv", "source_val"):
        if v not in validators:
            continue
        for rule, floor in (("min", 0.0), ("one_se", 0.0), ("min", ESS_FLOOR), ("one_se", ESS_FLOOR)):
            rs: dict[str, list[float]] = defaultdict(list)
            for key, g in groups.items():
                r = _rule_regret(g, v, rule, floor)
                if r is not None:
                    rs[key[0]].append(r)
            out[f"{v} {rule}" + (f" ess>={ESS_FLOOR:g}" if floor else "")] = \
                {f: float(np.mean(x)) for f, x in sorted(rs.items())}
    return out


def _reverse_row(groups: Mapping[tuple, list[Checkpoint]], reverse: Sequence[ReverseScore],
                 ckpts: Sequence[Checkpoint]) -> dict[str, Any] | None:
    """Reverse validation as a grid criterion: in each group, the setting that the recorded
    search (same task, method and run length) scores highest, taken at its last step. None
    when no group has a complete search."""
    steps = {c.run: c.step for c in ckpts}
    regrets, picked = [], []
    for (fam, task, method, _seed), g in groups.items():
        n_steps = max(steps[c.run] for c in g)
        rv = {r.setting: r.reverse_acc for r in reverse
              if (r.family, r.task, r.method, r.steps) == (fam, task, method, n_steps)}
        if not {c.setting for c in g} <= set(rv):
            continue
        best = max(sorted(rv), key=rv.get)
        last = max((c for c in g if c.setting == best), key=lambda c: c.step)
        regrets.append(max(c.acc for c in g) - last.acc)
        picked.append(best)
    if not regrets:
        return None
    return {"regret": float(np.mean(regrets)), "picked": picked}


def _grid(ckpts, names, validators, max_combo, reverse: Sequence[ReverseScore] = ()) -> dict[str, Any]:
    """Hyper-parameter grids: a task/method/seed whose runs differ in their setting; each
    criterion picks a setting and a checkpoint together. Reference rows: each setting's last
    step; with ``reverse`` scores, reverse validation's choice of setting at its last step."""
    groups = {k: g for k, g in _group(ckpts, lambda c: (c.family, c.task, c.method, c.seed)).items()
              if len({c.setting for c in g}) > 1}
    if not groups:
        return {}
    rows = {}
    for v in names:
        picks = [g[_pick(g, v, validators, max_combo)] for g in groups.values()]
        rows[v] = {"regret": float(np.mean([max(c.acc for c in g) - p.acc
                                            for g, p in zip(groups.values(), picks)])),
                   "picked": [p.setting for p in picks]}
    if reverse:
        rv_rows = _reverse_row(groups, reverse, ckpts)
        if rv_rows:
            rows["reverse validation (split of one seed), last step"] = rv_rows
    for setting in sorted({c.setting for g in groups.values() for c in g}):
        reg = [max(c.acc for c in g) - max((c for c in g if c.setting == setting),
                                           key=lambda c: c.step).acc
               for g in groups.values() if any(c.setting == setting for c in g)]
        rows[f"fixed {setting}, last step"] = {"regret": float(np.mean(reg)), "picked": []}
    return {"groups": ["/".join(map(str, k[1:])) for k in groups], "rows": rows}


def rank_checkpoints(ckpts: Sequence[Checkpoint], max_combo: int = 3,
                     reverse: Sequence[ReverseScore] = ()) -> dict[str, Any]:
    """The ranking, as a JSON-ready dict (see the module docstring). A selection group is
    one task, method, setting and seed; a cell the same without the seed."""
    if not ckpts:
        raise ValueError("no scored evaluations found: were the runs trained with "
                         "selection.validators set (the default all_cheap)?")
    validators = sorted(set.intersection(*(set(c.scores) for c in ckpts)))
    groups = _group(ckpts, lambda c: (c.family, c.task, c.method, c.setting, c.seed))
    cells = sorted({k[:4] for k in groups})
    families = sorted({c[0] for c in cells})
    cand = _regrets(groups, validators, max_combo)
    fam_regret = {n: _by_family(r, cells) for n, r in cand.items()}
    spearman = {v: {_cell_label(cell): weighted_spearman(
        [c.scores[v] for k, g in groups.items() if k[:4] == cell for c in g],
        [c.acc for k, g in groups.items() if k[:4] == cell for c in g]) for cell in cells}
        for v in validators}
    fam_spearman = {v: {f: float(np.mean([spearman[v][_cell_label(c)] for c in cells if c[0] == f]))
                        for f in families} for v in validators}
    loto_single = leave_one_task_out(fam_regret, validators)
    loto_all = leave_one_task_out(fam_regret, sorted(fam_regret))
    use_combo = loto_all.loto_regret < loto_single.loto_regret
    default = (loto_all if use_combo else loto_single).chosen
    mean_all = {n: float(np.mean(list(fam_regret[n].values()))) for n in fam_regret}
    pool = sorted(fam_regret) if use_combo else validators
    runner_up = min((n for n in pool if n != default), key=mean_all.get)
    return {
        "validators": validators, "families": families,
        "cells": [_cell_label(c) for c in cells],
        "n_checkpoints": len(ckpts), "n_groups": len(groups),
        "family_regret": {n: fam_regret[n] for n in validators},
        "family_spearman": fam_spearman, "spearman": spearman,
        "loto_single": _loto_dict(loto_single), "loto_all": _loto_dict(loto_all),
        "default": default, "default_uses_combination": use_combo,
        "default_family_regret": fam_regret[default],
        "default_mean_regret": mean_all[default],
        "runner_up": runner_up, "runner_up_mean_regret": mean_all[runner_up],
        "best_combination": min(sorted(fam_regret), key=mean_all.get),
        "honest": _honest(groups, cells, default,
                          {f: c for f, (c, _) in (loto_all if use_combo else loto_single).per_task.items()},
                          validators, max_combo),
        "rules": _rules(groups, validators),
        "grid": _grid(ckpts, list(dict.fromkeys([*validators, default])), validators, max_combo, reverse),
    }


def _loto_dict(r) -> dict[str, Any]:
    return {"chosen": r.chosen, "loto_regret": r.loto_regret, "all_task_regret": r.all_task_regret,
            "per_task": {t: {"chosen": c, "regret": x} for t, (c, x) in r.per_task.items()}}


def _n_lower(res: Mapping[str, Any]) -> int:
    return sum(h["default"][0] < h["last"][0] for h in res["honest"])


def _worst(res: Mapping[str, Any]) -> str:
    h = min(res["honest"], key=lambda h: h["default"][0] - h["last"][0])
    return f"{h['task']} {h['method']}: {h['default'][0] - h['last'][0]:+.3f}"


def _rules_verdict(rules: Mapping[str, Mapping[str, float]]) -> list[str]:
    """One line per criterion: does one_se, does the ESS floor, lower the mean regret?"""
    out = []
    for v in dict.fromkeys(k.split()[0] for k in rules):
        m = {k[len(v) + 1:]: float(np.mean(list(r.values()))) for k, r in rules.items()
             if k.split()[0] == v and r}
        base = m.get("min")
        if base is None:
            continue
        parts = [f"{alt} {'helps' if round(100 * m[alt], 2) < round(100 * base, 2) else 'does not help'} "
                 f"({_pct(base)} -> {_pct(m[alt])})" for alt in m if alt != "min"]
        out.append(f"- `{v}`: " + "; ".join(parts) + ".")
    return out


def _short_command(prov: Mapping[str, Any]) -> str:
    """The command, its ``--note`` text (quoted under Runs) elided."""
    cmd = prov["command"]
    return cmd.replace(prov["note"], '"..."') if prov.get("note") else cmd


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def render_markdown(res: Mapping[str, Any], prov: Mapping[str, Any], plot: str | None) -> str:
    """The report: a pure render of :func:`rank_checkpoints`'s result and the provenance."""
    fams, vals = res["families"], res["validators"]
    lines = [
        "# Label-free validators ranked on our own runs",
        "",
        f"Written by `{_short_command(prov)}` at commit `{prov['commit']}` on {prov['date']}.",
        f"{prov['runs']} runs (seeds {', '.join(map(str, prov['seeds']))}), "
        f"{res['n_checkpoints']} scored evaluations in {res['n_groups']} selection groups "
        f"(task x method x setting x seed); training wall time {prov['wall_time_s'] / 60:.1f} min in all.",
        "",
        "Target accuracy is read here only to judge the validators: every score is label-free. "
        "Regret = oracle accuracy (the best evaluation in the group, **chosen on target labels**) "
        "minus the accuracy of the evaluation the validator picks, in points; mean over the "
        "task/method cells of each family, each cell the mean over seeds. `last` scores the step "
        "(the schedule's end point). A selection group is one task, method, setting (lambda "
        "schedule) and seed, over all its evaluations; a cell is the same over seeds.",
        "",
        "## The default criterion and the rule that picks it",
        "",
        "Rule: among the validators (and, if it lowers the leave-one-task-out regret, the "
        "rank means of 2-3 validators: each evaluation's score rank normalised to [0, 1] "
        "within its group, averaged), take the one of lowest mean regret over the task "
        "families. Its honest error is the leave-one-task-out (LOTO) regret: each family's "
        "regret under the choice made without it.",
        "",
        f"- **Default: `{res['default']}`**, mean regret {_pct(res['default_mean_regret'])} points "
        f"over {len(fams)} families (in-sample); runner-up `{res['runner_up']}` at "
        f"{_pct(res['runner_up_mean_regret'])} (margin "
        f"{_pct(res['runner_up_mean_regret'] - res['default_mean_regret'])}).",
        f"- LOTO regret, single validators: {_pct(res['loto_single']['loto_regret'])} points; "
        f"with rank-mean combinations: {_pct(res['loto_all']['loto_regret'])}.",
        f"- Target: a mean regret of at most 1.50 points. The default's in-sample mean is "
        f"{_pct(res['default_mean_regret'])}; its honest (LOTO) estimate "
        f"{_pct(res['loto_all' if res['default_uses_combination'] else 'loto_single']['loto_regret'])}; "
        f"`last` is at {_pct(np.mean(list(res['family_regret'][LAST].values())))}.",
        f"- Default against the last step: lower on {_n_lower(res)} of {len(res['honest'])} "
        f"task/method tables (worst {_worst(res)}).",
        "",
        markdown_table(["held-out family", "chosen without it (single)", "regret",
                        "chosen without it (with combinations)", "regret"],
                       [[f, res["loto_single"]["per_task"][f]["chosen"],
                         _pct(res["loto_single"]["per_task"][f]["regret"]),
                         res["loto_all"]["per_task"][f]["chosen"],
                         _pct(res["loto_all"]["per_task"][f]["regret"])] for f in fams]),
        "",
        "## Regret by validator and task family (points; lower is better)",
        "",
        markdown_table(["validator", *fams, "mean"],
                       [[v, *(_pct(res["family_regret"][v][f]) for f in fams),
                         _pct(np.mean(list(res["family_regret"][v].values())))] for v in vals]),
        "",
        "## Weighted Spearman correlation with target accuracy (higher is better)",
        "",
        "Musgrave et al. (arXiv:2208.07360, and their code): Pearson correlation of the ranks, "
        "each evaluation weighted by the square of its score's dense rank divided by the "
        "largest; per task/method cell over all its evaluations, then averaged per family.",
        "",
        markdown_table(["validator", *fams, "mean"],
                       [[v, *(f"{res['family_spearman'][v][f]:.2f}" for f in fams),
                         f"{np.mean(list(res['family_spearman'][v].values())):.2f}"]
                        for v in vals if v != LAST]),
        "",
        "## Honest figure per table: the default's pick, last step, oracle",
        "",
        "Target accuracy, mean +- std over seeds. `default` is chosen on every family, this "
        "one included; `held out` is the pick of the criterion chosen without this table's "
        "family (the strictly honest figure). The oracle column is chosen on target labels: "
        "not an honest figure.",
        "",
        markdown_table(["task", "method", "seeds", f"default ({res['default']})", "last step",
                        "default - last", "held out (criterion)", "oracle"],
                       [[h["task"], h["method"], h["seeds"],
                         f"{h['default'][0]:.3f} +- {h['default'][1]:.3f}",
                         f"{h['last'][0]:.3f} +- {h['last'][1]:.3f}",
                         f"{h['default'][0] - h['last'][0]:+.3f}",
                         f"{h['loto'][0]:.3f} ({h['loto_criterion']})",
                         f"{h['oracle'][0]:.3f} +- {h['oracle'][1]:.3f}"] for h in res["honest"]]),
        "",
        "## Selection rules: one standard error and the ESS floor",
        "",
        f"Regret (points) of `selection.rule` min / one_se, with and without an effective-sample-"
        f"size floor of {ESS_FLOOR:g} (evaluations whose weights have a smaller ESS are not "
        "candidates; with none left, the last evaluation).",
        "",
        markdown_table(["criterion and rule", *fams, "mean"],
                       [[k, *(_pct(r[f]) if f in r else "-" for f in fams),
                         _pct(np.mean(list(r.values())))] for k, r in res["rules"].items()]),
        "",
        *_rules_verdict(res["rules"]),
        "",
        "## Cost per evaluation",
        "",
        "Seconds per evaluation, and the median ratio to the evaluation itself (accuracy on "
        "every labelled split). `inputs` is the shared forward pass over the validators' "
        "samples; `dev` includes the domain-classifier fit that `devn` and `iwcv` reuse.",
        "",
        markdown_table(["part", "mean s", "median ratio to evaluation",
                        *(f"ratio, {f}" for f in fams)],
                       [[v, f"{c['mean_s']:.4f}", f"{c['median_ratio']:.2f}",
                         *(f"{c[f'ratio_{f}']:.2f}" if f"ratio_{f}" in c else "-" for f in fams)]
                        for v, c in res["cost"].items()]),
        "",
    ]
    if res["grid"]:
        lines += ["## Hyper-parameter grids (the Amazon lambda grid)", "",
                  "A task, method and seed whose runs differ in their setting: the criterion picks "
                  f"a setting and a checkpoint together ({', '.join(res['grid']['groups'])}). "
                  "Regret in points against the best evaluation over the whole grid; the settings "
                  "picked, one per seed. Reverse validation (the DANN paper's choice of lambda) "
                  "retrains twice per setting, so it scores finished settings, not checkpoints: "
                  "its row takes the setting that a recorded reverse-validation search (the "
                  "split of one seed, as the dann suite does) ranks first, at its last step; "
                  "it is absent when no search was recorded for the grid.", "",
                  markdown_table(["criterion", "regret", "settings picked"],
                                 [[v, _pct(g["regret"]), "; ".join(g["picked"])]
                                  for v, g in res["grid"]["rows"].items()]), ""]
    if plot:
        lines += ["## Score against target accuracy", "",
                  f"![score vs target accuracy]({plot})", "",
                  "Each point is one evaluation; scores and accuracies are min-max normalised "
                  "within their task/method cell so that cells share one axis.", ""]
    lines += ["## Runs", "", *([prov["note"], ""] if prov.get("note") else []),
              *(f"- {r}" for r in prov["commands"]), ""]
    return "\n".join(lines)


def _scatter(ckpts: Sequence[Checkpoint], names: Sequence[str], titles: Sequence[str],
             path: Path) -> Path | None:
    if not have_matplotlib():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = sorted({c.family for c in ckpts})
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    cells = defaultdict(list)
    for c in ckpts:
        cells[(c.task, c.method)].append(c)

    def norm(xs):
        a = np.asarray(xs, dtype=float)
        span = a.max() - a.min()
        return (a - a.min()) / span if span > 0 else np.full_like(a, 0.5)

    def cell_scores(cs, name):  # a combination "a+b" scores by its rank mean within the cell
        parts = name.split("+")
        if len(parts) == 1:
            return [c.scores[name] for c in cs]
        return rank_mean_scores([[c.scores[p] for c in cs] for p in parts])

    for ax, name, title in zip(axes[0], names, titles):
        for i, f in enumerate(fams):
            xs, ys = [], []
            for cs in cells.values():
                if cs[0].family != f:
                    continue
                xs += list(norm(cell_scores(cs, name)))
                ys += list(norm([c.acc for c in cs]))
            ax.scatter(xs, ys, s=6, alpha=0.5, label=f, color=f"C{i}")
        ax.set_xlabel(f"{name} score (normalised per cell)")
        ax.set_ylabel("target accuracy (normalised per cell)")
        ax.set_title(title, fontsize=9)
    axes[0][0].legend(fontsize=7, markerscale=2)
    return save_figure(fig, path)


def _git(cmd: list[str]) -> str:
    try:
        return subprocess.run(["git", *cmd], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_validators_report(paths: Sequence[str | Path], out: str | Path,
                            records: str | Path | Sequence[str | Path] | None = None, command: str = "",
                            note: str = "", exclude: Sequence[str] = ()) -> Path:
    """Rank the validators on the runs under ``paths`` (and ``records``, but not those matching
    a glob of ``exclude``); write ``out``
    (Markdown), its JSON twin and the score-vs-accuracy plot beside it."""
    t0 = time.perf_counter()
    ckpts, runs = load_checkpoints(paths, records, exclude)
    res = rank_checkpoints(ckpts, reverse=load_reverse_scores(records))
    res["cost"] = cost_table(runs)
    out = Path(out)
    best_corr = max((v for v in res["validators"] if v != LAST),
                    key=lambda v: np.mean(list(res["family_spearman"][v].values())))
    shown = list(dict.fromkeys([best_corr, res["default"]]))
    titles = [f"{v} ({'best mean weighted Spearman' if v == best_corr else ''}"
              f"{', ' if v == best_corr == res['default'] else ''}"
              f"{'the default' if v == res['default'] else ''})" for v in shown]
    plot = _scatter(ckpts, shown, titles, out.with_suffix(".png"))
    cmds = sorted({_run_command(r["run"]) for r in runs if r.get("records") is None})
    per_root = Counter(r["records"] for r in runs if r.get("records") is not None)
    cmds += [f"{n} runs from the bench records in `{root}`" for root, n in sorted(per_root.items())]
    prov = {"command": command or "gradversary validators", "commit": _git(["rev-parse", "--short=12", "HEAD"]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "runs": len(runs), "seeds": sorted({r["seed"] for r in runs}),
            "wall_time_s": float(sum(r["wall_time_s"] or 0.0 for r in runs)),
            "commands": cmds, "ranking_time_s": time.perf_counter() - t0,
            "plot_validators": shown, "best_correlated": best_corr, "note": note}
    md = render_markdown(res, prov, plot.name if plot else None)
    atomic_write_text(out, md)
    atomic_write_text(out.with_suffix(".json"),
                      json.dumps({"provenance": prov, "runs": runs, "ranking": res}, indent=1) + "\n")
    return out


def _run_command(run: str) -> str:
    """How a run was made, from its resolved config: data, method and the run's length."""
    p = Path(run)
    cfg_path = p / "config.yaml" if p.is_dir() else None
    if cfg_path is None or not cfg_path.is_file():
        return f"record {run}"
    cfg = yaml.safe_load(cfg_path.read_text())
    fam, task = task_of(cfg)
    t = cfg["train"]
    lam = cfg["method"].get("lambda_schedule")
    return (f"{task} {cfg['method']['name']}" + (f", lambda schedule {lam}" if lam else "")
            + f": {t['steps']} steps, eval every {t['eval_every']}, batch {t['batch_size']}")
