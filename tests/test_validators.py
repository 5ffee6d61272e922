"""Label-free validators: hand computations, direction, invariance to target labels; the
ranking maths (weighted Spearman, regret, leave-one-task-out); the `validators` command."""

import json
import math

import numpy as np
import pytest
import torch
import yaml

from gradversary.cli.main import main
from gradversary.data import DATask, DomainData, create_task
from gradversary.engine import Trainer, resolve_config
from gradversary.errors import ConfigError
from gradversary.selection.clustering import adjusted_mutual_info, kmeans
from gradversary.selection.ranking import (
    average_ranks,
    candidate_scores,
    leave_one_task_out,
    rank_mean_scores,
    regret,
    weighted_spearman,
)
from gradversary.selection.validators import (
    VALIDATORS,
    ValidatorInputs,
    build_inputs,
    cheap_validators,
    create_validator,
    resolve_validators,
    score_validators,
)

L3 = math.log(3.0)  # logits (ln 3, 0) give the softmax (0.75, 0.25)


def _score(name, **kw):
    return create_validator(name).score(ValidatorInputs(**kw))


def _h(*p):
    return -sum(q * math.log(q) for q in p)


# ------------------------------------------------------------------ hand computations
def test_source_val_hand():
    s = _score("source_val", target_logits=torch.zeros(1, 2),
               source_val_logits=torch.tensor([[2.0, 0], [0, 2.0], [2.0, 0]]),
               source_val_y=torch.tensor([0, 1, 1]))
    assert s.score == pytest.approx(2 / 3)
    assert s.se == pytest.approx(math.sqrt(2 / 3 * 1 / 3 / 3))


def test_entropy_im_bnm_hand():
    logits = torch.tensor([[L3, 0.0], [0.0, L3]])
    h = _h(0.75, 0.25)
    assert _score("entropy", target_logits=logits).score == pytest.approx(-h)
    # IM = H(mean p) - mean H(p) = ln 2 - h
    assert _score("im", target_logits=logits).score == pytest.approx(math.log(2) - h)
    # P = [[.75, .25], [.25, .75]]: singular values 1 and 0.5; ||P||_* / N = 1.5 / 2
    assert _score("bnm", target_logits=logits).score == pytest.approx(0.75)


def test_snd_hand():
    logits = torch.tensor([[L3, 0.0], [0.0, L3], [L3, 0.0]])
    p = [(0.75, 0.25), (0.25, 0.75), (0.75, 0.25)]
    q = [tuple(v / math.hypot(*r) for v in r) for r in p]
    total = 0.0
    for i in range(3):
        sims = [sum(a * b for a, b in zip(q[i], q[j])) / 0.05 for j in range(3) if j != i]
        z = [math.exp(s - max(sims)) for s in sims]
        r = [v / sum(z) for v in z]
        total += -sum(v * math.log(v) for v in r)
    assert _score("snd", target_logits=logits).score == pytest.approx(total / 3)


