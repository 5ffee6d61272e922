"""Every registered method and model: finite loss and a gradient on every trainable parameter."""

import pytest
import torch

from gradversary.data import DATASETS, create_task
from gradversary.methods import METHODS, Batch, create_method
from gradversary.models import MODELS, create_model


@pytest.mark.parametrize("model_name", MODELS.names())
@pytest.mark.parametrize("method_name", [n for n in METHODS.names() if not n.endswith("_test")])
def test_method_model_smoke(method_name, model_name):
    torch.manual_seed(0)
    shape = MODELS.get(model_name).factory.example_in_shape
    multi_task = getattr(MODELS.get(model_name).factory, "multi_task", False)
    if multi_task != getattr(METHODS.get(method_name).factory, "multi_task", False):
        pytest.skip("multi-task methods pair with multi-task models (their decoders need them)")
    model = create_model(model_name, shape, 3)
    method = create_method(method_name, model)
    if method.needs_teacher:  # distillation: a frozen teacher of the same kind
        method.set_teacher(create_model(model_name, shape, 3))
    for s in method.schedules().values():
        s.bind_total_steps(100)  # as the engine does before the first step
        s.step(0.5)
    batch = Batch(torch.rand(6, *shape), torch.randint(0, 3, (6,)), torch.rand(6, *shape))
    if multi_task:  # one random target per dense task, shaped like its decoder's output
        with torch.no_grad():
            z = model.encode(batch.x_s)
            batch.targets = {t: torch.rand_like(model.decode(t, z)) for t in model.tasks[1:]}
    out = method(batch)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert all(torch.isfinite(v).all() for v in {**out.parts, **out.metrics}.values())
    out.loss.backward()
    for name, p in method.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    method.eval()
    assert method.predict_logits(torch.rand(4, *shape)).shape == (4, 3)


def test_embedded_datasets_build():
    for name in DATASETS.names():
        if name == "moons":
            task = create_task(name)
            assert len(task.source) == 300 and len(task.target) == 300
            assert task.target.y is None and task.eval["target_test"].y is not None


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        METHODS.register("dann")(object)


