"""The thread policy (``train.threads``): cgroup quotas, affinity, the small-model rule, the config."""

import os

import pytest
import torch
from torch import nn

from gradversary.engine import Trainer, load_config, resolve_config
from gradversary.engine import threads as th
from gradversary.errors import ConfigError

MOONS = {"method": {"name": "dann"}, "data": {"name": "moons"},
         "train": {"steps": 2, "progress": False, "eval_every": 0}}


def test_cgroup_v2_cpu_max_parses_quota_over_period():
    assert th.parse_cpu_max("150000 100000\n") == pytest.approx(1.5)
    assert th.parse_cpu_max("200000 100000") == pytest.approx(2.0)
    assert th.parse_cpu_max("max 100000\n") is None


def test_cgroup_v1_cfs_quota_parses_and_minus_one_is_unlimited():
    assert th.parse_cfs_quota("50000\n", "100000\n") == pytest.approx(0.5)
    assert th.parse_cfs_quota("-1\n", "100000\n") is None


def test_cgroup_limit_reads_the_process_cgroup_v2_and_its_mount_root(tmp_path):
    own = tmp_path / "user.slice" / "job"
    own.mkdir(parents=True)
    (own / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert th.cgroup_cpu_limit(tmp_path, "0::/user.slice/job\n") == pytest.approx(1.5)
    # a container: the path is hidden, the quota sits at the mount root
    (tmp_path / "cpu.max").write_text("300000 100000\n")
    assert th.cgroup_cpu_limit(tmp_path, "0::/\n") == pytest.approx(3.0)
    # the tighter of the two wins
    assert th.cgroup_cpu_limit(tmp_path, "0::/user.slice/job\n") == pytest.approx(1.5)


def test_cgroup_limit_reads_v1_cpu_controller_and_none_without_files(tmp_path):
    d = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("250000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    text = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"
    assert th.cgroup_cpu_limit(tmp_path, text) == pytest.approx(2.5)
    (d / "cpu.cfs_quota_us").write_text("-1\n")
    assert th.cgroup_cpu_limit(tmp_path, text) is None
    assert th.cgroup_cpu_limit(tmp_path / "nowhere", "0::/a\n") is None


def test_available_cpus_is_the_affinity_capped_by_the_quota_rounded_down():
    assert th.available_cpus(affinity=[0, 1, 2, 3]) == 4
    assert th.available_cpus(affinity=[0, 1, 2, 3], quota=2.5) == 2
    assert th.available_cpus(affinity=[0, 1], quota=8.0) == 2
    assert th.available_cpus(affinity=[0, 1, 2, 3], quota=0.5) == 1
    assert 1 <= th.available_cpus() <= (os.cpu_count() or 1)


def test_auto_uses_one_thread_for_small_models_else_the_available_cores():
    small = th.SMALL_BATCH_FLOPS / 2
    big = th.SMALL_BATCH_FLOPS * 2
    assert th.choose_threads("auto", available=8, flops=small) == 1
    assert th.choose_threads("auto", available=8, flops=big) == 8
    assert th.choose_threads("auto", available=64, flops=big) == th.MAX_AUTO_THREADS
    assert th.choose_threads("auto", available=8, flops=big, env_cap=3) == 3
    assert th.choose_threads("auto", available=8, flops=big, processes=2) == 4  # torchrun ranks share
    assert th.choose_threads("auto", available=2, flops=big, processes=4) == 1
    assert th.choose_threads(5, available=2, flops=small) == 5  # an explicit count is kept


def test_batch_flops_counts_a_linear_layer_times_the_batch():
    # one example through Linear(10, 20): 2 * 10 * 20 FLOPs (a multiply and an add each)
    assert th.batch_flops(nn.Linear(10, 20), (10,), batch_size=64) == 2 * 10 * 20 * 64


def test_the_moons_demo_is_small_and_the_dann_mnist_network_is_not():
    from gradversary.models.base import create_model

    moons = create_model("mlp", in_shape=(2,), num_classes=2, hidden=[15, 15])
    mnist = create_model("dann_mnist", in_shape=(3, 28, 28), num_classes=10)
    assert th.batch_flops(moons, (2,), 128) < th.SMALL_BATCH_FLOPS
    assert th.batch_flops(mnist, (3, 28, 28), 128) > th.SMALL_BATCH_FLOPS


def test_apply_threads_sets_torch_and_leaves_mode_and_rng_alone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(th, "available_cpus", lambda: 2)
    big = nn.Sequential(nn.Linear(1000, 1000), nn.Dropout(0.5), nn.BatchNorm1d(1000), nn.Linear(1000, 10))
    big[2].eval()  # a frozen BatchNorm stays frozen
    rng, stats = torch.get_rng_state(), big[2].running_mean.clone()
    torch.set_num_threads(1)
    assert th.apply_threads("auto", big, (1000,), 128) == 2 == torch.get_num_threads()
    assert [m.training for m in big] == [True, True, False, True]
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(big[2].running_mean, stats)
    assert th.apply_threads("auto", nn.Linear(2, 2), (2,), 128) == 1 == torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert th.apply_threads("auto", big, (1000,), 128) == 1
    assert th.apply_threads(2, big, (1000,), 128) == 2 == torch.get_num_threads()


def test_auto_is_the_default_and_the_resolved_count_is_in_the_summary(tmp_path):
    cfg = resolve_config(MOONS)
    assert cfg.train.threads == "auto"
    torch.set_num_threads(2)
    summary = Trainer(cfg, run_dir=tmp_path).fit()
    assert summary["threads"] == 1 == torch.get_num_threads()  # the moons MLP is small
    assert "threads: auto" in (tmp_path / "config.yaml").read_text()


def test_the_test_suite_caps_auto_at_one_thread():
    # the root conftest sets OMP_NUM_THREADS=1 (unless set already), so that a model large enough
    # for several threads still trains on one inside the tests and their subprocesses
    assert os.environ.get("OMP_NUM_THREADS") == "1"
    cfg = resolve_config({**MOONS, "model": {"name": "mlp", "hidden": [2000, 2000]}})
    assert Trainer(cfg, persist=False).threads == 1


def test_threads_accepts_auto_integers_and_null_and_rejects_the_rest(tmp_path):
    assert resolve_config({"train": {"threads": "auto"}}).train.threads == "auto"
    assert resolve_config({"train": {"threads": 3}}).train.threads == 3
    assert resolve_config({"train": {"threads": None}}).train.threads is None
    for bad in (-3, 0, "foo"):
        with pytest.raises(ConfigError, match="train.threads must be 'auto', an integer >= 1"):
            resolve_config({"train": {"threads": bad}})
    with pytest.raises(ConfigError, match="train.threads"):
        resolve_config({"train": {"threads": 2.5}})
    path = tmp_path / "c.yaml"
    path.write_text("train: {threads: auto}\n")
    assert load_config(path, ["train.threads=2"]).train.threads == 2
    with pytest.raises(ConfigError, match="got 'foo'"):
        load_config(path, ["train.threads=foo"])
