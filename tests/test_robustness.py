"""The robustness evaluation (``gradversary attack``) and the GREAT defense benchmark runner,
on tiny synthetic runs (no dataset files needed)."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gradversary.analysis.robustness import COLUMNS, RobustnessSettings, evaluate_model
from gradversary.bench.runner import Suite, run_suite
from gradversary.cli.main import main
from gradversary.config import from_dict
from gradversary.models import create_model

ROOT = Path(__file__).resolve().parents[1]
TINY = RobustnessSettings(eps=[0.1, 0.3], n=24, n_train=24, ifgsm_steps=3, pgd_steps=3,
                          pgd_restarts=1, strong_steps=5, strong_restarts=2, apgd_steps=3, apgd_targets=2,
                          square_queries=8,
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


def _suite(tmp_path, groups: dict, steps: int = 3, max_seeds: dict | None = None) -> Suite:
    """A great-defense suite of toy rows: group -> (eps of its evaluation, row methods)."""
    cfg = tmp_path / "cfg"
    cfg.mkdir(exist_ok=True)
    rows, spec_groups = [], {}
    for g, (eps, methods) in groups.items():
        ev = {**dataclasses.asdict(TINY), "eps": eps}
        spec_groups[g] = {"title": f"Suite {g}", "note": f"Note {g}.", "options": {"evaluate": ev},
                          "cells": {"{name}": {"config": "{name}.yaml", "overrides": ["train.batch_size=8"]}}}
        for m in methods:
            (cfg / f"{g}_{m}.yaml").write_text(yaml.safe_dump(_config(tmp_path, m, steps=steps)))
            cells = ({"{name}": {"config": "{name}.yaml", "max_seeds": max_seeds[m]}}
                     if m in (max_seeds or {}) else {})
            rows.append({"name": f"{g}_{m}", "group": g, "title": {"erm": "Baseline (ERM)", "great": "GREAT"}[m],
                         **({"cells": cells} if cells else {})})
    raw = yaml.safe_load((ROOT / "configs" / "bench" / "great_defense.yaml").read_text())
    return from_dict(Suite, {**raw, "groups": spec_groups, "rows": rows, "config_dir": str(cfg)})


def _bench(tmp_path, suite, seeds, **kw):
    kw = {"out_dir": tmp_path / "runs", "results": tmp_path / "gd.md", **kw}
    res = run_suite(suite, seeds, **kw)
    return res.read_text(), json.loads(res.with_suffix(".json").read_text())["rows"]


def test_bench_writes_tables_and_reuses_runs_and_evaluations(tmp_path):
    suite = _suite(tmp_path, {"a": ([0.1, 0.3], ["erm", "great"])}, steps=4)
    text, rows = _bench(tmp_path, suite, [0, 1], command="test")
    assert "### eps = 0.1" in text and "### eps = 0.3" in text and "GREAT" in text
    assert "Methods that pass every measured check" in text and "seeds: 0, 1" in text
    assert "commit:" in text and "versions:" in text and "wall time" in text and " ± " in text
    great = rows["a_great"]["runs"]["a_great"]
    cost = next(line for line in text.split("### Cost")[1].splitlines() if line.startswith("| GREAT |"))
    minutes = sum(r["robustness"]["wall_time_s"] for r in great) / 2 / 60
    assert cost == f"| GREAT | 4 | {sum(r['wall_time_s'] for r in great) / 2 / 60:.1f} | {minutes:.1f} | 2 |"
    assert len(great) == 2 and great[0]["robustness"]["transfer_from"].endswith("a_erm-s0")
    assert rows["a_erm"]["runs"]["a_erm"][0]["robustness"]["transfer_from"] is None
    run0 = tmp_path / "runs" / "full" / "a_great" / "a_great-s0"
    stamps = [(run0 / f).stat().st_mtime_ns for f in ("summary.json", "robustness.json")]
    _bench(tmp_path, suite, [0, 1])  # runs and evaluations reused
    assert [(run0 / f).stat().st_mtime_ns for f in ("summary.json", "robustness.json")] == stamps
    import shutil

    shutil.rmtree(tmp_path / "runs")  # report-only from the records: the same tables
    again, rows2 = _bench(tmp_path, suite, [0, 1], report_only=True)
    assert rows2["a_great"]["runs"]["a_great"][1]["robustness"] == great[1]["robustness"]
    assert again.split("### eps = 0.1")[1] == text.split("### eps = 0.1")[1]
    assert "not yet run" not in again
    (tmp_path / "gd_runs" / "full" / "a_great" / "a_great-s1.robustness.json").unlink()
    partial, _ = _bench(tmp_path, suite, [0, 1], report_only=True)  # trained, its attack not recorded
    assert ("- not yet run: 1 of the 4 runs selected, so the rows below show the seeds done. "
            "trained, not yet evaluated: a_great (seed 1)\n") in partial


def test_a_row_attacked_on_its_own_takes_its_transfer_source_from_an_earlier_erm_run(tmp_path):
    """``--only`` one row at a time: the ERM run of the group and seed, trained by an earlier
    invocation into the same output directory, is still the transfer attack's source."""
    suite = _suite(tmp_path, {"a": ([0.3], ["erm", "great"])})
    _, rows = _bench(tmp_path, suite, [0], only="a_erm")
    assert rows["a_erm"]["runs"]["a_erm"][0]["robustness"]["transfer_from"] is None
    _, rows = _bench(tmp_path, suite, [0], only="a_great")
    assert rows["a_great"]["runs"]["a_great"][0]["robustness"]["transfer_from"].endswith("a_erm-s0")
    assert "transfer" in rows["a_great"]["runs"]["a_great"][0]["robustness"]["tables"]["0.3"]


