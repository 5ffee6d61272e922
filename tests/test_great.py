"""GREAT, GREACE, GRE(AT+CE) and the FGSM adversarial-training baseline.

Sinha et al., "Gradient Adversarial Training of Neural Networks", arXiv:1806.08028.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from gradversary.cli.main import main
from gradversary.engine import Trainer, resolve_config
from gradversary.functional import greace_adjust, masked_input_gradient, normalize_gradient
from gradversary.methods import Batch, create_method
from gradversary.methods._great_common import build_auxiliary
from gradversary.models import create_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


# ----------------------------------------------------------------- the functions, in float64
def _tiny_resnet(norm: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet_small", (1, 5, 5), 3, widths=[2, 3], blocks=[1, 1], norm=norm,
                        norm_groups=1).double().train()


@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize("mode", ["none", "l2"])
def test_gradcheck_through_the_masked_double_backprop_path(norm, mode):
    # d/d(theta, x) of the auxiliary loss on the normalised masked gradient: a second
    # derivative of the main network (through BatchNorm's or GroupNorm's double backward).
    model = _tiny_resnet(norm)
    names = ["features.0.weight", "head.weight"]
    params = dict(model.named_parameters())
    aux = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(25, 3)).double()
    y = torch.tensor([0, 2, 1, 2])

    def aux_loss(w_stem, w_head, x):
        with torch.enable_grad():
            p = {**params, names[0]: w_stem, names[1]: w_head}
            logits = functional_call(model, p, (x,))
            g = masked_input_gradient(logits, x, y)
            return F.cross_entropy(aux(normalize_gradient(g, mode)), y, reduction="sum")

    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 1, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    inputs = (params[names[0]].detach().clone().requires_grad_(),
              params[names[1]].detach().clone().requires_grad_(), x)
    assert torch.autograd.gradcheck(aux_loss, inputs, eps=1e-6, atol=1e-5)


def _smooth_logits(P, x):
    return torch.tanh(x @ P[0].T + P[1]) @ P[2].T


@pytest.mark.parametrize("masked", [True, False])
def test_masked_gradient_closed_form_gradcheck_and_gradgradcheck(masked):
    g = torch.Generator().manual_seed(0)
    P = [torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True),
         torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True),
         torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)]
    x = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 2, 1, 0])

    # closed form: a = W2 tanh(W1 x + b), da_k/dx = W1^T (tanh' * W2[k])
    h = x @ P[0].T + P[1]
    jac = torch.einsum("nj,kj,ji->nki", 1 - torch.tanh(h) ** 2, P[2], P[0])  # (N, K, D)
    v = torch.softmax(_smooth_logits(P, x), -1) - F.one_hot(y, 3)
    if masked:
        v = v * F.one_hot(y, 3)
    expected = torch.einsum("nk,nki->ni", v, jac)
    got = masked_input_gradient(_smooth_logits(P, x), x, y, masked=masked)
    torch.testing.assert_close(got, expected)
    if not masked:  # the unmasked gradient is the plain (sum-reduced) cross-entropy's
        ce = F.cross_entropy(_smooth_logits(P, x), y, reduction="sum")
        torch.testing.assert_close(got, torch.autograd.grad(ce, x)[0])

    def fn(*args):
        *ps, xx = args
        with torch.enable_grad():
            return masked_input_gradient(_smooth_logits(ps, xx), xx, y, masked=masked)

    assert torch.autograd.gradcheck(fn, (*P, x))
    assert torch.autograd.gradgradcheck(fn, (*P, x))


@pytest.mark.parametrize("mode", ["l2", "channel_l2"])
def test_normalize_gradient_norms_and_gradgradcheck(mode):
    g = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    out = normalize_gradient(g, mode)
    norms = out.flatten(1).norm(dim=1) if mode == "l2" else out.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert torch.autograd.gradgradcheck(lambda t: normalize_gradient(t, mode), (g,))
    assert normalize_gradient(g, "none") is g
    assert bool((normalize_gradient(torch.zeros(2, 3), "l2") == 0).all())
    with pytest.raises(ValueError, match="mode"):
        normalize_gradient(g, "l1")


def test_greace_logit_gradient_is_eq6_written_out():
    g = torch.Generator().manual_seed(0)
    n, k, beta = 5, 4, 2.5
    a = torch.randn(n, k, generator=g, dtype=torch.float64, requires_grad=True)
    a_aux = torch.randn(n, k, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 1, 1, 2])
    loss = (F.cross_entropy(a, y, reduction="none") + greace_adjust(a, a_aux, y, beta)).mean()
    torch.testing.assert_close(loss, F.cross_entropy(a, y))  # the value is the plain CE
    loss.backward()
    # eq. 6, by hand: dC/da_j = p_j - [j = y] + beta sigma(a')_j [j != y], then the mean's 1/N
    expected = torch.zeros(n, k, dtype=torch.float64)
    for i in range(n):
        yi = int(y[i])
        za = sum(math.exp(a[i, j].item()) for j in range(k))
        zaux = sum(math.exp(a_aux[i, j].item()) for j in range(k))
        for j in range(k):
            p = math.exp(a[i, j].item()) / za
            s = math.exp(a_aux[i, j].item()) / zaux
            expected[i, j] = (p - (j == yi) + beta * s * (j != yi)) / n
    torch.testing.assert_close(a.grad, expected)
    assert a_aux.grad is None  # the auxiliary network learns only from its own loss


def _greace_grad(form, n=5, k=4, beta=2.5):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, k, generator=g, dtype=torch.float64, requires_grad=True)
    a_aux = torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 1, 2])[:n]
    loss = (F.cross_entropy(a, y, reduction="none") + greace_adjust(a, a_aux, y, beta, form)).mean()
    torch.testing.assert_close(loss, F.cross_entropy(a, y))  # every form: the value is the CE
    loss.backward()
    return a.detach(), a_aux, y, a.grad


@pytest.mark.parametrize("form", ["prob", "centered"])
def test_bounded_greace_forms_against_their_own_formulas(form):
    beta = 2.5
    a, a_aux, y, grad = _greace_grad(form, beta=beta)
    n, k = a.shape
    expected = torch.zeros(n, k, dtype=torch.float64)
    for i in range(n):
        za = sum(math.exp(a[i, j].item()) for j in range(k))
        zx = sum(math.exp(a_aux[i, j].item()) for j in range(k))
        p = [math.exp(a[i, j].item()) / za for j in range(k)]
        c = [beta * math.exp(a_aux[i, j].item()) / zx * (j != int(y[i])) for j in range(k)]
        for j in range(k):
            if form == "prob":  # d/da_j of sum_l c_l p_l = p_j (c_j - sum_l c_l p_l)
                added = p[j] * (c[j] - sum(cl * pl for cl, pl in zip(c, p)))
            else:               # c_j - mean_l c_l
                added = c[j] - sum(c) / k
            expected[i, j] = (p[j] - (j == int(y[i])) + added) / n
    torch.testing.assert_close(grad, expected)
    # both remove eq. 6's class sum beta (1 - softmax(a')_y) / N: the logit gradient sums to 0
    torch.testing.assert_close(grad.sum(1), torch.zeros(n, dtype=torch.float64))
    _, _, _, eq6 = _greace_grad("eq6", beta=beta)
    s = torch.softmax(a_aux, 1).gather(1, y[:, None])[:, 0]
    torch.testing.assert_close(eq6.sum(1), beta * (1 - s) / n)
    with pytest.raises(ValueError, match="form"):
        greace_adjust(a, a_aux, y, beta, "eq7")


def _toy_logit_norms(form, separable, steps=(300, 600)):
    """Full-batch gradient descent on a linear 3-class model, CE + GREACE with fixed auxiliary
    weights (random per example): the mean logit norm and mean logit sum at each of ``steps``."""
    g = torch.Generator().manual_seed(0)
    n, k = 300, 3
    y = torch.randint(0, k, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) + (4.0 if separable else 0.5) * F.one_hot(y, k)[:, :2]
    a_aux = torch.randn(n, k, generator=g)
    W = torch.zeros(k, 2, requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.SGD([W, b], lr=1.0)
    out = []
    for t in range(1, steps[-1] + 1):
        a = x @ W.T + b
        loss = F.cross_entropy(a, y, reduction="none")
        if form != "ce":
            loss = loss + greace_adjust(a, a_aux, y, 1.0, form)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        if t in steps:
            a = a.detach()
            out.append((float(a.norm(dim=1).mean()), float(a.sum(1).mean())))
    return out


@pytest.mark.parametrize("separable", [False, True], ids=["overlapping", "separable"])
def test_eq6_runs_away_on_a_toy_problem_and_the_prob_form_stays_bounded(separable):
    # The divergence, explained: eq. 6 is the gradient of CE + beta sum_{k != y} w_k a_k with
    # constant w, linear in the logits and unbounded below; its class sum never vanishes while
    # CE ignores a common shift, so the mean logit sum falls linearly and the norm grows with t.
    (n1, s1), (n2, s2) = _toy_logit_norms("eq6", separable)
    assert n1 > 50 and n2 > 1.8 * n1, (n1, n2)
    assert s2 < 1.8 * s1 < 0, (s1, s2)
    # prob: bounded penalty, zero class sum; the logits behave like plain CE's
    (c1, _), (c2, _) = _toy_logit_norms("ce", separable)
    (p1, ps1), (p2, ps2) = _toy_logit_norms("prob", separable)
    assert p2 < 1.2 * c2 and p2 < 1.1 * p1 + 0.5, (c2, p1, p2)
    assert abs(ps2 - ps1) < 0.1
    # centered: no drift of the sum; bounded where CE dominates (overlapping classes), but its
    # constant push still runs the margins off once the network separates the data
    (q1, qs1), (q2, qs2) = _toy_logit_norms("centered", separable)
    assert abs(qs2 - qs1) < 0.1
    if separable:
        assert q2 > 1.8 * q1 > 50
    else:
        assert q2 < 1.01 * q1 < 5


# ----------------------------------------------------------------- the auxiliary network
def test_auxiliary_is_the_main_architecture_with_leaky_relu_and_no_input_normalisation():
    torch.manual_seed(0)
    model = create_model("resnet_small", (1, 28, 28), 10, widths=[4, 8], blocks=[1, 1],
                         mean=[0.13], std=[0.31])
    aux = build_auxiliary(model)
    kinds = {type(m).__name__ for m in aux.modules()}
    assert "LeakyReLU" in kinds and "ReLU" not in kinds and "Normalize" not in kinds
    assert all(m.negative_slope == 0.2 for m in aux.modules() if isinstance(m, torch.nn.LeakyReLU))
    assert [p.shape for p in aux.parameters()] == [p.shape for p in model.parameters()]
    assert aux.num_classes == 10
    small = build_auxiliary(model, {"norm": "none", "widths": [2, 2]})
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in small.modules())
    # models without a build_spec: a deep copy with LeakyReLU and fresh weights
    mlp = create_model("mlp", (2,), 3, hidden=[7])
    aux = build_auxiliary(mlp)
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in aux.modules())
    assert not torch.equal(aux.head.weight, mlp.head.weight)


def test_greace_alone_sends_nothing_from_the_auxiliary_loss_into_the_main_network():
    torch.manual_seed(0)
    model = create_model("resnet_small", (1, 8, 8), 3, widths=[2], blocks=[1])
    m = create_method("greace", model)
    assert set(m.param_groups()) == {"main", "aux"} and set(m.schedules()) == {"beta"}
    out = m(Batch(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])))
    out.parts["aux_loss"].backward()
    assert all(p.grad is None for p in m.model.parameters())
    assert all(p.grad is not None for p in m.aux.parameters())


# ----------------------------------------------------------------- one step against a reference
def _hand_step(P, x, y, alpha, beta, normalize, greace, form="eq6"):
    """The GREAT / GRE(AT+CE) losses from raw tensors: mlp [5] main, its LeakyReLU copy aux."""
    h = x @ P["W1"].T + P["b1"]
    a = torch.relu(h) @ P["W2"].T + P["b2"]                          # main logits (N, K)
    k = a.shape[1]
    onehot = F.one_hot(y, k).to(a.dtype)
    p = a.softmax(1)
    # masked input gradient, closed form: (p_y - 1) W1^T (relu'(h) * W2[y])
    g = (p * onehot).sum(1, keepdim=True).sub(1) * (((h > 0).to(a.dtype) * P["W2"][y]) @ P["W1"])
    if normalize == "l2":
        g = g / (g.square().sum(1, keepdim=True) + 1e-24).sqrt()
    h2 = g @ P["V1"].T + P["c1"]
    a2 = torch.where(h2 > 0, h2, 0.2 * h2) @ P["V2"].T + P["c2"]      # aux logits
    task_loss = -(a.log_softmax(1) * onehot).sum(1).mean()
    aux_loss = -(a2.log_softmax(1) * onehot).sum(1).mean()
    # GREACE: the constant weights beta softmax(a') on the negative classes, on the logits
    w = beta * a2.detach().softmax(1) * (1 - onehot) if greace else torch.zeros_like(a)
    if form == "prob":  # the bounded form: beta sum_{k != y} softmax(a')_k p_k
        return task_loss, aux_loss, (w * p).sum(1).mean()
    return task_loss, aux_loss, (w * a).sum(1).mean()


@pytest.mark.parametrize("method,normalize,form", [("great", "none", None), ("great", "l2", None),
                                                   ("great_greace", "none", "eq6"),
                                                   ("great_greace", "none", "prob")])
def test_one_great_step_matches_hand_written_step(tmp_path, method, normalize, form):
    p, amax, bmax = 0.4, 1.5, 3.0
    mcfg = {"name": method, "normalize": normalize,
            "alpha_schedule": {"name": "poly_ramp", "max": amax, "power": 0.9}}
    if method == "great_greace":
        mcfg["beta_schedule"] = {"name": "poly_ramp", "max": bmax, "power": 0.9}
        mcfg["form"] = form
    cfg = resolve_config({
        "method": mcfg, "model": {"name": "mlp", "hidden": [5]},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.0,
                  "lr_schedule": {"name": "poly", "power": 0.9}, "groups": {"aux": {"lr": 0.05}}},
        "train": {"steps": 5, "batch_size": 8, "progress": False, "seed": 3},
    })
    tr = Trainer(cfg, run_dir=tmp_path)
    assert set(tr.optimizers) == {"main", "aux"}
    names = {"W1": "model.features.1.0.weight", "b1": "model.features.1.0.bias",
             "W2": "model.head.weight", "b2": "model.head.bias",
             "V1": "aux.features.1.0.weight", "c1": "aux.features.1.0.bias",
             "V2": "aux.head.weight", "c2": "aux.head.bias"}
    sd = tr.method.state_dict()
    P = {k: sd[v].clone().requires_grad_() for k, v in names.items()}
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(8, 2, generator=g), torch.randint(0, 2, (8,), generator=g))

    # --- by hand
    ramp = 1.0 - (1.0 - p) ** 0.9
    alpha, beta = amax * ramp, (bmax * ramp if method == "great_greace" else 0.0)
    task_loss, aux_loss, greace_term = _hand_step(P, batch.x_s, batch.y_s, alpha, beta,
                                                  normalize, method == "great_greace", form)
    main, aux = ["W1", "b1", "W2", "b2"], ["V1", "c1", "V2", "c2"]
    g_task = torch.autograd.grad(task_loss + greace_term, [P[k] for k in main], retain_graph=True)
    g_aux = torch.autograd.grad(aux_loss, [P[k] for k in main + aux], allow_unused=True)
    g_aux = [torch.zeros_like(P[k]) if t is None else t for k, t in zip(main + aux, g_aux)]
    grad = {k: gt - alpha * ga for k, gt, ga in zip(main, g_task, g_aux)}  # reversed, scaled
    grad.update({k: ga for k, ga in zip(aux, g_aux[len(main):])})          # full rate
    lr = {"main": 0.1 * (1 - p) ** 0.9, "aux": 0.05 * (1 - p) ** 0.9}
    expected = {k: P[k].detach() - lr["main" if k in main else "aux"] * grad[k] for k in P}

    # --- through the engine
    tr._set_progress(p)
    _, values = tr.train_step(batch)
    torch.testing.assert_close(values["task_loss"], task_loss.detach())
    torch.testing.assert_close(values["aux_loss"], aux_loss.detach())
    assert float(values["alpha"]) == pytest.approx(alpha, rel=1e-6)
    if method == "great_greace":
        assert float(values["beta"]) == pytest.approx(beta, rel=1e-6)
    assert tr.optimizers["aux"].param_groups[0]["lr"] == pytest.approx(lr["aux"])
    after = tr.method.state_dict()
    for k, v in names.items():
        torch.testing.assert_close(after[v], expected[k], rtol=1e-5, atol=1e-6, msg=k)


# ----------------------------------------------------------------- adversarial training
def _adv_setup(eps=0.1, norm="batch"):
    torch.manual_seed(0)
    model = create_model("resnet_small", (1, 8, 8), 3, widths=[3], blocks=[1], norm=norm)
    m = create_method("adversarial_training", model, eps=eps)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=g)
    x[0] = 0.0
    x[1] = 1.0  # corners of the box: the clamp must act
    return m, x, torch.tensor([0, 1, 2, 0, 1, 2])


def test_adversarial_training_example_is_fgsm_within_eps_and_the_box():
    m, x, y = _adv_setup(eps=0.1)
    seen, at_attack = [], {}

    def hook(mod, inp):
        seen.append((mod.training, inp[0]))
        if not mod.training:  # the attack's pass: keep the weights and BatchNorm statistics
            at_attack.update({k: v.clone() for k, v in mod.state_dict().items()})

    handle = m.model.register_forward_pre_hook(hook)
    m.coin = lambda: True
    m.train()
    m(Batch(x, y))
    train_inputs = [t for training, t in seen if training]
    assert len(train_inputs) == 2 and torch.equal(train_inputs[0], x)
    x_adv = train_inputs[1]
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert m.model.training  # the attack ran in eval mode and restored the mode
    # FGSM by hand, on the model in eval mode as it was when attacked
    handle.remove()
    m.model.load_state_dict(at_attack)
    m.model.eval()
    xr = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(F.cross_entropy(m.model(xr), y, reduction="sum"), xr)
    torch.testing.assert_close(x_adv, (x + 0.1 * gx.sign()).clamp(0, 1))


def test_adversarial_training_loss_follows_the_coin():
    m, x, y = _adv_setup(norm="group")  # no running statistics: passes can be repeated
    m.train()
    for adv in (True, False):
        m.coin = lambda adv=adv: adv
        out = m(Batch(x, y))
        clean = F.cross_entropy(m.model(x), y)
        if adv:
            x_adv = m.attack(m.model, x, y)
            expected = 0.5 * (clean + F.cross_entropy(m.model(x_adv), y))
        else:
            expected = clean
        torch.testing.assert_close(out.loss, expected)
        assert float(out.metrics["adv_frac"]) == float(adv)
    # the default coin draws from the (engine-seeded) global RNG: reproducible, ~adv_prob
    m = create_method("adversarial_training", m.model, adv_prob=0.5)
    torch.manual_seed(5)
    first = [m.coin() for _ in range(200)]
    torch.manual_seed(5)
    assert [m.coin() for _ in range(200)] == first and 60 < sum(first) < 140
    never = create_method("adversarial_training", m.model, adv_prob=0.0)
    assert not any(never.coin() for _ in range(50))


# ----------------------------------------------------------------- each config, via the CLI
MNIST_CONFIGS = sorted((ROOT / "configs" / "great").glob("mnist_*.yaml"))


@pytest.mark.parametrize("path", MNIST_CONFIGS, ids=lambda p: p.stem)
def test_each_mnist_config_trains_two_steps_from_the_cli(tmp_path, path):
    if not (DATA / "mnist.npz").is_file():
        pytest.skip(f"MNIST not found at {DATA}")
    args = ["train", str(path), f"out_dir={tmp_path}", "train.steps=2", "train.batch_size=16",
            "train.eval_every=0", "data.max_source=64", "data.max_target=8", "data.max_test=32",
            "model.widths=[4,8]", "model.blocks=[1,1]", "--data-root", str(DATA), "--no-progress"]
    assert main(args) == 0
    (summary,) = tmp_path.glob("*/summary.json")
    final = json.loads(summary.read_text())["final"]
    assert 0.0 <= final["source_test_acc"] <= 1.0
    records = [json.loads(line) for line in (summary.parent / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train and all(math.isfinite(r["loss"]) for r in train)


def test_paper_configs_build_their_networks():
    # the CIFAR-10 and SVHN configs resolve (tests/test_repo.py) and name ResNet-18 with the
    # paper's alpha_max and beta_max
    for ds, bmax in (("cifar10", 2.0), ("svhn", 10.0)):
        import yaml

        raw = yaml.safe_load((ROOT / "configs" / "great" / f"{ds}_great_greace.yaml").read_text())
        cfg = resolve_config(raw)
        assert cfg.model["name"] == "resnet18" and cfg.train.epochs == 100
        assert cfg.method["beta_schedule"]["max"] == bmax
        assert cfg.method["alpha_schedule"]["max"] == 1.0


def test_double_backprop_step_takes_parameter_gradients_only(monkeypatch):
    """A double-backprop method's engine step restricts the backward to the parameters: they
    get exactly the gradients of a plain ``loss.backward()``, and the input leaf of the input
    gradient is not differentiated."""
    from gradversary.data import DATask, DomainData

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    task = DATask(DomainData(x, y, "source"), DomainData(x.clone(), None, "target"), 10)
    cfg = resolve_config({"method": {"name": "great"}, "model": {"name": "dann_mnist"},
                          "data": {"name": "moons"}, "train": {"steps": 2, "batch_size": 16,
                                                               "eval_every": 0, "progress": False}})
    tr = Trainer(cfg, persist=False, task=task)
    tr._set_progress(0.5)
    assert tr.method.double_backprop
    tr.net(Batch(x, y)).loss.backward()
    ref = [p.grad.clone() for p in tr.optim.params]
    calls, orig = [], torch.autograd.backward

    def spy(*args, **kw):
        calls.append(kw.get("inputs"))
        return orig(*args, **kw)

    monkeypatch.setattr(torch.autograd, "backward", spy)
    tr.train_step(Batch(x, y))
    assert len(calls) == 1 and len(calls[0]) == len(ref)
    for p, r in zip(tr.optim.params, ref):
        torch.testing.assert_close(p.grad, r)
