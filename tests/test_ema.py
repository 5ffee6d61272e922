import torch

from gradversary.engine import Trainer, resolve_config
from gradversary.engine.ema import EMA


def test_ema_update_formula_and_swap_restores():
    lin = torch.nn.Linear(2, 1)
    ema = EMA(lin, 0.9)
    w0 = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.update(lin)
    torch.testing.assert_close(ema.shadow["weight"], 0.9 * w0 + 0.1 * (w0 + 1.0))
    with ema.swapped(lin):
        torch.testing.assert_close(lin.weight, ema.shadow["weight"])
    torch.testing.assert_close(lin.weight, w0 + 1.0)


def test_engine_evaluates_with_ema_weights_and_checkpoints_them(tmp_path):
    cfg = resolve_config({"method": {"name": "erm"}, "train": {
        "steps": 20, "batch_size": 32, "eval_every": 10, "progress": False, "ema_decay": 0.9}})
    tr = Trainer(cfg, run_dir=tmp_path)
    tr.fit()
    trained = tr.evaluate()
    with tr.ema.swapped(tr.method):
        direct = tr.method.evaluate(tr.task.eval)
    assert {k: trained[k] for k in direct} == direct  # (trained also has the validators' scores)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    torch.testing.assert_close(state["ema"]["model.head.weight"], tr.ema.shadow["model.head.weight"])
    assert not torch.equal(tr.ema.shadow["model.head.weight"], tr.method.model.head.weight)
    # resume to a longer run restores the average too
    cfg2 = resolve_config(cfg.to_dict(), ["train.steps=30"])
    tr2 = Trainer(cfg2, run_dir=tmp_path)
    tr2.load_state_dict(state)
    torch.testing.assert_close(tr2.ema.shadow["model.head.weight"], tr.ema.shadow["model.head.weight"])
