"""Label-free validators: scores of a checkpoint that never read target labels.

Every validator is a small registered object with one method, ``score(inputs)``, returning a
:class:`ValidatorScore` whose ``score`` is **higher-is-better** (risks are negated). The inputs
are gathered once per evaluation (:class:`ValidatorInputs`): the model's logits and features on
a fixed sample of *unlabelled* target training inputs, and on the labelled held-out source.
Nothing in :class:`ValidatorInputs` holds a target label, so no validator can read one.

The comparison of validators on finished runs (weighted Spearman correlation with target
accuracy, regret, the leave-one-task-out choice of a default) is in
:mod:`gradversary.selection.ranking`.

Example:
    >>> import torch
    >>> from gradversary.selection.validators import ValidatorInputs, create_validator
    >>> inp = ValidatorInputs(target_logits=torch.tensor([[10.0, -10.0], [-10.0, 10.0]]))
    >>> round(create_validator("im").score(inp).score, 3)  # confident and diverse: ln 2
    0.693
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..registry import Registry
from .clustering import adjusted_mutual_info, kmeans
from .weighting import dev_risk, importance_weights, iwcv_risk

__all__ = ["VALIDATORS", "Validator", "ValidatorInputs", "ValidatorScore", "create_validator",
           "build_inputs", "cheap_validators", "resolve_validators", "score_validators"]

VALIDATORS = Registry("validator")


@dataclass(frozen=True)
class ValidatorScore:
    """A validator's score (higher is better), and for importance-weighted or source-based
    scores its standard error and the weights' effective sample size."""

    score: float
    se: float | None = None
    ess: float | None = None


@dataclass
class ValidatorInputs:
    """What the validators may see at one evaluation. No target labels.

    Args:
        target_logits: logits on unlabelled target inputs, (N, K).
        target_features: features of the same inputs, (N, F).
        target_x: the inputs themselves, (N, *) (MixVal mixes them).
        logits_fn: the model, (N, *) -> (N, K) (MixVal scores the mixed inputs).
        source_val_logits: logits on held-out labelled source, (M, K).
        source_val_y: its labels, (M,).
        source_val_features: its features, (M, F).
        source_fit_features: source features to fit DEV's domain classifier, (N_s, F).
        seed: seeds the validators' own randomness (k-means, MixVal pairs), fixed per run so
            that successive evaluations are comparable.
    """

    target_logits: Tensor
    target_features: Tensor | None = None
    target_x: Tensor | None = None
    logits_fn: Callable[[Tensor], Tensor] | None = None
    source_val_logits: Tensor | None = None
    source_val_y: Tensor | None = None
    source_val_features: Tensor | None = None
    source_fit_features: Tensor | None = None
    seed: int = 0
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def has_source(self) -> bool:
        return self.source_val_logits is not None and self.source_val_y is not None

    def importance_weights(self) -> Tensor:
        """w(x) = p_T / p_S at the held-out source, (M,), mean 1; fitted once per evaluation
        (DEV, DEVN and IWCV share it)."""
        if "weights" not in self.cache:
            need = (self.source_fit_features, self.target_features, self.source_val_features)
            if any(t is None for t in need):
                raise ValueError("importance weights need source_fit_features, target_features "
                                 "and source_val_features")
            self.cache["weights"] = importance_weights(*need)
        return self.cache["weights"]

    def source_val_losses(self) -> Tensor:
        """Per-example cross-entropy on the held-out source, (M,)."""
        return F.cross_entropy(self.source_val_logits.float(), self.source_val_y, reduction="none")


class Validator:
    """Base class: ``score(inputs)`` returns a higher-is-better :class:`ValidatorScore`.

    Class attributes:
        needs_source: reads the held-out labelled source (skipped when there is none).
        cheap: scored at every evaluation (all but reverse validation).
    """

    name: str = ""
    needs_source: bool = False
    cheap: bool = True

    def score(self, inp: ValidatorInputs) -> ValidatorScore:
        raise NotImplementedError


def register_validator(name: str) -> Callable[[type], type]:
    """Class decorator: register a :class:`Validator` subclass under ``name``."""

    def deco(cls: type) -> type:
        cls.name = name
        return VALIDATORS.register(name)(cls)

    return deco


