"""Runs are never lost silently: no overwrite without --force, resume checks the config,
interrupted writes leave no litter, and checkpoint errors never advise unsafe loading (issue 14)."""

import argparse
import json

import pytest
import torch
import yaml

from gradversary.cli.main import main
from gradversary.engine import Trainer, load_checkpoint, resolve_config
from gradversary.errors import CheckpointError, ConfigError, GradversaryError
from gradversary.io import read_metrics


def _raw(tmp_path, **train) -> dict:
    return {"method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [8]},
            "train": {"steps": 6, "eval_every": 3, "batch_size": 16, "progress": False, **train},
            "out_dir": str(tmp_path / "runs")}


def _yaml(tmp_path, raw: dict, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_training_again_into_a_run_directory_is_refused_without_force(tmp_path, capsys):
    cfg, run = _yaml(tmp_path, _raw(tmp_path)), tmp_path / "run"
    assert main(["train", cfg, "--run-dir", str(run)]) == 0
    summary = (run / "summary.json").read_bytes()
    ckpt = (run / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", cfg, "--run-dir", str(run), "train.seed=3"]) == 2
    err = capsys.readouterr().err
    assert f"run directory {str(run)!r} already holds a finished run" in err
    assert "--resume" in err and "--force" in err and "Traceback" not in err
    assert (run / "summary.json").read_bytes() == summary  # nothing touched
    assert (run / "checkpoints" / "last.pt").read_bytes() == ckpt
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == 0
    # --force trains afresh; --resume continues; both at once is a contradiction
    assert main(["train", cfg, "--run-dir", str(run), "train.seed=3", "--force"]) == 0
    assert json.loads((run / "summary.json").read_text())["seed"] == 3
    assert main(["train", cfg, "--run-dir", str(run), "train.seed=3", "--resume", "--force"]) == 2
    # the library refuses too, also for an unfinished run, and an empty directory is fine
    (run / "summary.json").unlink()
    with pytest.raises(GradversaryError, match="an unfinished run"):
        Trainer(resolve_config(_raw(tmp_path)), run_dir=run).fit()
    (tmp_path / "empty").mkdir()
    Trainer(resolve_config(_raw(tmp_path)), run_dir=tmp_path / "empty").fit()
    # `gradversary run` over its own earlier runs: the same config is reused (nothing trained
    # again), another config is refused unless --force
    args = ["run", "dann", "--seeds", "1", "--out-dir", str(tmp_path / "cmp"), "--no-progress",
            "train.eval_every=1"]
    assert main([*args, "train.steps=2"]) == 0
    first = sorted((tmp_path / "cmp").glob("*-s0/metrics.jsonl"))
    assert len(first) == 2
    stamps = [p.stat().st_mtime_ns for p in first]
    assert main([*args, "train.steps=2"]) == 0
    assert [p.stat().st_mtime_ns for p in first] == stamps
    capsys.readouterr()
    assert main([*args, "train.steps=3"]) == 2 and "already holds a finished run" in capsys.readouterr().err
    assert main([*args, "train.steps=3", "--force"]) == 0
    # a fit without a run directory (the scikit-learn estimator) is unaffected
    t = Trainer(resolve_config(_raw(tmp_path)), run_dir=run, persist=False)
    assert t.fit()["steps"] == 6


def test_resume_refuses_config_changes_and_records_the_allowed_ones(tmp_path, capsys):
    cfg, run = _yaml(tmp_path, _raw(tmp_path)), tmp_path / "run"
    assert main(["train", cfg, "--run-dir", str(run)]) == 0
    before = (run / "config.yaml").read_text()
    capsys.readouterr()
    rc = main(["train", cfg, "--run-dir", str(run), "--resume", "train.seed=7", "optim.lr=0.2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot resume with a different config" in err
    assert "train.seed 0 -> 7" in err and "optim.lr 0.01 -> 0.2" in err
    assert (run / "config.yaml").read_text() == before
    assert json.loads((run / "summary.json").read_text())["seed"] == 0
    # more steps: the DANN schedules depend on progress, so the trained part would change
    assert main(["train", cfg, "--run-dir", str(run), "--resume", "train.steps=12"]) == 2
    assert "train.steps 6 -> 12 (a schedule depends on progress" in capsys.readouterr().err
    # operational keys may change, and are recorded; the progress bar is not even noted
    assert main(["train", cfg, "--run-dir", str(run), "--resume", "train.threads=1",
                 "train.log_every=2", "train.progress=true"]) == 0
    rec = read_metrics(run / "metrics.jsonl", kind="resume")
    assert rec == [{"kind": "resume", "step": 6,
                    "changed": {"train.log_every": [10, 2], "train.threads": ["auto", 1]}}]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_with_changes"] == rec
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["threads"] == 1


def test_constant_schedules_may_be_extended_on_resume(tmp_path):
    raw = _raw(tmp_path)
    raw["method"] = {"name": "erm"}
    raw["optim"] = {"lr_schedule": {"name": "constant"}}
    Trainer(resolve_config(raw), run_dir=tmp_path / "r").fit()
    longer = resolve_config(raw, ["train.steps=10"])
    summary = Trainer(longer, run_dir=tmp_path / "r").fit(resume=True)
    assert summary["steps"] == 10
    assert summary["resumed_with_changes"][0]["changed"] == {"train.steps": [6, 10]}
    # never shorter than the step already reached
    with pytest.raises(ConfigError, match="already at step 10"):
        Trainer(resolve_config(raw, ["train.steps=8"]), run_dir=tmp_path / "r").fit(resume=True)
    from gradversary.engine.resume import config_changes

    assert config_changes({"a": {"b": 1, "c": [1]}}, {"a": {"b": 1, "c": [2]}, "d": 0}) == {
        "a.c": ([1], [2]), "d": ("<unset>", 0)}


def test_step_clocked_schedules_may_be_extended_and_match_the_longer_run(tmp_path):
    """tllib's schedules count steps, so 6 steps extended to 10 are the 10-step run exactly; a
    progress ramp in the same run (the DANN paper's lambda) makes the extension refused."""
    raw = _raw(tmp_path, eval_every=2)
    raw["method"] = {"name": "dann", "lambda_schedule": {"name": "warm_start_lambda", "gamma": 0.3}}
    raw["optim"] = {"lr_schedule": {"name": "inverse_decay_steps", "gamma": 0.2}}
    whole = Trainer(resolve_config(raw, ["train.steps=10"]), run_dir=tmp_path / "whole").fit()
    Trainer(resolve_config(raw), run_dir=tmp_path / "ext").fit()
    ext = Trainer(resolve_config(raw, ["train.steps=10"]), run_dir=tmp_path / "ext").fit(resume=True)
    assert ext["steps"] == whole["steps"] == 10

    def trained(run):
        rows = read_metrics(tmp_path / run / "metrics.jsonl", kind="train")
        return [(r["step"], r["loss"], r["grl_lambda"], r["lr_main"]) for r in rows]

    assert trained("ext") == trained("whole") and len(trained("whole")) >= 2
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["method"]
    b = load_checkpoint(tmp_path / "ext" / "checkpoints" / "last.pt")["method"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    raw["optim"] = {"lr_schedule": {"name": "inverse_decay", "alpha": 10.0}}  # by progress
    Trainer(resolve_config(raw), run_dir=tmp_path / "prog").fit()
    with pytest.raises(ConfigError, match="depends on progress"):
        Trainer(resolve_config(raw, ["train.steps=10"]), run_dir=tmp_path / "prog").fit(resume=True)


def test_interrupted_writes_leave_no_temporaries_after_start_or_resume(tmp_path):
    run = tmp_path / "run"
    Trainer(resolve_config(_raw(tmp_path)), run_dir=run).fit()
    litter = [run / "checkpoints" / ".last.pt.k1ll3d.tmp", run / "checkpoints" / ".best.pt.x.tmp",
              run / ".config.yaml.ab12.tmp", run / ".summary.json.zz.tmp"]
    for p in litter:
        p.write_bytes(b"half a file")
    keep = run / "notes.tmp"  # not ours: not hidden
    keep.write_text("mine")
    Trainer(resolve_config(_raw(tmp_path)), run_dir=run).fit(resume=True)
    assert not any(p.exists() for p in litter) and keep.exists()
    for p in litter:
        p.write_bytes(b"half a file")
    Trainer(resolve_config(_raw(tmp_path)), run_dir=run).fit(force=True)
    assert not any(p.exists() for p in litter) and keep.exists()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 6


def test_corrupt_checkpoint_error_never_advises_unsafe_loading(tmp_path):
    ckpt = tmp_path / "last.pt"
    cases = [
        lambda: torch.save({"format": "gradversary-checkpoint-v1", "x": argparse.Namespace()}, ckpt),
        lambda: ckpt.write_bytes(b"\x80\x02garbage that is not a pickle"),
        lambda: ckpt.write_bytes(b"not a checkpoint at all"),
    ]
    messages = []
    for make in cases:
        make()
        with pytest.raises(CheckpointError) as exc:
            load_checkpoint(ckpt)
        messages.append(msg := str(exc.value))
        assert str(ckpt) in msg and "corrupt or not a gradversary checkpoint" in msg
        for advice in ("weights_only", "False", "trust", "safe_globals", "arbitrary code"):
            assert advice not in msg, (advice, msg)
    assert "argparse.Namespace" in messages[0]  # what it held, without how to let it in
