"""One CDAN / CDAN+E / MDD step through the engine against the same step written out by hand."""

import math

import pytest
import torch

from gradversary.engine import Trainer, resolve_config
from gradversary.methods import Batch

FEAT = {"f.w": "model.features.1.0.weight", "f.b": "model.features.1.0.bias"}
HEAD = {"y.w": "model.head.weight", "y.b": "model.head.bias"}


def _batch():
    g = torch.Generator().manual_seed(0)
    return Batch(torch.randn(8, 2, generator=g), torch.randint(0, 2, (8,), generator=g),  # moons: K = 2
                 torch.randn(8, 2, generator=g) + 1.0)


def _ce(logits, y):
    """Mean cross-entropy written out: logsumexp - logit of the label."""
    return (logits.logsumexp(1) - logits[torch.arange(len(y)), y]).mean()


def _trainer(tmp_path, method, p):
    cfg = resolve_config({
        "method": method, "model": {"name": "mlp", "hidden": [6]},
        "data": {"name": "moons"},
        "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0},
        "train": {"steps": 5, "batch_size": 16, "progress": False, "seed": 3},
    })
    tr = Trainer(cfg, run_dir=tmp_path)
    tr._set_progress(p)
    return tr


def _check_update(tr, names, P, grad, lr, loss_parts, values):
    for k, v in loss_parts.items():
        torch.testing.assert_close(values[k], v.detach(), msg=k)
    after = tr.method.state_dict()
    for k, v in names.items():  # first SGD step with momentum: the buffer is the gradient
        torch.testing.assert_close(after[v], P[k].detach() - lr * grad[k], rtol=1e-6, atol=1e-7, msg=k)


@pytest.mark.parametrize("name,randomized,p", [("cdan", False, 0.3), ("cdan", True, 0.7),
                                               ("cdan_e", False, 0.5), ("cdan_e", True, 0.9)])
def test_one_cdan_step_matches_hand_written_step(tmp_path, name, randomized, p):
    tr = _trainer(tmp_path, {"name": name, "disc_hidden": [5], "disc_batch_norm": False,
                             "randomized": randomized, "randomized_dim": 7}, p)
    m = tr.method
    disc = {"d.w1": "discriminator.net.0.weight", "d.b1": "discriminator.net.0.bias",
            "d.w2": "discriminator.net.2.weight", "d.b2": "discriminator.net.2.bias"}
    names = {**FEAT, **HEAD, **disc}
    sd = m.state_dict()
    P = {k: sd[v].clone().requires_grad_() for k, v in names.items()}
    b = _batch()

    # --- by hand
    lam = 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0
    lr = 0.01 / (1.0 + 10.0 * p) ** 0.75
    x = torch.cat([b.x_s, b.x_t])
    f = torch.relu(x @ P["f.w"].T + P["f.b"])                               # (16, 6)
    logits = f @ P["y.w"].T + P["y.b"]                                      # (16, 2)
    task_loss = _ce(logits[:8], b.y_s)
    g = torch.exp(logits - logits.logsumexp(1, keepdim=True)).detach()      # softmax, constant
    if randomized:
        rf, rg = sd["map.r_f"], sd["map.r_g"]                               # (7, 6), (7, 2)
        t = (f @ rf.T) * (g @ rg.T) / math.sqrt(7)
    else:
        t = torch.stack([torch.outer(g[i], f[i]).reshape(-1) for i in range(16)])  # (16, 12)
    z = (torch.relu(t @ P["d.w1"].T + P["d.b1"]) @ P["d.w2"].T + P["d.b2"]).squeeze(1)
    d = torch.cat([torch.ones(8), torch.zeros(8)])
    bce = torch.log1p(torch.exp(-z.abs())) + z.clamp(min=0) - d * z
    if name == "cdan_e":
        ent = -(g * g.log()).sum(1)
        w = 1 + torch.exp(-ent)
        domain_loss = 0.5 * ((w[:8] * bce[:8]).sum() / w[:8].sum() + (w[8:] * bce[8:]).sum() / w[8:].sum())
    else:
        domain_loss = bce.mean()
    feat, head, dk = list(FEAT), list(HEAD), list(disc)
    gy = dict(zip(feat + head, torch.autograd.grad(task_loss, [P[k] for k in feat + head], retain_graph=True)))
    gd = dict(zip(feat + dk, torch.autograd.grad(domain_loss, [P[k] for k in feat + dk])))
    grad = {**{k: gy[k] - lam * gd[k] for k in feat}, **{k: gy[k] for k in head},
            **{k: gd[k] for k in dk}}

    _, values = tr.train_step(b)
    assert float(values["grl_lambda"]) == pytest.approx(lam, rel=1e-6)
    _check_update(tr, names, P, grad, lr, {"task_loss": task_loss, "domain_loss": domain_loss}, values)


