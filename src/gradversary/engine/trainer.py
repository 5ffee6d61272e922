"""The one training loop, used by every method.

A run directory holds:

- ``config.yaml``: the resolved configuration (every default filled in, nested specs too);
- ``metrics.jsonl``: training records every ``log_every`` steps and evaluation records;
- ``checkpoints/last.pt``: model, optimizers, schedules, samplers, RNG state, step, the
  checkpoint selector's pick and the divergence and collapse watches;
- ``checkpoints/best.pt``: the selected checkpoint, with a selection criterion;
- ``summary.json`` and ``report.md``: final figures, written when the run ends.

The trainer wires pieces that each own their state: :class:`~.batches.BatchComposer` (samplers,
augmentation), :class:`~.optim.Optimizers` (the method's declared optimizers, their learning
rate schedules and clipping), :class:`~gradversary.selection.selector.CheckpointSelector`
(selection figures and the pick), :class:`~.divergence.DivergenceWatch` and
:class:`~.collapse.CollapseWatch`.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from ..config import read_yaml
from ..data.augment import CenterCrop, augmented_shape
from ..data.registry import create_task
from ..data.root import LazyRoot
from ..data.task import DATask
from ..errors import (
    CheckpointError,
    ConfigError,
    DivergenceError,
    RunExistsError,
    TeacherChangedError,
)
from ..io import atomic_write_text, read_metrics
from ..methods.base import Batch, Method, create_method
from ..models.base import create_model
from ..nn.batchnorm import batchnorm_statistics_of
from ..schedules import Schedule
from ..selection.selector import CheckpointSelector
from .batches import BatchComposer
from .checkpoint import load_checkpoint, remove_stale_temporaries, save_checkpoint
from .collapse import CollapseWatch
from .config import RunConfig, TrainConfig, resolve_config
from .distributed import DistInfo, init_distributed, mean_over_ranks, wrap_ddp
from .divergence import DivergenceWatch
from .ema import EMA
from .logger import MetricsLog
from .optim import Optimizers
from .resume import check_resume_changes, config_changes, schedules_extendable
from .seed import rng_state, seed_everything, set_rng_state
from .teacher import load_teacher, teacher_fingerprint
from .threads import apply_threads

__all__ = ["Trainer", "StepInfo", "build_task", "build_method"]

log = logging.getLogger(__name__)


@dataclass
class StepInfo:
    """What callbacks see after each optimisation step (1-based ``step`` of ``total``)."""

    step: int
    total: int
    trainer: Trainer
    eval_metrics: dict[str, float] | None = None


@dataclass
class _Window:
    """Detached per-step losses and metrics since the last log point (no host sync per step)."""

    losses: list[Tensor] = field(default_factory=list)
    sums: dict[str, Tensor] = field(default_factory=dict)
    steps: int = 0

    def add(self, loss: Tensor, values: dict[str, Tensor]) -> None:
        self.losses.append(loss.detach())
        for k, v in values.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.steps += 1


def shard_batchnorm_note(module: torch.nn.Module, world_size: int, batch_size: int) -> str | None:
    """What DDP changes for a network with BatchNorm (``None`` without either): each rank
    normalises its own shard, and PyTorch's SyncBatchNorm, which would normalise the global
    batch, runs on GPUs only."""
    if world_size < 2 or not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        return None
    return (f"BatchNorm normalises each rank's {batch_size // world_size} examples, not the global batch of "
            f"{batch_size} (no SyncBatchNorm on CPU): the run differs from one process's")


def build_task(cfg: RunConfig, data_root: str | None = None) -> DATask:
    """The task named by ``cfg.data``; the data root comes from ``data_root``, ``data.root``,
    the environment or the default, and is resolved only when the dataset needs files."""
    params = dict(cfg.data)
    name = params.pop("name")
    root_opt = params.pop("root", None) or data_root
    root = LazyRoot(root_opt)
    return create_task(name, root=root, **params)


def build_method(cfg: RunConfig, task: DATask) -> Method:
    """Model and method for ``task`` as ``cfg`` describes (seed the RNG first for a fixed init)."""
    mparams = dict(cfg.model)
    in_shape = augmented_shape(task.in_shape, cfg.train.augment)
    model = create_model(mparams.pop("name"), in_shape, task.num_classes, **mparams)
    if in_shape != tuple(task.in_shape):  # trained on random crops: evaluate on the centre crop
        model.features = torch.nn.Sequential(CenterCrop(in_shape[-1]), model.features)
    params = dict(cfg.method)
    return create_method(params.pop("name"), model, **params)


def _hold_out_source(task: DATask, holdout: float, seed: int) -> DATask:
    """Move a random ``holdout`` share of the labelled source into ``eval["source_val"]``."""
    if holdout <= 0:
        return task
    g = torch.Generator().manual_seed(seed + 15485863)
    idx = torch.randperm(len(task.source), generator=g)
    k = max(1, round(holdout * len(idx)))
    val, keep = idx[:k], idx[k:]
    s = task.source
    return DATask(s.take(keep), task.target, task.num_classes,
                  eval={"source_val": s.take(val, "source_val"), **task.eval},
                  name=task.name, meta=task.meta)


def _attach_teacher(method: Method, task: DATask, device: torch.device) -> dict[str, str] | None:
    """Give a distillation method (``needs_teacher``) its frozen, unsaved teacher; returns
    the teacher's run directory and checkpoint fingerprint (``None`` without a teacher)."""
    if not method.needs_teacher:
        return None
    method.set_teacher(load_teacher(method.teacher_run, task.in_shape, task.num_classes, device))
    return {"run": str(method.teacher_run), "fingerprint": teacher_fingerprint(method.teacher_run)}


