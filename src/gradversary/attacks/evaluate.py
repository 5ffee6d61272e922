"""Robust accuracy, per-example worst cases and gradient-masking diagnostics.

The diagnostics follow Carlini, Athalye, Papernot, Brendel, Rauber, Tsipras, Goodfellow, Madry
and Kurakin, "On Evaluating Adversarial Robustness", arXiv:1902.06705, and AutoAttack's flags
(Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020, arXiv:2003.01690). A defence whose accuracy only holds
against its own gradients shows it in one of the checks below.

Example:
    >>> table = AccuracyTable(clean=0.99, fgsm=0.60, ifgsm=0.75, pgd=0.74, square=0.30)
    >>> for check in gradient_masking_checks(table):
    ...     if check.passed is False:
    ...         print(check)
    [FAIL] iterative_not_weaker: iFGSM 75.0% and PGD 74.0% are above FGSM 60.0% (+3.0 points)
    [FAIL] gradient_free_not_stronger: Square 30.0% is below white-box PGD 74.0% (-3.0 points)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import from_dict
from ..errors import ConfigError, DataError
from .base import Attack, eval_mode

__all__ = [
    "RobustAccuracy", "robust_accuracy", "worst_case", "evaluate_attacks", "zero_gradient_share",
    "AccuracyTable", "Check", "gradient_masking_checks",
]

TargetFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


class RobustAccuracy(NamedTuple):
    """Accuracy under attack and which examples stayed correct.

    Shape:
        correct: (N,) bool, on the CPU, in the order of the data.
    """

    accuracy: float
    correct: Tensor


def _batches(data, batch_size: int) -> Iterable[tuple[Tensor, Tensor]]:
    if (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, Tensor) for t in data)):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise DataError(f"x and y differ in length: {x.shape[0]} and {y.shape[0]}")
        return ((x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, x.shape[0], batch_size))
    return ((b[0], b[1]) for b in data)


def _model_device(model: nn.Module) -> torch.device | None:
    p = next(model.parameters(), None)
    return None if p is None else p.device


def robust_accuracy(model: nn.Module, attack: Attack | None, data, batch_size: int = 256,
                    target_fn: TargetFn | None = None) -> RobustAccuracy:
    """Accuracy of ``model`` on the true labels under ``attack`` (clean accuracy if ``None``).

    Targeted attacks get their targets from ``target_fn(model, x, y)`` per batch, e.g.
    ``lambda m, x, y: worst_class_targets(m, x)`` or
    ``lambda m, x, y: random_targets(y, 10, generator)``; accuracy is still on the true labels,
    as in GREAT's Table 1. The per-example masks of several attacks combine with
    :func:`worst_case`.

    Args:
        model: classifier returning logits; its modes are restored afterwards.
        attack: an :class:`Attack`, or ``None`` for clean accuracy.
        data: a pair of tensors ``(x, y)``, or an iterable of batches ``(x, y, ...)`` such as a
            DataLoader (not shuffled, if masks are to be combined).
        batch_size: batch size when ``data`` is a pair of tensors.
        target_fn: builds the target labels of a batch; ``None`` means untargeted.

    Shape:
        x: (N, C, H, W) in [0, 1]; y: (N,); output: accuracy and ``correct`` (N,) bool.
    """
    device = _model_device(model)
    masks = []
    for x, y in _batches(data, int(batch_size)):
        if device is not None:
            x, y = x.to(device), y.to(device)
        target = None if target_fn is None else target_fn(model, x, y)
        x_eval = x if attack is None else attack(model, x, y, target)
        with eval_mode(model), torch.no_grad():
            masks.append((model(x_eval).argmax(dim=-1) == y).cpu())
    if not masks:
        raise DataError("robust_accuracy got no data")
    correct = torch.cat(masks)
    return RobustAccuracy(correct.float().mean().item(), correct)


def worst_case(*results: RobustAccuracy) -> RobustAccuracy:
    """Per-example worst case over attacks: an example counts as correct only if it survives all."""
    if not results:
        raise ValueError("worst_case needs at least one result")
    correct = results[0].correct.clone()
    for r in results[1:]:
        if r.correct.shape != correct.shape:
            raise DataError(f"masks differ in shape: {tuple(r.correct.shape)} and {tuple(correct.shape)}")
        correct &= r.correct
    return RobustAccuracy(correct.float().mean().item(), correct)


def evaluate_attacks(model: nn.Module, attacks: Mapping[str, Attack | None], data,
                     batch_size: int = 256,
                     target_fns: Mapping[str, TargetFn] | None = None) -> dict[str, RobustAccuracy]:
    """Accuracy under each attack, plus ``clean`` and the per-example ``worst_case`` over all.

    The worst case counts an example only if it is correct without attack and under every
    attack given (FGSM, PGD, APGD-CE, APGD-T, Square, transfer...): a defence is as strong as
    the strongest attack on each example, not on average.

    Args:
        model: the classifier.
        attacks: name -> attack (``None``: clean); ``clean`` and ``worst_case`` are reserved.
        data: as :func:`robust_accuracy` (in a fixed order: the masks are combined).
        batch_size: batch size when ``data`` is a pair of tensors.
        target_fns: name -> target builder for the attacks to run targeted.

    Shape:
        x: (N, C, H, W) in [0, 1]; y: (N,); each result's ``correct``: (N,) bool.
    """
    reserved = {"clean", "worst_case"} & set(attacks)
    if reserved:
        raise ConfigError(f"attack names {sorted(reserved)} are reserved")
    target_fns = dict(target_fns or {})
    unknown = set(target_fns) - set(attacks)
    if unknown:
        raise ConfigError(f"target_fns names {sorted(unknown)}, not among the attacks")
    out = {"clean": robust_accuracy(model, None, data, batch_size)}
    for name, attack in attacks.items():
        out[name] = robust_accuracy(model, attack, data, batch_size, target_fns.get(name))
    out["worst_case"] = worst_case(*out.values())
    return out


def zero_gradient_share(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Share of inputs whose cross-entropy input gradient is exactly zero everywhere.

    A saturated softmax or a shattered gradient gives zero gradients, which stop every gradient
    attack at the clean point; AutoAttack warns about them. Parameters' ``.grad`` are untouched.

    Shape:
        x: (N, *); y: (N,); output: a float in [0, 1].
    """
    zero = 0
    with eval_mode(model), torch.enable_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].detach().requires_grad_(True)
            loss = F.cross_entropy(model(xb), y[i:i + batch_size].long(), reduction="sum")
            (grad,) = torch.autograd.grad(loss, xb)
            zero += int((grad.flatten(1) == 0).all(dim=1).sum())
    return zero / max(x.shape[0], 1)