def test_double_backprop_penalty_matches_closed_form_for_a_linear_model():
    # f(x) = W x + b: d CE / d x = W^T (softmax(f(x)) - onehot(y))
    from gradversary.models.base import FeatureClassifier

    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    model = FeatureClassifier(torch.nn.Identity(), lin, 4, 3)
    method = create_method("double_backprop", model, weight=0.3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    out = method(Batch(x, y))
    p = torch.softmax(lin(x), -1) - torch.nn.functional.one_hot(y, 3)
    g = p @ lin.weight
    ce = torch.nn.functional.cross_entropy(lin(x), y)
    torch.testing.assert_close(out.parts["grad_penalty"], g.square().sum(1).mean())
    torch.testing.assert_close(out.loss, ce + 0.3 * g.square().sum(1).mean())


def test_dann_mnist_feature_size_and_mean_subtraction():
    model = create_model("dann_mnist", (3, 28, 28), 10, mean=[0.5, 0.5, 0.5])
    assert model.feature_dim == 768
    assert model.features(torch.rand(2, 3, 28, 28)).shape == (2, 768)
    assert sum(p.numel() for p in model.head.parameters()) == 768 * 100 + 100 + 100 * 100 + 100 + 1010


@pytest.mark.parametrize("name,shape", [("dann_mnist", (3, 28, 28)), ("dann_svhn", (3, 32, 32)),
                                        ("dann_gtsrb", (3, 40, 40)), ("resnet_small", (3, 32, 32)),
                                        ("resnet_small", (1, 28, 28))])
def test_conv_networks_run_channels_last_with_nchw_values_and_names(name, shape):
    # the conv stack runs on a channels-last copy: same parameter names as a plain
    # nn.Sequential, and the same outputs and gradients as running its layers in NCHW
    # (resnet_small in training mode: BatchNorm on batch statistics in both layouts)
    from torch import nn

    torch.manual_seed(0)
    model = create_model(name, shape, 10, mean=[0.4, 0.5, 0.6][:shape[0]]).double()
    plain = nn.Sequential(*model.features)  # the same modules, no layout change
    assert [k for k, _ in model.features.named_parameters()] == [k for k, _ in plain.named_parameters()]
    x = torch.rand(5, *shape, dtype=torch.float64)
    seen = []
    conv = next(m for m in model.features if isinstance(m, nn.Conv2d))
    hook = conv.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    f = model.features(x)
    hook.remove()
    assert seen == [True]  # the layout the fast CPU kernels want
    assert f.is_contiguous() and f.shape == (5, model.feature_dim)
    torch.testing.assert_close(f, plain(x), rtol=1e-12, atol=1e-12)
    g1 = torch.autograd.grad(model.head(model.features(x)).square().sum(), list(model.features.parameters()))
    g2 = torch.autograd.grad(model.head(plain(x)).square().sum(), list(model.features.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _registries():
    from gradversary.attacks.base import ATTACKS
    from gradversary.schedules import SCHEDULES
    from gradversary.selection.validators import VALIDATORS

    return {"method": METHODS, "model": MODELS, "dataset": DATASETS, "schedule": SCHEDULES,
            "attack": ATTACKS, "validator": VALIDATORS}


@pytest.mark.parametrize("kind", ["method", "model", "dataset", "schedule", "attack", "validator"])
def test_every_registry_validates_options_on_its_one_construction_path(kind):
    from gradversary.errors import ConfigError

    reg = _registries()[kind]
    args = (create_model("mlp", (2,), 2),) if kind == "method" else ()
    for name in reg.names():
        with pytest.raises(ConfigError, match=f"{kind} {name}"):
            reg.create(name, *args, no_such_option=1)


def test_model_options_are_checked_even_without_a_config_dataclass():
    from gradversary.errors import ConfigError
    from gradversary.registry import Registry

    reg = Registry("toy", context=("in_shape",))
    reg.register("t")(lambda in_shape, width, depth=2: (in_shape, width, depth))
    assert reg.create("t", in_shape=(3,), width=4) == ((3,), 4, 2)
    with pytest.raises(ConfigError, match="did you mean 'depth'"):
        reg.create("t", in_shape=(3,), width=4, dpth=3)
    with pytest.raises(ConfigError, match="missing required key"):
        reg.create("t", in_shape=(3,))


def test_nested_specs_are_resolved_recursively_and_saved_resolved(tmp_path):
    import yaml

    from gradversary.engine import Trainer, resolve_config
    from gradversary.errors import ConfigError

    cfg = resolve_config({"method": {"name": "great", "alpha_schedule": {"max": 2}},
                          "optim": {"lr_schedule": {"name": "constant"}}})
    assert cfg.method["alpha_schedule"] == {"name": "poly_ramp", "power": 0.9, "max": 2.0}
    assert cfg.optim.lr_schedule == {"name": "constant", "value": 1.0}
    with pytest.raises(ConfigError, match="did you mean 'max'"):  # was only caught at build time
        resolve_config({"method": {"name": "great", "alpha_schedule": {"name": "poly_ramp", "maxx": 1}}})
    # an auxiliary model's options are overrides of the main model's: checked, not filled
    cfg2 = resolve_config({"method": {"name": "great", "aux_model": {"name": "mlp", "hidden": [4]}}})
    assert cfg2.method["aux_model"] == {"name": "mlp", "hidden": [4]}
    with pytest.raises(ConfigError, match="aux_model"):
        resolve_config({"method": {"name": "great", "aux_model": {"name": "mlp", "hiden": [4]}}})
    run = resolve_config({"method": {"name": "dann", "lambda_schedule": {"name": "dann_lambda"}},
                          "train": {"steps": 2, "progress": False, "threads": 1}})
    Trainer(run, run_dir=tmp_path).fit()
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["method"]["lambda_schedule"] == {"name": "dann_lambda", "gamma": 10.0, "max": 1.0}
    again = yaml.safe_load(yaml.safe_dump(resolve_config(saved).to_dict()))
    assert again == saved  # the saved form is a fixed point