def create_validator(name: str) -> Validator:
    """The validator registered as ``name`` (an unknown name raises with suggestions)."""
    return VALIDATORS.create(name)


def cheap_validators() -> list[str]:
    """Names of the validators scored at every evaluation by default."""
    return [e.name for e in VALIDATORS.entries() if e.factory.cheap]


def resolve_validators(spec: str | Sequence[str]) -> list[str]:
    """``"all_cheap"``, ``"none"`` or a list of registered names -> a list of names.

    Raises:
        ConfigError: an unknown name (with the closest valid ones).
    """
    if isinstance(spec, str):
        if spec == "all_cheap":
            return cheap_validators()
        if spec == "none":
            return []
        spec = [spec]
    for n in spec:
        VALIDATORS.get(n)
    return list(dict.fromkeys(spec))


def _entropy_rows(p: Tensor) -> Tensor:
    """Shannon entropy (nats) of each row of probabilities, (N, K) -> (N,)."""
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


@register_validator("source_val")
class SourceVal(Validator):
    """Accuracy on held-out labelled source (Musgrave et al.'s strong baseline).

    score = (1/M) sum_i [argmax f(x_i^s) = y_i^s]; higher is better.
    Inputs: source_val_logits, source_val_y. se = sqrt(a (1 - a) / M).
    """

    needs_source = True

    def score(self, inp: ValidatorInputs) -> ValidatorScore:
        y = inp.source_val_y
        acc = float((inp.source_val_logits.argmax(-1) == y).float().mean())
        return ValidatorScore(acc, (acc * (1 - acc) / max(len(y), 1)) ** 0.5, float(len(y)))


@register_validator("entropy")
class Entropy(Validator):
    """Negative mean prediction entropy on the target: confident is better.

    Morerio, Cavazza & Murino, "Minimal-Entropy Correlation Alignment for Unsupervised Deep
    Domain Adaptation", ICLR 2018.

    score = -(1/N) sum_i H(p_i), p_i = softmax(f(x_i^t)); higher (more confident) is better.
    Inputs: target_logits.
    """

    def score(self, inp: ValidatorInputs) -> ValidatorScore:
        p = inp.target_logits.double().softmax(-1)
        return ValidatorScore(float(-_entropy_rows(p).mean()))


@register_validator("im")
class InfoMax(Validator):
    """Information maximisation: diversity of the mean prediction minus mean entropy.

    Gomes, Krause & Perona, NeurIPS 2010; Shi & Sha, ICML 2012; a validator in Musgrave et
    al., arXiv:2208.07360.

    score = H((1/N) sum_i p_i) - (1/N) sum_i H(p_i); higher is better, at most ln K.
    Inputs: target_logits.
    """

    def score(self, inp: ValidatorInputs) -> ValidatorScore:
        p = inp.target_logits.double().softmax(-1)
        return ValidatorScore(float(_entropy_rows(p.mean(0)) - _entropy_rows(p).mean()))


@register_validator("bnm")
class BNM(Validator):
    """BNM: nuclear norm of the target softmax matrix (confident and diverse).

    Cui et al., "Towards Discriminability and Diversity: Batch Nuclear-norm Maximization under
    Label Insufficient Situations", CVPR 2020; the BNM validator of Musgrave et al.,
    arXiv:2208.07360.

    score = ||P||_* / N, P = softmax(f(X^t)) of shape (N, K); higher is better.
    Inputs: target_logits.
    """

    def score(self, inp: ValidatorInputs) -> ValidatorScore:
        p = inp.target_logits.double().softmax(-1)
        return ValidatorScore(float(torch.linalg.svdvals(p).sum() / len(p)))


@register_validator("snd")
class SND(Validator):
    """SND: soft neighbourhood density of the target predictions.

    Saito et al., "Tune it the Right Way: Unsupervised Validation of Domain Adaptation via
    Soft Neighborhood Density", ICCV 2021.

    With q_i = p_i / ||p_i|| (L2-normalised target softmax) and s_ij = q_i . q_j (i != j),
    r_ij = softmax_j(s_ij / tau), score = (1/N) sum_i H(r_i), tau = 0.05; higher is better.
    Inputs: target_logits (the paper's choice of the classifier's softmax as features).
    """

    tau = 0.05

    def score(self, inp: ValidatorInputs) -> ValidatorScore:
        q = F.normalize(inp.target_logits.double().softmax(-1), dim=-1)
        s = q @ q.T / self.tau
        s.fill_diagonal_(float("-inf"))
        return ValidatorScore(float(_entropy_rows(s.softmax(-1)).mean()))


