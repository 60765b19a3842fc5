"""GPU twins of :mod:`dlbasics.kernels.losses`: batch-mean loss and its gradient.

One block of ``R`` threads (``R`` the largest power of two <= ``THREADS_PER_BLOCK``) takes the
rows in a grid-stride loop: each thread adds the losses of its rows (in float64) to its own
partial sum and writes their gradient rows; the partial sums are then added by a tree in shared
memory, in a fixed order, so the value is bitwise repeatable for a given ``R``. (It differs from
the CPU's serial sum by float64 rounding only.)

The per-row formulas are :func:`dense_row` and :func:`label_row`: ``@njit(inline="always")``
functions (runnable on the CPU as well) that do exactly what the row loop of
:func:`dlbasics.kernels.losses.loss_dense_kernel` /
:func:`~dlbasics.kernels.losses.loss_labels_kernel` does, with the CPU's
:func:`~dlbasics.kernels.losses.bce_logits_scalar` and
:func:`~dlbasics.kernels.activations.sigmoid_scalar`. The fused small-network kernels
(:mod:`dlbasics.kernels.gpu_population`) call them row by row, in the CPU's order.

Host arrays in, host arrays out; device arrays in, device arrays out (see
:mod:`dlbasics.kernels._gpu_arrays`); the loss value is always returned as a Python float.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import float64

from . import _checks
from . import gpu_config as g
from ._gpu_arrays import Call, dummy, float_array
from .losses import _CE_FAMILY, default_eps, dense_row, label_row, loss_code

__all__ = ["gpu_loss", "gpu_loss_gradient", "gpu_loss_and_gradient"]

cuda = None  # numba.cuda, bound by _kernels() on first use (import-safe without numba-cuda)

#: What the loss kernel does with the batch-mean ``value`` (thread 0, after the reduction).
#: ``MODE_STORE``: ``res[0] = value``. ``MODE_EPOCH``: update the epoch record
#: ``res = [sum of value * rows, updates, rows, diverged]`` as
#:func:`dlbasics.models._core.epoch_kernel` : does (a non-finite value sets ``res[0] = value`` and
#``res[3] = 1``; nothing changes once : ``res[3]`` is set).
MODE_STORE, MODE_EPOCH = 0, 1


@functools.cache
def _kernels(threads):
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()

    @cuda.jit
    def loss(code, Y, labels, P, G, want_grad, dense, eps, res, mode):
        """Batch-mean loss of ``P`` (n, k) against ``Y`` or ``labels``; see the module doc."""
        Y = A(Y)
        labels = A(labels)
        P = A(P)
        G = A(G)
        res = A(res)
        n = P.shape[0]
        inv_n = 1.0 / n
        tid = cuda.threadIdx.x
        part = cuda.shared.array(threads, float64)
        total = 0.0
        for i in range(tid, n, threads):
            if dense:
                total = dense_row(code, Y[i], P[i], G[i], want_grad, eps, inv_n, total)
            else:
                total = label_row(code, labels[i], P[i], G[i], want_grad, eps, inv_n, total)
        part[tid] = total
        cuda.syncthreads()
        s = threads // 2
        while s > 0:
            if tid < s:
                part[tid] += part[tid + s]
            cuda.syncthreads()
            s //= 2
        if tid == 0:
            value = part[0] * inv_n
            if mode == MODE_STORE:
                res[0] = value
            elif res[3] == 0.0:
                res[2] += n
                if math.isfinite(value):
                    res[0] += value * n
                    res[1] += 1.0
                else:
                    res[0] = value
                    res[3] = 1.0

    return loss


def launch_loss(code, Y, labels, P, G, want_grad, dense, eps, res, mode=MODE_STORE):
    """Launch the loss kernel on device arrays (``G`` may be ``P`` when not ``want_grad``;
    ``Y`` or ``labels`` may be dummies, per ``dense``)."""
    threads = g.reduce_threads()
    g.launch(_kernels(threads), 1, threads, int(code), Y, labels, P, G, bool(want_grad),
             bool(dense), float(eps), res, int(mode))


def _run(name, y_true, y_pred, out, want_grad):
    code = loss_code(name)
    y_pred = float_array("y_pred", y_pred, ndim=(1, 2), finite=True)
    _checks.nonempty("y_pred", y_pred)
    dtype = y_pred.dtype
    p_shape = (y_pred.shape[0], 1) if y_pred.ndim == 1 else tuple(y_pred.shape)
    is_labels = np.dtype(getattr(y_true, "dtype", np.float64)).kind in "iu"
    if is_labels:
        if name not in _CE_FAMILY:
            raise TypeError(
                f"y_true has integer dtype {y_true.dtype}; integer class labels are only "
                f"accepted by {_CE_FAMILY}, loss {name!r} needs float targets"
            )
        if y_pred.ndim != 2:
            raise ValueError("y_pred must be 2-D (n_samples, n_classes) with integer labels")
        if g.is_device_array(y_true):
            y_true = g.as_device(y_true)
            _checks.shape("y_true", y_true, (p_shape[0],))
        else:
            y_true = _checks.int_labels("y_true", y_true, p_shape[0], p_shape[1])
    else:
        y_true = float_array("y_true", y_true, dtype=dtype, finite=True)
        _checks.shape("y_true", y_true, y_pred.shape)
    call = Call(y_true, y_pred, out)
    g.require_cuda()
    dp = call.input(y_pred).reshape(*p_shape)
    dy = call.input(y_true)
    grad = None
    dg = dp
    if want_grad:
        grad = call.output("out", out, y_pred.shape, dtype)
        dg = grad.reshape(*p_shape)
    res = g.device_zeros(1, np.float64)
    if is_labels:
        launch_loss(code, dummy(dtype, 2), dy, dp, dg, want_grad, False, default_eps(dtype), res)
    else:
        launch_loss(code, dy.reshape(*p_shape), dummy(np.int64), dp, dg, want_grad, True,
                    default_eps(dtype), res)
    call.finish()
    value = float(g.copy_to_host(res)[0])
    return value, (call.result(grad) if want_grad else None)


def gpu_loss(name, y_true, y_pred):
    """GPU :func:`dlbasics.kernels.losses.loss`: batch-mean loss as a Python float.

    Parameters
    ----------
    name : str
        One of :data:`dlbasics.kernels.losses.LOSSES`.
    y_true : array of shape (n_samples, n_outputs) or (n_samples,)
        Targets, same dtype as ``y_pred``; integer class labels (n_samples,) for the
        cross-entropy forms (range-checked for host arrays only).
    y_pred : array of shape (n_samples, n_outputs) or (n_samples,)

    Returns
    -------
    float
    """
    return _run(name, y_true, y_pred, None, False)[0]


def gpu_loss_gradient(name, y_true, y_pred, out=None):
    """GPU :func:`dlbasics.kernels.losses.loss_gradient`: gradient of the batch-mean loss.

    Returns
    -------
    out : array shaped like ``y_pred`` (device array in device mode)
    """
    return _run(name, y_true, y_pred, out, True)[1]


def gpu_loss_and_gradient(name, y_true, y_pred, out=None):
    """GPU :func:`dlbasics.kernels.losses.loss_and_gradient`: ``(value, gradient)`` in one pass."""
    return _run(name, y_true, y_pred, out, True)