@dataclass
class AccuracyTable:
    """One model's accuracies (fractions in [0, 1]), the input of :func:`gradient_masking_checks`.

    Args:
        clean: accuracy without attack.
        fgsm, ifgsm, pgd: under FGSM, iterated FGSM and PGD at the table's eps.
        pgd_strong: under PGD with more steps and/or restarts at the same eps.
        pgd_dlr: under PGD on a non-saturating loss (DLR or margin) at the same eps.
        apgd_ce, apgd_t: under APGD-CE and APGD-T (AutoAttack's gradient attacks) at the eps.
        square: under the Square attack (gradient-free) at the same eps.
        transfer: under the transfer attack at the same eps.
        pgd_by_eps: eps -> accuracy under PGD, for the accuracy-versus-eps curve.
        zero_gradient_share: share of inputs with an all-zero input gradient.
    """

    clean: float
    fgsm: float | None = None
    ifgsm: float | None = None
    pgd: float | None = None
    pgd_strong: float | None = None
    pgd_dlr: float | None = None
    apgd_ce: float | None = None
    apgd_t: float | None = None
    square: float | None = None
    transfer: float | None = None
    pgd_by_eps: dict = field(default_factory=dict)
    zero_gradient_share: float | None = None

    def __post_init__(self):
        self.pgd_by_eps = {float(k): float(v) for k, v in self.pgd_by_eps.items()}
        values = [v for f in dataclasses.fields(self) if f.name != "pgd_by_eps"
                  for v in [getattr(self, f.name)] if v is not None]
        for v in values + list(self.pgd_by_eps.values()):
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ConfigError(f"accuracies and shares are fractions in [0, 1], got {v}")


@dataclass(frozen=True)
class Check:
    """One diagnostic: ``passed`` is True, False, or None when its inputs were not measured."""

    name: str
    passed: bool | None
    reason: str

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "skip"}[self.passed]

    def __str__(self) -> str:
        return f"[{self.verdict}] {self.name}: {self.reason}"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _pts(tol: float) -> str:
    return f"{100 * tol:.1f} points"


def _skip(name: str, missing: str) -> Check:
    return Check(name, None, f"not measured: {missing}")