def test_bench_groups_get_their_own_sections_settings_and_labels(tmp_path):
    suite = _suite(tmp_path, {"one": ([0.1, 0.3], ["erm", "great"]), "two": ([0.2], ["erm", "great"])})
    text, rows = _bench(tmp_path, suite, [0])
    assert "## Suite one" in text and "## Suite two" in text and "Note one." in text
    one, two = text.split("## Suite two")
    assert "### eps = 0.1" in one and "### eps = 0.3" in one
    assert "### eps = 0.2" in two and "eps = 0.1" not in two  # each group's own settings
    assert "GREAT" in two and "Baseline (ERM)" in two
    assert rows["two_great"]["runs"]["two_great"][0]["robustness"]["transfer_from"].endswith("two_erm-s0")
    text, _ = _bench(tmp_path, suite, [0], only="two_*")  # a glob on rows; an empty group is dropped
    assert "Suite one" not in text


def test_bench_with_two_processes_gives_the_same_tables(tmp_path):
    suite = _suite(tmp_path, {"a": ([0.1, 0.3], ["erm", "great"])})
    out = {}
    for jobs in (1, 2):
        _, rows = _bench(tmp_path, suite, [0], out_dir=tmp_path / f"runs{jobs}",
                         results=tmp_path / f"gd{jobs}.md", jobs_n=jobs)
        out[jobs] = {k: [r["robustness"]["tables"] for r in d["runs"][k]] for k, d in rows.items()}
    assert out[1] == out[2]


def test_bench_max_seeds_limits_a_row_and_marks_its_cells(tmp_path):
    suite = _suite(tmp_path, {"a": ([0.2], ["erm", "great"])}, steps=2, max_seeds={"great": 1})
    text, rows = _bench(tmp_path, suite, [0, 1])
    assert [r["seed"] for r in rows["a_great"]["runs"]["a_great"]] == [0]
    assert [r["seed"] for r in rows["a_erm"]["runs"]["a_erm"]] == [0, 1]
    assert not (tmp_path / "runs" / "full" / "a_great" / "a_great-s1").exists()
    great_row = next(line for line in text.splitlines() if line.startswith("| GREAT |"))
    erm_row = next(line for line in text.splitlines() if line.startswith("| Baseline (ERM) |"))
    assert "(n=1)" in great_row and "(n=" not in erm_row


