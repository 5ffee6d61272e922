"""Schedules: values driven by training progress p in [0, 1].

The engine calls :meth:`Schedule.step` with p = step / total_steps before every optimisation
step; nothing else moves a schedule (a forward pass or an evaluation never does). A schedule's
state is just p, so it survives ``state_dict`` round trips and resumes exactly.

Schedules written by iteration count (tllib's warm-start GRL, its LR decay) are
:class:`IterationSchedule` s: the engine tells them the run's total step count once
(:meth:`Schedule.bind_total_steps`), and they read the step i = p * total from p. Their state is
still p, and the total comes from the run's config, so they resume exactly too.

Registered schedules (``gradversary list``) can be named in configs:

    lr_schedule: {name: inverse_decay, alpha: 10, beta: 0.75}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .registry import Registry

__all__ = [
    "Schedule", "IterationSchedule", "Constant", "DANNLambda", "WarmStartLambda", "InverseDecay",
    "InverseDecaySteps", "Poly", "PolyRamp", "Cyclic", "SCHEDULES", "create_schedule",
]

SCHEDULES = Registry("schedule")


class Schedule:
    """Base class: a function of progress p in [0, 1], with the last p as state."""

    def __init__(self) -> None:
        self.p = 0.0

    def value_at(self, p: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def value(self) -> float:
        """The value at the last progress given to :meth:`step`."""
        return self.value_at(self.p)

    def step(self, p: float) -> float:
        """Move to progress ``p`` (clamped to [0, 1]) and return the new value."""
        self.p = min(max(float(p), 0.0), 1.0)
        return self.value

    def bind_total_steps(self, total: int) -> None:
        """Told once by the engine: the run's number of optimisation steps (unused here)."""

    def state_dict(self) -> dict[str, float]:
        return {"p": self.p}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.p = float(state["p"])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k not in ("p", "total"))
        return f"{type(self).__name__}({args})"


class IterationSchedule(Schedule):
    """A schedule defined on the step count i = p * total: :meth:`value_at_step` gives it.

    The engine binds ``total`` (:meth:`bind_total_steps`) before the first step; reading a
    value before that raises, so a schedule never silently runs on a wrong clock.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total: int | None = None

    def bind_total_steps(self, total: int) -> None:
        if int(total) < 1:
            raise ValueError(f"total steps must be >= 1, got {total}")
        self.total = int(total)

    def value_at_step(self, i: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def value_at(self, p: float) -> float:
        if self.total is None:
            raise RuntimeError(f"{type(self).__name__} counts steps: call bind_total_steps(total) first")
        return self.value_at_step(p * self.total)


@dataclass
class ConstantConfig:
    value: float = 1.0


@SCHEDULES.register("constant", ConstantConfig)
class Constant(Schedule):
    """A constant value."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.const = float(value)

    def value_at(self, p: float) -> float:
        return self.const


@dataclass
class DANNLambdaConfig:
    gamma: float = 10.0
    max: float = 1.0


@SCHEDULES.register("dann_lambda", DANNLambdaConfig)
class DANNLambda(Schedule):
    """The DANN ramp lambda_p = max * (2 / (1 + exp(-gamma p)) - 1).

    Ganin et al., JMLR 2016, section 5.2.2: gamma = 10. It starts at 0 so that the domain
    classifier's noisy early signal does not disturb the features, and reaches ~max at p = 1.

    Example:
        >>> s = DANNLambda(gamma=10)
        >>> s.step(0.0), round(s.step(1.0), 6)
        (0.0, 0.999909)
    """

    def __init__(self, gamma: float = 10.0, max: float = 1.0):
        super().__init__()
        self.gamma = float(gamma)
        self.max = float(max)

    def value_at(self, p: float) -> float:
        return self.max * (2.0 / (1.0 + math.exp(-self.gamma * p)) - 1.0)


@dataclass
class WarmStartLambdaConfig:
    gamma: float = 1e-3
    max: float = 1.0


@SCHEDULES.register("warm_start_lambda", WarmStartLambdaConfig)
class WarmStartLambda(IterationSchedule):
    """The DANN ramp on the step count: lambda_i = max * (2 / (1 + exp(-gamma i)) - 1).

    Transfer-Learning-Library's warm-start gradient reversal (``alpha = 1``,
    ``max_iters = 1000``: gamma = 1/1000): 0.46 at i = 1,000, 0.96 at 4,000, whatever the run's
    length, where :class:`DANNLambda` stretches with it. MDD's GRL in the same library is this
    with ``max = 0.1``.

    Example:
        >>> s = WarmStartLambda(gamma=1e-3); s.bind_total_steps(10_000)
        >>> round(s.step(0.1), 4), round(s.step(0.5), 4)
        (0.4621, 0.9866)
    """

    def __init__(self, gamma: float = 1e-3, max: float = 1.0):
        super().__init__()
        self.gamma = float(gamma)
        self.max = float(max)

    def value_at_step(self, i: float) -> float:
        return self.max * (2.0 / (1.0 + math.exp(-self.gamma * i)) - 1.0)


