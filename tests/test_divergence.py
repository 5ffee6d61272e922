"""The runaway watch (issue 18): a finite loss that grows by orders of magnitude stops the run."""

import json

import pytest
import torch

from gradversary.engine import Trainer, load_checkpoint, resolve_config
from gradversary.engine.divergence import DivergenceConfig, DivergenceWatch
from gradversary.errors import ConfigError, DivergenceError
from gradversary.io import read_metrics


def _feed(watch, values, key="loss", start=10, every=10):
    """Feed records; the (step, message) of the first firing, or None."""
    for i, v in enumerate(values):
        step = start + i * every
        msg = watch.update(step, {key: v})
        if msg is not None:
            return step, msg
    return None


def test_watch_fires_on_sustained_growth_and_names_the_step_and_figure():
    w = DivergenceWatch(DivergenceConfig(window=3, loss_ratio=1e3))
    values = [2.3, 1.0, 0.5, 0.4, 0.4] + [0.4 * 10 ** (i / 2) for i in range(1, 12)]
    step, msg = _feed(w, values)
    # medians of 3: the first above 1e3 x 0.4 = 400 is the one whose window is
    # (0.4e3, 0.4e3.5, 0.4e4) -> 0.4e3.5 = 1265; that window ends at record 13 (step 130)
    assert step == 130
    assert "loss 1265" in msg and "step 130" in msg and "0.4 (at step 50" in msg


def test_watch_ignores_a_single_spike_and_the_floor_protects_tiny_losses():
    w = DivergenceWatch(DivergenceConfig(window=3, loss_ratio=1e3, loss_floor=1e-2))
    assert _feed(w, [1.0, 0.1, 0.01, 1e-4, 1e-4, 1e-4, 50.0, 1e-4, 1e-4]) is None
    # a run fitted to 1e-4: a sustained loss of 5 is 5e4 x its minimum but below 1e3 x floor
    assert _feed(w, [5.0] * 6, start=100) is None
    assert _feed(w, [20.0] * 3, start=200)[0] == 210  # median 20 > 1e3 x 0.01 at the 2nd


def test_gradient_norm_rule_and_switches():
    w = DivergenceWatch(DivergenceConfig(window=2, grad_ratio=100.0, grad_floor=1e-3))
    step, msg = _feed(w, [1.0, 0.5, 0.5, 30.0, 80.0], key="param_grad_norm")
    assert step == 50 and msg.startswith("gradient norm 55")
    off = DivergenceWatch(DivergenceConfig(enabled=False))
    assert _feed(off, [1.0, 1e9, 1e9, 1e9, 1e9, 1e9, 1e9]) is None and not off.watches_gradients
    no_loss = DivergenceWatch(DivergenceConfig(window=1, loss_ratio=None))
    assert _feed(no_loss, [1.0, 1e9]) is None
    for bad in ({"window": 0}, {"loss_ratio": 0.5}, {"grad_floor": 0.0}):
        with pytest.raises(ValueError):
            DivergenceConfig(**bad)


def test_watch_state_round_trips():
    a = DivergenceWatch(DivergenceConfig(window=2, loss_ratio=10.0))
    _feed(a, [1.0, 0.5, 0.4])
    b = DivergenceWatch(DivergenceConfig(window=2, loss_ratio=10.0))
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    assert a.update(100, {"loss": 3.0}) is None and b.update(100, {"loss": 3.0}) is None
    assert a.update(110, {"loss": 30.0}) == b.update(110, {"loss": 30.0}) is not None


def _cfg(steps=300, **divergence):
    return resolve_config({"method": {"name": "erm"}, "model": {"name": "mlp", "hidden": [8]},
                           "optim": {"lr": 0.05},
                           "train": {"steps": steps, "eval_every": 50, "log_every": 10,
                                     "batch_size": 32, "progress": False,
                                     **({"divergence": divergence} if divergence else {})}})


