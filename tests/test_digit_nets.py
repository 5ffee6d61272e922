"""The recipe digit networks (lenet, dtn): layer layout, options and shapes."""

import pytest
import torch
from torch import nn

from gradversary.models import create_model


def _types(module):
    return [type(m).__name__ for m in module.modules() if not list(m.children())]


def test_lenet_is_tllibs_layout_with_bottleneck_and_linear_head():
    m = create_model("lenet", (1, 28, 28), 10)
    assert _types(m.features) == ["Normalize", "Conv2d", "MaxPool2d", "ReLU", "Conv2d", "Dropout2d",
                                  "MaxPool2d", "ReLU", "Flatten", "Linear", "ReLU", "Dropout",
                                  "Linear", "BatchNorm1d", "ReLU"]
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 20, (5, 5)), (20, 50, (5, 5))]
    lins = [c for c in m.features.modules() if isinstance(c, nn.Linear)]
    assert [(c.in_features, c.out_features) for c in lins] == [(800, 500), (500, 256)]
    assert isinstance(m.head, nn.Sequential) and _types(m.head) == ["Linear"] and m.feature_dim == 256
    x = torch.rand(4, 1, 28, 28)
    m.eval()
    # normalisation inside the model: Normalize(0.5, 0.5) on [0, 1] inputs
    conv1 = convs[0]
    torch.testing.assert_close(m.features[0][:2](x), conv1((x - 0.5) / 0.5))


@pytest.mark.parametrize("opts,fdim,absent", [
    ({"bottleneck": None}, 500, "BatchNorm1d"),
    ({"bottleneck_bn": False}, 256, "BatchNorm1d"),
    ({"dropout": 0.0}, 256, "Dropout2d"),
    ({"fc": None, "bottleneck": None}, 800, "Dropout"),
])
def test_lenet_options_remove_their_part(opts, fdim, absent):
    m = create_model("lenet", (1, 28, 28), 10, **opts)
    assert m.feature_dim == fdim and absent not in _types(m.features)
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_mdd_style_heads_and_dtn():
    m = create_model("lenet", (1, 28, 28), 10, bottleneck=1024, bottleneck_dropout=0.5,
                     head_hidden=[1024], head_dropout=0.5)
    assert _types(m.features)[-4:] == ["Linear", "BatchNorm1d", "ReLU", "Dropout"]
    assert _types(m.head) == ["Linear", "ReLU", "Dropout", "Linear"]
    d = create_model("dtn", (3, 32, 32), 10)
    assert d.feature_dim == 256 and d(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert [c.stride for c in d.modules() if isinstance(c, nn.Conv2d)] == [(2, 2)] * 3


def test_tllib_mdd_initialisation_of_bottleneck_and_heads():
    """tllib's MDD: bottleneck Linear ~ N(0, 0.005^2) with bias 0.1, every head Linear (and the
    auxiliary head's) ~ N(0, 0.01^2) with bias 0; the default leaves torch's init alone."""
    from gradversary.methods import create_method

    torch.manual_seed(0)
    m = create_model("lenet", (1, 28, 28), 10, bottleneck=1024, head_hidden=[1024],
                     bottleneck_init=[0.005, 0.1], head_init_std=0.01)
    bott = [c for c in m.features.modules() if isinstance(c, nn.Linear)][-1]
    assert bott.weight.std().item() == pytest.approx(0.005, rel=0.02)
    assert abs(bott.weight.mean().item()) < 1e-4 and torch.all(bott.bias == 0.1)
    fc500 = [c for c in m.features.modules() if isinstance(c, nn.Linear)][0]
    assert fc500.weight.std().item() > 0.02  # not the bottleneck: torch's default (U(+-1/sqrt(800)))
    for lin in (c for c in m.head.modules() if isinstance(c, nn.Linear)):
        assert lin.weight.std().item() == pytest.approx(0.01, rel=0.05) and torch.all(lin.bias == 0)
    mdd = create_method("mdd", m, adv_hidden=[1024], adv_init_std=0.01)
    for lin in (c for c in mdd.adv_head.modules() if isinstance(c, nn.Linear)):
        assert lin.weight.std().item() == pytest.approx(0.01, rel=0.05) and torch.all(lin.bias == 0)
    # the default draws nothing more: the same seed gives the same network as before
    torch.manual_seed(1)
    a = create_model("lenet", (1, 28, 28), 10)
    torch.manual_seed(1)
    b = create_model("lenet", (1, 28, 28), 10, bottleneck_init=None, head_init_std=None)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="std, bias"):
        create_model("lenet", (1, 28, 28), 10, bottleneck_init=[0.1])
    with pytest.raises(ValueError, match="needs a bottleneck"):
        create_model("lenet", (1, 28, 28), 10, bottleneck=None, bottleneck_init=[0.01, 0.0])


