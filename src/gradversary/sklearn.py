"""A scikit-learn estimator for DANN on feature vectors (``pip install gradversary[sklearn]``).

Two ways to give the unlabelled target data:

- ``fit(X, y, X_target=Xt)``: X, y are the labelled source;
- ``fit(X, y)`` with target rows inside X, marked in y by the value given as the ``unlabelled``
  parameter (off by default, so that every value of y is a real class). This is the form to use
  in a :class:`~sklearn.pipeline.Pipeline`, where a scaler must see (and transform) the target
  rows too: ``make_pipeline(StandardScaler(), DANNClassifier(unlabelled=-1)).fit(
  np.vstack([Xs, Xt]), np.r_[ys, -np.ones(len(Xt))])``. :meth:`DANNClassifier.score` skips the
  marked rows, so a grid search on that data scores the labelled (source) rows only.

Without any target rows, DANN has nothing to adapt to: ``fit`` then trains source-only (as
``method="erm"``), says so with a :class:`NoTargetWarning`, and records it in ``method_``.

Example:
    >>> import numpy as np
    >>> from gradversary.sklearn import DANNClassifier
    >>> rng = np.random.default_rng(0)
    >>> Xs = rng.normal(size=(200, 2)); ys = (Xs[:, 0] > 0).astype(int)
    >>> Xt = Xs + [0.5, 0.5]
    >>> clf = DANNClassifier(max_steps=200, random_state=0).fit(Xs, ys, X_target=Xt)
    >>> clf.predict(Xt[:3]).shape
    (3,)

    The pipeline form, target rows marked -1 (a class like any other without ``unlabelled``):

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> pipe = make_pipeline(StandardScaler(), DANNClassifier(max_steps=200, unlabelled=-1))
    >>> X, y = np.vstack([Xs, Xt]), np.r_[ys, -np.ones(len(Xt), dtype=int)]
    >>> pipe.fit(X, y)[-1].classes_
    array([0, 1])
    >>> pipe.score(X, y) == pipe.score(Xs, ys)  # score skips the marked rows
    True
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .data.task import DATask, DomainData
from .engine.config import resolve_config
from .engine.seed import global_state_preserved
from .engine.trainer import Trainer
from .errors import DataError

try:  # scikit-learn is an optional extra
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.metrics import accuracy_score
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "gradversary.sklearn needs scikit-learn>=1.6: pip install 'gradversary[sklearn]'"
    ) from e

__all__ = ["DANNClassifier", "NoTargetWarning"]

#: dtypes kept as they are by validation; anything else (ints, objects of numbers) becomes float64
_FLOAT = (np.float64, np.float32)


class NoTargetWarning(UserWarning):
    """``fit`` found no unlabelled target rows (or none carrying the ``unlabelled`` marker)."""


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
        unlabelled: the value of y that marks a row of X as an unlabelled target row (for
            example ``-1``); ``None`` (default): no marker, every row of X is labelled source
            and every value of y is a class. Marked rows are never a class, and :meth:`score`
            skips them.

    Attributes:
        classes_: the class labels (K,), sorted.
        n_features_in_: F; ``feature_names_in_`` too when X has string column names.
        method_: the method actually trained: ``"erm"`` when ``method="dann"`` found no target
            rows (with a :class:`NoTargetWarning`).
        model_: the trained network (a torch module, eval mode), logits (N, F) -> (N, K).

    Shape:
        X: (N, F); y: (N,) class labels (any sortable values) or the ``unlabelled`` marker;
        X_target: (M, F).
    """

    def __init__(self, hidden_layer_sizes=(100,), method="dann", lambda_max=1.0, gamma=10.0,
                 disc_hidden=(100,), lr=0.01, momentum=0.9, weight_decay=0.0, batch_size=128,
                 max_steps=2000, random_state=0, unlabelled=None):
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
        self.unlabelled = unlabelled

    def _config(self, method_name: str):
        method = {"name": method_name}
        if method_name == "dann":
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

    def _marked(self, y: np.ndarray) -> np.ndarray:
        """Rows of y that carry the ``unlabelled`` marker. Shape: y (N,) -> bool (N,)."""
        if self.unlabelled is None:
            return np.zeros(len(y), dtype=bool)
        # a marker of another type than y (a string among numbers) matches no row
        mask = np.asarray(y == self.unlabelled)
        return mask if mask.shape == y.shape else np.zeros(len(y), dtype=bool)

    def fit(self, X, y, X_target=None):
        """Train on labelled source and unlabelled target; returns self.

        Args:
            X: (N, F) inputs; with ``unlabelled`` set, the rows whose label equals it are
                target rows.
            y: (N,) class labels (or the marker).
            X_target: (M, F) further unlabelled target rows, or ``None``.

        Raises:
            TypeError: sparse input (densify it first).
            ValueError (or :class:`~gradversary.errors.DataError`, a ValueError): complex,
                non-finite, empty or badly shaped input; a target that is not a class label
                (e.g. continuous); fewer than two classes among the labelled rows.
        """
        if isinstance(self.unlabelled, float) and np.isnan(self.unlabelled):
            raise DataError("unlabelled=nan cannot mark rows (scikit-learn refuses NaN in y); "
                            "use a value such as -1 or 'unlabelled'")
        X, y = validate_data(self, X, y, accept_sparse=False, dtype=_FLOAT)
        marked = self._marked(y)
        X_s, y_s = X[~marked], y[~marked]
        if len(y_s) == 0:
            raise DataError(f"no labelled rows: every label in y equals unlabelled="
                            f"{self.unlabelled!r}")
        check_classification_targets(y_s)
        self.classes_, y_idx = np.unique(y_s, return_inverse=True)
        if len(self.classes_) < 2:
            raise DataError(f"y has one class ({self.classes_[0]!r}) among its labelled rows; "
                            f"a classifier needs at least two")
        targets = [X[marked]]
        if X_target is not None:
            try:
                targets.append(validate_data(self, X_target, reset=False, accept_sparse=False,
                                             dtype=_FLOAT))
            except (TypeError, ValueError) as e:  # name the argument in sklearn's message
                raise (TypeError if isinstance(e, TypeError) else DataError)(f"X_target: {e}") from e
        X_t = np.concatenate(targets)
        self.method_ = self._method_for(len(X_t))
        task = DATask(DomainData(torch.tensor(X_s, dtype=torch.float32),
                                 torch.from_numpy(y_idx.astype(np.int64)), "source"),
                      # ERM never reads the target; DATask still wants one row
                      DomainData(torch.tensor(X_t if len(X_t) else X_s[:1], dtype=torch.float32),
                                 None, "target"),
                      num_classes=len(self.classes_), name="sklearn")
        with global_state_preserved():  # the run seeds itself; the caller's RNGs stay as they were
            trainer = Trainer(self._config(self.method_), task=task, persist=False)
            trainer.fit()
        self.model_ = trainer.method.model.eval()
        return self

    def _method_for(self, n_target: int) -> str:
        """The method to train, warning when the target rows that DANN needs are missing."""
        if n_target:
            return self.method
        why = (f"no row of y carries the marker unlabelled={self.unlabelled!r}"
               if self.unlabelled is not None else "no X_target and unlabelled=None")
        if self.method == "dann":
            warnings.warn(f"{why}: there are no target rows, so DANN trains source-only "
                          f"(as method='erm')", NoTargetWarning, stacklevel=3)
            return "erm"
        if self.unlabelled is not None:
            warnings.warn(why, NoTargetWarning, stacklevel=3)
        return self.method

    def _logits(self, X) -> torch.Tensor:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, accept_sparse=False, dtype=_FLOAT)
        with torch.no_grad():
            return self.model_(torch.tensor(X, dtype=torch.float32))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (N, K), columns in the order of ``classes_``."""
        return self._logits(X).softmax(-1).numpy()

    def predict(self, X) -> np.ndarray:
        """Predicted labels (N,), from ``classes_``."""
        idx = self._logits(X).argmax(-1).numpy()
        return self.classes_[idx]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy on the labelled rows of (X, y): rows marked ``unlabelled`` are skipped, so
        that cross-validation on the pipeline form scores the source rows only.

        Shape: X (N, F); y (N,); sample_weight (N,) or ``None``.
        """
        y = np.asarray(y)
        keep = ~self._marked(y) if y.ndim == 1 else np.ones(len(y), dtype=bool)
        if not keep.any():
            raise DataError(f"nothing to score: every label in y equals unlabelled="
                            f"{self.unlabelled!r}")
        pred = self.predict(X)
        w = None if sample_weight is None else np.asarray(sample_weight)[keep]
        return float(accuracy_score(y[keep], pred[keep], sample_weight=w))
