"""The digit networks of the strongest public DANN/CDAN/MDD recipes: LeNet (28x28 grey) and DTN
(32x32 colour), each with an optional bottleneck and hidden head.

LeNet: LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998, in the form Transfer-Learning-Library trains from scratch
for MNIST <-> USPS (conv5x5-20, pool, ReLU, conv5x5-50, Dropout2d, pool, ReLU | FC500, ReLU,
Dropout). DTN: the digit network of Tzeng et al., "Adversarial Discriminative Domain
Adaptation", CVPR 2017 (arXiv:1702.05464), with BatchNorm and Dropout2d after each strided conv,
used for SVHN -> MNIST.

A bottleneck ``Linear(F, B) - BatchNorm1d - ReLU`` (Long et al.'s "bottleneck" of CDAN and the
library's ``ImageClassifier``) ends the feature extractor: the domain discriminator and the
label head both read its B-dimensional output. The DANN paper's networks
(:mod:`gradversary.models.digits`) stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from .base import MODELS, FeatureClassifier
from .digits import ChannelsLastSequential, input_normalization

__all__ = ["LeNetConfig", "DTNConfig", "lenet", "dtn", "bottleneck_layers", "classifier_head",
           "init_linears"]


def bottleneck_layers(in_features: int, dim: int | None, batch_norm: bool = True,
                      dropout: float = 0.0) -> tuple[list[nn.Module], int]:
    """``Linear(F, dim) [BatchNorm1d] ReLU [Dropout]`` and its output size; ``[]`` when ``dim``
    is None (the features pass through, size F).

    Shape:
        (N, F) -> (N, dim).
    """
    if dim is None:
        return [], in_features
    if dim < 1:
        raise ValueError(f"bottleneck must be >= 1 (or null for none), got {dim}")
    layers: list[nn.Module] = [nn.Linear(in_features, dim)]
    layers += [nn.BatchNorm1d(dim)] if batch_norm else []
    layers += [nn.ReLU()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
    return layers, dim


def init_linears(layers, std: float | None, bias: float = 0.0) -> None:
    """Draw every ``nn.Linear`` weight in ``layers`` from N(0, std^2) and fill its bias with
    ``bias`` (Transfer-Learning-Library's MDD: the bottleneck N(0, 0.005^2) with bias 0.1, the
    heads N(0, 0.01^2) with bias 0); ``std`` None keeps torch's default initialisation."""
    if std is None:
        return
    if std <= 0:
        raise ValueError(f"init std must be > 0 (or null for torch's default), got {std}")
    for m in layers:
        for lin in (x for x in m.modules() if isinstance(x, nn.Linear)):
            nn.init.normal_(lin.weight, 0.0, float(std))
            if lin.bias is not None:
                nn.init.constant_(lin.bias, float(bias))


def classifier_head(in_features: int, hidden: Sequence[int], num_classes: int,
                    dropout: float = 0.0) -> nn.Sequential:
    """``[Linear ReLU [Dropout]]* Linear(., K)``: MDD's heads (one hidden layer of 1024, dropout
    0.5) or, with ``hidden`` empty, the linear head of DANN/CDAN.

    Shape:
        (N, F) -> (N, K).
    """
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU(), *([nn.Dropout(dropout)] if dropout > 0 else [])]
        width = int(h)
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


