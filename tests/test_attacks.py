"""Attacks: invariants for every registered attack, known answers on a linear toy, diagnostics.

The toy is a linear classifier on 1x4x4 images, logits = W (x - 1/2), so the decision
boundaries pass through the centre of the [0, 1] cube. For two classes the loss is
softplus(-d . (x - 1/2)) with d = w_y - w_other, and its maximiser over the eps-ball within
[0, 1] is x* = clamp(x - eps sign(d), 0, 1): FGSM finds it in one step, and at eps = 0.5 every
term of d . (x* - 1/2) is <= 0, so nothing survives.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradversary.attacks import (
    ATTACKS,
    PGD,
    AccuracyTable,
    create_attack,
    gradient_masking_checks,
    list_attacks,
    random_targets,
    robust_accuracy,
    worst_case,
    worst_class_targets,
    zero_gradient_share,
)
from gradversary.errors import ConfigError
from gradversary.models.base import FeatureClassifier

torch.set_num_threads(1)

SHAPE = (1, 4, 4)
# Keep the suite fast: a small query budget for Square, fixed seeds for the random attacks.
FAST = {"square": {"n_queries": 300, "seed": 0}, "pgd": {"seed": 0},
        "apgd_ce": {"steps": 20, "seed": 0}, "apgd_t": {"steps": 20, "seed": 0}}


def linear_toy(k: int = 2, seed: int = 0, noise_from: nn.Module | None = None) -> FeatureClassifier:
    """logits = W (x - 1/2); with ``noise_from``, a perturbed copy of that model's W."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(16, k)
    with torch.no_grad():
        w = torch.randn(k, 16, generator=g)
        if noise_from is not None:
            w = noise_from.head.weight + 0.2 * w
        lin.weight.copy_(w)
        lin.bias.copy_(-0.5 * w.sum(1))
    return FeatureClassifier(nn.Flatten(), lin, 16, k)


def toy_data(model: nn.Module, n: int = 64, seed: int = 1):
    """Images uniform in [0, 1], a few pixels exactly 0 or 1; labels = the model's predictions."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *SHAPE, generator=g)
    x[:4, 0, 0, 0], x[4:8, 0, 1, 1] = 0.0, 1.0
    with torch.no_grad():
        return x, model(x).argmax(1)


def build(name: str, eps: float, model: nn.Module, source: nn.Module | None = None):
    """Attack ``name``; the transfer attack's surrogate is a perturbed copy of ``model``."""
    kwargs = dict(FAST.get(name, {}))
    if name == "transfer":
        kwargs["source"] = source if source is not None else linear_toy(
            model.num_classes, seed=7, noise_from=model)
    return create_attack(name, eps=eps, **kwargs)


def test_registry_lists_the_issue_attacks():
    assert {"fgsm", "ifgsm", "pgd", "square", "transfer"} <= set(list_attacks())


@pytest.mark.parametrize("name", ATTACKS.names())
def test_perturbation_within_eps_and_image_in_unit_box(name):
    model = linear_toy(3)
    x, y = toy_data(model)
    x_before = x.clone()
    for eps in (0.03, 0.3):
        attack = build(name, eps, model)
        for target in (None, (y + 1) % 3):
            x_adv = attack(model, x, y, target)
            assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
            assert (x_adv - x).abs().max() <= eps + 1e-6
            assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(x, x_before)  # the input is not modified in place


@pytest.mark.parametrize("name", ATTACKS.names())
def test_dtype_follows_the_inputs_and_works_under_no_grad(name):
    x, y = toy_data(linear_toy(2), n=8)
    model, x = linear_toy(2).double(), x.double()
    with torch.no_grad():  # an evaluation loop's context must not break gradient attacks
        x_adv = build(name, 0.1, model, source=linear_toy(2, seed=3).double())(model, x, y)
    assert x_adv.dtype == torch.float64
    assert (x_adv - x).abs().max() <= 0.1 + 1e-9


def _modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


@pytest.mark.parametrize("name", ATTACKS.names())
def test_each_submodules_mode_is_restored(name):
    model = linear_toy(3).train()
    model.head.eval()  # a mixed state must come back as it was, not as "all train"
    source = linear_toy(3, seed=5).train()
    before, before_src = _modes(model), _modes(source)
    x, y = toy_data(model, n=8)
    build(name, 0.1, model, source=source)(model, x, y)
    assert _modes(model) == before and _modes(source) == before_src


