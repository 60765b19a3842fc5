r"""The perceptron of the lecture notes as a model (and a scikit-learn-style estimator).

Training visits the samples one at a time (in a fresh random order each epoch when
``shuffle``) and applies the notes' rule on every mistake, :math:`y\,(\mathbf{w}\cdot\mathbf{x}
+ b) \le 0`:

.. math::

    \mathbf{w} \leftarrow \mathbf{w} + \eta\, y\, \mathbf{x}, \qquad b \leftarrow b + \eta\, y,
    \qquad y \in \{-1, +1\},

starting from :math:`\mathbf{w} = 0, b = 0`. An epoch is one compiled call,
:func:`dlbasics.kernels.perceptron.epoch_loss_kernel`, after the input has been checked here.
:class:`Perceptron` is a drop-in for ``sklearn.linear_model.Perceptron`` (its parameters,
defaults, stopping rule and fitted attributes; more than two classes one-vs-rest).

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

import numbers
import warnings

import numpy as np

from ..kernels import _checks
from ..kernels.perceptron import epoch_loss_kernel
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


def _generator(random_state):
    """The one generator of a fit's visiting orders (and validation split): for an int seed
    ``numpy.random.default_rng(seed)``, drawn from for every epoch of every class in turn."""
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31 - 1))
    return np.random.default_rng(_checks.integer("random_state", random_state, low=0))


class Perceptron(ClassifierMixin, BaseEstimator):
    r"""Rosenblatt's perceptron, a drop-in for ``sklearn.linear_model.Perceptron``.

    The same parameters, defaults and fitted attributes as scikit-learn's. With
    ``penalty=None`` (the default) each epoch visits the samples one at a time and applies the
    notes' rule on every mistake :math:`y\,(\mathbf{w}\cdot\mathbf{x} + b) \le 0`:
    :math:`\mathbf{w} \leftarrow \mathbf{w} + \eta_0\, y\, \mathbf{x}`,
    :math:`b \leftarrow b + \eta_0\, y` (one compiled call per epoch,
    :func:`dlbasics.kernels.perceptron.epoch_loss_kernel`), from :math:`\mathbf{w} = 0,
    b = 0`. More than two classes train one perceptron per class against the rest.

    Stopping, as scikit-learn's: after each epoch the mean perceptron loss
    :math:`\frac1n \sum \max(0, -y s)` (or, with ``early_stopping``, the accuracy on a
    held-out ``validation_fraction``) is compared with the best so far; ``n_iter_no_change``
    epochs in a row that do not improve it by ``tol`` stop training (``tol=None``: run
    ``max_iter`` epochs).

    Parameters
    ----------
    penalty : None, default=None
        Only ``None`` (the notes' rule); scikit-learn's ``"l2"``, ``"l1"`` and
        ``"elasticnet"`` raise a ValueError naming ``penalty``.
    alpha : float >= 0, default=1e-4
        Used only with a penalty (as in scikit-learn): checked, otherwise unused.
    l1_ratio : float in [0, 1], default=0.15
        Used only with ``penalty="elasticnet"``: checked, otherwise unused.
    fit_intercept : bool, default=True
    max_iter : int >= 1, default=1000
    tol : float >= 0 or None, default=1e-3
    shuffle : bool, default=True
        A new visiting order each epoch, drawn from ``numpy.random.default_rng(random_state)``
        (scikit-learn draws its orders with its own generator, so shuffled runs are not the
        same sequence as its; ``shuffle=False`` runs are the same numbers).
    verbose : int, default=0
        Print each epoch's mistakes and mean loss.
    eta0 : float > 0, default=1.0
        The learning rate :math:`\eta_0` (1 is the notes' rule).
    n_jobs : int or None, default=None
        Accepted for compatibility; the classes train one after the other.
    random_state : int, RandomState or None, default=0
        ``None``: a fresh seed from the operating system (``numpy.random.seed`` has no effect:
        nothing here draws from NumPy's global generator, unlike scikit-learn).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows (drawn from the same generator as the
        visiting orders, not scikit-learn's stratified split) and stop on their accuracy.
    validation_fraction : float in (0, 1), default=0.1
    n_iter_no_change : int >= 1, default=5
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes: a mistake's step is multiplied by its class's weight (for more
        than two classes, the positive class's weight against the rest's 1), as scikit-learn
        does; ``"balanced"`` is ``n_samples / (n_classes * count)``.
    warm_start : bool, default=False
        ``fit`` starts from the current ``coef_`` and ``intercept_`` (as scikit-learn's: the
        data's classes may be other labels, but their number and the features must give
        ``coef_``'s shape, ``ValueError`` otherwise); ``t_``, ``n_iter_`` and ``mistakes_``
        count this fit's epochs.
    dtype : {numpy.float32, numpy.float64}, default=numpy.float64
        Our extra: the precision of ``coef_``, ``intercept_`` and the data given to the kernel.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        The weights :math:`\mathbf{w}` (one row for two classes, coded -1 for
        ``classes_[0]`` and +1 for ``classes_[1]``).
    intercept_ : ndarray of shape (1,) or (n_classes,)
    n_iter_ : int
        Epochs run (the most of any class).
    t_ : int
        ``n_iter_ * n_samples + 1`` of the last ``fit``, plus the rows of each ``partial_fit``
        since, as scikit-learn counts (with ``early_stopping`` the validation rows too).
    n_features_in_ : int
    mistakes_ : list of int
        Our extra: mistakes in each epoch (summed over the classes' perceptrons).
    converged_ : bool
        Our extra: True when the last epoch made no mistake (the training data are separated).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[2.0, 1.0], [1.0, 3.0], [-1.0, -2.0], [-2.0, -1.0]])
    >>> clf = Perceptron(shuffle=False).fit(X, np.array([1, 1, 0, 0]))
    >>> clf.mistakes_[:2], clf.converged_
    ([1, 0], True)
    """

    def __init__(self, *, penalty=None, alpha=0.0001, l1_ratio=0.15, fit_intercept=True,
                 max_iter=1000, tol=1e-3, shuffle=True, verbose=0, eta0=1.0, n_jobs=None,
                 random_state=0, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=5, class_weight=None, warm_start=False, dtype=np.float64):
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.eta0 = eta0
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.dtype = dtype

    # -- checks ---------------------------------------------------------------------------------
    def _check_params(self):
        if self.penalty is not None:
            raise ValueError(
                f"penalty={self.penalty!r} is not supported: dlbasics' Perceptron is the notes' "
                "rule, penalty=None"
            )
        cw = self.class_weight
        if not (cw is None or cw == "balanced" or isinstance(cw, dict)):
            raise ValueError(f"class_weight must be a dict, 'balanced' or None, got {cw!r}")
        _checks.real("alpha", self.alpha, low=0.0)
        _checks.real("l1_ratio", self.l1_ratio, low=0.0, high=1.0)
        for name in ("fit_intercept", "shuffle", "early_stopping", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        _checks.integer("max_iter", self.max_iter, low=1)
        if self.tol is not None:
            _checks.real("tol", self.tol, low=0.0)
        _checks.real("eta0", self.eta0, low=0.0, low_open=True)
        if self.n_jobs is not None:
            _checks.integer("n_jobs", self.n_jobs)
        _checks.real("validation_fraction", self.validation_fraction, low=0.0, high=1.0,
                     low_open=True, high_open=True)
        _checks.integer("n_iter_no_change", self.n_iter_no_change, low=1)
        if not isinstance(self.verbose, (bool, numbers.Integral)):
            raise TypeError(f"verbose must be an int, got {self.verbose!r}")
        if self.random_state is not None and not isinstance(
                self.random_state, (numbers.Integral, np.random.RandomState)):
            raise TypeError("random_state must be None, an int or a numpy.random.RandomState, "
                            f"got {type(self.random_state).__name__}")
        return _float_dtype(self.dtype)

    @staticmethod
    def _binary_classes(labels, name):
        """The two sorted labels of ``labels`` (for Novikoff's bound and the separators)."""
        classes = np.unique(labels)
        if len(classes) != 2:
            raise ValueError(
                f"{name} must hold exactly 2 distinct classes, got {len(classes)}"
            )
        return classes

    def _signs(self, y):
        """One row of -1/+1 targets per binary problem, in ``coef_``'s dtype."""
        known = np.isin(y, self.classes_)
        if not np.all(known):
            bad = np.unique(y[~known])
            raise ValueError(
                f"y contains labels not in classes_ {self.classes_.tolist()!r}: {bad.tolist()!r}"
            )
        dtype = self.coef_.dtype
        if len(self.classes_) == 2:
            return np.where(y == self.classes_[1], 1.0, -1.0).astype(dtype)[None, :]
        return np.stack([np.where(y == c, 1.0, -1.0) for c in self.classes_]).astype(dtype)

    def _class_weights(self, y):
        """``(w_pos, w_neg)`` per binary problem from ``class_weight`` (scikit-learn's
        expansion: binary problems weigh ``classes_[1]`` and ``classes_[0]``, one-vs-rest ones
        the class against 1)."""
        k = len(self.classes_)
        cw = np.ones(k)
        if isinstance(self.class_weight, str):
            counts = np.array([np.sum(y == c) for c in self.classes_], dtype=np.float64)
            cw = len(y) / (k * np.maximum(counts, 1.0))
        elif isinstance(self.class_weight, dict):
            for label, weight in self.class_weight.items():
                hit = np.flatnonzero(self.classes_ == label)
                if hit.size == 0:
                    raise ValueError(f"class_weight names the class {label!r}, which is not in "
                                     f"classes_ {self.classes_.tolist()!r}")
                cw[hit[0]] = _checks.real("class_weight", weight, low=0.0)
        if k == 2:
            return [(float(cw[1]), float(cw[0]))]
        return [(float(c), 1.0) for c in cw]

    def _start(self, n_features, dtype, kept=None):
        """Fresh fitted state for ``classes_``: ``w = 0, b = 0``, or ``kept = (coef,
        intercept)`` (a warm start) in ``dtype``."""
        rows = 1 if len(self.classes_) == 2 else len(self.classes_)
        if kept is None:
            self.coef_ = np.zeros((rows, n_features), dtype=dtype)
            self.intercept_ = np.zeros(rows, dtype=dtype)
        else:
            self.coef_, self.intercept_ = (a.astype(dtype) for a in kept)
        self.t_ = 1
        self.mistakes_ = []
        self.converged_ = False

    # -- training -------------------------------------------------------------------------------
    def _train(self, X, S, max_iter, rng, incremental, weights):
        """Up to ``max_iter`` epochs of each binary problem (rows of ``S``, class weights
        ``weights``)."""
        n = X.shape[0]
        tol = -np.inf if (self.tol is None or incremental) else float(self.tol)
        val = np.zeros(n, dtype=bool)
        if self.early_stopping and not incremental:
            n_val = int(np.ceil(self.validation_fraction * n))
            if n_val < 2 or n - n_val < 1:
                raise ValueError("The validation set is too small (or leaves no training "
                                 "sample). Change 'validation_fraction'.")
            val[rng.permutation(n)[:n_val]] = True
        train_rows = np.flatnonzero(~val).astype(np.int64)
        epochs = np.zeros((len(S), max_iter), dtype=np.int64)
        n_iter = 0
        out = np.zeros(2)
        for k, s in enumerate(S):
            w = self.coef_[k]
            b = self.intercept_[k : k + 1]
            best = np.inf if not self.early_stopping else -np.inf
            stale = 0
            for epoch in range(max_iter):
                order = rng.permutation(train_rows) if self.shuffle else train_rows
                epoch_loss_kernel(X, s, w, b, float(self.eta0), order,
                                  bool(self.fit_intercept), *weights[k], out)
                epochs[k, epoch] = int(out[0])
                if not (np.isfinite(w).all() and np.isfinite(b).all()):
                    raise ValueError(f"Floating-point under-/overflow occurred at epoch "
                                     f"#{epoch + 1}. Scaling input data with StandardScaler "
                                     "or MinMaxScaler might help.")
                if self.early_stopping and not incremental:
                    score = float(np.mean((X[val] @ w.astype(np.float64) + b[0] > 0)
                                          == (s[val] > 0)))
                    stale = stale + 1 if score < best + tol else 0
                    best = max(best, score)
                else:
                    objective = out[1] / len(train_rows)
                    stale = stale + 1 if objective > best - tol else 0
                    best = min(best, objective)
                if self.verbose:
                    print(f"-- Epoch {epoch + 1} (class {k}): {int(out[0])} mistakes, "
                          f"Avg. loss: {out[1] / len(train_rows):f}")
                if stale >= self.n_iter_no_change:
                    break
            n_iter = max(n_iter, epoch + 1)
        self.n_iter_ = n_iter
        self.t_ += n_iter * n  # all rows, early stopping's validation rows too, as scikit-learn
        mistakes = epochs[:, :n_iter].sum(axis=0)
        self.mistakes_.extend(int(m) for m in mistakes)
        self.converged_ = bool(mistakes[-1] == 0)
        if not incremental and self.tol is not None and n_iter == self.max_iter:
            warnings.warn(
                "Maximum number of iteration reached before convergence. Consider increasing "
                f"max_iter to improve the fit (Perceptron, max_iter={self.max_iter}; last "
                f"epoch: {self.mistakes_[-1]} mistakes).", ConvergenceWarning, stacklevel=3,
            )

    def fit(self, X, y):
        """Train from ``w = 0, b = 0`` (or from the current weights with ``warm_start``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (two or more distinct values).

        Returns
        -------
        self

        Warns
        -----
        ConvergenceWarning
            When ``max_iter`` epochs ran without meeting the stopping rule.
        """
        dtype = self._check_params()
        X, y = validate(self, X, y, reset=True)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"The number of classes has to be greater than one; got 1 class: "
                             f"{classes.tolist()!r}")
        kept = None
        if self.warm_start and hasattr(self, "coef_"):
            # scikit-learn continues from coef_ whenever its shape fits these data (the labels
            # may differ) and raises otherwise
            shape = (1 if len(classes) == 2 else len(classes), X.shape[1])
            if self.coef_.shape != shape:
                raise ValueError(
                    f"warm_start: coef_ of shape {self.coef_.shape} does not match dataset "
                    f"({len(classes)} classes, {X.shape[1]} features need {shape}); fit with "
                    "warm_start=False to start again")
            kept = (self.coef_, self.intercept_)
        self.classes_ = classes
        self._start(X.shape[1], dtype, kept)
        X = as_work_array(X, self.coef_.dtype)
        self._train(X, self._signs(y), int(self.max_iter), _generator(self.random_state),
                    incremental=False, weights=self._class_weights(y))
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)`` from the current ``coef_`` and ``intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), optional
            All labels; required on the first call.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            With ``early_stopping=True``, on every call (scikit-learn refuses it on the first
            call only and, after a ``fit``, holds out a validation split in each
            ``partial_fit`` epoch; ours holds none out, so it refuses rather than differ).
        """
        first = not hasattr(self, "coef_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        dtype = self._check_params()
        if self.early_stopping:
            raise ValueError("early_stopping should be False with partial_fit")
        if isinstance(self.class_weight, str):
            raise ValueError("class_weight 'balanced' is not supported for partial_fit (the "
                             "class frequencies of all the data are not known); use a dict")
        X, y = validate(self, X, y, reset=first)
        check_classification_targets(y)
        if first:
            self.classes_ = np.unique(np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError("classes must hold at least 2 distinct labels")
            self._start(X.shape[1], dtype)
            self._rng = _generator(self.random_state)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={np.unique(classes).tolist()!r} is not the same as on the first call "
                f"to partial_fit, was {self.classes_.tolist()!r}"
            )
        if getattr(self, "_rng", None) is None:
            self._rng = _generator(self.random_state)
        self._train(as_work_array(X, self.coef_.dtype), self._signs(y), 1, self._rng,
                    incremental=True, weights=self._class_weights(y))
        return self

    # -- prediction -----------------------------------------------------------------------------
    def decision_function(self, X):
        r"""Signed scores :math:`\mathbf{w}\cdot\mathbf{x} + b` (float64).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes one score, positive for ``classes_[1]``.
        """
        check_is_fitted(self, "coef_")
        X = validate(self, X, reset=False)
        scores = (np.asarray(X, dtype=np.float64) @ self.coef_.astype(np.float64).T
                  + self.intercept_.astype(np.float64))
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, X):
        """Threshold neuron: for two classes ``classes_[1]`` where the score is > 0, else
        ``classes_[0]``; for more, the class of the largest score.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(np.intp)]
        return self.classes_[np.argmax(scores, axis=1)]


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
    mistakes of :class:`Perceptron` trained from zero (``eta0=1``, or any ``eta0``), over all
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