@dataclass
class InverseDecayStepsConfig:
    gamma: float = 1e-3
    beta: float = 0.75


@SCHEDULES.register("inverse_decay_steps", InverseDecayStepsConfig)
class InverseDecaySteps(IterationSchedule):
    """The inverse decay on the step count: (1 + gamma i)^-beta, multiplying the base rate.

    Transfer-Learning-Library's LR schedule ``lr (1 + 0.001 i)^-0.75`` (gamma 0.001 for DANN and
    CDAN, 0.0002 for MDD). It equals :class:`InverseDecay` with ``alpha = gamma * total``, but
    keeps its meaning when the run's length changes.

    Example:
        >>> s = InverseDecaySteps(); s.bind_total_steps(2500)
        >>> round(s.step(1.0), 6) == round((1 + 0.001 * 2500) ** -0.75, 6)
        True
    """

    def __init__(self, gamma: float = 1e-3, beta: float = 0.75):
        super().__init__()
        self.gamma = float(gamma)
        self.beta = float(beta)

    def value_at_step(self, i: float) -> float:
        return (1.0 + self.gamma * i) ** -self.beta


@dataclass
class InverseDecayConfig:
    alpha: float = 10.0
    beta: float = 0.75
    scale: float = 1.0


@SCHEDULES.register("inverse_decay", InverseDecayConfig)
class InverseDecay(Schedule):
    """The DANN learning-rate annealing mu_p = scale / (1 + alpha p)^beta.

    Ganin et al., JMLR 2016, section 5.2.2: mu_0 = 0.01, alpha = 10, beta = 0.75. Used as an
    LR schedule the engine multiplies the optimizer's base rate (mu_0) by this value, so keep
    ``scale = 1`` there; ``scale = mu_0`` gives mu_p itself.

    Example:
        >>> round(InverseDecay(scale=0.01).step(1.0), 8)
        0.0016556
    """

    def __init__(self, alpha: float = 10.0, beta: float = 0.75, scale: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.scale = float(scale)

    def value_at(self, p: float) -> float:
        return self.scale / (1.0 + self.alpha * p) ** self.beta


@dataclass
class PolyConfig:
    power: float = 0.9
    scale: float = 1.0


@SCHEDULES.register("poly", PolyConfig)
class Poly(Schedule):
    """Polynomial decay scale * (1 - p)^power (GREAT's learning-rate multiplier, power 0.9)."""

    def __init__(self, power: float = 0.9, scale: float = 1.0):
        super().__init__()
        self.power = float(power)
        self.scale = float(scale)

    def value_at(self, p: float) -> float:
        return self.scale * (1.0 - p) ** self.power


@dataclass
class PolyRampConfig:
    power: float = 0.9
    max: float = 1.0


@SCHEDULES.register("poly_ramp", PolyRampConfig)
class PolyRamp(Schedule):
    """max * (1 - (1 - p)^power): GREAT's alpha/beta ramp, the mirror of its LR decay."""

    def __init__(self, power: float = 0.9, max: float = 1.0):
        super().__init__()
        self.power = float(power)
        self.max = float(max)

    def value_at(self, p: float) -> float:
        return self.max * (1.0 - (1.0 - p) ** self.power)


@dataclass
class CyclicConfig:
    peak: float = 0.4
    scale: float = 1.0


@SCHEDULES.register("cyclic", CyclicConfig)
class Cyclic(Schedule):
    """One triangle: scale * p / peak up to ``peak``, then down to 0 at p = 1.

    Wong, Rice & Kolter's "cyclic" learning rate ("Fast is better than free", ICLR 2020): 0 to
    its maximum over the first 2/5 of training, then linearly back to 0 (peak 0.4). As an LR
    schedule it multiplies the optimiser's lr, which is then the maximum. The engine reads it
    at p = step / total before each step, so the first step has lr 0.
    """

    def __init__(self, peak: float = 0.4, scale: float = 1.0):
        super().__init__()
        if not 0.0 < float(peak) < 1.0:
            raise ValueError(f"peak must be in (0, 1), got {peak}")
        self.peak = float(peak)
        self.scale = float(scale)

    def value_at(self, p: float) -> float:
        rise = p / self.peak if p <= self.peak else (1.0 - p) / (1.0 - self.peak)
        return self.scale * rise


def create_schedule(spec: dict | None, default: str = "constant") -> Schedule:
    """Build a schedule from ``{"name": ..., **params}``, validating the params."""
    spec = dict(spec or {})
    return SCHEDULES.create(spec.pop("name", default), **spec)
