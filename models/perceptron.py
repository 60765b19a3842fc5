r"""The perceptron of the lecture notes as a model (and a scikit-learn-style estimator).

Training visits the samples one at a time (in a fresh random order each epoch when
``shuffle``) and applies the notes' rule on every mistake, :math:`y\,(\mathbf{w}\cdot\mathbf{x}
+ b) \le 0`:

.. math::

    \mathbf{w} \leftarrow \mathbf{w} + \eta\, y\, \mathbf{x}, \qquad b \leftarrow b + \eta\, y,
    \qquad y \in \{-1, +1\},

starting from :math:`\mathbf{w} = 0, b = 0`. An epoch is one compiled call,
:func:`dlbasics.kernels.perceptron.epoch_kernel`, after the input has been checked here. Training
stops at the first epoch without a mistake (the data are then separated) or after ``max_epochs``.

Novikoff's theorem bounds the total number of mistakes on separable data. Fold the bias into
the augmented vectors :math:`\mathbf{z} = (\mathbf{x}, 1)` and :math:`\mathbf{v} = (\mathbf{w},
b)`; if some :math:`\mathbf{v}^*` separates the data with margin

.. math::

    \gamma = \min_n \frac{y^{(n)}\, \mathbf{v}^* \cdot \mathbf{z}^{(n)}}{\lVert \mathbf{v}^*
    \rVert} > 0 \quad\text{and}\quad R = \max_n \lVert \mathbf{z}^{(n)} \rVert,

then the perceptron started at :math:`\mathbf{v} = 0` makes at most :math:`(R/\gamma)^2`
mistakes, in any visiting order (with :math:`\eta = 1`; from zero, any :math:`\eta > 0` only
scales :math:`\mathbf{v}` and makes the same mistakes). :func:`mistake_bound` computes it.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..kernels import _checks
from ..kernels.perceptron import epoch_kernel
from .estimators import (
    BaseEstimator,
    ClassifierMixin,
    ConvergenceWarning,
    as_work_array,
    check_classification_targets,
    check_is_fitted,
    type_of_target,
    validate,
)

__all__ = ["Perceptron", "mistake_bound", "max_margin_separator", "ConvergenceWarning"]


def _float_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from err
    if dt not in _checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


class Perceptron(ClassifierMixin, BaseEstimator):
    r"""Rosenblatt's perceptron: a threshold neuron trained by the mistake-driven rule.

    Parameters
    ----------
    lr : float > 0, default=1.0
        Learning rate :math:`\eta` (1 is the notes' rule).
    max_epochs : int >= 1, default=100
        Epochs before giving up on data that are not linearly separable.
    shuffle : bool, default=True
        Visit the samples in a new random order each epoch (else in the given order).
    seed : int >= 0 or None, default=0
        Seed of the visiting orders (``None``: fresh entropy).
    dtype : {numpy.float32, numpy.float64}, default=numpy.float64
        Precision of ``coef_``, ``intercept_`` and the data given to the kernel.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; ``classes_[0]`` is coded -1 and ``classes_[1]`` is coded +1.
    coef_ : ndarray of shape (n_features,)
        The weights :math:`\mathbf{w}`.
    intercept_ : ndarray of shape (1,)
        The bias :math:`b`.
    mistakes_ : list of int
        Mistakes made in each epoch.
    n_epochs_ : int
        Epochs run.
    converged_ : bool
        True when the last epoch made no mistake (the training data are separated).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[2.0, 1.0], [1.0, 3.0], [-1.0, -2.0], [-2.0, -1.0]])
    >>> clf = Perceptron(shuffle=False).fit(X, np.array([1, 1, 0, 0]))
    >>> clf.converged_, clf.mistakes_
    (True, [1, 0])
    """

    def __init__(self, lr=1.0, max_epochs=100, shuffle=True, seed=0, dtype=np.float64):
        self.lr = lr
        self.max_epochs = max_epochs
        self.shuffle = shuffle
        self.seed = seed
        self.dtype = dtype

    # -- checks ---------------------------------------------------------------------------------
    def _check_params(self):
        _checks.real("lr", self.lr, low=0.0, low_open=True)
        _checks.integer("max_epochs", self.max_epochs, low=1)
        if self.seed is not None:
            _checks.integer("seed", self.seed, low=0)
        return _float_dtype(self.dtype)

    @staticmethod
    def _binary_classes(labels, name):
        classes = np.unique(labels)
        if len(classes) != 2:
            if len(classes) > 2:
                raise ValueError(
                    "Only binary classification is supported. The type of the target is "
                    f"multiclass: {name} has {len(classes)} classes"
                )
            raise ValueError(
                f"Perceptron needs {name} with 2 distinct classes, got {len(classes)} class"
            )
        return classes

    def _signs(self, y):
        """``y`` coded -1 (``classes_[0]``) / +1 (``classes_[1]``) in ``coef_.dtype``."""
        known = (y == self.classes_[0]) | (y == self.classes_[1])
        if not np.all(known):
            bad = np.unique(y[~known])
            raise ValueError(
                f"y contains labels not in classes_ {self.classes_.tolist()!r}: {bad.tolist()!r}"
            )
        return np.where(y == self.classes_[1], 1.0, -1.0).astype(self.coef_.dtype)

    def _start(self, n_features, dtype):
        self.coef_ = np.zeros(n_features, dtype=dtype)
        self.intercept_ = np.zeros(1, dtype=dtype)
        self.mistakes_ = []
        self.n_epochs_ = 0
        self.converged_ = False
        self._rng = np.random.default_rng(self.seed)

    def _epoch(self, X, s):
        n = X.shape[0]
        if self.shuffle:
            order = self._rng.permutation(n).astype(np.int64)
        else:
            order = np.arange(n, dtype=np.int64)
        mistakes = int(epoch_kernel(X, s, self.coef_, self.intercept_, float(self.lr), order))
        self.mistakes_.append(mistakes)
        self.n_epochs_ += 1
        self.converged_ = mistakes == 0
        return mistakes

    # -- training -------------------------------------------------------------------------------
    def fit(self, X, y):
        """Train from ``w = 0, b = 0`` until an epoch without mistakes or ``max_epochs``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Any two distinct labels.

        Returns
        -------
        self

        Warns
        -----
        ConvergenceWarning
            When ``max_epochs`` epochs all had mistakes (e.g. XOR: not linearly separable).
        """
        dtype = self._check_params()
        X, y = validate(self, X, y, reset=True)
        check_classification_targets(y)
        self.classes_ = self._binary_classes(y, "y")
        X = as_work_array(X, dtype)
        self._start(X.shape[1], dtype)
        s = self._signs(y)
        for _ in range(self.max_epochs):
            if self._epoch(X, s) == 0:
                return self
        warnings.warn(
            f"Perceptron made mistakes in each of max_epochs={self.max_epochs} epochs "
            f"(last: {self.mistakes_[-1]}); the data may not be linearly separable",
            ConvergenceWarning, stacklevel=2,
        )
        return self

    def partial_fit(self, X, y, classes=None):
        """Run one epoch, continuing from the current ``coef_`` and ``intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (2,), optional
            Both labels; required on the first call.

        Returns
        -------
        self
        """
        first = not hasattr(self, "coef_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        dtype = self._check_params()
        X, y = validate(self, X, y, reset=first)
        check_classification_targets(y)
        if first:
            self.classes_ = self._binary_classes(np.asarray(classes), "classes")
            self._start(X.shape[1], dtype)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={np.unique(classes).tolist()!r} is not the same as on the first call "
                f"to partial_fit, was {self.classes_.tolist()!r}"
            )
        self._epoch(as_work_array(X, self.coef_.dtype), self._signs(y))
        return self

    # -- prediction -----------------------------------------------------------------------------
    def decision_function(self, X):
        """Signed score :math:`\\mathbf{w}\\cdot\\mathbf{x} + b` (float64).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
            Positive for ``classes_[1]``.
        """
        check_is_fitted(self)
        X = validate(self, X, reset=False)
        w = self.coef_.astype(np.float64)
        return np.asarray(X, dtype=np.float64) @ w + float(self.intercept_[0])

    def predict(self, X):
        """Threshold neuron: ``classes_[1]`` where the score is > 0, else ``classes_[0]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        positive = self.decision_function(X) > 0  # checks fitted before classes_ is read
        return self.classes_[positive.astype(np.intp)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"binary_only": True}