class Exploding(nn.Module):
    """Raises inside forward, after recording the mode it was called in."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 3)
        self.seen_training = []

    def forward(self, x):
        self.seen_training.append(self.training)
        raise RuntimeError("boom in forward")


@pytest.mark.parametrize("name", ATTACKS.names())
def test_mode_is_restored_when_the_model_raises(name):
    model = Exploding().train()
    x, y = torch.rand(4, *SHAPE), torch.tensor([0, 1, 2, 0])
    with pytest.raises(RuntimeError, match="boom"):
        build(name, 0.1, model, source=model)(model, x, y)
    assert model.seen_training == [False]  # the attack ran the model in eval mode
    assert model.training and model.lin.training


@pytest.mark.parametrize("name", ATTACKS.names())
def test_parameter_gradients_are_left_alone(name):
    model, source = linear_toy(3), linear_toy(3, seed=5)
    model.head.bias.grad = torch.full_like(model.head.bias, 0.25)
    x, y = toy_data(model, n=16)
    build(name, 0.1, model, source=source)(model, x, y)
    assert model.head.weight.grad is None and source.head.weight.grad is None
    assert torch.equal(model.head.bias.grad, torch.full_like(model.head.bias, 0.25))
    assert all(p.requires_grad for p in [*model.parameters(), *source.parameters()])


@pytest.mark.parametrize("name", ["fgsm", "ifgsm", "pgd", "apgd_ce", "apgd_t"])
def test_gradient_attacks_reach_the_hand_computed_optimum_on_the_linear_toy(name):
    model = linear_toy(2)
    x, y = toy_data(model)
    eps = 0.1
    w = model.head.weight.detach()
    d = w[y] - w[1 - y]  # (N, 16): w_y - w_other
    x_star = (x.flatten(1) - eps * d.sign()).clamp(0, 1)
    optimal = F.softplus(-(d * (x_star - 0.5)).sum(1))  # CE(y) = softplus(z_o - z_y)
    x_adv = build(name, eps, model)(model, x, y)
    reached = F.cross_entropy(model(x_adv), y, reduction="none").detach()
    torch.testing.assert_close(reached, optimal, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_adv.flatten(1), x_star, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_robust_accuracy_falls_with_eps_and_reaches_zero(name):
    model = linear_toy(3)
    x, y = toy_data(model)
    accs = [robust_accuracy(model, build(name, eps, model), (x, y), batch_size=32).accuracy
            for eps in (0.0, 0.05, 0.1, 0.2, 0.5)]
    assert accs[0] == 1.0 and accs[-1] == 0.0, accs
    assert all(b <= a for a, b in zip(accs, accs[1:])), accs
    assert accs[2] < 1.0, accs


@pytest.mark.parametrize("name", ATTACKS.names())
def test_targeted_attacks_reach_their_target_more_often(name):
    model = linear_toy(5)
    x, y = toy_data(model, n=96)
    target = random_targets(y, 5, torch.Generator().manual_seed(0))
    attack = build(name, 0.15, model)
    with torch.no_grad():
        hit_targeted = (model(attack(model, x, y, target)).argmax(1) == target).float().mean()
        hit_untargeted = (model(attack(model, x, y)).argmax(1) == target).float().mean()
    assert hit_targeted > hit_untargeted + 0.1, (hit_targeted, hit_untargeted)


class Counting(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        self.calls += 1
        return self.model(x)


def test_square_succeeds_where_pgd_does_within_its_budget():
    model = linear_toy(2)
    x, y = toy_data(model, n=96)
    eps = 0.1
    pgd_ok = ~robust_accuracy(model, build("pgd", eps, model), (x, y)).correct
    assert pgd_ok.float().mean() > 0.3  # an eps where PGD succeeds often, but not always
    counted = Counting(model)
    x_adv = create_attack("square", eps=eps, n_queries=200, seed=1)(counted, x, y)
    assert counted.calls <= 200  # each call queries each still-active example once
    with torch.no_grad():
        square_ok = model(x_adv).argmax(1) != y
    assert square_ok[pgd_ok].float().mean() >= 0.95
    assert not (square_ok & ~pgd_ok).any()  # PGD is optimal here: Square cannot do better


class Sine(nn.Module):
    def forward(self, x):
        return torch.sin(x)


def _wiggly(n: int):
    """A wiggly 4-class model, so that random starts end in different local maxima, with n
    inputs labelled by its own predictions."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), Sine(), nn.Linear(32, 4))
    with torch.no_grad():
        net[1].weight.mul_(20)
        x = torch.rand(n, *SHAPE)
        y = net(x).argmax(1)
    return net, x, y


