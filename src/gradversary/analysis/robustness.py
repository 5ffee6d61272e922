"""Robustness evaluation of a trained run: GREAT's Table 1, honest columns and masking checks.

``gradversary attack RUN_DIR`` evaluates the run's deployed classifier on a seeded subsample of
its test split and writes ``RUN_DIR/robustness.md`` and ``robustness.json`` (plus
``accuracy_vs_eps.png`` and ``saliency.png`` when matplotlib is installed):

- the layout of Table 1 of Sinha et al., "Gradient Adversarial Training of Neural Networks",
  arXiv:1806.08028: Train, No-Attack, FGSM, iFGSM (k = 10), targeted FGSM worst / random,
  targeted iFGSM worst / random. **Every column is accuracy on the true label**, targeted ones
  included, as in the paper (its targeted-at-worst-class columns sit *above* the untargeted
  ones, e.g. 72.89 against 32.75 for the baseline, which only accuracy on the true label gives);
- then PGD with random restarts, a stronger PGD (more steps and restarts), PGD on the DLR
  loss, APGD-CE and APGD-T (AutoAttack's gradient attacks, Croce & Hein, ICML 2020, with their
  published step-size schedule, momentum and budgets), the gradient-free Square attack, a
  transfer attack from another run (``--transfer-from``) and the per-example worst case over no
  attack and every attack (an example counts only if it survives all);
- the gradient-masking checks of :func:`~gradversary.attacks.gradient_masking_checks`
  (Carlini et al., arXiv:1902.06705) with pass/FAIL verdicts and reasons, including the share
  of inputs with an all-zero input gradient;
- accuracy against eps for FGSM, iFGSM and PGD up to eps 0.5, and saliency maps (input
  gradients of the cross-entropy) of a few test images (GREAT's Figure 4).

Random targets come from a ``torch.Generator`` seeded with ``seed``; the test subsample, the
targets, the PGD starts and the Square search are the same for every model evaluated with the
same settings, so methods are compared on the same images and targets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks import (
    APGD,
    APGDT,
    FGSM,
    IFGSM,
    PGD,
    AccuracyTable,
    RobustAccuracy,
    Square,
    Transfer,
    gradient_masking_checks,
    random_targets,
    robust_accuracy,
    worst_case,
    worst_class_targets,
    zero_gradient_share,
)
from ..attacks.base import eval_mode
from ..errors import DataError
from ..io import atomic_write_text
from ..report.markdown import markdown_table
from ..report.plots import have_matplotlib

__all__ = ["AttackCache", "RobustnessSettings", "COLUMNS", "evaluate_model", "attack_run", "load_or_attack",
           "accuracy_vs_eps_plot", "compare_plots", "saliency_maps", "saliency_plot", "subsample"]

log = logging.getLogger(__name__)

# column key -> header, in the order of the table (Table 1 of the paper, then ours)
COLUMNS: dict[str, str] = {
    "train": "Train", "clean": "No-Attack", "fgsm": "FGSM", "ifgsm": "iFGSM",
    "fgsm_worst": "FGSM worst", "fgsm_random": "FGSM random",
    "ifgsm_worst": "iFGSM worst", "ifgsm_random": "iFGSM random",
    "pgd": "PGD", "pgd_strong": "PGD strong", "pgd_dlr": "PGD-DLR", "apgd_ce": "APGD-CE",
    "apgd_t": "APGD-T", "square": "Square",
    "transfer": "transfer",
    "worst_case": "worst case",
}
CURVE_ATTACKS = ("fgsm", "ifgsm", "pgd")
#: settings added after evaluations had been recorded, with values that reproduce those
#: evaluations (a saved ``settings`` dict without the keys was made with them: no APGD)
LEGACY: dict[str, Any] = {"apgd_steps": 0, "apgd_restarts": 1, "apgd_targets": 9}


@dataclass
class RobustnessSettings:
    """What the evaluation runs; the defaults are the full size, :meth:`quick` a first look.

    Cost: the quick settings took 30-80 s per MNIST ResNet (resnet_small) on 2 busy cores
    before APGD; the defaults do about 10x that work per eps (5x the images, more steps,
    restarts and queries) plus APGD. APGD-CE runs ``apgd_steps`` gradients per image
    (x restarts); APGD-T up to ``apgd_targets`` times that on a robust model, so at the
    published budgets (100 steps, 9 target classes) it costs more than the rest of the table.
    Restarts, further target classes and further Square queries only run on the examples not
    yet fooled, so weak models cost less.

    Args:
        eps: the table's L-infinity radii (images in [0, 1]).
        n: test images (a seeded subsample of the split); n_train: training images for "Train".
        split: the evaluation split (default ``target_test`` if the run has it, else
            ``source_test``).
        ifgsm_steps: k of iFGSM (the paper's 10).
        pgd_steps, pgd_restarts: the PGD column (random start, restarts on unfooled examples).
        strong_steps, strong_restarts: the stronger PGD of the ``more_steps_not_weaker`` check.
        dlr: add the PGD-DLR column: PGD (``pgd_steps`` x ``pgd_restarts``) on AutoAttack's
            DLR loss, which does not saturate with over-confident logits (the margin loss
            when K < 3).
        apgd_steps: iterations of APGD-CE and of each APGD-T run (AutoAttack: 100); 0 leaves
            both APGD columns out (the evaluations recorded before APGD existed).
        apgd_restarts: APGD-CE restarts, and APGD-T restarts per target class (AutoAttack: 1).
        apgd_targets: APGD-T's target classes, the most likely other ones (AutoAttack: 9).
        square_queries: the Square attack's query budget per example.
        curve_eps: extra radii of the accuracy-versus-eps curve (the table's eps are added).
        n_saliency: test images shown as saliency maps.
        batch_size: attack batch size; seed: seed of the subsample, targets and random starts.
    """

    eps: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3])
    n: int = 1000
    n_train: int = 1000
    split: str | None = None
    ifgsm_steps: int = 10
    pgd_steps: int = 20
    pgd_restarts: int = 2
    strong_steps: int = 50
    strong_restarts: int = 3
    dlr: bool = True
    apgd_steps: int = 100
    apgd_restarts: int = 1
    apgd_targets: int = 9
    square_queries: int = 500
    curve_eps: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.3, 0.4, 0.5])
    n_saliency: int = 6
    batch_size: int = 250
    seed: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> RobustnessSettings:
        """Small sizes for a first look on a CPU (minutes for several models)."""
        base = dict(eps=[0.1, 0.3], n=200, n_train=200, pgd_steps=10, pgd_restarts=1,
                    strong_steps=20, strong_restarts=2, apgd_steps=20, apgd_targets=3,
                    square_queries=100, curve_eps=[0.1, 0.3, 0.5], n_saliency=4)
        return cls(**{**base, **overrides})

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> RobustnessSettings:
        """The settings of a saved evaluation; keys it lacks take their :data:`LEGACY` value
        (an evaluation recorded before APGD existed had none)."""
        return cls(**{**LEGACY, **saved})

    def key_dict(self) -> dict[str, Any]:
        """What the evaluation depends on, as a dict: without APGD (``apgd_steps`` 0), the
        settings without the APGD keys, so that the cache key of an evaluation without APGD is
        the one it had before those keys existed, whatever the unused APGD budgets say."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k not in LEGACY} if not self.apgd_steps else d

    def describe(self) -> str:
        return (f"n = {self.n} test images (seeded subsample, seed {self.seed}), Train on "
                f"{self.n_train} training images; iFGSM k = {self.ifgsm_steps}, step eps/k; "
                f"PGD {self.pgd_steps} steps x {self.pgd_restarts} restart(s), step 2.5 eps/steps; "
                f"PGD strong {self.strong_steps} steps x {self.strong_restarts} restarts; "
                + (f"PGD-DLR {self.pgd_steps} x {self.pgd_restarts} on the DLR loss; " if self.dlr else "")
                + (f"APGD-CE {self.apgd_steps} steps x {self.apgd_restarts} restart(s), APGD-T "
                   f"{self.apgd_steps} steps x {self.apgd_restarts} on each of the {self.apgd_targets} "
                   "most likely other classes (Croce & Hein 2020: step 2 eps halved at its "
                   "checkpoints, momentum 0.75, random start); " if self.apgd_steps else "")
                + f"Square "
                f"{self.square_queries} queries, p_init 0.8; transfer = PGD ({self.pgd_steps} x "
                f"{self.pgd_restarts}) on the source model; white-box PGD "
                + ("and APGD count an image as fooled at its first successful iterate and stop "
                   "there" if self.apgd_steps else
                   "counts an image as fooled at its first successful iterate and stops there"))


def subsample(x: Tensor, y: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    if n >= len(y):
        return x, y
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


def _fixed_targets(targets: Tensor) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    """A target function handing out ``targets`` batch after batch (data in order)."""
    offset = 0

    def fn(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        nonlocal offset
        t = targets[offset:offset + len(y)].to(y.device)
        offset += len(y)
        return t

    return fn


def _worst(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return worst_class_targets(model, x)


class AttackCache:
    """The finished attacks of one robustness evaluation, kept so that an interrupted
    evaluation resumes at the attack it was in (one MNIST model under every attack at three eps
    takes up to tens of CPU-minutes).

    ``path`` (``RUN_DIR/robustness.partial.json``) holds ``key`` (what the evaluation depends
    on: the settings, both checkpoints, the transfer source; see :func:`_key`) and, by attack
    name, the accuracy, the per-example mask and the seconds it took. It is rewritten
    atomically after each attack and removed once the evaluation is written; a file made under
    another key is ignored, then replaced. Every attack draws from its own seeded generator, so
    a resumed evaluation equals an uninterrupted one. ``path=None``: nothing is kept.
    ``progress``: a progress bar over the attacks, naming the one under way.
    """

    def __init__(self, path: Path | None = None, key: str = "", progress: bool = False):
        self.path, self.key, self.progress = path, key, progress
        self.done: dict[str, dict[str, Any]] = {}
        self.reused: list[str] = []
        self._bar = None
        if path is not None and path.is_file():
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError):
                saved = {}
            if saved.get("key") == key:
                self.done = dict(saved.get("attacks", {}))

    def __call__(self, name: str, attack: Callable[[], RobustAccuracy]) -> RobustAccuracy:
        """The saved result of attack ``name``, or ``attack()``'s, saved before it returns."""
        if (hit := self.done.get(name)) is not None:
            self.reused.append(name)
            return RobustAccuracy(hit["accuracy"], torch.tensor([c == "1" for c in hit["correct"]]))
        if self.progress and self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(desc="attacks", unit="attack", initial=len(self.reused), leave=False)
        if self._bar is not None:
            self._bar.set_postfix_str(f"eps {name.replace('/', ': ')}", refresh=True)
        t0 = time.perf_counter()
        res = attack()
        self.done[name] = {"accuracy": res.accuracy, "seconds": round(time.perf_counter() - t0, 3),
                           "correct": "".join("1" if c else "0" for c in res.correct.tolist())}
        if self.path is not None:
            atomic_write_text(self.path, json.dumps({"key": self.key, "attacks": self.done}) + "\n")
        log.info("%s: %.1f%% (%.1f s)", name, 100 * res.accuracy, self.done[name]["seconds"])
        if self._bar is not None:
            self._bar.update(1)
        return res

    def reused_seconds(self) -> float:
        """The time the reused attacks took when they ran."""
        return sum(self.done[k].get("seconds", 0.0) for k in self.reused)

    def finish(self) -> None:
        """The evaluation is written: drop the kept attacks and close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _attacks_at(model: nn.Module, data, eps: float, s: RobustnessSettings, rand_t: Tensor,
                source: nn.Module | None, num_classes: int,
                cache: AttackCache) -> dict[str, RobustAccuracy]:
    """Every attack of the table at one eps; per-example masks on the same images."""
    bs = s.batch_size
    fgsm, ifgsm = FGSM(eps), IFGSM(eps, steps=s.ifgsm_steps)
    todo: dict[str, Callable[[], RobustAccuracy]] = {
        "fgsm": lambda: robust_accuracy(model, fgsm, data, bs),
        "ifgsm": lambda: robust_accuracy(model, ifgsm, data, bs)}
    for name, attack in (("fgsm", fgsm), ("ifgsm", ifgsm)):
        todo[f"{name}_worst"] = lambda a=attack: robust_accuracy(model, a, data, bs, target_fn=_worst)
        todo[f"{name}_random"] = lambda a=attack: robust_accuracy(model, a, data, bs,
                                                                  target_fn=_fixed_targets(rand_t))
    # white-box PGD and APGD stop an example at its first success: the same accuracies, fewer
    # gradients
    todo["pgd"] = lambda: robust_accuracy(
        model, PGD(eps, s.pgd_steps, restarts=s.pgd_restarts, seed=s.seed, early_stop=True), data, bs)
    todo["pgd_strong"] = lambda: robust_accuracy(
        model, PGD(eps, s.strong_steps, restarts=s.strong_restarts, seed=s.seed + 1, early_stop=True),
        data, bs)
    if s.dlr:
        loss = "dlr" if num_classes >= 3 else "margin"
        todo["pgd_dlr"] = lambda: robust_accuracy(
            model, PGD(eps, s.pgd_steps, restarts=s.pgd_restarts, seed=s.seed + 2, loss=loss,
                       early_stop=True), data, bs)
    if s.apgd_steps:
        todo["apgd_ce"] = lambda: robust_accuracy(
            model, APGD(eps, s.apgd_steps, s.apgd_restarts, seed=s.seed + 3, early_stop=True), data, bs)
        todo["apgd_t"] = lambda: robust_accuracy(
            model, APGDT(eps, s.apgd_steps, s.apgd_restarts, s.apgd_targets, seed=s.seed + 4,
                         early_stop=True), data, bs)
    todo["square"] = lambda: robust_accuracy(model, Square(eps, s.square_queries, seed=s.seed), data, bs)
    if source is not None:
        inner = PGD(eps, s.pgd_steps, restarts=s.pgd_restarts, seed=s.seed)
        todo["transfer"] = lambda: robust_accuracy(model, Transfer(eps, source, inner), data, bs)
    return {name: cache(f"{eps}/{name}", fn) for name, fn in todo.items()}


def _curve_point(model: nn.Module, data, eps: float, s: RobustnessSettings,
                 cache: AttackCache) -> dict[str, float]:
    attacks = {"fgsm": FGSM(eps), "ifgsm": IFGSM(eps, steps=s.ifgsm_steps),
               "pgd": PGD(eps, s.pgd_steps, restarts=s.pgd_restarts, seed=s.seed, early_stop=True)}
    return {k: cache(f"curve/{eps}/{k}", lambda a=a: robust_accuracy(model, a, data, s.batch_size)).accuracy
            for k, a in attacks.items()}


def saliency_maps(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Input gradients of the summed cross-entropy, as |gradient| summed over channels and
    scaled to [0, 1] per image (GREAT's Figure 4, left).

    Shape:
        x: (N, C, H, W) in [0, 1]; y: (N,); output: (N, H, W) on the CPU.
    """
    with eval_mode(model), torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    m = g.abs().sum(dim=1)
    return (m / m.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]).cpu()


def evaluate_model(model: nn.Module, x: Tensor, y: Tensor, num_classes: int,
                   settings: RobustnessSettings, train: tuple[Tensor, Tensor] | None = None,
                   source: nn.Module | None = None, cache: AttackCache | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on ``(x, y)`` (already subsampled) under every attack of the table.

    Args:
        model: classifier on [0, 1] inputs; modes are restored afterwards.
        x, y: test images and labels, on the model's device.
        num_classes: K, for the random targets.
        settings: attack sizes and eps.
        train: training images and labels for the "Train" column (skipped if ``None``).
        source: the transfer attack's source model (no transfer column if ``None``).
        cache: finished attacks of an interrupted evaluation, and where to keep new ones
            (:class:`AttackCache`; ``None``: keep nothing).

    Returns:
        a dict with ``tables`` (eps -> column -> accuracy), ``curve`` (attack -> eps ->
        accuracy), ``zero_gradient_share``, ``checks`` (eps -> list of check dicts) and
        ``masks`` (eps -> column -> (N,) bool tensor; not written to JSON).

    Shape:
        x: (N, C, H, W) in [0, 1]; y: (N,).
    """
    s, data, cache = settings, (x, y), cache or AttackCache()
    clean = robust_accuracy(model, None, data, s.batch_size)
    base = {"clean": clean.accuracy}
    if train is not None:
        base["train"] = robust_accuracy(model, None, train, s.batch_size).accuracy
    rand_t = random_targets(y.cpu(), num_classes, torch.Generator().manual_seed(s.seed))
    tables, masks, curve = {}, {}, {k: {} for k in CURVE_ATTACKS}
    for eps in s.eps:
        res = _attacks_at(model, data, float(eps), s, rand_t, source, num_classes, cache)
        worst = worst_case(clean, *res.values())
        masks[float(eps)] = {"clean": clean.correct, **{k: r.correct for k, r in res.items()},
                             "worst_case": worst.correct}
        tables[float(eps)] = {**base, **{k: r.accuracy for k, r in res.items()},
                              "worst_case": worst.accuracy}
        for k in CURVE_ATTACKS:
            curve[k][float(eps)] = res[k].accuracy
    for k in CURVE_ATTACKS:
        curve[k][0.0] = clean.accuracy  # the curve starts at no attack
    for eps in sorted(set(map(float, s.curve_eps)) - set(tables) - {0.0}):
        for k, acc in _curve_point(model, data, eps, s, cache).items():
            curve[k][eps] = acc
    curve = {k: dict(sorted(v.items())) for k, v in curve.items()}
    zero = zero_gradient_share(model, x, y, s.batch_size)
    checks = {}
    for eps, t in tables.items():
        table = AccuracyTable(clean=clean.accuracy, fgsm=t["fgsm"], ifgsm=t["ifgsm"], pgd=t["pgd"],
                              pgd_strong=t["pgd_strong"], pgd_dlr=t.get("pgd_dlr"), apgd_ce=t.get("apgd_ce"),
                              apgd_t=t.get("apgd_t"), square=t["square"],
                              transfer=t.get("transfer"), pgd_by_eps=curve["pgd"],
                              zero_gradient_share=zero)
        checks[eps] = [dataclasses.asdict(c) for c in gradient_masking_checks(table)]
    return {"n": len(y), "tables": tables, "curve": curve, "zero_gradient_share": zero,
            "checks": checks, "masks": masks}


# ----------------------------------------------------------------------------- plots
def accuracy_vs_eps_plot(curves: dict[str, dict[str, dict[float, float]]], path: str | Path,
                         title: str = "") -> Path | None:
    """One panel per attack (FGSM, iFGSM, PGD), accuracy against eps, one line per model.

    Args:
        curves: model label -> attack -> eps -> accuracy (eps 0 = clean, if given).
    """
    if not have_matplotlib():
        return None
    from ..report.plots import pyplot, save_figure

    plt = pyplot()
    attacks = [a for a in CURVE_ATTACKS if any(a in c for c in curves.values())]
    fig, axes = plt.subplots(1, len(attacks), figsize=(3.6 * len(attacks), 3.2), sharey=True,
                             squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        for label, c in curves.items():
            pts = sorted((float(e), a) for e, a in c.get(attack, {}).items())
            ax.plot([e for e, _ in pts], [100 * a for _, a in pts], marker="o", ms=3, label=label)
        ax.set_title({"fgsm": "FGSM", "ifgsm": "iFGSM", "pgd": "PGD"}[attack])
        ax.set_xlabel("eps (L-inf, [0, 1] images)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def saliency_plot(images: Tensor, panels: Sequence[tuple[str, Tensor]], path: str | Path) -> Path | None:
    """Test images in the first row, then one row of saliency maps per model.

    Shape:
        images: (N, C, H, W) in [0, 1]; each panel's maps: (N, H, W) in [0, 1].
    """
    if not have_matplotlib():
        return None
    from ..report.plots import pyplot, save_figure

    plt = pyplot()
    n, rows = images.shape[0], 1 + len(panels)
    fig, axes = plt.subplots(rows, n, figsize=(1.3 * n + 1.2, 1.3 * rows), squeeze=False)
    imgs = images.detach().cpu().numpy()
    for j in range(n):
        im = imgs[j]
        axes[0][j].imshow(im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0),
                          cmap="gray" if im.shape[0] == 1 else None, vmin=0, vmax=1)
        for i, (_, maps) in enumerate(panels, start=1):
            axes[i][j].imshow(maps[j].numpy(), cmap="hot", vmin=0, vmax=1)
    for i, label in enumerate(["image", *(p[0] for p in panels)]):
        axes[i][0].set_ylabel(label.replace(", ", ",\n"), fontsize=7, rotation=0, ha="right",
                              va="center")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)


def compare_plots(runs: dict[str, list[tuple[Path, dict]]], settings: RobustnessSettings, stem: Path,
                  title: str, data_root: str | None = None, saliency: bool = True) -> dict[str, str]:
    """Accuracy against eps (mean over each model's runs) and saliency maps (each model's first
    run, on the same test images) of several models, as ``<stem>_eps.png`` and
    ``<stem>_saliency.png``; returns the names of the files written.

    Args:
        runs: model label -> ``(run directory, its evaluation)`` pairs; the evaluation as
            :func:`load_or_attack` returns it (its ``curve`` is read).
        saliency: draw the saliency maps (they load each model's checkpoint; the accuracy
            curves need only the evaluations).
    """
    from ..engine.trainer import Trainer

    curves: dict[str, dict] = {}
    for label, pairs in runs.items():
        c = curves.setdefault(label, {})
        for _, ev in pairs:
            for attack, pts in ev["curve"].items():
                for e, a in pts.items():
                    c.setdefault(attack, {}).setdefault(float(e), []).append(a)
    curves = {t: {a: {e: sum(v) / len(v) for e, v in p.items()} for a, p in c.items()} for t, c in curves.items()}
    eps_png, sal_png = stem.with_name(stem.name + "_eps.png"), stem.with_name(stem.name + "_saliency.png")
    if not accuracy_vs_eps_plot(curves, eps_png, title):
        return {}
    if not saliency:
        return {"accuracy_vs_eps": eps_png.name}
    s, panels, images = settings, [], None
    for label, pairs in runs.items():
        tr = Trainer.from_run_dir(pairs[0][0], data_root, checkpoint="selected")
        ev = tr.task.eval[s.split or ("target_test" if "target_test" in tr.task.eval else "source_test")]
        x, y = subsample(ev.x, ev.y, s.n, s.seed)
        images, y = x[:s.n_saliency].to(tr.device), y[:s.n_saliency].to(tr.device).long()
        with tr.deployed() as m:
            panels.append((label, saliency_maps(m.model, images, y)))
    saved = s.n_saliency and saliency_plot(images, panels, sal_png)
    return {"accuracy_vs_eps": eps_png.name, **({"saliency": sal_png.name} if saved else {})}


# ----------------------------------------------------------------------------- one run
def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _file_stamp(run_dir: Path) -> str:
    ckpt = Path(run_dir) / "checkpoints" / "last.pt"
    if not ckpt.exists():
        return "missing"
    st = ckpt.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _key(run_dir: Path, settings: RobustnessSettings, transfer_from: Path | None) -> str:
    """What a saved evaluation depends on: the settings and both checkpoints' file stamps."""
    raw = json.dumps({"settings": settings.key_dict(), "run": _file_stamp(run_dir),
                      "transfer_from": None if transfer_from is None else
                      [str(Path(transfer_from).resolve()), _file_stamp(Path(transfer_from))]},
                     sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _require_images(run_dir: Path, task, split: str) -> None:
    """Attacks perturb images in [0, 1]: refuse a run on other data with a plain reason."""
    for x in (task.source.x, task.eval[split].x):
        if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
            raise DataError(
                f"attacks need a run on image data in [0, 1]; run {str(run_dir)!r} was trained "
                f"on {task.name!r}, inputs of shape {tuple(task.in_shape)} with values in "
                f"[{float(x.min()):.4g}, {float(x.max()):.4g}]")


def attack_run(run_dir: str | Path, settings: RobustnessSettings, data_root: str | None = None,
               transfer_from: str | Path | None = None, command: str = "",
               progress: bool = False) -> dict[str, Any]:
    """Evaluate a run directory's deployed model (its selected checkpoint if it has a
    selection criterion, e.g. ``robust_val``; else its last) and write ``robustness.md`` /
    ``.json`` and the plots into it. Returns the JSON content (with ``path`` of the Markdown
    file). An interrupted evaluation resumes at the attack it was in (:class:`AttackCache`);
    ``progress``: a bar over the attacks."""
    from ..engine.trainer import Trainer

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    trainer = Trainer.from_run_dir(run_dir, data_root, checkpoint="selected")  # what the run deploys
    task = trainer.task
    split = settings.split or ("target_test" if "target_test" in task.eval else "source_test")
    if split not in task.eval:
        raise DataError(f"run {str(run_dir)!r} has no split {split!r}; it has {', '.join(task.eval)}")
    _require_images(run_dir, task, split)
    dev = trainer.device
    x, y = subsample(task.eval[split].x, task.eval[split].y, settings.n, settings.seed)
    xt, yt = subsample(task.source.x, task.source.y, settings.n_train, settings.seed + 1)
    x, y, xt, yt = x.to(dev), y.to(dev).long(), xt.to(dev), yt.to(dev).long()
    key = _key(run_dir, settings, None if transfer_from is None else Path(transfer_from))
    cache = AttackCache(run_dir / "robustness.partial.json", key, progress)
    with ExitStack() as stack:
        model = stack.enter_context(trainer.deployed()).model
        source = None
        if transfer_from is not None:
            src = Trainer.from_run_dir(transfer_from, data_root, checkpoint="selected")
            source = stack.enter_context(src.deployed()).model.to(dev)
        res = evaluate_model(model, x, y, task.num_classes, settings, (xt, yt), source, cache)
        k = min(settings.n_saliency, len(y))
        sal = saliency_maps(model, x[:k], y[:k]) if k else None
    masks = res.pop("masks")
    out = {
        "run": str(run_dir), "method": trainer.cfg.method["name"], "step": trainer.step,
        "split": split, "transfer_from": None if transfer_from is None else str(transfer_from),
        "settings": dataclasses.asdict(settings), "key": key, "command": command,
        # an evaluation resumed from an interrupted one counts the reused attacks' time too
        "wall_time_s": round(time.perf_counter() - t0 + cache.reused_seconds(), 2),
        **({"resumed_attacks": len(cache.reused)} if cache.reused else {}),
        "targeted_columns": "accuracy on the true label (as in GREAT's Table 1)",
        **{k: v for k, v in res.items()},
    }
    out["tables"] = {str(e): t for e, t in out["tables"].items()}
    out["checks"] = {str(e): c for e, c in out["checks"].items()}
    out["curve"] = {a: {str(e): v for e, v in c.items()} for a, c in out["curve"].items()}
    plots = {}
    p = accuracy_vs_eps_plot({out["method"]: res["curve"]}, run_dir / "accuracy_vs_eps.png",
                             str(run_dir.name))
    if p:
        plots["accuracy_vs_eps"] = p.name
    if sal is not None:
        p = saliency_plot(x[:k], [(out["method"], sal)], run_dir / "saliency.png")
        if p:
            plots["saliency"] = p.name
    out["plots"] = plots
    atomic_write_text(run_dir / "robustness.json", json.dumps(out, indent=1) + "\n")
    atomic_write_text(run_dir / "robustness.md", render_run(out))
    cache.finish()
    out["path"] = str(run_dir / "robustness.md")
    out["masks"] = masks
    return out


def load_or_attack(run_dir: str | Path, settings: RobustnessSettings, data_root: str | None = None,
                   transfer_from: str | Path | None = None, command: str = "",
                   progress: bool = False) -> dict[str, Any]:
    """The saved ``robustness.json`` if it was made with these settings from these checkpoints,
    else a fresh :func:`attack_run`."""
    path = Path(run_dir) / "robustness.json"
    key = _key(Path(run_dir), settings, None if transfer_from is None else Path(transfer_from))
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved
    out = attack_run(run_dir, settings, data_root, transfer_from, command, progress)
    out.pop("masks", None)
    return out


def render_checks(checks: Sequence[dict]) -> list[str]:
    return [f"- **{ {True: 'pass', False: 'FAIL', None: 'skip'}[c['passed']] }** "
            f"`{c['name']}`: {c['reason']}" for c in checks]


def render_run(out: dict[str, Any]) -> str:
    """The Markdown report of one run's evaluation."""
    s = out["settings"]
    cols = [c for c in COLUMNS if any(c in t for t in out["tables"].values())]
    rows = [[f"{float(e):g}", *(_pct(t.get(c)) for c in cols)] for e, t in out["tables"].items()]
    lines = [
        f"# Robustness of `{out['run']}`", "",
        f"- method: `{out['method']}`, checkpoint step {out['step']}, split `{out['split']}`",
        f"- command: `{out['command'] or 'gradversary attack'}`",
        f"- settings: {RobustnessSettings.from_saved(s).describe()}",
        f"- transfer source: {out['transfer_from'] or 'none (no transfer column)'}",
        f"- wall time: {out['wall_time_s']:.1f} s; Python {platform.python_version()}, "
        f"torch {torch.__version__}", "",
        "Accuracy (%) on the true label, also for the targeted columns (as in GREAT's Table 1: "
        "a targeted attack that misses its target may still leave the image correct). "
        "*worst case* counts an image only if it is correct without attack and under every "
        "attack of its row.", "",
        markdown_table(["eps", *(COLUMNS[c] for c in cols)], rows),
        "## Accuracy against eps", "",
        markdown_table(["attack", *(f"{float(e):g}" for e in next(iter(out["curve"].values())))],
                       [[a.upper() if a != "ifgsm" else "iFGSM", *(_pct(v) for v in c.values())]
                        for a, c in out["curve"].items()]),
        "## Gradient-masking checks", "",
        f"Share of test inputs with an all-zero input gradient: "
        f"{100 * out['zero_gradient_share']:.1f}%.", "",
    ]
    for e, checks in out["checks"].items():
        lines += [f"At eps {float(e):g}:", "", *render_checks(checks), ""]
    for name, file in out.get("plots", {}).items():
        lines += [f"![{name}]({file})", ""]
    return "\n".join(lines)
