import json
import subprocess
import sys

import pytest
import yaml

from gradversary.cli.main import main


def _write_cfg(tmp_path, **train):
    cfg = {"method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [8]},
           "train": {"steps": 6, "eval_every": 3, "batch_size": 16, **train},
           "out_dir": str(tmp_path / "runs")}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_train_eval_and_resume_from_yaml(tmp_path, capsys):
    cfg = _write_cfg(tmp_path)
    assert main(["train", str(cfg), "train.seed=2", "--no-progress"]) == 0
    run = tmp_path / "runs" / "dann-moons-s2"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "report.md", "checkpoints/last.pt"):
        assert (run / name).exists(), name
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["seed"] == 2 and saved["method"]["bn_policy"] == "joint"
    final = json.loads((run / "summary.json").read_text())["final"]
    assert {"source_test_acc", "target_test_acc", "domain_acc"} <= set(final)
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == 6
    assert out["target_test_acc"] == pytest.approx(final["target_test_acc"])
    # resuming a finished run is a no-op that keeps the results
    assert main(["train", str(cfg), "train.seed=2", "--resume", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["final"] == final


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    cfg = _write_cfg(tmp_path)
    assert main(["train", str(cfg), "train.stps=3"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'steps'" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert main(["eval", str(tmp_path)]) == 2
    assert main(["train", str(cfg), "data.n_target=0"]) == 2
    assert "empty" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_cli_list_shows_every_registry(capsys):
    from gradversary.data import DATASETS
    from gradversary.methods import METHODS
    from gradversary.models import MODELS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for reg in (METHODS, MODELS, DATASETS):
        for name in reg.names():
            assert name in out


def test_cli_run_recipe_prints_side_by_side_and_writes_results(tmp_path, capsys):
    res = tmp_path / "moons.md"
    rc = main(["run", "dann", "--seeds", "2", "--out-dir", str(tmp_path / "runs"), "--no-progress",
               "--results", str(res), "train.steps=30", "train.eval_every=15"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "source-only" in out and "DANN" in out and "±" in out
    text = res.read_text()
    assert "command: `gradversary" in text and "commit:" in text and "seeds: 0, 1" in text
    assert (tmp_path / "runs" / "compare-source-only-DANN" / "report.md").exists()


def test_console_script_module_entry(tmp_path, env_src):
    proc = subprocess.run([sys.executable, "-m", "gradversary.cli.main", "list"], env=env_src,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "dann" in proc.stdout


def test_cli_shift_between_specs_files_and_in_feature_space(tmp_path, capsys):
    import numpy as np

    assert main(["shift", "moons:source", "moons:target", "--classifier", "mlp", "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert main(["shift", "moons:source", "moons(seed=3):source", "--classifier", "mlp", "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert rotated["pad"] > same["pad"] + 0.3
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", x=rng.normal(size=(400, 3)))
    np.savez(tmp_path / "b.npz", x=rng.normal(size=(400, 3)) + 3)
    assert main(["shift", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pad"] > 1.9
    assert main(["shift", "moons:nowhere", "moons:target"]) == 2
    assert "unknown part" in capsys.readouterr().err
    # in the feature space of a trained run
    cfg = _write_cfg(tmp_path)
    assert main(["train", str(cfg), "--no-progress"]) == 0
    capsys.readouterr()
    run = tmp_path / "runs" / "dann-moons-s0"
    assert main(["shift", "moons:source", "moons:target", "--features", str(run), "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["pad"] <= 2.0


def test_cli_analyze_two_runs_writes_pad_table_and_plot(tmp_path, capsys):
    cfg = _write_cfg(tmp_path)
    assert main(["train", str(cfg), "--no-progress", "method.name=erm", "name=so"]) == 0
    assert main(["train", str(cfg), "--no-progress", "name=da"]) == 0
    runs = tmp_path / "runs"
    assert main(["analyze", str(runs / "so"), str(runs / "da"), "--embedding", "pca",
                 "--max-points", "200", "--out", str(tmp_path / "an")]) == 0
    text = (tmp_path / "an" / "analysis.md").read_text()
    assert "raw inputs" in text and "`so` (erm)" in text and "`da` (dann)" in text
    pytest.importorskip("matplotlib")
    assert (tmp_path / "an" / "features.png").exists()


def test_cli_bench_jobs_defaults_to_the_cores_and_rejects_zero(tmp_path, capsys, monkeypatch):
    import gradversary.bench.runner as runner
    import gradversary.cli.main as cli

    seen = {}

    def fake_runner(suite, seeds, quick, options, *args, **kw):
        seen["jobs"], seen["seeds"], seen["nproc"] = kw["jobs_n"], seeds, kw["nproc"]
        path = tmp_path / "r.md"
        path.write_text("table\n")
        return path

    monkeypatch.setattr(runner, "run_suite", fake_runner)
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 3)
    assert main(["bench", "dann", "--quick"]) == 0
    assert seen == {"jobs": 3, "seeds": None, "nproc": 1}  # the suite's quick seeds
    assert main(["bench", "dann", "--jobs", "1", "--seeds", "2"]) == 0
    assert seen == {"jobs": 1, "seeds": [0, 1], "nproc": 1}
    assert main(["bench", "dann", "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    assert main(["bench", "dann", "--jobs", "1", "--nproc", "2"]) == 0
    assert seen == {"jobs": 1, "seeds": None, "nproc": 2}  # DDP ranks per training run
    assert main(["bench", "dann", "--nproc", "0"]) == 2
    assert "--nproc must be at least 1" in capsys.readouterr().err