def test_pgd_restarts_keep_the_worst_point_per_example():
    net, x, y = _wiggly(64)

    def score(x_adv):
        with torch.no_grad():
            logits = net(x_adv)
        return logits.argmax(1) != y, F.cross_entropy(logits, y, reduction="none")

    # Same seed: the first restart is the same run, later ones may only replace it if worse.
    ok1, loss1 = score(PGD(0.02, steps=3, restarts=1, seed=3)(net, x, y))
    ok4, loss4 = score(PGD(0.02, steps=3, restarts=4, seed=3)(net, x, y))
    assert not (ok1 & ~ok4).any()
    both_fail = ~ok1 & ~ok4
    assert (loss4[both_fail] >= loss1[both_fail] - 1e-6).all()
    assert (ok4 & ~ok1).any() or (loss4[both_fail] > loss1[both_fail] + 1e-4).any()


@pytest.mark.parametrize("target,eps", [(False, 0.004), (True, 0.02)])
def test_pgd_early_stop_fools_the_same_examples_with_fewer_gradients(target, eps):
    net, x, y = _wiggly(96)
    t = (y + 1) % 4 if target else None
    calls = {}

    def counted(attack):
        plain = attack.gradient

        def gradient(model, x_adv, yy, tt):
            calls[attack] = calls.get(attack, 0) + x_adv.shape[0]
            return plain(model, x_adv, yy, tt)

        attack.gradient = gradient
        return attack

    full = counted(PGD(eps, steps=10, restarts=2, seed=1))
    fast = counted(PGD(eps, steps=10, restarts=2, seed=1, early_stop=True))
    x_full, x_fast = full(net, x, y, t), fast(net, x, y, t)
    with torch.no_grad():
        pf, pe = net(x_full).argmax(1), net(x_fast).argmax(1)
    hit_full = pf != y if t is None else pf == t
    hit_fast = pe != y if t is None else pe == t
    assert 0 < int(hit_full.sum()) < len(y)  # some fooled, some not: the test can tell
    assert torch.equal(hit_full, hit_fast)
    # unfooled examples ran every step of both restarts in both: their points are the same
    assert torch.allclose(x_full[~hit_full], x_fast[~hit_full])
    assert calls[fast] < calls[full]
    assert ((x_fast - x).abs() <= eps + 1e-6).all() and x_fast.min() >= 0 and x_fast.max() <= 1


