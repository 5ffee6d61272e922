"""The robustness evaluation (``gradversary attack``) and the GREAT defense benchmark runner,
on tiny synthetic runs (no dataset files needed)."""

import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml

from gradversary.bench.great_defense import run_great_defense_bench
from gradversary.bench.robustness import COLUMNS, RobustnessSettings, evaluate_model
from gradversary.cli.main import main
from gradversary.models import create_model

TINY = RobustnessSettings(eps=[0.1, 0.3], n=24, n_train=24, ifgsm_steps=3, pgd_steps=3,
                          pgd_restarts=1, strong_steps=5, strong_restarts=2, square_queries=8,
                          curve_eps=[0.5], n_saliency=2, batch_size=16)


def _npz(tmp_path):
    """Three classes of 1x8x8 images: class c brightens a band of rows (learnable in a few steps)."""
    g = np.random.default_rng(0)

    def make(n):
        y = g.integers(0, 3, n)
        x = g.uniform(0, 0.4, (n, 1, 8, 8)).astype(np.float32)
        for i, c in enumerate(y):
            x[i, 0, 3 * c:3 * c + 2] += 0.5
        return x, y

    (xs, ys), (xt, yt) = make(96), make(48)
    path = tmp_path / "toy.npz"
    np.savez(path, x_source=xs, y_source=ys, x_target=xt, y_target=yt)
    return path


def _config(tmp_path, method: str, steps: int = 6) -> dict:
    return {"method": {"name": method, **({"eps": 0.3} if method == "adversarial_training" else {})},
            "model": {"name": "resnet_small", "widths": [4], "blocks": [1]},
            "data": {"name": "arrays", "path": str(_npz(tmp_path))},
            "train": {"steps": steps, "batch_size": 16, "eval_every": 0, "progress": False}}


def _train(tmp_path, name="erm"):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(_config(tmp_path, name)))
    run = tmp_path / f"run_{name}"
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress"]) == 0
    return run


def test_attack_command_writes_table_json_and_masking_checks(tmp_path, capsys):
    run, src = _train(tmp_path, "erm"), _train(tmp_path, "adversarial_training")
    capsys.readouterr()
    assert main(["attack", str(run), "--quick", "--n", "20", "--eps", "0.1,0.3",
                 "--transfer-from", str(src)]) == 0
    printed = capsys.readouterr().out
    assert "No-Attack" in printed and "iFGSM worst" in printed and "few_zero_gradients" in printed
    assert "[pass]" in printed or "[FAIL]" in printed
    md = (run / "robustness.md").read_text()
    for header in COLUMNS.values():
        assert header in md
    out = json.loads((run / "robustness.json").read_text())
    assert out["split"] == "target_test" and out["settings"]["n"] == 20
    assert set(out["tables"]) == {"0.1", "0.3"} and "transfer" in out["tables"]["0.1"]
    assert set(out["curve"]["pgd"]) == {"0.0", "0.1", "0.3", "0.5"}
    assert out["curve"]["pgd"]["0.0"] == out["tables"]["0.1"]["clean"]
    names = {c["name"] for c in out["checks"]["0.3"]}
    assert {"iterative_not_weaker", "few_zero_gradients", "transfer_not_stronger"} <= names
    assert all(c["passed"] in (True, False, None) and c["reason"] for c in out["checks"]["0.3"])
    assert 0.0 <= out["zero_gradient_share"] <= 1.0
    # bad input: one line, exit 2
    assert main(["attack", str(tmp_path / "nothing")]) == 2


def test_worst_case_is_never_above_any_single_attack():
    torch.manual_seed(0)
    model = create_model("resnet_small", (1, 8, 8), 3, widths=[4], blocks=[1]).eval()
    source = create_model("resnet_small", (1, 8, 8), 3, widths=[4], blocks=[1]).eval()
    x, y = torch.rand(24, 1, 8, 8), torch.randint(0, 3, (24,))
    res = evaluate_model(model, x, y, 3, TINY, (x, y), source)
    for eps, masks in res["masks"].items():
        worst = masks["worst_case"]
        for name, m in masks.items():
            assert not bool((worst & ~m).any()), name  # correct in the worst case => correct here
        table = res["tables"][eps]
        assert all(table["worst_case"] <= v for k, v in table.items() if k != "train")
        assert set(table) == set(COLUMNS)


