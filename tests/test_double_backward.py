"""Closed-form double backward of BatchNorm and Conv2d, against autograd's on torch's layers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradversary.data import DATask, DomainData
from gradversary.engine import Trainer, resolve_config
from gradversary.functional import batch_norm_train, conv2d
from gradversary.methods import Batch
from gradversary.methods.great import GREAT
from gradversary.nn import convert_double_backward, revert_double_backward
from gradversary.nn.double_backward import BatchNorm2d, Conv2d


def _weights(t: torch.Tensor, phase: float) -> torch.Tensor:
    """Fixed, non-constant weights shaped like ``t`` (a loss sum(t w) is a generic linear form)."""
    return torch.sin(torch.arange(t.numel(), dtype=t.dtype) * 0.37 + phase).view_as(t)


def _first_and_second(fn, inputs):
    """Values, first derivatives of a nonlinear loss (with graph) and the derivatives of a
    generic linear form of those first derivatives: everything double backprop uses."""
    y = fn(*inputs)
    loss = (y * _weights(y, 0.0)).sum() + 0.1 * (y ** 3).sum()
    firsts = torch.autograd.grad(loss, inputs, create_graph=True)
    second = sum((g * _weights(g, 1.0 + i)).sum() for i, g in enumerate(firsts))
    return [y.detach(), *(g.detach() for g in firsts), *torch.autograd.grad(second, inputs)]


def _leaves(*shapes):
    torch.manual_seed(0)
    return [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes]


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 2, 4, 5), (2, 2, 3, 2, 2)])
def test_batch_norm_train_matches_torch_to_the_second_derivative(shape):
    x, w, b = _leaves(shape, (shape[1],), (shape[1],))
    stats = {}

    def make(impl):
        rm, rv = torch.zeros(shape[1], dtype=x.dtype), torch.ones(shape[1], dtype=x.dtype)
        stats[impl] = (rm, rv)
        if impl == "torch":
            return lambda x, w, b: F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5)
        return lambda x, w, b: batch_norm_train(x, w, b, rm, rv, 0.1, 1e-5)

    ref = _first_and_second(make("torch"), [x, w, b])
    ours = _first_and_second(make("ours"), [x, w, b])
    for r, o in zip(ref, ours):
        torch.testing.assert_close(o, r, rtol=1e-9, atol=1e-10)
    for r, o in zip(stats["torch"], stats["ours"]):  # running statistics, updated once each
        torch.testing.assert_close(o, r)
    assert torch.autograd.gradgradcheck(lambda x, w, b: batch_norm_train(x, w, b, None, None),
                                        (x, w, b))


def test_batch_norm_train_without_affine_parameters():
    (x,) = _leaves((5, 3, 2, 2))
    ref = _first_and_second(lambda x: F.batch_norm(x, None, None, training=True), [x])
    ours = _first_and_second(lambda x: batch_norm_train(x, None, None, None, None), [x])
    for r, o in zip(ref, ours):
        torch.testing.assert_close(o, r, rtol=1e-9, atol=1e-10)


def test_batch_norm_train_rejects_one_value_per_channel():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm_train(torch.randn(1, 3), None, None, None, None)


@pytest.mark.parametrize("cin,stride,padding,dilation,groups,bias", [
    (4, 1, 1, 1, 1, True), (4, 2, 1, 1, 2, False), (4, 2, 0, 1, 1, True), (4, 1, 2, 2, 1, False),
    # one input channel: the input gradient is W^T gy added back plane by plane (stride 1,
    # with and without padding) or folded back (col2im, other strides), not oneDNN's kernel
    (1, 1, 0, 1, 1, True), (1, 1, 2, 1, 1, False), (1, 2, 1, 2, 1, False)])
def test_conv2d_matches_torch_to_the_second_derivative(cin, stride, padding, dilation, groups, bias):
    x, w, b = _leaves((3, cin, 9, 8), (6, cin // groups, 3, 3), (6,))
    inputs = [x, w, b] if bias else [x, w]

    def ours(x, w, b=None):
        return conv2d(x, w, b, stride, padding, dilation, groups)

    def ref(x, w, b=None):
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    for r, o in zip(_first_and_second(ref, inputs), _first_and_second(ours, inputs)):
        torch.testing.assert_close(o, r, rtol=1e-9, atol=1e-10)
    assert torch.autograd.gradgradcheck(ours, tuple(inputs))


def test_only_the_requested_gradient_is_taken_and_it_is_right():
    """autograd.grad(out, x): the layers skip the parameters' gradients (what double backprop
    of an input gradient needs) yet give the same x-gradient and second derivatives; asking for
    parameters too (a leaf that is itself an input of autograd.grad) still works."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                          nn.Conv2d(3, 2, 3, stride=2)).double()
    fast = convert_double_backward(copy.deepcopy(plain))
    x0 = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    for want_params in (False, True):
        results = []
        for net in (plain, fast):
            x = x0.clone().requires_grad_()
            params = list(net.parameters())
            wrt = [x, *params] if want_params else [x]
            out = net(x)
            firsts = torch.autograd.grad((out ** 2).sum(), wrt, create_graph=True)
            second = sum((g * _weights(g, 0.5)).sum() for g in firsts)
            results.append([g.detach() for g in firsts]
                           + list(torch.autograd.grad(second, [x, *params])))
        for r, o in zip(*results):
            torch.testing.assert_close(o, r, rtol=1e-9, atol=1e-10)


