"""A table of any set of adaptation methods: one line per task and method.

Registered as the bench table ``methods`` (``configs/bench/digits.yaml``). Each line gives the
target test accuracy, mean ± std over seeds, of the checkpoint chosen by the run's own
criterion (no target labels), of the checkpoint ranked first by the label-free validators kept
in the run's history (:func:`~gradversary.selection.rules.choose_by_validators`), of the last
step and of the oracle (best evaluation on target labels, labelled as not honest), beside the
reference figure and the mean time of one run. A row's cells may be any labels; lines follow
the groups, then the tasks (row titles) in order of first appearance, then the methods.
"""

from __future__ import annotations

from ..report.markdown import fmt_mean_std, lookup, markdown_table
from ..selection.rules import DEFAULT_VALIDATORS, validator_pick
from .runner import TABLES

__all__ = ["methods_table"]


def _cell(values: list, expected: int, digits: int = 3) -> str:
    """Mean ± std of the values that exist; "(n=k)" when fewer than ``expected`` seeds are in."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    return fmt_mean_std(vals, digits) + (f" (n={len(vals)})" if len(vals) < expected else "")


@TABLES.register("methods")
def methods_table(data: dict, suite) -> list[str]:
    """One table a group; a line for every (task, method) with runs."""
    criterion = suite.settings.get("methods", {}).get("validators", DEFAULT_VALIDATORS)
    n = len(data["seeds"])
    runs_all = [r for d in data["rows"].values() for rs in d["runs"].values() for r in rs]
    select = ", ".join(sorted({str(lookup(r, "selection/criterion")) for r in runs_all})) or "n/a"
    has_scores = any(validator_pick(r, criterion) is not None for r in runs_all)
    lines = [suite.notes["intro"].format(select=f"`{select}`", validators=f"`{criterion}`"), ""]
    lines += [line for k in suite.notes if k != "intro" for line in (suite.notes[k], "")]
    if not has_scores:
        lines += [f"No run's history carries the scores of `{criterion}`: that column is n/a.", ""]
    cols = ["task", "method", f"selected ({select})", f"selected ({criterion})", "last step",
            "oracle (target labels, not honest)", "tllib (target-selected)", "time / run (s)"]
    for gname, group in suite.groups.items():
        lines_by_task: dict[str, list] = {}
        for d in (d for d in data["rows"].values() if d["group"] == gname):
            for label, runs in d["runs"].items():
                ref = d["paper"].get(label)
                lines_by_task.setdefault(d["title"], []).append([
                    d["title"], label,
                    _cell([lookup(r, "selection/metrics/target_test_acc") for r in runs], n),
                    _cell([(validator_pick(r, criterion) or {}).get("target_test_acc") for r in runs], n),
                    _cell([lookup(r, "final/target_test_acc") for r in runs], n),
                    _cell([lookup(r, "oracle/target_test_acc") for r in runs], n),
                    f"{ref:.3f}" if ref is not None else "–",
                    _cell([r.get("wall_time_s") for r in runs], 0, 0)])
        if lines_by_task:
            table = [line for ls in lines_by_task.values() for line in ls]
            lines += [f"## {group.title}", "", markdown_table(cols, table)]
    total = sum(r.get("wall_time_s", 0.0) for r in runs_all)
    lines += [f"Total run time: {total / 3600:.2f} h over {len(runs_all)} runs (one thread each).", ""]
    if suite.reference:
        lines += [f"Reference figures: {suite.reference}.", ""]
    return lines
