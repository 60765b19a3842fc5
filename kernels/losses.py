r"""Loss functions of the lecture notes: value (batch mean) and gradient.

Per-sample losses, for targets :math:`y` and predictions :math:`y^*` (or logits :math:`z`):

================================  =========================================================
name                              per-sample loss
================================  =========================================================
``squared``                       :math:`\tfrac12 \sum_j (y_j - y^*_j)^2`
``binary_cross_entropy``          :math:`\sum_j -y_j \log y^*_j - (1 - y_j)\log(1 - y^*_j)`,
                                  :math:`y^*` clipped to :math:`[\epsilon, 1 - \epsilon]`
``binary_cross_entropy_logits``   same with :math:`y^* = \sigma(z)`, computed stably as
                                  :math:`\max(z, 0) - z y + \log(1 + e^{-|z|})`
``cross_entropy``                 :math:`-\sum_j y_j \log y^*_j` (:math:`y^*` clipped)
``cross_entropy_logits``          :math:`\operatorname{logsumexp}(z) - \sum_j y_j z_j`
                                  (softmax fused, max-shifted)
================================  =========================================================

The value returned is the mean over the batch; the gradient is that of the mean with respect to
the predictions (or logits): e.g. :math:`(y^* - y)/N` for squared loss and for both logit forms.
Targets are float arrays shaped like the predictions; the cross-entropy forms also accept
integer class labels of shape ``(n_samples,)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import _checks
from .activations import sigmoid_scalar
from .config import PROB_EPS32, PROB_EPS64
from .views import row

SQUARED, BCE, BCE_LOGITS, CE, CE_LOGITS = range(5)
#: One more than the largest code: the batch kernels reject codes outside ``[0, N_CODES)``.
N_CODES = 5

#: Loss codes by name (the compiled kernels take the integer code).
LOSSES = {
    "squared": SQUARED,
    "binary_cross_entropy": BCE,
    "binary_cross_entropy_logits": BCE_LOGITS,
    "cross_entropy": CE,
    "cross_entropy_logits": CE_LOGITS,
}
_CE_FAMILY = ("cross_entropy", "cross_entropy_logits")


@njit(inline="always", cache=True)
def bce_logits_scalar(y, z):
    """Stable ``-y log s(z) - (1 - y) log(1 - s(z))`` with ``s`` the sigmoid."""
    return max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z)))


@njit(inline="always", cache=True)
def _lse_exps(p, e, keep):
    """``(lse, s)`` of a 1-D row of logits: the max-shifted ``lse = m + log(s)``, ``s =
    sum_j exp(p_j - m)`` summed in float64, with each ``exp(p_j - m)`` kept in ``e`` when
    ``keep``: the softmax is then ``e / s``, without a second ``exp`` per output.

    ``math.exp`` here is a scalar libm call per output (``expf`` in float32). Tried on
    2026-12-07 and not kept: the training step's float32 rows with their numerators from one
    flat loop over the batch's max-shifted logits through
    :func:`dlbasics.kernels.vecmath.exp`, which vectorises (then these sums, in the same
    order). On the 2-core benchmark machine the output rows of 64-100-10 at 100 rows took 3.3
    against 4.8 us on one thread, and a digits fit of ``MLPClassifier(solver="sgd")`` (100
    epochs) 48.1-48.9 against 49.9-59.1 ms (the fastest of 15 fits in each of four
    alternating pairs of processes; 59.1 in the machine's slow state), but the first epoch of
    784-256-256-10 at batch 32 with an empty cache took 13.2-13.4 against 12.0-12.1 s (five
    more compiles; the vectorised exponential is optimised again in each caller it is linked
    into, four deep in the column split). The training step's class-major output layer
    (:func:`dlbasics.kernels.network.class_major_loss_kernel`, since the same day) calls it;
    that layer as a whole made a digits fit take 6-8% less time and a first fit's compiling
    0.8-1.5 s longer (see :func:`dlbasics.kernels.network.forward`; the exponential's share of
    either not measured)."""
    m = p[0]
    for j in range(1, p.shape[0]):
        if p[j] > m:
            m = p[j]
    s = 0.0
    for j in range(p.shape[0]):
        x = math.exp(p[j] - m)
        s += x
        if keep:
            e[j] = x
    return m + math.log(s), s


@njit(inline="always", cache=True)
def dense_row(code, y, p, grad, want_grad, eps, inv_n, total):
    """``total`` plus the loss of one row (1-D ``y``, ``p``); gradient row times ``inv_n`` into
    ``grad`` when ``want_grad``. Shared by :func:`loss_dense_kernel` and the GPU twin."""
    k = p.shape[0]
    if code == CE_LOGITS:
        lse, s = _lse_exps(p, grad, want_grad)
        ysum = 0.0
        for j in range(k):
            total += y[j] * (lse - p[j])
            ysum += y[j]
        if want_grad:
            f = 1.0 / s
            for j in range(k):
                grad[j] = (grad[j] * f * ysum - y[j]) * inv_n
        return total
    for j in range(k):
        yj = y[j]
        pj = p[j]
        if code == SQUARED:
            d = pj - yj
            total += 0.5 * d * d
            gj = d
        elif code == BCE_LOGITS:
            total += bce_logits_scalar(yj, pj)
            gj = sigmoid_scalar(pj) - yj
        elif code == BCE:
            q = min(max(pj, eps), 1.0 - eps)
            total += -yj * math.log(q) - (1.0 - yj) * math.log(1.0 - q)
            gj = (q - yj) / (q * (1.0 - q))
        else:  # CE from probabilities (the batch kernels reject unknown codes first)
            q = max(pj, eps)
            total += -yj * math.log(q)
            gj = -yj / q
        if want_grad:
            grad[j] = gj * inv_n
    return total


@njit(inline="always", cache=True)
def label_row(code, c, p, grad, want_grad, eps, inv_n, total):
    """``total`` plus the cross-entropy of one row with class label ``c`` (``code`` CE or
    CE_LOGITS). Shared by :func:`loss_labels_kernel` and the GPU twin."""
    k = p.shape[0]
    if code == CE_LOGITS:
        lse, s = _lse_exps(p, grad, want_grad)
        total += lse - p[c]
        if want_grad:
            f = inv_n / s
            for j in range(k):
                grad[j] = grad[j] * f
            grad[c] -= inv_n
    else:
        q = max(p[c], eps)
        total -= math.log(q)
        if want_grad:
            for j in range(k):
                grad[j] = 0.0
            grad[c] = -inv_n / q
    return total


@njit(cache=True)
def loss_dense_kernel(code, y, p, grad, want_grad, eps):
    """Batch-mean loss ``code`` for float targets ``y`` and predictions/logits ``p`` (2-D).

    Writes the gradient of the mean into ``grad`` when ``want_grad``; returns the mean as a
    float64 (summed serially, so the value is bitwise repeatable). An unknown ``code`` raises
    ``ValueError``.
    """
    if not 0 <= code < N_CODES:
        raise ValueError("loss_dense_kernel: unknown loss code")
    n = p.shape[0]
    inv_n = 1.0 / n
    total = 0.0
    for i in range(n):
        total = dense_row(code, row(y, i), row(p, i), row(grad, i if want_grad else 0),
                          want_grad, eps, inv_n,
                          total)
    return total * inv_n


@njit(cache=True)
def loss_labels_kernel(code, labels, p, grad, want_grad, eps):
    """Batch-mean cross-entropy for integer ``labels`` (``code`` is CE or CE_LOGITS; any other
    raises ``ValueError``)."""
    if code != CE and code != CE_LOGITS:
        raise ValueError("loss_labels_kernel: loss code is not a cross-entropy")
    n = p.shape[0]
    inv_n = 1.0 / n
    total = 0.0
    for i in range(n):
        total = label_row(code, labels[i], row(p, i), row(grad, i if want_grad else 0),
                          want_grad, eps,
                          inv_n, total)
    return total * inv_n


def loss_code(name):
    """Integer code of loss ``name`` (see :data:`LOSSES`)."""
    return LOSSES[_checks.choice("loss", name, LOSSES)]


def default_eps(dtype):
    """Probability clip used for ``dtype`` (1e-7 for float32, 1e-12 for float64)."""
    return PROB_EPS32 if np.dtype(dtype) == np.float32 else PROB_EPS64


def _run(name, y_true, y_pred, out, want_grad):
    code = loss_code(name)
    _checks.float_array("y_pred", y_pred, ndim=(1, 2), finite=True)
    _checks.nonempty("y_pred", y_pred)
    p = y_pred.reshape(-1, 1) if y_pred.ndim == 1 else y_pred
    grad = None
    if want_grad:
        grad = _checks.out_array("out", out, y_pred.shape, y_pred.dtype)
        grad2 = grad.reshape(p.shape)
    else:
        grad2 = np.empty((1, 1), dtype=y_pred.dtype)
    eps = default_eps(y_pred.dtype)
    if isinstance(y_true, np.ndarray) and y_true.dtype.kind in "iu":
        if name not in _CE_FAMILY:
            raise TypeError(
                f"y_true has integer dtype {y_true.dtype}; integer class labels are only "
                f"accepted by {_CE_FAMILY}, loss {name!r} needs float targets"
            )
        if y_pred.ndim != 2:
            raise ValueError("y_pred must be 2-D (n_samples, n_classes) with integer labels")
        labels = _checks.int_labels("y_true", y_true, p.shape[0], p.shape[1])
        value = loss_labels_kernel(code, labels, p, grad2, want_grad, eps)
    else:
        _checks.float_array("y_true", y_true, dtype=y_pred.dtype, finite=True)
        _checks.shape("y_true", y_true, y_pred.shape)
        y = y_true.reshape(p.shape)
        value = loss_dense_kernel(code, y, p, grad2, want_grad, eps)
    return float(value), grad


def loss(name, y_true, y_pred):
    """Batch-mean loss.

    Parameters
    ----------
    name : str
        One of :data:`LOSSES`.
    y_true : ndarray of shape (n_samples, n_outputs) or (n_samples,)
        Targets, same dtype as ``y_pred``; for the cross-entropy forms also integer class
        labels of shape (n_samples,).
    y_pred : ndarray of shape (n_samples, n_outputs) or (n_samples,)
        Predictions (probabilities for the probability forms, logits for ``*_logits``).

    Returns
    -------
    float
        Mean over samples of the per-sample loss.
    """
    return _run(name, y_true, y_pred, None, False)[0]


def loss_gradient(name, y_true, y_pred, out=None):
    """Gradient of the batch-mean loss with respect to ``y_pred``.

    Parameters
    ----------
    name, y_true, y_pred
        As in :func:`loss`.
    out : ndarray, optional
        Buffer shaped like ``y_pred``.

    Returns
    -------
    out : ndarray shaped like ``y_pred``
    """
    return _run(name, y_true, y_pred, out, True)[1]


def loss_and_gradient(name, y_true, y_pred, out=None):
    """Both the batch-mean loss and its gradient, in one pass.

    Returns
    -------
    value : float
    grad : ndarray shaped like ``y_pred``
    """
    return _run(name, y_true, y_pred, out, True)