@register_validator("class_ami")
class ClassAMI(Validator):
    """ClassAMI: agreement of target k-means clusters with the predicted classes.

    Musgrave, Belongie & Lim, "Three New Validators and a Large-Scale Benchmark Ranking for
    Unsupervised Domain Adaptation", arXiv:2208.07360.

    c = k-means(normalize(features(X^t)), K clusters), yhat = argmax f(X^t);
    score = AMI(c, yhat) (adjusted mutual information); higher is better.
    Inputs: target_features (L2-normalised) and target_logits. k-means and AMI are
    self-contained (:mod:`gradversary.selection.clustering`), seeded by ``inputs.seed``.
    """

    def score(self, inp: ValidatorInputs) -> ValidatorScore:
        if inp.target_features is None:
            raise ValueError("class_ami needs target_features")
        k = min(inp.target_logits.shape[1], len(inp.target_logits))
        feats = F.normalize(inp.target_features.reshape(len(inp.target_features), -1).double(), dim=-1)
        clusters = kmeans(feats, k, seed=inp.seed)
        return ValidatorScore(adjusted_mutual_info(clusters.numpy(),
                                                   inp.target_logits.argmax(-1).numpy()))


@register_validator("dev")
class DEV(Validator):
    """DEV: Deep Embedded Validation risk, negated (importance weights, control variate).

    You et al., ICML 2019. score = -R_DEV, with
    R_DEV = mean(w l) + eta mean(w) - eta, eta = -Cov(w l, w) / Var(w), w the density ratio
    from a logistic domain classifier on features (mean-normalised).
    Inputs: source_val_logits/_y/_features, source_fit_features, target_features.
    """

    needs_source = True

    def weights(self, inp: ValidatorInputs) -> Tensor:
        return inp.importance_weights()

    def score(self, inp: ValidatorInputs) -> ValidatorScore:
        r = dev_risk(inp.source_val_losses(), self.weights(inp))
        return ValidatorScore(-r.risk, r.se, r.ess)


@register_validator("devn")
class DEVN(DEV):
    """DEVN: DEV with max-normalised importance weights, negated.

    Musgrave et al., arXiv:2208.07360: w'_i = w_i / max_j w_j, then score = -R_DEV(l, w').
    Same inputs as ``dev``.
    """

    def weights(self, inp: ValidatorInputs) -> Tensor:
        w = inp.importance_weights()
        return w / w.max()


@register_validator("iwcv")
class IWCV(Validator):
    """IWCV: importance-weighted source validation loss, negated.

    Sugiyama, Krauledat & Mueller, JMLR 2007: score = -(1/M) sum_i w_i l_i. Same inputs and
    weights as ``dev``.
    """

    needs_source = True

    def score(self, inp: ValidatorInputs) -> ValidatorScore:
        r = iwcv_risk(inp.source_val_losses(), inp.importance_weights())
        return ValidatorScore(-r.risk, r.se, r.ess)


@register_validator("mixval")
class MixVal(Validator):
    """MixVal: does the model keep the dominant pseudo-label of mixed target inputs?

    Hu et al., "Mixed Samples as Probes for Unsupervised Model Selection in Domain
    Adaptation", NeurIPS 2023.

    Pair each target input with a random partner, x~ = lam x_i + (1 - lam) x_j (lam = 0.55),
    and ask the model to keep the dominant input's pseudo-label yhat_i. ICE_intra is that
    accuracy over pairs with yhat_i = yhat_j, ICE_inter over pairs with yhat_i != yhat_j;
    score = (ICE_intra + ICE_inter) / 2 (the mean of those present); higher is better.
    Inputs: target_x, logits_fn, target_logits. The pairs are drawn with ``inputs.seed``.
    """

    lam = 0.55

    def score(self, inp: ValidatorInputs) -> ValidatorScore:
        if inp.target_x is None or inp.logits_fn is None:
            raise ValueError("mixval needs target_x and logits_fn")
        x = inp.target_x
        yhat = inp.target_logits.argmax(-1)
        g = torch.Generator().manual_seed(inp.seed + 31337)
        j = torch.randperm(len(x), generator=g)
        xm = self.lam * x.float() + (1 - self.lam) * x[j].float()
        with torch.no_grad():
            pred = torch.cat([inp.logits_fn(xm[i:i + 1024]).float().cpu().argmax(-1)
                              for i in range(0, len(xm), 1024)])
        hit = (pred == yhat).float()
        same = yhat == yhat[j]
        parts = [float(hit[m].mean()) for m in (same, ~same) if bool(m.any())]
        return ValidatorScore(sum(parts) / len(parts))


