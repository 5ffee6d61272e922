"""The great-distill benchmark: the table, the verdict on the paper's claim, and (slow) a run."""

import json
from pathlib import Path

import pytest
import yaml

from gradversary.bench import great_distill as gd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _summary(acc, steps=10, wall=2.0):
    return {"final": {"source_test_acc": acc}, "steps": steps, "wall_time_s": wall}


def _runs(sparse: dict) -> dict:
    return {m: {"dense": [_summary(0.5), _summary(0.52)],
                "sparse": [_summary(a) for a in sparse[m]]} for m in gd.METHODS}


def test_verdict_states_whether_great_is_best_in_the_sparse_regime():
    base = {"erm": [0.30, 0.32], "kd": [0.33, 0.33], "sobolev": [0.31, 0.31]}
    yes = gd._verdict(_runs({**base, "great_distill": [0.36, 0.36]}))
    assert "holds" in yes and "Distillation (KD)" in yes and "larger than" in yes
    close = gd._verdict(_runs({**base, "great_distill": [0.33, 0.345]}))
    assert "holds" in close and "within" in close
    no = gd._verdict(_runs({**base, "great_distill": [0.31, 0.30]}))
    assert "does not hold" in no and "Distillation (KD)" in no


def test_results_file_has_table_3_layout_teacher_timing_and_json(tmp_path):
    runs = _runs({"erm": [0.3, 0.32], "kd": [0.33, 0.33], "sobolev": [0.31, 0.31],
                  "great_distill": [0.36, 0.36]})
    timing = {"seconds_per_step": {"erm": 0.1, "kd": 0.2, "sobolev": 0.5, "great_distill": 0.8},
              "steps": 3, "batch_size": 128, "threads": 1, "ratio_great_distill_kd": 4.0,
              "ratio_great_distill_erm": 8.0}
    teacher = {"final": {"source_test_acc": 0.7}, "model": {"name": "resnet_small", "widths": [8]}}
    out = gd._write(tmp_path / "r.md", runs, teacher, timing, [0, 1], False, "cmd", 12.0,
                    "configs/great_distill")
    text = out.read_text()
    assert "CIFAR-10 (JPEG subset)" in text and "70.00%" in text and "resnet_small" in text
    for label in gd.METHODS.values():
        assert f"| {label} |" in text
    assert "| GREAT | 51.00 ± 1.41 | 36.00 ± 0.00 | 85.72 / 66.55 |" in text
    assert "step-time ratio: 4.00" in text
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["timing"]["ratio_great_distill_kd"] == 4.0 and "holds" in data["verdict"]


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "cifar10_jpeg_q75_subset.npz").is_file(), reason="no data")
def test_bench_trains_teacher_once_then_students_and_reuses_them(tmp_path):
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    tiny = {"steps": 2, "batch_size": 8, "eval_every": 0, "threads": 1}
    for src in (ROOT / "configs" / "great_distill").glob("*.yaml"):
        raw = yaml.safe_load(src.read_text())
        raw["train"].update(tiny)
        raw["data"].update({"max_test": 20, "per_class": 2, "fraction": None})
        if src.stem == "teacher":
            raw["model"]["widths"] = [4, 4, 4]
            raw["data"]["hflip_copies"] = False
        (cfg_dir / src.name).write_text(yaml.safe_dump(raw))
    kw = dict(out_dir=tmp_path / "runs", results=tmp_path / "r.md", config_dir=cfg_dir,
              data_root=str(DATA), progress=False, timing_steps=1)
    gd.run_great_distill_bench([0], **kw)
    first = json.loads((tmp_path / "r.json").read_text())
    assert first["teacher"]["steps"] == 2 and first["timing"]["ratio_great_distill_kd"] > 0
    mtime = (tmp_path / "runs" / "full" / "sparse" / "kd" / "kd_sparse-s0" / "summary.json").stat().st_mtime
    gd.run_great_distill_bench([0], **kw)  # everything reused
    assert (tmp_path / "runs" / "full" / "sparse" / "kd" / "kd_sparse-s0" / "summary.json").stat().st_mtime == mtime