def _total_steps(t: TrainConfig, n_source: int, n_s: int) -> int:
    """``train.steps``, or ``train.epochs`` passes of ``n_s`` source examples a step."""
    return int(t.steps) if t.steps else max(1, round(t.epochs * math.ceil(n_source / n_s)))


def _bind(schedules: dict[str, Schedule], total_steps: int) -> dict[str, Schedule]:
    """``schedules``, told the run's length (schedules written by step count need it)."""
    for s in schedules.values():
        s.bind_total_steps(total_steps)
    return schedules


#: per-evaluation figures kept in the summary's ``history``
_HISTORY_KEYS = ("step", "source_val_acc", "source_test_acc", "target_test_acc", "select_risk", "select_se", "select_ess")
#: ... and the label-free validators' scores (``score_<name>``)
_HISTORY_PREFIXES = ("score_",)


class Trainer:
    """Trains a method on a task as a :class:`RunConfig` describes.

    Args:
        cfg: the resolved run configuration.
        run_dir: the run directory (default ``<out_dir>/<run name>``).
        task: a prebuilt task (default: built from ``cfg.data``).
        data_root: data root for datasets that read files.
        callbacks: called with a :class:`StepInfo` after every step.
        persist: write the run directory (config, metrics, checkpoints, summary, report);
            ``False`` trains in memory only (used by the scikit-learn estimator).

    Everything that can fail on bad input (data, model, method, optimizer) is built here,
    before the run directory is created, so bad input leaves no files behind.
    """

    def __init__(self, cfg: RunConfig, run_dir: str | Path | None = None, task: DATask | None = None,
                 data_root: str | None = None, callbacks: Sequence[Callable[[StepInfo], None]] = (),
                 persist: bool = True):
        self.cfg, t = cfg, cfg.train
        self.dist: DistInfo = init_distributed(t.device)
        seed_everything(t.seed, t.deterministic)
        task = task if task is not None else build_task(cfg, data_root)
        self.task = _hold_out_source(task, cfg.selection.holdout, t.seed)
        self.device = torch.device(t.device)
        self.method = build_method(cfg, self.task).to(self.device)
        self.threads = apply_threads(t.threads, self.method.model, self.task.in_shape, t.batch_size)
        self.teacher = _attach_teacher(self.method, self.task, self.device)
        self.callbacks = list(callbacks)
        self.run_dir = Path(run_dir) if run_dir else Path(cfg.out_dir) / cfg.run_name
        self.batches = BatchComposer(self.task, t.batch_size, self.method.uses_target, t.seed,
                                     self.dist.rank, self.dist.world_size, t.augment, self.device)
        self.total_steps = _total_steps(t, len(self.task.source), self.batches.n_s)
        self.optim = Optimizers(self.method, cfg.optim, cfg.method["name"])
        self.schedules = _bind({**{f"lr/{k}": v for k, v in self.optim.lr_schedules.items()},
                                **self.method.schedules()}, self.total_steps)
        self.net = wrap_ddp(self.method, t.device) if self.dist.enabled else self.method
        note = shard_batchnorm_note(self.method, self.dist.world_size, t.batch_size)
        if note and self.dist.rank == 0:
            log.warning("%s: %s", cfg.run_name, note)
        self.ema = EMA(self.method, t.ema_decay) if t.ema_decay is not None else None
        self.selector = CheckpointSelector.from_config(cfg.selection, t.seed, self.task.source.x,
                                                       self.task.target.x)
        self.watch, self.collapse = DivergenceWatch(t.divergence), CollapseWatch(self.task.num_classes)
        self.step, self.main, self.persist = 0, self.dist.rank == 0, persist
        self.writes = self.main and persist
        self.log = MetricsLog(self.run_dir / "metrics.jsonl", enabled=self.writes)
        self.ckpt_path = self.run_dir / "checkpoints" / "last.pt"
        self.best_path = self.run_dir / "checkpoints" / "best.pt"
        self.last_eval, self.costs, self.wall_time, self.warnings = {}, {}, 0.0, []

    # the pieces' state, under the names older callers and tests use
    optimizers = property(lambda self: self.optim.optimizers)
    lr_schedules = property(lambda self: self.optim.lr_schedules)
    best = property(lambda self: self.selector.best,
                    lambda self, v: setattr(self.selector, "best", v))

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, data_root: str | None = None,
                     checkpoint: str = "last") -> Trainer:
        """Rebuild a run from its ``config.yaml`` and load its last checkpoint (eval mode).

        ``checkpoint="selected"``: then the weights of the checkpoint its selection criterion
        picked (``best.pt``; ``step`` becomes that checkpoint's), for a run that has one; a
        run without a criterion keeps its last weights."""
        if checkpoint not in ("last", "selected"):
            raise ValueError(f"checkpoint must be 'last' or 'selected', got {checkpoint!r}")
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise CheckpointError(f"{str(run_dir)!r} is not a run directory (no config.yaml)")
        raw = read_yaml(run_dir / "config.yaml", "run config")
        if not isinstance(raw, dict):
            raise ConfigError(f"run config {str(run_dir / 'config.yaml')!r} is not a mapping")
        cfg = resolve_config(raw)
        cfg.train.progress = False
        trainer = cls(cfg, run_dir=run_dir, data_root=data_root)
        trainer.load_state_dict(load_checkpoint(trainer.ckpt_path, map_location=trainer.device))
        if checkpoint == "selected" and cfg.selection.criterion != "last":
            if not trainer.best_path.exists():
                raise CheckpointError(f"run {str(run_dir)!r} has a selection criterion but no "
                                      f"{trainer.best_path.name}")
            best = load_checkpoint(trainer.best_path, map_location=trainer.device)
            trainer.method.load_state_dict(best["method"])
            if trainer.ema is not None and "ema" in best:
                trainer.ema.load_state_dict(best["ema"])
            trainer.step = int(best["step"])
        trainer.method.eval()
        return trainer

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizers, schedules, samplers,
        RNG and step."""
        return {
            "step": self.step,
            "total_steps": self.total_steps,
            "method": self.method.state_dict(),
            "optimizers": self.optim.state_dict(),
            "schedules": {k: s.state_dict() for k, s in self.schedules.items()},
            "samplers": self.batches.state_dict(),
            "rng": rng_state(),
            **({"ema": self.ema.state_dict()} if self.ema else {}),
            "last_eval": dict(self.last_eval),
            "divergence": self.watch.state_dict(),
            **self.selector.state_dict(),
            "collapse": self.collapse.state_dict(),
            "warnings": json.dumps(self.warnings),
            "wall_time": self.wall_time,
            "costs": json.dumps(self.costs),
            "config": json.dumps(self.cfg.to_dict()),
            **({"teacher": json.dumps(self.teacher)} if self.teacher else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.method.load_state_dict(state["method"])
            self.optim.load_state_dict(state["optimizers"])
            for k, s in self.schedules.items():
                s.load_state_dict(state["schedules"][k])
            self.batches.load_state_dict(state["samplers"])
            set_rng_state(state["rng"])
            if self.ema:
                self.ema.load_state_dict(state["ema"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint does not match this run's configuration: {e}") from None
        self.step = int(state["step"])
        self.last_eval = dict(state.get("last_eval", {}))
        self.watch.load_state_dict(state.get("divergence", {}))
        self.selector.load_state_dict(state)
        self.warnings = json.loads(state.get("warnings", "[]"))
        # older checkpoints did not keep the collapse watch: it restarts from this point
        self.collapse.load_state_dict(state.get("collapse", {}))
        self.wall_time = float(state.get("wall_time", 0.0))
        self.costs = json.loads(state.get("costs", "{}"))

    def save(self) -> Path | None:
        """Write the checkpoint atomically (rank 0 only). Refuses non-finite weights."""
        if not self.writes:
            return None
        for name, p in self.method.state_dict().items():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                raise DivergenceError(self.step, {f"non-finite {name}": float("nan")},
                                      str(self.ckpt_path) if self.ckpt_path.exists() else None)
        return save_checkpoint(self.ckpt_path, self.state_dict())

    # ----------------------------------------------------------------- loop
    def _progress(self) -> float:
        return self.step / self.total_steps

    def _set_progress(self, p: float) -> None:
        for s in self.schedules.values():
            s.step(p)
        self.optim.apply_lr()

    def _next_batch(self) -> Batch:
        return self.batches.next(self.step)

    def train_step(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """One optimisation step; returns the detached loss and the step's parts and metrics."""
        self.net.train()
        out = self.net(batch)
        self.optim.zero_grad()
        # only the optimized parameters' gradients: when the loss also depends on an input
        # leaf that requires grad (GREAT's and GREACE's input gradient, an attack's delta), the
        # backward then skips that leaf's own gradient, which on a one-channel first
        # convolution costs about 10x that layer's forward
        torch.autograd.backward(out.loss, inputs=self.optim.params)
        values = {**out.parts, **out.metrics}
        if self.watch.watches_gradients:  # before clipping: the norm the loss produced
            norm = self.optim.grad_norm()
            if norm is not None:
                values["param_grad_norm"] = norm
        self.optim.step()
        if self.ema:
            self.ema.update(self.method)
        return out.loss.detach(), values

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Evaluate on the task's labelled splits (eval mode; no schedule moves), with the
        averaged weights when ``train.ema_decay`` is set."""
        was = self.method.training
        self.method.eval()
        try:
            t0 = time.perf_counter()  # with the BatchNorm re-estimation of bn_stats: target
            with self.deployed() as m:
                metrics = m.evaluate(self.task.eval, self.cfg.train.eval_batch_size)
                self._add_costs({"evaluation": time.perf_counter() - t0, "evaluations": 1})
                # label-free: the unlabelled target training inputs and the held-out source
                scores, seconds = self.selector.score(m.model.features, m.predict_logits,
                                                      self.task.eval.get("source_val"), self.device,
                                                      m.model)
                self._add_costs(seconds)
                return {**metrics, **scores}
        finally:
            self.method.train(was)

    def _add_costs(self, seconds: dict[str, float]) -> None:
        """Sum wall-clock seconds per evaluation part (out of the metrics, which stay
        reproducible); the summary reports their means per evaluation."""
        for k, v in seconds.items():
            self.costs[k] = self.costs.get(k, 0.0) + v

    def _update_best(self, metrics: dict[str, float]) -> None:
        """Let the selector judge this evaluation; save ``best.pt`` (rank 0) when it is the pick."""
        if self.selector.update(self.step, metrics) and self.writes:
            save_checkpoint(self.best_path, {"step": self.step, "method": self.method.state_dict(),
                                             **({"ema": self.ema.state_dict()} if self.ema else {}),
                                             "metrics": json.dumps(metrics)})

    @contextmanager
    def deployed(self, statistics: bool = True) -> Iterator[Method]:
        """The method with the weights to deploy: the EMA weights if enabled, else as trained;
        with ``train.bn_stats: target`` (and ``statistics``), BatchNorm statistics re-estimated
        on the unlabelled target training inputs. Everything is put back on exit."""
        with ExitStack() as stack:
            m = self.method if self.ema is None else stack.enter_context(self.ema.swapped(self.method))
            if statistics and self.cfg.train.bn_stats == "target":
                stack.enter_context(batchnorm_statistics_of(m.model, self.task.target.x,
                                                            self.cfg.train.eval_batch_size))
            yield m

    def _watch_collapse(self, record: dict[str, Any]) -> None:
        """Warn once when the task loss is back at chance level (see :class:`CollapseWatch`)."""
        msg = None if self.warnings else self.collapse.check(record.get("task_loss"), self.step)
        if msg is not None:
            self.warnings.append(msg)
            record["collapse_warning"] = True
            log.warning("%s: %s", self.cfg.run_name, msg)

    def _flush(self, window: _Window, bar) -> None:
        losses = torch.stack(window.losses)
        if self.dist.enabled:  # log and watch the global batch's figures, alike on every rank
            parts = [losses.float(), *window.sums.values()]
            flat = mean_over_ranks(torch.cat([t.reshape(-1) for t in parts]))
            means = [m.reshape(t.shape) for m, t in zip(flat.split([t.numel() for t in parts]), parts)]
            losses, window.sums = means[0], dict(zip(window.sums, means[1:]))
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad = self.step - window.steps + int((~finite).nonzero()[0, 0]) + 1
            parts = {k: float(v / window.steps) for k, v in window.sums.items() if k.endswith("loss")}
            kept = str(self.ckpt_path) if self.ckpt_path.exists() else None
            self.log.write({"kind": "diverged", "step": bad})
            raise DivergenceError(bad, parts, kept)
        record = {"kind": "train", "step": self.step, "p": round(self._progress(), 6),
                  "loss": float(losses.mean())}
        record.update({k: float(v / window.steps) for k, v in window.sums.items()})
        record.update({f"lr_{k}": v for k, v in self.optim.lrs().items()})
        self._watch_collapse(record)
        self.log.write(record)
        runaway = self.watch.update(self.step, record)
        if runaway is not None:
            kept = str(self.ckpt_path) if self.ckpt_path.exists() else None
            self.log.write({"kind": "diverged", "step": self.step, "reason": runaway})
            raise DivergenceError(self.step, {}, kept, reason=runaway)
        if bar is not None:
            post = {"loss": f"{record['loss']:.3f}"}
            for k in ("src_acc", "domain_acc"):
                if k in record:
                    post[k] = f"{record[k]:.3f}"
            if "target_test_acc" in self.last_eval:
                post["tgt_acc"] = f"{self.last_eval['target_test_acc']:.3f}"
            bar.set_postfix(post, refresh=False)

    def _resume_changes(self, state: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """The config changes since the checkpoint ``state`` was written; raises ConfigError
        for any that a resume may not make (see :mod:`gradversary.engine.resume`)."""
        if "config" not in state:  # a checkpoint from before configs were kept in it
            log.warning("%s: the checkpoint holds no config; cannot check it", self.ckpt_path)
            return {}
        old = json.loads(state["config"])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                old = resolve_config(old).to_dict()  # options added since compare as defaults
        except ConfigError:
            pass
        changes = config_changes(old, self.cfg.to_dict())
        check_resume_changes(changes, step=int(state["step"]),
                             old_total=int(state.get("total_steps", self.total_steps)),
                             new_total=self.total_steps,
                             constant_schedules=schedules_extendable(self.schedules.values()),
                             selects=self.cfg.selection.criterion != "last")
        return changes

    def _check_teacher(self, state: dict[str, Any]) -> None:
        """Refuse to resume a distillation run whose teacher checkpoint is not the one it
        started with (a checkpoint written before fingerprints were kept is not checked)."""
        saved = json.loads(state["teacher"]) if "teacher" in state else None
        if self.teacher and saved and saved.get("fingerprint") != self.teacher["fingerprint"]:
            raise TeacherChangedError(
                f"{str(self.run_dir)!r} started with the teacher in {saved['run']!r} at checkpoint "
                f"{saved.get('fingerprint')}, and that teacher is now {self.teacher['fingerprint']} "
                f"(trained again?): its {state.get('step', 0)} steps learnt from another teacher; "
                "start again (--force)")

    def _start(self, resume: bool, force: bool) -> None:
        """Load the checkpoint to resume (refusing config changes that would make it another
        run), or start afresh, refusing to overwrite a run already in the directory unless
        ``force``; clear temporaries left by a killed write; save the config."""
        if resume and force:
            raise ConfigError("resume continues the run in the directory and force overwrites "
                              "it: give one of them")
        if resume:
            if not self.ckpt_path.exists():
                raise CheckpointError(f"nothing to resume: {str(self.ckpt_path)!r} does not exist")
            state = load_checkpoint(self.ckpt_path, map_location=self.device)
            self._check_teacher(state)
            changes = self._resume_changes(state)
            self.load_state_dict(state)
            self.log.truncate_after(self.step)
            log.info("resumed %s at step %d", self.run_dir, self.step)
            if changes:
                log.warning("%s: resumed at step %d with %s", self.run_dir, self.step,
                            ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changes.items()))
                self.log.write({"kind": "resume", "step": self.step,
                                "changed": {k: list(v) for k, v in changes.items()}})
        elif self.writes:
            held = [n for n in ("summary.json", "checkpoints/last.pt", "checkpoints/best.pt",
                                "metrics.jsonl", "config.yaml") if (self.run_dir / n).exists()]
            if held and not force:
                what = "a finished run" if held[0] == "summary.json" else "an unfinished run"
                raise RunExistsError(
                    f"run directory {str(self.run_dir)!r} already holds {what} ({held[0]}); "
                    "resume it (--resume), overwrite it (--force), or choose another directory "
                    "(--run-dir)")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for stale in ("metrics.jsonl", "summary.json", "report.md"):
                (self.run_dir / stale).unlink(missing_ok=True)
            for stale in (self.ckpt_path, self.best_path):
                stale.unlink(missing_ok=True)
        if self.writes:
            for folder in (self.run_dir, self.ckpt_path.parent):
                for p in remove_stale_temporaries(folder):
                    log.info("removed %s, left by an interrupted write", p)
            atomic_write_text(self.run_dir / "config.yaml",
                              yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))

    def fit(self, resume: bool = False, force: bool = False) -> dict[str, Any]:
        """Train to ``total_steps`` (continuing from the last checkpoint when ``resume``).

        Args:
            resume: continue the run in ``run_dir`` from its last checkpoint. Its config must
                match the checkpoint's, except for the changes
                :mod:`gradversary.engine.resume` allows; those are recorded in
                ``metrics.jsonl`` and the summary.
            force: start afresh even if ``run_dir`` holds a run (deleting it).

        Returns the summary dict (also written to ``summary.json``).

        Raises:
            RunExistsError: ``run_dir`` holds a run, and neither ``resume`` nor ``force``.
            ConfigError: on resume, a change of config that makes it another run.
            DivergenceError: on a non-finite loss, or a loss or gradient norm running away
                (``train.divergence``), naming the step and the figure; the last checkpoint,
                written before, is kept.
        """
        t = self.cfg.train
        self._start(resume, force)

        bar = None
        if self.main and t.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc=self.cfg.run_name,
                       dynamic_ncols=True, mininterval=0.5, leave=False)
        ckpt_every = t.checkpoint_every or t.eval_every
        window = _Window()
        start = time.perf_counter()
        wall0 = self.wall_time
        try:
            while self.step < self.total_steps:
                self._set_progress(self._progress())
                loss, values = self.train_step(self._next_batch())
                self.step += 1
                window.add(loss, values)
                last = self.step == self.total_steps
                do_eval = last or (t.eval_every and self.step % t.eval_every == 0)
                do_ckpt = last or (ckpt_every and self.step % ckpt_every == 0)
                if last or do_eval or do_ckpt or self.step % t.log_every == 0:
                    self._flush(window, bar)
                    window = _Window()
                eval_metrics = None
                if do_eval and self.main:
                    eval_metrics = self.evaluate()
                    self.last_eval = eval_metrics
                    self.log.write({"kind": "eval", "step": self.step, **eval_metrics})
                    self._update_best(eval_metrics)
                self.wall_time = wall0 + time.perf_counter() - start
                if do_ckpt:
                    self.save()
                if bar is not None:
                    bar.update(1)
                for cb in self.callbacks:
                    cb(StepInfo(self.step, self.total_steps, self, eval_metrics))
        finally:
            if bar is not None:
                bar.close()
        summary = self.summary()
        if self.writes:
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
            from ..report.markdown import write_run_report

            with self.deployed() as m:
                write_run_report(self.run_dir, m, self.task)
        return summary

    def summary(self) -> dict[str, Any]:
        """Final metrics; with a selection criterion also the selected checkpoint's metrics;
        and, labelled ``oracle``, the evaluation with the best target accuracy (it uses target
        labels, so it is never the default figure)."""
        evals = read_metrics(self.run_dir / "metrics.jsonl", kind="eval") if self.writes else []
        resumes = read_metrics(self.run_dir / "metrics.jsonl", kind="resume") if self.writes else []
        oracle = max((r for r in evals if "target_test_acc" in r),
                     key=lambda r: r["target_test_acc"], default=None)
        return {
            "run": self.cfg.run_name,
            "method": self.cfg.method["name"],
            "data": self.cfg.data["name"],
            "seed": self.cfg.train.seed,
            "steps": self.step,
            "wall_time_s": round(self.wall_time, 3),
            "world_size": self.dist.world_size,
            "threads": self.threads,
            "num_classes": self.task.num_classes,
            **({"teacher": dict(self.teacher)} if self.teacher else {}),
            "warnings": list(self.warnings),
            # mean wall-clock seconds per evaluation: the evaluation itself and each validator
            "eval_cost_s": {k: v / self.costs["evaluations"] for k, v in self.costs.items()
                            if k != "evaluations"} if self.costs.get("evaluations") else {},
            "final": dict(self.last_eval),
            "selection": self.selector.summary(self.step, self.last_eval),
            **({"oracle": {"step": oracle["step"], "target_test_acc": oracle["target_test_acc"],
                           "note": "chosen on target labels: not an honest figure"}}
               if oracle else {}),
            # every evaluation's selection figures, so that another selection rule can be
            # scored from a finished run (or its record) without training it again
            "history": [{k: v for k, v in r.items()
                         if k in _HISTORY_KEYS or k.startswith(_HISTORY_PREFIXES)} for r in evals],
            **({"resumed_with_changes": resumes} if resumes else {}),
        }