def test_ami_and_kmeans_hand():
    # identical partitions up to renaming: 1; the AMI agrees with scikit-learn's
    assert adjusted_mutual_info([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
    sk = pytest.importorskip("sklearn.metrics")
    assert adjusted_mutual_info(a, b) == pytest.approx(sk.adjusted_mutual_info_score(a, b))
    x = torch.tensor([[0.0, 0], [0.1, 0], [5, 5], [5.1, 5]])
    c = kmeans(x, 2)
    assert c[0] == c[1] and c[2] == c[3] and c[0] != c[2]


def test_class_ami_hand():
    feats = torch.tensor([[1.0, 0], [1, 0.01], [0, 1], [0.01, 1]])
    agree = torch.tensor([[2.0, 0], [2, 0], [0, 2], [0, 2]])
    assert _score("class_ami", target_logits=agree, target_features=feats).score == pytest.approx(1.0)
    collapsed = torch.tensor([[2.0, 0]] * 4)
    assert _score("class_ami", target_logits=collapsed, target_features=feats).score == pytest.approx(0.0)


def _weighted_inputs(weights, losses_logits, y):
    inp = ValidatorInputs(target_logits=torch.zeros(1, 2), source_val_logits=losses_logits,
                          source_val_y=y)
    inp.cache["weights"] = torch.tensor(weights, dtype=torch.float64)
    return inp


def test_dev_devn_iwcv_hand():
    logits = torch.tensor([[0.0, 0.0], [L3, 0.0]])  # losses ln 2 and ln(4/3)
    y = torch.tensor([0, 0])
    l1, l2 = math.log(2), math.log(4 / 3)
    inp = _weighted_inputs([0.5, 1.5], logits, y)
    assert create_validator("iwcv").score(inp).score == pytest.approx(-(0.5 * l1 + 1.5 * l2) / 2)

    def dev(w):  # R = mean(w l) + eta mean(w) - eta, eta = -Cov(wl, w) / Var(w) (n - 1 both)
        wl = [w[0] * l1, w[1] * l2]
        mw, mwl = sum(w) / 2, sum(wl) / 2
        cov = sum((a - mwl) * (b - mw) for a, b in zip(wl, w))
        var = sum((b - mw) ** 2 for b in w)
        eta = -cov / var
        return mwl + eta * mw - eta

    assert create_validator("dev").score(inp).score == pytest.approx(-dev([0.5, 1.5]))
    # DEVN: weights divided by their maximum, 1.5
    assert create_validator("devn").score(inp).score == pytest.approx(-dev([1 / 3, 1.0]))
    assert create_validator("dev").score(inp).ess == pytest.approx(4 / 2.5)


def test_mixval_hand():
    # one-hot inputs and logits = x: a 0.55/0.45 mix keeps the dominant class: ICE 1
    x = torch.eye(3).repeat(4, 1)
    inp = ValidatorInputs(target_logits=x, target_x=x, logits_fn=lambda v: v)
    assert create_validator("mixval").score(inp).score == pytest.approx(1.0)
    # two classes, a bias of 0.5 on class 0: pure inputs keep their class (1 > 0.5), a mix
    # dominated by class 1 with a class-0 partner gives (0.45 + 0.5, 0.55): class 0, wrong;
    # every other mix is right. So ICE_intra = 1 and ICE_inter = share of inter pairs led by 0.
    x = torch.eye(2).repeat(6, 1)
    bias = torch.tensor([0.5, 0.0])
    inp = ValidatorInputs(target_logits=x + bias, target_x=x, logits_fn=lambda v: v + bias)
    j = torch.randperm(len(x), generator=torch.Generator().manual_seed(31337))
    yhat = (x + bias).argmax(-1)
    inter = yhat != yhat[j]
    ice_inter = float((yhat[inter] == 0).float().mean())
    expected = (1.0 + ice_inter) / 2 if bool((~inter).any()) else ice_inter
    assert create_validator("mixval").score(inp).score == pytest.approx(expected)
    assert expected < 1.0


def test_reverse_is_not_scored_at_evaluations():
    assert "reverse" in VALIDATORS and "reverse" not in cheap_validators()
    with pytest.raises(ValueError, match="reverse_validation"):
        _score("reverse", target_logits=torch.zeros(1, 2))


# ------------------------------------------------------------------ direction
class _Linear:
    """A 2-class linear model on 2-d inputs: logits = 3 (x . w) (-1, 1)."""

    def __init__(self, angle_deg):
        a = math.radians(angle_deg)
        self.w = torch.tensor([math.cos(a), math.sin(a)])

    def logits(self, x):
        s = 3 * (x @ self.w)
        return torch.stack([-s, s], -1)

    def features(self, x):
        return x


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) * 0.5
    x[:, 0] += torch.where(y == 1, 2.0, -2.0)
    return x, y


@pytest.mark.parametrize("name", cheap_validators())
def test_a_better_model_scores_higher(name):
    xs, ys = _blobs(200, 0)
    xv, yv = _blobs(100, 1)
    xt, _ = _blobs(200, 2)  # the target: the same blobs, so the better model is better there
    scores = {}
    for tag, angle in (("good", 0.0), ("bad", 80.0)):
        m = _Linear(angle)
        inp = build_inputs(m.logits, m.features, xt, xs, xv, yv, seed=0)
        scores[tag] = create_validator(name).score(inp).score
    assert scores["good"] > scores["bad"]


# ------------------------------------------------------------------ invariance
def test_scores_ignore_target_labels(tmp_path):
    task = create_task("moons")
    cfg = resolve_config({"method": {"name": "dann"}, "model": {"name": "mlp", "hidden": [8]},
                          "train": {"steps": 60, "eval_every": 20, "batch_size": 32, "progress": False},
                          "optim": {"lr": 0.1}, "selection": {"holdout": 0.1}})
    out = {}
    for name, flip in (("true", False), ("scrambled", True)):
        g = torch.Generator().manual_seed(1)
        tt, tg = task.eval["target_test"], task.target

        def perm(y, g=g, flip=flip):  # scrambled: permuted, then flipped
            return 1 - y[torch.randperm(len(y), generator=g)] if flip else y

        t2 = DATask(task.source, DomainData(tg.x, perm(tg.y) if tg.y is not None else None), 2,
                    eval={"target_test": DomainData(tt.x, perm(tt.y))})
        summary = Trainer(cfg, run_dir=tmp_path / name, task=t2).fit()
        out[name] = summary["history"]
    assert set(summary["eval_cost_s"]) == {"evaluation", "inputs", *cheap_validators()}
    a, b = out["true"], out["scrambled"]
    keys = [k for k in a[-1] if k.startswith("score_")]
    assert len([k for k in keys if not k.endswith(("_se", "_ess"))]) == len(cheap_validators())
    for ha, hb in zip(a, b):
        assert {k: ha[k] for k in keys} == {k: hb[k] for k in keys}
    assert [h["target_test_acc"] for h in a] != [h["target_test_acc"] for h in b], a


def test_validators_config():
    assert resolve_validators("all_cheap") == cheap_validators()
    assert resolve_validators("none") == []
    with pytest.raises(ConfigError, match="entropy"):
        resolve_config({"selection": {"validators": ["entropyy"]}})
    cfg = resolve_config({"selection": {"validators": ["bnm", "im"]}})
    assert cfg.selection.validators == ["bnm", "im"]


def test_score_validators_skips_source_validators_without_source():
    out, cost = score_validators(["entropy", "dev"], ValidatorInputs(target_logits=torch.zeros(3, 2)))
    assert "score_entropy" in out and "score_dev" not in out and set(cost) == {"entropy"}


# ------------------------------------------------------------------ ranking maths
def test_average_ranks_and_regret():
    assert average_ranks([3, 1, 3]).tolist() == [2.5, 1.0, 2.5]
    assert regret([0.1, 0.9, 0.5], [0.8, 0.7, 0.9]) == pytest.approx(0.2)
    assert regret([1.0, 1.0], [0.5, 0.9]) == pytest.approx(0.4)  # first of ties


def test_weighted_spearman_hand():
    # scores 1, 2, 3 (weights (1/3)^2, (2/3)^2, 1 = 1, 4, 9 up to a factor); acc ranks 1, 3, 2.
    # weighted means: score ranks 36/14, acc ranks 31/14; deviations (-22, -8, 6)/14 and
    # (-17, 11, -3)/14; with w = (1, 4, 9): cov = 374 - 352 - 162 = -140,
    # var_s = 484 + 256 + 324 = 1064, var_a = 289 + 484 + 81 = 854 (all / 196)
    hand = -140 / math.sqrt(1064 * 854)
    rs, ra = np.array([1.0, 2, 3]), np.array([1.0, 3, 2])
    assert weighted_spearman([1, 2, 3], [0.1, 0.3, 0.2]) == pytest.approx(hand)
    assert weighted_spearman([1, 2, 3], [0.1, 0.2, 0.3]) == pytest.approx(1.0)
    assert weighted_spearman([1, 2, 3], [0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    # weight_by="max": max of the two normalised ranks squared: (1/3, 1, 1)^2
    w = np.array([1 / 9, 1, 1])
    ms, ma = (w * rs).sum() / w.sum(), (w * ra).sum() / w.sum()
    cov = (w * (rs - ms) * (ra - ma)).sum()
    hand_max = cov / math.sqrt((w * (rs - ms) ** 2).sum() * (w * (ra - ma) ** 2).sum())
    assert weighted_spearman([1, 2, 3], [0.1, 0.3, 0.2], weight_by="max") == pytest.approx(hand_max)


def test_rank_mean_scores_hand():
    # ranks normalised to [0, 1]: (0, .5, 1) and (1, 0, .5) -> means (.5, .25, .75)
    assert rank_mean_scores([[1, 2, 3], [9, 7, 8]]).tolist() == pytest.approx([0.5, 0.25, 0.75])
    c = candidate_scores({"a": [1, 2], "b": [2, 1], "c": [0, 0]}, max_combo=2)
    assert set(c) == {"a", "b", "c", "a+b", "a+c", "b+c"}


def test_leave_one_task_out_known_answer():
    table = {"x": {"A": 0, "B": 0, "C": 10}, "y": {"A": 1, "B": 1, "C": 1},
             "z": {"A": 5, "B": 0, "C": 0}}
    r = leave_one_task_out(table)
    assert r.chosen == "y" and r.all_task_regret == pytest.approx(1.0)
    assert r.per_task == {"A": ("z", 5.0), "B": ("y", 1.0), "C": ("x", 10.0)}
    assert r.loto_regret == pytest.approx(16 / 3)
    with pytest.raises(ValueError, match="two tasks"):
        leave_one_task_out({"x": {"A": 0}})


# ------------------------------------------------------------------ the command
def _fake_run(root, name, data, method, seed, accs, scores, lam=0.1):
    d = root / name
    d.mkdir(parents=True)
    method_spec = {"name": method, "lambda_schedule": {"name": "constant", "value": lam}}
    (d / "config.yaml").write_text(yaml.safe_dump({"data": data, "method": method_spec,
                                                   "train": {"steps": 3, "eval_every": 1,
                                                             "batch_size": 8}}))
    hist = [{"step": i + 1, "target_test_acc": a,
             **{f"score_{k}": v[i] for k, v in scores.items()}} for i, a in enumerate(accs)]
    (d / "summary.json").write_text(json.dumps({"method": method, "seed": seed, "steps": 3,
                                                "wall_time_s": 1.0, "history": hist,
                                                "eval_cost_s": {"evaluation": 0.01, "entropy": 0.002}}))


def test_validators_command(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        # "good" tracks accuracy on both families; "bad" is reversed
        _fake_run(runs, f"m{seed}", {"name": "moons"}, "dann", seed, [0.5, 0.9, 0.7],
                  {"good": [1, 3, 2], "bad": [3, 1, 2]})
        _fake_run(runs, f"a{seed}", {"name": "amazon", "source": "books", "target": "dvd",
                                     "features": "raw"}, "dann", seed, [0.6, 0.8, 0.7],
                  {"good": [1, 3, 2], "bad": [3, 1, 2]})
    # a lambda grid: a second setting for moons seed 0, better at its step 1, where "good"
    # scores highest of all and "bad" lowest
    _fake_run(runs, "m0_lam1", {"name": "moons"}, "dann", 0, [0.95, 0.6, 0.6],
              {"good": [5, 0, 0], "bad": [0, 5, 5]}, lam=1.0)
    out = tmp_path / "docs" / "validators.md"
    assert main(["validators", str(runs), "--out", str(out), "--note", "made by hand"]) == 0
    md = out.read_text()
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["ranking"]["default"] == "good"
    assert res["ranking"]["family_regret"]["good"] == {"amazon_raw": 0.0, "moons": 0.0}
    # moons: cell lambda 0.1, both seeds regret 0.4; cell lambda 1.0 (seed 0), 0.95 - 0.6
    assert res["ranking"]["family_regret"]["bad"]["moons"] == pytest.approx((0.4 + 0.35) / 2)
    grid = res["ranking"]["grid"]["rows"]
    assert grid["good"] == {"regret": 0.0, "picked": ["lambda 1.0"]}
    assert grid["bad"]["regret"] == pytest.approx(0.95 - 0.6)  # lambda 1.0, step 2
    assert grid["fixed lambda 0.1, last step"]["regret"] == pytest.approx(0.95 - 0.7)
    assert "lambda grid" in md and "made by hand" in md
    assert "Written by `gradversary" in md and "Default: `good`" in md
    assert res["provenance"]["seeds"] == [0, 1]
    assert res["ranking"]["cost"]["entropy"]["median_ratio"] == pytest.approx(0.2)
    assert main(["validators", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_list_shows_the_validators(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in VALIDATORS.names())


def test_reverse_validation_ranks_recorded_grid_settings(tmp_path):
    """A recorded reverse-validation search becomes a grid criterion: it picks the setting
    it scores highest, at that setting's last step; the records are read with --records
    twice."""
    runs = tmp_path / "runs"
    data = {"name": "amazon", "source": "books", "target": "dvd", "features": "raw"}
    for seed in (0, 1):
        _fake_run(runs, f"a{seed}", data, "dann", seed, [0.6, 0.8, 0.7], {"good": [1, 3, 2]})
        _fake_run(runs, f"a{seed}_lam1", data, "dann", seed, [0.9, 0.5, 0.65], {"good": [0, 1, 2]}, lam=1.0)
    _fake_run(runs, "m0", {"name": "moons"}, "dann", 0, [0.5, 0.9, 0.7], {"good": [1, 3, 2]})
    _fake_run(runs, "m1", {"name": "moons"}, "dann", 1, [0.5, 0.9, 0.7], {"good": [1, 3, 2]})
    base = {"data": data, "method": {"name": "dann", "lambda_schedule": {"name": "constant", "value": 0.1}},
            "train": {"steps": 3}}
    search = {"key": json.dumps({"config": base, "grid": {}}), "result": {"scores": [
        {"overrides": ["method.lambda_schedule.value=0.1"], "reverse_acc": 0.7},
        {"overrides": ["method.lambda_schedule.value=1.0"], "reverse_acc": 0.8}]}}
    rec = tmp_path / "rec" / "full" / "grid_row"
    rec.mkdir(parents=True)
    (rec / "grid-s0.json").write_text(json.dumps(search))
    empty = tmp_path / "rec2"
    empty.mkdir()
    out = tmp_path / "v.md"
    assert main(["validators", str(runs), "--records", str(tmp_path / "rec"), "--records", str(empty),
                 "--out", str(out)]) == 0
    grid = json.loads(out.with_suffix(".json").read_text())["ranking"]["grid"]["rows"]
    rv = grid["reverse validation (split of one seed), last step"]
    # lambda 1.0 at its last step (0.65) against the best of the grid (0.9), both seeds
    assert rv == {"regret": pytest.approx(0.25), "picked": ["lambda 1.0", "lambda 1.0"]}
    assert main(["validators", "--out", str(out)]) == 2  # nothing to rank
    # --exclude leaves runs out by path: without the lambda 1.0 runs there is no grid
    assert main(["validators", str(runs), "--exclude", "*_lam1", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["provenance"]["runs"] == 4 and not res["ranking"]["grid"]
