"""Feature analysis of trained runs: proxy A-distance and 2-D embeddings.

``gradversary analyze RUN_DIR [RUN_DIR ...]`` loads each run's last checkpoint and measures, on
its task's source and target test inputs:

- the PAD of the raw inputs, and of each run's features (the DANN paper's section 5.1.4: DANN
  should lower it);
- a side-by-side t-SNE (or PCA) plot of source and target features, one panel per run (the
  paper's Figure 1 layout: source-only beside DANN).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..engine.trainer import Trainer
from ..io import atomic_write_text
from ..report.markdown import markdown_table
from ..report.plots import feature_embedding_plot
from ..selection.pad import proxy_a_distance

__all__ = ["analyze_runs"]


@torch.no_grad()
def _features(tr: Trainer, x: torch.Tensor) -> torch.Tensor:
    with tr.deployed() as m:
        return torch.cat([m.model.features(x[i:i + 512].to(tr.device)).cpu()
                          for i in range(0, len(x), 512)])


def analyze_runs(run_dirs: Sequence[str | Path], out: str | Path | None = None,
                 data_root: str | None = None, max_points: int = 1000, seed: int = 0,
                 embedding: str = "tsne") -> Path:
    """Write ``analysis.md`` and ``features.png`` (under ``out``, default the first run's
    folder) and return the Markdown path."""
    trainers = [Trainer.from_run_dir(d, data_root) for d in run_dirs]
    task = trainers[0].task
    src = task.eval.get("source_test", task.source)
    tgt = task.eval.get("target_test", task.target)
    g = torch.Generator().manual_seed(seed)
    xs = src.x[torch.randperm(len(src), generator=g)[:max_points]]
    xt = tgt.x[torch.randperm(len(tgt), generator=g)[:max_points]]
    rows = [["raw inputs", f"{proxy_a_distance(xs, xt, seed=seed).pad:.3f}", "–"]]
    panels = []
    for d, tr in zip(run_dirs, trainers):
        fs, ft = _features(tr, xs), _features(tr, xt)
        acc = tr.last_eval.get("target_test_acc")
        rows.append([f"features of `{Path(d).name}` ({tr.cfg.method['name']})",
                     f"{proxy_a_distance(fs, ft, seed=seed).pad:.3f}",
                     f"{acc:.3f}" if acc is not None else "–"])
        panels.append((f"{Path(d).name}", fs, ft))
    out = Path(out) if out else Path(run_dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    plot = feature_embedding_plot(panels, out / "features.png", method=embedding, seed=seed)
    lines = ["# Feature analysis", "",
             f"Task `{task.name}`: {len(xs)} source and {len(xt)} target test inputs.", "",
             "Proxy A-distance, PAD = 2 (1 - 2 err) of a linear domain classifier trained on half "
             "of the points and tested on the other half (0: indistinguishable, 2: separable).", "",
             markdown_table(["representation", "PAD", "target acc (last eval)"], rows)]
    if plot:
        lines += [f"![source (blue) and target (red) features]({plot.name})", ""]
    path = out / "analysis.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