def test_wrong_input_size_is_a_clear_error():
    with pytest.raises(ValueError, match="28, 28"):
        create_model("lenet", (1, 32, 32), 10)
    with pytest.raises(ValueError, match="mean/std"):
        create_model("lenet", (3, 28, 28), 10)  # grey normalisation for colour inputs
    with pytest.raises(ValueError, match="32, 32"):
        create_model("dtn", (3, 28, 28), 10)


@pytest.mark.parametrize("name", ["lenet", "dann_mnist"])
def test_one_channel_digits_run_channels_last(name):
    """Grey (1-channel) inputs: every conv/pool output is channels-last (the fast CPU path),
    with the same values as the plain NCHW network (checked on the first conv)."""
    torch.manual_seed(0)
    model = create_model(name, (1, 28, 28), 10).eval()
    x = torch.rand(4, 1, 28, 28)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((type(m).__name__, o.stride(1) == 1)))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    out = model(x)
    for h in hooks:
        h.remove()
    assert seen and all(cl for _, cl in seen), seen
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first = conv(x if name == "dann_mnist" else (x - 0.5) / 0.5)
    with torch.no_grad():
        ref = conv(x.contiguous()) if name == "dann_mnist" else first
    assert torch.allclose(first, ref, atol=1e-5) and out.shape == (4, 10)
    # gradients reach the input through the strided view (GREAT's input gradient), and the
    # gradient the final flatten hands back is channels-last too (one layout in the backward)
    from gradversary.nn.double_backward import Conv2d as FastConv2d

    assert type(conv) is FastConv2d  # the one-channel first conv: col2im input gradient
    grads = []
    pool = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)][-1]
    pool.register_full_backward_hook(lambda m, gi, go: grads.append(go[0]))
    model.train()
    xg = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(model(xg).sum(), xg)
    assert g.shape == x.shape and g.abs().sum() > 0
    assert grads and grads[0].stride(1) == 1


