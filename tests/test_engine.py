import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gradversary.engine import Trainer, load_checkpoint, resolve_config
from gradversary.errors import CheckpointError, ConfigError, DataError, DivergenceError
from gradversary.io import read_metrics

HERE = Path(__file__).parent


def _cfg(**train):
    from _resume_child import CFG  # the killed child trains this same config

    return resolve_config({**CFG, "train": {**CFG["train"], **train}})


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path, env_src):
    full = tmp_path / "full"
    Trainer(_cfg(), run_dir=full).fit()

    cut = tmp_path / "cut"
    proc = subprocess.run([sys.executable, str(HERE / "_resume_child.py"), str(cut), "25"],
                          env=env_src, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    assert load_checkpoint(cut / "checkpoints" / "last.pt")["step"] == 20
    assert not (cut / "summary.json").exists()

    Trainer(_cfg(), run_dir=cut).fit(resume=True)
    a, b = read_metrics(full / "metrics.jsonl"), read_metrics(cut / "metrics.jsonl")
    assert a == b  # every training and evaluation record, bit for bit
    sa = load_checkpoint(full / "checkpoints" / "last.pt")["method"]
    sb = load_checkpoint(cut / "checkpoints" / "last.pt")["method"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert json.loads((cut / "summary.json").read_text())["final"] == \
        json.loads((full / "summary.json").read_text())["final"]


def test_checkpoint_loads_with_weights_only_and_holds_everything(tmp_path):
    Trainer(_cfg(steps=10), run_dir=tmp_path).fit()
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert {"method", "optimizers", "schedules", "samplers", "rng", "step"} <= set(state)
    assert state["step"] == 10
    assert state["schedules"]["grl_lambda"]["p"] == pytest.approx(0.9)
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "report.md").exists()


def test_nan_loss_stops_names_the_step_and_keeps_last_good_checkpoint(tmp_path):
    def poison(info):
        if info.step == 23:  # corrupt a weight after step 23: step 24's loss is NaN
            with torch.no_grad():
                info.trainer.method.model.head.weight.fill_(float("nan"))

    tr = Trainer(_cfg(), run_dir=tmp_path, callbacks=[poison])
    with pytest.raises(DivergenceError, match="step 24") as exc:
        tr.fit()
    assert exc.value.step == 24
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 20
    assert all(torch.isfinite(v).all() for v in state["method"].values() if v.is_floating_point())
    assert str(tmp_path / "checkpoints" / "last.pt") in str(exc.value)
    assert not (tmp_path / "summary.json").exists()


def test_corrupt_and_missing_checkpoints_raise_clear_errors(tmp_path):
    Trainer(_cfg(steps=10), run_dir=tmp_path).fit()
    ckpt = tmp_path / "checkpoints" / "last.pt"
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(ckpt)
    ckpt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=str(ckpt.name)):
        Trainer(_cfg(steps=10), run_dir=tmp_path).fit(resume=True)
    with pytest.raises(CheckpointError, match="does not exist"):
        Trainer(_cfg(steps=10), run_dir=tmp_path / "nowhere").fit(resume=True)
    # a pickled object that would run code is refused by weights_only loading
    torch.save({"format": "gradversary-checkpoint-v1", "evil": np.dtype}, ckpt)
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt)


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from gradversary.engine import checkpoint as ck

    path = tmp_path / "c.pt"
    ck.save_checkpoint(path, {"step": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(path, {"step": 2})
    assert ck.load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("case, match", [
    ("feature_mismatch", r"input shape of 'target' is \(3,\)"),
    ("label_range", r"labels must lie in \[0, 1\]"),
    ("empty_target", "target: the domain is empty"),
    ("nan_inputs", "NaN"),
])
def test_bad_data_gives_clear_error_and_no_files(tmp_path, case, match):
    rng = np.random.default_rng(0)
    arrays = {"x_source": rng.normal(size=(20, 2)), "y_source": rng.integers(0, 2, 20),
              "x_target": rng.normal(size=(20, 2))}
    if case == "feature_mismatch":
        arrays["x_target"] = rng.normal(size=(20, 3))
    elif case == "label_range":
        arrays["y_source"] = arrays["y_source"] * 3
    elif case == "empty_target":
        arrays["x_target"] = np.zeros((0, 2))
    elif case == "nan_inputs":
        arrays["x_source"][3, 1] = np.nan
    path = _npz(tmp_path / "d.npz", **arrays)
    cfg = resolve_config({"data": {"name": "arrays", "path": path, "num_classes": 2},
                          "train": {"steps": 3, "progress": False}})
    run_dir = tmp_path / "run"
    with pytest.raises(DataError, match=match):
        Trainer(cfg, run_dir=run_dir).fit()
    assert not run_dir.exists()


def test_missing_and_corrupt_data_files(tmp_path):
    cfg = resolve_config({"data": {"name": "arrays", "path": str(tmp_path / "none.npz")}})
    with pytest.raises(DataError, match="does not exist"):
        Trainer(cfg, run_dir=tmp_path / "r")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04garbage")
    cfg = resolve_config({"data": {"name": "arrays", "path": str(bad)}})
    with pytest.raises(DataError, match="cannot read"):
        Trainer(cfg, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_require_file_names_file_checksum_and_source(tmp_path):
    from gradversary.data.root import require_file, sha256sum

    with pytest.raises(DataError, match=r"missing data file .*x\.bin.*expected sha256 abc.*from SOMEWHERE"):
        require_file(tmp_path, "x.bin", "abc", "SOMEWHERE")
    (tmp_path / "x.bin").write_bytes(b"hello")
    with pytest.raises(DataError, match="corrupt data file"):
        require_file(tmp_path, "x.bin", "0" * 64, "SOMEWHERE")
    assert require_file(tmp_path, "x.bin", sha256sum(tmp_path / "x.bin"), "S").name == "x.bin"


def test_data_root_resolution(tmp_path, monkeypatch):
    from gradversary.data.root import ENV_VAR, resolve_data_root

    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert resolve_data_root() == tmp_path
    assert resolve_data_root(str(tmp_path)) == tmp_path
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(DataError, match=ENV_VAR):
        resolve_data_root()
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    with pytest.raises(DataError, match="--data-root"):
        resolve_data_root()


def test_unknown_config_keys_are_rejected_with_suggestions():
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        resolve_config({"train": {"stpes": 3}})
    with pytest.raises(ConfigError, match="did you mean 'lambda_schedule'"):
        resolve_config({"method": {"name": "dann", "lamda_schedule": {}}})
    with pytest.raises(ConfigError, match="did you mean 'dann'"):
        resolve_config({"method": {"name": "dan"}})
    with pytest.raises(ConfigError, match="did you mean 'hidden'"):
        resolve_config({"model": {"name": "mlp", "hiden": [3]}})
    with pytest.raises(ConfigError, match="did you mean 'optim'"):
        resolve_config({"optimm": {}})
    with pytest.raises(ConfigError, match="expected an integer"):
        resolve_config({"train": {"steps": "many"}})
    with pytest.raises(ConfigError, match="did you mean 'gamma'"):
        resolve_config({"method": {"name": "dann", "lambda_schedule": {"name": "dann_lambda", "gama": 1}}})
    with pytest.raises(ConfigError, match="choose one of"):
        resolve_config({"method": {"name": "dann", "bn_policy": "both"}})


def test_resolved_config_fills_defaults_and_overrides():
    cfg = resolve_config({"method": {"name": "dann"}}, ["optim.lr=0.5", "train.steps=7",
                                                        "method.disc_hidden=[4, 4]"])
    assert cfg.optim.lr == 0.5 and cfg.train.steps == 7
    assert cfg.method["disc_hidden"] == [4, 4] and cfg.method["bn_policy"] == "joint"
    again = resolve_config(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()


def test_written_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from gradversary.io import atomic_write_text, default_mode

    atomic_write_text(tmp_path / "a.md", "x")
    Trainer(_cfg(steps=5), run_dir=tmp_path / "r").fit()
    for p in (tmp_path / "a.md", tmp_path / "r" / "checkpoints" / "last.pt", tmp_path / "r" / "summary.json"):
        assert stat.S_IMODE(os.stat(p).st_mode) == default_mode(), p


def test_collapse_to_chance_is_warned_once_and_reported(tmp_path, caplog):
    def kill_units(info):
        if info.step == 300:  # a collapse: every hidden unit dead, logits constant
            with torch.no_grad():
                for p in info.trainer.method.model.features.parameters():
                    p.fill_(-1.0)

    cfg = resolve_config({"method": {"name": "erm"}, "model": {"name": "mlp", "hidden": [8]},
                          "optim": {"lr": 0.1},
                          "train": {"steps": 400, "eval_every": 200, "log_every": 20,
                                    "batch_size": 32, "progress": False}})
    with caplog.at_level("WARNING"):
        summary = Trainer(cfg, run_dir=tmp_path, callbacks=[kill_units]).fit()
    assert len(summary["warnings"]) == 1 and "collapsed" in summary["warnings"][0]
    assert "collapsed" in caplog.text
    flagged = [r for r in read_metrics(tmp_path / "metrics.jsonl", kind="train") if r.get("collapse_warning")]
    assert len(flagged) == 1 and flagged[0]["step"] > 300
    # a healthy run raises no warning
    cfg2 = resolve_config(cfg.to_dict(), ["train.steps=200"])
    assert Trainer(cfg2, run_dir=tmp_path / "ok").fit()["warnings"] == []


def test_collapse_watch_is_checkpointed_so_a_resumed_run_still_warns(tmp_path):
    class Stop(Exception):
        pass

    def stop(info):
        if info.step == 200:
            raise Stop

    def kill_units(info):
        if info.step == 300:
            with torch.no_grad():
                for p in info.trainer.method.model.features.parameters():
                    p.fill_(-1.0)

    cfg = resolve_config({"method": {"name": "erm"}, "model": {"name": "mlp", "hidden": [8]},
                          "optim": {"lr": 0.1},
                          "train": {"steps": 400, "eval_every": 200, "log_every": 20,
                                    "batch_size": 32, "progress": False}})
    with pytest.raises(Stop):
        Trainer(cfg, run_dir=tmp_path, callbacks=[stop]).fit()
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["collapse"]["best_loss"] < 0.5 * math.log(2)
    # the loss fell before the interruption: the collapse after it is still seen
    summary = Trainer(cfg, run_dir=tmp_path, callbacks=[kill_units]).fit(resume=True)
    assert len(summary["warnings"]) == 1 and "collapsed" in summary["warnings"][0]
    # a checkpoint from before the watch was saved still loads (the watch restarts)
    del state["collapse"]
    tr = Trainer(cfg, run_dir=tmp_path / "old")
    tr.load_state_dict(state)
    assert tr.step == 200 and tr.collapse.best_loss == math.inf


def test_method_declares_needs_teacher():
    from gradversary.methods.base import METHODS, Method

    assert Method.needs_teacher is False
    assert METHODS.get("erm").factory.needs_teacher is False