def test_random_targets_are_seeded_and_shared_across_models():
    torch.manual_seed(0)
    model = create_model("resnet_small", (1, 8, 8), 3, widths=[4], blocks=[1]).eval()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 3, (16,))
    a = evaluate_model(model, x, y, 3, TINY)
    b = evaluate_model(model, x, y, 3, TINY)
    assert a["tables"] == b["tables"]


def test_bench_writes_tables_and_reuses_runs(tmp_path):
    cfgs = []
    for m in ("erm", "great"):
        p = tmp_path / "cfg" / f"toy_{m}.yaml"
        p.parent.mkdir(exist_ok=True)
        p.write_text(yaml.safe_dump(_config(tmp_path, m, steps=4)))
        cfgs.append((p, ["train.batch_size=8"]))
    res = tmp_path / "gd.md"
    kw = dict(out_dir=tmp_path / "runs", results=res, configs=cfgs, settings=TINY, progress=False,
              command="test")
    run_great_defense_bench([0, 1], **kw)
    text = res.read_text()
    assert "## eps = 0.1" in text and "## eps = 0.3" in text and "toy_great" in text
    assert "Methods that pass every measured check" in text and "seeds: 0, 1" in text
    assert "commit:" in text and "versions:" in text and "wall time" in text
    assert " ± " in text
    data = json.loads(res.with_suffix(".json").read_text())
    great = data["methods"]["toy_great"]["runs"]
    assert len(great) == 2 and great[0]["robustness"]["transfer_from"].endswith("toy_erm-s0")
    assert data["methods"]["toy_erm"]["runs"][0]["robustness"]["transfer_from"] is None
    run0 = tmp_path / "runs" / "full" / "toy_great" / "toy_great-s0"
    stamps = [(run0 / f).stat().st_mtime_ns for f in ("summary.json", "robustness.json")]
    run_great_defense_bench([0, 1], **kw)  # runs and evaluations reused
    assert [(run0 / f).stat().st_mtime_ns for f in ("summary.json", "robustness.json")] == stamps
    with pytest.raises(ValueError, match="no config"):
        run_great_defense_bench([0], only="nothing*", **kw)


def test_bench_suites_get_their_own_sections_settings_and_labels(tmp_path):
    from gradversary.bench.great_defense import Suite, _label

    specs = {}
    for prefix in ("a", "b"):
        for m in ("erm", "great"):
            p = tmp_path / "cfg" / f"{prefix}_{m}.yaml"
            p.parent.mkdir(exist_ok=True)
            p.write_text(yaml.safe_dump(_config(tmp_path, m, steps=3)))
            specs.setdefault(prefix, []).append((p, ["train.batch_size=8"]))
    small = dataclasses.replace(TINY, eps=[0.2])
    suites = [Suite("one", "Suite one", specs["a"], TINY, note="Note one."),
              Suite("two", "Suite two (reduced)", specs["b"], small)]
    res = tmp_path / "gd.md"
    run_great_defense_bench([0], out_dir=tmp_path / "runs", results=res, suites=suites,
                            progress=False, command="test")
    text = res.read_text()
    assert "## Suite one" in text and "## Suite two (reduced)" in text and "Note one." in text
    one, two = text.split("## Suite two (reduced)")
    assert "### eps = 0.1" in one and "### eps = 0.3" in one
    assert "### eps = 0.2" in two and "eps = 0.1" not in two  # each suite's own settings
    assert "GREAT" in two and "Baseline (ERM)" in two        # labels from the stem's method part
    data = json.loads(res.with_suffix(".json").read_text())
    assert data["suites"]["two"]["stems"] == ["b_erm", "b_great"]
    assert data["methods"]["b_great"]["runs"][0]["robustness"]["transfer_from"].endswith("b_erm-s0")
    assert _label("mnistm_great_greace_l2") == "GRE(AT+CE), L2-normalised gradient"
    assert _label("something_else") == "something_else"
    # only: a glob picks configs across suites; a suite left empty is dropped
    run_great_defense_bench([0], out_dir=tmp_path / "runs", results=res, suites=suites,
                            progress=False, only="b_*")
    assert "Suite one" not in res.read_text()