# ---------------------------------------------------------------------------------------------
# Novikoff's bound
# ---------------------------------------------------------------------------------------------


def _signed_augmented(X, y, name="y"):
    """Rows :math:`y^{(n)} (\\mathbf{x}^{(n)}, 1)` with the two labels coded -1/+1 (sorted)."""
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        raise ValueError(f"X must be a 2-D numpy array, got {type(X).__name__} "
                         f"{getattr(X, 'shape', '')}")
    if X.dtype.kind not in "fiu" or X.size == 0:
        raise ValueError(f"X must be a non-empty numeric array, got dtype {X.dtype}")
    X = np.asarray(X, dtype=np.float64)
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or inf")
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"{name} must have shape ({X.shape[0]},), got {y.shape}")
    if type_of_target(y) not in ("binary", "multiclass"):
        raise ValueError(f"{name} must hold class labels")
    classes = Perceptron._binary_classes(y, name)
    s = np.where(y == classes[1], 1.0, -1.0)
    Z = np.hstack([X, np.ones((X.shape[0], 1))])
    return Z, s[:, None] * Z


def _margin(A, v):
    norm = np.linalg.norm(v)
    return float(np.min(A @ v) / norm) if norm > 0 else -np.inf


def max_margin_separator(X, y):
    r"""A separating :math:`(\mathbf{w}, b)` of (nearly) maximal margin in the augmented space.

    Two stages, both on the augmented vectors :math:`\mathbf{z} = (\mathbf{x}, 1)`:

    1. A linear program (``scipy.optimize.linprog``, HiGHS): maximise :math:`t` subject to
       :math:`y^{(n)} \mathbf{v} \cdot \mathbf{z}^{(n)} \ge t` and :math:`-1 \le v_j \le 1`
       (the max-margin separator for the :math:`\infty`-norm). :math:`t^* \le 0` means the data
       are not linearly separable.
    2. The hard-margin problem :math:`\min \tfrac12 \lVert \mathbf{v} \rVert^2` subject to
       :math:`y^{(n)} \mathbf{v} \cdot \mathbf{z}^{(n)} \ge 1` (a quadratic program, solved by
       ``scipy.optimize.minimize(method="SLSQP")``) started from :math:`\mathbf{v}_{LP}/t^*`.

    Of the two, the vector with the larger Euclidean margin, *as recomputed from the vector*, is
    returned: the margin is therefore exact for the returned separator even if the solver
    stops early, and any bound built on it is valid. At the optimum of stage 2 it is the
    largest margin :math:`\gamma^*` of the augmented data (so the tightest Novikoff bound).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Two distinct labels; the larger one is +1.

    Returns
    -------
    w : ndarray of shape (n_features,)
    b : float
    gamma : float
        :math:`\min_n y^{(n)} (\mathbf{w} \cdot \mathbf{x}^{(n)} + b) / \lVert (\mathbf{w}, b)
        \rVert > 0`.

    Raises
    ------
    ValueError
        If the data are not linearly separable.
    """
    from scipy.optimize import linprog, minimize

    _, A = _signed_augmented(X, y)
    n, m = A.shape
    c = np.zeros(m + 1)
    c[-1] = -1.0
    lp = linprog(c, A_ub=np.hstack([-A, np.ones((n, 1))]), b_ub=np.zeros(n),
                 bounds=[(-1.0, 1.0)] * m + [(None, 1.0)], method="highs")
    t = -lp.fun if lp.status == 0 else 0.0
    if not t > 1e-12 * max(1.0, np.abs(A).max()):
        raise ValueError("X, y are not linearly separable (no separating hyperplane exists)")
    v_lp = lp.x[:m] / t
    qp = minimize(lambda v: 0.5 * (v @ v), v_lp, jac=lambda v: v, method="SLSQP",
                  constraints=[{"type": "ineq", "fun": lambda v: A @ v - 1.0,
                                "jac": lambda v: A}],
                  options={"maxiter": 500, "ftol": 1e-12})
    best = max((v_lp, qp.x), key=lambda v: _margin(A, v))
    return best[:-1].copy(), float(best[-1]), _margin(A, best)


