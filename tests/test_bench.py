import json
import shutil
from pathlib import Path

import pytest
import yaml

from gradversary.bench.runner import Suite, list_suites, load_suite, run_suite
from gradversary.config import from_dict
from gradversary.config_files import read_config_file
from gradversary.selection import DEFAULT_VALIDATORS

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "configs" / "bench"


def _toy(tmp_path, grid=None, steps=12, group="amazon", cells=None, rows=None) -> Suite:
    """The DANN suite's spec with toy rows on the moons: configs m.yaml (DANN), m_so.yaml."""
    cfgs = tmp_path / "cfg"
    cfgs.mkdir(exist_ok=True)
    base = {"model": {"name": "mlp", "hidden": [8]}, "data": {"name": "moons"},
            "train": {"steps": steps, "eval_every": steps // 2, "batch_size": 32}}
    (cfgs / "m.yaml").write_text(yaml.safe_dump({**base, "method": {
        "name": "dann", "lambda_schedule": {"name": "constant", "value": 0.1}}}))
    (cfgs / "m_so.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "erm"}}))
    raw = read_config_file(SPECS / "dann.yaml")
    opts = {"grid": {"label": "DANN", "seed": 0, "full": grid, "quick": grid}} if grid else {}
    raw["groups"] = {group: {"title": "Toy group", "options": opts, "quick": ["train.steps=4"],
                             "cells": cells or {"source-only": "m_so.yaml", "DANN": "m.yaml"}}}
    raw["rows"] = rows or [{"name": "toy", "title": "Toy", "group": group, "paper": {"DANN": 0.9}}]
    raw["config_dir"] = str(cfgs)
    return from_dict(Suite, raw)


def _run(suite, tmp_path, seeds=(0, 1), **kw):
    kw = {"out_dir": tmp_path / "runs", "results": tmp_path / "r.md", **kw}
    path = run_suite(suite, list(seeds), **kw)
    return json.loads(path.with_suffix(".json").read_text())["rows"]


def test_every_suite_spec_loads_and_names_existing_configs():
    assert {"dann", "digits", "great-defense", "great-mtl", "great-distill", "great-defense-short"} <= set(list_suites(SPECS))
    for name in list_suites(SPECS):
        suite = load_suite(name, SPECS)
        for row in suite.rows:
            for cell in row.cells.values():
                assert (ROOT / suite.config_dir / cell.config).is_file(), cell.config


def test_great_defense_runs_resolve_at_both_sizes_and_quick_is_small(tmp_path, monkeypatch):
    """Every cell of the convergence suite resolves, full and --quick; the quick budget is a
    smoke test (40 steps of 32 on at most 1,000 training images, 100 test images)."""
    from gradversary.analysis.robustness import RobustnessSettings
    from gradversary.engine.config import resolve_config

    monkeypatch.chdir(ROOT)
    suite = load_suite("great-defense", SPECS)
    assert suite.keep_diverged and suite.seeds == [0, 1]
    methods = set()
    for row in suite.rows:
        group = suite.groups[row.group]
        for cell in row.cells.values():
            raw = read_config_file(ROOT / suite.config_dir / cell.config)
            full = resolve_config(raw, cell.overrides)
            quick = resolve_config(raw, [*cell.overrides, *suite.quick, *group.quick])
            methods.add(full.method["name"])
            assert full.train.epochs >= 3 and quick.train.steps == 40 and quick.train.batch_size == 32
            assert quick.data.get("max_source", 1000) <= 1000 and quick.data.get("per_class", 100) <= 100
            assert (full.train.augment is not None) == row.name.startswith("cifar10")
        assert RobustnessSettings(**group.options["evaluate"]).n >= 1000
        q = RobustnessSettings.quick(**group.options["quick_evaluate"])
        assert q.n <= 100 and len(q.eps) == 1 and q.apgd_steps <= 10
    assert methods == {"erm", "adversarial_training", "pgd_at", "fast_at", "great", "greace", "great_greace"}
    for quick in (False, True):  # nothing run yet: the render copes with an empty suite
        run_suite(suite, None, quick, out_dir=tmp_path / "runs", results=tmp_path / "gc.md", records=False,
                  report_only=True)


def test_bench_writes_table_and_reuses_finished_runs(tmp_path):
    cells = {"source-only": "m_so.yaml", "DANN": "m.yaml",
             "train on target": {"config": "m_so.yaml", "overrides": ["data.angle=0"], "max_seeds": 1}}
    suite = _toy(tmp_path, steps=20, group="digits", cells=cells)
    runs = _run(suite, tmp_path)["toy"]["runs"]
    text = (tmp_path / "r.md").read_text()
    assert "Toy" in text and "oracle" in text and "seeds: 0, 1" in text and "commit:" in text
    assert len(runs["DANN"]) == 2 and runs["DANN"][0]["selection"]["criterion"] == "dev"
    assert len(runs["train on target"]) == 1
    done = tmp_path / "runs" / "full" / "toy" / "DANN-s0" / "summary.json"
    stamp = done.stat().st_mtime_ns
    _run(suite, tmp_path)  # everything reused: no run is trained again
    assert done.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="no row"):
        _run(suite, tmp_path, only="nothing*")


def test_bench_grid_search_picks_by_reverse_validation_and_caches(tmp_path):
    grid = {"method.lambda_schedule.value": [0.0, 0.5], "model.hidden": [[4], [8]]}
    suite = _toy(tmp_path, grid=grid, steps=30)
    runs = _run(suite, tmp_path)["toy"]["runs"]
    g = runs["DANN"][0]["grid"]
    # one choice per row, made on seed 0's split and used for seed 1 too (grid seed 0)
    assert runs["DANN"][1]["grid"] == g
    assert not (tmp_path / "runs" / "full" / "toy" / "grid-s1.json").exists()
    assert "used for every seed" in (tmp_path / "r.md").read_text()
    assert len(g["scores"]) == 4 and g["criterion"] == "reverse validation"
    assert g["overrides"] == max(g["scores"], key=lambda r: (r["reverse_acc"], r["source_val_acc"]))["overrides"]
    saved = yaml.safe_load((tmp_path / "runs" / "full" / "toy" / "DANN-s0" / "config.yaml").read_text())
    chosen = dict(o.split("=", 1) for o in g["overrides"])
    assert saved["method"]["lambda_schedule"]["value"] == json.loads(chosen["method.lambda_schedule.value"])
    assert saved["model"]["hidden"] == json.loads(chosen["model.hidden"])
    cache = tmp_path / "runs" / "full" / "toy" / "grid-s0.json"
    stamp = cache.stat().st_mtime_ns
    _run(suite, tmp_path)
    assert cache.stat().st_mtime_ns == stamp


def test_bench_report_only_tabulates_finished_runs_without_training(tmp_path):
    suite = _toy(tmp_path, steps=10)
    _run(suite, tmp_path, seeds=[0])
    runs = _run(suite, tmp_path, seeds=[0, 1], report_only=True)["toy"]["runs"]
    assert not (tmp_path / "runs" / "full" / "toy" / "DANN-s1").exists()
    assert len(runs["DANN"]) == 1 and len(runs["source-only"]) == 1
    text = (tmp_path / "r.md").read_text()
    assert "(n=1)" in text
    assert ("- not yet run: 2 of the 4 runs selected, so the rows below show the seeds done. "
            "not trained: toy source-only (seed 1); toy DANN (seed 1)\n") in text
    _run(suite, tmp_path, seeds=[0], report_only=True)  # all there: no such line
    assert "not yet run" not in (tmp_path / "r.md").read_text()


def test_finished_runs_still_match_after_the_library_gains_an_option(tmp_path):
    from gradversary.bench.records import same_config
    from gradversary.engine import resolve_config

    cfg = resolve_config({"method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [4]},
                          "data": {"name": "moons"}, "train": {"steps": 5}})
    path = tmp_path / "config.yaml"
    saved = cfg.to_dict()
    del saved["method"]["disc_rate"]          # a run made before the option existed
    del saved["train"]["ema_decay"]
    saved["train"]["threads"] = None          # speed, not results: before threads became auto
    saved["out_dir"] = "runs/elsewhere"       # where, not what: a config moved to another folder
    path.write_text(yaml.safe_dump(saved))
    assert same_config(path, cfg)
    saved["method"]["domain_weight"] = 0.5    # a real difference
    path.write_text(yaml.safe_dump(saved))
    assert not same_config(path, cfg)
    saved["method"]["no_such_option"] = 1     # a config that no longer resolves
    path.write_text(yaml.safe_dump(saved))
    assert not same_config(path, cfg) and not same_config(tmp_path / "missing.yaml", cfg)


def test_bench_with_two_processes_matches_one(tmp_path):
    suite = _toy(tmp_path, grid={"method.lambda_schedule.value": [0.0, 0.5]})
    got = {}
    for jobs in (1, 2):
        runs = _run(suite, tmp_path, out_dir=tmp_path / f"runs{jobs}", results=tmp_path / f"r{jobs}.md",
                    jobs_n=jobs)["toy"]["runs"]
        got[jobs] = {k: [(r["final"], r.get("grid", {}).get("overrides")) for r in v] for k, v in runs.items()}
    assert got[1] == got[2]


def test_bench_trains_each_run_on_ddp_ranks_as_one_process_would(tmp_path):
    suite = _toy(tmp_path, cells={"DANN": "m.yaml"})
    got = {n: _run(suite, tmp_path, seeds=(0,), out_dir=tmp_path / f"runs{n}", results=tmp_path / f"r{n}.md",
                   nproc=n)["toy"]["runs"] for n in (1, 2)}
    one, two = got[1]["DANN"][0], got[2]["DANN"][0]
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["final"] == pytest.approx(one["final"], rel=1e-4, abs=1e-6)
    assert two["selection"]["step"] == one["selection"]["step"]


def test_map_jobs_keeps_order_and_raises_a_failing_job_s_error():
    import math

    from gradversary.bench.parallel import map_jobs

    assert map_jobs(math.sqrt, [(9.0,), (4.0,), (1.0,)], workers=2) == [3.0, 2.0, 1.0]
    assert map_jobs(math.sqrt, [(9.0,), (4.0,)], workers=1) == [3.0, 2.0]
    for workers in (1, 2):
        with pytest.raises(ValueError, match="math domain error"):
            map_jobs(math.sqrt, [(4.0,), (-1.0,), (9.0,)], workers=workers)
    with pytest.raises(ValueError, match="workers"):
        map_jobs(math.sqrt, [(1.0,)], workers=0)


def _dann_table(runs: dict, seeds=(0,), **options) -> str:
    """The DANN table rendered from hand-made results (rows r0, r1...) without training."""
    from gradversary.bench.runner import render

    raw = read_config_file(SPECS / "dann.yaml")
    raw["rows"] = [{"name": k, "title": f"Row {k[1:]}", "group": "amazon"} for k in runs]
    suite = from_dict(Suite, raw)
    data = {"suite": "dann", "quick": False, "seeds": list(seeds), "stages": {},
            "options": {"select": "dev", "select_rule": "min", **options},
            "provenance": {"command": "cmd", "commit": "abc", "wall_time_s": 0.0, "python": "3",
                           "torch": "2", "threads": 1, "machine": "x"},
            "rows": {k: {"title": f"Row {k[1:]}", "group": "amazon", "paper": {}, "runs": v}
                     for k, v in runs.items()}}
    return render(data, suite)


def test_bench_compares_dann_and_source_only_under_the_same_rule():
    def run(sel, last):
        return {"num_classes": 2, "wall_time_s": 1.0, "final": {"target_test_acc": last, "source_test_acc": 0.9},
                "selection": {"metrics": {"target_test_acc": sel}}}

    # selected: DANN ahead on row 0 only; last: DANN ahead on both rows
    text = _dann_table({"r0": {"source-only": [run(0.70, 0.70)], "DANN": [run(0.75, 0.80)]},
                        "r1": {"source-only": [run(0.80, 0.60)], "DANN": [run(0.60, 0.90)]}})
    assert "checkpoints selected by `dev`: source-only 0.750, DANN 0.675; DANN ahead on 1 of 2." in text
    assert "last step: source-only 0.650, DANN 0.850; DANN ahead on 2 of 2." in text
    assert "| Row 0 | 0.700 | 0.750 | 0.700 | 0.800 |"  # one seed: no spread in text


def test_dann_table_shows_the_default_validators_pick_and_n_a_for_runs_without_scores():
    # the default im+mixval+source_val: im ranks (1/2, 1, 0), mixval (1/2, 0, 1), source_val
    # (0, 1, 1/2): means (1/3, 2/3, 1/2) -> step 20
    assert DEFAULT_VALIDATORS == "im+mixval+source_val"
    history = [{"step": 10, "target_test_acc": 0.61, "score_im": 0.9, "score_mixval": 0.6, "score_source_val": 0.5},
               {"step": 20, "target_test_acc": 0.72, "score_im": 1.0, "score_mixval": 0.2, "score_source_val": 0.8},
               {"step": 30, "target_test_acc": 0.83, "score_im": 0.1, "score_mixval": 0.9, "score_source_val": 0.7}]

    def run(hist):  # last step 0.83; the default rank mean picks step 20
        return {"num_classes": 2, "wall_time_s": 1.0, "history": hist,
                "final": {"target_test_acc": 0.83, "source_test_acc": 0.9},
                "selection": {"metrics": {"target_test_acc": 0.61}}, "oracle": {"target_test_acc": 0.83}}

    text = _dann_table({"r0": {"source-only": [run([])], "DANN": [run(history)]},
                        "r1": {"source-only": [run([])], "DANN": [run([])]}})
    assert "| DANN last | DANN (im+mixval+source_val) | DANN oracle |" in text
    assert "| 0.830 | 0.720 | 0.830 |" in text  # row 0: last, pick, oracle
    assert "| 0.830 | n/a | 0.830 |" in text  # row 1: a record without scores


def test_collapse_is_near_chance_for_any_number_of_classes():
    from gradversary.report.uda_tables import collapsed as _collapsed

    def run(acc, k):
        return {"num_classes": k, "final": {"source_test_acc": acc}}

    # binary: 0.70 is a weak but live network (1.5 x chance = 0.75 would have flagged it)
    assert not _collapsed(run(0.70, 2)) and _collapsed(run(0.52, 2))
    assert _collapsed(run(0.11, 10)) and not _collapsed(run(0.20, 10))
    assert not _collapsed({"num_classes": 2, "final": {}})  # no figure: not flagged


def test_bench_reports_the_effective_sample_size_behind_the_selection():
    def run(ess):
        return {"num_classes": 10, "final": {"target_test_acc": 0.5, "source_test_acc": 0.9},
                "selection": {"metrics": {"target_test_acc": 0.5, "select_ess": ess}}}

    runs = {"r0": {"source-only": [run(3.0)], "DANN": [run(40.0), run(250.0)]}}
    text = _dann_table(runs, seeds=(0, 1))
    assert "importance weights at the selected checkpoints (3 runs): median 40, range 3-250" in text
    assert "importance weights" not in _dann_table(runs, (0, 1), select="source_val")  # no weights


def test_bench_other_selection_rule_keeps_runs_apart_and_shares_the_grid(tmp_path):
    suite = _toy(tmp_path, grid={"method.lambda_schedule.value": [0.0, 0.5]}, steps=20)
    _run(suite, tmp_path, seeds=[0])
    cache = tmp_path / "runs" / "full" / "toy" / "grid-s0.json"
    first = (tmp_path / "runs" / "full" / "toy" / "DANN-s0" / "summary.json").stat().st_mtime_ns
    stamp = cache.stat().st_mtime_ns
    _run(suite, tmp_path, seeds=[0], options={"select_rule": "one_se"})
    other = tmp_path / "runs" / "full-one_se" / "toy" / "DANN-s0"
    assert json.loads((other / "summary.json").read_text())["selection"]["rule"] == "one_se"
    assert cache.stat().st_mtime_ns == stamp  # the grid choice is reused, not searched again
    assert not (tmp_path / "runs" / "full-one_se" / "toy" / "grid-s0.json").exists()
    assert (tmp_path / "runs" / "full" / "toy" / "DANN-s0" / "summary.json").stat().st_mtime_ns == first
    assert "by `dev, one-se rule`" in (tmp_path / "r.md").read_text()
    with pytest.raises(ValueError, match="no option"):
        _run(suite, tmp_path, seeds=[0], options={"only_dann_reads_this": 1})


def test_records_fill_the_table_when_run_directories_are_gone(tmp_path):
    import shutil

    suite = _toy(tmp_path, grid={"method.lambda_schedule.value": [0.0, 0.5]})
    first = _run(suite, tmp_path)["toy"]["runs"]
    res, recs = tmp_path / "r.md", tmp_path / "r_runs"
    assert sorted(p.name for p in (recs / "full" / "toy").iterdir()) == [
        "DANN-s0.json", "DANN-s1.json", "grid-s0.json", "source-only-s0.json", "source-only-s1.json"]
    rec = json.loads((recs / "full" / "toy" / "DANN-s1.json").read_text())
    assert rec["summary"]["final"] == first["DANN"][1]["final"] and rec["config"]["train"]["seed"] == 1
    assert "runs from records" not in res.read_text()  # all made by this invocation
    stamp = (recs / "full" / "toy" / "DANN-s1.json").read_text()
    _run(suite, tmp_path, report_only=True, command="later")  # run dirs still here
    assert (recs / "full" / "toy" / "DANN-s1.json").read_text() == stamp  # not re-recorded

    shutil.rmtree(tmp_path / "runs")  # a new machine: run directories and grid caches are gone
    again = _run(suite, tmp_path, report_only=True)["toy"]["runs"]
    assert [r["final"] for r in again["DANN"]] == [r["final"] for r in first["DANN"]]
    assert again["DANN"][0]["grid"] == first["DANN"][0]["grid"]
    assert "runs from records: 4 of 4 runs" in res.read_text()
    _run(suite, tmp_path)  # nothing is trained again, not even the grid
    assert not (tmp_path / "runs" / "full" / "toy" / "DANN-s0").exists()

    # another config: the record does not match, the run is made and its record replaced
    so = tmp_path / "cfg" / "m_so.yaml"
    so.write_text(so.read_text().replace("steps: 12", "steps: 8"))
    _run(suite, tmp_path, seeds=[0])
    assert (tmp_path / "runs" / "full" / "toy" / "source-only-s0" / "summary.json").exists()
    rec = json.loads((recs / "full" / "toy" / "source-only-s0.json").read_text())
    assert rec["config"]["train"]["steps"] == 8 and rec["summary"]["steps"] == 8


def test_records_are_off_on_request_and_unreadable_ones_are_not_matched(tmp_path):
    from gradversary.bench.records import RunRecords
    from gradversary.engine import resolve_config

    _run(_toy(tmp_path), tmp_path, seeds=[0], records=False)
    assert not (tmp_path / "r_runs").exists()
    cfg = resolve_config({"method": {"name": "erm"}, "model": {"name": "mlp"}, "data": {"name": "moons"}})
    rr = RunRecords(tmp_path / "recs")
    rr.put("full", "toy", "x-s0", cfg, {"final": {"a": 1}}, "abc", "cmd")
    assert rr.get("full", "toy", "x-s0", cfg)["record"]["commit"] == "abc"
    other = resolve_config({"method": {"name": "erm"}, "model": {"name": "mlp"},
                            "data": {"name": "moons"}, "train": {"seed": 3}})
    assert rr.get("full", "toy", "x-s0", other) is None
    (tmp_path / "recs" / "full" / "toy" / "x-s0.json").write_text("{not json")
    assert rr.get("full", "toy", "x-s0", cfg) is None


@pytest.mark.parametrize("stem, only", [("dann", "amazon*"), ("great_mtl", None), ("great_distill_short", None),
                                        ("great_defense_short", None), ("great_mtl_quick", None)])
def test_report_only_re_renders_the_committed_results_from_their_records(tmp_path, monkeypatch, stem, only):
    """The committed results, rendered again from the committed records: the same text below
    the header (for dann, the two Amazon groups, whose records are all committed)."""
    old = (ROOT / "docs" / "results" / f"{stem}.md").read_text()
    monkeypatch.chdir(ROOT)  # the specs' config paths are relative to the repository
    suite = load_suite(stem.removesuffix("_quick"), SPECS)
    cmd = old.split("- command: `")[1].split("`")[0].split()
    out = cmd[cmd.index("--out-dir") + 1]
    res = tmp_path / f"{stem}.md"
    for png in (ROOT / "docs" / "results").glob(f"{stem}_*.png"):
        (tmp_path / png.name).write_bytes(b"")  # the plots the text names
    run_suite(suite, None, stem.endswith("_quick"), only=only, out_dir=out, results=res, report_only=True,
              records=ROOT / "docs" / "results" / f"{stem}_runs", jobs_n=1)
    body = res.read_text().split("\n\n", 2)[2].split("\n\n", 1)[1]  # past the header list
    assert len(body) > 1000
    for section in body.split("\n## "):  # each group's section, as committed
        assert section in old


def test_a_fresh_clone_renders_the_defense_table_from_records_without_the_models(tmp_path, monkeypatch):
    """Not --report-only, on a machine without the run directories: every run is found in the
    committed records, nothing is trained, the accuracy curves are drawn from the evaluations
    and the saliency maps (which need the models) are named only where a file is there."""
    monkeypatch.chdir(ROOT)
    suite = load_suite("great-defense", SPECS)
    res = tmp_path / "great_defense_quick.md"
    (tmp_path / "great_defense_quick_mnist_saliency.png").write_bytes(b"")  # left by an earlier run
    run_suite(suite, None, True, out_dir=tmp_path / "runs", results=res,
              records=ROOT / "docs" / "results" / "great_defense_quick_runs", jobs_n=1)
    assert not (tmp_path / "runs").exists()  # nothing trained or attacked
    text = res.read_text()
    for group in ("mnist", "mnist_resnet", "cifar10"):
        assert (tmp_path / f"great_defense_quick_{group}_eps.png").stat().st_size > 1000
        assert f"great_defense_quick_{group}_eps.png" in text
    assert "great_defense_quick_mnist_saliency.png" in text
    assert "great_defense_quick_cifar10_saliency.png" not in text


def test_git_commit_is_read_once_so_a_bench_s_own_files_do_not_mark_it_dirty(tmp_path, monkeypatch):
    import subprocess

    from gradversary.io import git_commit

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    (tmp_path / "results.md").write_text("old\n")
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    first = git_commit()
    assert len(first) == 12 and not first.endswith("-dirty")
    (tmp_path / "results.md").write_text("new\n")  # what a benchmark writes before its header
    assert git_commit() == first
    from gradversary.io import _commit_at

    # a results file written by an earlier command is output, not code; a code change is dirty
    (tmp_path / "results.md").write_text("old\n")
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "r.md").write_text("a\n")
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "d"], cwd=tmp_path, check=True)
    (tmp_path / "docs" / "results" / "r.md").write_text("b\n")
    _commit_at.cache_clear()
    assert not git_commit().endswith("-dirty")
    (tmp_path / "results.md").write_text("changed\n")
    _commit_at.cache_clear()
    assert git_commit().endswith("-dirty")
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)  # not a repository: read afresh
    subprocess.run(["git", "init", "-q"], cwd=other, check=True)
    assert git_commit() == "unknown"


