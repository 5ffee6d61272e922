"""The run configuration: typed sections, registry-validated components, YAML in and out."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import apply_overrides, from_dict, to_dict
from ..config_files import read_config_file
from ..data.augment import AugmentConfig
from ..data.registry import DATASETS
from ..errors import ConfigError
from ..methods.base import METHODS
from ..models.base import MODELS
from ..registry import spec_field
from ..schedules import SCHEDULES
from ..selection.validators import resolve_validators
from .divergence import DivergenceConfig

__all__ = ["OptimConfig", "TrainConfig", "SelectionConfig", "RunConfig", "resolve_config", "load_config"]


@dataclass
class OptimConfig:
    """Optimizer settings, shared by every optimizer a method declares.

    Args:
        name: ``sgd``, ``adam`` or ``adamw``.
        lr: base learning rate (mu_0); the schedule multiplies it.
        momentum: SGD momentum (the DANN recipe: 0.9).
        nesterov: Nesterov momentum for SGD (Transfer-Learning-Library's recipes).
        weight_decay: L2 penalty.
        betas: Adam's betas.
        lr_schedule: a registered schedule, stepped by progress, multiplying ``lr``
            (default: the DANN decay 1 / (1 + 10 p)^0.75).
        groups: per-optimizer overrides of the keys above, by the name the method declares
            (e.g. ``{aux: {lr: 0.001}}``).
        grad_clip: clip the global gradient norm of each optimizer's parameters (off if null).
    """

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: dict = spec_field(SCHEDULES, {"name": "inverse_decay", "alpha": 10.0, "beta": 0.75})
    groups: dict = field(default_factory=dict)
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ConfigError(f"optim.nesterov needs name: sgd and momentum > 0 "
                              f"(got {self.name}, momentum {self.momentum})")
        if not math.isfinite(self.lr) or self.lr < 0:
            raise ConfigError(f"optim.lr must be a finite number >= 0, got {self.lr}")
        for key in ("momentum", "weight_decay"):
            v = getattr(self, key)
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"optim.{key} must be a finite number >= 0, got {v}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas must be in [0, 1), got {list(self.betas)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"optim.grad_clip must be > 0 (or null for none), got {self.grad_clip}")


@dataclass
class TrainConfig:
    """Loop settings.

    Args:
        steps: number of optimisation steps (or give ``epochs``).
        epochs: passes over the source training set (converted to steps).
        batch_size: examples per step in all; methods that use the target split it half/half.
        eval_every: evaluate every this many steps (and at the end); 0 for the end only.
        log_every: write a training record (and check the loss is finite) every this many steps.
        checkpoint_every: save a checkpoint every this many steps (0: at each evaluation).
        seed: seeds weights, sampling and dropout.
        deterministic: ask PyTorch for deterministic kernels.
        device: ``cpu``, ``cuda``, ``cuda:1``...
        eval_batch_size: batch size of evaluation passes.
        progress: show a progress bar.
        threads: torch intra-op threads: ``auto`` (one for small models, else the cores
            available; see :mod:`gradversary.engine.threads`), an integer >= 1, or null
            (PyTorch's default).
        ema_decay: keep an exponential moving average of the weights with this decay and
            evaluate (and deploy) the averaged model; null for none.
        augment: random crop / flip of the training images (source, and target unless
            ``target: false``), e.g. ``{crop: 28, pad: 2, flip: false}``; null for none. See
            :mod:`gradversary.data.augment`.
        bn_stats: the BatchNorm statistics the model is evaluated and deployed with:
            ``running`` (the running averages of training) or ``target`` (re-estimated on the
            unlabelled target training inputs before each evaluation: AdaBN, Li et al., ICLR
            2017 workshop, arXiv:1603.04779; no target labels). With ``target`` every split,
            the source's too, is evaluated with the target's statistics: one deployed model.
            Training and checkpoints are unchanged; a model without BatchNorm is unaffected.
            Cost: one forward pass over the target training inputs per evaluation.
        divergence: when a run with finite losses counts as diverged (loss or gradient norm
            grown by orders of magnitude; see :class:`~gradversary.engine.divergence.DivergenceConfig`);
            on by default, ``{enabled: false}`` to turn it off.
    """

    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 128
    eval_every: int = 500
    log_every: int = 10
    checkpoint_every: int = 0
    seed: int = 0
    deterministic: bool = True
    device: str = "cpu"
    eval_batch_size: int = 1024
    progress: bool = True
    threads: int | str | None = "auto"
    ema_decay: float | None = None
    augment: AugmentConfig | None = None
    bn_stats: Literal["running", "target"] = "running"
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)

    def __post_init__(self) -> None:
        if self.steps is None and self.epochs is None:
            self.steps = 1000
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("train: give steps or epochs, not both")
        if self.steps is not None and self.steps <= 0:
            raise ConfigError(f"train.steps must be positive, got {self.steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"train.epochs must be positive, got {self.epochs}")
        if self.batch_size < 2:
            raise ConfigError(f"train.batch_size must be >= 2, got {self.batch_size}")
        for k in ("eval_every", "log_every", "checkpoint_every"):
            if getattr(self, k) < 0:
                raise ConfigError(f"train.{k} must be >= 0")
        if self.threads is not None and self.threads != "auto" and not (
                isinstance(self.threads, int) and self.threads >= 1):
            raise ConfigError(f"train.threads must be 'auto', an integer >= 1 or null, got {self.threads!r}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.log_every == 0:
            self.log_every = 1


@dataclass
class SelectionConfig:
    """Checkpoint selection without target labels.

    Args:
        criterion: ``last`` (the final model), ``source_val`` (error on held-out source),
            ``iwcv``, ``dev`` or ``dev_cv`` (importance-weighted source validation risk;
            ``dev_cv`` calibrates its domain classifier, see :mod:`gradversary.selection`),
            or ``robust_val`` (error on held-out source under PGD at ``robust_eps``: the
            early stopping of adversarial training, Rice et al. 2020, and Wong et al.'s guard
            against catastrophic overfitting). The selected checkpoint is kept as
            ``checkpoints/best.pt``.
        holdout: share of the source training set held out as ``source_val`` (default 0.1
            when a criterion is set, else 0).
        max_fit: examples per domain used to fit the criterion's domain classifier.
        rule: ``min`` keeps the checkpoint of lowest estimated risk; ``one_se`` the *latest*
            checkpoint whose risk is within one standard error of that minimum (Breiman's
            one-standard-error rule): the schedule's end point wins unless an earlier
            checkpoint is better by more than the estimate's noise.
        validators: label-free validators scored at every evaluation and kept in the
            summary's ``history`` (``score_<name>``, higher is better; ``cost_<name>_s``):
            ``all_cheap`` (every registered validator but reverse validation), ``none``, or
            a list of names (:mod:`gradversary.selection.validators`). Those that need the
            held-out source are skipped when ``holdout`` is 0. They never change training.
        robust_eps: ``robust_val``'s L-infinity radius on [0, 1] inputs (required by it).
        robust_steps: its PGD steps (step 2.5 eps / steps, one random start).
        robust_n: the held-out source images it attacks (the first ones; at most the hold-out).
    """

    criterion: Literal["last", "source_val", "iwcv", "dev", "dev_cv", "robust_val"] = "last"
    holdout: float | None = None
    max_fit: int = 2000
    rule: Literal["min", "one_se"] = "min"
    validators: str | list[str] = "all_cheap"
    robust_eps: float | None = None
    robust_steps: int = 10
    robust_n: int = 500

    def __post_init__(self) -> None:
        resolve_validators(self.validators)
        if self.holdout is None:
            self.holdout = 0.0 if self.criterion == "last" else 0.1
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"selection.holdout must be in [0, 1), got {self.holdout}")
        if self.criterion != "last" and self.holdout == 0.0:
            raise ConfigError(f"selection.criterion {self.criterion!r} needs selection.holdout > 0")
        if self.criterion == "robust_val" and not (self.robust_eps is not None and 0.0 < self.robust_eps <= 1.0):
            raise ConfigError("selection.criterion robust_val needs selection.robust_eps in (0, 1], "
                              f"got {self.robust_eps}")
        if self.robust_steps < 1 or self.robust_n < 1:
            raise ConfigError(f"selection.robust_steps and robust_n must be >= 1, got "
                              f"{self.robust_steps} and {self.robust_n}")


@dataclass
class RunConfig:
    """A whole run. ``method``, ``model`` and ``data`` are ``{name: ..., **options}`` mappings
    whose options are validated against the registered component's own config dataclass.

    Args:
        method: the training method (``gradversary list`` shows them).
        model: the network.
        data: the dataset/task; ``root`` may be given here or with ``--data-root``.
        optim: optimizer settings.
        train: loop settings.
        selection: checkpoint selection without target labels.
        name: run name (default: ``<method>-<data>-s<seed>``).
        out_dir: where run directories are made.
    """

    method: dict = field(default_factory=lambda: dict(_COMPONENT_DEFAULTS["method"]))
    model: dict = field(default_factory=lambda: dict(_COMPONENT_DEFAULTS["model"]))
    data: dict = field(default_factory=lambda: dict(_COMPONENT_DEFAULTS["data"]))
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    name: str | None = None
    out_dir: str = "runs"

    @property
    def run_name(self) -> str:
        return self.name or f"{self.method['name']}-{self.data['name']}-s{self.train.seed}"

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


_COMPONENT_DEFAULTS = {"method": {"name": "dann"}, "model": {"name": "mlp"}, "data": {"name": "moons"}}


def resolve_config(raw: Mapping[str, Any] | None, overrides: Iterable[str] = ()) -> RunConfig:
    """Validate a raw config dict (plus ``key=value`` overrides) into a full :class:`RunConfig`.

    Every section is checked; components are filled with their defaults, nested ``{name: ...}``
    specs (schedules, auxiliary models) too, through the registries' one validation path
    (:meth:`gradversary.registry.Registry.resolve`), so the result is the complete, resolved
    configuration that is saved with the run.
    """
    data = dict(raw or {})
    for section, default in _COMPONENT_DEFAULTS.items():  # so `data.seed=1` works with no data:
        data.setdefault(section, dict(default))
    data = apply_overrides(data, overrides)
    cfg = from_dict(RunConfig, data)
    cfg.method = METHODS.resolve(cfg.method, "method")
    cfg.model = MODELS.resolve(cfg.model, "model")
    root = {"root": cfg.data.pop("root")} if isinstance(cfg.data, Mapping) and "root" in cfg.data else {}
    cfg.data = {**DATASETS.resolve(cfg.data, "data"), **root}
    valid = {f for f in OptimConfig.__dataclass_fields__ if f != "groups"}
    for gname, over in cfg.optim.groups.items():
        if not isinstance(over, Mapping):
            raise ConfigError(f"optim.groups.{gname}: expected a mapping")
        try:
            typed = from_dict(OptimConfig, {**to_dict(cfg.optim), "groups": {}, **over},
                              path=f"optim.groups.{gname}")
        except ConfigError as e:
            raise ConfigError(f"optim.groups.{gname}: {e}") from None
        bad = set(over) - valid
        if bad:
            raise ConfigError(f"optim.groups.{gname}: cannot override {sorted(bad)}")
        cfg.optim.groups[gname] = {k: to_dict(getattr(typed, k)) for k in over}
    frozen = [f"optim.groups.{g}.lr" for g, over in cfg.optim.groups.items() if over.get("lr") == 0]
    if cfg.optim.lr == 0:
        frozen.insert(0, "optim.lr")
    if frozen:
        warnings.warn(f"{' and '.join(frozen)} is 0: those weights will not change",
                      UserWarning, stacklevel=2)
    return cfg


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a YAML config file (with its ``base`` files, :mod:`gradversary.config_files`) and
    resolve it."""
    return resolve_config(read_config_file(path), overrides)