@dataclass
class LeNetConfig:
    """Options of ``lenet`` (defaults: Transfer-Learning-Library's digits recipe).

    Args:
        mean, std: per-channel input normalisation inside the model (the recipe's
            Normalize(0.5, 0.5) on [0, 1] inputs); null mean: none.
        fc: width of the fully connected layer after the convolutions (500); null: none, the
            features are the 800 flattened conv outputs.
        dropout: Dropout2d after the second conv and Dropout after ``fc`` (0.5; 0: none).
        bottleneck: width B of the bottleneck ``Linear - BN - ReLU`` ending the features
            (256; null: none).
        bottleneck_bn: BatchNorm1d in the bottleneck.
        bottleneck_dropout: Dropout after the bottleneck (MDD's recipe: 0.5).
        head_hidden: hidden widths of the label head (MDD's recipe: [1024]; default: linear).
        head_dropout: Dropout after each hidden layer of the head.
        bottleneck_init: ``[std, bias]``: the bottleneck's Linear drawn from N(0, std^2) with
            a constant bias (tllib's MDD: [0.005, 0.1]); null: torch's default.
        head_init_std: the head's Linear layers drawn from N(0, std^2), bias 0 (tllib's MDD:
            0.01); null: torch's default.
        input_norm: ``dataset`` (``mean``/``std``, the recipe) or ``instance``: each image's
            channels standardised by their own statistics (:class:`~gradversary.models.digits.InstanceStandardize`;
            ``mean``/``std`` must then be null).
    """

    mean: list[float] | None = field(default_factory=lambda: [0.5])
    std: list[float] | None = field(default_factory=lambda: [0.5])
    fc: int | None = 500
    dropout: float = 0.5
    bottleneck: int | None = 256
    bottleneck_bn: bool = True
    bottleneck_dropout: float = 0.0
    head_hidden: list[int] = field(default_factory=list)
    head_dropout: float = 0.0
    bottleneck_init: list[float] | None = None
    head_init_std: float | None = None
    input_norm: Literal["dataset", "instance"] = "dataset"

    def __post_init__(self) -> None:
        if self.bottleneck_init is not None and len(self.bottleneck_init) != 2:
            raise ValueError(f"bottleneck_init must be [std, bias], got {self.bottleneck_init}")


def _finish(in_shape, num_classes, convs: list[nn.Module], fc_layers, cfg_mean, cfg_std,
            bottleneck, bottleneck_bn, bottleneck_dropout, head_hidden, head_dropout,
            bottleneck_init=None, head_init_std=None, input_norm="dataset") -> FeatureClassifier:
    """Normalize, convs, Flatten, fc layers, bottleneck -> features; the head; a FeatureClassifier."""
    c, h, w = (int(s) for s in in_shape)
    conv = ChannelsLastSequential(*input_normalization(c, cfg_mean, cfg_std, input_norm), *convs,
                                  nn.Flatten())
    with torch.no_grad():
        flat = int(conv(torch.zeros(1, c, h, w)).shape[1])
    fc, width = fc_layers(flat)
    bott, fdim = bottleneck_layers(width, bottleneck, bottleneck_bn, bottleneck_dropout)
    if bottleneck_init is not None:
        if not bott:
            raise ValueError("bottleneck_init needs a bottleneck (bottleneck: null has none)")
        init_linears(bott, *bottleneck_init)
    head = classifier_head(fdim, head_hidden, num_classes, head_dropout)
    init_linears([head], head_init_std)
    return FeatureClassifier(nn.Sequential(conv, *fc, *bott), head, fdim, num_classes)


def _check_shape(in_shape: Sequence[int], size: int, what: str) -> None:
    if len(in_shape) != 3 or tuple(in_shape[1:]) != (size, size):
        raise ValueError(f"{what} expects (C, {size}, {size}) inputs, got {tuple(in_shape)}")


