"""scikit-learn-style estimators around :class:`~dlbasics.models.mlp.MLP` and
:func:`~dlbasics.models.training.train`.

:class:`MLPClassifier` and :class:`MLPRegressor` follow the scikit-learn estimator contract:
constructor arguments are stored as given (checked in :meth:`fit`), ``fit`` starts afresh,
``partial_fit`` continues (the network *and* the optimizer state), and fitted attributes end with
an underscore. When scikit-learn is importable they derive from its ``BaseEstimator`` and mixins
and validate input with its ``validate_data``, so they work in pipelines, grid searches and
``clone`` and pass :func:`sklearn.utils.estimator_checks.check_estimator`. Without scikit-learn
a small NumPy fallback provides the same API (``get_params``/``set_params``, ``score``), so the
package does not depend on it.

Training stops early on a training-loss plateau as in scikit-learn: after each epoch, an epoch
whose loss is not below ``best_loss - tol`` counts as "no improvement"; more than
``n_iter_no_change`` such epochs in a row stop :meth:`fit` (a
:func:`~dlbasics.models.training.train` callback, :class:`LossPlateau`). Reaching ``max_epochs``
first issues a ``ConvergenceWarning``.
"""

from __future__ import annotations

import inspect
import io
import numbers
import warnings

import numpy as np

from ..kernels import _checks
from .mlp import MLP
from .optimizers import OPTIMIZERS, make_optimizer
from .training import train

__all__ = ["MLPClassifier", "MLPRegressor", "LossPlateau", "ConvergenceWarning",
           "NotFittedError", "HAVE_SKLEARN"]

#: Input dtypes accepted by the validation (anything else is converted to the first).
_FLOAT_DTYPES = (np.float64, np.float32)

# ---------------------------------------------------------------------------------------------
# scikit-learn compatibility layer (scikit-learn when importable, a NumPy fallback otherwise)
# ---------------------------------------------------------------------------------------------

