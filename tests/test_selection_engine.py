"""Checkpoint selection in the engine uses no target labels, and the oracle is labelled."""

import json

import pytest
import torch

from gradversary.data import DATask, DomainData, create_task
from gradversary.engine import Trainer, load_checkpoint, resolve_config


def _cfg(criterion):
    return resolve_config({"method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [8]},
                           "train": {"steps": 60, "eval_every": 10, "batch_size": 32, "progress": False},
                           "selection": {"criterion": criterion}})


@pytest.mark.parametrize("criterion", ["source_val", "iwcv", "dev", "dev_cv"])
def test_selected_checkpoint_is_independent_of_target_labels(tmp_path, criterion):
    task = create_task("moons")
    runs = {}
    for name, flip in (("true", False), ("scrambled", True)):
        tt = task.eval["target_test"]
        y = tt.y[torch.randperm(len(tt.y), generator=torch.Generator().manual_seed(1))] if flip else tt.y
        t2 = DATask(task.source, task.target, 2, eval={"source_test": task.eval["source_test"],
                                                         "target_test": DomainData(tt.x, y)})
        tr = Trainer(_cfg(criterion), run_dir=tmp_path / name, task=t2)
        runs[name] = tr.fit()
    a, b = runs["true"]["selection"], runs["scrambled"]["selection"]
    assert a["criterion"] == criterion and a["step"] == b["step"]
    assert a["metrics"]["select_risk"] == b["metrics"]["select_risk"]
    assert "source_val_acc" in a["metrics"]
    best = load_checkpoint(tmp_path / "true" / "checkpoints" / "best.pt")
    assert best["step"] == a["step"]
    summary = json.loads((tmp_path / "true" / "summary.json").read_text())
    assert "oracle" in summary and "target labels" in summary["oracle"]["note"]


def test_holdout_removes_source_examples_and_default_has_none(tmp_path):
    tr = Trainer(_cfg("dev"), run_dir=tmp_path / "a")
    assert len(tr.task.source) == 270 and len(tr.task.eval["source_val"]) == 30
    tr2 = Trainer(resolve_config({"train": {"steps": 2, "progress": False}}), run_dir=tmp_path / "b")
    assert len(tr2.task.source) == 300 and "source_val" not in tr2.task.eval


def test_selection_config_errors():
    from gradversary.errors import ConfigError

    with pytest.raises(ConfigError, match="needs selection.holdout"):
        resolve_config({"selection": {"criterion": "dev", "holdout": 0.0}})
    with pytest.raises(ConfigError, match="choose one of"):
        resolve_config({"selection": {"criterion": "oracle"}})
    with pytest.raises(ConfigError, match="selection.rule"):
        resolve_config({"selection": {"criterion": "dev", "rule": "median"}})


def _replay(rule, risks, ses):
    """Feed a risk series through the checkpoint selector; returns the kept step."""
    from gradversary.selection.selector import CheckpointSelector

    sel = CheckpointSelector("dev", rule, "none", 10, 0, torch.zeros(20, 2), torch.zeros(20, 2))
    for step, (r, se) in enumerate(zip(risks, ses), 1):
        sel.update(step, {"select_risk": r, "select_se": se})
    return sel.best["step"]


def test_one_se_rule_keeps_the_latest_checkpoint_within_one_se_of_the_minimum():
    risks = [0.50, 0.30, 0.36, 0.20, 0.27, 0.29, 0.23]
    ses = [0.05, 0.05, 0.05, 0.08, 0.05, 0.05, 0.05]
    assert _replay("min", risks, ses) == 4                # the minimum, 0.20
    # threshold 0.20 + 0.08 (the SE at the minimum): steps 5 (0.27) and 7 (0.23) qualify
    assert _replay("one_se", risks, ses) == 7
    # a minimum after a qualifying checkpoint lowers the bar: the earlier pick is dropped
    assert _replay("one_se", [0.30, 0.31, 0.10, 0.35], [0.02, 0.02, 0.01, 0.02]) == 3
    # with zero noise the rule is the minimum (the latest of ties)
    assert _replay("one_se", [0.3, 0.2, 0.2, 0.4], [0.0] * 4) == 3