def test_map_jobs_reports_each_success_as_it_ends_even_if_another_job_fails():
    import math

    from gradversary.bench.parallel import map_jobs

    for workers in (1, 2):
        seen: list = []
        with pytest.raises(ValueError):
            map_jobs(math.sqrt, [(4.0,), (-1.0,), (9.0,)] if workers == 2 else [(4.0,), (-1.0,)],
                     workers=workers, on_result=lambda i, r, seen=seen: seen.append((i, r)))
        assert (0, 2.0) in seen and all(i != 1 for i, _ in seen)
        if workers == 2:
            assert (2, 3.0) in seen


def test_cli_lists_the_suites_and_gives_each_only_its_own_options(capsys, monkeypatch):
    from gradversary.cli.main import main

    monkeypatch.chdir(ROOT)
    assert main(["bench", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("dann", "great-defense", "great-mtl", "great-distill"))
    with pytest.raises(SystemExit):  # --select is the DANN suite's option only
        main(["bench", "great-mtl", "--select", "iwcv"])


def _methods_table(rows: dict, seeds=(0, 1)) -> str:
    """The digits suite's ``methods`` table rendered from hand-made run summaries."""
    from gradversary.bench.runner import render

    suite = load_suite("digits", SPECS)
    suite.settings["methods"]["validators"] = "snd+source_val"  # the maths below is for this criterion
    data = {"suite": "digits", "quick": False, "seeds": list(seeds), "stages": {}, "options": {},
            "provenance": {"command": "cmd", "commit": "abc", "wall_time_s": 0.0, "python": "3",
                           "torch": "2", "threads": 1, "machine": "x"},
            "rows": {k: {"title": t, "group": g, "paper": p, "runs": runs} for k, (t, g, p, runs) in rows.items()}}
    return render(data, suite)


def _summary(sel, last, oracle, history, wall=100.0):
    return {"wall_time_s": wall, "final": {"target_test_acc": last}, "oracle": {"target_test_acc": oracle},
            "selection": {"criterion": "dev", "metrics": {"target_test_acc": sel}}, "history": history}


def test_methods_table_renders_any_method_cells_with_the_validators_choice():
    # snd+source_val rank means over the history: (1/2, 1/3, 2/3, 1/2) -> the third evaluation
    hist = [{"step": s, "target_test_acc": a, "score_snd": sn, "score_source_val": sv}
            for s, a, sn, sv in [(1, 0.5, 0.1, 0.9), (2, 0.6, 0.5, 0.5), (3, 0.9, 0.8, 0.8), (4, 0.7, 0.9, 0.1)]]
    plain = [{"step": 1, "target_test_acc": 0.5}]  # a run made without the validators
    text = _methods_table({
        "mu": ("MNIST → USPS", "usps", {"DANN": 0.917},
               {"DANN": [_summary(0.80, 0.70, 0.95, hist, 100.0), _summary(0.90, 0.90, 0.97, hist, 300.0)]}),
        "mu_cdan": ("MNIST → USPS", "usps", {"CDAN": 0.96}, {"CDAN": [_summary(0.91, 0.92, 0.93, plain)]}),
        "um_x": ("USPS → MNIST", "usps", {}, {"Method X": [_summary(0.5, 0.5, 0.6, hist), _summary(0.5, 0.5, 0.6, hist)]}),
    })
    assert ("| MNIST → USPS | DANN | 0.850 ± 0.071 | 0.900 ± 0.000 | 0.800 ± 0.141 | 0.960 ± 0.014 "
            "| 0.917 | 200 ± 141 |") in text
    assert ("| MNIST → USPS | CDAN | 0.910 (n=1) | n/a | 0.920 (n=1) | 0.930 (n=1) "
            "| 0.960 | 100 |") in text
    assert "| USPS → MNIST | Method X |" in text and "| – |" in text  # any label; no reference figure
    assert "selected (snd+source_val)" in text and "oracle (target labels, not honest)" in text
    assert "0.922 after 2,500 steps" in text and "## MNIST ↔ USPS" in text and "MNIST-M" not in text.split("##")[-1]
    assert text.index("| MNIST → USPS | CDAN") < text.index("| USPS → MNIST | Method X")  # by task


def test_methods_table_says_when_no_run_carries_the_validator_scores():
    text = _methods_table({"mu": ("MNIST → USPS", "usps", {}, {"DANN": [_summary(0.8, 0.8, 0.9, [])]})}, seeds=(0,))
    assert "No run's history carries the scores of `snd+source_val`" in text


def test_digits_suite_runs_dann_and_source_only_on_usps_first_then_cdan_mdd_cdan_e_then_mnistm():
    suite = load_suite("digits", SPECS)
    order = [(r.title, label) for r in suite.rows for label in r.cells]
    assert order[:4] == [("MNIST → USPS", "source-only"), ("MNIST → USPS", "DANN"),
                         ("USPS → MNIST", "source-only"), ("USPS → MNIST", "DANN")]
    assert [m for _, m in order[4:10]] == ["CDAN", "CDAN", "MDD", "MDD", "CDAN+E", "CDAN+E"]
    assert {t for t, _ in order[10:15]} == {"MNIST → MNIST-M"}
    # last, the BatchNorm port evaluated with AdaBN statistics (its own titles in the same
    # group): its 100 constant-rate epochs at one seed, then the recipe chosen without labels
    assert [m for _, m in order[15:]] == ["source-only", "DANN"] * 2 and len(order) == 19
    assert order[15][0].startswith("MNIST → MNIST-M, BatchNorm") and suite.rows[-1].group == "mnistm"
    assert all(c.seeds == [0] for c in suite.rows[-2].cells.values())
    assert "learning-rate decay" in suite.rows[-1].title
    assert all(c.seeds is None for c in suite.rows[-1].cells.values()) and suite.seeds == [0, 1, 2]


def test_a_key_missing_from_a_record_matches_only_today_s_default():
    from gradversary.bench.records import same_config
    from gradversary.engine import resolve_config

    raw = {"method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [4]},
           "data": {"name": "moons"}, "train": {"steps": 5}}
    cfg = resolve_config(raw)
    old = cfg.to_dict()
    del old["selection"]["validators"], old["train"]["augment"]  # keys added after the record
    old["method"]["lambda_schedule"] = {"name": "dann_lambda"}   # a nested spec, spelt short
    old["optim"]["lr_schedule"].pop("scale", None)
    assert same_config(old, cfg)
    assert not same_config(old, resolve_config({**raw, "selection": {"validators": ["bnm"]}}))
    lam = {"name": "dann_lambda", "gamma": 10.0, "max": 0.5}      # a nested option off its default
    assert not same_config(old, resolve_config({**raw, "method": {"name": "dann", "lambda_schedule": lam}}))
    assert same_config(old, resolve_config({**raw, "method": {"name": "dann", "lambda_schedule": {
        "name": "dann_lambda", "gamma": 10.0, "max": 1.0}}}))


def test_bench_grid_search_scored_only_when_apply_is_false(tmp_path):
    """``grid.apply: false``: one reverse-validation search a row, recorded, and no run takes
    its choice (every cell keeps its own setting)."""
    grid = {"method.lambda_schedule.value": [0.0, 0.5]}
    cells = {"DANN, lambda 0.0": {"config": "m.yaml", "overrides": ["method.lambda_schedule.value=0.0"]},
             "DANN, lambda 0.5": {"config": "m.yaml", "overrides": ["method.lambda_schedule.value=0.5"]}}
    suite = _toy(tmp_path, grid=grid, steps=20, cells=cells)
    suite.groups["amazon"].options["grid"]["apply"] = False
    runs = _run(suite, tmp_path, seeds=[0])["toy"]["runs"]
    assert all("grid" not in r for rs in runs.values() for r in rs)
    for label, value in (("DANN, lambda 0.0", 0.0), ("DANN, lambda 0.5", 0.5)):
        cfg = yaml.safe_load((tmp_path / "runs" / "full" / "toy" / f"{label.replace(' ', '_')}-s0"
                              / "config.yaml").read_text())
        assert cfg["method"]["lambda_schedule"]["value"] == value
    saved = json.loads((tmp_path / "runs" / "full" / "toy" / "grid-s0.json").read_text())
    assert len(saved["result"]["scores"]) == 2
    assert (tmp_path / "r_runs" / "full" / "toy" / "grid-s0.json").is_file()  # in the records


def test_methods_table_counts_tasks_above_the_baseline(tmp_path):
    """The methods table's summary: each method's mean over tasks and how many tasks it is
    above the baseline, per honest column (by hand on two tasks)."""
    from gradversary.report.uda_tables import methods_table

    def run(last, sel):
        return {"final": {"target_test_acc": last}, "selection": {"criterion": "dev",
                "metrics": {"target_test_acc": sel}}, "history": []}

    rows = {"t1": {"group": "surf", "title": "T1", "paper": {},
                   "runs": {"base": [run(0.5, 0.6), run(0.7, 0.6)], "new": [run(0.8, 0.5)]}},
            "t2": {"group": "surf", "title": "T2", "paper": {},
                   "runs": {"base": [run(0.9, 0.9)], "new": [run(0.6, 0.95)]}}}
    suite = load_suite("office_surf", SPECS)
    suite.settings["methods"] = {"baseline": "base", "honest": ["selected", "last"], "reference": "ref"}
    text = "\n".join(methods_table({"rows": rows, "seeds": [0, 1]}, suite))
    # base: last (0.6 + 0.9) / 2 = 0.75, selected (0.6 + 0.9) / 2; new: last 0.7, selected 0.725
    assert "| base | 0.750 | 0.750 | – |" in text
    assert "| new | 0.725 (1 of 2 above) | 0.700 (1 of 2 above) | – |" in text
    assert "| ref | time / run (s) |" in text
    suite.groups["surf"].options["means"] = False  # rows that are recipes of one task: no mean
    text = "\n".join(methods_table({"rows": rows, "seeds": [0, 1]}, suite))
    assert "Mean over the tasks" not in text and "| T2 | new |" in text


def test_results_json_leaves_the_histories_to_the_records(tmp_path):
    """The results JSON keeps each run's summary but not its per-evaluation history (the run
    records keep it), so the committed files stay small."""
    suite = _toy(tmp_path, steps=10)
    _run(suite, tmp_path, seeds=[0])
    data = json.loads((tmp_path / "r.json").read_text())
    run = data["rows"]["toy"]["runs"]["DANN"][0]
    assert "history" not in run and "final" in run and "selection" in run
    rec = json.loads(next((tmp_path / "r_runs").rglob("DANN-s0.json")).read_text())
    assert rec["summary"]["history"]


def test_methods_table_contrasts_an_ablation_with_its_reference_row():
    """``contrast``: every row's difference from the reference row in points, the most harmful
    first, with the spread of the reference's last three evaluations (by hand)."""
    from gradversary.report.uda_tables import methods_table

    def run(last, sel, evals=()):
        return {"final": {"target_test_acc": last}, "selection": {"criterion": "dev",
                "metrics": {"target_test_acc": sel}}, "history": [{"step": i, "target_test_acc": a}
                                                                  for i, a in enumerate(evals)]}

    rows = {"port": {"group": "port", "title": "the port", "paper": {},
                     "runs": {"DANN": [run(0.70, 0.60, (0.5, 0.66, 0.70, 0.64)), run(0.80, 0.70, (0.78, 0.80))]}},
            "a": {"group": "port", "title": "no dropout", "paper": {}, "runs": {"DANN": [run(0.40, 0.45)]}},
            "b": {"group": "port", "title": "AdaBN", "paper": {}, "runs": {"DANN": [run(0.85, 0.80)]}},
            "c": {"group": "port", "title": "the port's network", "paper": {}, "runs": {"source-only": [run(0.5, 0.5)]}}}
    suite = load_suite("mnistm_bn", SPECS)
    suite.settings["methods"]["validators"] = "snd+source_val"  # no scores: that column is n/a
    text = "\n".join(methods_table({"rows": rows, "seeds": [0, 1]}, suite))
    # the port: last 0.75, selected 0.65; its last three evaluations span 0.06 and 0.02 -> 4.0 points
    assert "Each row against **the port**" in text and "span 4.0 points" in text
    table = text.split("Each row against")[1].splitlines()
    body = [line for line in table if line.startswith("| ") and not line.startswith("| change")]
    assert body == ["| no dropout | -20.0 | n/a | -35.0 | 1 |",
                    "| the port's network (source-only) | -15.0 | n/a | -25.0 | 1 |",
                    "| AdaBN | +15.0 | n/a | +10.0 | 1 |"]


def test_only_selects_the_rows_a_selected_row_waits_for(tmp_path, monkeypatch):
    """``--only 'kd_*'``: the students' overrides name ``{run_dir:teacher}``, so the teacher is
    selected too (it used to fail with a KeyError); a row waiting for a row the suite lacks is
    a clear error."""
    from gradversary.bench.runner import suite_status

    monkeypatch.chdir(ROOT)
    suite = load_suite("great-distill", SPECS)
    rows = suite_status(suite, [0], only="kd_*", out_dir=tmp_path / "runs", results=tmp_path / "r.md")
    assert [r[0] for r in rows] == ["teacher", "kd_dense", "kd_sparse"]
    assert [r[0] for r in suite_status(suite, [0], only="erm_*", out_dir=tmp_path / "runs",
                                       results=tmp_path / "r.md")] == ["erm_dense", "erm_sparse"]
    kd = next(r for r in suite.rows if r.name == "kd_dense")
    for c in kd.cells.values():
        c.overrides = [o.replace("{run_dir:teacher}", "{run_dir:tutor}") for o in c.overrides]
    with pytest.raises(ValueError, match="kd_dense of great-distill waits for row 'tutor'"):
        suite_status(suite, [0], only="kd_dense", out_dir=tmp_path / "runs", results=tmp_path / "r.md")


def test_students_of_a_teacher_trained_again_are_made_again_not_reused(tmp_path):
    """The distillation suite's layout on the moons: a teacher and a KD student that waits for
    it. Run again, everything is reused; after the teacher's config changes (so it is trained
    again in its directory), the finished student and its record no longer match and the
    student is trained again, from the new teacher."""
    cfgs = tmp_path / "cfg"
    cfgs.mkdir()
    base = {"model": {"name": "mlp", "hidden": [8]}, "data": {"name": "moons"},
            "train": {"steps": 6, "eval_every": 3, "batch_size": 16, "threads": 1}}
    (cfgs / "t.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "erm"}}))
    (cfgs / "k.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "kd"}}))
    raw = read_config_file(SPECS / "great_distill.yaml")
    raw.update(config_dir=str(cfgs), stages=[], rows=[
        {"name": "teacher", "group": "teacher", "title": "Teacher", "cells": {"teacher": {"config": "t.yaml", "seeds": [0]}}},
        {"name": "kd_dense", "group": "dense", "title": "KD", "vars": {"method": "kd"}, "paper": {"dense": 1.0, "sparse": 1.0},
         "cells": {"kd": {"config": "k.yaml", "overrides": ["method.teacher_run={run_dir:teacher}"]}}}])
    suite = from_dict(Suite, raw)
    student = tmp_path / "runs" / "full" / "kd_dense" / "kd-s0"
    _run(suite, tmp_path, seeds=[0])
    fp = json.loads((student / "summary.json").read_text())["teacher"]["fingerprint"]
    stamp = (student / "summary.json").stat().st_mtime_ns
    _run(suite, tmp_path, seeds=[0])
    assert (student / "summary.json").stat().st_mtime_ns == stamp  # reused
    (cfgs / "t.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "erm"}, "train": {**base["train"], "steps": 9}}))
    from gradversary.bench.runner import suite_status

    status = {r[0]: r[3] for r in suite_status(suite, [0], out_dir=tmp_path / "runs", results=tmp_path / "r.md")}
    assert status == {"teacher": "another config in its directory (a run starts again)",
                      "kd_dense": "finished"}  # its teacher is not trained again yet
    _run(suite, tmp_path, seeds=[0], only="teacher")
    status = {r[0]: r[3] for r in suite_status(suite, [0], out_dir=tmp_path / "runs", results=tmp_path / "r.md")}
    assert status["kd_dense"] == "finished, from a teacher since trained again (a run makes it again)"
    _run(suite, tmp_path, seeds=[0])
    again = json.loads((student / "summary.json").read_text())["teacher"]["fingerprint"]
    assert again != fp
    rec = json.loads((tmp_path / "r_runs" / "full" / "kd_dense" / "kd-s0.json").read_text())
    assert rec["summary"]["teacher"]["fingerprint"] == again  # the record replaced too


def test_status_tells_finished_unfinished_and_unstarted_runs_apart_without_writing(tmp_path):
    from gradversary.bench.runner import suite_status

    suite = _toy(tmp_path, steps=4)
    _run(suite, tmp_path, seeds=[0])
    # seed 1 of DANN: stopped at step 3 of 4 after its first evaluation, with 2 attacks kept
    d = tmp_path / "runs" / "full" / "toy" / "DANN-s1"
    shutil.copytree(tmp_path / "runs" / "full" / "toy" / "DANN-s0", d)
    (d / "summary.json").unlink()
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["train"]["seed"], cfg["name"] = 1, "DANN-s1"
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "metrics.jsonl").write_text('{"kind": "eval", "step": 2, "target_test_acc": 0.8125}\n'
                                     '{"kind": "train", "step": 3, "p": 0.75}\n{"kind": "tr')  # a cut line
    (d / "robustness.partial.json").write_text(json.dumps({"key": "k", "attacks": {"a": {}, "b": {}}}))
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    rows = {(r[1], r[2]): r[3:] for r in suite_status(suite, [0, 1], out_dir=tmp_path / "runs",
                                                       results=tmp_path / "r.md")}
    assert rows["DANN", "0"][0] == "finished" and rows["source-only", "0"][0] == "finished"
    assert rows["DANN", "1"] == ["unfinished: step 3 (75% of the schedule)",
                                 "0.812 (target_test_acc, step 2)", "interrupted after 2 attacks (resumes)"]
    assert rows["source-only", "1"] == ["not started", "–", "–"]
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == written  # nothing written
    cfg["method"]["domain_weight"] = 0.5  # another config in the directory
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = {(r[1], r[2]): r[3] for r in suite_status(suite, [1], out_dir=tmp_path / "runs", results=tmp_path / "r.md")}
    assert rows["DANN", "1"].startswith("another config")


def test_bench_status_command_prints_the_table_and_a_count(tmp_path, monkeypatch, capsys):
    from gradversary.cli.main import main

    monkeypatch.chdir(ROOT)
    assert main(["bench", "great-distill", "--status", "--out-dir", str(tmp_path / "runs"),
                 "--results", str(tmp_path / "r.md"), "--no-records"]) == 0
    out = capsys.readouterr().out
    assert "| teacher | teacher | 0 | not started |" in out and "0 of 17 runs finished." in out
    assert not (tmp_path / "r.md").exists() and not (tmp_path / "runs").exists()
