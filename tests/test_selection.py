import math

import pytest
import torch

from gradversary.data import DATask, DomainData
from gradversary.selection import (
    dev_risk,
    importance_weights,
    iwcv_risk,
    proxy_a_distance,
    reverse_validation,
)


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_pad_near_zero_for_one_distribution_and_two_for_separable():
    g = _g()
    a, b = torch.randn(2000, 5, generator=g), torch.randn(2000, 5, generator=g)
    assert proxy_a_distance(a, b).pad < 0.2
    c = torch.randn(2000, 5, generator=g) + torch.tensor([4.0, 0, 0, 0, 0])
    res = proxy_a_distance(a, c)
    assert res.pad > 1.9 and res.error < 0.03
    # in between for a partial shift; monotone in the shift
    pads = [proxy_a_distance(a, torch.randn(2000, 5, generator=g) + s).pad for s in (0.25, 0.5, 1.0)]
    assert pads[0] < pads[1] < pads[2]


def test_pad_rejects_mismatched_features():
    with pytest.raises(ValueError, match="feature sizes differ"):
        proxy_a_distance(torch.zeros(10, 3), torch.zeros(10, 4))


def test_importance_weighted_risks_recover_a_known_target_risk():
    # source N(0, 1), target N(1, 1): the log density ratio is linear, so logistic regression
    # is the right model. Loss l(x) = 1[x > 1]; the true target risk is P_T(x > 1) = 0.5.
    g = _g(1)
    xs = torch.randn(4000, 1, generator=g)
    xt = torch.randn(4000, 1, generator=g) + 1.0
    xv = torch.randn(4000, 1, generator=g)
    losses = (xv[:, 0] > 1).double()
    w = importance_weights(xs, xt, xv)
    assert w.mean().item() == pytest.approx(1.0)
    # the true ratio is exp(x - 1/2): check the fitted weights follow it
    true = torch.exp(xv[:, 0].double() - 0.5)
    true = true / true.mean()
    assert torch.corrcoef(torch.stack([w, true]))[0, 1] > 0.99
    plain = losses.mean().item()  # about P_S(x > 1) = 0.159
    assert abs(plain - 0.5) > 0.3
    assert iwcv_risk(losses, w).risk == pytest.approx(0.5, abs=0.05)
    assert dev_risk(losses, w).risk == pytest.approx(0.5, abs=0.05)


def test_calibrated_weights_recover_the_known_ratio_and_stay_flat_without_shift():
    from gradversary.selection.weighting import _ess

    g = _g(2)
    # the known linear shift of the test above: the calibrated classifier still finds it
    xs, xt, xv = torch.randn(4000, 1, generator=g), torch.randn(4000, 1, generator=g) + 1.0, \
        torch.randn(4000, 1, generator=g)
    w = importance_weights(xs, xt, xv, weight_decay="cv", rel_std_floor=1e-2)
    assert dev_risk((xv[:, 0] > 1).double(), w).risk == pytest.approx(0.5, abs=0.05)

    # no shift at all, 100 noise features plus 50 nearly dead units (ReLUs that fire on 1% of
    # the inputs, with tiny values): the true weights are all 1, so the effective sample size
    # should be about M. A weak fixed penalty fits noise and leaves a fraction of it.
    def feats(n):
        dead = (torch.rand(n, 50, generator=g) < 0.01).float() * torch.rand(n, 50, generator=g) * 1e-3
        return torch.cat([torch.randn(n, 100, generator=g), dead], 1)

    xs, xt, xv = feats(400), feats(400), feats(1000)
    assert _ess(importance_weights(xs, xt, xv)) < 300
    assert _ess(importance_weights(xs, xt, xv, weight_decay="cv", rel_std_floor=1e-2)) > 950
    with pytest.raises(ValueError, match="'cv'"):
        importance_weights(xs, xt, xv, weight_decay="auto")


def test_standardize_floor_leaves_live_features_and_tames_dead_ones():
    from gradversary.selection.domain_classifier import standardize

    x = torch.stack([torch.linspace(-2, 2, 101), torch.zeros(101)], 1)
    x[50, 1] = 1e-4  # a unit that fired once, barely
    plain, = standardize(x)
    floored, = standardize(x, rel_floor=1e-2)
    assert torch.allclose(plain[:, 0], floored[:, 0])            # the live feature: a z-score
    assert plain[:, 1].abs().max() > 9 and floored[:, 1].abs().max() < 0.01