def test_convert_keeps_state_and_matches_in_every_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 5), nn.BatchNorm1d(5), nn.SyncBatchNorm(5))
    keys = list(net.state_dict())
    ref = copy.deepcopy(net)
    assert convert_double_backward(net) is net
    assert type(net[0]) is Conv2d and type(net[1]) is BatchNorm2d
    assert type(net[6]) is nn.SyncBatchNorm  # subclasses are left alone
    assert isinstance(net[1], nn.BatchNorm2d) and list(net.state_dict()) == keys
    x = torch.randn(8, 1, 6, 6)
    for train in (True, False):
        net.train(train), ref.train(train)
        with torch.no_grad():
            torch.testing.assert_close(net[:6](x), ref[:6](x))
        torch.testing.assert_close(net[:6](x), ref[:6](x))
    torch.testing.assert_close(net[1].running_mean, ref[1].running_mean)
    assert int(net[1].num_batches_tracked) == int(ref[1].num_batches_tracked) == 2
    assert revert_double_backward(net) is net
    assert [type(m) for m in net] == [type(m) for m in ref] and list(net.state_dict()) == keys


def _great_trainer(tmp_path, name):
    cfg = resolve_config({
        "method": {"name": "great"},
        "model": {"name": "resnet_small", "widths": [4, 6], "blocks": [1, 1]},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "groups": {"aux": {"lr": 0.05}}},
        "train": {"steps": 3, "batch_size": 8, "progress": False, "seed": 1},
    })
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
    t = DATask(DomainData(x, y, "source"), DomainData(x.clone(), None, "target"), 10)
    return Trainer(cfg, run_dir=tmp_path / name, task=t)


def _fast_layers(module: nn.Module) -> list[nn.Module]:
    """The closed-form layers in ``module``, but for a one-channel input convolution: the
    channels-last networks always take that one (its input gradient, not its double backward)."""
    return [m for m in module.modules()
            if type(m) is BatchNorm2d or (type(m) is Conv2d and m.in_channels > 1)]


def test_a_great_step_with_fast_layers_equals_the_plain_step(tmp_path, monkeypatch):
    """The speed-up keeps the step's mathematics: GREAT (BatchNorm ResNet, double backprop
    through the masked input gradient) with and without the closed-form layers."""
    fast = _great_trainer(tmp_path, "fast")
    monkeypatch.setattr(GREAT, "double_backprop", False)
    plain = _great_trainer(tmp_path, "plain")
    assert any(type(m) is BatchNorm2d for m in fast.method.model.modules())
    assert not _fast_layers(plain.method)
    plain.method.load_state_dict(fast.method.state_dict())
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        b = Batch(torch.rand(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g))
        fast._set_progress(0.5), plain._set_progress(0.5)
        _, v_fast = fast.train_step(b)
        _, v_plain = plain.train_step(b)
        torch.testing.assert_close(v_fast["aux_loss"], v_plain["aux_loss"])
    for (k, a), (_, b) in zip(fast.method.state_dict().items(), plain.method.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)


