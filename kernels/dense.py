r"""Dense (fully connected) layer: fused forward and backward.

Forward, for a batch ``x`` of shape ``(n, n_in)``, weights ``W`` of shape ``(n_in, n_out)`` and
bias ``b`` of shape ``(n_out,)``:

.. math::  z = x W + b, \qquad a = f(z)

Backward, from ``delta = dL/dz`` of shape ``(n, n_out)``:

.. math::  \frac{\partial L}{\partial W} = x^T \delta, \qquad
           \frac{\partial L}{\partial b} = \sum_{\text{rows}} \delta, \qquad
           \frac{\partial L}{\partial x} = \delta W^T

(:func:`dlbasics.kernels.activations.activation_backward` turns ``dL/da`` into ``dL/dz``.)

Matrix products use hand-written loops below the thresholds in :mod:`dlbasics.kernels.config` (few
rows, where a BLAS call costs more than it saves; callers may also pass a per-row work
threshold) and BLAS above them (``np.dot`` inside the compiled code, serial Numba, so
OpenBLAS' own threads are the only pool). Both paths are deterministic for a fixed thread
count.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import _checks
from .activations import SOFTMAX, act_flat, activation_code, softmax_rows
from .config import BLAS_MIN_ROWS, BLAS_MIN_WORK, LEAKY_SLOPE
from .views import row


@njit(inline="always", cache=True)
def use_blas(n_rows, n_in, n_out, min_rows, min_work):
    """True when a product of ``(n_rows, n_in) x (n_in, n_out)`` should go to BLAS."""
    return n_rows >= min_rows and n_in * n_out >= min_work


@njit(cache=True)
def matmul_bias_kernel(x, W, b, z, min_rows, min_work):
    """``z = x @ W + b``."""
    n, n_in = x.shape
    n_out = W.shape[1]
    if use_blas(n, n_in, n_out, min_rows, min_work):
        np.dot(x, W, z)
        for i in range(n):
            for j in range(n_out):
                z[i, j] += b[j]
        return
    for i in range(n):
        zi = row(z, i)  # 1-D rows: the inner loops vectorise
        xi = row(x, i)
        for j in range(n_out):
            zi[j] = b[j]
        for k in range(n_in):
            xik = xi[k]
            wk = row(W, k)
            for j in range(n_out):
                zi[j] += xik * wk[j]


@njit(cache=True)
def forward_kernel(x, W, b, code, slope, z, a, min_rows, min_work):
    """Fused ``z = x W + b``; ``a = f(z)`` (``a`` may alias ``z`` when ``z`` is not needed)."""
    matmul_bias_kernel(x, W, b, z, min_rows, min_work)
    if code == SOFTMAX:
        softmax_rows(z, a)
        return
    for i in range(z.shape[0]):
        act_flat(code, row(z, i), row(a, i), slope)


@njit(cache=True)
def grad_weights_kernel(x, delta, dW, db, min_rows, min_work):
    """``dW = x^T delta`` and ``db = sum_rows delta`` (overwrites ``dW``, ``db``)."""
    n, n_in = x.shape
    n_out = delta.shape[1]
    for j in range(n_out):
        db[j] = 0.0
    for i in range(n):
        d = row(delta, i)  # a 1-D row: the loop below vectorises
        for j in range(n_out):
            db[j] += d[j]
    if use_blas(n, n_in, n_out, min_rows, min_work):
        np.dot(x.T, delta, dW)
        return
    for k in range(n_in):
        gk = row(dW, k)
        for j in range(n_out):
            gk[j] = 0.0
    for i in range(n):
        di = row(delta, i)
        xi = row(x, i)
        for k in range(n_in):
            xik = xi[k]
            gk = row(dW, k)
            for j in range(n_out):
                gk[j] += xik * di[j]


@njit(cache=True, fastmath={"reassoc"})
def grad_input_kernel(delta, W, dx, min_rows, min_work):
    """``dx = delta W^T``.

    The loops' dot products may be summed in any (fixed) order (``reassoc``), so that they
    vectorise instead of waiting on one chain of dependent adds; BLAS reorders them too.
    """
    n, n_out = delta.shape
    n_in = W.shape[0]
    if use_blas(n, n_in, n_out, min_rows, min_work):
        np.dot(delta, W.T, dx)
        return
    for i in range(n):
        di = row(delta, i)
        for k in range(n_in):
            wk = row(W, k)
            s = di[0] * wk[0]  # typed like the arrays (float32 stays float32)
            for j in range(1, n_out):
                s += di[j] * wk[j]
            dx[i, k] = s


@njit(cache=True)
def backward_kernel(x, W, delta, dW, db, dx, need_dx, min_rows, min_work):
    """All three gradients of a dense layer; ``dx`` is skipped when ``need_dx`` is False."""
    grad_weights_kernel(x, delta, dW, db, min_rows, min_work)
    if need_dx:
        grad_input_kernel(delta, W, dx, min_rows, min_work)


def _layer_args(x, W, b):
    _checks.float_array("x", x, ndim=2, finite=True)
    _checks.nonempty("x", x)
    _checks.float_array("W", W, ndim=2, dtype=x.dtype)
    _checks.nonempty("W", W)
    if W.shape[0] != x.shape[1]:
        raise ValueError(
            f"W must have shape (n_in, n_out) with n_in = x.shape[1] = {x.shape[1]}, "
            f"got {W.shape}"
        )
    if b is not None:
        _checks.float_array("b", b, ndim=1, dtype=x.dtype)
        _checks.shape("b", b, (W.shape[1],))


def dense_forward(x, W, b, activation="identity", z=None, a=None, slope=LEAKY_SLOPE):
    """Forward pass of a dense layer, bias and activation fused.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_in)
        Inputs, float32 or float64.
    W : ndarray of shape (n_in, n_out)
        Weights, same dtype as ``x``.
    b : ndarray of shape (n_out,)
        Bias.
    activation : str, default="identity"
        Name from :data:`dlbasics.kernels.activations.ACTIVATIONS`.
    z, a : ndarray of shape (n_samples, n_out), optional
        Buffers for the pre-activations and activations (allocated if omitted).
    slope : float, default=0.01
        Negative slope of ``leaky_relu``.

    Returns
    -------
    z : ndarray of shape (n_samples, n_out)
        ``x W + b``.
    a : ndarray of shape (n_samples, n_out)
        ``f(z)``.
    """
    if b is None:
        raise TypeError("b must be a numpy.ndarray of shape (n_out,), got None")
    _layer_args(x, W, b)
    code = activation_code(activation)
    slope = _checks.real("slope", slope)
    shape = (x.shape[0], W.shape[1])
    z = _checks.out_array("z", z, shape, x.dtype)
    a = _checks.out_array("a", a, shape, x.dtype)
    forward_kernel(x, W, b, code, x.dtype.type(slope), z, a, BLAS_MIN_ROWS, BLAS_MIN_WORK)
    return z, a


def dense_backward(x, W, delta, dW=None, db=None, dx=None, need_dx=True):
    """Backward pass of a dense layer from ``delta = dL/dz``.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_in)
        The layer's inputs of the forward pass.
    W : ndarray of shape (n_in, n_out)
        Weights.
    delta : ndarray of shape (n_samples, n_out)
        Gradient of the loss with respect to the pre-activations ``z``.
    dW, db, dx : ndarray, optional
        Output buffers of shapes (n_in, n_out), (n_out,), (n_samples, n_in).
    need_dx : bool, default=True
        Compute ``dx`` (not needed for the first layer).

    Returns
    -------
    dW : ndarray of shape (n_in, n_out)
        ``x^T delta``.
    db : ndarray of shape (n_out,)
        ``delta`` summed over rows.
    dx : ndarray of shape (n_samples, n_in) or None
        ``delta W^T``, or None when ``need_dx`` is False.
    """
    _layer_args(x, W, None)
    _checks.float_array("delta", delta, ndim=2, dtype=x.dtype, finite=True)
    _checks.shape("delta", delta, (x.shape[0], W.shape[1]))
    dW = _checks.out_array("dW", dW, W.shape, x.dtype)
    db = _checks.out_array("db", db, (W.shape[1],), x.dtype)
    if need_dx:
        dx = _checks.out_array("dx", dx, x.shape, x.dtype)
        dx_buf = dx
    else:
        dx_buf = np.empty((0, 0), dtype=x.dtype)
    backward_kernel(x, W, delta, dW, db, dx_buf, bool(need_dx), BLAS_MIN_ROWS, BLAS_MIN_WORK)
    return dW, db, (dx if need_dx else None)
