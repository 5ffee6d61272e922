"""The great-distill benchmark: the table, the verdict on the paper's claim, and (slow) a run."""

import json
from pathlib import Path

import pytest

from gradversary.bench.runner import load_suite, render, run_suite
from gradversary.report import great_tables as gd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
METHODS = {"erm": "Baseline (ERM)", "kd": "Distillation (KD)", "sobolev": "Sobolev", "great_distill": "GREAT"}


def _summary(acc, steps=10, wall=2.0, before=None):
    """A run's summary; ``before``: the test accuracy at the evaluation before the last."""
    out = {"final": {"source_test_acc": acc}, "steps": steps, "wall_time_s": wall}
    if before is not None:
        out["history"] = [{"step": 5, "source_test_acc": before}, {"step": 10, "source_test_acc": acc}]
    return out


def test_verdict_states_whether_great_is_best_in_the_sparse_regime():
    base = {"erm": [30, 32], "kd": [33, 33], "sobolev": [31, 31]}
    yes = gd.sparse_verdict({**base, "great_distill": [36, 36]}, METHODS)
    assert "holds" in yes and "Distillation (KD)" in yes and "larger than" in yes
    close = gd.sparse_verdict({**base, "great_distill": [33, 34.5]}, METHODS)
    assert "holds" in close and "within" in close
    no = gd.sparse_verdict({**base, "great_distill": [31, 30]}, METHODS)
    assert "does not hold" in no and "Distillation (KD)" in no


def test_results_file_has_table_3_layout_teacher_and_timing(monkeypatch):
    monkeypatch.chdir(ROOT)
    sparse = {"erm": [0.3, 0.32], "kd": [0.33, 0.33], "sobolev": [0.31, 0.31], "great_distill": [0.36, 0.36]}
    rows = {"teacher": {"title": "Teacher", "group": "teacher", "paper": {},
                        "runs": {"teacher": [{"final": {"source_test_acc": 0.7}}]}}}
    for m in METHODS:
        rows[f"{m}_dense"] = {"group": "dense", "runs": {f"{m}_dense": [_summary(0.5, before=0.49),
                                                                        _summary(0.52, before=0.54)]}}
        rows[f"{m}_sparse"] = {"group": "sparse", "runs": {f"{m}_sparse": [_summary(a) for a in sparse[m]]}}
    timing = {"seconds_per_step": {"erm_dense": 0.1, "kd_dense": 0.2, "sobolev_dense": 0.5,
                                   "great_distill_dense": 0.8}, "steps": 3, "batch_size": 128, "threads": 1}
    data = {"quick": False, "seeds": [0, 1], "options": {}, "stages": {"step_time": timing}, "rows": rows,
            "provenance": {"command": "cmd", "commit": "abc", "wall_time_s": 12.0, "python": "3",
                           "torch": "2", "threads": 1, "machine": "x"}}
    text = render(data, load_suite("great-distill"))
    assert "CIFAR-10 (JPEG subset)" in text and "70.00%" in text and "resnet_small" in text
    for label in METHODS.values():
        assert f"| {label} |" in text
    # dense: +1 and -2 points over the last interval, mean -0.50; sparse runs keep no history
    assert "| GREAT | 51.00 ± 1.41 | 36.00 ± 0.00 | -0.50 | – | 85.72 / 66.55 |" in text
    assert "step-time ratio: 4.00" in text and "holds" in text
    del rows["teacher"]  # students rendered before the teacher's record exists: no crash
    assert "(not yet trained)" in render(data, load_suite("great-distill"))


def test_last_interval_change_reads_the_history_in_points():
    assert gd.last_interval_change(_summary(0.61, before=0.6)) == pytest.approx(1.0)
    assert gd.last_interval_change(_summary(0.61)) is None
    one = {"history": [{"step": 1, "source_test_acc": 0.5}, {"step": 2, "target_test_acc": 0.4}]}
    assert gd.last_interval_change(one) is None  # only one evaluation carries the key
    # a final evaluation 25 steps after the last periodic one: compared with the one 469 earlier
    runs = {"history": [{"step": s, "source_test_acc": a} for s, a in
                        ((469, 0.64), (938, 0.69), (1407, 0.70), (1876, 0.715), (2345, 0.7325), (2370, 0.7315))]}
    assert gd.last_interval_change(runs) == pytest.approx(100 * (0.7315 - 0.715))


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "cifar10_jpeg_q75_subset.npz").is_file(), reason="no data")
def test_bench_trains_teacher_once_then_students_and_reuses_them(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    suite = load_suite("great-distill")
    for g in suite.groups.values():
        g.quick += ["train.steps=2", "train.batch_size=8", "data.max_test=20", "data.per_class=2",
                    "data.fraction=null"]
    suite.groups["teacher"].quick += ["model.widths=[4,4,4]", "data.hflip_copies=false"]
    suite.settings["step_time"]["steps"] = 1
    kw = dict(out_dir=tmp_path / "runs", results=tmp_path / "r.md", data_root=str(DATA))
    run_suite(suite, [0], True, **kw)
    first = json.loads((tmp_path / "r.json").read_text())
    assert first["rows"]["teacher"]["runs"]["teacher"][0]["steps"] == 2
    assert first["stages"]["step_time"]["seconds_per_step"]["great_distill_dense"] > 0
    done = tmp_path / "runs" / "quick" / "kd_sparse" / "kd_sparse-s0" / "summary.json"
    mtime = done.stat().st_mtime
    run_suite(suite, [0], True, **kw)  # everything reused
    assert done.stat().st_mtime == mtime
