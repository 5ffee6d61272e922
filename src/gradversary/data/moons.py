"""The DANN paper's two-moons toy (Ganin et al., JMLR 2016, section 5.1.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .registry import DATASETS
from .task import DATask, DomainData

__all__ = ["MoonsConfig", "make_moons", "rotate", "moons"]


def make_moons(n_per_moon: int, noise: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two interleaving half circles with Gaussian noise.

    Label 0 is the upper moon (cos t, sin t), label 1 the lower (1 - cos t, 0.5 - sin t), for
    t uniform in [0, pi].

    Shape:
        returns x: (2 n, 2) float32 and y: (2 n,) int64.
    """
    t = torch.rand(2, n_per_moon, generator=generator) * math.pi
    upper = torch.stack([torch.cos(t[0]), torch.sin(t[0])], dim=1)
    lower = torch.stack([1 - torch.cos(t[1]), 0.5 - torch.sin(t[1])], dim=1)
    x = torch.cat([upper, lower]) + noise * torch.randn(2 * n_per_moon, 2, generator=generator)
    y = torch.cat([torch.zeros(n_per_moon), torch.ones(n_per_moon)]).long()
    return x.float(), y


def rotate(x: Tensor, degrees: float, center: tuple[float, float] = (0.5, 0.25)) -> Tensor:
    """Rotate points counter-clockwise by ``degrees`` about ``center`` (the moons' centre).

    Shape:
        x: (N, 2) -> (N, 2).
    """
    a = math.radians(degrees)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=x.dtype)
    c = torch.tensor(center, dtype=x.dtype)
    return (x - c) @ rot.T + c


@dataclass
class MoonsConfig:
    """Options of the moons task. Defaults follow the paper: 150 source points a moon, a
    target rotated by 35 degrees with 300 unlabelled points."""

    n_source_per_moon: int = 150
    n_target: int = 300
    n_test_per_moon: int = 500
    angle: float = 35.0
    noise: float = 0.1
    seed: int = 0


@DATASETS.register("moons", MoonsConfig)
def moons(root=None, n_source_per_moon: int = 150, n_target: int = 300, n_test_per_moon: int = 500,
          angle: float = 35.0, noise: float = 0.1, seed: int = 0) -> DATask:
    """Two moons; the target domain is the source rotated by ``angle`` degrees (embedded, no files)."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = make_moons(n_source_per_moon, noise, g)
    xt, _ = make_moons((n_target + 1) // 2, noise, g)
    xt = rotate(xt[:n_target], angle)
    xs_test, ys_test = make_moons(n_test_per_moon, noise, g)
    xt_test, yt_test = make_moons(n_test_per_moon, noise, g)
    return DATask(
        source=DomainData(xs, ys, "source"),
        target=DomainData(xt, None, "target"),
        num_classes=2,
        eval={
            "source_test": DomainData(xs_test, ys_test, "source_test"),
            "target_test": DomainData(rotate(xt_test, angle), yt_test, "target_test"),
        },
        name=f"moons-{angle:g}deg",
        meta={"angle": angle},
    )
