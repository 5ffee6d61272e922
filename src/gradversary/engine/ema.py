"""Exponential moving average of a module's weights (Polyak-Ruppert style averaging).

Averaging the iterates damps the oscillation of adversarial (min-max) training such as DANN's:
see Yazici et al., "The Unusual Effectiveness of Averaging in GAN Training", ICLR 2019. After
each optimisation step:

    theta_ema <- d theta_ema + (1 - d) theta

Buffers (BatchNorm statistics, the GRL coefficient) are copied, not averaged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    """Shadow copies of ``module``'s floating-point parameters, updated by :meth:`update`.

    Args:
        module: the module whose parameters are averaged.
        decay: d in [0, 1); 0.999 averages over roughly the last 1,000 steps.
    """

    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.shadow: dict[str, Tensor] = {
            k: p.detach().clone() for k, p in module.named_parameters() if p.is_floating_point()
        }

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for k, p in module.named_parameters():
            if k in self.shadow:
                self.shadow[k].lerp_(p.detach(), 1.0 - self.decay)

    @contextmanager
    def swapped(self, module: nn.Module) -> Iterator[nn.Module]:
        """Within the block, ``module`` holds the averaged weights; restored afterwards."""
        params = dict(module.named_parameters())
        saved = {k: params[k].detach().clone() for k in self.shadow}
        with torch.no_grad():
            for k, v in self.shadow.items():
                params[k].copy_(v)
        try:
            yield module
        finally:
            with torch.no_grad():
                for k, v in saved.items():
                    params[k].copy_(v)

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}")
        for k in self.shadow:
            self.shadow[k].copy_(state[k])
