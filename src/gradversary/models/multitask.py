"""A shared ResNet encoder with task decoders, for multi-task learning (GREAT's CIFAR-10 set).

Sinha et al., "Gradient Adversarial Training of Neural Networks", arXiv:1806.08028, section 3.3
and supplement: the shared encoder is a ResNet-18 without its pooling and linear layers; the
classification decoder is that pooling and linear layer; each dense decoder (colourisation,
edges, denoised reconstruction) has 3 upsampling layers of scale 2 and 3 residual blocks. Here
the encoder is a narrower member of the same family (BasicBlocks, 3x3 stem, no max-pool) so
that it trains on two CPU cores; its last stage leaves 1/8 of the resolution, so 3 upsamplings
restore it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .base import MODELS, FeatureClassifier
from .resnet import BasicBlock, Norm, activation_layer, norm_layer

__all__ = ["MultiTaskResNet", "MultiTaskResNetConfig", "mtl_resnet", "dense_decoder"]

CIFAR_MTL_TASKS = {"colour": 3, "edge": 1, "autoencoder": 1}


def dense_decoder(c_in: int, c_out: int, widths: Sequence[int], norm: str = "batch",
                  groups: int = 8) -> nn.Sequential:
    """Per stage: nearest upsampling x2, then a BasicBlock to ``widths[i]``; a 3x3 conv to
    ``c_out`` channels (linear output: the targets' MSE is taken on it directly).

    Shape:
        input: (N, c_in, h, w) -> (N, c_out, h * 2^len(widths), w * 2^len(widths)).
    """
    layers: list[nn.Module] = []
    c = c_in
    for w in widths:
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), BasicBlock(c, w, 1, norm, "relu", groups)]
        c = w
    layers.append(nn.Conv2d(c, c_out, 3, 1, 1))
    return nn.Sequential(*layers)


class MultiTaskResNet(FeatureClassifier):
    """A :class:`FeatureClassifier` (class logits from ``forward``) with dense task decoders.

    ``features`` is the encoder followed by global average pooling, ``head`` the linear layer,
    so every single-task method and attack works on the classification task. Multi-task methods
    use :meth:`encode` (the last shared feature tensor) and :meth:`decode` (one task's output).

    Args:
        encoder: inputs (N, C, H, W) -> shared feature (N, F, h, w).
        head: linear layer F -> K.
        decoders: dense task name -> module (N, F, h, w) -> (N, C_k, H, W).
        in_shape: (C, H, W), to measure the shared feature's shape.

    Attributes:
        tasks: ``("class", *decoders)``, the order of every per-task output.
        feature_shape: (F, h, w).
    """

    def __init__(self, encoder: nn.Module, head: nn.Linear, decoders: Mapping[str, nn.Module],
                 in_shape: Sequence[int]):
        if "class" in decoders:
            raise ValueError("'class' is the classification task; name the dense tasks otherwise")
        features = nn.Sequential(encoder, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        super().__init__(features, head, head.in_features, head.out_features)
        self.decoders = nn.ModuleDict(dict(decoders))
        self.tasks: tuple[str, ...] = ("class", *self.decoders)
        was = encoder.training
        with torch.no_grad():
            self.feature_shape = tuple(encoder.eval()(torch.zeros(1, *in_shape)).shape[1:])
        encoder.train(was)

    @property
    def encoder(self) -> nn.Module:
        return self.features[0]

    def encode(self, x: Tensor) -> Tensor:
        """The last shared feature tensor. Shape: (N, C, H, W) -> (N, F, h, w)."""
        return self.encoder(x)

    def last_shared_layer(self) -> nn.Module:
        """GradNorm's W: the last shared layer with weights, the second convolution of the
        encoder's last block (its main path; a shortcut 1x1 convolution runs beside it)."""
        blocks = [m for m in self.encoder.modules() if isinstance(m, BasicBlock)]
        if blocks:
            return blocks[-1].conv2
        return [m for m in self.encoder.modules() if isinstance(m, nn.Conv2d)][-1]

    def decode(self, task: str, z: Tensor) -> Tensor:
        """Task ``task``'s output from a shared feature: logits (N, K) for ``class``, else the
        dense prediction (N, C_k, H, W)."""
        if task == "class":
            return self.head(self.features[2](self.features[1](z)))
        return self.decoders[task](z)


@dataclass
class MultiTaskResNetConfig:
    """Options of ``mtl_resnet``.

    Args:
        widths: encoder channels per stage (the first keeps the resolution, the others halve it).
        blocks: BasicBlocks per encoder stage.
        decoder_widths: channels of each dense decoder's upsampling stages.
        tasks: dense task name -> output channels (default: GREAT's CIFAR-10 tasks).
        norm: ``batch``, ``group`` or ``none``.
        norm_groups: GroupNorm groups.
    """

    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    decoder_widths: list[int] = field(default_factory=lambda: [32, 16, 8])
    tasks: dict[str, int] = field(default_factory=lambda: dict(CIFAR_MTL_TASKS))
    norm: Norm = "batch"
    norm_groups: int = 8


@MODELS.register("mtl_resnet", MultiTaskResNetConfig)
def mtl_resnet(in_shape: Sequence[int], num_classes: int, widths: Sequence[int] = (16, 32, 64, 128),
               blocks: Sequence[int] = (1, 1, 1, 1), decoder_widths: Sequence[int] = (32, 16, 8),
               tasks: Mapping[str, int] | None = None, norm: str = "batch",
               norm_groups: int = 8) -> MultiTaskResNet:
    """A shared ResNet encoder, a pooled linear classifier and dense decoders (multi-task).

    GREAT's CIFAR-10 multi-task network (arXiv:1806.08028, supplement), narrowed for CPUs:
    encoder 16-32-64-128 (one BasicBlock per stage, 32x32 -> 4x4), decoders 32-16-8.

    Shape:
        input: (N, C, H, W) with H, W divisible by 2^(len(widths) - 1); output: (N, K) logits;
        shared feature (N, widths[-1], H / 2^(len(widths)-1), W / 2^(len(widths)-1)).
    """
    if len(in_shape) != 3 or not widths or len(widths) != len(blocks) or min(blocks) < 1:
        raise ValueError(f"mtl_resnet needs (C, H, W) inputs and one block count per stage, got "
                         f"in_shape={tuple(in_shape)}, widths={list(widths)}, blocks={list(blocks)}")
    layers: list[nn.Module] = [nn.Conv2d(in_shape[0], widths[0], 3, 1, 1, bias=norm == "none"),
                               norm_layer(norm, widths[0], norm_groups), activation_layer("relu")]
    c = widths[0]
    for i, (w, n) in enumerate(zip(widths, blocks)):
        for j in range(n):
            layers.append(BasicBlock(c, w, 2 if (i > 0 and j == 0) else 1, norm, "relu", norm_groups))
            c = w
    tasks = dict(CIFAR_MTL_TASKS if tasks is None else tasks)
    decoders = {k: dense_decoder(c, int(ch), decoder_widths, norm, norm_groups) for k, ch in tasks.items()}
    return MultiTaskResNet(nn.Sequential(*layers), nn.Linear(c, num_classes), decoders, in_shape)


mtl_resnet.example_in_shape = (1, 32, 32)  # used by the registry smoke test
mtl_resnet.multi_task = True  # paired with the multi-task methods only
