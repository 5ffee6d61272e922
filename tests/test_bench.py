import json

import pytest
import yaml

from gradversary.bench.dann import ROWS, Row, run_dann_bench


def test_bench_rows_reference_existing_configs():
    from pathlib import Path

    cfg_dir = Path(__file__).resolve().parents[1] / "configs" / "dann"
    for row in ROWS:
        for fname, _ in row.configs.values():
            assert (cfg_dir / fname).exists(), fname


def test_bench_writes_table_and_reuses_finished_runs(tmp_path):
    cfgs = tmp_path / "cfg"
    cfgs.mkdir()
    base = {"model": {"name": "mlp", "hidden": [8]}, "data": {"name": "moons"},
            "train": {"steps": 20, "eval_every": 10, "batch_size": 32}}
    (cfgs / "m.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "dann"}}))
    (cfgs / "m_so.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "erm"}}))
    row = Row("toy", "Toy moons", {"source-only": ("m_so.yaml", []), "DANN": ("m.yaml", []),
                                   "train on target": ("m_so.yaml", ["data.angle=0"])},
              {"DANN": 0.9}, ["train.steps=10"], "digits")
    res = tmp_path / "r.md"
    kw = dict(out_dir=tmp_path / "runs", results=res, config_dir=cfgs, rows=[row], progress=False)
    run_dann_bench([0, 1], **kw)
    text = res.read_text()
    assert "Toy moons" in text and "oracle" in text and "seeds: 0, 1" in text
    data = json.loads(res.with_suffix(".json").read_text())
    runs = data["rows"]["toy"]["runs"]
    assert len(runs["DANN"]) == 2 and runs["DANN"][0]["selection"]["criterion"] == "dev"
    stamp = (tmp_path / "runs" / "full" / "toy" / "DANN-s0" / "summary.json").stat().st_mtime_ns
    run_dann_bench([0, 1], **kw)  # everything reused: no run is trained again
    assert (tmp_path / "runs" / "full" / "toy" / "DANN-s0" / "summary.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="no benchmark row"):
        run_dann_bench([0], only="nothing*", **kw)


def test_bench_grid_search_picks_by_reverse_validation_and_caches(tmp_path):
    cfgs = tmp_path / "cfg"
    cfgs.mkdir()
    base = {"model": {"name": "mlp", "hidden": [8]}, "data": {"name": "moons"},
            "train": {"steps": 30, "eval_every": 15, "batch_size": 32}}
    (cfgs / "m.yaml").write_text(yaml.safe_dump({**base, "method": {
        "name": "dann", "lambda_schedule": {"name": "constant", "value": 0.1}}}))
    (cfgs / "m_so.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "erm"}}))
    grid = {"method.lambda_schedule.value": [0.0, 0.5], "model.hidden": [[4], [8]]}
    row = Row("toy", "Toy", {"source-only": ("m_so.yaml", []), "DANN": ("m.yaml", [])},
              group="amazon", grid=grid)
    kw = dict(out_dir=tmp_path / "runs", results=tmp_path / "r.md", config_dir=cfgs, rows=[row],
              progress=False)
    run_dann_bench([0, 1], **kw)
    data = json.loads((tmp_path / "r.json").read_text())
    g = data["rows"]["toy"]["runs"]["DANN"][0]["grid"]
    # one choice per row, made on seed 0's split and used for seed 1 too (grid_seed=0)
    assert data["rows"]["toy"]["runs"]["DANN"][1]["grid"] == g
    assert not (tmp_path / "runs" / "full" / "toy" / "grid-s1.json").exists()
    assert "used for every seed" in (tmp_path / "r.md").read_text()
    assert len(g["scores"]) == 4 and g["criterion"] == "reverse validation"
    best = max(g["scores"], key=lambda r: (r["reverse_acc"], r["source_val_acc"]))
    assert g["overrides"] == best["overrides"]
    saved = yaml.safe_load((tmp_path / "runs" / "full" / "toy" / "DANN-s0" / "config.yaml").read_text())
    chosen = dict(o.split("=", 1) for o in g["overrides"])
    assert saved["method"]["lambda_schedule"]["value"] == json.loads(chosen["method.lambda_schedule.value"])
    assert saved["model"]["hidden"] == json.loads(chosen["model.hidden"])
    cache = tmp_path / "runs" / "full" / "toy" / "grid-s0.json"
    stamp = cache.stat().st_mtime_ns
    run_dann_bench([0, 1], **kw)
    assert cache.stat().st_mtime_ns == stamp


def test_bench_report_only_tabulates_finished_runs_without_training(tmp_path):
    cfgs = tmp_path / "cfg"
    cfgs.mkdir()
    base = {"model": {"name": "mlp", "hidden": [8]}, "data": {"name": "moons"},
            "train": {"steps": 10, "eval_every": 5, "batch_size": 32}}
    (cfgs / "m.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "dann"}}))
    (cfgs / "m_so.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "erm"}}))
    row = Row("toy", "Toy", {"source-only": ("m_so.yaml", []), "DANN": ("m.yaml", [])})
    kw = dict(out_dir=tmp_path / "runs", results=tmp_path / "r.md", config_dir=cfgs, rows=[row],
              progress=False)
    run_dann_bench([0], **kw)
    run_dann_bench([0, 1], report_only=True, **kw)
    assert not (tmp_path / "runs" / "full" / "toy" / "DANN-s1").exists()
    runs = json.loads((tmp_path / "r.json").read_text())["rows"]["toy"]["runs"]
    assert len(runs["DANN"]) == 1 and len(runs["source-only"]) == 1


def test_finished_runs_still_match_after_the_library_gains_an_option(tmp_path):
    from gradversary.bench.dann import _same_config
    from gradversary.engine import resolve_config

    cfg = resolve_config({"method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [4]},
                          "data": {"name": "moons"}, "train": {"steps": 5}})
    run = tmp_path / "run"
    run.mkdir()
    saved = cfg.to_dict()
    del saved["method"]["disc_rate"]          # a run made before the option existed
    del saved["train"]["ema_decay"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert _same_config(run, cfg)
    saved["method"]["domain_weight"] = 0.5    # a real difference
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert not _same_config(run, cfg)
    saved["method"]["no_such_option"] = 1     # a config that no longer resolves
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert not _same_config(run, cfg)


def test_bench_with_two_processes_matches_one(tmp_path):
    cfgs = tmp_path / "cfg"
    cfgs.mkdir()
    base = {"model": {"name": "mlp", "hidden": [8]}, "data": {"name": "moons"},
            "train": {"steps": 12, "eval_every": 6, "batch_size": 32}}
    (cfgs / "m.yaml").write_text(yaml.safe_dump({**base, "method": {
        "name": "dann", "lambda_schedule": {"name": "constant", "value": 0.1}}}))
    (cfgs / "m_so.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "erm"}}))
    row = Row("toy", "Toy", {"source-only": ("m_so.yaml", []), "DANN": ("m.yaml", [])},
              group="amazon", grid={"method.lambda_schedule.value": [0.0, 0.5]})
    got = {}
    for jobs in (1, 2):
        res = tmp_path / f"r{jobs}.md"
        run_dann_bench([0, 1], out_dir=tmp_path / f"runs{jobs}", results=res, config_dir=cfgs,
                       rows=[row], progress=False, jobs=jobs)
        runs = json.loads(res.with_suffix(".json").read_text())["rows"]["toy"]["runs"]
        got[jobs] = {k: [(r["final"], r.get("grid", {}).get("overrides")) for r in v] for k, v in runs.items()}
    assert got[1] == got[2]


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


def test_bench_compares_dann_and_source_only_under_the_same_rule(tmp_path):
    from gradversary.bench.dann import _write

    def run(sel, last):
        return {"num_classes": 2, "wall_time_s": 1.0, "final": {"target_test_acc": last, "source_test_acc": 0.9},
                "selection": {"metrics": {"target_test_acc": sel}}}

    rows = [Row(f"r{i}", f"Row {i}", {"source-only": ("a", []), "DANN": ("b", [])}, group="amazon")
            for i in range(2)]
    # selected: DANN ahead on row 0 only; last: DANN ahead on both rows
    data = {"r0": {"runs": {"source-only": [run(0.70, 0.70)], "DANN": [run(0.75, 0.80)]}},
            "r1": {"runs": {"source-only": [run(0.80, 0.60)], "DANN": [run(0.60, 0.90)]}}}
    text = _write(data, rows, [0], tmp_path / "r.md", False, "dev", "cmd", 0.0).read_text()
    assert "checkpoints selected by `dev`: source-only 0.750, DANN 0.675; DANN ahead on 1 of 2." in text
    assert "last step: source-only 0.650, DANN 0.850; DANN ahead on 2 of 2." in text
    assert "| Row 0 | 0.700 ± 0.000 | 0.750 ± 0.000 | 0.700 ± 0.000 | 0.800 ± 0.000 |" in text


def test_collapse_is_near_chance_for_any_number_of_classes():
    from gradversary.bench.dann import _collapsed

    def run(acc, k):
        return {"num_classes": k, "final": {"source_test_acc": acc}}

    # binary: 0.70 is a weak but live network (1.5 x chance = 0.75 would have flagged it)
    assert not _collapsed(run(0.70, 2)) and _collapsed(run(0.52, 2))
    assert _collapsed(run(0.11, 10)) and not _collapsed(run(0.20, 10))
    assert not _collapsed({"num_classes": 2, "final": {}})  # no figure: not flagged


def test_bench_reports_the_effective_sample_size_behind_the_selection(tmp_path):
    from gradversary.bench.dann import _write

    def run(ess):
        return {"num_classes": 10, "final": {"target_test_acc": 0.5, "source_test_acc": 0.9},
                "selection": {"metrics": {"target_test_acc": 0.5, "select_ess": ess}}}

    rows = [Row("r", "Row", {"source-only": ("a", []), "DANN": ("b", [])})]
    data = {"r": {"runs": {"source-only": [run(3.0)], "DANN": [run(40.0), run(250.0)]}}}
    text = _write(data, rows, [0, 1], tmp_path / "r.md", False, "dev", "cmd", 0.0).read_text()
    assert "importance weights at the selected checkpoints (3 runs): median 40, range 3-250" in text
    # source_val has no weights: no such line
    text = _write(data, rows, [0, 1], tmp_path / "r.md", False, "source_val", "cmd", 0.0).read_text()
    assert "importance weights" not in text


def test_bench_other_selection_rule_keeps_runs_apart_and_shares_the_grid(tmp_path):
    cfgs = tmp_path / "cfg"
    cfgs.mkdir()
    base = {"model": {"name": "mlp", "hidden": [8]}, "data": {"name": "moons"},
            "train": {"steps": 20, "eval_every": 5, "batch_size": 32}}
    (cfgs / "m.yaml").write_text(yaml.safe_dump({**base, "method": {
        "name": "dann", "lambda_schedule": {"name": "constant", "value": 0.1}}}))
    (cfgs / "m_so.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "erm"}}))
    row = Row("toy", "Toy", {"source-only": ("m_so.yaml", []), "DANN": ("m.yaml", [])},
              group="amazon", grid={"method.lambda_schedule.value": [0.0, 0.5]})
    kw = dict(out_dir=tmp_path / "runs", results=tmp_path / "r.md", config_dir=cfgs, rows=[row],
              progress=False)
    run_dann_bench([0], **kw)
    cache = tmp_path / "runs" / "full" / "toy" / "grid-s0.json"
    first = (tmp_path / "runs" / "full" / "toy" / "DANN-s0" / "summary.json").stat().st_mtime_ns
    stamp = cache.stat().st_mtime_ns
    run_dann_bench([0], select_rule="one_se", **kw)
    other = tmp_path / "runs" / "full-dev-one_se" / "toy" / "DANN-s0"
    assert json.loads((other / "summary.json").read_text())["selection"]["rule"] == "one_se"
    assert cache.stat().st_mtime_ns == stamp  # the grid choice is reused, not searched again
    assert not (tmp_path / "runs" / "full-dev-one_se" / "toy" / "grid-s0.json").exists()
    assert (tmp_path / "runs" / "full" / "toy" / "DANN-s0" / "summary.json").stat().st_mtime_ns == first
    assert "by `dev, one-se rule`" in (tmp_path / "r.md").read_text()


def test_grid_cache_survives_a_new_option_at_its_default(tmp_path):
    from gradversary.bench.dann import _same_grid
    from gradversary.engine.config import resolve_config

    cfg = resolve_config({"method": {"name": "dann"}}, [])
    grid = {"method.lambda_schedule.value": [0.1, 1.0]}
    old = cfg.to_dict()
    del old["selection"]["rule"]  # a cache written before selection.rule existed
    assert _same_grid(json.dumps({"config": old, "grid": grid}), cfg, grid)
    assert not _same_grid(json.dumps({"config": old, "grid": {"x": [1]}}), cfg, grid)
    changed = resolve_config({"method": {"name": "dann"}, "optim": {"lr": 0.5}}, [])
    assert not _same_grid(json.dumps({"config": old, "grid": grid}), changed, grid)
    assert not _same_grid(None, cfg, grid) and not _same_grid("not json", cfg, grid)


def _toy_rows(cfgs, grid=None):
    base = {"model": {"name": "mlp", "hidden": [8]}, "data": {"name": "moons"},
            "train": {"steps": 12, "eval_every": 6, "batch_size": 32}}
    (cfgs / "m.yaml").write_text(yaml.safe_dump({**base, "method": {
        "name": "dann", "lambda_schedule": {"name": "constant", "value": 0.1}}}))
    (cfgs / "m_so.yaml").write_text(yaml.safe_dump({**base, "method": {"name": "erm"}}))
    return [Row("toy", "Toy", {"source-only": ("m_so.yaml", []), "DANN": ("m.yaml", [])},
                group="amazon", grid=grid or {})]


def test_records_fill_the_table_when_run_directories_are_gone(tmp_path):
    import shutil

    cfgs = tmp_path / "cfg"
    cfgs.mkdir()
    rows = _toy_rows(cfgs, grid={"method.lambda_schedule.value": [0.0, 0.5]})
    res = tmp_path / "r.md"
    kw = dict(out_dir=tmp_path / "runs", results=res, config_dir=cfgs, rows=rows, progress=False)
    run_dann_bench([0, 1], **kw)
    first = json.loads(res.with_suffix(".json").read_text())["rows"]["toy"]["runs"]
    recs = tmp_path / "r_runs"
    assert sorted(p.name for p in (recs / "full" / "toy").iterdir()) == [
        "DANN-s0.json", "DANN-s1.json", "grid-s0.json", "source-only-s0.json", "source-only-s1.json"]
    rec = json.loads((recs / "full" / "toy" / "DANN-s1.json").read_text())
    assert rec["summary"]["final"] == first["DANN"][1]["final"] and rec["config"]["train"]["seed"] == 1
    assert "runs from records" not in res.read_text()  # all made by this invocation
    stamp = (recs / "full" / "toy" / "DANN-s1.json").read_text()
    run_dann_bench([0, 1], report_only=True, command="later", **kw)  # run dirs still here
    assert (recs / "full" / "toy" / "DANN-s1.json").read_text() == stamp  # not re-recorded

    shutil.rmtree(tmp_path / "runs")  # a new machine: run directories and grid caches are gone
    run_dann_bench([0, 1], report_only=True, **kw)
    again = json.loads(res.with_suffix(".json").read_text())["rows"]["toy"]["runs"]
    assert [r["final"] for r in again["DANN"]] == [r["final"] for r in first["DANN"]]
    assert again["DANN"][0]["grid"] == first["DANN"][0]["grid"]
    assert "runs from records: 4 of 4 runs" in res.read_text()
    run_dann_bench([0, 1], **kw)  # nothing is trained again, not even the grid
    assert not (tmp_path / "runs" / "full" / "toy" / "DANN-s0").exists()
    assert (tmp_path / "runs" / "full" / "toy" / "grid-s0.json").exists()  # restored, not searched

    # another config: the record does not match, the run is made and its record replaced
    over = yaml.safe_load((cfgs / "m_so.yaml").read_text())
    over["train"]["steps"] = 8
    (cfgs / "m_so.yaml").write_text(yaml.safe_dump(over))
    run_dann_bench([0], **kw)
    assert (tmp_path / "runs" / "full" / "toy" / "source-only-s0" / "summary.json").exists()
    rec = json.loads((recs / "full" / "toy" / "source-only-s0.json").read_text())
    assert rec["config"]["train"]["steps"] == 8 and rec["summary"]["steps"] == 8


def test_records_are_off_on_request_and_unreadable_ones_are_not_matched(tmp_path):
    from gradversary.bench.records import RunRecords
    from gradversary.engine import resolve_config

    cfgs = tmp_path / "cfg"
    cfgs.mkdir()
    kw = dict(out_dir=tmp_path / "runs", results=tmp_path / "r.md", config_dir=cfgs,
              rows=_toy_rows(cfgs), progress=False)
    run_dann_bench([0], records=False, **kw)
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


def test_import_records_from_an_earlier_results_file(tmp_path, monkeypatch):
    import subprocess

    from gradversary.bench.dann import import_records

    repo = tmp_path / "repo"
    cfgs = repo / "cfg"
    cfgs.mkdir(parents=True)
    rows = _toy_rows(cfgs, grid={"method.lambda_schedule.value": [0.0, 0.5]})
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=repo, check=True)
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout.strip()
    monkeypatch.chdir(repo)
    res = repo / "old.md"
    kw = dict(out_dir=tmp_path / "runs", config_dir=cfgs, rows=rows, progress=False)
    run_dann_bench([0, 1], results=res, records=False, **kw)  # an old file, without records
    res.write_text(res.read_text().replace(res.read_text().split("commit: `")[1].split("`")[0], sha))
    first = json.loads(res.with_suffix(".json").read_text())["rows"]["toy"]["runs"]
    assert import_records(res.with_suffix(".json"), cfgs, rows=rows) == {"imported": 4, "skipped": 0}
    new = repo / "new.md"
    run_dann_bench([0, 1], results=new, report_only=True, records=repo / "old_runs",
                   **{**kw, "out_dir": tmp_path / "elsewhere"})
    got = json.loads(new.with_suffix(".json").read_text())["rows"]["toy"]["runs"]
    assert [r["final"] for r in got["DANN"]] == [r["final"] for r in first["DANN"]]
    assert got["DANN"][0]["record"]["imported"] and got["DANN"][0]["grid"] == first["DANN"][0]["grid"]
    assert "4 of them were imported" in new.read_text()
    # a config file changed since the old file: its runs are not imported
    (cfgs / "m_so.yaml").write_text((cfgs / "m_so.yaml").read_text() + "# changed\n")
    counts = import_records(res.with_suffix(".json"), cfgs, records=tmp_path / "r2", rows=rows)
    assert counts == {"imported": 2, "skipped": 2}


def test_git_commit_is_read_once_so_a_bench_s_own_files_do_not_mark_it_dirty(tmp_path, monkeypatch):
    import subprocess

    from gradversary.bench.compare import git_commit

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