def test_dev_with_constant_weights_is_the_plain_mean():
    losses = torch.tensor([0.2, 0.4, 0.9])
    r = dev_risk(losses, torch.ones(3))
    assert r.risk == pytest.approx(0.5) and r.ess == pytest.approx(3.0)


def _centroid_fit(features: list[int]):
    """Nearest-centroid classifier on the chosen input features: a 'setting' to validate."""
    def fit(task: DATask):
        x, y = task.source.x[:, features], task.source.y
        cents = torch.stack([x[y == k].mean(0) for k in range(task.num_classes)])
        return lambda z: -torch.cdist(z[:, features], cents)  # nearest centroid wins
    return fit


def test_reverse_validation_prefers_the_setting_that_labels_the_target_well():
    g = _g(2)
    n = 400
    ys = torch.randint(0, 2, (n,), generator=g)
    xs = torch.randn(n, 2, generator=g) * 0.5 + torch.stack([ys * 3.0, torch.zeros(n)], 1)
    yt = torch.randint(0, 2, (n,), generator=g)
    xt = torch.randn(n, 2, generator=g) * 0.5 + torch.stack([yt * 3.0, torch.ones(n)], 1)  # shifted
    task = DATask(DomainData(xs, ys, "s"), DomainData(xt, yt, "t"), 2)
    good = reverse_validation(task, _centroid_fit([0, 1]))
    bad = reverse_validation(task, _centroid_fit([1]))  # the uninformative, shifted feature
    assert good.reverse_acc > 0.95
    assert bad.reverse_acc < 0.75
    assert good.source_val_acc > 0.95 and not math.isnan(good.target_self_agreement)


def test_msda_layer_matches_monte_carlo_denoising_solution():
    # The closed form is the least-squares map from corrupted to clean inputs in the limit
    # of infinitely many corruptions: compare with many sampled corruptions.
    from gradversary.data.msda import msda_fit

    g = _g(3)
    x = torch.rand(60, 3, generator=g, dtype=torch.float64)
    (w,) = msda_fit(x, noise=0.3, layers=1, reg=0.0)
    reps = 3000
    xr = x.repeat(reps, 1)
    keep = (torch.rand(xr.shape, generator=g, dtype=torch.float64) > 0.3).double()
    xc = torch.cat([xr * keep, torch.ones(len(xr), 1, dtype=torch.float64)], 1)
    w_mc = torch.linalg.lstsq(xc, xr).solution.T
    torch.testing.assert_close(w, w_mc, atol=0.05, rtol=0.05)


def test_feature_embedding_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from gradversary.report.plots import embed_2d, feature_embedding_plot

    g = _g(4)
    a, b = torch.randn(60, 5, generator=g), torch.randn(50, 5, generator=g) + 2
    z, used = embed_2d(torch.cat([a, b]), "pca")
    assert z.shape == (110, 2) and used == "PCA"
    # PCA's first axis separates the two shifted clouds
    assert abs(z[:60, 0].mean() - z[60:, 0].mean()) > 2
    p = feature_embedding_plot([("raw", a, b), ("again", a, b)], tmp_path / "e.png", method="pca")
    assert p.exists() and p.stat().st_size > 1000


def test_risk_standard_errors_match_their_hand_formulas():
    from gradversary.selection import dev_risk, iwcv_risk

    losses = torch.tensor([0.2, 1.0, 0.5, 0.1, 0.9], dtype=torch.float64)
    w = torch.tensor([0.5, 2.0, 1.0, 0.5, 1.0], dtype=torch.float64)
    m = len(losses)
    terms = w * losses
    assert iwcv_risk(losses, w).se == pytest.approx(float(terms.std() / m ** 0.5))
    # DEV's estimate is the mean of w l + eta (w - 1), eta = -Cov(w l, w) / Var(w)
    eta = -float(((terms - terms.mean()) * (w - w.mean())).sum() / (m - 1) / w.var())
    dev_terms = terms + eta * (w - 1)
    r = dev_risk(losses, w)
    assert r.risk == pytest.approx(float(dev_terms.mean()))
    assert r.se == pytest.approx(float(dev_terms.std() / m ** 0.5))
    assert r.se < iwcv_risk(losses, w).se  # the control variate cuts the variance here