def test_paper_ordering_verdicts_follow_the_margins():
    from gradversary.report.great_tables import ordering

    base = {"fgsm": 10.0, "ifgsm": 2.0, "pgd_strong": 0.0, "worst_case": 0.0}
    means = {"erm": base,
             "gg": {"fgsm": 60.0, "ifgsm": 40.0, "pgd_strong": 1.0, "worst_case": 0.5},  # FGSM-only
             "ce": {"fgsm": 15.0, "ifgsm": 30.0, "pgd_strong": 5.0, "worst_case": 3.0},
             "g": {"fgsm": 50.0, "ifgsm": 11.0}}
    methods = {"erm": "erm", "gg": "great_greace", "ce": "greace", "g": "great", "g2": "great"}
    text = ordering(means, methods, {k: k for k in methods})
    assert len(text) == 3
    assert "**holds** (FGSM +50.0, iFGSM +38.0 points); the honest columns **disagree**" in text[0]
    assert "**does not hold** (FGSM +5.0, iFGSM +28.0 points); the honest columns agree" in text[1]
    assert "weak against iFGSM" in text[2] and "**holds** (iFGSM +9.0 points)" in text[2]
    means["g"]["ifgsm"] = 12.0
    assert "**does not hold**" in ordering(means, methods, {k: k for k in methods})[2]
    assert ordering({"g": means["g"]}, {"g": "great"}, {"g": "g"}) == []  # no baseline: no verdicts
    # a diverged row has no figures: the next row of its method (a bounded form) stands for it
    means2 = {"erm": base, "eq6": {}, "prob": means["ce"]}
    text = ordering(means2, {"erm": "erm", "eq6": "greace", "prob": "greace"}, {k: k for k in means2})
    assert len(text) == 1 and text[0].startswith("prob far above the baseline")


def test_standing_names_each_family_s_best_row_by_its_worst_case():
    from gradversary.report.great_tables import standing

    means = {"erm": {"worst_case": 1.0, "clean": 99.0}, "g": {"worst_case": 0.5, "clean": 99.1},
             "gg": {"worst_case": 20.0, "clean": 98.0}, "pgd": {"worst_case": 85.0, "clean": 98.5},
             "f1": {"worst_case": 2.0}, "f2": {"worst_case": 70.0, "clean": 97.0}, "div": {}}
    methods = {"erm": "erm", "g": "great", "gg": "great_greace", "pgd": "pgd_at", "f1": "fast_at",
               "f2": "fast_at", "div": "greace"}
    labels = {k: k.upper() for k in methods}
    assert standing(means, methods, labels) == (
        "Worst case over every attack, the best row of each family (clean accuracy beside): "
        "GREAT's family 20.0 (GG), clean 98.0; PGD-AT 85.0, clean 98.5; fast AT 70.0 (F2), "
        "clean 97.0; the baseline 1.0, clean 99.0.")
    assert standing({"erm": means["erm"]}, {"erm": "erm"}, labels) == ""  # no GREAT row: nothing


def test_apgd_columns_enter_the_table_the_worst_case_and_the_masking_checks():
    from gradversary.analysis.robustness import render_run

    torch.manual_seed(0)
    model = create_model("resnet_small", (1, 8, 8), 3, widths=[4], blocks=[1]).eval()
    x, y = torch.rand(24, 1, 8, 8), torch.randint(0, 3, (24,))
    res = evaluate_model(model, x, y, 3, TINY)
    for eps, table in res["tables"].items():
        assert {"apgd_ce", "apgd_t"} <= set(table)
        masks = res["masks"][eps]
        for k in ("apgd_ce", "apgd_t"):  # the worst case is over APGD too
            assert not bool((masks["worst_case"] & ~masks[k]).any())
            assert table["worst_case"] <= table[k] <= table["clean"]
        checks = {c["name"]: c for c in res["checks"][eps]}
        assert checks["pgd_matches_apgd"]["passed"] is not None
        assert "APGD" in checks["pgd_matches_apgd"]["reason"]
    assert "APGD-CE 3 steps x 1 restart(s), APGD-T 3 steps x 1 on each of the 2" in TINY.describe()

    # apgd_steps 0: the table as recorded before APGD, under the same cache key
    old = dataclasses.replace(TINY, apgd_steps=0)
    res = evaluate_model(model, x, y, 3, old)
    assert not {"apgd_ce", "apgd_t"} & set(res["tables"][0.1]) and "APGD" not in old.describe()
    saved = {k: v for k, v in dataclasses.asdict(old).items() if not k.startswith("apgd_")}
    assert RobustnessSettings.from_saved(saved).key_dict() == old.key_dict() == saved
    assert RobustnessSettings.from_saved(dataclasses.asdict(TINY)) == TINY
    out = {"run": "r", "method": "erm", "step": 1, "split": "target_test", "command": "",
           "settings": saved, "transfer_from": None, "wall_time_s": 0.0, "plots": {},
           **{k: v for k, v in res.items() if k != "masks"}}
    assert "APGD" not in render_run(out).split("## Accuracy against eps")[0]  # settings and table


