"""A method that declares several optimizers gets each stepped, with its own settings."""

import pytest
import torch

from gradversary.engine import Trainer, resolve_config
from gradversary.errors import ConfigError
from gradversary.methods.base import METHODS, Batch
from gradversary.methods.dann import DANN, DANNConfig


class TwoOptimizerDANN(DANN):
    def param_groups(self):
        return {"main": [{"params": list(self.model.parameters())}],
                "disc": [{"params": list(self.discriminator.parameters())}]}


if "dann_two_opt_test" not in METHODS:
    METHODS.register("dann_two_opt_test", DANNConfig)(TwoOptimizerDANN)


def test_each_declared_optimizer_steps_with_its_own_settings(tmp_path):
    cfg = resolve_config({
        "method": {"name": "dann_two_opt_test"},
        "optim": {"name": "sgd", "lr": 0.01, "lr_schedule": {"name": "constant"},
                  "groups": {"disc": {"name": "adam", "lr": 0.002}}},
        "train": {"steps": 4, "batch_size": 16, "progress": False, "eval_every": 0},
    })
    tr = Trainer(cfg, run_dir=tmp_path)
    assert isinstance(tr.optimizers["main"], torch.optim.SGD)
    assert isinstance(tr.optimizers["disc"], torch.optim.Adam)
    before = {k: v.clone() for k, v in tr.method.state_dict().items()}
    tr.fit()
    after = tr.method.state_dict()
    assert not torch.equal(before["discriminator.net.0.weight"], after["discriminator.net.0.weight"])
    assert not torch.equal(before["model.head.weight"], after["model.head.weight"])
    assert tr.optimizers["disc"].param_groups[0]["lr"] == pytest.approx(0.002)
    assert tr.optimizers["main"].param_groups[0]["lr"] == pytest.approx(0.01)
    # both optimizers' states are in the checkpoint
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert set(state["optimizers"]) == {"main", "disc"}


def test_unknown_group_override_key_is_rejected():
    from gradversary.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        resolve_config({"optim": {"groups": {"disc": {"lrr": 0.1}}}})


def test_override_for_an_undeclared_optimizer_is_rejected(tmp_path):
    from gradversary.errors import ConfigError

    cfg = resolve_config({"method": {"name": "dann"}, "optim": {"groups": {"aux": {"lr": 0.1}}},
                          "train": {"steps": 2, "progress": False}})
    with pytest.raises(ConfigError, match="declares the optimizers"):
        Trainer(cfg, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_sgd_nesterov_with_weight_decay_first_step_by_hand(tmp_path):
    # first step: buf = g + wd w, update = (g + wd w) + m buf = (1 + m)(g + wd w)
    cfg = resolve_config({"method": {"name": "erm"}, "model": {"name": "mlp", "hidden": [4]},
                          "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                                    "weight_decay": 1e-3, "lr_schedule": {"name": "constant"}},
                          "train": {"steps": 3, "batch_size": 8, "progress": False}})
    tr = Trainer(cfg, run_dir=tmp_path)
    sd = {k: v.clone().requires_grad_() for k, v in tr.method.state_dict().items()}
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    h = torch.relu(x @ sd["model.features.1.0.weight"].T + sd["model.features.1.0.bias"])
    loss = torch.nn.functional.cross_entropy(h @ sd["model.head.weight"].T + sd["model.head.bias"], y)
    grads = dict(zip(sd, torch.autograd.grad(loss, list(sd.values()))))
    tr._set_progress(0.0)
    tr.train_step(Batch(x, y))
    for k, v in tr.method.state_dict().items():
        d = grads[k] + 1e-3 * sd[k].detach()
        torch.testing.assert_close(v, sd[k].detach() - 0.1 * 1.9 * d)


def test_nesterov_needs_sgd_with_momentum():
    with pytest.raises(ConfigError, match="nesterov"):
        resolve_config({"optim": {"name": "adam", "nesterov": True}})
    with pytest.raises(ConfigError, match="nesterov"):
        resolve_config({"optim": {"name": "sgd", "momentum": 0.0, "nesterov": True}})
