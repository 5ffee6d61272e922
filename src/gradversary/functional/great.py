"""GREAT's tensor functions: the masked input gradient, its normalisation, GREACE's adjustment.

Sinha, Chen, Badrinarayanan & Rabinovich, "Gradient Adversarial Training of Neural Networks",
arXiv:1806.08028 (2018), section 2.1 and Algorithm 1.

With logits a = f(x) of the main network, p = softmax(a), the cross-entropy C = -log p_y has
the logit gradient dC/da = p - e_y. GREAT's auxiliary network sees the *masked* gradient: "the
gradient fed into the auxiliary network is masked after passing through the soft-max function
in the main network, grad_a C 1_y", i.e. only the true-class entry p_y - 1 is kept, then
backpropagated to the input:

    g_i = (p_{i,y_i} - 1) d a_{i,y_i} / d x_i                                  (masked)
    g_i = sum_k (p_{i,k} - [k = y_i]) d a_{i,k} / d x_i = d C_i / d x_i       (unmasked)

GREACE (eq. 6) changes the logit gradient of the main network's cross-entropy to

    dC/da  ->  p - e_y + beta * softmax(a') * (1 - e_y)

where a' are the auxiliary network's logits on the gradient: negative classes that the
auxiliary network confuses with the true one get pushed down harder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["masked_input_gradient", "normalize_gradient", "greace_adjust", "NORMALIZE_MODES",
           "GREACE_FORMS"]

NORMALIZE_MODES = ("none", "l2", "channel_l2")
#: the forms of GREACE's added logit gradient (see :func:`greace_adjust`)
GREACE_FORMS = ("eq6", "prob", "centered")


def masked_input_gradient(logits: Tensor, x: Tensor, y: Tensor, masked: bool = True,
                          create_graph: bool = True) -> Tensor:
    """GREAT's masked input gradient: the cross-entropy's gradient through the true class only.

    Computed as one vector-Jacobian product of the logits with v = (p - e_y) 1_y (masked) or
    v = p - e_y (unmasked), per example, summed over the batch: so each example's gradient is
    its own (batch-size independent, as for a **sum**-reduced loss; see
    :func:`~gradversary.functional.input_gradient`). With ``create_graph`` the result is
    differentiable in the network's parameters *including* through v (the factor p_y - 1), as
    if a hook masked the logit gradient of ``autograd.grad(C.sum(), x, create_graph=True)``.

    Args:
        logits: the main network's logits a = f(x); part of a graph that contains ``x``.
        x: the input (or a feature tensor) to differentiate against; must require grad.
        y: true labels.
        masked: keep only the true-class path (the paper); ``False`` gives d C_i / d x_i.
        create_graph: keep the graph, so a loss on the gradient trains the network (GREAT);
            ``False`` for a constant input to the auxiliary network (GREACE alone).

    Shape:
        logits: (N, K); x: (N, *); y: (N,); output: (N, *), like ``x``.

    Example:
        >>> x = torch.tensor([[1.0, 2.0]], requires_grad=True)
        >>> w = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
        >>> g = masked_input_gradient(x @ w.T, x, torch.tensor([1]))
        >>> p1 = torch.softmax(x @ w.T, -1)[0, 1]
        >>> torch.allclose(g, (p1 - 1) * w[1])
        True
    """
    if logits.dim() != 2 or y.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (N, K) and labels (N,), got {tuple(logits.shape)} "
                         f"and {tuple(y.shape)}")
    if not x.requires_grad:
        raise ValueError("x must require grad to take an input gradient")
    onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    v = torch.softmax(logits, dim=1) - onehot
    if masked:
        v = v * onehot
    if not create_graph:
        v = v.detach()
    (g,) = torch.autograd.grad(logits, x, grad_outputs=v, create_graph=create_graph,
                               retain_graph=True)
    return g


def normalize_gradient(g: Tensor, mode: str = "none", eps: float = 1e-12) -> Tensor:
    """Rescale a gradient tensor before the auxiliary network sees it.

    Without it the main network can hide class information from the auxiliary network by
    shrinking or growing the gradient (the issue's concern); the paper feeds the raw gradient.

    Modes:
        - ``none``: ``g`` unchanged (the paper).
        - ``l2``: per example, ``g_i / ||g_i||_2`` over all of its entries.
        - ``channel_l2``: per location, L2 over the channel dimension 1:
          ``g[i, :, h, w] / ||g[i, :, h, w]||_2`` (as facebookresearch/astmt does before its
          task-gradient discriminator). With one channel (MNIST) this is sign(g), smoothed.

    Norms are smoothed as sqrt(||.||^2 + eps^2), so the result is differentiable everywhere
    (a zero gradient stays zero); eps bounds the derivative by 1/eps.

    Args:
        g: the gradient.
        mode: one of ``none``, ``l2``, ``channel_l2``.
        eps: smoothing of the norm.

    Shape:
        g: (N, *) for ``l2``; (N, C, *) for ``channel_l2``; output: like ``g``.

    Example:
        >>> normalize_gradient(torch.tensor([[3.0, 4.0]]), "l2")
        tensor([[0.6000, 0.8000]])
    """
    if mode == "none":
        return g
    if mode == "l2":
        sq = g.flatten(1).square().sum(1).view(-1, *([1] * (g.dim() - 1)))
    elif mode == "channel_l2":
        if g.dim() < 2:
            raise ValueError(f"channel_l2 needs (N, C, *) gradients, got {tuple(g.shape)}")
        sq = g.square().sum(1, keepdim=True)
    else:
        raise ValueError(f"mode must be one of {NORMALIZE_MODES}, got {mode!r}")
    return g * torch.rsqrt(sq + eps * eps)


def greace_adjust(logits: Tensor, aux_logits: Tensor, y: Tensor, beta: float | Tensor,
                  form: str = "eq6") -> Tensor:
    r"""GREACE (eq. 6) as a surrogate term: value 0, gradient beta softmax(a') on negative classes.

    A **surrogate loss**, not a custom autograd Function: with the constant weights
    ``c = beta * softmax(stopgrad(a')) * (1 - e_y)`` the term is ``T(a) - stopgrad(T(a))``, so
    its value is exactly 0 and its logit gradient is exactly dT/da; ``cross_entropy +
    greace_adjust`` has the value of the cross-entropy and the logit gradient p - e_y + dT/da.

    Forms (``form``):

    - ``eq6``, the paper: T = sum_k c_k a_k, so dT/da = c and

          d/da [C_i + adj_i] = p_i - e_{y_i} + beta softmax(a'_i) (1 - e_{y_i}).

      T is linear in the logits and unbounded below, and its class sum beta (1 - softmax(a')_y)
      > 0 never vanishes, while the cross-entropy is blind to a common shift of the logits:
      nothing opposes the drift of sum_k a_k to -infinity, and the non-saturating push on the
      negative logits grows the margins without bound (tests/test_great.py measures both on a
      toy problem; the real runs' loss reached 1e8).
    - ``prob``, bounded: T = sum_k c_k p_k, the auxiliary-weighted probability that the network
      gives to the negative classes, a value in [0, beta]. Its gradient
      dT/da_k = p_k (c_k - sum_j c_j p_j) is eq. 6's weight scaled by the network's own
      probability p_k (so it vanishes once the confused classes are suppressed) and centred by
      its p-weighted mean (so the class sum is exactly 0). Scaling by p_k alone, c_k p_k, is
      not the gradient of any function (its Jacobian is not symmetric) and keeps a positive
      class sum: it drifts too.
    - ``centered``, a diagnostic: T = sum_k (c_k - mean_j c_j) a_k, eq. 6's weights projected
      to sum to zero over the classes. It removes the shift drift only: still linear, it is
      bounded below where the cross-entropy's growth dominates it (data the network cannot
      separate) and not where the network separates the data (then the margins run off).

    The auxiliary logits are detached: in Algorithm 1 the auxiliary network learns only from
    its own loss, and the weights are a constant for the main network.

    Args:
        logits: the main network's logits a.
        aux_logits: the auxiliary network's logits a' on the (masked) gradient.
        y: true labels.
        beta: the penalty (a float or a 0-d tensor).
        form: ``eq6`` (the paper), ``prob`` or ``centered`` (see above).

    Shape:
        logits, aux_logits: (N, K); y: (N,); output: (N,) zeros, to add to the per-example
        cross-entropy before it is reduced (a mean then scales eq. 6 by 1/N, like the CE).

    Example:
        >>> a = torch.zeros(1, 3, requires_grad=True)
        >>> adj = greace_adjust(a, torch.zeros(1, 3), torch.tensor([0]), beta=3.0)
        >>> adj.sum().backward()
        >>> adj.detach(), a.grad
        (tensor([0.]), tensor([[0., 1., 1.]]))
    """
    if logits.shape != aux_logits.shape or y.shape != logits.shape[:1]:
        raise ValueError(f"expected logits and aux_logits (N, K) and labels (N,), got "
                         f"{tuple(logits.shape)}, {tuple(aux_logits.shape)}, {tuple(y.shape)}")
    if form not in GREACE_FORMS:
        raise ValueError(f"form must be one of {GREACE_FORMS}, got {form!r}")
    neg = 1.0 - F.one_hot(y, logits.shape[1]).to(logits.dtype)
    c = (beta * torch.softmax(aux_logits.detach().to(logits.dtype), dim=1) * neg).detach()
    if form == "prob":
        term = (c * torch.softmax(logits, dim=1)).sum(1)
    else:
        w = c - c.mean(1, keepdim=True) if form == "centered" else c
        term = (w * logits).sum(1)
    return term - term.detach()
