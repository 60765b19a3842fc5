"""scikit-learn's MLPClassifier and MLPRegressor on the suite's compiled training loop.

:class:`MLPClassifier` and :class:`MLPRegressor` are drop-ins for
``sklearn.neural_network.MLPClassifier`` and ``MLPRegressor``: the same parameters with the same
names, defaults and meaning (solvers ``"adam"``, ``"sgd"`` and ``"lbfgs"``, the L2 penalty
``alpha``, the learning-rate schedules, early stopping on a validation split, warm starts,
``partial_fit``) and the same fitted attributes (``coefs_``, ``intercepts_``, ``loss_curve_``,
...). For the same ``random_state`` they draw the same initial weights, validation split and
visiting orders as scikit-learn; the stochastic solvers run
:func:`~dlbasics.models.training.train` (whole epochs in one compiled call), L-BFGS runs
``scipy.optimize`` on the compiled loss and gradient. Our extras are keyword arguments at the
end: ``keep_prob`` and ``dropout`` (dropout), ``dtype`` (float32 by default) and ``backend``.

When scikit-learn is importable the estimators derive from its ``BaseEstimator`` and mixins
and validate input with its ``validate_data``, so they work in pipelines, grid searches and
``clone`` and pass :func:`sklearn.utils.estimator_checks.check_estimator`. Without
scikit-learn a small NumPy fallback provides the same API, so the package does not depend on
it.

``random_state_from``, ``validate`` and ``as_work_array`` are shared with
:class:`dlbasics.models.perceptron.Perceptron`.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import types
import warnings

import numpy as np

from ..kernels import _checks
from ..kernels.activations import ACTIVATIONS
from ._mt19937 import LegacyShuffler
from .mlp import BACKENDS, MLP
from .optimizers import SGD, Adam, Momentum, Nesterov
from .training import train, train_epochs

__all__ = ["MLPClassifier", "MLPRegressor", "ConvergenceWarning", "NotFittedError",
           "HAVE_SKLEARN"]

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

    def check_is_fitted(estimator, attributes=None):
        """Raise :class:`NotFittedError` unless ``estimator`` has a fitted (``x_``) attribute
        (or the named one)."""
        if attributes is not None:
            fitted = hasattr(estimator, attributes)
        else:
            fitted = any(k.endswith("_") and not k.startswith("__") for k in vars(estimator))
        if not fitted:
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


def _short_int_range(y):
    """``(lo, hi)`` of 1-D integer labels ``y`` spanning fewer values than ``max(1024,
    len(y))`` (counting and looking them up in a table then beats sorting) within
    ``(-2**62, 2**62)`` (no int64 arithmetic below overflows), else ``None``."""
    if y.ndim != 1 or y.dtype.kind not in "iu" or not y.size:
        return None
    lo, hi = int(y.min()), int(y.max())
    if lo <= -(2**62) or hi >= 2**62 or hi - lo >= max(1024, y.shape[0]):
        return None
    return lo, hi


def _unique_labels(y):
    """``np.unique(y)`` (the same values and dtype); integer labels over a short range by
    counting (100,000 labels of 4 classes: 0.17 against 1.38 ms on the 2-core benchmark
    machine)."""
    span_ = _short_int_range(y)
    if span_ is None:
        return np.unique(y)
    lo = span_[0]
    present = np.flatnonzero(np.bincount(np.subtract(y, lo, dtype=np.int64)))
    return (present + lo).astype(y.dtype)


def _label_indices(classes, y):
    """``np.searchsorted(classes, y)`` for labels ``y`` among the sorted ``classes``; integer
    labels over a short range through a lookup table (100,000 labels: 0.14 against 0.84 ms)."""
    span_ = _short_int_range(y)
    if span_ is None or classes.dtype.kind not in "iu":
        return np.searchsorted(classes, y)
    lo, hi = span_
    info = np.iinfo(classes.dtype)
    if lo < info.min or hi > info.max:  # labels no class can equal (the caller rejects them)
        return np.searchsorted(classes, y)
    # the table's keys in the classes' dtype: NumPy compares int64 with uint64 as float64
    table = np.searchsorted(classes, np.arange(lo, hi + 1).astype(classes.dtype))
    return table[np.subtract(y, lo, dtype=np.int64)]


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



def random_state_from(random_state, name="random_state"):
    """A ``numpy.random.RandomState`` as scikit-learn's ``check_random_state`` gives one.

    An int seeds a fresh one, a RandomState is used as is (and advanced), ``None`` gives a
    fresh one seeded from the operating system's entropy (scikit-learn would use NumPy's
    global generator; the suite never touches global random state).
    """
    if random_state is None:
        return np.random.RandomState(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, np.random.RandomState):
        return random_state
    return np.random.RandomState(_checks.integer(name, random_state, low=0, high=2**32 - 1))


# ---------------------------------------------------------------------------------------------
# the MLP estimators
# ---------------------------------------------------------------------------------------------

#: scikit-learn's activation names -> ours (``logistic`` is our ``sigmoid``).
_ACTIVATION_NAMES = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh",
                     "relu": "relu"}
_SOLVERS = ("lbfgs", "sgd", "adam")
_SCHEDULES = ("constant", "invscaling", "adaptive")


def _hidden_sizes(value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            "hidden_layer_sizes must be an int or a sequence of ints like (100,), got "
            f"{value!r}"
        )
    sizes = list(value)
    for v in sizes:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"hidden_layer_sizes must hold integers, got {value!r}")
        if v <= 0:
            raise ValueError(f"hidden_layer_sizes must be > 0, got {value!r}")
    return [int(v) for v in sizes]


def _float_dtype(dtype, X_dtype):
    if dtype is None:
        return np.dtype(X_dtype)
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be 'float32', 'float64' or None, got {dtype!r}") from err
    if dt not in _checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be 'float32', 'float64' or None, got {dtype!r}")
    return dt


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


class _Settings:
    """The checked constructor arguments of an MLP estimator (see ``_check_params``)."""


class _BaseMLP(BaseEstimator):
    """What :class:`MLPClassifier` and :class:`MLPRegressor` share: the parameters, the
    stochastic and L-BFGS solvers and the fitted attributes (scikit-learn's semantics)."""

    # -- parameters ----------------------------------------------------------------------------
    def _store(self, params):
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def _check_params(self):
        """Check every constructor argument; a ValueError/TypeError names the bad one."""
        s = _Settings()
        s.hidden = _hidden_sizes(self.hidden_layer_sizes)
        act = self.activation
        if act in _ACTIVATION_NAMES:
            s.activation = _ACTIVATION_NAMES[act]
        elif isinstance(act, str) and act in ACTIVATIONS and act != "softmax":
            s.activation = act  # our extra activations (leaky_relu, softplus, ...)
        else:
            raise ValueError(
                "activation must be one of 'identity', 'logistic', 'tanh', 'relu' (or one of "
                f"dlbasics' elementwise activations), got {act!r}"
            )
        s.solver = _checks.choice("solver", self.solver, _SOLVERS)
        s.alpha = _checks.real("alpha", self.alpha, low=0.0)
        if isinstance(self.batch_size, str):
            if self.batch_size != "auto":
                raise ValueError(f"batch_size must be 'auto' or an int >= 1, got "
                                 f"{self.batch_size!r}")
            s.batch_size = "auto"
        else:
            s.batch_size = _checks.integer("batch_size", self.batch_size, low=1)
        s.schedule = _checks.choice("learning_rate", self.learning_rate, _SCHEDULES)
        s.lr = _checks.real("learning_rate_init", self.learning_rate_init, low=0.0,
                            low_open=True)
        s.power_t = _checks.real("power_t", self.power_t, low=0.0)
        s.max_iter = _checks.integer("max_iter", self.max_iter, low=1)
        s.shuffle = _flag("shuffle", self.shuffle)
        s.tol = _checks.real("tol", self.tol, low=0.0)
        s.warm_start = _flag("warm_start", self.warm_start)
        s.momentum = _checks.real("momentum", self.momentum, low=0.0, high=1.0)
        s.nesterov = _flag("nesterovs_momentum", self.nesterovs_momentum)
        s.early_stopping = _flag("early_stopping", self.early_stopping)
        s.validation_fraction = _checks.real("validation_fraction", self.validation_fraction,
                                             low=0.0, high=1.0, high_open=True)
        s.beta_1 = _checks.real("beta_1", self.beta_1, low=0.0, high=1.0, high_open=True)
        s.beta_2 = _checks.real("beta_2", self.beta_2, low=0.0, high=1.0, high_open=True)
        s.epsilon = _checks.real("epsilon", self.epsilon, low=0.0, low_open=True)
        if self.n_iter_no_change == np.inf:
            s.n_iter_no_change = np.inf
        else:
            s.n_iter_no_change = _checks.integer("n_iter_no_change", self.n_iter_no_change,
                                                 low=1)
        s.max_fun = _checks.integer("max_fun", self.max_fun, low=1)
        if self.verbose is not None and not isinstance(self.verbose, (bool, numbers.Integral)):
            raise TypeError(f"verbose must be a bool or an int, got {self.verbose!r}")
        if self.random_state is not None and not isinstance(
                self.random_state, (numbers.Integral, np.random.RandomState)):
            raise TypeError("random_state must be None, an int or a numpy.random.RandomState, "
                            f"got {type(self.random_state).__name__}")
        s.dropout = _checks.choice("dropout", self.dropout, ("scale", "inverted"))
        s.backend = _checks.choice("backend", self.backend, BACKENDS)
        if s.backend == "cuda" and s.solver == "lbfgs":
            raise ValueError("solver='lbfgs' runs on backend 'cpu' or 'numpy', not 'cuda'")
        return s

    # -- the network ---------------------------------------------------------------------------
    def _initialize(self, s, n_features, n_outputs, X_dtype, rs):
        """Fresh network with scikit-learn's initialisation drawn from ``rs`` (Glorot uniform
        weights *and* biases, bound ``sqrt(6 / (fan_in + fan_out))``, 2 instead of 6 for the
        logistic activation), and a fresh training record."""
        layer_units = [n_features, *s.hidden, n_outputs]
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation(n_outputs)
        output, loss = {"identity": ("identity", "squared"),
                        "logistic": ("sigmoid", "binary_cross_entropy"),
                        "softmax": ("softmax", "cross_entropy")}[self.out_activation_]
        dtype = _float_dtype(self.dtype, X_dtype)
        seed = 0 if self.keep_prob is None else int(rs.randint(2**31 - 1))
        model = MLP(layer_units, activation=s.activation, output=output, loss=loss,
                    keep_prob=self.keep_prob, dropout=s.dropout, dtype=dtype,
                    backend=s.backend, seed=seed)
        factor = 2.0 if s.activation == "sigmoid" else 6.0
        flat = np.empty(model.n_params)
        for (fan_in, fan_out, w_off, b_off) in model.layout:
            bound = np.sqrt(factor / (fan_in + fan_out))
            flat[w_off:w_off + fan_in * fan_out] = rs.uniform(-bound, bound,
                                                              (fan_in, fan_out)).ravel()
            flat[b_off:b_off + fan_out] = rs.uniform(-bound, bound, fan_out)
        model.set_params_vector(flat.astype(dtype))
        self._model = model
        self._bind()
        self._best_params = model.params.copy()
        self._optimizer = None
        if s.solver != "lbfgs":
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if s.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _bind(self):
        """``coefs_`` and ``intercepts_``: views into the network's flat parameters."""
        self.coefs_ = [W for W in self._model.weights]
        self.intercepts_ = [b for b in self._model.biases]
        self._bound = (list(self.coefs_), list(self.intercepts_))

    def _sync(self):
        """Take over ``coefs_``/``intercepts_`` a user replaced (as scikit-learn allows before a
        warm start) or that unpickling separated from the network."""
        model = self._model
        same = (len(self.coefs_) == len(model.weights)
                and all(a is b for a, b in zip(self.coefs_, self._bound[0], strict=False))
                and all(a is b for a, b in zip(self.intercepts_, self._bound[1], strict=False))
                and all(np.shares_memory(W, model.params) for W in self.coefs_[:1]))
        if same:
            return
        flat = np.empty(model.n_params, dtype=model.dtype)
        for l, (n_in, n_out, w_off, b_off) in enumerate(model.layout):
            W = np.asarray(self.coefs_[l])
            b = np.asarray(self.intercepts_[l]).ravel()
            if W.shape != (n_in, n_out) or b.shape != (n_out,):
                raise ValueError(
                    f"coefs_[{l}]/intercepts_[{l}] have shapes {W.shape}/{b.shape}, the network "
                    f"needs ({n_in}, {n_out})/({n_out},)"
                )
            flat[w_off:w_off + n_in * n_out] = W.ravel()
            flat[b_off:b_off + n_out] = b
        model.set_params_vector(flat)
        self._bind()

    def _predict_raw(self, X):
        """Output activations (float64) of the fitted network for ``X``."""
        check_is_fitted(self, "coefs_")
        X = validate(self, X, reset=False)
        self._sync()
        return self._model.forward(as_work_array(X, self._model.dtype)).astype(np.float64)

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, X, y, incremental):
        s = self._check_params()
        first = not hasattr(self, "coefs_") or (not s.warm_start and not incremental)
        X, T = self._validate_input(X, y, incremental, reset=first)
        n_outputs = T.shape[1] if T.ndim == 2 else self._n_outputs_for(T)
        rs = random_state_from(self.random_state)
        if first:
            self._initialize(s, X.shape[1], n_outputs, X.dtype, rs)
        else:
            self._sync()
            units = [X.shape[1], *s.hidden, n_outputs]
            if units != list(self._model.sizes):
                raise ValueError(
                    f"warm_start/partial_fit: the layer sizes {units} differ from the fitted "
                    f"network's {list(self._model.sizes)} (hidden_layer_sizes changed?)"
                )
        X = as_work_array(X, self._model.dtype)
        if s.solver == "lbfgs":
            self._fit_lbfgs(s, X, T)
        else:
            self._fit_stochastic(s, X, T, rs, incremental)
        if not np.isfinite(self._model.params).all():
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed."
            )
        return self

    def _make_optimizer(self, s):
        if s.solver == "adam":
            return Adam(lr=s.lr, b1=s.beta_1, b2=s.beta_2, eps=s.epsilon)
        if s.momentum == 0.0:
            return SGD(lr=s.lr)
        if s.momentum >= 1.0:
            raise ValueError("momentum=1 is not supported by dlbasics (momentum must be < 1)")
        return (Nesterov if s.nesterov else Momentum)(lr=s.lr, momentum=s.momentum)

    def _split(self, s, X, T, rs):
        """scikit-learn's validation split for ``early_stopping`` (same random draws)."""
        stratify = T if (self._is_classifier and self.n_outputs_ == 1) else None
        if HAVE_SKLEARN:
            from sklearn.model_selection import train_test_split

            X_tr, X_val, T_tr, T_val = train_test_split(
                X, T, random_state=rs, test_size=s.validation_fraction, stratify=stratify)
        else:  # a plain random split
            n = X.shape[0]
            n_val = int(np.ceil(s.validation_fraction * n))
            perm = rs.permutation(n)
            X_tr, X_val, T_tr, T_val = X[perm[n_val:]], X[perm[:n_val]], T[perm[n_val:]], \
                T[perm[:n_val]]
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return (np.ascontiguousarray(X_tr), np.ascontiguousarray(X_val),
                np.ascontiguousarray(T_tr), np.ascontiguousarray(T_val))

    def _fit_stochastic(self, s, X, T, rs, incremental):
        if not incremental or self._optimizer is None:
            self._optimizer = self._make_optimizer(s)
            self._opt_state = None
            self._lr = s.lr
        if s.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if s.early_stopping:
            X, X_val, T, T_val = self._split(s, X, T, rs)
            y_val = self._decode(T_val)
        n = X.shape[0]
        if s.batch_size == "auto":
            batch = min(200, n)
        else:
            if s.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped", stacklevel=3)
            batch = min(s.batch_size, n)

        # sklearn.utils.shuffle(sample_idx, random_state=rs) each epoch: scikit-learn shuffles
        # arange(n) and indexes sample_idx with it; shuffling the previous order itself
        # (train's own array, not used after the call) makes the same swaps, so the same
        # permutation, without the index array and the gather. LegacyShuffler makes rs's
        # draws in compiled code and puts rs's state back when the epochs end (finally below)
        reshuffle = LegacyShuffler(rs) if s.shuffle else None

        def end_of_epoch(epoch, hist, model):
            self._book_epoch(hist.train_loss[-1], n)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if s.early_stopping:
                self._track_validation(s, X_val, y_val)
            else:
                if self.loss_ > self.best_loss_ - s.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                self.best_loss_ = min(self.best_loss_, self.loss_)
            if s.solver == "sgd" and s.schedule == "invscaling":
                self._set_lr(s.lr / (self.t_ + 1) ** s.power_t)
            if self._no_improvement_count > s.n_iter_no_change:
                # scikit-learn's words (its optimizers' trigger_stopping)
                what = "Validation score" if s.early_stopping else "Training loss"
                msg = (f"{what} did not improve more than tol={s.tol:f} for "
                       f"{int(s.n_iter_no_change)} consecutive epochs.")  # finite here
                if s.solver == "sgd" and s.schedule == "adaptive" and self._lr > 1e-6:
                    self._set_lr(self._lr / 5.0)
                    self._no_improvement_count = 0
                    if self.verbose:
                        print(f"{msg} Setting learning rate to {self._lr:f}")
                else:
                    if self.verbose:
                        small = s.solver == "sgd" and s.schedule == "adaptive"
                        print(f"{msg}{' Learning rate too small.' if small else ''} Stopping.")
                    return True
            return False

        if self._opt_state is None:
            self._opt_state = self._optimizer.init(self._model.params)
        self.n_iter_ = 0
        try:
            done = None
            if (not incremental and not s.early_stopping and not self.verbose
                    and (s.solver == "adam" or s.schedule == "constant")
                    and self.best_loss_ is not None):
                # the epochs and the stopping rule in compiled code, where the backend has
                # it (end_of_epoch's bookkeeping, the same bits, without its Python)
                done = self._fused_epochs(s, X, T, batch, reshuffle)
            if done is None:
                hist = train(self._model, X, T, self._optimizer, batch_size=batch,
                             epochs=1 if incremental else s.max_iter,
                             shuffle=reshuffle if reshuffle is not None else False,
                             callbacks=[end_of_epoch], schedule=lambda epoch: self._lr,
                             state=self._opt_state, alpha=s.alpha)
                done = hist.state, hist.diverged, hist.stopped_by is not None
        finally:
            if reshuffle is not None:
                reshuffle.close()
        self._opt_state, diverged, stopped = done
        if diverged:
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed (the training loss became non-finite "
                f"in epoch {self.n_iter_ + 1})."
            )
        if not incremental and not stopped and self.n_iter_ == s.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({s.max_iter}) reached and the "
                "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        if s.early_stopping:
            self._model.set_params_vector(self._best_params)

    def _book_epoch(self, loss, rows):
        """The record of an epoch of ``rows`` rows ended with running loss ``loss``."""
        self.n_iter_ += 1
        self.loss_ = loss
        self.t_ += rows
        self.loss_curve_.append(loss)

    def _fused_epochs(self, s, X, T, batch, reshuffle):
        """The epochs of :meth:`_fit_stochastic` and their bookkeeping (``end_of_epoch``'s,
        for a constant learning rate, no validation and no messages) in a few compiled calls
        (:func:`~dlbasics.models.training.train_epochs`): ``(state, diverged, stopped)``, or
        ``None`` where the backend has no such call or ``rs`` shuffles in Python (nothing
        ran)."""
        from . import _core

        n = X.shape[0]
        shuffle = None
        if reshuffle is not None:
            shuffle = reshuffle.compiled_state(n)
            if shuffle is None:
                return None
        rule = _core.epochs_rule(s.max_iter, s.tol, s.n_iter_no_change, self.best_loss_,
                                 self._no_improvement_count)

        def book(losses):  # after each compiled call, as end_of_epoch after each epoch
            for loss in losses.tolist():
                self._book_epoch(loss, n)
            self.best_loss_ = float(rule[_core.RULE_BEST])
            self._no_improvement_count = int(rule[_core.RULE_COUNT])

        done = train_epochs(self._model, X, T, self._optimizer, batch, rule, shuffle=shuffle,
                            state=self._opt_state, alpha=s.alpha, lr=self._lr, on_epochs=book)
        if done is None:
            return None
        state, _, stop = done
        return state, stop == _core.DIVERGED, stop == _core.CONVERGED

    def _set_lr(self, lr):
        """Change the learning rate between epochs. scikit-learn keeps its velocity in
        parameter units (``v = mu v - lr g``), ours in gradient units (``b = mu b + g``, ``w -=
        lr b``): rescaling ``b`` by ``old / new`` keeps the two the same update."""
        buf = getattr(self._opt_state, "momentum_buffer", None)
        if buf is not None and lr != self._lr and self._model.backend != "cuda":
            buf *= buf.dtype.type(self._lr / lr)
        self._lr = lr

    def _track_validation(self, s, X_val, y_val):
        out = self._model.forward(X_val).astype(np.float64)
        if not np.isfinite(out).all():
            score = np.nan
        else:
            score = self._score_outputs(out, y_val)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        if score < self.best_validation_score_ + s.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = self._model.params.copy()

    def _fit_lbfgs(self, s, X, T):
        """L-BFGS-B (``scipy.optimize.minimize``) on the full-batch loss and gradient."""
        import scipy.optimize

        model = self._model
        _, Y, labels, dense, _ = _validate_training(model, X, T)
        n = X.shape[0]
        chunk = min(n, LBFGS_CHUNK)
        order = np.arange(n, dtype=np.int64)
        wmask = np.zeros(model.n_params, dtype=bool)
        for n_in, n_out, w_off, _ in model.layout:
            wmask[w_off:w_off + n_in * n_out] = True
        acc = np.zeros(model.n_params)

        def loss_grad(p):
            model.set_params_vector(p.astype(model.dtype))
            acc[...] = 0.0
            total = 0.0
            for start in range(0, n, chunk):
                stop = min(start + chunk, n)
                total += model.batch_gradient(X, Y, labels, dense, order, start, stop, 0) * (
                    stop - start)
                g = model.engine.grad_host()
                acc[...] += g * (stop - start)
            w = p[wmask]
            grad = acc / n
            grad[wmask] += s.alpha / n * w
            return total / n + 0.5 * s.alpha * float(w @ w) / n, grad

        iprint = 1 if (self.verbose is True or self.verbose >= 1) else -1
        options = {"maxfun": s.max_fun, "maxiter": s.max_iter, "gtol": s.tol}
        if _LBFGS_IPRINT:
            options["iprint"] = iprint
        # BLAS on one thread: the chunks' products are small for a threaded BLAS that also
        # fights the compiled code's threads (0.42 s against 0.045 s a pass over 100k x 20 rows
        # into 100 units, measured on 2 cores)
        with model.engine.blas_single_thread():
            res = scipy.optimize.minimize(loss_grad, model.params.astype(np.float64),
                                          method="L-BFGS-B", jac=True, options=options)
        if res.status != 0:
            warnings.warn(
                f"lbfgs failed to converge after {res.nit} iteration(s) (status={res.status}):\n"
                f"{res.message}\n\nIncrease the number of iterations to improve the "
                f"convergence (max_iter={s.max_iter}).", ConvergenceWarning, stacklevel=3)
        self.n_iter_ = min(int(res.nit), s.max_iter)
        self.loss_ = float(res.fun)
        model.set_params_vector(res.x.astype(model.dtype))

    # -- scikit-learn API -----------------------------------------------------------------------
    def fit(self, X, y):
        """Fit the model to ``X`` and ``y`` (a fresh network unless ``warm_start``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (a label indicator matrix for multilabel classification) or
            regression targets.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    def _check_solver(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                "stochastic."
            )

    # -- pickling: the network travels as its own pickle; views are rebound -------------------
    def __setstate__(self, state):
        parent = getattr(super(), "__setstate__", None)
        if parent is not None:
            parent(state)
        else:
            self.__dict__.update(state)
        if "_model" in self.__dict__:
            self._bind()
            if self.__dict__.get("_opt_state") is not None:
                st = self._opt_state
                self._opt_state = st._replace(**{f: np.array(getattr(st, f))
                                                 for f in st._fields[1:]})

    def __getstate__(self):
        parent = getattr(super(), "__getstate__", None)
        state = dict(parent() if parent is not None else self.__dict__)
        if "_model" in state:  # coefs_/intercepts_ are rebuilt as views of the network
            for key in ("coefs_", "intercepts_", "_bound"):
                state.pop(key, None)
        return state


def _validate_training(model, X, T):
    """``(X, Y, labels, dense, None)`` as :func:`train` checks them."""
    from .training import _validate

    return _validate(model, X, T, None, None)


#: Rows per chunk of the L-BFGS full-batch loss (bounds the workspace of large sets).
LBFGS_CHUNK = 8192
_LBFGS_IPRINT = False  # scipy >= 1.15 deprecates ``iprint`` for L-BFGS-B; leave it out


_COMMON_DOC = """
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Widths of the hidden layers.
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        Hidden activation (our extra elementwise activations, e.g. ``"leaky_relu"``, work too).
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
        ``"adam"`` and ``"sgd"`` run the compiled mini-batch training loop
        (:func:`~dlbasics.models.training.train`); ``"lbfgs"`` runs ``scipy.optimize``'s
        L-BFGS-B on the compiled full-batch loss and gradient.
    alpha : float >= 0, default=1e-4
        L2 penalty ``alpha / (2 n) * sum ||W||^2`` over the weights (not the biases) of every
        batch of ``n`` rows.
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``; larger values are clipped with a warning.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule of ``solver="sgd"``: ``invscaling`` uses ``learning_rate_init / (t_ + 1) **
        power_t`` after each epoch; ``adaptive`` divides the rate by 5 whenever the stopping
        rule fires (and stops once it is at most 1e-6).
    learning_rate_init : float > 0, default=1e-3
    power_t : float >= 0, default=0.5
    max_iter : int >= 1, default=200
        Epochs (``sgd``, ``adam``) or L-BFGS iterations.
    shuffle : bool, default=True
        Shuffle the visiting order each epoch (scikit-learn's draws from ``random_state``).
    random_state : int, RandomState or None, default=None
        Initial weights, validation split and shuffling: the same numbers as scikit-learn's
        for the same int or RandomState. ``None``: a fresh seed from the operating system
        (``numpy.random.seed`` has no effect: nothing here draws from NumPy's global
        generator, where scikit-learn's ``None`` does).
    tol : float >= 0, default=1e-4
        An epoch whose loss (or validation score) does not improve on the best by ``tol``
        counts towards ``n_iter_no_change``; for ``lbfgs`` the gradient tolerance.
    verbose : bool or int, default=False
        Print the loss of every epoch.
    warm_start : bool, default=False
        ``fit`` continues from the current weights (a fresh optimizer, as scikit-learn does).
    momentum : float in [0, 1), default=0.9
        ``solver="sgd"``: 0 is plain gradient descent.
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and stop when its score (accuracy or R^2)
        has not improved by ``tol`` for ``n_iter_no_change`` epochs; the best weights are kept.
    validation_fraction : float in [0, 1), default=0.1
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's decay rates.
    epsilon : float > 0, default=1e-8
        Adam's denominator guard.
    n_iter_no_change : int >= 1 or inf, default=10
    max_fun : int >= 1, default=15000
        ``lbfgs``: maximum number of loss evaluations.
    keep_prob : float or sequence of float, optional
        Our extra: dropout keep probability (see :class:`~dlbasics.models.mlp.MLP`).
    dropout : {"scale", "inverted"}, default="scale"
        Our extra: the notes' weight-scaling rule or inverted dropout.
    dtype : {"float32", "float64"} or None, default="float32"
        Our extra: the precision of training and of ``coefs_``; ``None`` follows ``X`` as
        scikit-learn does (float64 unless ``X`` is float32).
    backend : {"cpu", "numpy", "cuda"}, default="cpu"
        Our extra: where the network runs (``lbfgs``: cpu or numpy).
"""

_ATTRS_DOC = """
    loss_ : float
        Loss (with the L2 penalty) of the last epoch, or at the L-BFGS solution.
    best_loss_ : float or None
        Lowest epoch loss (``None`` with ``early_stopping``; absent for ``lbfgs``).
    loss_curve_ : list of float
        Loss of every epoch (``sgd``, ``adam``).
    validation_scores_ : list of float or None
        Score on the held-out set after every epoch (with ``early_stopping``).
    best_validation_score_ : float or None
    t_ : int
        Training samples seen.
    coefs_ : list of ndarray
        ``coefs_[i]`` of shape ``(n_units[i], n_units[i + 1])``: views into the network's flat
        parameter vector (assigning new arrays before a warm start is taken over).
    intercepts_ : list of ndarray
    n_features_in_ : int
    n_iter_ : int
        Epochs (or L-BFGS iterations) of the last ``fit``.
    n_layers_ : int
        Layers including the input and output layers.
    n_outputs_ : int
    out_activation_ : str
        ``"identity"``, ``"logistic"`` or ``"softmax"``.
"""


class _StochasticOnly:
    """A method present only on estimators whose ``solver`` is stochastic: ``partial_fit`` of
    :class:`MLPClassifier`, as scikit-learn's ``available_if`` makes it (``hasattr`` is False
    for ``solver="lbfgs"``; getting it raises ``_check_solver``'s ``AttributeError``).
    scikit-learn's ``MLPRegressor.partial_fit`` is always present (its check is not called),
    and so is ours, raising when called."""

    def __init__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __get__(self, obj, owner=None):
        if obj is None:
            return self.fn
        obj._check_solver()
        return types.MethodType(self.fn, obj)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` on compiled kernels.

    The same parameters, defaults and fitted attributes as
    ``sklearn.neural_network.MLPClassifier``; two classes train one logistic output with binary
    cross-entropy, more classes a softmax with cross-entropy, a label indicator matrix
    (multilabel) one logistic output per label.

    Parameters
    ----------""" + _COMMON_DOC + """
    Attributes
    ----------
    classes_ : ndarray
        The class labels (``arange(n_labels)`` for multilabel targets).""" + _ATTRS_DOC + """
    Notes
    -----
    Differences that remain (documented, not silent): ``fit`` takes no ``sample_weight``;
    ``random_state=None`` does not draw from NumPy's global generator (see above); sparse
    ``X`` and ``y`` of one class raise errors (scikit-learn fits them);
    with ``solver="sgd"``, momentum and a changing rate (``adaptive``, ``invscaling``) on
    ``backend="cuda"`` the velocity is not rescaled when the rate changes (on the CPU it is,
    which makes our gradient-unit velocity the same update as scikit-learn's); Adam adds
    ``epsilon`` to the bias-corrected root (torch's form) where scikit-learn adds it to the raw
    one; the cross-entropy is computed from the logits without clipping probabilities at the
    machine epsilon.
    """

    _is_classifier = True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 keep_prob=None, dropout="scale", dtype="float32", backend="cpu"):
        self._store(locals())

    def _out_activation(self, n_outputs):
        if self._multilabel or len(self.classes_) == 2:
            return "logistic"
        return "softmax"

    def _n_outputs_for(self, T):
        return len(self.classes_)

    def _validate_input(self, X, y, incremental, reset):
        """Validated ``X`` and the network's targets: float ``(n, 1)`` (two classes), int
        class indices (more) or the float indicator matrix (multilabel)."""
        X, y = validate(self, X, y, reset=reset, multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = _column(y)
        multilabel = y.ndim == 2
        if multilabel and not type_of_target(y).startswith("multilabel"):
            raise ValueError("y must be 1-D class labels or a multilabel indicator matrix, got "
                             f"a 2-D array of type {type_of_target(y)!r}")
        if not multilabel and not (y.ndim == 1 and y.dtype.kind in "iub"):
            # 1-D integer or bool labels are binary or multiclass targets whatever their values:
            # type_of_target's passes over y (about 3 ms at 100k rows) could only agree
            check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._multilabel = multilabel
            self.classes_ = np.arange(y.shape[1]) if multilabel else _unique_labels(y)
            if len(self.classes_) < 2 and not multilabel:
                raise ValueError(f"{type(self).__name__} needs at least 2 classes, got 1 "
                                 f"class: {self.classes_.tolist()!r}")
        else:
            if multilabel != self._multilabel:
                raise ValueError("y changed between multilabel and single-label targets")
            classes = np.arange(y.shape[1]) if multilabel else _unique_labels(y)
            if self.warm_start:  # partial_fit too, as scikit-learn
                if set(classes.tolist()) != set(self.classes_.tolist()):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return X, self._encode(y)

    def _encode(self, y):
        if self._multilabel:
            return np.ascontiguousarray(y, dtype=np.float64)
        idx = _label_indices(self.classes_, y)
        if len(self.classes_) == 2:
            return idx.astype(np.float64).reshape(-1, 1)
        return idx.astype(np.int64)

    def _decode(self, T):
        """Labels back from encoded targets (the validation set's)."""
        if self._multilabel:
            return T.astype(np.int64)
        if T.ndim == 2:
            return self.classes_[T[:, 0].astype(np.int64)]
        return self.classes_[T]

    def _labels_from(self, out):
        if self._multilabel:
            return (out > 0.5).astype(np.int64)
        if out.shape[1] == 1:
            return self.classes_[(out[:, 0] > 0.5).astype(np.int64)]
        return self.classes_[np.argmax(out, axis=1)]

    def _score_outputs(self, out, y_val):
        pred = self._labels_from(out)
        if self._multilabel:
            return float(np.mean(np.all(pred == y_val, axis=1)))
        return float(np.mean(pred == y_val))

    @_StochasticOnly
    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, continuing the network and the optimizer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        classes : array-like of shape (n_classes,), optional
            All class labels; required on the first call (``y`` may not show them all,
            but with ``warm_start=True`` it must show every class, as scikit-learn asks).

        Returns
        -------
        self
        """
        self._check_solver()  # (the descriptor checks too; not an unbound call)
        first = not hasattr(self, "classes_")
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            y_arr = np.asarray(y)
            if y_arr.ndim == 2 and y_arr.shape[1] > 1:
                self._multilabel = True
                self.classes_ = np.arange(y_arr.shape[1])
            else:
                self._multilabel = False
                self.classes_ = np.unique(np.asarray(classes))
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"`classes={np.unique(classes)!r}` is not the same as on last call to "
                f"partial_fit, was: {self.classes_!r}"
            )
        return self._fit(X, y, incremental=True)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float64
            Columns follow ``classes_``.
        """
        out = self._predict_raw(X)
        if out.shape[1] == 1:
            return np.column_stack([1.0 - out[:, 0], out[:, 0]])
        return out

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Predicted classes (``(n_samples, n_labels)`` indicators for multilabel).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_labels)
        """
        return self._labels_from(self._predict_raw(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` on compiled kernels.

    Identity outputs and the squared error. ``predict`` returns ``(n_samples,)`` for one output.

    Parameters
    ----------
    loss : {"squared_error"}, default="squared_error"
        scikit-learn's ``"poisson"`` is not supported (a ValueError says so).""" + _COMMON_DOC + """
    Attributes
    ----------""" + _ATTRS_DOC + """
    Notes
    -----
    As for :class:`MLPClassifier`; moreover with several outputs our recorded loss is the
    squared error summed over outputs (scikit-learn averages it over outputs in ``loss_`` and
    ``loss_curve_`` but trains on the sum, as we do), so the loss-based stopping rule sees a
    larger loss; with ``solver="lbfgs"`` scikit-learn's line search sees the averaged loss
    with the summed gradient, ours the sum with its own gradient, so the two take other steps
    and stop at other iterations.
    """

    _is_classifier = False

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 keep_prob=None, dropout="scale", dtype="float32", backend="cpu"):
        self._store(locals())

    def _check_params(self):
        if self.loss != "squared_error":
            if self.loss == "poisson":
                raise ValueError("loss='poisson' is not supported by dlbasics' MLPRegressor "
                                 "(only 'squared_error')")
            raise ValueError(f"loss must be 'squared_error', got {self.loss!r}")
        return super()._check_params()

    def _out_activation(self, n_outputs):
        return "identity"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate(self, X, y, reset=reset, multi_output=True, y_numeric=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = _column(y)
        T = y.reshape(-1, 1) if y.ndim == 1 else y
        if hasattr(self, "n_outputs_") and not reset and T.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {T.shape[1]} outputs, the model has {self.n_outputs_}")
        return X, np.ascontiguousarray(T, dtype=np.float64)

    def _decode(self, T):
        return T[:, 0] if T.shape[1] == 1 else T

    def _score_outputs(self, out, y_val):
        return _r2(y_val, out[:, 0] if out.shape[1] == 1 else out)

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, continuing the network and the optimizer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        self._check_solver()
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Network outputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs), float64
        """
        out = self._predict_raw(X)
        return out[:, 0] if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _column(y):
    """``y`` of shape (n, 1) as (n,), with scikit-learn's DataConversionWarning."""
    if HAVE_SKLEARN:
        from sklearn.utils.validation import column_or_1d

        return column_or_1d(y, warn=True)
    warnings.warn("A column-vector y was passed when a 1d array was expected. Please change "
                  "the shape of y to (n_samples, ), for example using ravel().", UserWarning,
                  stacklevel=4)
    return y[:, 0]


def _r2(y, pred):
    """R^2 averaged uniformly over outputs (scikit-learn's ``r2_score``)."""
    if HAVE_SKLEARN:
        from sklearn.metrics import r2_score

        return float(r2_score(y, pred))
    y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    p2 = np.asarray(pred, dtype=np.float64).reshape(len(y), -1)
    ss_res = ((y2 - p2) ** 2).sum(axis=0)
    ss_tot = ((y2 - y2.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0),
                      np.where(ss_res > 0, 0.0, 1.0))
    return float(r2.mean())
