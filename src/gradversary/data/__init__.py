"""Datasets as domain adaptation tasks, data-root resolution and file checks."""

from . import (  # noqa: F401  (registers)
    amazon,
    arrays,
    cifar10_jpeg,
    cifar_mtl,
    digits,
    moons,
    office_caltech,
    office_caltech_surf,
)
from .registry import DATASETS, create_task
from .root import ENV_VAR, require_file, resolve_data_root
from .sampler import DomainSampler
from .task import DATask, DomainData

__all__ = [
    "DATASETS", "create_task", "DATask", "DomainData", "DomainSampler",
    "ENV_VAR", "require_file", "resolve_data_root",
]