@MODELS.register("lenet", LeNetConfig)
def lenet(in_shape: Sequence[int], num_classes: int, mean: Sequence[float] | None = (0.5,),
          std: Sequence[float] | None = (0.5,), fc: int | None = 500, dropout: float = 0.5,
          bottleneck: int | None = 256, bottleneck_bn: bool = True, bottleneck_dropout: float = 0.0,
          head_hidden: Sequence[int] = (), head_dropout: float = 0.0,
          bottleneck_init: Sequence[float] | None = None, head_init_std: float | None = None,
          input_norm: str = "dataset") -> FeatureClassifier:
    """LeNet: conv5x5-20, pool, ReLU, conv5x5-50, Dropout2d, pool, ReLU | FC500, ReLU, Dropout |
    bottleneck Linear-BN-ReLU (256) | linear head.

    Shape:
        input: (N, C, 28, 28) in [0, 1] (C = 1 in the recipe); features: (N, B); output: (N, K).

    Example:
        >>> m = lenet((1, 28, 28), 10)
        >>> m.feature_dim, m(torch.zeros(2, 1, 28, 28)).shape
        (256, torch.Size([2, 10]))
    """
    _check_shape(in_shape, 28, "lenet")
    c = int(in_shape[0])
    drop2d = [nn.Dropout2d(dropout)] if dropout > 0 else []
    convs = [nn.Conv2d(c, 20, 5), nn.MaxPool2d(2), nn.ReLU(),
             nn.Conv2d(20, 50, 5), *drop2d, nn.MaxPool2d(2), nn.ReLU()]

    def fc_layers(flat: int) -> tuple[list[nn.Module], int]:
        if fc is None:
            return [], flat
        return [nn.Linear(flat, fc), nn.ReLU(), *([nn.Dropout(dropout)] if dropout > 0 else [])], fc

    return _finish(in_shape, num_classes, convs, fc_layers, mean, std, bottleneck, bottleneck_bn,
                   bottleneck_dropout, list(head_hidden), head_dropout, bottleneck_init, head_init_std,
                   input_norm)


@dataclass
class DTNConfig:
    """Options of ``dtn``: as :class:`LeNetConfig`, with inputs normalised by 0.5 per colour
    channel, and the 512-unit FC layer (with BatchNorm) always present."""

    mean: list[float] | None = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] | None = field(default_factory=lambda: [0.5, 0.5, 0.5])
    bottleneck: int | None = 256
    bottleneck_bn: bool = True
    bottleneck_dropout: float = 0.0
    head_hidden: list[int] = field(default_factory=list)
    head_dropout: float = 0.0
    bottleneck_init: list[float] | None = None
    head_init_std: float | None = None
    input_norm: Literal["dataset", "instance"] = "dataset"

    __post_init__ = LeNetConfig.__post_init__


@MODELS.register("dtn", DTNConfig)
def dtn(in_shape: Sequence[int], num_classes: int, mean: Sequence[float] | None = (0.5, 0.5, 0.5),
        std: Sequence[float] | None = (0.5, 0.5, 0.5), bottleneck: int | None = 256,
        bottleneck_bn: bool = True, bottleneck_dropout: float = 0.0, head_hidden: Sequence[int] = (),
        head_dropout: float = 0.0, bottleneck_init: Sequence[float] | None = None,
        head_init_std: float | None = None, input_norm: str = "dataset") -> FeatureClassifier:
    """DTN: three conv5x5 stride-2 blocks (64, 128, 256; BN, Dropout2d 0.1/0.3/0.5, ReLU) |
    FC512, BN, ReLU, Dropout 0.5 | bottleneck | head.

    Shape:
        input: (N, C, 32, 32) in [0, 1]; features: (N, B); output: (N, K).
    """
    _check_shape(in_shape, 32, "dtn")
    c = int(in_shape[0])
    convs: list[nn.Module] = []
    for cin, cout, p in ((c, 64, 0.1), (64, 128, 0.3), (128, 256, 0.5)):
        convs += [nn.Conv2d(cin, cout, 5, stride=2, padding=2), nn.BatchNorm2d(cout), nn.Dropout2d(p), nn.ReLU()]

    def fc_layers(flat: int) -> tuple[list[nn.Module], int]:
        return [nn.Linear(flat, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Dropout(0.5)], 512

    return _finish(in_shape, num_classes, convs, fc_layers, mean, std, bottleneck, bottleneck_bn,
                   bottleneck_dropout, list(head_hidden), head_dropout, bottleneck_init, head_init_std,
                   input_norm)


lenet.example_in_shape = (1, 28, 28)
dtn.example_in_shape = (3, 32, 32)
