"""The moons comparison (``gradversary run dann``) reports the default validators' pick as the
honest figure, beside the last step and the oracle."""

import warnings
from pathlib import Path

import pytest

from gradversary.bench.compare import run_comparison
from gradversary.bench.recipes import RECIPES
from gradversary.report.markdown import fmt_mean_std
from gradversary.selection import DEFAULT_VALIDATORS, choose_by_validators
from gradversary.selection.rules import validator_pick

# snd ranks the evaluations 0, 1, 0.5 and source_val 1, 0.5, 0 (normalised): rank means
# 0.5, 0.75, 0.25, so the pick is step 20, neither the last step nor the oracle (step 30)
HISTORY = [
    {"step": 10, "target_test_acc": 0.5, "score_snd": 0.1, "score_source_val": 0.9},
    {"step": 20, "target_test_acc": 0.7, "score_snd": 0.3, "score_source_val": 0.8},
    {"step": 30, "target_test_acc": 0.9, "score_snd": 0.2, "score_source_val": 0.7},
]


def test_mean_std_cells_show_a_spread_only_over_two_or_more_values():
    # sample std of (0.7, 0.9): sqrt(0.02) = 0.1414; one value has no spread to show
    assert fmt_mean_std([0.7, 0.9]) == "0.800 ± 0.141"
    assert fmt_mean_std([0.8, 0.8], 1) == "0.8 ± 0.0"
    assert fmt_mean_std([0.8123]) == "0.812"


def test_validator_pick_takes_the_rank_mean_of_snd_and_source_val_by_hand():
    pick = validator_pick({"history": HISTORY}, "snd+source_val")
    assert pick == {"criterion": "snd+source_val", "step": 20, "target_test_acc": 0.7}
    assert validator_pick({"history": HISTORY}, "snd")["step"] == 20
    assert validator_pick({"history": HISTORY}, "source_val")["step"] == 10


def test_validator_pick_is_none_without_scores_and_warns_when_only_some_are_there():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a record made before the validators: quietly n/a
        assert validator_pick({"final": {"target_test_acc": 0.8}}) is None
        assert validator_pick({"history": [{"step": 5, "target_test_acc": 0.8}]}) is None
    no_source = [{k: v for k, v in h.items() if k != "score_source_val"} for h in HISTORY]
    with pytest.warns(UserWarning, match="score_source_val"):  # e.g. selection.holdout=0
        assert validator_pick({"run": "r", "history": no_source}) is None


def test_moons_comparison_reports_the_validators_pick_beside_last_step_and_oracle(tmp_path):
    recipe = RECIPES.get("dann").factory()
    res = run_comparison(recipe, seeds=[0], out_dir=str(tmp_path), progress=False,
                         overrides=["train.steps=40", "train.eval_every=10", "train.threads=1"])
    header = res.table.splitlines()[0]
    cols = [c.strip() for c in header.strip("|").split("|")]
    honest = cols.index(f"target acc, honest ({DEFAULT_VALIDATORS})")
    assert cols.index("target acc, last step") == honest + 1
    assert "target acc, oracle (chosen on target labels: not honest)" in cols
    for label, runs in res.summaries.items():
        (run,) = runs
        assert len(run["history"]) == 4 and "score_snd" in run["history"][0]
        chosen = choose_by_validators(run["history"], DEFAULT_VALIDATORS)
        assert run["validators"] == {"criterion": DEFAULT_VALIDATORS, "step": chosen["step"],
                                     "target_test_acc": chosen["target_test_acc"]}
        row = next(r for r in res.table.splitlines() if r.startswith(f"| {label} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[honest] == fmt_mean_std([chosen["target_test_acc"]])
        assert cells[honest + 1] == fmt_mean_std([run["final"]["target_test_acc"]])
    assert res.table in res.report.read_text()
    out = res.write_results(tmp_path / "moons.md", command="gradversary run dann", wall_time=1.0)
    assert f"`{DEFAULT_VALIDATORS}`" in out.read_text()  # the notes name the criterion


def test_moons_recipe_evaluates_often_enough_to_select():
    recipe = RECIPES.get("dann").factory()
    for raw in recipe.configs.values():
        assert raw["train"]["steps"] // raw["train"]["eval_every"] >= 30
        assert raw["selection"]["holdout"] > 0  # source_val needs the held-out source
        assert raw["selection"].get("validators", "all_cheap") == "all_cheap"


def test_a_second_comparison_reuses_finished_runs_and_refuses_a_different_config(tmp_path):
    from gradversary.errors import RunExistsError

    recipe = RECIPES.get("dann").factory()
    small = ["train.steps=20", "train.eval_every=10", "train.threads=1"]
    first = run_comparison(recipe, seeds=[0], out_dir=str(tmp_path), progress=False, overrides=small)
    metrics = {r["run_dir"]: (Path(r["run_dir"]) / "metrics.jsonl").stat().st_mtime_ns
               for runs in first.summaries.values() for r in runs}
    again = run_comparison(recipe, seeds=[0], out_dir=str(tmp_path), progress=False, overrides=small)
    for label, runs in again.summaries.items():  # the same figures, and nothing trained again
        assert [r["final"] for r in runs] == [r["final"] for r in first.summaries[label]]
        assert all((Path(r["run_dir"]) / "metrics.jsonl").stat().st_mtime_ns == metrics[r["run_dir"]]
                   for r in runs)
    with pytest.raises(RunExistsError):
        run_comparison(recipe, seeds=[0], out_dir=str(tmp_path), progress=False,
                       overrides=["train.steps=30", "train.eval_every=10", "train.threads=1"])