def mistake_bound(X, y, w_star=None):
    r"""Novikoff's bound :math:`(R/\gamma)^2` on the perceptron's total number of mistakes.

    :math:`R = \max_n \lVert (\mathbf{x}^{(n)}, 1) \rVert` and :math:`\gamma` is the margin of
    the separator ``w_star`` on the augmented vectors (see the module docstring). It bounds the
    mistakes of :class:`Perceptron` trained from zero (``lr=1``, or any ``lr``), over all
    epochs, whatever the visiting order.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Two distinct labels; the larger one is +1 (as ``Perceptron.classes_[1]``).
    w_star : array-like of shape (n_features + 1,) or tuple (w, b), optional
        A separating hyperplane, the bias last. Default: :func:`max_margin_separator` (which
        gives the smallest bound).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``w_star`` does not separate the data (margin <= 0), or, without ``w_star``, if the
        data are not linearly separable.
    """
    Z, A = _signed_augmented(X, y)
    R = float(np.linalg.norm(Z, axis=1).max())
    if w_star is None:
        gamma = max_margin_separator(X, y)[2]
    else:
        if isinstance(w_star, tuple) and len(w_star) == 2:
            w, b = w_star
            v = np.append(np.asarray(w, dtype=np.float64).ravel(), float(b))
        else:
            v = np.asarray(w_star, dtype=np.float64).ravel()
        if v.shape != (Z.shape[1],):
            raise ValueError(
                f"w_star must have {Z.shape[1]} entries (n_features weights, then the bias), "
                f"got {v.shape[0]}"
            )
        gamma = _margin(A, v)
        if not gamma > 0:
            raise ValueError(f"w_star does not separate X, y (margin {gamma:.3g} <= 0)")
    return (R / gamma) ** 2
