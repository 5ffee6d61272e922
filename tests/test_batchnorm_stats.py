"""AdaBN (gradversary.analysis.batchnorm): the re-estimated statistics against hand-computed
batch moments, dropout kept off, the model's modes and momenta restored, and a trained run
evaluated with its own, the target's and the source's statistics."""

import pytest
import torch
from torch import nn

from gradversary.analysis.batchnorm import adapt_batchnorm, batchnorm_statistics_of, bn_shift_row
from gradversary.data.root import resolve_data_root
from gradversary.engine import Trainer, resolve_config

DATA = resolve_data_root()


def test_statistics_are_the_average_of_the_batch_moments():
    torch.manual_seed(0)
    x = torch.randn(10, 3) * 2 + 1
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.9), nn.BatchNorm1d(3, momentum=0.3)).train()
    h = net[0](x).detach()
    assert adapt_batchnorm(net, x, batch_size=4) == 1  # batches 0:4, 4:8, 8:10
    parts = [h[0:4], h[4:8], h[8:10]]
    mean = torch.stack([p.mean(0) for p in parts]).mean(0)
    var = torch.stack([p.var(0, unbiased=True) for p in parts]).mean(0)
    bn = net[2]
    assert torch.allclose(bn.running_mean, mean, atol=1e-6)  # dropout was off: h as computed
    assert torch.allclose(bn.running_var, var, atol=1e-5)
    assert bn.momentum == 0.3 and net.training and all(m.training for m in net)
    # a last batch of one joins the one before it (a batch of one has no variance)
    adapt_batchnorm(net, x[:9], batch_size=4)
    parts = [h[0:4], h[4:9]]
    assert torch.allclose(bn.running_var, torch.stack([p.var(0) for p in parts]).mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        adapt_batchnorm(net, x[:1])
    assert adapt_batchnorm(nn.Linear(3, 3), x) == 0


def test_the_context_restores_the_running_statistics_and_changes_the_output():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(2))
    src, tgt = torch.rand(64, 1, 6, 6), torch.rand(64, 1, 6, 6) * 3 + 2
    net.train()
    net(src)
    net.eval()
    before = {k: v.clone() for k, v in net[1].state_dict().items()}
    out_running = net(tgt)
    with batchnorm_statistics_of(net, tgt, batch_size=64) as m:
        assert not m.training
        feats = net[1](net[0](tgt))  # normalised by the target's own moments: mean 0
        assert feats.mean(dim=(0, 2, 3)).abs().max() < 1e-4
        assert not torch.allclose(net(tgt), out_running)
    assert all(torch.equal(before[k], v) for k, v in net[1].state_dict().items())
    assert torch.equal(net(tgt), out_running)