def test_gradient_masking_checks_flag_a_masking_table_and_pass_a_healthy_one():
    healthy = AccuracyTable(
        clean=0.99, fgsm=0.80, ifgsm=0.62, pgd=0.60, pgd_strong=0.59, pgd_dlr=0.60, apgd_ce=0.58,
        apgd_t=0.57, square=0.66, transfer=0.85, pgd_by_eps={0.1: 0.85, 0.2: 0.75, 0.3: 0.60, 0.5: 0.02},
        zero_gradient_share=0.0,
    )
    checks = gradient_masking_checks(healthy)
    assert all(c.passed for c in checks), [str(c) for c in checks if not c.passed]
    assert len({c.name for c in checks}) == len(checks) == 11

    masking = dict(  # single-step beats iterative, Square beats PGD, the curve flattens out
        clean=0.99, fgsm=0.55, ifgsm=0.70, pgd=0.72, pgd_strong=0.80, pgd_dlr=0.40, square=0.20, transfer=0.30,
        pgd_by_eps={"0.1": 0.70, "0.3": 0.72, "0.5": 0.60}, zero_gradient_share=0.4,
    )
    failed = {c.name: c.reason for c in gradient_masking_checks(masking) if c.passed is False}
    assert set(failed) == {
        "iterative_not_weaker", "gradient_free_not_stronger", "transfer_not_stronger",
        "more_steps_not_weaker", "near_zero_at_large_eps", "few_zero_gradients",
        "ce_loss_not_saturated",
    }, failed
    assert "above PGD-DLR 40.0%" in failed["ce_loss_not_saturated"]
    assert "above FGSM 55.0%" in failed["iterative_not_weaker"]
    assert "Square 20.0% is below white-box PGD 40.0%" in failed["gradient_free_not_stronger"]

    # APGD far below every fixed-step PGD; APGD-CE far above APGD-T (CE saturates)
    apgd = {c.name: c for c in gradient_masking_checks(dict(clean=0.99, pgd=0.60, pgd_strong=0.59,
                                                            apgd_ce=0.50, apgd_t=0.30))}
    assert apgd["pgd_matches_apgd"].passed is False
    assert "APGD-T 30.0% is below the best fixed-step PGD 59.0% (-3.0 points)" in apgd["pgd_matches_apgd"].reason
    assert apgd["ce_loss_not_saturated"].passed is False
    assert "APGD-CE 50.0% above APGD-T 30.0%" in apgd["ce_loss_not_saturated"].reason
    near = {c.name: c for c in gradient_masking_checks(dict(clean=0.99, pgd=0.60, apgd_ce=0.58))}
    assert near["pgd_matches_apgd"].passed is True and near["ce_loss_not_saturated"].passed is None

    sparse = {c.name: c for c in gradient_masking_checks({"clean": 0.9, "fgsm": 0.5})}
    assert sparse["pgd_matches_apgd"].passed is None
    assert sparse["gradient_free_not_stronger"].passed is None
    assert sparse["attacks_not_above_clean"].passed is True
    with pytest.raises(ConfigError, match="did you mean 'square'"):
        gradient_masking_checks({"clean": 0.9, "sqaure": 0.5})
    with pytest.raises(ConfigError, match="fractions"):
        gradient_masking_checks({"clean": 93.3})


def test_zero_gradient_share():
    model = linear_toy(3)
    x, y = toy_data(model, n=16)
    assert zero_gradient_share(model, x, y) == 0.0
    flat = FeatureClassifier(nn.Flatten(), nn.Linear(16, 3), 16, 3)
    with torch.no_grad():
        flat.head.weight.zero_()  # logits do not depend on x: every input gradient is zero
    assert zero_gradient_share(flat, x, y, batch_size=5) == 1.0
    assert flat.head.weight.grad is None


