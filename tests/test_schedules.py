import math

import pytest
import torch

from gradversary.engine import Trainer, resolve_config
from gradversary.engine.checkpoint import load_checkpoint
from gradversary.schedules import (
    SCHEDULES,
    DANNLambda,
    InverseDecay,
    Poly,
    PolyRamp,
    create_schedule,
)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_dann_lambda_formula(p):
    expected = 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0
    assert DANNLambda(gamma=10).step(p) == pytest.approx(expected, rel=1e-12)
    # hand values: 0, 0.98661429815, 0.99990920426
    assert DANNLambda().step(p) == pytest.approx({0.0: 0.0, 0.5: 0.9866142981514305,
                                                  1.0: 0.9999092042625951}[p])


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_inverse_decay_formula(p):
    mu0, alpha, beta = 0.01, 10.0, 0.75
    assert InverseDecay(alpha, beta, scale=mu0).step(p) == pytest.approx(mu0 / (1 + alpha * p) ** beta)
    assert InverseDecay().step(p) == pytest.approx({0.0: 1.0, 0.5: 6 ** -0.75, 1.0: 11 ** -0.75}[p])


def test_poly_and_ramp_mirror_each_other():
    for p in (0.0, 0.3, 1.0):
        assert Poly(0.9).step(p) + PolyRamp(0.9).step(p) == pytest.approx(1.0)


def test_cyclic_is_wong_et_al_s_triangle():
    # numpy.interp(t, [0, 4, 10], [0, 5e-3, 0]) of their MNIST script, at t = 10 p epochs
    from gradversary.schedules import Cyclic

    c = Cyclic(peak=0.4, scale=5e-3)
    for t, lr in ((0.0, 0.0), (1.0, 1.25e-3), (4.0, 5e-3), (7.0, 2.5e-3), (10.0, 0.0)):
        assert c.step(t / 10) == pytest.approx(lr, abs=1e-15)
    with pytest.raises(ValueError, match="peak"):
        Cyclic(peak=1.0)


def test_schedule_state_round_trip_and_clamp():
    s = DANNLambda()
    s.step(1.7)
    assert s.p == 1.0
    s.step(0.42)
    t = DANNLambda()
    t.load_state_dict(s.state_dict())
    assert t.value == s.value


def test_every_registered_schedule_builds_and_is_finite():
    for name in SCHEDULES.names():
        s = create_schedule({"name": name})
        s.bind_total_steps(1000)
        assert all(math.isfinite(s.step(p)) for p in (0.0, 0.5, 1.0))


def test_engine_sets_lr_and_lambda_from_progress_and_eval_does_not_move_them(tmp_path):
    cfg = resolve_config({"method": {"name": "dann"}, "optim": {"lr": 0.01},
                          "train": {"steps": 10, "eval_every": 0, "progress": False}})
    seen = []

    def record(info):
        tr = info.trainer
        seen.append((tr.optimizers["main"].param_groups[0]["lr"], float(tr.method.grl.coeff)))

    trainer = Trainer(cfg, run_dir=tmp_path, callbacks=[record])
    trainer.fit()
    assert len(seen) == 10
    for k, (lr, lam) in enumerate(seen):
        p = k / 10  # step k+1 runs at progress k / total
        assert lr == pytest.approx(0.01 / (1 + 10 * p) ** 0.75)
        assert lam == pytest.approx(2 / (1 + math.exp(-10 * p)) - 1)
    before = (trainer.lr_schedules["main"].p, trainer.method.lambda_schedule.p)
    trainer.evaluate()
    trainer.method.eval()
    trainer.method.predict_logits(torch.zeros(3, 2))
    assert (trainer.lr_schedules["main"].p, trainer.method.lambda_schedule.p) == before


def test_iteration_schedules_follow_the_step_count_not_progress():
    from gradversary.schedules import InverseDecaySteps, WarmStartLambda

    for total in (2500, 10_000):
        lam, lr = WarmStartLambda(gamma=1e-3), InverseDecaySteps(gamma=1e-3, beta=0.75)
        lam.bind_total_steps(total)
        lr.bind_total_steps(total)
        for i in (0, 1, 999, 1000, 2500):
            p = i / total
            assert lam.step(p) == pytest.approx(2 / (1 + math.exp(-i / 1000)) - 1, abs=1e-12)
            assert lr.step(p) == pytest.approx((1 + 0.001 * i) ** -0.75, rel=1e-12)
    half = WarmStartLambda(max=0.1)
    half.bind_total_steps(4000)
    assert half.step(0.25) == pytest.approx(0.1 * (2 / (1 + math.exp(-1.0)) - 1))


def test_iteration_schedule_refuses_to_run_without_a_total():
    from gradversary.schedules import WarmStartLambda

    with pytest.raises(RuntimeError, match="bind_total_steps"):
        WarmStartLambda().step(0.5)
    with pytest.raises(ValueError):
        WarmStartLambda().bind_total_steps(0)


def test_engine_binds_the_total_and_resumes_iteration_schedules(tmp_path):
    cfg = resolve_config({"method": {"name": "dann",
                                     "lambda_schedule": {"name": "warm_start_lambda", "gamma": 0.1}},
                          "optim": {"lr": 0.01, "lr_schedule": {"name": "inverse_decay_steps", "gamma": 0.01}},
                          "train": {"steps": 12, "eval_every": 0, "progress": False, "log_every": 1}})
    seen = []

    def record(info):
        tr = info.trainer
        seen.append((tr.method.lambda_schedule.value, tr.optimizers["main"].param_groups[0]["lr"]))

    Trainer(cfg, run_dir=tmp_path / "a", callbacks=[record]).fit()
    for i, (lam, lr) in enumerate(seen):  # the step i is the 0-based index of the update
        assert lam == pytest.approx(2 / (1 + math.exp(-0.1 * i)) - 1)
        assert lr == pytest.approx(0.01 * (1 + 0.01 * i) ** -0.75)
    # stop after 5 steps, resume: the same values at the same steps
    cfg5 = resolve_config({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "steps": 12}})
    tr = Trainer(cfg5, run_dir=tmp_path / "b")
    for _ in range(5):
        tr._set_progress(tr._progress())
        tr.train_step(tr._next_batch())
        tr.step += 1
    tr.save()
    back = Trainer(cfg5, run_dir=tmp_path / "b")
    back.load_state_dict(load_checkpoint(tr.ckpt_path))
    back._set_progress(back._progress())
    assert back.method.lambda_schedule.value == pytest.approx(seen[5][0])
    assert back.optimizers["main"].param_groups[0]["lr"] == pytest.approx(seen[5][1])
