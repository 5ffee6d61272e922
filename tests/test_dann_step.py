"""One DANN training step through the engine against the same step written out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from gradversary.engine import Trainer, resolve_config
from gradversary.methods import Batch


def _hand_forward(P, x_s, y_s, x_t):
    """The DANN forward and its two losses from raw parameter tensors (mlp [6], disc [5])."""
    x = torch.cat([x_s, x_t])
    f = torch.relu(x @ P["f.w"].T + P["f.b"])                     # features (N, 6)
    logits = f[: len(x_s)] @ P["y.w"].T + P["y.b"]                # label head (N_s, 2)
    logp = logits - logits.logsumexp(1, keepdim=True)
    task_loss = -logp[torch.arange(len(y_s)), y_s].mean()
    h = torch.relu(f @ P["d.w1"].T + P["d.b1"])                   # domain head hidden (N, 5)
    z = (h @ P["d.w2"].T + P["d.b2"]).squeeze(1)                  # domain logits (N,)
    d = torch.cat([torch.ones(len(x_s)), torch.zeros(len(x_t))])  # 1 = source
    # binary cross-entropy with logits, written out: softplus(z) - d z
    domain_loss = (torch.log1p(torch.exp(-z.abs())) + z.clamp(min=0) - d * z).mean()
    return task_loss, domain_loss


@pytest.mark.parametrize("p,disc_rate", [(0.0, "full"), (0.3, "full"), (0.9, "full"),
                                         (0.3, "lambda"), (0.9, "lambda")])
def test_one_dann_step_matches_hand_written_step(tmp_path, p, disc_rate):
    cfg = resolve_config({
        "method": {"name": "dann", "disc_hidden": [5], "disc_rate": disc_rate},
        "model": {"name": "mlp", "hidden": [6]},
        "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0},
        "train": {"steps": 5, "batch_size": 16, "progress": False, "seed": 3},
    })
    tr = Trainer(cfg, run_dir=tmp_path)
    m = tr.method
    names = {"f.w": "model.features.1.0.weight", "f.b": "model.features.1.0.bias",
             "y.w": "model.head.weight", "y.b": "model.head.bias",
             "d.w1": "discriminator.net.0.weight", "d.b1": "discriminator.net.0.bias",
             "d.w2": "discriminator.net.2.weight", "d.b2": "discriminator.net.2.bias"}
    sd = m.state_dict()
    P = {k: sd[v].clone().requires_grad_() for k, v in names.items()}
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(8, 2, generator=g), torch.randint(0, 2, (8,), generator=g),
                  torch.randn(8, 2, generator=g) + 1.0)

    # --- by hand
    lam = 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0
    lr = 0.01 / (1.0 + 10.0 * p) ** 0.75
    task_loss, domain_loss = _hand_forward(P, batch.x_s, batch.y_s, batch.x_t)
    feat, head, disc = ["f.w", "f.b"], ["y.w", "y.b"], ["d.w1", "d.b1", "d.w2", "d.b2"]
    gy = dict(zip(feat + head, torch.autograd.grad(task_loss, [P[k] for k in feat + head], retain_graph=True)))
    gd = dict(zip(feat + disc, torch.autograd.grad(domain_loss, [P[k] for k in feat + disc])))
    grad = {k: gy[k] - lam * gd[k] for k in feat}                 # eq. (13): reversed, scaled
    grad.update({k: gy[k] for k in head})                         # eq. (14)
    rate = lam if disc_rate == "lambda" else 1.0                  # eq. (15): mu lambda (JMLR)
    grad.update({k: rate * gd[k] for k in disc})                  # or the full rate
    # first SGD step with momentum: the buffer is the gradient itself
    expected = {k: P[k].detach() - lr * grad[k] for k in P}

    # --- through the engine
    tr._set_progress(p)
    _, values = tr.train_step(batch)
    torch.testing.assert_close(values["task_loss"], task_loss.detach())
    torch.testing.assert_close(values["domain_loss"], domain_loss.detach())
    assert float(values["grl_lambda"]) == pytest.approx(lam, rel=1e-6)
    assert tr.optimizers["main"].param_groups[0]["lr"] == pytest.approx(lr)
    after = m.state_dict()
    for k, v in names.items():
        torch.testing.assert_close(after[v], expected[k], rtol=1e-6, atol=1e-7, msg=k)


def test_one_erm_step_matches_hand_written_step(tmp_path):
    cfg = resolve_config({"method": {"name": "erm"}, "model": {"name": "mlp", "hidden": [4]},
                          "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.0,
                                    "lr_schedule": {"name": "constant"}},
                          "train": {"steps": 3, "batch_size": 8, "progress": False}})
    tr = Trainer(cfg, run_dir=tmp_path)
    sd = {k: v.clone().requires_grad_() for k, v in tr.method.state_dict().items()}
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    h = torch.relu(x @ sd["model.features.1.0.weight"].T + sd["model.features.1.0.bias"])
    loss = F.cross_entropy(h @ sd["model.head.weight"].T + sd["model.head.bias"], y)
    grads = dict(zip(sd, torch.autograd.grad(loss, list(sd.values()))))
    tr._set_progress(0.0)
    got, _ = tr.train_step(Batch(x, y))
    torch.testing.assert_close(got, loss.detach())
    for k, v in tr.method.state_dict().items():
        torch.testing.assert_close(v, sd[k].detach() - 0.1 * grads[k])


def test_dann_bn_policies_differ_only_with_batchnorm():
    from gradversary.methods.dann import DANN, DANNConfig
    from gradversary.models import create_model

    torch.manual_seed(0)
    model = create_model("mlp", (2,), 2, hidden=[4])
    a = DANN(model, DANNConfig(bn_policy="joint"))
    b = DANN(model, DANNConfig(bn_policy="separate"))
    xs, xt = torch.randn(5, 2), torch.randn(5, 2) + 3
    torch.testing.assert_close(a.features(xs, xt), b.features(xs, xt))
    bn_model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    model.features = bn_model
    fa, fb = a.features(xs, xt), b.features(xs, xt)
    assert not torch.allclose(fa, fb)
    # separate: each domain's features are normalised by its own batch statistics
    torch.testing.assert_close(fb[:5].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(fb[5:].mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_dann_evaluate_matches_separate_label_and_domain_passes():
    # evaluate shares one feature pass between the label head and the domain classifier;
    # the figures must be those of the two separate passes
    from gradversary.data.task import DomainData
    from gradversary.methods import create_method
    from gradversary.methods.base import Method
    from gradversary.models import create_model

    torch.manual_seed(0)
    method = create_method("dann", create_model("mlp", (4,), 3, hidden=[8]), disc_hidden=[5]).eval()
    xs, xt, xo = torch.randn(70, 4), torch.randn(50, 4) + 0.7, torch.randn(20, 4)
    splits = {"source_test": DomainData(xs, torch.randint(0, 3, (70,)), "source_test"),
              "target_test": DomainData(xt, torch.randint(0, 3, (50,)), "target_test"),
              "unlabelled": DomainData(xo, None, "unlabelled")}
    got = method.evaluate(splits, batch_size=16)
    want = Method.evaluate(method, splits, batch_size=16)
    with torch.no_grad():
        ps, pt = method.domain_logits(xs), method.domain_logits(xt)
    want["domain_acc"] = 0.5 * float((ps > 0).float().mean() + (pt <= 0).float().mean())
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-7), k
    assert 0.0 < got["domain_acc"] < 1.0
