"""BatchNorm statistics and domain shift: evaluate a trained run with the running statistics it
learnt, and with statistics re-estimated on one domain's unlabelled images (AdaBN; the
estimation itself is :mod:`gradversary.nn.batchnorm`, which ``train.bn_stats: target`` also
uses at every evaluation).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..attacks import eval_mode
from ..methods.fast_at import fgsm_random_start
from ..nn.batchnorm import adapt_batchnorm, batchnorm_layers, batchnorm_statistics_of
from .robustness import subsample

__all__ = ["batchnorm_layers", "adapt_batchnorm", "batchnorm_statistics_of", "bn_shift_row",
           "adversarial_bn_row"]


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


def adversarial_bn_row(run_dir: str | Path, eps: float, data_root: str | None = None, n: int = 1000,
                       n_stats: int = 5000, seed: int = 0, batch_size: int = 256) -> dict:
    """Whether an adversarially trained run's BatchNorm running statistics fit clean images.

    A run trained on perturbed batches only (PGD-AT, fast AT) learns its running statistics on
    perturbed images. This evaluates the deployed model (its selected checkpoint) on ``n``
    test images (the robustness evaluation's seeded subsample) twice: with the running
    statistics, and with statistics re-estimated on the first ``n_stats`` clean training
    images (no labels). Each time it measures the clean accuracy and the accuracy under fast
    AT's training attack, one FGSM step of 1.25 eps from a random start clipped to [0, 1]
    (:func:`~gradversary.methods.fast_at.fgsm_random_start`; the start seeded by ``seed``),
    crafted against the model as evaluated. An accuracy under that attack above the clean one
    is the mark of a model that has learnt to read the single step ("catastrophic
    overfitting", Wong et al. 2020; label leaking, Kurakin et al. 2017).

    Returns ``{"run", "method", "seed", "steps", "bn_layers", "eps", "n", "running": {"clean",
    "fgsm_rs"}, "clean_stats": {...}}`` (accuracies in [0, 1]).
    """
    from ..engine import Trainer  # analysis sits above the engine

    tr = Trainer.from_run_dir(run_dir, data_root=data_root, checkpoint="selected")
    split = "target_test" if "target_test" in tr.task.eval else "source_test"
    x, y = subsample(tr.task.eval[split].x, tr.task.eval[split].y, n, seed)
    y = y.long()
    with tr.deployed(statistics=False) as method:
        model = method.model

        def measure() -> dict[str, float]:
            with eval_mode(model):
                correct = {"clean": 0, "fgsm_rs": 0}
                gen_state = torch.random.get_rng_state()
                torch.manual_seed(seed)
                try:
                    for s in range(0, len(y), batch_size):
                        xb, yb = x[s:s + batch_size], y[s:s + batch_size]
                        adv = fgsm_random_start(model, xb, yb, eps, 1.25 * eps, clip_start=True)
                        with torch.no_grad():
                            correct["clean"] += int((model(xb).argmax(-1) == yb).sum())
                            correct["fgsm_rs"] += int((model(adv).argmax(-1) == yb).sum())
                finally:
                    torch.random.set_rng_state(gen_state)
            return {k: v / len(y) for k, v in correct.items()}

        row = {"run": str(run_dir), "method": tr.cfg.method["name"], "seed": tr.cfg.train.seed,
               "steps": tr.step, "bn_layers": len(batchnorm_layers(model)), "eps": eps,
               "n": len(y), "running": measure()}
        with batchnorm_statistics_of(model, tr.task.source.x[:n_stats], batch_size):
            row["clean_stats"] = measure()
    return row