def test_cdan_switches_to_the_randomised_map_above_max_multilinear():
    from gradversary.methods import create_method
    from gradversary.models import create_model

    model = create_model("mlp", (2,), 3, hidden=[6])
    assert create_method("cdan", model).map.out_features == 18                      # exact: K F
    assert create_method("cdan", model, max_multilinear=17).map.out_features == 1024
    assert create_method("cdan", model, randomized=True, randomized_dim=9).map.out_features == 9


def test_randomised_map_preserves_inner_products_in_expectation():
    from gradversary.methods.cdan import MultilinearMap

    torch.manual_seed(0)
    f, g = torch.randn(2, 5), torch.softmax(torch.randn(2, 3), 1)
    exact = MultilinearMap(5, 3)(f, g)
    rand = MultilinearMap(5, 3, randomized_dim=200_000)(f, g)
    assert float(rand[0] @ rand[1]) == pytest.approx(float(exact[0] @ exact[1]), rel=0.05, abs=0.02)


@pytest.mark.parametrize("p,margin", [(0.2, 4.0), (0.8, 2.0)])
def test_one_mdd_step_matches_hand_written_step(tmp_path, p, margin):
    tr = _trainer(tmp_path, {"name": "mdd", "margin": margin, "adv_hidden": [5], "adv_dropout": 0.0,
                             "lambda_schedule": {"name": "warm_start_lambda", "gamma": 1e-3, "max": 0.1}}, p)
    adv = {"a.w1": "adv_head.0.weight", "a.b1": "adv_head.0.bias",
           "a.w2": "adv_head.2.weight", "a.b2": "adv_head.2.bias"}
    names = {**FEAT, **HEAD, **adv}
    sd = tr.method.state_dict()
    P = {k: sd[v].clone().requires_grad_() for k, v in names.items()}
    b = _batch()

    # --- by hand: the step is i = p * total = 5 p
    lam = 0.1 * (2.0 / (1.0 + math.exp(-1e-3 * 5 * p)) - 1.0)
    lr = 0.01 / (1.0 + 10.0 * p) ** 0.75
    x = torch.cat([b.x_s, b.x_t])
    f = torch.relu(x @ P["f.w"].T + P["f.b"])
    y = f @ P["y.w"].T + P["y.b"]
    a = torch.relu(f @ P["a.w1"].T + P["a.b1"]) @ P["a.w2"].T + P["a.b2"]   # f' (16, 2)
    task_loss = _ce(y[:8], b.y_s)
    h = y.argmax(1)                                                           # h_f, constant
    src = _ce(a[:8], h[:8])
    p_t = torch.softmax(a[8:], 1)[torch.arange(8), h[8:]]
    tgt = -torch.log(torch.clamp(1 - p_t + 1e-6, max=1.0)).mean()
    adv_loss = margin * src + tgt
    feat, head, ak = list(FEAT), list(HEAD), list(adv)
    gy = dict(zip(feat + head, torch.autograd.grad(task_loss, [P[k] for k in feat + head], retain_graph=True)))
    ga = dict(zip(feat + ak, torch.autograd.grad(adv_loss, [P[k] for k in feat + ak])))
    grad = {**{k: gy[k] - lam * ga[k] for k in feat}, **{k: gy[k] for k in head},
            **{k: ga[k] for k in ak}}

    _, values = tr.train_step(b)
    assert float(values["grl_lambda"]) == pytest.approx(lam, rel=1e-6)
    _check_update(tr, names, P, grad, lr, {"task_loss": task_loss, "adv_loss": adv_loss}, values)
