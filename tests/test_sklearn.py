import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn (the [sklearn] extra) is not installed")

import scipy.sparse as sp  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import DataConversionWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from gradversary.errors import DataError  # noqa: E402
from gradversary.sklearn import DANNClassifier, NoTargetWarning  # noqa: E402


def _data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    Xs = rng.normal(size=(n, 2))
    ys = np.where(Xs[:, 0] + 0.5 * Xs[:, 1] > 0, "pos", "neg")
    Xt = Xs @ np.array([[0.9, 0.3], [-0.3, 0.9]]) + 0.3
    yt = np.where(Xs[:, 0] + 0.5 * Xs[:, 1] > 0, "pos", "neg")
    return Xs, ys, Xt, yt


def test_clone_get_set_params_and_string_labels():
    clf = DANNClassifier(hidden_layer_sizes=(8,), max_steps=150, lambda_max=0.5)
    c2 = clone(clf)
    assert c2.get_params() == clf.get_params()
    c2.set_params(lambda_max=0.1)
    assert c2.lambda_max == 0.1 and clf.lambda_max == 0.5
    Xs, ys, Xt, yt = _data()
    clf.fit(Xs, ys, X_target=Xt)
    assert set(clf.classes_) == {"neg", "pos"}
    p = clf.predict_proba(Xt)
    assert p.shape == (len(Xt), 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert clf.score(Xs, ys) > 0.9
    assert set(clf.predict(Xt)) <= {"neg", "pos"}


def test_fit_leaves_the_callers_random_streams_and_determinism_switch_as_they_were():
    import random

    import torch

    Xs, ys, Xt, _ = _data()
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        for seed in (1, 2):  # the same draws with and without a fit in between
            random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
            expected = (random.random(), np.random.rand(), torch.rand(1).item())
            random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
            DANNClassifier(hidden_layer_sizes=(4,), max_steps=5, random_state=7).fit(Xs, ys, X_target=Xt)
            assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
            assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(was)


def test_pipeline_with_target_rows_marked_minus_one():
    # the README's pipeline form: target rows inside X, marked by the documented switch
    Xs, ys, Xt, yt = _data()
    y_num = (ys == "pos").astype(int)
    X_all = np.vstack([Xs, Xt])
    y_all = np.r_[y_num, -np.ones(len(Xt))]
    pipe = make_pipeline(StandardScaler(),
                         DANNClassifier(hidden_layer_sizes=(8,), max_steps=150, unlabelled=-1))
    pipe.fit(X_all, y_all)
    assert pipe[-1].method_ == "dann"
    assert pipe.score(Xt, (yt == "pos").astype(int)) > 0.7
    assert list(pipe[-1].classes_) == [0, 1]  # -1 is not a class
    # string labels with a string marker
    clf = DANNClassifier(hidden_layer_sizes=(8,), max_steps=150, unlabelled="?")
    clf.fit(X_all, np.r_[ys, ["?"] * len(Xt)])
    assert list(clf.classes_) == ["neg", "pos"] and clf.method_ == "dann"


def test_minus_one_is_a_real_class_by_default():
    # {-1, +1} and {-1, 0, 1}: without the marker switch, -1 is a class like any other
    Xs, ys, _, _ = _data()
    y_pm = np.where(ys == "pos", 1, -1)
    clf = DANNClassifier(hidden_layer_sizes=(8,), max_steps=150, method="erm").fit(Xs, y_pm)
    assert list(clf.classes_) == [-1, 1] and clf.score(Xs, y_pm) > 0.9
    y3 = np.where(Xs[:, 1] > 1, 0, y_pm)
    clf3 = DANNClassifier(hidden_layer_sizes=(8,), max_steps=150, method="erm").fit(Xs, y3)
    assert list(clf3.classes_) == [-1, 0, 1] and clf3.predict_proba(Xs).shape == (len(Xs), 3)
    # and the marker, when set but absent from y, is reported rather than silently unused
    with pytest.warns(NoTargetWarning, match="unlabelled=-1"):
        DANNClassifier(max_steps=2, method="erm", unlabelled=-1).fit(Xs, ys)


def test_fit_without_target_rows_trains_source_only_with_a_warning():
    Xs, ys, Xt, _ = _data(n=120)
    with pytest.warns(NoTargetWarning, match="source-only"):
        clf = DANNClassifier(hidden_layer_sizes=(8,), max_steps=60).fit(Xs, ys)
    erm = DANNClassifier(hidden_layer_sizes=(8,), max_steps=60, method="erm").fit(Xs, ys)
    assert clf.method_ == "erm" and erm.method_ == "erm"
    np.testing.assert_array_equal(clf.predict_proba(Xt), erm.predict_proba(Xt))
    assert DANNClassifier(max_steps=2).fit(Xs, ys, X_target=Xt).method_ == "dann"


def test_grid_search_on_the_pipeline_form_scores_labelled_rows_only():
    Xs, ys, Xt, _ = _data(n=150)
    X_all = np.vstack([Xs, Xt])
    y_all = np.r_[(ys == "pos").astype(int), -np.ones(len(Xt), dtype=int)]
    share = len(Xs) / len(X_all)  # the most a score that counts target rows as errors can reach
    pipe = make_pipeline(StandardScaler(),
                         DANNClassifier(hidden_layer_sizes=(8,), max_steps=100, unlabelled=-1))
    gs = GridSearchCV(pipe, {"dannclassifier__method": ["erm", "dann"]}, cv=3).fit(X_all, y_all)
    assert gs.best_score_ > max(share, 0.85)
    clf = gs.best_estimator_
    assert clf.score(X_all, y_all) == clf.score(Xs, y_all[: len(Xs)])
    with pytest.raises(DataError, match="nothing to score"):
        clf.score(Xt, -np.ones(len(Xt)))


def test_grid_search_over_method():
    Xs, ys, Xt, _ = _data(n=120)
    y = (ys == "pos").astype(int)
    gs = GridSearchCV(DANNClassifier(hidden_layer_sizes=(4,), max_steps=60),
                      {"method": ["erm", "dann"]}, cv=2)
    gs.fit(Xs, y, X_target=Xt)
    assert gs.best_params_["method"] in {"erm", "dann"}


def test_bad_input_errors():
    Xs, ys, Xt, _ = _data(n=20)
    with pytest.raises(DataError, match="X_target: X has 1 features"):
        DANNClassifier(max_steps=2).fit(Xs, ys, X_target=Xt[:, :1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        DANNClassifier(max_steps=2).fit(Xs, ys[:5], X_target=Xt)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        DANNClassifier().predict(Xs)
    with pytest.raises(DataError, match="NaN"):
        DANNClassifier(max_steps=2, unlabelled=np.nan).fit(Xs, ys, X_target=Xt)
    with pytest.raises(DataError, match="no labelled rows"):
        DANNClassifier(max_steps=2, unlabelled="neg").fit(Xs[ys == "neg"], ys[ys == "neg"])


def _bad(X, y, Xt):
    """The input-validation cases of issue 14, each as (fit args, predict input, error)."""
    nan = X.copy()
    nan[0, 0] = np.nan
    return {
        "sparse": ((sp.csr_matrix(X), y, Xt), None, "[Ss]parse"),
        "sparse_target": ((X, y, sp.csr_matrix(Xt)), None, "X_target: .*[Ss]parse"),
        "complex": ((X + 1j, y, Xt), None, "Complex data not supported"),
        "empty_rows": ((X[:0], y[:0], Xt), None, "0 sample"),
        "no_features": ((X[:, :0], y, Xt[:, :0]), None, "0 feature"),
        "nan_in_fit": ((nan, y, Xt), None, "NaN"),
        "nan_in_target": ((X, y, nan), None, "X_target: .*NaN"),
        "nan_in_predict": ((X, y, Xt), nan, "NaN"),
        "inf_in_predict": ((X, y, Xt), np.where(np.isnan(nan), np.inf, nan), "infinity"),
        "wrong_width_in_predict": ((X, y, Xt), X[:, :1], "X has 1 features, but DANNClassifier "
                                                         "is expecting 2 features"),
        "y_2d": ((X, np.c_[y, y], Xt), None, "y should be a 1d array"),
        "one_sample": ((X[:1], y[:1], Xt), None, "one class"),
        "strings_in_x": ((X.astype(str).astype(object) + "a", y, Xt), None,
                         "could not convert|argument must be"),
        "regression_target": ((X, X[:, 0], Xt), None, "Unknown label type: continuous"),
        "one_label": ((X, np.zeros(len(X), int), Xt), None, "one class"),
    }


@pytest.mark.parametrize("case", list(_bad(*_data(n=4)[:3])))
def test_input_validation(case):
    Xs, ys, Xt, _ = _data(n=30)
    args, predict_x, match = _bad(Xs, (ys == "pos").astype(int), Xt)[case]
    clf = DANNClassifier(hidden_layer_sizes=(4,), max_steps=3)
    with pytest.raises((TypeError, ValueError), match=match):  # TypeError: sparse input
        clf.fit(*args)
        clf.predict(predict_x)


def test_input_conversions_and_fitted_attributes():
    Xs, ys, Xt, _ = _data(n=30)
    y = (ys == "pos").astype(int)
    kw = dict(hidden_layer_sizes=(4,), max_steps=3)
    with pytest.warns(DataConversionWarning):  # a column vector y is accepted, with a warning
        col = DANNClassifier(**kw).fit(Xs, y[:, None], X_target=Xt)
    ref = DANNClassifier(**kw).fit(Xs, y, X_target=Xt)
    np.testing.assert_array_equal(col.predict_proba(Xt), ref.predict_proba(Xt))
    obj = DANNClassifier(**kw).fit(Xs.astype(object), y, X_target=Xt.astype(object))
    np.testing.assert_allclose(obj.predict_proba(Xt), ref.predict_proba(Xt), rtol=1e-6)
    one = DANNClassifier(**kw).fit(Xs[:, :1], y, X_target=Xt[:, :1])
    assert one.n_features_in_ == 1 and ref.n_features_in_ == 2
    assert list(ref.classes_) == [0, 1] and ref.predict(Xt).dtype == y.dtype


class _AdaptToX(DANNClassifier):
    """DANNClassifier with X itself as the target sample, so that scikit-learn's checks (which
    call ``fit(X, y)``) exercise the adversarial training path too."""

    def fit(self, X, y, X_target=None):
        return super().fit(X, y, X_target=X)


@pytest.mark.filterwarnings("ignore::gradversary.sklearn.NoTargetWarning")
@parametrize_with_checks([DANNClassifier(max_steps=50), DANNClassifier(max_steps=50, method="erm"),
                          _AdaptToX(max_steps=50)])
def test_sklearn_estimator_checks(estimator, check):
    # scikit-learn's own conformance checks (check_estimator), one test per check; without
    # target rows method="dann" trains source-only (NoTargetWarning, ignored here)
    check(estimator)