def test_dann_mnist_pools_before_its_relus_with_the_same_function_and_gradients():
    """dann_mnist runs each ReLU after its max pooling (a quarter of the values); the paper's
    order (ReLU, then pool) gives the same outputs, input gradients and second derivatives."""
    torch.manual_seed(0)
    net = create_model("dann_mnist", (1, 28, 28), 10).double()
    names = _types(net.features)
    assert names[names.index("Conv2d") + 1:][:2] == ["MaxPool2d", "ReLU"]
    paper = create_model("dann_mnist", (1, 28, 28), 10).double()
    paper.load_state_dict(net.state_dict())
    mods = paper.features._modules
    keys = list(mods)
    for a, b in zip(keys, keys[1:]):
        if isinstance(mods[a], nn.MaxPool2d) and isinstance(mods[b], nn.ReLU):
            mods[a], mods[b] = mods[b], mods[a]
    assert _types(paper.features)[names.index("Conv2d") + 1:][:2] == ["ReLU", "MaxPool2d"]
    x = torch.rand(8, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 10, (8,))
    got = []
    for m in (net, paper):
        loss = nn.functional.cross_entropy(m(x), y)
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        gw = torch.autograd.grad(g.pow(2).sum(), list(m.parameters()))
        got.append((loss.detach(), g.detach(), [t.detach() for t in gw]))
    (l1, g1, w1), (l2, g2, w2) = got
    torch.testing.assert_close(l1, l2, rtol=0, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=0, atol=1e-12)
    for a, b in zip(w1, w2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_instance_input_standardisation():
    """input_norm: instance: each image's channels by their own mean and std, so a colour cast
    and a contrast change of the whole image give the same output."""
    from gradversary.models.digits import InstanceStandardize

    x = torch.rand(4, 3, 28, 28)
    z = InstanceStandardize()(x)
    torch.testing.assert_close(z.mean(dim=(2, 3)), torch.zeros(4, 3), atol=1e-5, rtol=0)
    ref = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.var(dim=(2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    torch.testing.assert_close(z, ref)
    m = create_model("lenet", (3, 28, 28), 10, mean=None, std=None, input_norm="instance").eval()
    assert _types(m.features)[0] == "InstanceStandardize"
    cast = 0.3 * x + torch.tensor([0.2, 0.1, 0.4]).view(1, 3, 1, 1)  # per-channel affine change
    torch.testing.assert_close(m(cast), m(x), atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="set mean and std to null"):
        create_model("lenet", (3, 28, 28), 10, input_norm="instance")


def test_dann_mnist_options_build_fungtions_port():
    """channels, conv_dropout, std and dropout_layers give fungtion/DANN's network: conv 64 and
    50 with BatchNorm, Dropout2d after the second, Normalize(0.5, 0.5), dropout only before the
    second hidden layer; the defaults leave the paper's network as it was."""
    m = create_model("dann_mnist", (3, 28, 28), 10, mean=[0.5] * 3, std=[0.5] * 3, batch_norm=True,
                     channels=[64, 50], conv_dropout=0.5, dropout=0.5, dropout_layers=[1])
    assert _types(m.features) == ["Normalize", "Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU", "Conv2d",
                                  "BatchNorm2d", "Dropout2d", "MaxPool2d", "ReLU", "Flatten"]
    assert m.feature_dim == 50 * 4 * 4
    assert _types(m.head) == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d",
                              "ReLU", "Linear"]
    x = torch.rand(2, 3, 28, 28)
    m.eval()
    torch.testing.assert_close(m.features[0](x), (x - 0.5) / 0.5)
    paper = create_model("dann_mnist", (1, 28, 28), 10)
    assert _types(paper.features) == ["Conv2d", "MaxPool2d", "ReLU", "Conv2d", "MaxPool2d", "ReLU",
                                      "Flatten"] and paper.feature_dim == 768
    with pytest.raises(ValueError, match="do not exist"):
        create_model("dann_mnist", (1, 28, 28), 10, dropout=0.5, dropout_layers=[2])
    with pytest.raises(ValueError, match="two positive widths"):
        create_model("dann_mnist", (1, 28, 28), 10, channels=[8])


@pytest.mark.parametrize("c_in,size", [(4, 8), (3, 7), (16, 28)])
def test_subsample_conv_is_the_strided_pointwise_conv(c_in, size):
    """The ResNet shortcut (1x1, stride 2) taken on every other pixel: the values, the input and
    weight gradients and the state_dict of ``nn.Conv2d(c_in, c_out, 1, 2)``, on a channels-last
    input (the layout whose strided weight gradient torch 2.13 gets wrong for 3-6 channels)."""
    from gradversary.models.resnet import SubsampleConv2d

    torch.manual_seed(0)
    sub, ref = SubsampleConv2d(c_in, 6, 2).double(), nn.Conv2d(c_in, 6, 1, 2).double()
    assert list(sub.state_dict()) == list(ref.state_dict())
    sub.load_state_dict(ref.state_dict())
    x = torch.rand(5, c_in, size, size, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    out = sub(x)
    assert out.shape == ref(x.detach()).shape == (5, 6, (size + 1) // 2, (size + 1) // 2)
    v = torch.randn_like(out)
    g_sub = torch.autograd.grad((out * v).sum().square(), [x, sub.weight, sub.bias])
    xr = x.detach().contiguous().requires_grad_(True)
    g_ref = torch.autograd.grad((ref(xr) * v).sum().square(), [xr, ref.weight, ref.bias])
    for a, b in zip(g_sub, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


_NARROW_RESNET = """
import torch
from torch import nn
from gradversary.models import create_model
torch.manual_seed(0)
model = create_model("resnet_small", (1, 8, 8), 10, widths=[4, 6], blocks=[1, 1])
x, y = torch.rand(8, 1, 8, 8, requires_grad=True), torch.randint(0, 10, (8,))
for _ in range(3):
    g, = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), x, create_graph=True)
    g.square().sum().backward()
print("ok")
"""


def test_a_narrow_channels_last_resnet_double_backprops_without_corrupting_memory():
    """GREAT's double backprop through resnet_small with 4- and 6-channel stages: the shape that
    made torch's strided 1x1 weight gradient (channels-last, float32: oneDNN) write out of
    bounds. In a child process with glibc's heap checks on (MALLOC_CHECK_=3), which abort on
    such a write; without them the corruption shows only now and then."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MALLOC_CHECK_": "3", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _NARROW_RESNET], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])


def test_a_narrow_channels_last_resnet_double_backprops_as_in_nchw():
    """The same double backprop, channels-last against the NCHW network (same modules)."""
    torch.manual_seed(0)
    model = create_model("resnet_small", (1, 8, 8), 10, widths=[4, 6], blocks=[1, 1]).double()
    plain = nn.Sequential(*model.features)
    x = torch.rand(8, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (8,))
    grads = []
    for feats in (model.features, plain):
        xi = x.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model.head(feats(xi)), y)
        g, = torch.autograd.grad(loss, xi, create_graph=True)
        grads.append(torch.autograd.grad(g.square().sum(), list(model.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
