"""A scikit-learn estimator for DANN on feature vectors (``pip install gradversary[sklearn]``).

Two ways to give the unlabelled target data:

- ``fit(X, y, X_target=Xt)``: X, y are the labelled source;
- ``fit(X, y)`` with target rows inside X and labelled ``-1`` in y. This is the form to use in a
  :class:`~sklearn.pipeline.Pipeline`, where a scaler must see (and transform) the target rows
  too: ``make_pipeline(StandardScaler(), DANNClassifier()).fit(np.vstack([Xs, Xt]),
  np.r_[ys, -np.ones(len(Xt))])``.

Example:
    >>> import numpy as np
    >>> from gradversary.sklearn import DANNClassifier
    >>> rng = np.random.default_rng(0)
    >>> Xs = rng.normal(size=(200, 2)); ys = (Xs[:, 0] > 0).astype(int)
    >>> Xt = Xs + [0.5, 0.5]
    >>> clf = DANNClassifier(max_steps=200, random_state=0).fit(Xs, ys, X_target=Xt)
    >>> clf.predict(Xt[:3]).shape
    (3,)
"""

from __future__ import annotations

import numpy as np
import torch

from .data.task import DATask, DomainData
from .engine.config import resolve_config
from .engine.trainer import Trainer
from .errors import DataError

try:  # scikit-learn is an optional extra
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils.validation import check_is_fitted
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gradversary.sklearn needs scikit-learn: pip install 'gradversary[sklearn]'"
    ) from e

__all__ = ["DANNClassifier"]


class DANNClassifier(ClassifierMixin, BaseEstimator):
    """Domain-adversarial MLP classifier (Ganin et al., JMLR 2016) with scikit-learn's API.

    Trains with gradversary's engine in memory (no files). With ``method="erm"`` it is the
    source-only network, so that both can be compared in one grid search.

    Args:
        hidden_layer_sizes: the feature extractor's hidden layers (the paper's shallow DANN:
            one layer of 50 or 100).
        method: ``"dann"`` or ``"erm"``.
        lambda_max: the final GRL coefficient (the ramp is lambda_max (2/(1+exp(-gamma p)) - 1)).
        gamma: the ramp's steepness.
        disc_hidden: the domain classifier's hidden layers.
        lr, momentum, weight_decay: SGD settings; the rate decays as lr / (1 + 10 p)^0.75.
        batch_size: examples per step (half source, half target for DANN).
        max_steps: optimisation steps.
        random_state: seed.

    Shape:
        X: (N, F); y: (N,) class labels (any hashable values; -1 marks target rows when
        ``X_target`` is not given); X_target: (M, F).
    """

    def __init__(self, hidden_layer_sizes=(100,), method="dann", lambda_max=1.0, gamma=10.0,
                 disc_hidden=(100,), lr=0.01, momentum=0.9, weight_decay=0.0, batch_size=128,
                 max_steps=2000, random_state=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.method = method
        self.lambda_max = lambda_max
        self.gamma = gamma
        self.disc_hidden = disc_hidden
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.random_state = random_state

    def _config(self):
        method = {"name": self.method}
        if self.method == "dann":
            method.update(disc_hidden=list(self.disc_hidden), lambda_schedule={
                "name": "dann_lambda", "gamma": float(self.gamma), "max": float(self.lambda_max)})
        return resolve_config({
            "method": method,
            "model": {"name": "mlp", "hidden": [int(h) for h in self.hidden_layer_sizes]},
            "data": {"name": "moons"},  # unused: the task is given directly
            "optim": {"name": "sgd", "lr": float(self.lr), "momentum": float(self.momentum),
                      "weight_decay": float(self.weight_decay)},
            "train": {"steps": int(self.max_steps), "batch_size": int(self.batch_size),
                      "eval_every": 0, "progress": False, "seed": int(self.random_state),
                      "log_every": max(1, int(self.max_steps) // 20)},
        })

    def fit(self, X, y, X_target=None):
        """Train on labelled source (X, y) and unlabelled target (``X_target`` or rows of X
        whose label is -1). Returns self."""
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        if X.ndim != 2:
            raise DataError(f"X must be 2-D (N, F), got shape {X.shape}")
        if y.shape != (X.shape[0],):
            raise DataError(f"y must have shape ({X.shape[0]},), got {y.shape}")
        if X_target is None:
            mask = y == -1
            X_target, X, y = X[mask], X[~mask], y[~mask]
        X_target = np.asarray(X_target, dtype=np.float32)
        if self.method == "dann" and len(X_target) == 0:
            raise DataError("DANN needs unlabelled target rows: pass X_target or label them -1 in y")
        if X_target.ndim != 2 or (len(X_target) and X_target.shape[1] != X.shape[1]):
            raise DataError(f"X_target must be (M, {X.shape[1]}), got shape {X_target.shape}")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise DataError("y needs at least two classes")
        self.n_features_in_ = X.shape[1]
        target = X_target if len(X_target) else X[:1]
        task = DATask(DomainData(torch.from_numpy(X), torch.from_numpy(y_idx.astype(np.int64)), "source"),
                      DomainData(torch.from_numpy(target), None, "target"),
                      num_classes=max(len(self.classes_), 2), name="sklearn")
        trainer = Trainer(self._config(), task=task, persist=False)
        trainer.fit()
        self.model_ = trainer.method.model.eval()
        return self

    def _logits(self, X) -> torch.Tensor:
        check_is_fitted(self, "model_")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise DataError(f"X must be (N, {self.n_features_in_}), got shape {X.shape}")
        with torch.no_grad():
            return self.model_(torch.from_numpy(X))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (N, K), columns in the order of ``classes_``."""
        return self._logits(X).softmax(-1).numpy()[:, : len(self.classes_)]

    def predict(self, X) -> np.ndarray:
        """Predicted labels (N,), from ``classes_``."""
        idx = self._logits(X).argmax(-1).numpy()
        return self.classes_[idx]
