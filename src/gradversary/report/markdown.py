"""Markdown reports for runs and comparisons."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from ..io import atomic_write_text, git_commit, read_metrics
from .plots import curves_plot, decision_boundary_plot

__all__ = ["write_run_report", "mean_std", "fmt_mean_std", "markdown_table", "lookup", "provenance",
           "provenance_lines"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    vals = [float(v) for v in values]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt_mean_std(values: Sequence[float], digits: int = 3) -> str:
    """``"mean ± std"`` over the values; a single value is printed alone, since a spread over one
    seed is not zero but unknown."""
    m, s = mean_std(values)
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def lookup(summary: dict, path: str):
    """``summary["a"]["b"]...`` for path ``a/b/...``, or None where a key is missing."""
    node = summary
    for key in path.split("/"):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def provenance(command: str, wall_time_s: float) -> dict:
    """What made a results file: command, commit (read once, with ``-dirty``), wall time, versions."""
    import platform

    import torch

    return {"command": command, "commit": git_commit(), "wall_time_s": round(wall_time_s, 1),
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.machine()}


def provenance_lines(p: dict, seeds: Sequence[int]) -> list[str]:
    """The header list of a results file, from its :func:`provenance`."""
    return [f"- command: `{p['command']}`", f"- commit: `{p['commit']}`",
            f"- seeds: {', '.join(map(str, seeds))}",
            f"- wall time of this invocation: {p['wall_time_s']:.0f} s (runs reused from earlier "
            "invocations are not re-timed)",
            f"- versions: Python {p['python']}, torch {p['torch']}, {p['threads']} threads, {p['machine']}"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_run_report(run_dir: str | Path, method=None, task=None) -> Path:
    """Write ``report.md`` (and plots when matplotlib is present) for one finished run."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    evals = read_metrics(run_dir / "metrics.jsonl", kind="eval")
    train = read_metrics(run_dir / "metrics.jsonl", kind="train")
    lines = [f"# Run {summary['run']}", "",
             f"- method: `{summary['method']}`, data: `{summary['data']}`, seed {summary['seed']}",
             f"- steps: {summary['steps']}, wall time: {summary['wall_time_s']:.1f} s, "
             f"processes: {summary['world_size']}", "",
             "## Final evaluation", ""]
    final = summary.get("final", {})
    if final:
        lines.append(markdown_table(["metric", "value"], [[k, f"{v:.4f}"] for k, v in final.items()]))
    else:
        lines.append("(no evaluation)\n")
    accs = sorted({k for r in evals for k in r if k.endswith("_acc")})
    if len(evals) > 1 and accs:
        p = curves_plot({k: ([r["step"] for r in evals if k in r], [r[k] for r in evals if k in r])
                         for k in accs}, run_dir / "accuracy.png", "accuracy", summary["run"])
        if p:
            lines += ["## Accuracy during training", "", f"![accuracy]({p.name})", ""]
    if train and "loss" in train[0]:
        parts = [k for k in train[0] if k.endswith("loss")]
        p = curves_plot({k: ([r["step"] for r in train], [r[k] for r in train]) for k in parts},
                        run_dir / "loss.png", "loss", summary["run"])
        if p:
            lines += ["## Training losses", "", f"![loss]({p.name})", ""]
    if method is not None and task is not None and task.in_shape == (2,):
        tgt = task.eval.get("target_test", task.target)
        p = decision_boundary_plot([(summary["method"], method)], task.source, tgt,
                                   run_dir / "decision_boundary.png")
        if p:
            lines += ["## Decision boundary", "", f"![decision boundary]({p.name})", ""]
    lines += ["Configuration: `config.yaml`; metrics: `metrics.jsonl`.", ""]
    out = run_dir / "report.md"
    atomic_write_text(out, "\n".join(lines))
    return out
