"""Optimizers from a method's declared parameter groups: one per declared name, each with its
learning-rate schedule and gradient clipping (``optim`` settings, overridden per name by
``optim.groups``)."""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..methods.base import Method
from ..schedules import Schedule, create_schedule
from .config import OptimConfig

__all__ = ["Optimizers", "make_optimizer"]


def make_optimizer(groups: list[dict], o: OptimConfig) -> torch.optim.Optimizer:
    """The torch optimizer ``o.name`` over param ``groups`` with ``o``'s settings."""
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                               nesterov=o.nesterov)
    cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    return cls(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


class Optimizers:
    """The optimizers a method declares (:meth:`Method.param_groups`), by name.

    Args:
        method: the method whose declared groups are optimised.
        optim: the run's ``optim`` section; ``optim.groups`` overrides it per declared name.
        label: the method's registered name, for error messages.

    Raises:
        ConfigError: ``optim.groups`` names an optimizer the method does not declare.
    """

    def __init__(self, method: Method, optim: OptimConfig, label: str = ""):
        declared = method.param_groups()
        unknown = set(optim.groups) - set(declared)
        if unknown:
            raise ConfigError(f"optim.groups names {sorted(unknown)}, but method "
                              f"{label or type(method).__name__!r} declares the optimizers "
                              f"{sorted(declared)}")
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.lr_schedules: dict[str, Schedule] = {}
        self.clip: dict[str, float | None] = {}
        self._norms: dict[str, torch.Tensor] = {}  # grad_norm's per-optimizer norms, for step
        for name, groups in declared.items():
            o = OptimConfig(**{**vars(optim), **optim.groups.get(name, {})})
            opt = make_optimizer(groups, o)
            for g in opt.param_groups:
                g["base_lr"] = g["lr"]
            self.optimizers[name] = opt
            self.lr_schedules[name] = create_schedule(o.lr_schedule)
            self.clip[name] = o.grad_clip

    def apply_lr(self) -> None:
        """Set every group's learning rate to its base rate times its schedule's value."""
        for name, opt in self.optimizers.items():
            factor = self.lr_schedules[name].value
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * factor

    @property
    def params(self) -> list[torch.Tensor]:
        """Every parameter of every optimizer, in order."""
        return [p for o in self.optimizers.values() for g in o.param_groups for p in g["params"]]

    def zero_grad(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def grad_norm(self) -> torch.Tensor | None:
        """The global norm of every parameter gradient (before clipping), or ``None``.

        Each optimizer's own norm is kept for the :meth:`step` that follows, so clipping does
        not compute it a second time.
        """
        norms = {}
        for name, opt in self.optimizers.items():
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            if grads:
                norms[name] = torch.nn.utils.get_total_norm(grads)
        self._norms = norms
        return torch.linalg.vector_norm(torch.stack(list(norms.values()))) if norms else None

    def step(self) -> None:
        """Clip (where set) and step every optimizer."""
        norms, self._norms = self._norms, {}
        for name, opt in self.optimizers.items():
            if self.clip[name]:
                params = [p for g in opt.param_groups for p in g["params"]]
                if name in norms:  # measured by grad_norm on these same gradients
                    torch.nn.utils.clip_grads_with_norm_(params, self.clip[name], norms[name])
                else:
                    torch.nn.utils.clip_grad_norm_(params, self.clip[name])
            opt.step()

    def lrs(self) -> dict[str, float]:
        """The first group's current learning rate of each optimizer (for the log)."""
        return {k: o.param_groups[0]["lr"] for k, o in self.optimizers.items()}

    def state_dict(self) -> dict[str, dict]:
        return {k: o.state_dict() for k, o in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        for k, o in self.optimizers.items():
            o.load_state_dict(state[k])