def gradient_masking_checks(results: AccuracyTable | Mapping, tol: float = 0.03,
                            large_eps: float = 0.5, near_zero: float = 0.1,
                            max_zero_gradient_share: float = 0.01) -> list[Check]:
    """Signs of gradient masking in a table of accuracies, as named pass/fail checks.

    Carlini et al., "On Evaluating Adversarial Robustness", arXiv:1902.06705. In order:

    - ``attacks_not_above_clean``: no attack leaves more examples correct than no attack;
    - ``iterative_not_weaker``: iFGSM and PGD at most FGSM's accuracy;
    - ``monotone_in_eps``: PGD accuracy non-increasing in eps (clean counts as eps 0);
    - ``near_zero_at_large_eps``: below ``near_zero`` at the largest eps >= ``large_eps``;
    - ``more_steps_not_weaker``: PGD with more steps/restarts at most plain PGD's accuracy;
    - ``pgd_converged``: ... and not far below it either (else plain PGD had not converged);
    - ``pgd_matches_apgd``: APGD (CE or targeted DLR) not far below the best fixed-step PGD
      (else PGD has not converged, or its fixed step size is what holds the defence up);
    - ``ce_loss_not_saturated``: cross-entropy PGD at most PGD on the DLR loss's accuracy, and
      APGD-CE at most APGD-T's (a softmax saturated by large logits gives vanishing CE
      gradients, AutoAttack's point);
    - ``gradient_free_not_stronger`` and ``transfer_not_stronger``: Square and the transfer
      attack at least the best white-box PGD accuracy;
    - ``few_zero_gradients``: at most ``max_zero_gradient_share`` of inputs with a zero gradient.

    Args:
        results: an :class:`AccuracyTable`, or a mapping of its fields (unknown keys raise).
        tol: slack for comparisons between attacks, as a fraction (0.03 = 3 points).
        large_eps: eps (in [0, 1] image units) at which accuracy must be near zero.
        near_zero: the accuracy below which it counts as near zero.
        max_zero_gradient_share: the largest acceptable share of zero input gradients.

    Returns:
        one :class:`Check` per diagnostic, with ``passed`` None where the inputs are missing.
    """
    t = results if isinstance(results, AccuracyTable) else from_dict(AccuracyTable, results)
    return [
        _not_above_clean(t, tol),
        _iterative_not_weaker(t, tol),
        *_eps_curve(t, tol, large_eps, near_zero),
        *_more_steps(t, tol),
        _pgd_matches_apgd(t, tol),
        _ce_not_saturated(t, tol),
        *(_not_stronger_than_pgd(t, tol, name, label, value) for name, label, value in (
            ("gradient_free_not_stronger", "Square", t.square),
            ("transfer_not_stronger", "transfer", t.transfer))),
        _zero_gradients(t, max_zero_gradient_share),
    ]


def _ce_not_saturated(t: AccuracyTable, tol: float) -> Check:
    """Each measured pair (PGD on CE against PGD-DLR, APGD-CE against APGD-T) in turn."""
    name = "ce_loss_not_saturated"
    pairs = [(ce, dlr, a, b) for ce, dlr, a, b in ((t.pgd, t.pgd_dlr, "PGD (CE)", "PGD-DLR"),
                                                   (t.apgd_ce, t.apgd_t, "APGD-CE", "APGD-T"))
             if ce is not None and dlr is not None]
    if not pairs:
        return _skip(name, "PGD on CE and on DLR")
    bad = [f"{a} {_pct(ce)} above {b} {_pct(dlr)}" for ce, dlr, a, b in pairs if ce > dlr + tol]
    if bad:
        return Check(name, False, f"{'; '.join(bad)} (+{_pts(tol)}): the CE loss saturates; "
                                  "trust the DLR figure")
    return Check(name, True, "; ".join(f"{a} {_pct(ce)} at most {b} {_pct(dlr)}"
                                       for ce, dlr, a, b in pairs) + f" (+{_pts(tol)})")


def _pgd_matches_apgd(t: AccuracyTable, tol: float) -> Check:
    name = "pgd_matches_apgd"
    pgd = [v for v in (t.pgd, t.pgd_strong) if v is not None]
    apgd = {k: v for k, v in (("APGD-CE", t.apgd_ce), ("APGD-T", t.apgd_t)) if v is not None}
    if not pgd or not apgd:
        return _skip(name, "PGD and APGD")
    label, low = min(apgd.items(), key=lambda kv: kv[1])
    ok = low >= min(pgd) - tol
    return Check(name, ok, f"{label} {_pct(low)} is {'not far below' if ok else 'below'} the best "
                 f"fixed-step PGD {_pct(min(pgd))}" + ("" if ok else f" (-{_pts(tol)}): PGD has not "
                 "converged or its step size holds the defence up; read APGD and the worst case"))