def test_bench_with_two_processes_gives_the_same_tables(tmp_path):
    cfgs = []
    for m in ("erm", "great"):
        p = tmp_path / "cfg" / f"toy_{m}.yaml"
        p.parent.mkdir(exist_ok=True)
        p.write_text(yaml.safe_dump(_config(tmp_path, m, steps=3)))
        cfgs.append((p, ["train.batch_size=8"]))
    out = {}
    for jobs in (1, 2):
        res = tmp_path / f"gd{jobs}.md"
        run_great_defense_bench([0], out_dir=tmp_path / f"runs{jobs}", results=res, configs=cfgs,
                                settings=TINY, progress=False, jobs=jobs)
        data = json.loads(res.with_suffix(".json").read_text())
        out[jobs] = {s: [r["robustness"]["tables"] for r in m["runs"]] for s, m in data["methods"].items()}
    assert out[1] == out[2]


def test_bench_max_seeds_limits_a_config_and_marks_its_cells(tmp_path):
    from gradversary.bench.great_defense import Suite

    specs = []
    for m in ("erm", "great"):
        p = tmp_path / "cfg" / f"a_{m}.yaml"
        p.parent.mkdir(exist_ok=True)
        p.write_text(yaml.safe_dump(_config(tmp_path, m, steps=2)))
        specs.append((p, ["train.batch_size=8"]))
    small = dataclasses.replace(TINY, eps=[0.2], curve_eps=[0.2])
    res = tmp_path / "gd.md"
    run_great_defense_bench([0, 1], out_dir=tmp_path / "runs", results=res, progress=False,
                            suites=[Suite("one", "One", specs, small, max_seeds={"a_great": 1})])
    data = json.loads(res.with_suffix(".json").read_text())
    assert [r["seed"] for r in data["methods"]["a_great"]["runs"]] == [0]
    assert [r["seed"] for r in data["methods"]["a_erm"]["runs"]] == [0, 1]
    assert not (tmp_path / "runs" / "full" / "a_great" / "a_great-s1").exists()
    great_row = next(line for line in res.read_text().splitlines() if line.startswith("| GREAT |"))
    erm_row = next(line for line in res.read_text().splitlines() if line.startswith("| Baseline (ERM) |"))
    assert "(n=1)" in great_row and "(n=" not in erm_row


def test_paper_ordering_verdicts_follow_the_margins():
    from gradversary.bench.great_defense import _ordering

    base = {"fgsm": 10.0, "ifgsm": 2.0, "pgd_strong": 0.0, "worst_case": 0.0}
    means = {"erm": base,
             "gg": {"fgsm": 60.0, "ifgsm": 40.0, "pgd_strong": 1.0, "worst_case": 0.5},  # FGSM-only
             "ce": {"fgsm": 15.0, "ifgsm": 30.0, "pgd_strong": 5.0, "worst_case": 3.0},
             "g": {"fgsm": 50.0, "ifgsm": 11.0}}
    methods = {"erm": "erm", "gg": "great_greace", "ce": "greace", "g": "great", "g2": "great"}
    text = _ordering(means, methods)
    assert len(text) == 3
    assert "**holds** (FGSM +50.0, iFGSM +38.0 points); the honest columns **disagree**" in text[0]
    assert "**does not hold** (FGSM +5.0, iFGSM +28.0 points); the honest columns agree" in text[1]
    assert "weak against iFGSM" in text[2] and "**holds** (iFGSM +9.0 points)" in text[2]
    means["g"]["ifgsm"] = 12.0
    assert "**does not hold**" in _ordering(means, methods)[2]
    assert _ordering({"g": means["g"]}, {"g": "great"}) == []  # no baseline: no verdicts