def test_a_trained_run_is_evaluated_with_each_domains_statistics(tmp_path, capsys):
    if not (DATA / "mnist.npz").is_file() or not (DATA / "mnist_m.npz").is_file():
        pytest.skip(f"MNIST / MNIST-M not found at {DATA}")
    raw = {"method": {"name": "dann", "bn_policy": "separate"},
           "model": {"name": "lenet", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
           "data": {"name": "digits", "source": "mnist", "target": "mnist_m", "channels": 3,
                    "max_source": 256, "max_target": 256, "max_test": 128},
           "train": {"steps": 6, "eval_every": 3, "batch_size": 32, "progress": False},
           "out_dir": str(tmp_path)}
    Trainer(resolve_config(raw), run_dir=tmp_path / "r", data_root=str(DATA)).fit()
    row = bn_shift_row(tmp_path / "r", data_root=str(DATA))
    assert row["bn_layers"] >= 1 and row["steps"] == 6 and row["method"] == "dann"
    for k in ("running", "target_stats", "source_stats"):
        assert 0.0 <= row[k]["target_test_acc"] <= 1.0
    assert row["target_stats"] != row["running"]  # the statistics matter to the figures
    # the CLI evaluates a finished run with the target's statistics on request
    import json

    from gradversary.cli.main import main

    assert abs(row["target_stats"]["target_test_acc"] - row["running"]["target_test_acc"]) > 0.02
    for stats, ref in (("running", row["running"]), ("target", row["target_stats"])):
        capsys.readouterr()
        assert main(["eval", str(tmp_path / "r"), "--json", "--data-root", str(DATA), "--bn-stats", stats]) == 0
        out = json.loads(capsys.readouterr().out)
        # AdaBN in batches of 1024 here, 256 in bn_shift_row: the same statistics up to batching
        assert out["target_test_acc"] == pytest.approx(ref["target_test_acc"], abs=0.01 if stats == "target" else 1e-6)
    # the benchmark script writes the table with its provenance header
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bn_statistics.py"
    spec = importlib.util.spec_from_file_location("bn_statistics", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "bn.md"
    assert script.main([str(tmp_path / "r"), "--out", str(out), "--data-root", str(DATA)]) == 0
    text = out.read_text()
    assert "- command: `python benchmarks/bn_statistics.py" in text and "- seeds: 0" in text
    acc = f"{row['target_stats']['target_test_acc']:.3f}"
    assert acc in text.rstrip().splitlines()[-1]


def _shifted_task():
    from gradversary.data.task import DATask, DomainData

    g = torch.Generator().manual_seed(3)
    xs, xt = torch.rand(96, 1, 28, 28, generator=g), torch.rand(96, 1, 28, 28, generator=g) * 3 + 2
    ys, yt = torch.randint(0, 3, (96,), generator=g), torch.randint(0, 3, (96,), generator=g)
    return DATask(DomainData(xs, ys, "source"), DomainData(xt, None, "target"), 3,
                  eval={"source_test": DomainData(xs[:48], ys[:48], "source"),
                        "target_test": DomainData(xt[:48], yt[:48], "target")}, name="shifted")


@pytest.mark.parametrize("ema", [None, 0.5])
def test_bn_stats_target_evaluates_with_the_targets_statistics_and_trains_the_same(tmp_path, ema):
    """train.bn_stats: target changes every evaluation to AdaBN on the unlabelled target
    inputs (equal to re-estimating by hand on the trained weights) and nothing else: the
    trained weights and running statistics are those of the run with bn_stats running."""
    task = _shifted_task()

    def run(stats):
        cfg = resolve_config({"method": {"name": "dann", "bn_policy": "separate"}, "model": {"name": "lenet"},
                              "data": {"name": "moons"},  # unused: the task is given
                              "train": {"steps": 4, "eval_every": 2, "batch_size": 16, "progress": False,
                                        "bn_stats": stats, "ema_decay": ema}})
        tr = Trainer(cfg, run_dir=tmp_path / stats, task=task)
        tr.fit()
        return tr

    running, target = run("running"), run("target")
    sa, sb = running.method.state_dict(), target.method.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)  # training unchanged
    ev_running, ev_target = running.evaluate(), target.evaluate()
    with running.deployed() as m:  # by hand: the same weights, statistics of the target inputs
        m.eval()
        with batchnorm_statistics_of(m.model, task.target.x, 1024):
            by_hand = m.evaluate(task.eval, 1024)
    for k in ("target_test_loss", "source_test_loss", "target_test_acc"):
        assert ev_target[k] == pytest.approx(by_hand[k], abs=1e-6)
    assert abs(ev_target["target_test_loss"] - ev_running["target_test_loss"]) > 1e-3
    sc = target.method.state_dict()  # the evaluation put the running statistics back
    assert all(torch.equal(sb[k], sc[k]) for k in sb)
    # bn_shift_row's "running" column is the statistics the run learnt, whatever it deploys
    with target.deployed(statistics=False) as m:
        m.eval()
        assert m.evaluate(task.eval, 1024)["target_test_loss"] == pytest.approx(ev_running["target_test_loss"], abs=1e-6)


def test_bn_stats_is_checked():
    from gradversary.errors import ConfigError

    with pytest.raises(ConfigError, match="bn_stats"):
        resolve_config({"method": {"name": "erm"}, "model": {"name": "mlp"}, "data": {"name": "moons"},
                        "train": {"bn_stats": "source"}})



def test_adversarial_bn_row_is_the_clean_and_fgsm_rs_accuracy_with_each_set_of_statistics(tmp_path):
    """benchmarks/defense_bn_statistics.py's row: by hand, the deployed model's accuracy on the
    seeded test subsample, clean and under fast AT's step (seeded start), with the running
    statistics and with statistics of the first clean training images; the model's statistics
    and the global RNG are left as they were."""
    if not (DATA / "mnist.npz").is_file():
        pytest.skip(f"MNIST not found at {DATA}")
    from pathlib import Path

    from gradversary.analysis.batchnorm import adversarial_bn_row
    from gradversary.analysis.robustness import subsample
    from gradversary.attacks import eval_mode
    from gradversary.cli.main import main
    from gradversary.methods.fast_at import fgsm_random_start

    cfg = Path(__file__).resolve().parents[1] / "configs" / "great" / "convergence" / "mnist_resnet_fast_at.yaml"
    assert main(["train", str(cfg), f"out_dir={tmp_path}", "train.epochs=null", "train.steps=3",
                 "train.batch_size=16", "train.eval_every=0", "data.max_source=64", "data.max_test=48",
                 "--data-root", str(DATA), "--no-progress"]) == 0
    (run,) = [p.parent for p in tmp_path.glob("*/config.yaml")]
    rng = torch.random.get_rng_state()
    row = adversarial_bn_row(run, 0.3, data_root=str(DATA), n=40, n_stats=32, seed=2, batch_size=64)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert row["method"] == "fast_at" and row["steps"] == 3 and row["bn_layers"] >= 1 and row["n"] == 40

    tr = Trainer.from_run_dir(run, str(DATA), checkpoint="selected")
    test = tr.task.eval["target_test" if "target_test" in tr.task.eval else "source_test"]  # as attack_run
    xs, ys = subsample(test.x, test.y, 40, 2)
    ys = ys.long()
    with tr.deployed(statistics=False) as m:
        model = m.model
        before = {k: v.clone() for k, v in model.state_dict().items()}

        def by_hand():
            with eval_mode(model):
                torch.manual_seed(2)
                adv = fgsm_random_start(model, xs, ys, 0.3, 0.375, clip_start=True)
                with torch.no_grad():
                    return {"clean": (model(xs).argmax(-1) == ys).float().mean().item(),
                            "fgsm_rs": (model(adv).argmax(-1) == ys).float().mean().item()}

        assert row["running"] == pytest.approx(by_hand(), abs=1e-6)
        train_x, train_y = tr.task.source.x[:32], tr.task.source.y[:32].long()
        with eval_mode(model):  # the attacked training images, against the running statistics
            torch.manual_seed(2)
            train_adv = fgsm_random_start(model, train_x, train_y, 0.3, 0.375, clip_start=True)
        with batchnorm_statistics_of(model, train_x, 256):
            assert row["clean_stats"] == pytest.approx(by_hand(), abs=1e-6)
        with batchnorm_statistics_of(model, train_adv, 256):
            assert row["attack_stats"] == pytest.approx(by_hand(), abs=1e-6)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # three steps on perturbed batches only: the running statistics are not the clean ones
    assert row["running"] != row["clean_stats"] != row["attack_stats"]
    # the benchmark script writes the table with its provenance header, and refuses a bad eps
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "defense_bn_statistics.py"
    spec = importlib.util.spec_from_file_location("defense_bn_statistics", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "bn.md"
    assert script.main([str(run), "--eps", "0.3", "--n", "40", "--out", str(out), "--data-root", str(DATA)]) == 0
    text = out.read_text()
    assert "- command: `python benchmarks/defense_bn_statistics.py" in text and "- seeds: 0" in text
    with pytest.raises(SystemExit):
        script.main([str(run), "--eps", "0", "--out", str(out)])
