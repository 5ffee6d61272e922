"""Named recipes: a method and its baseline, configured alike, for ``gradversary run``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..registry import Registry
from ..selection import DEFAULT_VALIDATORS

__all__ = ["Recipe", "RECIPES"]

RECIPES = Registry("recipe")


@dataclass
class Recipe:
    """A comparison: configs by label (the first is the baseline) and the metrics to show.

    Args:
        title: heading of reports; ``{key}`` fields are filled from the task's ``meta``.
        configs: label -> raw run config (validated when the run starts).
        metrics: columns to tabulate, in order: header -> path into the run summary, e.g.
            ``final/target_test_acc`` (last model), ``validators/target_test_acc`` (the
            evaluation ``validators`` pick, no target labels), ``selection/metrics/target_test_acc``
            (the run's ``selection.criterion`` checkpoint), ``oracle/target_test_acc``.
        notes: Markdown paragraphs for the results file (where the recipe comes from).
        seed_keys: config keys set to the seed of each repetition.
        validators: the label-free validators whose pick from each run's history is its
            ``validators`` entry (:func:`gradversary.selection.choose_by_validators`).
    """

    title: str
    configs: dict[str, dict]
    metrics: dict[str, str] = field(default_factory=lambda: {
        "source acc": "final/source_test_acc", "target acc": "final/target_test_acc"})
    notes: list[str] = field(default_factory=list)
    seed_keys: list[str] = field(default_factory=lambda: ["train.seed"])
    validators: str = DEFAULT_VALIDATORS

    def for_task(self, meta: dict) -> Recipe:
        """This recipe with ``{key}`` fields of its title and notes filled from the task's
        ``meta`` (e.g. the angle of the rotated moons, which an override may change) and
        ``{validators}`` with :attr:`validators`."""
        def fill(text: str) -> str:
            try:
                return text.format_map({**meta, "validators": self.validators})
            except (KeyError, IndexError, ValueError):
                return text
        return replace(self, title=fill(self.title), notes=[fill(n) for n in self.notes])


_MOONS_MODEL = {"name": "mlp", "hidden": [15, 15]}
_MOONS_TRAIN = {"steps": 3000, "eval_every": 100, "batch_size": 128}
_MOONS_OPTIM = {"name": "sgd", "lr": 0.05, "momentum": 0.9,
                "lr_schedule": {"name": "inverse_decay", "alpha": 10.0, "beta": 0.75}}


@RECIPES.register("dann")
def moons_dann() -> Recipe:
    """DANN against source-only on the two-moons toy (embedded data, no files needed)."""
    base = {"model": _MOONS_MODEL, "data": {"name": "moons"}, "optim": _MOONS_OPTIM,
            "train": _MOONS_TRAIN, "selection": {"criterion": "dev", "holdout": 0.1}}
    return Recipe(
        title="DANN on the two-moons toy (target rotated by {angle:g} degrees)",
        configs={
            "source-only": {**base, "method": {"name": "erm"}},
            "DANN": {**base, "method": {"name": "dann", "disc_hidden": [100],
                                        "lambda_schedule": {"name": "dann_lambda", "gamma": 10.0,
                                                            "max": 2.0}}},
        },
        metrics={
            "source acc": "final/source_test_acc",
            "domain acc": "final/domain_acc",
            f"target acc, honest ({DEFAULT_VALIDATORS})": "validators/target_test_acc",
            "target acc, last step": "final/target_test_acc",
            "target acc, DEV-selected": "selection/metrics/target_test_acc",
            "target acc, oracle (chosen on target labels: not honest)": "oracle/target_test_acc",
        },
        seed_keys=["train.seed", "data.seed"],
        notes=[
            "Data: the DANN paper's toy (section 5.1.1): 150 labelled source points a moon, "
            "300 unlabelled target points drawn from the same moons rotated by {angle:g} degrees about "
            "their centre; accuracies are on fresh test samples of 1,000 points a domain. Seed k "
            "draws both the data (data.seed = k) and the initialisation and batches (train.seed = k).",
            "Recipe: MLP with two hidden layers of 15 ReLU units, domain head of 100 units, SGD "
            "(momentum 0.9) at mu_p = 0.05 / (1 + 10 p)^0.75, GRL lambda_p = 2 (2 / (1 + exp(-10 p)) - 1), "
            "3,000 steps of 64 source + 64 target points. The paper used one hidden layer of 15 "
            "units and lambda = 6; here that reached a mean target accuracy of 0.874 over six "
            "tuning runs (one at 0.618). This recipe was chosen on target accuracy over training "
            "seeds 100-107 (data seeds 0-2), not the training seeds reported below: mean 0.968 "
            "(min 0.944) on data seeds 1-2 and 0.951 (min 0.933) on data seed 0. Variants tried "
            "and set aside: lambda 1 or 3, 6,000 steps, a 100-100 domain head, 32-32 features, "
            "batches of 256, Adam, faster LR decay, weight averaging (EMA 0.99: 0.964 / 0.950). "
            "DANN on this toy occasionally lands in a partial alignment (target accuracy ~0.76); "
            "the standard deviation shows it.",
            "domain acc is the domain classifier's balanced accuracy on source vs target test "
            "points (0.5: indistinguishable). Source-only has no domain classifier.",
            "The honest figure is the evaluation that the default label-free validators pick "
            "among each run's 30 (every 100 steps): `{validators}`, the rank mean of soft "
            "neighbourhood density on the unlabelled target and accuracy on 10% of the source "
            "held out (30 points). No target label is read to make the choice. The default is "
            "the criterion of lowest mean regret over the benchmark's task families in "
            "[validators.md](validators.md), these moons among them (runs of this recipe): an "
            "in-sample choice for this table; chosen without the moons, the rule takes another "
            "criterion, whose figure is the *held out* column there. The last step is the "
            "paper's figure. DEV-selected is the former default "
            "(Deep Embedded Validation, You et al., ICML 2019): on this toy it is noise, because "
            "the held-out source is classified perfectly and its losses are ~0.01, so the "
            "weighted risk ranks calibration, not accuracy. The oracle column (the best of the "
            "30 evaluations on target labels) is an upper bound, not an honest figure.",
            "Disclosure: the same seeds without the held-out source (all 300 points for "
            "training) gave DANN 0.887 ± 0.110 on the target (seed 0 at 0.761, a partial "
            "alignment); DANN on this toy is that sensitive to the draw.",
        ],
    )
