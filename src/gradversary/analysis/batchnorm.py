"""BatchNorm statistics and domain shift: evaluate a trained run with the running statistics it
learnt, and with statistics re-estimated on one domain's unlabelled images (AdaBN; the
estimation itself is :mod:`gradversary.nn.batchnorm`, which ``train.bn_stats: target`` also
uses at every evaluation).
"""

from __future__ import annotations

from pathlib import Path

from ..nn.batchnorm import adapt_batchnorm, batchnorm_layers, batchnorm_statistics_of

__all__ = ["batchnorm_layers", "adapt_batchnorm", "batchnorm_statistics_of", "bn_shift_row"]


def bn_shift_row(run_dir: str | Path, data_root: str | None = None, batch_size: int = 256) -> dict:
    """Evaluate one trained run (its last checkpoint, with its EMA weights if it keeps them)
    three ways on the labelled test splits: with its running statistics, with statistics of
    the unlabelled target training inputs (AdaBN; honest, no target labels), and, as a check,
    with statistics of the source training inputs.

    Returns ``{"run", "method", "seed", "steps", "bn_layers", "running": {metric: value},
    "target_stats": {...}, "source_stats": {...}}`` with the test metrics of each
    (``target_test_acc``, ``source_test_acc``, ...).
    """
    from ..engine import Trainer  # analysis sits above the engine

    tr = Trainer.from_run_dir(run_dir, data_root=data_root)
    # the weights the run deploys (its EMA, if it keeps one), with the statistics it learnt
    with tr.deployed(statistics=False) as method:
        model = method.model

        def metrics() -> dict[str, float]:
            model.eval()
            return {k: float(v) for k, v in method.evaluate(tr.task.eval, batch_size).items()}

        row = {"run": str(run_dir), "method": tr.cfg.method["name"], "seed": tr.cfg.train.seed,
               "steps": tr.step, "bn_layers": len(batchnorm_layers(model)), "running": metrics()}
        with batchnorm_statistics_of(model, tr.task.target.x, batch_size):
            row["target_stats"] = metrics()
        with batchnorm_statistics_of(model, tr.task.source.x, batch_size):
            row["source_stats"] = metrics()
    return row
