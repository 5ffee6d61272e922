"""Distillation: KD loss, Sobolev distances, CNN-5, and one GREAT-distill step by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from gradversary.functional import kd_loss, project_gradient, random_directions, sobolev_distance
from gradversary.methods import Batch, create_method
from gradversary.methods.great_distill import binary_discriminator
from gradversary.models import create_model
from gradversary.models.base import FeatureClassifier


def test_kd_loss_is_t_squared_kl_batchmean_for_known_logits():
    s = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    t = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    T = 2.0
    total = 0.0
    for i in range(2):  # sum_k q log(q / p), by hand, then the mean over the 2 examples
        zq = [math.exp(v / T) for v in t[i].tolist()]
        zp = [math.exp(v / T) for v in s[i].tolist()]
        q = [z / sum(zq) for z in zq]
        p = [z / sum(zp) for z in zp]
        total += sum(qk * math.log(qk / pk) for qk, pk in zip(q, p))
    expected = T * T * total / 2
    assert kd_loss(s, t, T).item() == pytest.approx(expected, rel=1e-6)
    # 'mean' would divide by N * K: not the KL divergence
    with pytest.warns(UserWarning):
        wrong = T * T * F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="mean")
    assert wrong.item() == pytest.approx(expected / 3, rel=1e-6)
    assert kd_loss(t, t, 5.0).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError):
        kd_loss(s, t, 0.0)


def test_sobolev_distance_exact_and_projected_by_hand():
    gs = torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    gt = torch.tensor([[1.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    # differences (0, 2, 2) and (-3, 0, -4): squared norms 8 and 25
    assert sobolev_distance(gs, gt).item() == pytest.approx((8 + 25) / 2)
    # the full standard basis as directions: each example's mean over 3 squared coordinates
    basis = torch.eye(3).expand(2, 3, 3)
    assert sobolev_distance(gs, gt, basis).item() == pytest.approx((8 / 3 + 25 / 3) / 2)
    # one direction (1, 1, 0): projections 2 and -3
    v = torch.tensor([[[1.0, 1.0, 0.0]], [[1.0, 1.0, 0.0]]])
    assert project_gradient(gs - gt, v).flatten().tolist() == [2.0, -3.0]
    assert sobolev_distance(gs, gt, v).item() == pytest.approx((4 + 9) / 2)


def test_random_projection_is_a_directional_derivative_and_unbiased():
    torch.manual_seed(0)
    w = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad((w * x.sin()).sum(), x)
    v = random_directions(g, 5)
    assert v.shape == (2, 5, 3, 4, 4) and v.dtype == torch.float64
    # <g, v> = d/de f(x + e v) at 0 (what a Jacobian-vector product gives), by central differences
    f0, x0, e = (lambda z: (w[0] * z.sin()).sum()), x[0].detach(), 1e-6
    fd = (f0(x0 + e * v[0, 1]) - f0(x0 - e * v[0, 1])) / (2 * e)
    torch.testing.assert_close(project_gradient(g, v)[0, 1], fd)
    u = torch.randn(1, 48)
    est = sobolev_distance(u, torch.zeros_like(u), random_directions(u, 20000))
    assert est.item() == pytest.approx(u.square().sum().item(), rel=0.05)


def test_cnn5_is_the_papers_network():
    m = create_model("cnn5", (3, 32, 32), 10)
    convs = [c for c in m.features if isinstance(c, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert [c.stride for c in convs] == [(1, 1), (2, 2), (2, 2)]
    assert m.feature_dim == 128 and m.head.out_features == 10
    # 3 convs (no bias: BatchNorm follows), BN, FC 8192 -> 128, BN, FC 128 -> 10
    n = 864 + 18432 + 73728 + 8192 * 128 + 2 * (32 + 64 + 128 + 128) + 1290
    assert sum(p.numel() for p in m.parameters()) == n
    assert m(torch.rand(4, 3, 32, 32)).shape == (4, 10)
    d = binary_discriminator(m, {"channels": [32, 64]})
    assert d(torch.randn(4, 3, 32, 32)).shape == (4, 1)
    assert any(isinstance(a, torch.nn.LeakyReLU) for a in d.modules())
    assert not any(isinstance(a, torch.nn.ReLU) for a in d.modules())
    assert len([c for c in d.modules() if isinstance(c, torch.nn.Conv2d)]) == 2


def _linear(d_in, k, seed):
    torch.manual_seed(seed)
    return FeatureClassifier(torch.nn.Flatten(), torch.nn.Linear(d_in, k), d_in, k)


def test_great_distill_step_matches_hand_written_algorithm_2():
    alpha = 0.1
    student, teacher = _linear(4, 3, 0), _linear(4, 3, 1)
    method = create_method("great_distill", student, alpha=alpha)
    method.set_teacher(teacher)
    torch.manual_seed(2)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    out = method(Batch(x, y))
    method.zero_grad()
    out.loss.backward()

    # Reference: linear nets have closed-form input gradients g = (softmax(a) - e_y) W, and the
    # discriminator (the student's copy) is linear too: d(g) = g . u + beta.
    W = student.head.weight.detach().clone().requires_grad_()
    b = student.head.bias.detach().clone().requires_grad_()
    u = method.aux.head.weight.detach().clone().requires_grad_()
    beta = method.aux.head.bias.detach().clone().requires_grad_()
    onehot = F.one_hot(y, 3).float()
    a = x @ W.T + b
    g_s = (torch.softmax(a, 1) - onehot) @ W
    with torch.no_grad():
        g_t = (torch.softmax(teacher(x), 1) - onehot) @ teacher.head.weight
    J = F.cross_entropy(a, y)
    fake = F.softplus(g_s @ u.T + beta).mean()       # BCE(f(g_s), 0) = -log(1 - sigmoid)
    real = F.softplus(-(g_t @ u.T + beta)).mean()    # BCE(f(g_t), 1) = -log sigmoid
    # line 7: the discriminator descends C' = real + fake
    du, dbeta = torch.autograd.grad(real + fake, (u, beta), retain_graph=True)
    # lines 8-10: the student descends (1 - alpha) J and ascends alpha * fake
    dW, db = torch.autograd.grad((1 - alpha) * J - alpha * fake, (W, b))

    torch.testing.assert_close(out.parts["task_loss"], J)
    torch.testing.assert_close(out.parts["aux_loss"], real + fake)
    torch.testing.assert_close(out.loss, (1 - alpha) * J + real + fake)
    torch.testing.assert_close(student.head.weight.grad, dW)
    torch.testing.assert_close(student.head.bias.grad, db)
    torch.testing.assert_close(method.aux.head.weight.grad, du)
    torch.testing.assert_close(method.aux.head.bias.grad, dbeta)
    # the teacher is frozen, outside the module tree, and got no gradient
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not any(k.startswith("_teacher") or "teacher" in k for k in method.state_dict())
    assert sorted(method.param_groups()) == ["aux", "main"]
    assert 0.0 <= out.metrics["disc_acc"].item() <= 1.0


def test_kd_and_sobolev_losses_by_hand():
    student, teacher = _linear(4, 3, 0), _linear(4, 3, 1)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    kd = create_method("kd", student, alpha=0.3, T=4.0)
    kd.set_teacher(teacher)
    out = kd(Batch(x, y))
    a, t = student(x), teacher(x)
    torch.testing.assert_close(out.loss, 0.3 * F.cross_entropy(a, y) + 0.7 * kd_loss(a, t, 4.0))

    sob = create_method("sobolev", student, weight=2.0)
    sob.set_teacher(teacher)
    out = sob(Batch(x, y))
    onehot = F.one_hot(y, 3).float()
    g_s = (torch.softmax(a, 1) - onehot) @ student.head.weight
    g_t = (torch.softmax(t, 1) - onehot) @ teacher.head.weight
    d = (g_s - g_t).square().sum(1).mean()
    torch.testing.assert_close(out.parts["grad_loss"], d)
    torch.testing.assert_close(out.loss, F.cross_entropy(a, y) + 2.0 * d)
    projected = create_method("sobolev", student, projections=3)
    projected.set_teacher(teacher)
    assert torch.isfinite(projected(Batch(x, y)).parts["grad_loss"])


def test_distill_method_without_teacher_says_how_to_set_one():
    m = create_method("kd", _linear(4, 3, 0))
    with pytest.raises(RuntimeError, match="teacher_run"):
        m(Batch(torch.randn(2, 4), torch.tensor([0, 1])))


def test_teacher_stays_frozen_in_eval_mode_when_the_method_trains():
    teacher = create_model("cnn5", (3, 8, 8), 3)
    m = create_method("great_distill", create_model("cnn5", (3, 8, 8), 3))
    m.set_teacher(teacher)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    m.train()
    out = m(Batch(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])))
    out.loss.backward()
    assert not teacher.training
    for k, v in teacher.state_dict().items():  # BatchNorm statistics did not move
        torch.testing.assert_close(v, before[k])
    assert m.double().teacher.head.weight.dtype == torch.float64  # moves reach the teacher
