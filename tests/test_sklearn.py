import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn (the [sklearn] extra) is not installed")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from gradversary.errors import DataError  # noqa: E402
from gradversary.sklearn import DANNClassifier  # noqa: E402


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


def test_pipeline_with_target_rows_marked_minus_one():
    Xs, ys, Xt, yt = _data()
    y_num = (ys == "pos").astype(int)
    X_all = np.vstack([Xs, Xt])
    y_all = np.r_[y_num, -np.ones(len(Xt), dtype=int)]
    pipe = make_pipeline(StandardScaler(), DANNClassifier(hidden_layer_sizes=(8,), max_steps=150))
    pipe.fit(X_all, y_all)
    assert pipe.score(Xt, (yt == "pos").astype(int)) > 0.7
    assert list(pipe[-1].classes_) == [0, 1]  # -1 is not a class


def test_grid_search_over_method():
    Xs, ys, Xt, _ = _data(n=120)
    y = (ys == "pos").astype(int)
    gs = GridSearchCV(DANNClassifier(hidden_layer_sizes=(4,), max_steps=60),
                      {"method": ["erm", "dann"]}, cv=2)
    gs.fit(Xs, y, X_target=Xt)
    assert gs.best_params_["method"] in {"erm", "dann"}


def test_bad_input_errors():
    Xs, ys, Xt, _ = _data(n=20)
    with pytest.raises(DataError, match="needs unlabelled target"):
        DANNClassifier(max_steps=2).fit(Xs, ys)
    with pytest.raises(DataError, match="X_target must be"):
        DANNClassifier(max_steps=2).fit(Xs, ys, X_target=Xt[:, :1])
    with pytest.raises(DataError, match="y must have shape"):
        DANNClassifier(max_steps=2).fit(Xs, ys[:5], X_target=Xt)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        DANNClassifier().predict(Xs)