def _not_above_clean(t: AccuracyTable, tol: float) -> Check:
    name = "attacks_not_above_clean"
    accs = {"FGSM": t.fgsm, "iFGSM": t.ifgsm, "PGD": t.pgd, "stronger PGD": t.pgd_strong,
            "PGD-DLR": t.pgd_dlr, "APGD-CE": t.apgd_ce, "APGD-T": t.apgd_t, "Square": t.square,
            "transfer": t.transfer,
            **{f"PGD at eps {e:g}": a for e, a in t.pgd_by_eps.items()}}
    accs = {k: v for k, v in accs.items() if v is not None}
    if not accs:
        return _skip(name, "no attack")
    above = [f"{k} {_pct(v)}" for k, v in accs.items() if v > t.clean + tol]
    if above:
        return Check(name, False, f"{', '.join(above)} above clean {_pct(t.clean)} (+{_pts(tol)})")
    return Check(name, True, f"every attack at most clean {_pct(t.clean)}")


def _iterative_not_weaker(t: AccuracyTable, tol: float) -> Check:
    name = "iterative_not_weaker"
    iterative = {k: v for k, v in (("iFGSM", t.ifgsm), ("PGD", t.pgd)) if v is not None}
    if t.fgsm is None or not iterative:
        return _skip(name, "FGSM, and iFGSM or PGD")
    weaker = {k: v for k, v in iterative.items() if v > t.fgsm + tol}
    shown = weaker or iterative
    names = " and ".join(f"{k} {_pct(v)}" for k, v in shown.items())
    if weaker:
        verb = "are" if len(weaker) > 1 else "is"
        return Check(name, False, f"{names} {verb} above FGSM {_pct(t.fgsm)} (+{_pts(tol)})")
    return Check(name, True, f"{names} at most FGSM {_pct(t.fgsm)}")


def _eps_curve(t: AccuracyTable, tol: float, large_eps: float, near_zero: float) -> list[Check]:
    curve = sorted({0.0: t.clean, **t.pgd_by_eps}.items())
    if len(curve) < 2:
        monotone = _skip("monotone_in_eps", "PGD at several eps")
    else:
        rises = [f"{_pct(a1)} at eps {e1:g} > {_pct(a0)} at eps {e0:g}"
                 for (e0, a0), (e1, a1) in zip(curve, curve[1:]) if a1 > a0 + tol]
        monotone = Check("monotone_in_eps", not rises, "; ".join(rises) or
                         f"non-increasing over eps {', '.join(f'{e:g}' for e, _ in curve)}")
    large = [(e, a) for e, a in curve if e >= large_eps]
    if not large:
        return [monotone, _skip("near_zero_at_large_eps", f"PGD at eps >= {large_eps:g}")]
    e, a = large[-1]
    ok = a < near_zero
    return [monotone, Check("near_zero_at_large_eps", ok,
                            f"{_pct(a)} at eps {e:g} ({'<' if ok else '>='} {_pct(near_zero)})")]


def _more_steps(t: AccuracyTable, tol: float) -> list[Check]:
    if t.pgd is None or t.pgd_strong is None:
        return [_skip(n, "PGD and stronger PGD") for n in ("more_steps_not_weaker", "pgd_converged")]
    base = f"stronger PGD {_pct(t.pgd_strong)} vs PGD {_pct(t.pgd)}"
    weaker, stronger = t.pgd_strong > t.pgd + tol, t.pgd_strong < t.pgd - tol
    return [
        Check("more_steps_not_weaker", not weaker,
              base + (f" (+{_pts(tol)}): more steps/restarts help the defence" if weaker else "")),
        Check("pgd_converged", not stronger,
              base + (f" (-{_pts(tol)}): plain PGD has not converged, report the stronger one"
                      if stronger else "")),
    ]


def _not_stronger_than_pgd(t: AccuracyTable, tol: float, name: str, label: str,
                           value: float | None) -> Check:
    white = [v for v in (t.pgd, t.pgd_strong, t.pgd_dlr, t.apgd_ce, t.apgd_t) if v is not None]
    if value is None or not white:
        return _skip(name, f"{label} and PGD")
    ok = value >= min(white) - tol
    return Check(name, ok, f"{label} {_pct(value)} is {'at least' if ok else 'below'} white-box "
                 f"PGD {_pct(min(white))}" + ("" if ok else f" (-{_pts(tol)})"))


def _zero_gradients(t: AccuracyTable, max_share: float) -> Check:
    name, z = "few_zero_gradients", t.zero_gradient_share
    if z is None:
        return _skip(name, "zero-gradient share")
    ok = z <= max_share
    return Check(name, ok, f"{_pct(z)} of inputs have an all-zero input gradient "
                 f"({'<=' if ok else '>'} {_pct(max_share)})")