@register_validator("reverse")
class Reverse(Validator):
    """Reverse validation: source accuracy of a model trained back from target pseudo-labels.

    Ganin et al., JMLR 2016, section 5.1.2; Zhong et al., ECML 2010.
    Higher is better. It trains two models per score, so it is not scored at evaluations:
    it validates finished hyper-parameter settings through
    :func:`gradversary.selection.reverse_validation` (``gradversary bench dann`` uses it
    for the Amazon lambda grid).
    """

    cheap = False
    needs_source = True

    def score(self, inp: ValidatorInputs) -> ValidatorScore:
        raise ValueError("reverse validation retrains the method; it scores a finished "
                         "setting with gradversary.selection.reverse_validation, not a checkpoint")


def score_validators(names: Sequence[str], inputs: ValidatorInputs
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """Score ``inputs`` with each named validator, timing each.

    Returns:
        (scores, seconds): ``score_<name>`` (higher is better), ``score_<name>_se`` and
        ``score_<name>_ess`` where defined; and each validator's wall-clock seconds by name
        (kept apart so that the scores stay bit-for-bit reproducible). Validators that need
        the held-out source are skipped when there is none.
    """
    out: dict[str, float] = {}
    cost: dict[str, float] = {}
    for name in names:
        v = create_validator(name)
        if v.needs_source and not inputs.has_source:
            continue
        t0 = time.perf_counter()
        s = v.score(inputs)
        cost[name] = time.perf_counter() - t0
        out[f"score_{name}"] = s.score
        if s.se is not None:
            out[f"score_{name}_se"] = s.se
        if s.ess is not None:
            out[f"score_{name}_ess"] = s.ess
    return out, cost


@torch.no_grad()
def build_inputs(logits_fn: Callable[[Tensor], Tensor], features_fn: Callable[[Tensor], Tensor],
                 target_x: Tensor, source_fit_x: Tensor | None = None,
                 source_val_x: Tensor | None = None, source_val_y: Tensor | None = None,
                 device: torch.device | str = "cpu", seed: int = 0,
                 batch_size: int = 1024) -> ValidatorInputs:
    """Run the model once over the validators' samples and collect their inputs (CPU).

    Args:
        logits_fn: the model, (N, *) -> (N, K).
        features_fn: its feature extractor, (N, *) -> (N, F).
        target_x: unlabelled target inputs, (N, *).
        source_fit_x: source inputs for the domain classifier, (N_s, *) (or None).
        source_val_x, source_val_y: held-out labelled source, (M, *), (M,) (or None).
        device: where the model runs.
        seed: the validators' seed (see :class:`ValidatorInputs`).
    """

    def run(fn, x):
        return torch.cat([fn(x[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(x), batch_size)])

    def model_on_cpu(x: Tensor) -> Tensor:
        return logits_fn(x.to(device)).float().cpu()

    has_val = source_val_x is not None and source_val_y is not None and len(source_val_x) > 0
    return ValidatorInputs(
        target_logits=run(logits_fn, target_x),
        target_features=run(features_fn, target_x),
        target_x=target_x,
        logits_fn=model_on_cpu,
        source_val_logits=run(logits_fn, source_val_x) if has_val else None,
        source_val_y=source_val_y.cpu() if has_val else None,
        source_val_features=run(features_fn, source_val_x) if has_val else None,
        source_fit_features=(run(features_fn, source_fit_x)
                             if has_val and source_fit_x is not None else None),
        seed=seed,
    )