def test_inputs_are_checked():
    model = linear_toy(2)
    x, y = toy_data(model, n=4)
    fgsm = create_attack("fgsm", eps=0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fgsm(model, x * 2 - 0.5, y)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        fgsm(model, x, y[:, None])
    with pytest.raises(ValueError, match="integer labels"):
        fgsm(model, x, y.float())
    with pytest.raises(ValueError, match="eps"):
        create_attack("pgd", eps=-0.1)
    with pytest.raises(ConfigError, match="did you mean 'pgd'"):
        create_attack("pdg", eps=0.1)
    with pytest.raises(ConfigError, match="did you mean 'restarts'"):
        create_attack("pgd", eps=0.1, restart=3)
    with pytest.raises(ConfigError, match="missing required key.*source"):
        create_attack("transfer", eps=0.1)


def test_target_helpers():
    model = linear_toy(5).train()
    x, y = toy_data(model, n=200)
    worst = worst_class_targets(model, x)
    assert model.training
    torch.testing.assert_close(worst, model(x).argmin(1))
    t = random_targets(y, 5, torch.Generator().manual_seed(0))
    assert (t != y).all() and t.min() >= 0 and t.max() <= 4
    for c in range(5):  # every other class is drawn
        assert set(t[y == c].tolist()) == set(range(5)) - {c}


def test_robust_accuracy_batches_masks_and_worst_case():
    model = linear_toy(3)
    x, y = toy_data(model, n=40)
    fgsm, pgd = build("fgsm", 0.1, model), build("pgd", 0.1, model)
    clean = robust_accuracy(model, None, (x, y))
    assert clean.accuracy == 1.0 and clean.correct.shape == (40,)
    by_tensors = robust_accuracy(model, fgsm, (x, y), batch_size=16)
    by_loader = robust_accuracy(model, fgsm, [(x[i:i + 7], y[i:i + 7]) for i in range(0, 40, 7)])
    assert torch.equal(by_tensors.correct, by_loader.correct)
    both = worst_case(by_tensors, robust_accuracy(model, pgd, (x, y)))
    assert both.accuracy <= by_tensors.accuracy
    targeted = robust_accuracy(model, fgsm, (x, y), target_fn=lambda m, xb, yb: worst_class_targets(m, xb))
    assert 0.0 <= targeted.accuracy <= 1.0


def test_transfer_uses_the_source_model_only():
    model, source = linear_toy(3), linear_toy(3, seed=5)
    x, y = toy_data(model, n=16)
    transfer = create_attack("transfer", eps=0.1, source=source, attack="fgsm")
    torch.testing.assert_close(transfer(model, x, y), create_attack("fgsm", eps=0.1)(source, x, y))
    with pytest.raises(ValueError, match="differs"):
        create_attack("transfer", eps=0.1, source=source, attack=PGD(0.2))
    assert "source=<FeatureClassifier>" in repr(copy.copy(transfer))


def test_attack_losses_against_hand_computed_values():
    from gradversary.attacks.losses import ATTACK_LOSSES, dlr_loss, margin_loss

    z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.5, 2.0, 1.5, 0.0]])
    y, t = torch.tensor([0, 2]), torch.tensor([3, 0])
    # margin: max_{j != y} z_j - z_y ; targeted z_t - max_{j != t} z_j
    torch.testing.assert_close(margin_loss(z, y), torch.tensor([1.0 - 3.0, 2.0 - 1.5]))
    torch.testing.assert_close(margin_loss(z, y, t), torch.tensor([-1.0 - 3.0, 0.5 - 2.0]))
    # DLR: -(z_y - max_{j != y}) / (z_(1) - z_(3)); sorted rows (3, 1, 0, -1) and (2, 1.5, .5, 0)
    torch.testing.assert_close(dlr_loss(z, y), torch.tensor([-(3.0 - 1.0) / 3.0, -(1.5 - 2.0) / 1.5]))
    # targeted: -(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2)
    torch.testing.assert_close(dlr_loss(z, y, t), torch.tensor([-(3.0 + 1.0) / 3.5, -(1.5 - 0.5) / 1.75]))
    # DLR ignores shifts and positive rescaling of the logits; CE does not
    torch.testing.assert_close(dlr_loss(5 * z + 2, y), dlr_loss(z, y))
    assert not torch.allclose(ATTACK_LOSSES["ce"](5 * z, y), ATTACK_LOSSES["ce"](z, y))
    # margin > 0 exactly where the attack has succeeded
    assert torch.equal(margin_loss(z, y) > 0, z.argmax(1) != y)
    with pytest.raises(ValueError, match="at least 3 classes"):
        dlr_loss(z[:, :2], torch.tensor([0, 1]))


@pytest.mark.parametrize("loss", ["margin", "dlr"])
def test_pgd_with_non_saturating_losses_beats_ce_on_saturated_logits(loss):
    # Logits scaled by 1e4: the softmax saturates, CE's input gradient underflows to 0 for
    # confidently classified points, while the margin and DLR gradients do not vanish.
    model = linear_toy(k=4, seed=2)
    with torch.no_grad():
        model.head.weight.mul_(1e4)
        model.head.bias.mul_(1e4)
    x, y = toy_data(model, n=128)
    def acc(attack):
        with torch.no_grad():
            return float((model(attack(model, x, y)).argmax(1) == y).float().mean())
    ce = acc(PGD(0.25, steps=10, seed=0, random_start=False))
    other = acc(PGD(0.25, steps=10, seed=0, random_start=False, loss=loss))
    assert other < ce
    with pytest.raises(ConfigError, match="did you mean 'dlr'"):
        PGD(0.1, loss="dlrr")


# ----------------------------------------------------------------- APGD (Croce & Hein, ICML 2020)
def test_apgd_checkpoints_follow_the_published_rule():
    from gradversary.attacks import apgd_checkpoints

    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (steps shrink by .03, at least .06)
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1000) == [220, 410, 570, 700, 800, 870, 930, 990]
    assert apgd_checkpoints(10) == [3, 5, 6, 7, 8, 9, 10]  # ceil(2.2), ceil(4.1), ...; no repeats


