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
    model = create_model(model_name, (2,), 3)
    method = create_method(method_name, model)
    for s in method.schedules().values():
        s.step(0.5)
    batch = Batch(torch.randn(6, 2), torch.randint(0, 3, (6,)), torch.randn(6, 2))
    out = method(batch)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert all(torch.isfinite(v).all() for v in {**out.parts, **out.metrics}.values())
    out.loss.backward()
    for name, p in method.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    method.eval()
    assert method.predict_logits(torch.randn(4, 2)).shape == (4, 3)


def test_embedded_datasets_build():
    for name in DATASETS.names():
        if name == "moons":
            task = create_task(name)
            assert len(task.source) == 300 and len(task.target) == 300
            assert task.target.y is None and task.eval["target_test"].y is not None


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        METHODS.register("dann")(object)
