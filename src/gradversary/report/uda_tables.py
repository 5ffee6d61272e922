"""The domain-adaptation bench tables: a pure render of a suite's results JSON.

``dann`` (``configs/bench/dann.yaml``): source-only against DANN per group, the checkpoint
chosen without target labels (``--select``), the label-free validators' pick, the last step,
the oracle (best on target labels, labelled), train-on-target and the paper's figures.
``methods`` (``configs/bench/digits.yaml``): any set of adaptation methods, one line per task
and method, with the same columns. Both are registered in :data:`TABLES`.
"""

from __future__ import annotations

from ..selection import DEFAULT_VALIDATORS
from ..selection.rules import validator_pick
from .markdown import fmt_mean_std, lookup, markdown_table, mean_std
from .tables import TABLES

__all__ = ["collapsed", "dann_table", "methods_table"]


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


def _mcell(values: list, expected: int, digits: int = 3) -> str:
    """Mean ± std of the values that exist; "(n=k)" when fewer than ``expected`` seeds are in."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    return fmt_mean_std(vals, digits) + (f" (n={len(vals)})" if len(vals) < expected else "")


_HONEST = {
    "selected": "selection/metrics/target_test_acc",
    "last": "final/target_test_acc",
}


def _honest(run: dict, column: str, criterion: str):
    """A run's target accuracy in the honest ``column``: ``validators`` (the label-free
    criterion's pick), ``selected`` (the run's own criterion) or ``last``."""
    if column == "validators":
        return (validator_pick(run, criterion) or {}).get("target_test_acc")
    return lookup(run, _HONEST[column])


def _wins(rows: list[dict], baseline: str, columns: list[str], criterion: str,
          reference: str | None) -> list[str]:
    """A table: per method and honest column, its mean over the group's tasks and on how many
    tasks its seed mean is above ``baseline``'s (a tie is not above); and the mean of the
    reference figures where every task has one."""
    means: dict[str, dict[str, dict[str, float]]] = {}  # column -> label -> task -> mean
    for column in columns:
        for d in rows:
            for label, runs in d["runs"].items():
                vals = [v for r in runs if (v := _honest(r, column, criterion)) is not None]
                if vals:
                    means.setdefault(column, {}).setdefault(label, {})[d["title"]] = mean_std(vals)[0]
    labels = list(dict.fromkeys(label for d in rows for label in d["runs"]))
    if baseline not in labels:
        return []
    out = []
    for label in labels:
        cells = [label]
        for column in columns:
            by_task = means.get(column, {}).get(label, {})
            base = means.get(column, {}).get(baseline, {})
            shared = [t for t in by_task if t in base]
            text = f"{sum(by_task.values()) / len(by_task):.3f}" if by_task else "n/a"
            if label != baseline and shared:
                text += f" ({sum(by_task[t] > base[t] for t in shared)} of {len(shared)} above)"
            cells.append(text)
        if reference is not None:
            refs = [d["paper"].get(label) for d in rows if label in d["runs"]]
            cells.append(f"{sum(refs) / len(refs):.3f}" if refs and None not in refs else "–")
        out.append(cells)
    names = {"validators": criterion, "selected": "run's criterion", "last": "last step"}
    cols = ["method", *(f"mean over tasks: {names[c]}" for c in columns),
            *([f"{reference}: mean"] if reference is not None else [])]
    return [f"Mean over the tasks of this group, and on how many tasks (mean of seeds) each method "
            f"is above {baseline}, in each honest column:", "", markdown_table(cols, out)]


def _contrast(ref: dict, rows: list[dict], criterion: str) -> list[str]:
    """An ablation's verdict: each row's change from the reference row ``ref`` (its first
    cell), in points of the seed means, in each honest column, the most harmful change first;
    and how much the reference's own evaluations move near the end (the range of its last three
    evaluations, mean over seeds), the scale below which a one-seed difference is noise."""
    columns = ("selected", "validators", "last")
    base_runs = next(iter(ref["runs"].values()), [])

    def mean(runs: list[dict], column: str) -> float | None:
        vals = [v for r in runs if (v := _honest(r, column, criterion)) is not None]
        return mean_std(vals)[0] if vals else None

    base = {c: mean(base_runs, c) for c in columns}
    table = []
    for d in rows:
        if d is ref:
            continue
        for label, runs in d["runs"].items():
            deltas = [None if (m := mean(runs, c)) is None or base[c] is None else 100 * (m - base[c])
                      for c in columns]
            same = label == next(iter(ref["runs"]), label) or label in d["title"]
            table.append((deltas, [d["title"] + ("" if same else f" ({label})"),
                                   *("n/a" if x is None else f"{x:+.1f}" for x in deltas),
                                   str(len(runs))]))
    if not table or not base_runs:
        return []
    table.sort(key=lambda t: (t[0][2] is None, t[0][2] if t[0][2] is not None else 0.0))
    spans = [max(a) - min(a) for r in base_runs
             if len(a := [h["target_test_acc"] for h in r.get("history", [])[-3:] if h.get("target_test_acc") is not None]) > 1]
    noise = (f" The reference's own last three evaluations span {100 * sum(spans) / len(spans):.1f} points "
             "(mean over its seeds): a one-seed difference below that is within its noise." if spans else "")
    names = {"validators": f"selected ({criterion})", "selected": "selected (run's criterion)", "last": "last step"}
    return [f"Each row against **{ref['title']}**: the difference of the seed means in points (negative: "
            f"the change costs accuracy), the most harmful change first.{noise}", "",
            markdown_table(["change", *(names[c] for c in columns), "seeds"], [r for _, r in table])]


@TABLES.register("methods")
def methods_table(data: dict, suite) -> list[str]:
    """One table a group; a line for every (task, method) with runs.

    Settings (``settings.methods`` of the suite): ``validators`` (the label-free criterion),
    ``reference`` (the reference column's title, default tllib's target-selected figures;
    null: no reference column),
    ``baseline`` and ``honest`` (if a baseline label is given, each group ends with every
    method's mean and its count of tasks above the baseline in the honest column:
    ``validators``, ``selected`` or ``last``), ``contrast`` (a row name: each group of an
    ablation ends with every other row's difference from that row, see :func:`_contrast`).
    """
    settings = suite.settings.get("methods", {})
    criterion = settings.get("validators", DEFAULT_VALIDATORS)
    n = len(data["seeds"])
    runs_all = [r for d in data["rows"].values() for rs in d["runs"].values() for r in rs]
    select = ", ".join(sorted({str(lookup(r, "selection/criterion")) for r in runs_all})) or "n/a"
    has_scores = any(validator_pick(r, criterion) is not None for r in runs_all)
    lines = [suite.notes["intro"].format(select=f"`{select}`", validators=f"`{criterion}`"), ""]
    lines += [line for k in suite.notes if k != "intro" for line in (suite.notes[k], "")]
    if not has_scores:
        lines += [f"No run's history carries the scores of `{criterion}`: that column is n/a.", ""]
    ref_title = settings.get("reference", "tllib (target-selected)")
    cols = ["task", "method", f"selected ({select})", f"selected ({criterion})", "last step",
            "oracle (target labels, not honest)", ref_title, "time / run (s)"]
    for gname, group in suite.groups.items():
        lines_by_task: dict[str, list] = {}
        rows = [d for d in data["rows"].values() if d["group"] == gname]
        for d in rows:
            for label, runs in d["runs"].items():
                ref = d["paper"].get(label)
                lines_by_task.setdefault(d["title"], []).append([
                    d["title"], label,
                    *(_mcell([_honest(r, c, criterion) for r in runs], n) for c in ("selected", "validators", "last")),
                    _mcell([lookup(r, "oracle/target_test_acc") for r in runs], n),
                    f"{ref:.3f}" if ref is not None else "–",
                    _mcell([r.get("wall_time_s") for r in runs], 0, 0)])
        if lines_by_task:
            table = [line for ls in lines_by_task.values() for line in ls]
            keep = [i for i in range(len(cols)) if ref_title is not None or i != 6]
            lines += [f"## {group.title}", "", *([group.note, ""] if group.note else []),
                      markdown_table([cols[i] for i in keep], [[r[i] for i in keep] for r in table])]
            if "baseline" in settings and group.options.get("means", True):  # false: rows are recipes of one task
                lines += _wins(rows, settings["baseline"], settings.get("honest", ["validators", "last"]),
                               criterion, ref_title)
            if settings.get("contrast") in data["rows"]:
                lines += _contrast(data["rows"][settings["contrast"]], rows, criterion)
    total = sum(r.get("wall_time_s", 0.0) for r in runs_all)
    lines += [f"Total run time: {total / 3600:.2f} h over {len(runs_all)} runs (one thread each).", ""]
    if suite.reference:
        lines += [f"Reference figures: {suite.reference}.", ""]
    return lines
