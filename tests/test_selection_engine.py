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


@pytest.mark.parametrize("criterion", ["source_val", "iwcv", "dev"])
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
