"""Distillation in the engine: the teacher run is loaded, frozen and kept out of the student's
state; bad teacher runs fail clearly; every distillation config trains a few steps from YAML."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from gradversary.data.task import DATask, DomainData
from gradversary.engine.checkpoint import load_checkpoint
from gradversary.engine.config import resolve_config
from gradversary.engine.trainer import Trainer
from gradversary.errors import CheckpointError, ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "great_distill"
DATA = ROOT.parent / "shared" / "data"
FAST = {"steps": 3, "batch_size": 8, "eval_every": 0, "progress": False, "threads": 1}


def _task(k: int = 3, n: int = 24, seed: int = 0) -> DATask:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 5, generator=g), torch.arange(n) % k
    return DATask(DomainData(x, y, "source"), DomainData(x[:4], None, "target"), k,
                  eval={"source_test": DomainData(x, y, "source_test")})


def _cfg(method: dict, out: Path) -> object:
    return resolve_config({"method": method, "model": {"name": "mlp", "hidden": [6]},
                           "data": {"name": "moons"}, "train": FAST, "out_dir": str(out)})


@pytest.fixture
def teacher_run(tmp_path) -> Path:
    run = tmp_path / "teacher"
    Trainer(_cfg({"name": "erm"}, tmp_path), run_dir=run, task=_task()).fit()
    return run


def test_trainer_loads_a_frozen_teacher_outside_the_students_state(tmp_path, teacher_run):
    cfg = _cfg({"name": "great_distill", "teacher_run": str(teacher_run)}, tmp_path)
    tr = Trainer(cfg, run_dir=tmp_path / "student", task=_task())
    teacher = tr.method.teacher
    saved = load_checkpoint(teacher_run / "checkpoints" / "last.pt")["method"]
    for k, v in teacher.state_dict().items():  # the teacher run's weights
        torch.testing.assert_close(v, saved[f"model.{k}"])
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    tr.fit()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k])
    in_opt = {id(p) for o in tr.optimizers.values() for g in o.param_groups for p in g["params"]}
    assert not in_opt & {id(p) for p in teacher.parameters()}
    assert sorted(tr.optimizers) == ["aux", "main"]
    ckpt = load_checkpoint(tmp_path / "student" / "checkpoints" / "last.pt")
    assert not [k for k in ckpt["method"] if "teacher" in k]
    # a rebuilt student finds its teacher again through its saved config, and its checkpoint
    # (which has no teacher in it) loads
    saved_cfg = resolve_config(yaml.safe_load((tmp_path / "student" / "config.yaml").read_text()))
    assert saved_cfg.method["teacher_run"] == str(teacher_run)
    again = Trainer(saved_cfg, run_dir=tmp_path / "student", task=_task())
    again.load_state_dict(ckpt)
    assert again.method.teacher is not None and again.step == 3


def test_bad_teacher_runs_fail_with_a_clear_error(tmp_path, teacher_run):
    def build(run):
        cfg = _cfg({"name": "kd", "teacher_run": run}, tmp_path)
        return Trainer(cfg, run_dir=tmp_path / "s", task=_task())

    with pytest.raises(ConfigError, match="teacher_run"):
        build(None)
    with pytest.raises(CheckpointError, match="not a run directory"):
        build(str(tmp_path / "nowhere"))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((teacher_run / "config.yaml").read_text())
    with pytest.raises(CheckpointError, match="unfinished"):
        build(str(unfinished))
    cfg = _cfg({"name": "sobolev", "teacher_run": str(teacher_run)}, tmp_path)
    with pytest.raises(CheckpointError, match="predicts 3 classes"):
        Trainer(cfg, run_dir=tmp_path / "s", task=_task(k=4))
    wide = DATask(DomainData(torch.rand(12, 7), torch.arange(12) % 3), DomainData(torch.rand(2, 7)), 3)
    with pytest.raises(CheckpointError, match="does not fit"):
        Trainer(cfg, run_dir=tmp_path / "s", task=wide)


def test_a_student_refuses_to_resume_after_its_teacher_is_trained_again(tmp_path, teacher_run):
    """The student keeps its teacher's checkpoint fingerprint (checkpoint and summary); a
    teacher trained again in the same directory stops the resume with a clear error, while the
    same teacher resumes."""
    from gradversary.engine.teacher import teacher_fingerprint
    from gradversary.errors import TeacherChangedError

    fp = teacher_fingerprint(teacher_run)
    assert fp is not None and len(fp) == 16 and teacher_fingerprint(tmp_path / "nowhere") is None
    cfg = _cfg({"name": "kd", "teacher_run": str(teacher_run)}, tmp_path)
    first = Trainer(cfg, run_dir=tmp_path / "s", task=_task()).fit()
    assert first["teacher"] == {"run": str(teacher_run), "fingerprint": fp}
    Trainer(cfg, run_dir=tmp_path / "s", task=_task()).fit(resume=True)  # the same teacher: resumes
    # the teacher trained again (another seed) in its directory
    Trainer(resolve_config({**_cfg({"name": "erm"}, tmp_path).to_dict(), "train": {**FAST, "seed": 1}}),
            run_dir=teacher_run, task=_task()).fit(force=True)
    assert teacher_fingerprint(teacher_run) != fp
    with pytest.raises(TeacherChangedError, match=f"at checkpoint {fp}.*3 steps learnt from another teacher"):
        Trainer(cfg, run_dir=tmp_path / "s", task=_task()).fit(resume=True)
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["teacher"]["fingerprint"] == fp  # kept


def test_sparse_subset_is_balanced_fixed_and_independent_of_the_training_seed():
    import numpy as np

    from gradversary.data.cifar10_jpeg import balanced_subset

    y = np.arange(1000) % 10
    a = balanced_subset(y, 5, seed=0)
    assert np.bincount(y[a]).tolist() == [5] * 10
    assert (a == balanced_subset(y, 5, seed=0)).all()
    assert not (a == balanced_subset(y, 5, seed=1)).all()


def test_missing_or_corrupt_cifar_file_names_file_checksum_and_source(tmp_path):
    from gradversary.data import create_task
    from gradversary.data.cifar10_jpeg import FILE, SHA256

    with pytest.raises(DataError, match=f"{FILE}.*{SHA256}.*YoongiKim"):
        create_task("cifar10_jpeg", root=str(tmp_path))
    (tmp_path / FILE).write_bytes(b"not an npz")
    with pytest.raises(DataError, match=f"corrupt.*{SHA256}"):
        create_task("cifar10_jpeg", root=str(tmp_path))
    with pytest.raises(ConfigError, match="fraction or per_class"):
        create_task("cifar10_jpeg", root=str(tmp_path), fraction=0.1, per_class=3)


needs_data = pytest.mark.skipif(not (DATA / "cifar10_jpeg_q75_subset.npz").is_file(),
                                reason=f"no CIFAR-10 (JPEG subset) at {DATA}")
TINY = ["train.epochs=null", "train.steps=2", "train.batch_size=8", "train.eval_every=0", "train.threads=1",
        "data.max_test=20", "data.fraction=null", "data.per_class=2"]


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> Path:
    from gradversary.cli.main import main

    teacher = tmp_path_factory.mktemp("distill") / "teacher"
    assert main(["train", str(CONFIGS / "teacher.yaml"), "--run-dir", str(teacher), "--no-progress",
                 "--data-root", str(DATA), "model.widths=[4,4,4]", "data.hflip_copies=false",
                 *TINY[:-2], "data.per_class=2"]) == 0
    return teacher


@needs_data
@pytest.mark.parametrize("config", sorted(str(p.relative_to(CONFIGS).with_suffix(""))
                                           for p in [*CONFIGS.glob("*_*.yaml"), *CONFIGS.glob("short/*_*.yaml")]))
def test_each_distillation_config_trains_two_steps_from_yaml(tmp_path, tiny_teacher, config):
    from gradversary.cli.main import main

    run = tmp_path / config.replace("/", "_")
    extra = [] if Path(config).name.startswith("erm") else [f"method.teacher_run={tiny_teacher}"]
    assert main(["train", str(CONFIGS / f"{config}.yaml"), "--run-dir", str(run), "--no-progress",
                 "--data-root", str(DATA), *TINY, *extra]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and 0.0 <= summary["final"]["source_test_acc"] <= 1.0
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["per_class"] == 2


def test_paper_size_configs_resolve():
    from gradversary.engine.config import load_config

    paths = sorted((CONFIGS / "paper").glob("*.yaml"))
    assert len(paths) == 18
    for path in paths:
        cfg = load_config(path)
        assert cfg.data["name"] == "image_npz" and cfg.train.epochs in (50, 100), path.name


def test_a_teacher_trained_again_to_the_same_weights_keeps_its_fingerprint(tmp_path, teacher_run):
    """The fingerprint reads the deployed weights, not the checkpoint file (which also holds the
    wall time): a deterministic teacher repeated on a new machine keeps its students, and one
    changed weight is another teacher."""
    from gradversary.engine.checkpoint import save_checkpoint
    from gradversary.engine.teacher import teacher_fingerprint

    fp = teacher_fingerprint(teacher_run)
    again = tmp_path / "again"
    Trainer(_cfg({"name": "erm"}, tmp_path), run_dir=again, task=_task()).fit()
    assert (again / "checkpoints" / "last.pt").read_bytes() != (teacher_run / "checkpoints" / "last.pt").read_bytes()
    assert teacher_fingerprint(again) == fp
    state = load_checkpoint(again / "checkpoints" / "last.pt")
    name = next(k for k in state["method"] if k.startswith("model."))
    state["method"][name] = state["method"][name].clone()
    state["method"][name].view(-1)[0] += 1e-6
    save_checkpoint(again / "checkpoints" / "last.pt", state)
    assert teacher_fingerprint(again) != fp