try:  # pragma: no cover - exercised by whichever environment runs the tests
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning, NotFittedError
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted

    try:
        from sklearn.utils.validation import validate_data as _sk_validate_data
    except ImportError:  # scikit-learn < 1.6

        def _sk_validate_data(estimator, *args, **kwargs):
            return estimator._validate_data(*args, **kwargs)

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover
    HAVE_SKLEARN = False

    class ConvergenceWarning(UserWarning):
        """Training stopped before its convergence criterion was met."""

    class NotFittedError(ValueError, AttributeError):
        """An estimator was used before ``fit``."""

    class BaseEstimator:
        """Minimal ``get_params``/``set_params``/``__repr__`` of scikit-learn's BaseEstimator."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(
                p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            )

        def get_params(self, deep=True):
            """Constructor arguments as a dict (with ``deep``, nested ``a__b`` entries too)."""
            out = {}
            for name in self._get_param_names():
                value = getattr(self, name)
                if deep and hasattr(value, "get_params") and not isinstance(value, type):
                    out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
                out[name] = value
            return out

        def set_params(self, **params):
            """Set constructor arguments (``a__b`` sets ``b`` of the nested object ``a``)."""
            valid = self.get_params(deep=True)
            nested = {}
            for key, value in params.items():
                name, _, sub = key.partition("__")
                if name not in valid:
                    raise ValueError(
                        f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                        f"Valid parameters are: {sorted(self._get_param_names())!r}."
                    )
                if sub:
                    nested.setdefault(name, {})[sub] = value
                else:
                    setattr(self, name, value)
            for name, sub_params in nested.items():
                getattr(self, name).set_params(**sub_params)
            return self

        def __repr__(self):
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
            return f"{type(self).__name__}({args})"

    class ClassifierMixin:
        """Adds ``score`` as the mean accuracy."""

        _estimator_type = "classifier"

        def score(self, X, y):
            """Mean accuracy of ``predict(X)`` against ``y``."""
            return float(np.mean(self.predict(X) == np.asarray(y)))

    class RegressorMixin:
        """Adds ``score`` as the coefficient of determination R^2 (outputs averaged)."""

        _estimator_type = "regressor"

        def score(self, X, y):
            """R^2 of ``predict(X)`` against ``y``, averaged uniformly over outputs."""
            y = np.asarray(y, dtype=np.float64)
            pred = np.asarray(self.predict(X), dtype=np.float64).reshape(y.shape)
            y2 = y.reshape(len(y), -1)
            p2 = pred.reshape(len(y), -1)
            ss_res = ((y2 - p2) ** 2).sum(axis=0)
            ss_tot = ((y2 - y2.mean(axis=0)) ** 2).sum(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot,
                              np.where(ss_res > 0, 0.0, 1.0))
            return float(r2.mean())

    def check_is_fitted(estimator):
        """Raise :class:`NotFittedError` unless ``estimator`` has a fitted (``x_``) attribute."""
        if not any(k.endswith("_") and not k.startswith("__") for k in vars(estimator)):
            raise NotFittedError(
                f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def type_of_target(y, input_name="y"):
        """Coarse scikit-learn-like target type: binary, multiclass or continuous."""
        y = np.asarray(y)
        if y.ndim > 1 and y.shape[1] > 1:
            return "multiclass-multioutput"
        y = y.ravel()
        if y.dtype.kind == "f" and np.any(y != np.round(y)):
            return "continuous"
        return "binary" if len(np.unique(y)) <= 2 else "multiclass"

    def check_classification_targets(y):
        """Reject continuous targets (``ValueError``: unknown label type)."""
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"Unknown label type: {kind}")


def _numpy_array(X, name, ensure_2d):
    """Fallback conversion: reject sparse, object that is not numeric, complex, non-finite."""
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError(f"{name} is a sparse matrix; dense data is required (use X.toarray())")
    A = np.asarray(X)
    if A.dtype.kind == "c":
        raise ValueError(f"{name}: complex data not supported")
    if A.dtype.kind not in "fiub":
        try:
            A = A.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be numeric, got dtype {A.dtype}") from err
    if ensure_2d and A.ndim != 2:
        raise ValueError(
            f"Expected 2D array for {name}, got {A.ndim}D array of shape {A.shape}; reshape "
            "your data with X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a "
            "single sample"
        )
    if A.shape[0] < 1 or (A.ndim == 2 and A.shape[1] < 1):
        raise ValueError(f"{name} must have at least one sample and one feature, got {A.shape}")
    if A.dtype.kind == "f" and not np.isfinite(A).all():
        raise ValueError(f"Input {name} contains NaN or infinity")
    return A


def _fallback_validate(estimator, X, y, reset, multi_output, y_numeric):
    if X is None:
        raise ValueError("X must not be None")
    X = _numpy_array(X, "X", ensure_2d=True)
    if X.dtype.kind in "iub":
        X = X.astype(np.float64)
    n_features = X.shape[1]
    if reset:
        estimator.n_features_in_ = n_features
    elif n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    if isinstance(y, str) and y == "no_validation":
        return X
    if y is None:
        raise ValueError(
            f"This {type(estimator).__name__} estimator requires y to be passed, but the "
            "target y is None."
        )
    y = np.asarray(y)
    if y.dtype.kind == "c":
        raise ValueError("y: complex data not supported")
    if not multi_output:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}")
    elif y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: "
            f"[{X.shape[0]}, {y.shape[0]}]"
        )
    if y_numeric or y.dtype.kind == "f":
        if y.dtype.kind not in "fiub":
            y = _numpy_array(y, "y", ensure_2d=False)
        y = y.astype(np.float64) if y_numeric else y
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity")
    return X, y


def validate(estimator, X, y="no_validation", reset=True, multi_output=False, y_numeric=False):
    """Convert and check ``X`` (and ``y``) the scikit-learn way; set/check ``n_features_in_``.

    Uses scikit-learn's ``validate_data`` when available, a NumPy fallback otherwise. ``X``
    comes back as a float32/float64 2-D array (other dtypes become float64), finite, dense.

    Parameters
    ----------
    estimator : estimator
        Receives ``n_features_in_`` when ``reset`` (and, with scikit-learn,
        ``feature_names_in_``); checked against it otherwise.
    X : array-like of shape (n_samples, n_features)
    y : array-like or "no_validation", default="no_validation"
        Targets; ``None`` is an error for a supervised estimator.
    reset : bool, default=True
        True in ``fit`` (and a first ``partial_fit``), False when predicting.
    multi_output : bool, default=False
        Allow 2-D ``y``.
    y_numeric : bool, default=False
        Convert ``y`` to float64 and require it finite.
    """
    if HAVE_SKLEARN:
        if isinstance(y, str) and y == "no_validation":
            return _sk_validate_data(estimator, X, reset=reset, dtype=_FLOAT_DTYPES)
        return _sk_validate_data(estimator, X, y, reset=reset, dtype=_FLOAT_DTYPES,
                                 multi_output=multi_output, y_numeric=y_numeric)
    return _fallback_validate(estimator, X, y, reset, multi_output, y_numeric)


def as_work_array(a, dtype):
    """``a`` as a C-contiguous, *writable* array of ``dtype`` (copied only when needed).

    Read-only inputs (e.g. memory maps) are copied so the compiled kernels always see the one
    array type they were compiled (and cached) for.
    """
    return np.require(a, dtype=dtype, requirements=["C_CONTIGUOUS", "WRITEABLE"])


def seed_from(random_state, name="random_state"):
    """An integer seed in ``[0, 2**32)`` from ``None``, an int, a RandomState or a Generator."""
    if random_state is None:
        return int(np.random.default_rng().integers(2**32))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**32 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**32))
    return _checks.integer(name, random_state, low=0, high=2**63 - 1)


# ---------------------------------------------------------------------------------------------
# early stopping
# ---------------------------------------------------------------------------------------------


class LossPlateau:
    """:func:`~dlbasics.models.training.train` callback: stop when the training loss stops
    improving.

    scikit-learn's rule: after epoch ``e`` with loss :math:`L_e`, if
    :math:`L_e > L_\\text{best} - \\text{tol}` the no-improvement count grows by one, otherwise it
    resets to zero; :math:`L_\\text{best} = \\min(L_\\text{best}, L_e)`. Training stops when the
    count exceeds ``n_iter_no_change``.

    Parameters
    ----------
    tol : float >= 0
    n_iter_no_change : int >= 1
    """

    __name__ = "loss_plateau"

    def __init__(self, tol=1e-4, n_iter_no_change=10):
        self.tol = _checks.real("tol", tol, low=0.0)
        self.n_iter_no_change = _checks.integer("n_iter_no_change", n_iter_no_change, low=1)
        self.best_loss = np.inf
        self.no_improvement = 0

    def __call__(self, epoch, history, model):
        loss = history.train_loss[-1]
        if loss > self.best_loss - self.tol:
            self.no_improvement += 1
        else:
            self.no_improvement = 0
        self.best_loss = min(self.best_loss, loss)
        return self.no_improvement > self.n_iter_no_change


# ---------------------------------------------------------------------------------------------
# the estimators
# ---------------------------------------------------------------------------------------------


def _hidden_sizes(value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            "hidden_layer_sizes must be an int or a sequence of ints like (16, 16), got "
            f"{value!r}"
        )
    return [_checks.integer("hidden_layer_sizes", v, low=1) for v in value]


def _float_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from err
    if dt not in _checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


class _BaseMLPEstimator(BaseEstimator):
    """Shared constructor, training and persistence of the MLP estimators."""

    def __init__(self, hidden_layer_sizes=(16,), activation="tanh", optimizer="adam",
                 learning_rate=1e-3, batch_size=32, max_epochs=200, keep_prob=None,
                 dropout="scale", init="glorot", dtype="float32", backend="cpu",
                 random_state=0, tol=1e-4, n_iter_no_change=10, shuffle=True, verbose=False,
                 momentum=0.9, weight_decay=1e-2):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.keep_prob = keep_prob
        self.dropout = dropout
        self.init = init
        self.dtype = dtype
        self.backend = backend
        self.random_state = random_state
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.verbose = verbose
        self.momentum = momentum
        self.weight_decay = weight_decay

    # -- subclass hooks ------------------------------------------------------------------------
    _output = "identity"
    _loss = "squared"

    def _head(self, n_outputs):
        """``(output activation, loss name)`` for ``n_outputs`` network outputs."""
        return self._output, self._loss

    # -- construction --------------------------------------------------------------------------
    def _make_optimizer(self):
        name = self.optimizer
        _checks.choice("optimizer", name, OPTIMIZERS)
        lr = _checks.real("learning_rate", self.learning_rate, low=0.0, low_open=True)
        hyper = {"lr": lr}
        if name in ("momentum", "nesterov"):
            hyper["momentum"] = self.momentum
        elif name == "adamw":
            hyper["weight_decay"] = self.weight_decay
        return make_optimizer(name, **hyper)

    def _check_training_params(self):
        _checks.integer("max_epochs", self.max_epochs, low=1)
        if self.batch_size is not None:
            _checks.integer("batch_size", self.batch_size, low=1)
        _checks.real("tol", self.tol, low=0.0)
        _checks.integer("n_iter_no_change", self.n_iter_no_change, low=1)

    def _initialize(self, n_features, n_outputs):
        """Build ``model_`` and ``optimizer_`` and reset the training record."""
        self._check_training_params()
        sizes = [n_features, *_hidden_sizes(self.hidden_layer_sizes), n_outputs]
        output, loss = self._head(n_outputs)
        self._seed = seed_from(self.random_state)
        self.optimizer_ = self._make_optimizer()
        self.model_ = MLP(sizes, activation=self.activation, output=output, loss=loss,
                          keep_prob=self.keep_prob, dropout=self.dropout, init=self.init,
                          dtype=_float_dtype(self.dtype), backend=self.backend,
                          seed=self._seed)
        self.optimizer_state_ = None
        self.loss_curve_ = []
        self.n_iter_ = 0
        self.history_ = None

    def _train(self, X, T, epochs, early_stopping):
        """Run ``epochs`` epochs of :func:`train` from the current model and optimizer state."""
        n = X.shape[0]
        batch = n if self.batch_size is None else min(int(self.batch_size), n)
        # One shuffling seed per (random_state, epochs done): fit is repeatable, and successive
        # partial_fit calls do not replay the same permutation.
        seed = int(np.random.SeedSequence([self._seed, self.n_iter_]).generate_state(1)[0])
        callbacks = [LossPlateau(self.tol, self.n_iter_no_change)] if early_stopping else []
        hist = train(self.model_, X, T, self.optimizer_, batch_size=batch, epochs=epochs,
                     shuffle=bool(self.shuffle), seed=seed, callbacks=callbacks,
                     progress=bool(self.verbose), state=self.optimizer_state_)
        self.optimizer_state_ = hist.state
        self.history_ = hist
        self.loss_curve_.extend(float(v) for v in hist.train_loss)
        self.n_iter_ += hist.epochs
        if hist.diverged:
            raise ValueError(
                f"training diverged: the loss became non-finite in epoch {self.n_iter_}; "
                "lower learning_rate or standardise X"
            )
        if early_stopping and hist.stopped_by is None:
            warnings.warn(
                f"{type(self).__name__}: max_epochs ({epochs}) reached and the training loss "
                "has not converged yet (raise max_epochs or learning_rate)",
                ConvergenceWarning, stacklevel=3,
            )

    def _forward(self, X):
        """Network outputs (float64) for validated ``X``."""
        check_is_fitted(self)
        X = validate(self, X, reset=False)
        X = as_work_array(X, self.model_.dtype)
        return self.model_.forward(X).astype(np.float64)

    # -- pickling: the MLP travels as its own .npz bytes (MLP.save / MLP.load) -----------------
    def __getstate__(self):
        parent = getattr(super(), "__getstate__", None)
        state = dict(parent() if parent is not None else self.__dict__)
        model = state.get("model_")
        if isinstance(model, MLP):
            buf = io.BytesIO()
            model.save(buf)
            state["model_"] = _SavedMLP(buf.getvalue())
        return state

    def __setstate__(self, state):
        state = dict(state)
        saved = state.get("model_")
        if isinstance(saved, _SavedMLP):
            state["model_"] = MLP.load(io.BytesIO(saved.data))
        opt_state = state.get("optimizer_state_")
        if opt_state is not None:  # fresh writable slots (unpickling may give read-only ones)
            state["optimizer_state_"] = opt_state._replace(**{
                f: np.array(getattr(opt_state, f)) for f in opt_state._fields[1:]
            })
        parent = getattr(super(), "__setstate__", None)
        if parent is not None:
            parent(state)
        else:
            self.__dict__.update(state)


class _SavedMLP:
    """An :class:`MLP` serialised by :meth:`MLP.save` (used while pickling an estimator)."""

    def __init__(self, data):
        self.data = data


class MLPClassifier(ClassifierMixin, _BaseMLPEstimator):
    """Multi-layer perceptron classifier trained by the suite's compiled training loop.

    Two classes: one sigmoid output and binary cross-entropy; more: softmax outputs and
    cross-entropy on integer labels. Labels may be any sortable values (``classes_``).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(16,)
        Widths of the hidden layers (``()`` gives logistic/softmax regression).
    activation : str, default="tanh"
        Hidden activation (see :data:`dlbasics.kernels.activations.ACTIVATIONS`).
    optimizer : {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"}, \
default="adam"
    learning_rate : float > 0, default=1e-3
    batch_size : int or None, default=32
        Mini-batch size, clipped to the number of samples; ``None`` is full batch.
    max_epochs : int >= 1, default=200
    keep_prob : float or sequence of float, optional
        Dropout keep probability (see :class:`~dlbasics.models.mlp.MLP`).
    dropout : {"scale", "inverted"}, default="scale"
    init : {"glorot", "he"}, default="glorot"
    dtype : {"float32", "float64"}, default="float32"
    backend : {"cpu", "numpy", "cuda"}, default="cpu"
    random_state : int, RandomState, Generator or None, default=0
        Seeds the initialisation, the dropout masks and the shuffling.
    tol : float >= 0, default=1e-4
    n_iter_no_change : int >= 1, default=10
        Early stopping on a training-loss plateau (see :class:`LossPlateau`).
    shuffle : bool, default=True
    verbose : bool, default=False
        Show a progress bar over epochs.
    momentum : float in [0, 1), default=0.9
        Used by ``"momentum"`` and ``"nesterov"``.
    weight_decay : float >= 0, default=1e-2
        Used by ``"adamw"``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    model_ : MLP
    optimizer_ : Optimizer
    optimizer_state_ : NamedTuple
        Optimizer state that :meth:`partial_fit` continues from.
    loss_curve_ : list of float
        Training loss per epoch over all ``fit``/``partial_fit`` calls since the last ``fit``.
    n_iter_ : int
        Epochs run since the last ``fit``.
    history_ : History
        Record of the last ``fit`` or ``partial_fit`` call.
    """

    def _head(self, n_outputs):
        if len(self.classes_) == 2:
            return "sigmoid", "binary_cross_entropy"
        return "softmax", "cross_entropy"

    def _targets(self, y):
        """Class indices of ``y`` as the network's training targets."""
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[idx], y):
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            raise ValueError(
                f"y contains labels not in classes_ {self.classes_.tolist()!r}: "
                f"{unknown.tolist()!r}"
            )
        if len(self.classes_) == 2:
            return as_work_array(idx, self.model_.dtype)
        return as_work_array(idx, np.int64)

    def _check_classes(self, classes):
        classes = np.unique(np.asarray(classes))
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes, got {len(classes)} class: "
                f"{classes.tolist()!r}"
            )
        return classes

    def fit(self, X, y):
        """Train a freshly initialised network for up to ``max_epochs`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self
        """
        X, y = validate(self, X, y, reset=True)
        check_classification_targets(y)
        self.classes_ = self._check_classes(y)
        self._fit_start(X, y)
        self._train(as_work_array(X, self.model_.dtype), self._targets(y), self.max_epochs,
                    early_stopping=True)
        return self

    def _fit_start(self, X, y):
        k = len(self.classes_)
        self._initialize(X.shape[1], 1 if k == 2 else k)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, continuing from the current network and optimizer state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), optional
            All class labels; required on the first call (``y`` may not show them all).

        Returns
        -------
        self
        """
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = validate(self, X, y, reset=first)
        check_classification_targets(y)
        if first:
            self.classes_ = self._check_classes(classes)
            self._fit_start(X, y)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={np.unique(classes).tolist()!r} is not the same as on the first call "
                f"to partial_fit, was {self.classes_.tolist()!r}"
            )
        self._train(as_work_array(X, self.model_.dtype), self._targets(y), 1,
                    early_stopping=False)
        return self

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float64
            Rows sum to one; columns follow ``classes_``.
        """
        out = self._forward(X)
        if len(self.classes_) == 2:
            p = out[:, 0]
            return np.column_stack([1.0 - p, p])
        return out / out.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba` (``-inf`` where a probability is 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Most probable class per sample (``classes_[argmax(predict_proba(X))]``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        best = np.argmax(self.predict_proba(X), axis=1)  # checks fitted before classes_
        return self.classes_[best]


class MLPRegressor(RegressorMixin, _BaseMLPEstimator):
    """Multi-layer perceptron regressor: identity outputs and the squared loss.

    Same parameters as :class:`MLPClassifier`. ``y`` may be 1-D (predictions are 1-D) or 2-D
    ``(n_samples, n_outputs)``; :meth:`score` is R^2.

    Attributes
    ----------
    n_outputs_ : int
    n_features_in_ : int
    model_, optimizer_, optimizer_state_, loss_curve_, n_iter_, history_
        As for :class:`MLPClassifier`.
    """

    def _prepare(self, X, y, reset):
        """Validated ``X`` and 2-D ``y``, and whether ``y`` came 1-D."""
        X, y = validate(self, X, y, reset=reset, multi_output=True, y_numeric=True)
        if y.ndim == 1:
            return X, y.reshape(-1, 1), True
        return X, y, False

    def _targets(self, y):
        if y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} outputs, but the model has {self.n_outputs_}")
        return as_work_array(y, self.model_.dtype)

    def fit(self, X, y):
        """Train a freshly initialised network for up to ``max_epochs`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        X, y, y_1d = self._prepare(X, y, reset=True)
        self._fit_start(X, y, y_1d)
        self._train(as_work_array(X, self.model_.dtype), self._targets(y), self.max_epochs,
                    early_stopping=True)
        return self

    def _fit_start(self, X, y, y_1d):
        self.n_outputs_ = y.shape[1]
        self._y_1d = y_1d
        self._initialize(X.shape[1], self.n_outputs_)

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, continuing from the current network and optimizer state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        first = not hasattr(self, "model_")
        X, y, y_1d = self._prepare(X, y, reset=first)
        if first:
            self._fit_start(X, y, y_1d)
        self._train(as_work_array(X, self.model_.dtype), self._targets(y), 1,
                    early_stopping=False)
        return self

    def predict(self, X):
        """Network outputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs), float64
            1-D when the model was fitted on 1-D ``y``.
        """
        out = self._forward(X)
        return out[:, 0] if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}
