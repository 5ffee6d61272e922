"""The training engine: one loop, checkpoints, logging, distributed set-up."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import OptimConfig, RunConfig, TrainConfig, load_config, resolve_config
from .distributed import init_distributed, wrap_ddp
from .trainer import StepInfo, Trainer, build_method, build_task

__all__ = [
    "Trainer", "StepInfo", "RunConfig", "OptimConfig", "TrainConfig", "load_config",
    "resolve_config", "save_checkpoint", "load_checkpoint", "init_distributed", "wrap_ddp",
    "build_method", "build_task",
]
