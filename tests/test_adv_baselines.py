"""The adversarial-training baselines of issue 18: PGD-AT (Madry et al.) and fast AT (Wong et al.),
each step against a hand-written reference."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gradversary.cli.main import main
from gradversary.methods import Batch, create_method
from gradversary.models import create_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _setup(name, **cfg):
    torch.manual_seed(0)
    model = create_model("mlp", (1, 4, 4), 3, hidden=[6]).train()
    m = create_method(name, model, **cfg)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 4, 4, generator=g)
    x[0], x[1] = 0.0, 1.0  # box corners: the clamp to [0, 1] must act
    return m, x, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])


def _clip(v, x, eps):
    return torch.min(torch.max(v, x - eps), x + eps).clamp(0.0, 1.0)


def _input_grad(model, v, y):
    v = v.clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(v), y, reduction="sum"), v)[0]


def _compare(m, x, y, x_ref):
    """The method's loss and parameter gradients equal CE(model(x_ref)) and its gradients."""
    out = m(Batch(x, y))
    grads = torch.autograd.grad(out.loss, list(m.model.parameters()))
    ref = F.cross_entropy(m.model(x_ref), y)
    ref_grads = torch.autograd.grad(ref, list(m.model.parameters()))
    torch.testing.assert_close(out.loss, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
    assert m.model.training
    return out


def test_pgd_at_step_matches_madry_by_hand():
    eps, step, k = 0.3, 0.05, 7
    m, x, y = _setup("pgd_at", eps=eps, step_size=step, steps=k)
    torch.manual_seed(11)
    u = torch.rand(x.shape)
    xa = _clip(x + (-eps + 2 * eps * u), x, eps)  # uniform start in the ball, then the box
    for _ in range(k):  # the last iterate, not the worst one
        xa = _clip(xa + step * _input_grad(m.model, xa, y).sign(), x, eps)
    torch.manual_seed(11)
    out = _compare(m, x, y, xa)
    assert float(out.metrics["pert_linf"]) <= eps + 1e-6
    assert set(out.parts) == {"adv_loss"} and "adv_acc" in out.metrics


def test_pgd_at_without_random_start_is_deterministic_and_moves():
    m, x, y = _setup("pgd_at", eps=0.1, step_size=0.02, steps=3, random_start=False)
    xa = x.clone()
    for _ in range(3):
        xa = _clip(xa + 0.02 * _input_grad(m.model, xa, y).sign(), x, 0.1)
    _compare(m, x, y, xa)
    assert float((xa - x).abs().max()) > 0.05


@pytest.mark.parametrize("alpha", [None, 0.2])
def test_fast_at_step_matches_wong_by_hand(alpha):
    eps = 0.3
    m, x, y = _setup("fast_at", eps=eps, alpha=alpha)
    a = 1.25 * eps if alpha is None else alpha  # the paper's alpha = 1.25 eps
    torch.manual_seed(5)
    u = torch.rand(x.shape)
    x0 = _clip(x + (-eps + 2 * eps * u), x, eps)
    x_adv = _clip(x0 + a * _input_grad(m.model, x0, y).sign(), x, eps)
    torch.manual_seed(5)
    out = _compare(m, x, y, x_adv)
    assert float(out.metrics["pert_linf"]) <= eps + 1e-6


def test_fast_at_unclipped_start_matches_wong_s_mnist_script_by_hand():
    """``clip_start: false``: the gradient at the raw start x + U[-eps, eps] (outside [0, 1] at
    the box corners), only the step's result clipped to the ball and the box."""
    eps, a = 0.3, 0.375
    m, x, y = _setup("fast_at", eps=eps, alpha=a, clip_start=False)
    torch.manual_seed(5)
    x0 = x + (-eps + 2 * eps * torch.rand(x.shape))
    assert float(x0.min()) < 0.0 and float(x0.max()) > 1.0  # the test can tell the two apart
    x_adv = _clip(x0 + a * _input_grad(m.model, x0, y).sign(), x, eps)
    torch.manual_seed(5)
    _compare(m, x, y, x_adv)
    # at a pixel of 0, a step up keeps a random size below eps; clipped first, it is always eps
    up = (x == 0) & (x_adv > 0)
    assert up.any() and float(x_adv[up].min()) < eps - 0.01


def test_options_are_checked():
    model = create_model("mlp", (2,), 2, hidden=[3])
    for name, bad in (("pgd_at", {"eps": 1.5}), ("pgd_at", {"steps": 0}), ("fast_at", {"alpha": -1.0})):
        with pytest.raises(ValueError):
            create_method(name, model, **bad)


CONVERGENCE = sorted((ROOT / "configs" / "great" / "convergence").glob("mnist_*.yaml"))


@pytest.mark.parametrize("path", CONVERGENCE, ids=lambda p: p.stem)
def test_each_convergence_config_trains_two_steps_from_the_cli(tmp_path, path):
    if not (DATA / "mnist.npz").is_file():
        pytest.skip(f"MNIST not found at {DATA}")
    over = ["method.steps=2"] if "pgd_at" in path.stem else []
    args = ["train", str(path), f"out_dir={tmp_path}", "train.epochs=null", "train.steps=2",
            "train.batch_size=16", "train.eval_every=0", "data.max_source=64", "data.max_target=8",
            "data.max_test=32", *over, "--data-root", str(DATA), "--no-progress"]
    assert main(args) == 0
    (summary,) = tmp_path.glob("*/summary.json")
    assert 0.0 <= json.loads(summary.read_text())["final"]["source_test_acc"] <= 1.0
    records = [json.loads(line) for line in (summary.parent / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in records if r["kind"] == "train")


def test_small_cnn_is_wong_et_al_s_and_madry_et_al_s_mnist_network():
    """The defaults are Wong et al.'s ``mnist_net`` (parameters counted by hand); Madry et al.'s
    settings give their 3.27 M-parameter network."""
    wong = create_model("small_cnn", (1, 28, 28), 10)
    # conv 1->16 4x4: 16*16 + 16; conv 16->32 4x4: 32*256 + 32; FC 1568->100; FC 100->10
    assert sum(p.numel() for p in wong.parameters()) == 272 + 8224 + 156900 + 1010
    convs = [m for m in wong.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [((4, 4), (2, 2), (1, 1))] * 2
    madry = create_model("small_cnn", (1, 28, 28), 10, channels=[32, 64], kernel=5, stride=1,
                         padding=2, pool=True, hidden=[1024])
    # conv 1->32 5x5: 832; conv 32->64 5x5: 51264; FC 3136->1024: 3212288; FC 1024->10: 10250
    assert sum(p.numel() for p in madry.parameters()) == 832 + 51264 + 3212288 + 10250
    x = torch.rand(3, 1, 28, 28)
    assert wong(x).shape == (3, 10) and wong.features(x).shape == (3, 100)
    with pytest.raises(ValueError, match="kernel"):
        create_model("small_cnn", (1, 28, 28), 10, stride=0)