def _blow_up(info):
    """From step 120 on, scale the head by 1.4 each step: logits, the loss on misclassified
    points and the gradients grow geometrically, yet every value stays finite."""
    if info.step >= 120:
        with torch.no_grad():
            for p in info.trainer.method.model.head.parameters():
                p.mul_(1.4)


def test_synthetic_runaway_run_stops_naming_step_and_figure_and_keeps_the_checkpoint(tmp_path):
    tr = Trainer(_cfg(), run_dir=tmp_path, callbacks=[_blow_up])
    with pytest.raises(DivergenceError, match=r"training diverged: (loss|gradient norm) .* at step \d+") as exc:
        tr.fit()
    step = exc.value.step
    assert 120 < step < 300 and f"step {step}" in str(exc.value)
    assert str(tmp_path / "checkpoints" / "last.pt") in str(exc.value)
    train = read_metrics(tmp_path / "metrics.jsonl", kind="train")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train)  # never NaN: no NaN check fires
    assert "param_grad_norm" in train[0]
    (diverged,) = read_metrics(tmp_path / "metrics.jsonl", kind="diverged")
    assert diverged["step"] == step and "running away" in diverged["reason"]
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] < step and state["step"] % 50 == 0  # the last checkpoint, written before
    assert "divergence" in state and state["divergence"]["best"]
    assert not (tmp_path / "summary.json").exists()


def test_the_same_run_with_the_watch_off_runs_to_the_end(tmp_path):
    summary = Trainer(_cfg(enabled=False), run_dir=tmp_path, callbacks=[_blow_up]).fit()
    assert summary["steps"] == 300
    healthy = Trainer(_cfg(), run_dir=tmp_path / "healthy").fit()  # on by default, silent
    assert healthy["steps"] == 300


def test_divergence_config_is_typed():
    assert _cfg().train.divergence.loss_ratio == 1e3
    assert resolve_config({}, ["train.divergence.window=7"]).train.divergence.window == 7
    with pytest.raises(ConfigError, match="did you mean 'loss_ratio'"):
        resolve_config({}, ["train.divergence.loss_ration=10"])


def test_clipping_reuses_the_watched_norm_and_matches_clipping_afresh(monkeypatch):
    """With grad_clip set, step() clips with the norm grad_norm() measured (no second pass):
    the clipped gradients equal torch's clip_grad_norm_ on the same gradients, and the reported
    norm is the global one over both optimizers (GREAT declares two)."""
    from gradversary.engine.optim import Optimizers

    cfg = resolve_config({"method": {"name": "great"}, "model": {"name": "mlp"},
                          "optim": {"lr": 1e-12, "grad_clip": 0.05}, "train": {"progress": False}})
    torch.manual_seed(0)
    method = Trainer(cfg).method
    opts = Optimizers(method, cfg.optim, "great")
    assert len(opts.optimizers) == 2
    for p in opts.params:
        p.grad = torch.randn_like(p)
    expected = {}
    for name, opt in opts.optimizers.items():
        ps = [p for g in opt.param_groups for p in g["params"]]
        copies = [p.grad.clone() for p in ps]
        ref = [torch.nn.Parameter(p.detach().clone()) for p in ps]
        for r, c in zip(ref, copies):
            r.grad = c
        torch.nn.utils.clip_grad_norm_(ref, 0.05)
        expected[name] = [r.grad for r in ref]
    by_hand = torch.sqrt(sum((p.grad ** 2).sum() for p in opts.params))
    norm = opts.grad_norm()
    assert torch.allclose(norm, by_hand) and float(norm) > 0.05
    def no_second_pass(*a, **k):
        raise AssertionError("the norm was computed again")

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", no_second_pass)
    opts.step()  # lr ~0: only the clipping shows
    for name, opt in opts.optimizers.items():
        ps = [p for g in opt.param_groups for p in g["params"]]
        assert all(torch.allclose(p.grad, e) for p, e in zip(ps, expected[name]))
    assert opts._norms == {}  # used once, by the step it was measured for