def _apgd_reference(f, x, eps, n_iter, rho=0.75, alpha=0.75):
    """Algorithm 1 of Croce & Hein for ONE example, written out with Python lists: returns the
    final step size, x_max and f_max. ``f`` maps a (1, *) point to (loss, gradient)."""
    w = [0]
    p0, p1 = 0.0, 0.22
    while p1 <= 1.0:
        w.append(math.ceil(round(p1 * n_iter, 9)))
        p0, p1 = p1, p1 + max(p1 - p0 - 0.03, 0.06)
    w = sorted(set(w))
    proj = lambda v: torch.minimum(torch.maximum(v, x - eps), x + eps).clamp(0, 1)  # noqa: E731
    eta = 2 * eps
    xs, fs = [x.clone()], []
    fx, gx = f(xs[0])
    fs.append(fx)
    x_max, f_max, g_max = xs[0], fx, gx
    cur_g = gx
    halved_at_last, fmax_at_last = False, f_max
    for k in range(n_iter):
        cur = xs[-1]
        z = proj(cur + eta * cur_g.sign())
        nxt = z if k == 0 else proj(cur + alpha * (z - cur) + (1 - alpha) * (cur - xs[-2]))
        fn, gn = f(nxt)
        xs.append(nxt)
        fs.append(fn)
        cur_g = gn
        if fn > f_max:
            x_max, f_max, g_max = nxt, fn, gn
        if k + 1 in w[1:]:
            j = w.index(k + 1)
            rises = sum(fs[i + 1] > fs[i] for i in range(w[j - 1], w[j]))
            cond1 = rises < rho * (w[j] - w[j - 1])
            cond2 = (not halved_at_last) and f_max <= fmax_at_last
            halved_at_last, fmax_at_last = cond1 or cond2, f_max
            if cond1 or cond2:
                eta /= 2
                xs[-1], cur_g = x_max, g_max
    return eta, x_max, f_max


def test_apgd_run_matches_a_hand_written_algorithm_1():
    from gradversary.attacks import APGD

    net, x, y = _wiggly(6)
    net, x = net.double(), x.double()  # float64: batch and single passes agree to the last sign
    eps, n_iter = 0.05, 30

    def f_of(i):
        def f(v):
            v = v.detach().requires_grad_(True)
            loss = F.cross_entropy(net(v), y[i:i + 1], reduction="sum")
            (g,) = torch.autograd.grad(loss, v)
            return float(loss.detach()), g
        return f

    run = APGD(eps, steps=n_iter, random_start=False).run(net, x, y)
    halvings = set()
    for i in range(x.shape[0]):
        eta, x_max, f_max = _apgd_reference(f_of(i), x[i:i + 1], eps, n_iter)
        assert float(run.step_size[i]) == pytest.approx(eta)
        torch.testing.assert_close(run.x_max[i:i + 1], x_max, rtol=0, atol=1e-6)
        assert float(run.f_max[i]) == pytest.approx(f_max, rel=1e-5)
        halvings.add(round(math.log2(2 * eps / eta)))
    assert len(halvings) > 1  # the examples took different step-size paths: the test can tell


def test_apgd_halves_at_every_checkpoint_when_the_loss_is_flat():
    from gradversary.attacks import APGD, apgd_checkpoints

    flat = FeatureClassifier(nn.Flatten(), nn.Linear(16, 3), 16, 3)
    with torch.no_grad():
        flat.head.weight.zero_()  # no gradient, no rise: condition 1 holds at each checkpoint
    x, y = torch.rand(5, *SHAPE), torch.tensor([0, 1, 2, 0, 1])
    run = APGD(0.1, steps=100, seed=0).run(flat, x, y)
    expected = 0.2 / 2 ** len(apgd_checkpoints(100))
    torch.testing.assert_close(run.step_size, torch.full((5,), expected))


def test_apgd_t_tries_the_top_k_other_classes_in_order():
    from gradversary.attacks import APGDT

    model = linear_toy(6)
    x, y = toy_data(model, n=32)
    attack = APGDT(0.02, steps=5, n_target_classes=3, seed=0)
    seen = []
    plain = attack.run

    def run(m, xx, yy, loss_target=None, hit_target=None):
        seen.append((xx.shape[0], loss_target.clone()))
        assert hit_target is None  # untargeted use: success is misclassification
        return plain(m, xx, yy, loss_target, hit_target)

    attack.run = run
    attack(model, x, y)
    order = model(x).argsort(1, descending=True)
    assert len(seen) == 3 and seen[0][0] == 32
    torch.testing.assert_close(seen[0][1], order[:, 1])
    assert all(n <= 32 for n, _ in seen)
    assert all(int(t.eq(order[:t.shape[0], 0]).sum()) == 0 or n < 32 for n, t in seen)