def _diverging(tmp_path, suite, row: str) -> None:
    """Make ``row``'s config stop as soon as its loss rises by 0.01% over its lowest record."""
    path = Path(suite.config_dir) / f"{row}.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["train"].update(log_every=1, divergence={"window": 1, "loss_ratio": 1.0001, "loss_floor": 1e-9})
    path.write_text(yaml.safe_dump(cfg))


def test_bench_shows_a_diverged_run_as_such_and_keeps_the_rest(tmp_path):
    import shutil

    import pytest

    from gradversary.errors import DivergenceError

    suite = _suite(tmp_path, {"a": ([0.3], ["erm", "great"])}, steps=8)
    _diverging(tmp_path, suite, "a_great")
    suite.keep_diverged = False
    with pytest.raises(DivergenceError, match="running away"):  # by default a divergence is an error
        _bench(tmp_path, suite, [0], out_dir=tmp_path / "strict", results=tmp_path / "strict.md")
    suite.keep_diverged = True
    suite.rows[0].paper = {"eps": 0.3, "AutoAttack": 88.5, "source": "a paper"}
    text, rows = _bench(tmp_path, suite, [0])
    run = rows["a_great"]["runs"]["a_great"][0]
    step = run["diverged"]["step"]
    assert 1 < step < 8 and "robustness" not in run and "running away" in run["diverged"]["reason"]
    assert run["wall_time_s"] > 0  # its time, to the step it stopped at
    great = next(line for line in text.splitlines() if line.startswith("| GREAT |"))
    assert f"| diverged at step {step} |" in great
    erm = next(line for line in text.splitlines() if line.startswith("| Baseline (ERM) |"))
    assert "diverged" not in erm and any(ch.isdigit() for ch in erm.split("|")[2])
    assert f"- GREAT, seed 0: diverged at step {step} (training diverged: loss" in text
    assert "### Reference figures" in text and "| Baseline (ERM) | 0.3 | 88.5 | a paper |" in text
    assert "| GREAT |" not in text.split("### Gradient-masking checks")[1]  # no checks without figures
    summary = tmp_path / "runs" / "full" / "a_great" / "a_great-s0" / "summary.json"
    stamp = summary.stat().st_mtime_ns
    again, _ = _bench(tmp_path, suite, [0])  # the diverged run is a result: reused, not retrained
    assert summary.stat().st_mtime_ns == stamp and again.split("### eps")[1] == text.split("### eps")[1]
    shutil.rmtree(tmp_path / "runs")  # from the records alone: the same tables
    again, _ = _bench(tmp_path, suite, [0], report_only=True)
    assert again.split("### eps")[1].split("### Figures")[0] == text.split("### eps")[1].split("### Figures")[0]


