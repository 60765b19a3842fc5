r"""The perceptron learning rule of the lecture notes, with a learning rate.

For labels :math:`y^{(n)} \in \{-1, +1\}` and samples visited one at a time in a given order:

.. math::

    s = \mathbf{w} \cdot \mathbf{x}^{(n)} + b, \qquad
    \text{if } y^{(n)} s \le 0: \quad
    \mathbf{w} \leftarrow \mathbf{w} + \eta\, y^{(n)} \mathbf{x}^{(n)}, \quad
    b \leftarrow b + \eta\, y^{(n)}

With :math:`\eta = 1` and the bias folded into :math:`\mathbf{w}` this is the notes'
:math:`\mathbf{w}^{(k+1)} = \mathbf{w}^{(k)} + y^{(n)} \mathbf{x}^{(n)}`. A sample exactly on
the boundary (:math:`s = 0`) counts as a mistake whatever its label, so training from
:math:`\mathbf{w} = 0, b = 0` always makes a first update.

Prediction is the threshold neuron: :math:`+1` if :math:`s > 0` ("fires when the weighted sum
exceeds the threshold"), else :math:`-1`; so :math:`s = 0` predicts :math:`-1` (consistent
with the ``step`` activation, :math:`z > 0`).

Arithmetic: :math:`s` is accumulated in float64 (each product in float64, features in index
order, starting from :math:`b`), and each update is computed in float64 as
:math:`w_j + (\eta y) x_j` and rounded once into the dtype of ``w``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import _checks


@njit(inline="always", cache=True)
def score_scalar(X, n, w, b0):
    """``s = b0 + sum_j w[j] * X[n, j]`` accumulated in float64 in index order."""
    s = np.float64(b0)
    for j in range(X.shape[1]):
        s += np.float64(w[j]) * np.float64(X[n, j])
    return s


@njit(cache=True)
def epoch_loss_kernel(X, y, w, b, lr, order, fit_intercept, w_pos, w_neg, out):
    r"""One pass of the perceptron rule over ``order[0], order[1], ...`` (see
    :func:`epoch_kernel`); ``fit_intercept=False`` keeps ``b`` fixed, and the step of a
    mistake on a positive (negative) sample is multiplied by ``w_pos`` (``w_neg``), the class
    weights (1 and 1: the plain rule, bit for bit).

    Writes ``out[0]`` = the number of mistakes and ``out[1]`` = the summed perceptron loss
    :math:`\sum_n \max(0, -y^{(n)} s^{(n)})` (scikit-learn's, both counted before each
    sample's own update).
    """
    mistakes = 0
    loss = 0.0
    lr64 = np.float64(lr)
    d = X.shape[1]
    for t in range(order.shape[0]):
        n = order[t]
        yn = np.float64(y[n])
        s = score_scalar(X, n, w, b[0])
        if yn * s <= 0.0:
            mistakes += 1
            loss -= yn * s
            step = lr64 * yn * (w_pos if yn > 0.0 else w_neg)
            for j in range(d):
                w[j] = np.float64(w[j]) + step * np.float64(X[n, j])
            if fit_intercept:
                b[0] = np.float64(b[0]) + step
    out[0] = mistakes
    out[1] = loss


@njit(cache=True)
def epoch_kernel(X, y, w, b, lr, order):
    """One pass of the perceptron rule over the samples ``order[0], order[1], ...``.

    Updates ``w`` (n_features,) and ``b`` (1,) in place and returns the number of mistakes
    (samples with ``y * s <= 0``), counted before each sample's own update.
    """
    out = np.zeros(2)
    epoch_loss_kernel(X, y, w, b, lr, order, True, 1.0, 1.0, out)
    return int(out[0])


@njit(cache=True)
def predict_kernel(X, w, b, out):
    """``out[n] = +1`` if ``s_n > 0`` else ``-1``."""
    for n in range(X.shape[0]):
        out[n] = 1.0 if score_scalar(X, n, w, b[0]) > 0.0 else -1.0


def _params(X, w, b, writable):
    _checks.float_array("X", X, ndim=2, finite=True)
    _checks.nonempty("X", X)
    n_features = X.shape[1]
    _checks.float_array("w", w, ndim=1, dtype=X.dtype, finite=True, writable=writable)
    _checks.shape("w", w, (n_features,))
    _checks.float_array("b", b, dtype=X.dtype, finite=True, writable=writable)
    _checks.shape("b", b, (1,))


def _labels(y, n, dtype):
    if not isinstance(y, np.ndarray):
        raise TypeError(f"y must be a numpy.ndarray, got {type(y).__name__}")
    if y.dtype.kind not in "iuf":
        raise TypeError(f"y must have an integer or float dtype, got {y.dtype}")
    _checks.shape("y", y, (n,))
    if not np.all((y == 1) | (y == -1)):
        bad = y[~((y == 1) | (y == -1))][0]
        raise ValueError(f"y must contain only -1 and +1, found {bad!r}")
    return np.ascontiguousarray(y, dtype=dtype)


def _order(order, n):
    if order is None:
        return np.arange(n, dtype=np.int64)
    if not isinstance(order, np.ndarray):
        raise TypeError(f"order must be a numpy.ndarray or None, got {type(order).__name__}")
    if order.dtype.kind not in "iu":
        raise TypeError(f"order must have an integer dtype, got {order.dtype}")
    _checks.shape("order", order, (n,))
    if order.size and (order.min() < 0 or order.max() >= n):
        raise ValueError(
            f"order must index samples in [0, {n}), got range [{order.min()}, {order.max()}]"
        )
    if np.bincount(order, minlength=n).max(initial=0) > 1:
        raise ValueError("order must be a permutation of 0..n-1 (an index appears twice)")
    return np.ascontiguousarray(order, dtype=np.int64)


def perceptron_epoch(X, y, w, b, lr=1.0, order=None):
    r"""One epoch of the perceptron rule, updating ``w`` and ``b`` in place.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Samples, float32 or float64, finite, C-contiguous, not empty.
    y : ndarray of shape (n_samples,)
        Labels, only -1 and +1 (integer or float dtype; converted to ``X``'s dtype).
    w : ndarray of shape (n_features,)
        Weights, same dtype as ``X``; updated in place.
    b : ndarray of shape (1,)
        Bias, same dtype as ``X``; updated in place.
    lr : float > 0, default=1.0
        Learning rate :math:`\eta` (1 is the notes' rule).
    order : ndarray of int, shape (n_samples,), optional
        Visiting order, a permutation of ``0..n_samples-1`` (e.g. a shuffled epoch); default
        ``0, 1, ..., n_samples-1``.

    Returns
    -------
    int
        Number of mistakes (samples with :math:`y s \le 0`) made during the epoch; zero means
        the data are separated by the returned ``w, b``.
    """
    _params(X, w, b, writable=True)
    n = X.shape[0]
    y = _labels(y, n, X.dtype)
    lr = _checks.real("lr", lr, low=0.0, low_open=True)
    order = _order(order, n)
    return int(epoch_kernel(X, y, w, b, lr, order))


def perceptron_predict(X, w, b):
    """Threshold-neuron prediction: ``+1`` where ``w.x + b > 0``, else ``-1``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    w : ndarray of shape (n_features,)
    b : ndarray of shape (1,)

    Returns
    -------
    ndarray of shape (n_samples,), dtype of ``X``
        Labels in {-1, +1}; a sample with ``s == 0`` gets ``-1``.
    """
    _params(X, w, b, writable=False)
    out = np.empty(X.shape[0], dtype=X.dtype)
    predict_kernel(X, w, b, out)
    return out