@pytest.mark.parametrize("name,eps", [("apgd_ce", 0.01), ("apgd_t", 0.01)])
def test_apgd_early_stop_fools_the_same_examples_with_fewer_gradients(name, eps):
    from gradversary.attacks import APGD, APGDT

    net, x, y = _wiggly(96)
    net, x = net.double(), x.double()  # float64: passes on sub-batches agree with full ones
    cls = {"apgd_ce": APGD, "apgd_t": APGDT}[name]
    rows = {}

    def counted(attack):
        plain = attack._eval

        def _eval(model, xx, yy, lt, ht, grad):
            rows[attack] = rows.get(attack, 0) + xx.shape[0]
            return plain(model, xx, yy, lt, ht, grad)

        attack._eval = _eval
        return attack

    kw = dict(steps=20, restarts=2, seed=3) if name == "apgd_ce" else dict(steps=20, n_target_classes=3, seed=3)
    full, fast = counted(cls(eps, **kw)), counted(cls(eps, **kw, early_stop=True))
    x_full, x_fast = full(net, x, y), fast(net, x, y)
    with torch.no_grad():
        hit_full, hit_fast = net(x_full).argmax(1) != y, net(x_fast).argmax(1) != y
    assert 0 < int(hit_full.sum()) < len(y)  # some fooled, some not: the test can tell
    assert torch.equal(hit_full, hit_fast)
    # the unfooled examples took every step in both: the same points, to the last bit
    assert torch.equal(x_full[~hit_full], x_fast[~hit_full])
    assert rows[fast] < 0.9 * rows[full], (rows[fast], rows[full], int(hit_full.sum()))
    assert ((x_fast - x).abs() <= eps + 1e-9).all() and x_fast.min() >= 0 and x_fast.max() <= 1


def test_apgd_is_at_least_as_strong_as_pgd_on_a_wiggly_model():
    from gradversary.attacks import APGD, APGDT

    net, x, y = _wiggly(128)

    def acc(attack):
        with torch.no_grad():
            return float((net(attack(net, x, y)).argmax(1) == y).float().mean())

    pgd = acc(PGD(0.01, steps=20, seed=0))
    apgd, apgd_t = acc(APGD(0.01, steps=20, seed=0)), acc(APGDT(0.01, steps=20, seed=0))
    assert 0.0 < pgd < 1.0
    assert apgd <= pgd + 0.02 and apgd_t <= pgd + 0.02, (pgd, apgd, apgd_t)


def test_evaluate_attacks_combines_every_attack_into_the_worst_case():
    from gradversary.attacks import evaluate_attacks

    model = linear_toy(4)
    x, y = toy_data(model, n=48)
    attacks = {"fgsm": build("fgsm", 0.05, model), "apgd_ce": build("apgd_ce", 0.05, model),
               "apgd_t": build("apgd_t", 0.05, model)}
    res = evaluate_attacks(model, attacks, (x, y), batch_size=16)
    assert set(res) == {"clean", "fgsm", "apgd_ce", "apgd_t", "worst_case"}
    expected = res["clean"].correct & res["fgsm"].correct & res["apgd_ce"].correct & res["apgd_t"].correct
    assert torch.equal(res["worst_case"].correct, expected)
    assert res["worst_case"].accuracy <= min(r.accuracy for r in res.values())
    with pytest.raises(ConfigError, match="reserved"):
        evaluate_attacks(model, {"clean": None}, (x, y))


@pytest.mark.slow
def test_apgd_agrees_with_torchattacks_when_installed():
    ta = pytest.importorskip("torchattacks")  # optional: never installed at test time
    from gradversary.attacks import APGD

    net, x, y = _wiggly(128)

    def acc(x_adv):
        with torch.no_grad():
            return float((net(x_adv).argmax(1) == y).float().mean())

    ours = acc(APGD(0.01, steps=50, seed=0)(net, x, y))
    theirs = acc(ta.APGD(net, eps=0.01, steps=50, loss="ce", seed=0)(x, y))
    assert abs(ours - theirs) <= 0.05, (ours, theirs)
