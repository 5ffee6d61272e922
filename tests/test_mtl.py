"""Multi-task learning: the GAL, the balancers and GREAT-MTL against hand computations."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradversary.data import DATask, DomainData
from gradversary.engine.config import load_config
from gradversary.engine.trainer import Trainer
from gradversary.methods import Batch, create_method
from gradversary.models.base import FeatureClassifier
from gradversary.nn import GradientAlignmentLayer

ROOT = Path(__file__).resolve().parents[1]


class ToyMTL(FeatureClassifier):
    """Two tasks on a linear encoder: class (2 classes) and "reg" (2 outputs); z: (N, 2, 2, 2)."""

    def __init__(self, dtype=torch.float64):
        enc = nn.Linear(3, 8, bias=False).to(dtype)
        super().__init__(enc, nn.Linear(8, 2).to(dtype), 8, 2)
        self.decoders = nn.ModuleDict({"reg": nn.Linear(8, 2).to(dtype)})
        self.tasks = ("class", "reg")
        self.feature_shape = (2, 2, 2)

    @property
    def encoder(self):
        return self.features

    def last_shared_layer(self):
        return self.features

    def encode(self, x):
        return self.features(x).view(-1, 2, 2, 2)

    def decode(self, task, z):
        return (self.head if task == "class" else self.decoders[task])(z.flatten(1))


def toy_batch(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (n,), generator=g)
    t = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return Batch(x, y, None, {"reg": t})


def toy_losses(model, b, z=None):
    """Per-example CE and mean squared error by hand (from the shared feature z if given)."""
    z = model.features(b.x_s) if z is None else z.flatten(1)
    logits, out = model.head(z), model.decoders["reg"](z)
    p = torch.softmax(logits, -1)
    ce = -torch.log(p[torch.arange(len(b.y_s)), b.y_s])
    mse = ((out - b.targets["reg"]) ** 2).mean(1)
    return ce, mse


# ----------------------------------------------------------------------------- GAL
def test_gal_is_identity_forward_and_elementwise_scale_backward():
    torch.manual_seed(0)
    gal = GradientAlignmentLayer((2, 3))
    with torch.no_grad():
        gal.log_weight.copy_(torch.randn(2, 3))
    assert torch.all(gal.weight > 0)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    out = gal(x)
    assert torch.equal(out, x)
    up = torch.randn(4, 2, 3, dtype=torch.float64)
    out.backward(up)
    torch.testing.assert_close(x.grad, up * gal.weight.detach().double())
    assert gal.log_weight.grad is None  # the layer never trains its own weights
    gal.eval()
    assert gal(x) is x  # dropped at inference


def test_gal_starts_at_one_and_supports_double_backward():
    gal = GradientAlignmentLayer((3,))
    assert torch.equal(gal.weight.detach(), torch.ones(3))
    with torch.no_grad():
        gal.log_weight.copy_(torch.tensor([0.0, 1.0, -1.0]))
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad((gal(x) ** 3).sum(), x, create_graph=True)
    w = gal.weight.detach().double()
    torch.testing.assert_close(g, w * 3 * x.detach() ** 2)
    # g = w * 3 y^2 with y = GAL(x): its own derivative passes the GAL again, 6 w^2 x
    (gg,) = torch.autograd.grad(g.sum(), x)
    torch.testing.assert_close(gg, 6 * w ** 2 * x.detach())


# ----------------------------------------------------------------------------- balancers
def test_uncertainty_loss_matches_kendall_formula():
    torch.manual_seed(0)
    model, b = ToyMTL(), toy_batch()
    m = create_method("mtl_uncertainty", model, normalize=False).double()
    with torch.no_grad():
        m.log_var.copy_(torch.tensor([0.3, -0.7]))
    out = m(b)
    ce, mse = toy_losses(model, b)
    s = m.log_var.detach()
    want = ce.mean() / (2 * s[0].exp()) + s[0] / 2 + mse.mean() / (2 * s[1].exp()) + s[1] / 2
    torch.testing.assert_close(out.loss, want)


def test_uncertainty_normalized_weights_train_the_network_and_kendall_trains_s():
    torch.manual_seed(0)
    model, b = ToyMTL(), toy_batch()
    m = create_method("mtl_uncertainty", model, normalize=True).double()
    s = torch.tensor([0.3, -0.7], dtype=torch.float64)
    with torch.no_grad():
        m.log_var.copy_(s)
    m(b).loss.backward()
    ce, mse = toy_losses(model, b)
    c = 0.5 * torch.exp(-s)
    w = c / c.sum()
    ref = torch.autograd.grad(w[0] * ce.mean() + w[1] * mse.mean(), model.features.weight)[0]
    torch.testing.assert_close(model.features.weight.grad, ref)
    J = torch.stack([ce.mean(), mse.mean()]).detach()
    torch.testing.assert_close(m.log_var.grad, -c * J + 0.5)


def test_gradnorm_weights_and_gradient_norm_loss_by_hand():
    torch.manual_seed(0)
    model, b = ToyMTL(), toy_batch()
    m = create_method("mtl_gradnorm", model, alpha=0.6).double()
    rho = torch.tensor([0.4, -0.2], dtype=torch.float64)
    L0 = torch.tensor([0.9, 2.5], dtype=torch.float64)
    with torch.no_grad():
        m.logits.copy_(rho)
        m.initial_losses.copy_(L0)
        m.has_initial.fill_(True)
    out = m(b)
    out.loss.backward()
    # by hand: W = encoder weight (8, 3); z = W x
    x, y, t = b.x_s, b.y_s, b.targets["reg"]
    z = x @ model.features.weight.detach().T
    A, a0 = model.head.weight.detach(), model.head.bias.detach()
    B, b0 = model.decoders["reg"].weight.detach(), model.decoders["reg"].bias.detach()
    p = torch.softmax(z @ A.T + a0, -1)
    dce_dz = (p - F.one_hot(y, 2)) / len(x)  # d mean CE / d logits
    dmse_dz = 2 * (z @ B.T + b0 - t) / (2 * len(x))  # d mean_n mean_j (.)^2 / d out
    gW = [(dce_dz @ A).T @ x, (dmse_dz @ B).T @ x]  # d J_i / d W, (8, 3)
    n = torch.stack([g.norm() for g in gW])
    e = torch.exp(rho)
    w = 2 * e / e.sum()
    G = w * n
    J = torch.stack([v.mean() for v in toy_losses(model, b)]).detach()
    ratio = J / L0
    r = ratio / ratio.mean()
    target = G.mean() * r ** 0.6
    torch.testing.assert_close(out.parts["gradnorm_loss"], (G - target).abs().sum())
    torch.testing.assert_close(torch.stack([out.metrics["w_class"], out.metrics["w_reg"]]), w)
    # d L_grad / d rho: sign(G_i - target_i) n_i through w = T softmax(rho), target constant
    dLdw = torch.sign(G - target) * n
    s = e / e.sum()
    jac = 2 * (torch.diag(s) - torch.outer(s, s))  # d w / d rho
    torch.testing.assert_close(m.logits.grad, jac.T @ dLdw)
    # the network: sum_i w_i J_i with the weights held constant
    torch.testing.assert_close(model.features.weight.grad, w[0] * gW[0] + w[1] * gW[1])


def test_gradnorm_records_the_first_losses_once():
    torch.manual_seed(0)
    m = create_method("mtl_gradnorm", ToyMTL()).double()
    b = toy_batch()
    m(b)
    first = m.initial_losses.clone()
    m(toy_batch(seed=1))
    torch.testing.assert_close(m.initial_losses, first)
    assert bool(m.has_initial) and (first > 0).all()


# ----------------------------------------------------------------------------- GREAT-MTL
def test_great_mtl_step_matches_a_hand_written_reference():
    torch.manual_seed(0)
    model, b = ToyMTL(), toy_batch(n=4)
    m = create_method("great_mtl", model, aux_widths=[4], aux_norm="none").double()
    L0 = torch.tensor([0.8, 1.7], dtype=torch.float64)
    with torch.no_grad():
        m.initial_losses.copy_(L0)
        m.has_initial.fill_(True)
        for gal in m.gals.values():
            gal.log_weight.normal_(0, 0.5)
    ref_model, ref_aux = copy.deepcopy(model), copy.deepcopy(m.aux)
    gammas = [m.gals[t].weight.detach().clone() for t in ("class", "reg")]
    out = m(b)
    out.loss.backward()

    # reference, no GAL modules: per task, the gradient of the sum-reduced normalised loss at z
    z = ref_model.encode(b.x_s)
    ce, mse = toy_losses(ref_model, b, z)
    per = [ce, mse]
    C = [per[i].mean() / L0[i] for i in range(2)]
    g = [torch.autograd.grad(per[i].sum() / L0[i], z, retain_graph=True)[0] for i in range(2)]
    # encoder: sum_i gamma_i * dC_i/dz = sum_i gamma_i * g_i / N
    enc_grad = torch.autograd.grad(z, ref_model.features.weight,
                                   grad_outputs=sum(gm * gi for gm, gi in zip(gammas, g)) / 4,
                                   retain_graph=True)[0]
    torch.testing.assert_close(model.features.weight.grad, enc_grad)
    # decoders: their own normalised loss
    torch.testing.assert_close(model.head.weight.grad,
                               torch.autograd.grad(C[0], ref_model.head.weight, retain_graph=True)[0])
    torch.testing.assert_close(model.decoders["reg"].weight.grad,
                               torch.autograd.grad(C[1], ref_model.decoders["reg"].weight)[0])
    # task classifier on gamma_i * g_i, labels i; GALs: the negated gradient (w.r.t. log gamma)
    rho = [torch.log(gm).requires_grad_() for gm in gammas]
    h = torch.cat([torch.exp(r) * gi for r, gi in zip(rho, g)])
    labels = torch.tensor([0] * 4 + [1] * 4)
    aux_loss = F.cross_entropy(ref_aux(h), labels)
    torch.testing.assert_close(out.parts["aux_loss"], aux_loss)
    grads = torch.autograd.grad(aux_loss, [*rho, *ref_aux.parameters()])
    torch.testing.assert_close(m.gals["class"].log_weight.grad, -grads[0])
    torch.testing.assert_close(m.gals["reg"].log_weight.grad, -grads[1])
    for p, want in zip(m.aux.parameters(), grads[2:]):
        torch.testing.assert_close(p.grad, want)
    torch.testing.assert_close(out.loss, C[0] + C[1] + aux_loss)


def test_great_mtl_deploys_the_plain_network():
    torch.manual_seed(0)
    m = create_method("great_mtl", ToyMTL(), aux_widths=[4], aux_norm="none").double()
    m.eval()
    x = torch.randn(3, 3, dtype=torch.float64)
    torch.testing.assert_close(m.predict_logits(x), m.model(x))
    assert set(m.param_groups()) == {"main", "aux", "gal"}


# ----------------------------------------------------------------------------- engine, YAML
def _synthetic_task(n=12):
    g = torch.Generator().manual_seed(0)

    def split(name, k):
        x = torch.rand(k, 1, 16, 16, generator=g)
        targets = {"colour": torch.rand(k, 3, 16, 16, generator=g),
                   "edge": (torch.rand(k, 1, 16, 16, generator=g) > 0.7).float(),
                   "autoencoder": x.clone()}
        return DomainData(x, torch.randint(0, 3, (k,), generator=g), name, targets)

    src = split("source", n)
    return DATask(src, src.unlabelled("target"), 3, eval={"test": split("test", 6)})


@pytest.mark.parametrize("config", ["equal", "uncertainty", "gradnorm", "great_mtl"])
def test_each_multitask_config_trains_from_yaml(config, tmp_path):
    cfg = load_config(ROOT / "configs" / "great_mtl" / f"{config}.yaml", [
        "train.steps=3", "train.batch_size=4", "train.eval_every=0", "train.progress=false",
        "model.widths=[4,4,8]", "model.blocks=[1,1,1]", "model.decoder_widths=[4,4]",
        f"out_dir={tmp_path}",
        *(["method.aux_widths=[4,4]"] if config == "great_mtl" else [])])
    tr = Trainer(cfg, task=_synthetic_task(), persist=False)
    before = {k: v.clone() for k, v in tr.method.state_dict().items()}
    summary = tr.fit()
    final = summary["final"]
    assert {"test_acc", "test_class_err", "test_colour_rmse", "test_edge_rmse",
            "test_autoencoder_rmse"} <= set(final)
    assert all(math.isfinite(v) for v in final.values())
    after = tr.method.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("model.decoders.edge") for k in changed)
    if config != "equal":  # the balancer's own parameters moved too
        own = {"uncertainty": "log_var", "gradnorm": "logits", "great_mtl": "gals."}[config]
        assert any(k.startswith(own) for k in changed), changed


def test_multitask_targets_are_validated_and_kept_by_the_holdout():
    from gradversary.errors import DataError

    task = _synthetic_task()
    bad = DomainData(task.source.x, task.source.y, "source", {"edge": torch.zeros(3, 1)})
    with pytest.raises(DataError, match="target 'edge'"):
        DATask(bad, task.target, 3)
    with pytest.raises(DataError, match="labels must lie"):
        DATask(DomainData(task.source.x, task.source.y + 5, "s", task.source.targets), task.target, 3)
    sub = task.source.take(torch.tensor([0, 2]))
    assert torch.equal(sub.targets["colour"], task.source.targets["colour"][[0, 2]])
    assert task.source.unlabelled().targets is None


def test_cifar10_mtl_builds_from_the_staged_file():
    data = ROOT.parent / "shared" / "data" / "cifar10_jpeg_q75_subset.npz"
    if not data.exists():
        pytest.skip(f"no staged data at {data}")
    pytest.importorskip("skimage")
    from gradversary.data import create_task

    task = create_task("cifar10_mtl", root=str(data.parent), per_class=1, max_test=4)
    s = task.source
    assert s.x.shape == (10, 1, 32, 32) and sorted(s.y.tolist()) == list(range(10))
    assert s.targets["colour"].shape == (10, 3, 32, 32)
    assert set(s.targets["edge"].unique().tolist()) <= {0.0, 1.0}
    assert 0 < float(s.targets["edge"].mean()) < 0.6
    # the input is the clean greyscale target, noised: about 4% salt and pepper among the rest
    extreme = ((s.x == 0) | (s.x == 1)) & (s.targets["autoencoder"] > 0.05) & (s.targets["autoencoder"] < 0.95)
    assert 0.01 < float(extreme.float().mean()) < 0.08
    assert len(task.eval["test"]) == 4


@pytest.mark.slow  # about 10 s: the whole pipeline on 10 images
def test_great_mtl_bench_writes_table_4(tmp_path):
    data = ROOT.parent / "shared" / "data" / "cifar10_jpeg_q75_subset.npz"
    if not data.exists():
        pytest.skip(f"no staged data at {data}")
    pytest.importorskip("skimage")
    from gradversary.bench.runner import load_suite, run_suite

    suite = load_suite("great-mtl", ROOT / "configs" / "bench")
    suite.config_dir = str(ROOT / "configs")
    suite.quick += ["train.steps=2", "train.batch_size=4", "data.per_class=1", "data.max_test=4",
                    "model.widths=[4,4,8,8]", "model.decoder_widths=[4,4,4]"]
    suite.settings["step_time"]["steps"] = 1
    res = run_suite(suite, [0], True, out_dir=tmp_path / "runs", results=tmp_path / "great_mtl.md",
                    data_root=str(data.parent))
    text = res.read_text()
    for label in ("Equal", "Uncertainty", "GradNorm", "GREAT", "class % error", "step-time ratio"):
        assert label in text
    assert "paper's claim" in text
    out = json.loads(res.with_suffix(".json").read_text())
    assert set(out["stages"]["step_time"]["seconds_per_step"]) == {"equal", "uncertainty", "gradnorm", "great_mtl"}