def test_one_se_rule_in_a_run_matches_its_logged_risks(tmp_path):
    from gradversary.io import read_metrics

    cfg = resolve_config({"method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [8]},
                          "train": {"steps": 60, "eval_every": 10, "batch_size": 32, "progress": False},
                          "selection": {"criterion": "dev", "rule": "one_se"}})
    summary = Trainer(cfg, run_dir=tmp_path / "r").fit()
    evals = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl", kind="eval") if "select_risk" in r]
    assert all(r["select_se"] > 0 for r in evals)
    low = min(evals, key=lambda r: r["select_risk"])
    want = max(r["step"] for r in evals if r["select_risk"] <= low["select_risk"] + low["select_se"])
    assert summary["selection"]["step"] == want and summary["selection"]["rule"] == "one_se"
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "best.pt")["step"] == want


@pytest.mark.parametrize("rule", ["min", "one_se"])
def test_choice_from_history_matches_the_trainer_s_online_choice(rule):
    from gradversary.selection import choose_checkpoint

    cases = [([0.50, 0.30, 0.36, 0.20, 0.27, 0.29, 0.23], [0.05, 0.05, 0.05, 0.08, 0.05, 0.05, 0.05]),
             ([0.30, 0.31, 0.10, 0.35], [0.02, 0.02, 0.01, 0.02]),
             ([0.3, 0.2, 0.2, 0.4], [0.0] * 4)]
    for risks, ses in cases:
        hist = [{"step": i + 1, "select_risk": r, "select_se": s} for i, (r, s) in enumerate(zip(risks, ses))]
        assert choose_checkpoint(hist, rule)["step"] == _replay(rule, risks, ses)


@pytest.mark.parametrize("rule", ["min", "one_se"])
def test_a_run_s_summary_history_reproduces_its_selection(tmp_path, rule):
    from gradversary.selection import choose_checkpoint

    cfg = resolve_config({"method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [8]},
                          "train": {"steps": 60, "eval_every": 10, "batch_size": 32, "progress": False},
                          "selection": {"criterion": "dev", "rule": rule}})
    summary = Trainer(cfg, run_dir=tmp_path / "r").fit()
    hist = summary["history"]
    assert [h["step"] for h in hist] == [10, 20, 30, 40, 50, 60]
    assert all({"target_test_acc", "select_risk", "select_se", "select_ess"} <= set(h) for h in hist)
    chosen = choose_checkpoint(hist, rule)
    assert chosen["step"] == summary["selection"]["step"]
    assert chosen["target_test_acc"] == summary["selection"]["metrics"]["target_test_acc"]


def test_choice_from_history_distrusts_degenerate_weights():
    from gradversary.selection import choose_checkpoint

    hist = [{"step": 1, "select_risk": 0.1, "select_ess": 4.0},
            {"step": 2, "select_risk": 0.3, "select_ess": 150.0},
            {"step": 3, "select_risk": 0.2, "select_ess": 120.0},
            {"step": 4, "select_risk": 0.5, "select_ess": 3.0}]
    assert choose_checkpoint(hist)["step"] == 1
    assert choose_checkpoint(hist, min_ess=100)["step"] == 3     # step 1's estimate rests on 4 examples
    assert choose_checkpoint(hist, min_ess=1000)["step"] == 4    # none trusted: the end point
    assert choose_checkpoint([{"step": 5, "target_test_acc": 0.7}])["step"] == 5  # unscored run: last
    with pytest.raises(ValueError, match="empty history"):
        choose_checkpoint([])
    with pytest.raises(ValueError, match="unknown selection rule"):
        choose_checkpoint(hist, "max")


def test_checkpoint_selector_owns_the_pick_and_its_state():
    from gradversary.selection.selector import CheckpointSelector

    x = torch.arange(40.0).reshape(20, 2)
    sel = CheckpointSelector("dev", "min", "none", 5, 0, x, x + 100)
    assert sel.fit_s.shape == (5, 2) and sel.fit_t.shape == (5, 2) and sel.validators == []
    assert sel.update(3, {"select_risk": 0.2, "select_se": 0.1})       # the caller saves best.pt
    assert not sel.update(4, {"select_risk": 0.3, "select_se": 0.1})
    assert not sel.update(5, {"target_test_acc": 1.0})                  # no risk: no decision
    again = CheckpointSelector("dev", "min", "none", 5, 0, x, x + 100)
    again.load_state_dict(sel.state_dict())
    assert again.best == sel.best and torch.equal(again.fit_s, sel.fit_s)
    assert again.summary(9, {"a": 1.0}) == {"criterion": "dev", "rule": "min", "step": 3,
                                             "metrics": {"select_risk": 0.2, "select_se": 0.1}}
    last = CheckpointSelector("last", "min", "none", 5, 0, x, x)
    assert last.summary(9, {"a": 1.0})["step"] == 9 and last.score(None, None, None, "cpu") == ({}, {})
