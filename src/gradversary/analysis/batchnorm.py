"""BatchNorm statistics and domain shift: evaluate a trained run with the running statistics it
learnt, and with statistics re-estimated on one domain's unlabelled images (AdaBN; the
estimation itself is :mod:`gradversary.nn.batchnorm`, which ``train.bn_stats: target`` also
uses at every evaluation).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..attacks import eval_mode
from ..attacks.evaluate import robust_accuracy
from ..methods.fast_at import fgsm_random_start
from ..nn.batchnorm import adapt_batchnorm, batchnorm_layers, batchnorm_statistics_of
from .robustness import subsample

__all__ = ["batchnorm_layers", "adapt_batchnorm", "batchnorm_statistics_of", "bn_shift_row",
           "adversarial_bn_row", "fgsm_rs_batches"]


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
    """Whether an adversarially trained run's BatchNorm running statistics fit the images it
    is tested on.

    BatchNorm in training mode normalises each batch by its own moments. A run trained on
    perturbed batches only (PGD-AT, fast AT) learns its running statistics on perturbed
    images; one that alternates clean and perturbed batches (the FGSM 50/50 baseline) learns
    to classify each kind under that kind's own moments, and deploys their average. This
    evaluates the deployed model (its selected checkpoint) on ``n`` test images (the
    robustness evaluation's seeded subsample) with three sets of statistics: its running ones
    (``running``), ones re-estimated on the first ``n_stats`` clean training images
    (``clean_stats``), and ones re-estimated on those images under the attack
    (``attack_stats``, crafted against the model with its running statistics). Each time it
    measures the clean accuracy and the accuracy under fast AT's training attack, one FGSM
    step of 1.25 eps from a random start clipped to [0, 1]
    (:func:`~gradversary.methods.fast_at.fgsm_random_start`; the starts seeded by ``seed``),
    crafted against the model as evaluated. An accuracy under that attack above the clean one
    is the mark of a model that has learnt to read the single step ("catastrophic
    overfitting", Wong et al. 2020; label leaking, Kurakin et al. 2017). No test label
    chooses anything; the training labels make the attacked training images.

    Returns ``{"run", "method", "seed", "steps", "bn_layers", "eps", "n", "running": {"clean",
    "fgsm_rs"}, "clean_stats": {...}, "attack_stats": {...}}`` (accuracies in [0, 1]).
    """
    from ..engine import Trainer  # analysis sits above the engine

    tr = Trainer.from_run_dir(run_dir, data_root=data_root, checkpoint="selected")
    split = "target_test" if "target_test" in tr.task.eval else "source_test"
    x, y = subsample(tr.task.eval[split].x, tr.task.eval[split].y, n, seed)
    y = y.long()
    xs, ys = tr.task.source.x[:n_stats], tr.task.source.y[:n_stats].long()
    with tr.deployed(statistics=False) as method:
        model = method.model

        def attacked(xx: Tensor, yy: Tensor) -> Tensor:
            return fgsm_rs_batches(model, xx, yy, eps, seed, batch_size)

        def measure() -> dict[str, float]:
            adv = attacked(x, y)
            return {"clean": robust_accuracy(model, None, (x, y), batch_size).accuracy,
                    "fgsm_rs": robust_accuracy(model, None, (adv, y), batch_size).accuracy}

        row = {"run": str(run_dir), "method": tr.cfg.method["name"], "seed": tr.cfg.train.seed,
               "steps": tr.step, "bn_layers": len(batchnorm_layers(model)), "eps": eps,
               "n": len(y), "running": measure()}
        xs_adv = attacked(xs, ys)
        with batchnorm_statistics_of(model, xs, batch_size):
            row["clean_stats"] = measure()
        with batchnorm_statistics_of(model, xs_adv, batch_size):
            row["attack_stats"] = measure()
    return row


def fgsm_rs_batches(model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int = 0,
                    batch_size: int = 256) -> Tensor:
    """Fast AT's training point for every row of ``x`` (one FGSM step of 1.25 eps from a
    random start clipped to [0, 1]), crafted in batches with every submodule in eval mode; the
    starts come from ``torch.manual_seed(seed)`` and the global RNG is restored after.

    Shape:
        x: (N, *) in [0, 1]; y: (N,); output: (N, *).
    """
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with eval_mode(model):
            return torch.cat([fgsm_random_start(model, x[s:s + batch_size], y[s:s + batch_size], eps,
                                                1.25 * eps, clip_start=True)
                              for s in range(0, len(y), batch_size)])
    finally:
        torch.random.set_rng_state(state)