def test_one_channel_channels_last_is_the_same_tensor_marked_channels_last():
    from gradversary.functional.conv import one_channel_channels_last

    x = torch.rand(2, 1, 5, 4)
    y = one_channel_channels_last(x)
    assert torch.equal(x, y) and y.stride(1) == 1
    assert F.conv2d(y, torch.rand(3, 1, 2, 2)).stride(1) == 1  # the next layer writes NHWC


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "pool2", "pool3_s2_p1", "pool_ceil_dil"])
def test_piecewise_layers_match_torch_to_the_second_derivative(name):
    """ReLU, LeakyReLU and max pooling whose double backward adds no zeros: the same values,
    first and second derivatives as torch's (the input is a conv of x, so the second
    derivative reaches the weights through the layer's backward)."""
    from gradversary.functional import piecewise

    x, w = _leaves((2, 3, 9, 8), (4, 3, 3, 3))
    ours, ref = {
        "relu": (piecewise.relu, F.relu),
        "leaky_relu": (lambda t: piecewise.leaky_relu(t, 0.2), lambda t: F.leaky_relu(t, 0.2)),
        "pool2": (lambda t: piecewise.max_pool2d(t, 2), lambda t: F.max_pool2d(t, 2)),
        "pool3_s2_p1": (lambda t: piecewise.max_pool2d(t, 3, 2, 1), lambda t: F.max_pool2d(t, 3, 2, 1)),
        "pool_ceil_dil": (lambda t: piecewise.max_pool2d(t, 2, 2, 0, 2, True),
                          lambda t: F.max_pool2d(t, 2, 2, 0, 2, True)),
    }[name]
    for r, o in zip(_first_and_second(lambda x, w: ref(F.conv2d(x, w)), [x, w]),
                    _first_and_second(lambda x, w: ours(F.conv2d(x, w)), [x, w])):
        torch.testing.assert_close(o, r, rtol=1e-9, atol=1e-10)
    assert torch.autograd.gradgradcheck(lambda x, w: ours(F.conv2d(x, w)), (x, w))


def test_piecewise_double_backward_makes_no_zeros_tensor():
    """The point of the piecewise layers: differentiating their backward adds no full-size
    zeros (torch's own rules fill one per layer)."""
    from torch.profiler import ProfilerActivity, profile

    from gradversary.functional import piecewise

    x = torch.randn(8, 4, 16, 16, requires_grad=True)

    def fills(fn):
        y = fn(x)
        (g,) = torch.autograd.grad((y ** 2).sum(), x, create_graph=True)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            torch.autograd.grad((g ** 2).sum(), x)
        # zeros made by autograd's double-backward formulas (a "...BackwardBackward0" node)
        return sum(e.name in ("aten::zeros_like", "aten::zeros") and e.cpu_parent is not None
                   and "BackwardBackward" in e.cpu_parent.name for e in prof.events())

    assert fills(lambda t: F.relu(t)) >= 1
    assert fills(lambda t: piecewise.relu(t)) == 0
    assert fills(lambda t: piecewise.leaky_relu(t, 0.2)) == 0
    assert fills(lambda t: F.max_pool2d(t, 2)) >= 1
    assert fills(lambda t: piecewise.max_pool2d(t, 2)) == 0


def test_a_backward_restricted_to_the_parameters_skips_a_leaf_inputs_gradient(monkeypatch):
    """GREAT's final backward runs with inputs=params while its input x requires grad: the
    first layer must not compute x's gradient then (the engine would drop it), and a plain
    backward or autograd.grad on x still gets it, equal to autograd's."""
    import gradversary.functional.batchnorm as B
    import gradversary.functional.conv as C

    calls = {"conv": 0, "bn": []}
    conv_gx, bn_bwd = C._input_grad_one_channel, B._bn_backward

    def spy_conv(*a):
        calls["conv"] += 1
        return conv_gx(*a)

    def spy_bn(gy, x, weight, mean, invstd, eps, mask):
        calls["bn"].append(mask[0])
        return bn_bwd(gy, x, weight, mean, invstd, eps, mask)

    monkeypatch.setattr(C, "_input_grad_one_channel", spy_conv)
    monkeypatch.setattr(B, "_bn_backward", spy_bn)
    torch.manual_seed(0)
    x = torch.rand(8, 1, 12, 12, requires_grad=True)
    w = torch.randn(4, 1, 3, 3, requires_grad=True)
    torch.autograd.backward(conv2d(x, w).pow(2).sum(), inputs=[w])
    assert calls["conv"] == 0 and x.grad is None and w.grad is not None
    (gx,) = torch.autograd.grad(conv2d(x, w).pow(2).sum(), x)
    xr = x.detach().requires_grad_()
    (ref,) = torch.autograd.grad(F.conv2d(xr, w).pow(2).sum(), xr)
    assert calls["conv"] == 1 and torch.allclose(gx, ref, atol=1e-5)

    h = torch.randn(16, 3, requires_grad=True)
    g, b = torch.ones(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    torch.autograd.backward(batch_norm_train(h, g, b, None, None, 0.1, 1e-5).pow(3).sum(), inputs=[g, b])
    assert calls["bn"] == [False] and h.grad is None
    batch_norm_train(h, g, b, None, None, 0.1, 1e-5).pow(3).sum().backward()
    assert calls["bn"] == [False, True] and h.grad is not None
