"""Configs and the command line: float spellings, value checks, unreadable files, report titles,
class-count warnings and the attack command's message (issue 14)."""

import json
import warnings

import numpy as np
import pytest
import yaml

from gradversary.cli.main import main
from gradversary.config import from_dict, parse_value
from gradversary.engine import load_config, resolve_config
from gradversary.engine.config import OptimConfig
from gradversary.errors import ConfigError


def _moons_cfg(tmp_path, **train) -> dict:
    return {"method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [8]},
            "train": {"steps": 4, "eval_every": 2, "batch_size": 16, "progress": False, **train},
            "out_dir": str(tmp_path / "runs")}


def test_every_python_float_spelling_is_a_float_in_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  momentum: 9E-1\n  groups: {}\n"
                    "train:\n  ema_decay: 99e-2\n  steps: 1e1\n")
    cfg = load_config(path, ["optim.weight_decay=5e-4", "method.lambda_schedule={name: dann_lambda, gamma: 1_0e0}"])
    assert cfg.optim.lr == 0.001 and cfg.optim.momentum == 0.9
    assert cfg.train.ema_decay == 0.99 and cfg.train.steps == 10
    assert cfg.optim.weight_decay == 0.0005 and cfg.method["lambda_schedule"]["gamma"] == 10.0
    assert isinstance(cfg.optim.lr, float) and isinstance(cfg.train.steps, int)
    cfg = resolve_config({"optim": {"lr_schedule": {"name": "inverse_decay", "alpha": "1e1"}}})
    assert cfg.optim.lr_schedule == {"name": "inverse_decay", "alpha": 10.0, "beta": 0.75,
                                     "scale": 1.0}
    # the override parser reads YAML 1.2 floats; integers stay integers, words stay words
    assert parse_value("1e-3") == 0.001 and parse_value("-2.5E+2") == -250.0
    assert parse_value("10") == 10 and isinstance(parse_value("10"), int)
    assert parse_value("e5") == "e5" and parse_value("1e") == "1e"
    # a float field takes any string float() reads, e.g. from a YAML 1.1 reader (bench specs)
    assert from_dict(OptimConfig, {"lr": "2.5e-3", "momentum": " 1_0e-1 "}).lr == 0.0025
    with pytest.raises(ConfigError, match="expected a number"):
        from_dict(OptimConfig, {"lr": "fast"})
    # group overrides are typed too (the trainer builds optimizers from them)
    cfg = resolve_config({"optim": {"groups": {"aux": {"lr": "1e-4"}}}})
    assert cfg.optim.groups["aux"] == {"lr": 0.0001}


@pytest.mark.parametrize("override, match", [
    ("optim.lr=-0.01", r"optim\.lr must be a finite number >= 0, got -0\.01"),
    ("optim.lr=.nan", r"optim\.lr must be a finite number"),
    ("optim.momentum=-0.5", r"optim\.momentum must be a finite number >= 0, got -0\.5"),
    ("optim.weight_decay=-1e-4", r"optim\.weight_decay must be"),
    ("optim.betas=[0.9, 1.5]", r"optim\.betas must be in \[0, 1\)"),
    ("optim.grad_clip=0", r"optim\.grad_clip must be > 0"),
    ("train.threads=-3", r"train\.threads must be .*>= 1.*got -3"),
    ("optim.groups={aux: {lr: -1}}", r"optim\.groups\.aux: optim\.lr must be"),
])
def test_bad_optimizer_and_thread_values_are_config_errors(tmp_path, capsys, override, match):
    with pytest.raises(ConfigError, match=match):
        resolve_config({}, [override])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_moons_cfg(tmp_path)))
    assert main(["train", str(path), override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradversary: error:") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_zero_learning_rate_warns():
    with pytest.warns(UserWarning, match="optim.lr is 0"):
        cfg = resolve_config({}, ["optim.lr=0"])
    assert cfg.optim.lr == 0.0
    with pytest.warns(UserWarning, match=r"optim\.groups\.aux\.lr is 0"):
        resolve_config({}, ["optim.groups={aux: {lr: 0.0}}"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_config({}, ["optim.lr=1e-3"])


def test_config_not_utf8_and_run_config_not_yaml_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\u00e9\ntrain: {steps: 2}\n".encode("latin-1"))
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "latin1.yaml" in err and "Traceback" not in err

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_moons_cfg(tmp_path)))
    run = tmp_path / "run"
    assert main(["train", str(path), "--run-dir", str(run)]) == 0
    (run / "config.yaml").write_text("method: {name: dann\ntrain: [1, 2\n")
    capsys.readouterr()
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "config.yaml" in err and "Traceback" not in err
    (run / "config.yaml").write_bytes(b"method: {name: \xff}\n")
    assert main(["eval", str(run)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_run_report_is_titled_with_the_actual_angle(tmp_path, capsys):
    res = tmp_path / "moons50.md"
    assert main(["run", "dann", "--seeds", "1", "--out-dir", str(tmp_path / "runs"),
                 "--no-progress", "--results", str(res), "data.angle=50", "train.steps=4",
                 "train.eval_every=2"]) == 0
    report = (tmp_path / "runs" / "compare-source-only-DANN" / "report.md").read_text()
    assert report.splitlines()[0] == "# DANN on the two-moons toy (target rotated by 50 degrees)"
    text = res.read_text()
    assert text.startswith("# DANN on the two-moons toy (target rotated by 50 degrees)")
    assert "rotated by 50 degrees about" in text and "35 degrees" not in text


def _npz(path, ys, k_target=2):
    rng = np.random.default_rng(0)
    np.savez(path, x_source=rng.normal(size=(len(ys), 2)), y_source=np.asarray(ys),
             x_target=rng.normal(size=(10, 2)))
    return str(path)


def test_arrays_warns_when_inferred_class_count_has_empty_classes(tmp_path):
    from gradversary.data import create_task

    stray = [0, 1] * 10 + [7]
    with pytest.warns(UserWarning, match=r"8 classes .*only 3 of the class ids 0\.\.7 have source "
                                         r"examples \(none of 2, 3, 4, 5, 6\)"):
        task = create_task("arrays", path=_npz(tmp_path / "a.npz", stray))
    assert task.num_classes == 8  # still honoured: the warning says how to fix it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert create_task("arrays", path=_npz(tmp_path / "b.npz", [0, 1, 2] * 5)).num_classes == 3
        # an explicit count is taken as meant (a class without source examples is allowed)
        create_task("arrays", path=_npz(tmp_path / "c.npz", [0, 2] * 5), num_classes=3)


def test_attack_on_a_non_image_run_names_image_data(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_moons_cfg(tmp_path, eval_every=0)))
    run = tmp_path / "moons"
    assert main(["train", str(path), "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["attack", str(run), "--quick", "--n", "8"]) == 2
    err = capsys.readouterr().err
    assert "attacks need a run on image data in [0, 1]" in err and str(run) in err
    assert "normalisation" not in err and "Traceback" not in err
    assert not (run / "robustness.json").exists()
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
