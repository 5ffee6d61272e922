"""Batch augmentation on image tensors: random crop (after padding, or from a larger image) and
horizontal flip, seeded by position so that it resumes and shards exactly.

The random numbers of a batch come from a generator keyed on ``(seed, stream, step)`` (a
counter-based scheme: no state besides the key). It draws one row per example of the *global*
batch, and each DDP rank keeps the rows of its own shard, so N ranks augment their shards
exactly as one process augments the whole batch. The training step and the seed are in every
checkpoint, so a resumed run draws the same crops as an uninterrupted one; the generator is
private, so turning augmentation on changes no other random number of a run (initial weights,
sampling, dropout).

Config spelling (``train.augment``)::

    train:
      augment: {crop: 28, pad: 2, flip: false}   # pad 2, then a random 28x28 crop

``crop: null`` keeps the image size (``pad: 4`` is then the CIFAR recipe: pad 4, crop back to
32); a ``crop`` smaller than the image (with ``pad: 0``) takes random crops of a larger image,
and the network is then built for ``crop`` x ``crop`` inputs and centre-crops larger ones
(evaluation, attacks) itself (:class:`CenterCrop`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["AugmentConfig", "augment_batch", "augment_draws", "crop_and_flip", "augmented_shape",
           "CenterCrop", "center_crop", "STREAMS"]

#: stream ids of the batches the trainer augments (each gets its own random numbers)
STREAMS = {"source": 0, "target": 1}


@dataclass
class AugmentConfig:
    """Options of ``train.augment`` (training batches only; evaluation is never augmented).

    Args:
        crop: side of the square random crop; null keeps the image's size.
        pad: pixels added on every side before cropping.
        pad_mode: ``constant`` (``pad_value``), ``reflect`` or ``replicate``.
        pad_value: the fill of ``constant`` padding (inputs are in [0, 1]: 0 is black).
        flip: flip each image left-right with probability 1/2.
        target: augment the target domain's images too (with their own random numbers), so
            that the augmentation is no cue to the domain classifier.
    """

    crop: int | None = None
    pad: int = 0
    pad_mode: Literal["constant", "reflect", "replicate"] = "constant"
    pad_value: float = 0.0
    flip: bool = False
    target: bool = True

    def __post_init__(self) -> None:
        if self.crop is not None and self.crop <= 0:
            raise ConfigError(f"train.augment.crop must be positive, got {self.crop}")
        if self.pad < 0:
            raise ConfigError(f"train.augment.pad must be >= 0, got {self.pad}")
        if self.crop is None and self.pad == 0 and not self.flip:
            raise ConfigError("train.augment does nothing: give crop, pad or flip: true "
                              "(or train.augment: null)")


def augmented_shape(in_shape: tuple[int, ...], cfg: AugmentConfig | None) -> tuple[int, ...]:
    """The shape of an augmented example (what the network must accept).

    Raises:
        ConfigError: for inputs that are not images (C, H, W), or a crop larger than the padded
            image.
    """
    if cfg is None:
        return tuple(in_shape)
    if len(in_shape) != 3:
        raise ConfigError(f"train.augment needs image inputs (C, H, W); this task's inputs have "
                          f"shape {tuple(in_shape)}")
    c, h, w = in_shape
    if cfg.crop is None:
        return (c, h, w)
    if cfg.crop > min(h, w) + 2 * cfg.pad:
        raise ConfigError(f"train.augment.crop {cfg.crop} is larger than the padded image "
                          f"({h + 2 * cfg.pad} x {w + 2 * cfg.pad})")
    return (c, cfg.crop, cfg.crop)


def _key(seed: int, stream: int, step: int) -> int:
    """A 63-bit generator seed for (seed, stream, step), decorrelated by a hash."""
    digest = hashlib.blake2b(f"{seed}/{stream}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def augment_draws(n_global: int, max_dy: int, max_dx: int, seed: int, stream: int,
                  step: int) -> Tensor:
    """The random numbers of one global batch: per example a crop offset and a flip bit.

    Shape:
        -> (n_global, 3) int64: dy in [0, max_dy], dx in [0, max_dx], flip in {0, 1}.
    """
    g = torch.Generator().manual_seed(_key(seed, stream, step))
    u = torch.rand(n_global, 3, generator=g, dtype=torch.float64)
    high = torch.tensor([max_dy + 1, max_dx + 1, 2], dtype=torch.float64)
    return (u * high).floor().long().clamp_max_(high.long() - 1)


def crop_and_flip(x: Tensor, dy: Tensor, dx: Tensor, flip: Tensor, side_h: int, side_w: int) -> Tensor:
    """Crop each image at its own offset, flipping the chosen ones left-right, in one gather
    (no per-example loop).

    Args:
        x: the (already padded) images.
        dy, dx: top-left corner of each crop.
        flip: 1 where the crop is mirrored left-right.
        side_h, side_w: crop size.

    Shape:
        x: (N, C, H, W); dy, dx, flip: (N,) -> (N, C, side_h, side_w).
    """
    n, c, h, w = x.shape
    dev = x.device
    ar_h, ar_w = torch.arange(side_h, device=dev), torch.arange(side_w, device=dev)
    cols = dx.to(dev)[:, None] + torch.where(flip.to(dev)[:, None].bool(), side_w - 1 - ar_w, ar_w)
    flat = (dy.to(dev)[:, None] + ar_h)[:, :, None] * w + cols[:, None, :]  # (N, h', w') into H*W
    idx = flat.reshape(n, 1, side_h * side_w).expand(n, c, side_h * side_w)
    return x.reshape(n, c, h * w).gather(2, idx).view(n, c, side_h, side_w)


def augment_batch(x: Tensor, cfg: AugmentConfig, seed: int, step: int, stream: int = 0,
                  rank: int = 0, world_size: int = 1) -> Tensor:
    """Augment this rank's shard of a global batch as one process would augment those rows.

    Args:
        x: this rank's images, rows ``rank * N .. (rank + 1) * N - 1`` of the global batch.
        cfg: what to do.
        seed, step, stream: the key of the batch's random numbers (:func:`augment_draws`).
        rank, world_size: this process's shard.

    Shape:
        x: (N, C, H, W) -> (N, *augmented_shape((C, H, W), cfg)).
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch needs images (N, C, H, W), got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    p = cfg.pad
    if p:
        if cfg.pad_mode == "constant":
            x = F.pad(x, (p, p, p, p), value=cfg.pad_value)
        else:
            x = F.pad(x, (p, p, p, p), mode=cfg.pad_mode)
    side_h = side_w = cfg.crop
    if side_h is None:
        side_h, side_w = h, w
    max_dy, max_dx = x.shape[2] - side_h, x.shape[3] - side_w
    if max_dy < 0 or max_dx < 0:
        raise ValueError(f"crop {side_h} x {side_w} is larger than the padded image "
                         f"{tuple(x.shape[2:])}")
    r = augment_draws(n * world_size, max_dy, max_dx, seed, stream, step)[rank * n:(rank + 1) * n]
    flip = r[:, 2] if cfg.flip else torch.zeros(n, dtype=torch.long)
    return crop_and_flip(x, r[:, 0], r[:, 1], flip, side_h, side_w)


def center_crop(x: Tensor, side: int) -> Tensor:
    """The central ``side`` x ``side`` window (offset floor((H - side) / 2)); inputs no larger
    pass unchanged.

    Shape:
        x: (N, C, H, W) -> (N, C, min(H, side), min(W, side)).
    """
    h, w = x.shape[-2:]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return x[..., top:top + min(h, side), left:left + min(w, side)]


class CenterCrop(nn.Module):
    """Centre-crops inputs larger than ``side`` (a network trained on random crops of a larger
    image sees the central crop at evaluation). Shape: (N, C, H, W) -> (N, C, side, side)."""

    def __init__(self, side: int):
        super().__init__()
        self.side = int(side)

    def forward(self, x: Tensor) -> Tensor:
        return center_crop(x, self.side)

    def extra_repr(self) -> str:
        return f"side={self.side}"
