"""Domain discriminators."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["DomainDiscriminator"]


class DomainDiscriminator(nn.Module):
    """An MLP that scores how likely a feature vector comes from the source domain.

    The DANN paper's heads (Ganin et al., JMLR 2016, Figure 4): MNIST uses one hidden layer of
    100 units; SVHN and GTSRB use 1024-1024. The output is one logit per example:
    ``sigmoid(logit)`` is the probability of *source*.

    Args:
        in_features: feature size F.
        hidden: sizes of the hidden layers (empty for logistic regression on the features).
        activation: ``"relu"`` or ``"leaky_relu"`` (slope 0.2, as in GREAT's auxiliary nets).
        batch_norm: add BatchNorm1d after each hidden linear layer.
        dropout: dropout probability after each hidden activation.

    Shape:
        input: (N, F), output: (N,).

    Example:
        >>> import torch
        >>> DomainDiscriminator(8, hidden=[16])(torch.zeros(4, 8)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (100,),
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        acts = {"relu": lambda: nn.ReLU(), "leaky_relu": lambda: nn.LeakyReLU(0.2)}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(acts[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(-1)