def test_robust_val_selects_by_pgd_error_on_held_out_source_and_the_attack_uses_its_pick(tmp_path):
    """``selection.criterion: robust_val``: every evaluation's ``select_risk`` is the PGD error
    on the first ``robust_n`` held-out source images (recomputed by hand from the saved pick),
    ``best.pt`` keeps the lowest, and ``from_run_dir(checkpoint="selected")``, which the
    robustness evaluation uses, loads it."""
    import json

    import pytest

    from gradversary.attacks import PGD
    from gradversary.attacks.evaluate import robust_accuracy
    from gradversary.engine import Trainer, resolve_config
    from gradversary.errors import ConfigError

    cfg = _config(tmp_path, "fast_at", steps=12)
    cfg["method"] = {"name": "fast_at", "eps": 0.1}
    cfg["train"].update(eval_every=3)
    cfg["selection"] = {"criterion": "robust_val", "robust_eps": 0.1, "robust_steps": 3, "robust_n": 7,
                        "validators": "none"}
    run = tmp_path / "run_rv"
    (tmp_path / "rv.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "rv.yaml"), "--run-dir", str(run), "--no-progress"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    risks = [e["select_risk"] for e in evals]
    assert len(risks) == 4 and summary["selection"]["criterion"] == "robust_val"
    assert len(set(risks)) > 1  # the evaluations differ: the pick means something
    pick = summary["selection"]["step"]
    assert pick == evals[risks.index(min(risks))]["step"]  # the first of the lowest
    tr = Trainer.from_run_dir(run, checkpoint="selected")
    assert tr.step == pick
    val = tr.task.eval["source_val"]
    acc = robust_accuracy(tr.method.model, PGD(0.1, 3, seed=tr.cfg.train.seed, early_stop=True),
                          (val.x[:7], val.y[:7].long())).accuracy
    assert 1.0 - acc == pytest.approx(min(risks))
    last = Trainer.from_run_dir(run)
    assert last.step == 12
    if pick != 12:  # the selected weights are not the last ones
        assert any(not torch.equal(a, b) for a, b in zip(tr.method.model.parameters(),
                                                         last.method.model.parameters()))
    with pytest.raises(ConfigError, match="robust_eps"):
        resolve_config({**cfg, "selection": {"criterion": "robust_val"}})


def test_an_interrupted_evaluation_resumes_at_its_attack_and_equals_an_uninterrupted_one(tmp_path, monkeypatch,
                                                                                           capsys):
    from gradversary.analysis import robustness as rb

    run = _train(tmp_path, "erm")
    whole = rb.attack_run(run, TINY)
    partial = run / "robustness.partial.json"
    assert not partial.exists() and "resumed_attacks" not in whole
    real, calls = rb.robust_accuracy, []

    def counted(*a, stop_after=None, **kw):
        calls.append(1)
        if stop_after is not None and len(calls) > stop_after:
            raise RuntimeError("interrupted")
        return real(*a, **kw)

    # the clean and Train accuracies, then 5 attacks, then the 6th attack is interrupted
    monkeypatch.setattr(rb, "robust_accuracy", lambda *a, **kw: counted(*a, stop_after=7, **kw))
    with pytest.raises(RuntimeError, match="interrupted"):
        rb.attack_run(run, TINY)
    saved = json.loads(partial.read_text())
    assert saved["key"] == whole["key"] and list(saved["attacks"]) == [
        "0.1/fgsm", "0.1/ifgsm", "0.1/fgsm_worst", "0.1/fgsm_random", "0.1/ifgsm_worst"]
    n_attacks = sum(len(t) for t in whole["tables"].values()) - 3 * len(whole["tables"])  # less train, clean, worst
    n_attacks += len(whole["curve"]) * len(set(whole["curve"]["pgd"]) - set(whole["tables"]) - {"0.0"})
    calls.clear()
    monkeypatch.setattr(rb, "robust_accuracy", counted)
    capsys.readouterr()
    again = rb.attack_run(run, TINY, progress=True)
    assert "attacks" in capsys.readouterr().err  # the bar over the attacks, starting at the 6th
    assert len(calls) == 2 + n_attacks - 5  # clean and Train again, the 5 saved attacks not
    assert again["resumed_attacks"] == 5 and not partial.exists()
    assert again["tables"] == whole["tables"] and again["curve"] == whole["curve"]
    # a partial file of other settings or checkpoints is not trusted
    partial.write_text(json.dumps({"key": "other", "attacks": {"0.1/fgsm": {"accuracy": 0.0, "correct": "0" * 24}}}))
    assert rb.attack_run(run, TINY)["tables"] == whole["tables"]


def test_a_run_on_two_ddp_ranks_stops_where_one_process_stops(tmp_path):
    # the ranks watch the global batch's loss, so they stop together (no rank left waiting in
    # an all-reduce) and at the step one process stops at
    suite = _suite(tmp_path, {"a": ([0.3], ["great"])}, steps=8)
    _diverging(tmp_path, suite, "a_great")
    suite.keep_diverged = True
    step = {}
    for n in (1, 2):
        _, rows = _bench(tmp_path, suite, [0], out_dir=tmp_path / f"runs{n}", results=tmp_path / f"gd{n}.md", nproc=n)
        step[n] = rows["a_great"]["runs"]["a_great"][0]["diverged"]["step"]
    assert step[1] == step[2] and 1 < step[1] < 8


def test_each_evaluation_is_recorded_as_it_ends_though_a_later_one_fails(tmp_path, monkeypatch):
    import pytest

    import gradversary.bench.great as great_bench

    suite = _suite(tmp_path, {"a": ([0.3], ["erm", "great"])}, steps=3)
    real = great_bench.load_or_attack

    def flaky(run_dir, *args):
        if run_dir.name.startswith("a_great"):
            raise RuntimeError("the machine went away")
        return real(run_dir, *args)

    monkeypatch.setattr(great_bench, "load_or_attack", flaky)
    with pytest.raises(RuntimeError, match="went away"):
        _bench(tmp_path, suite, [0], jobs_n=1)
    saved = tmp_path / "gd_runs" / "full"
    assert (saved / "a_erm" / "a_erm-s0.robustness.json").is_file()  # kept before the failure
    assert not (saved / "a_great" / "a_great-s0.robustness.json").exists()


def test_a_recorded_run_missing_its_evaluation_is_trained_again_with_its_transfer_source(tmp_path):
    # a fresh machine holds the records but no run directory: a run whose evaluation was never
    # recorded cannot be attacked from its record, so it is made again, and so is the ERM run
    # it is attacked from (transfer); a report-only invocation still trains nothing
    import shutil

    suite = _suite(tmp_path, {"a": ([0.3], ["erm", "great"])}, steps=3)
    _bench(tmp_path, suite, [0])
    saved = tmp_path / "gd_runs" / "full"
    (saved / "a_great" / "a_great-s0.robustness.json").unlink()
    shutil.rmtree(tmp_path / "runs")
    text, rows = _bench(tmp_path, suite, [0], report_only=True)
    assert rows["a_great"]["runs"] == {} and "trained, not yet evaluated: a_great (seed 0)" in text
    assert not (tmp_path / "runs" / "full" / "a_great").exists()
    _, rows = _bench(tmp_path, suite, [0])
    great = rows["a_great"]["runs"]["a_great"][0]["robustness"]
    assert great["transfer_from"].endswith("a_erm-s0") and (saved / "a_great" / "a_great-s0.robustness.json").is_file()
    assert (tmp_path / "runs" / "full" / "a_erm" / "a_erm-s0" / "checkpoints" / "last.pt").is_file()
    shutil.rmtree(tmp_path / "runs")  # every evaluation recorded now: nothing is made again
    _bench(tmp_path, suite, [0])
    assert not (tmp_path / "runs" / "full" / "a_great").exists() and not (tmp_path / "runs" / "full" / "a_erm").exists()


def test_cost_table_counts_every_ddp_rank_of_a_training_run():
    """A run trained on two DDP ranks for 60 s of wall time cost 2 CPU-minutes; its attacks (one
    thread) are counted as measured."""
    from gradversary.report.great_tables import _cost

    every = {"pgd": [{"wall_time_s": 60.0, "world_size": 2, "threads": 1, "steps": 10},
                     {"wall_time_s": 120.0, "world_size": 1, "threads": 1, "steps": 10}]}
    runs = {"pgd": [{"robustness": {"wall_time_s": 30.0}}, {"robustness": {"wall_time_s": 90.0}}]}
    lines = _cost(every, runs, {"pgd": "PGD-AT"})
    assert "| PGD-AT | 10 | 2.0 | 1.0 | 2 |" in lines[-2]
    assert "training (CPU-min)" in lines[-2]
