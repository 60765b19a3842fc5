r"""GPU twin of :mod:`dlbasics.kernels.perceptron`: the perceptron rule, one epoch in one launch.

An epoch is sequential by nature (each sample sees the weights its predecessors left), so one
block of ``R`` threads (``R`` the largest power of two <= ``THREADS_PER_BLOCK``) walks the
samples in order and cooperates on each of them: the threads add the products
:math:`w_j x_j` of their features (stride ``R``, in float64) and a tree in shared memory adds
the partial sums in a fixed order; every thread then sees :math:`s = b + \sum_j w_j x_j`, and on
a mistake (:math:`y s \le 0`) the threads update their own features, thread 0 the bias. The
update arithmetic is the CPU's (:math:`w_j + (\eta y) x_j` in float64, rounded once).

The score is summed in a different order than on the CPU (a tree instead of a left-to-right
loop), so a sample whose score is within float64 rounding of zero may be classified
differently; with exactly representable data (small integers, dyadic fractions) both give the
same bits. Prediction uses the CPU's own :func:`dlbasics.kernels.perceptron.score_scalar`, one
thread per sample.

Host arrays in, host arrays out (``w``, ``b`` updated in place); device arrays in, device
arrays out (see :mod:`dlbasics.kernels._gpu_arrays`).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import float64

from . import _checks
from . import gpu_config as g
from ._gpu_arrays import Call, float_array, int_array
from .perceptron import _labels, _order, score_scalar

__all__ = ["gpu_perceptron_epoch", "gpu_perceptron_predict"]

cuda = None  # numba.cuda, bound by _kernels() on first use (import-safe without numba-cuda)


@functools.cache
def _kernels(threads):
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()

    @cuda.jit
    def epoch(X, y, w, b, lr, order, out):
        """One epoch over ``order``; ``out[0]`` = number of mistakes."""
        X = A(X)
        y = A(y)
        w = A(w)
        b = A(b)
        order = A(order)
        out = A(out)
        tid = cuda.threadIdx.x
        part = cuda.shared.array(threads, float64)
        d = X.shape[1]
        lr64 = np.float64(lr)
        mistakes = 0
        for t in range(order.shape[0]):
            n = order[t]
            acc = 0.0
            for j in range(tid, d, threads):
                acc += np.float64(w[j]) * np.float64(X[n, j])
            part[tid] = acc
            cuda.syncthreads()
            s = threads // 2
            while s > 0:
                if tid < s:
                    part[tid] += part[tid + s]
                cuda.syncthreads()
                s //= 2
            yn = np.float64(y[n])
            score = np.float64(b[0]) + part[0]
            cuda.syncthreads()  # everyone has read b and part[0] before they change
            if yn * score <= 0.0:
                step = lr64 * yn
                for j in range(tid, d, threads):
                    w[j] = np.float64(w[j]) + step * np.float64(X[n, j])
                if tid == 0:
                    b[0] = np.float64(b[0]) + step
                    mistakes += 1
            cuda.syncthreads()  # updates visible before the next sample
        if tid == 0:
            out[0] = mistakes

    @cuda.jit
    def predict(X, w, b, out):
        """``out[n] = +1`` if ``s_n > 0`` else ``-1``, one thread per sample."""
        X = A(X)
        w = A(w)
        b = A(b)
        out = A(out)
        for n in range(cuda.grid(1), X.shape[0], cuda.gridsize(1)):
            out[n] = 1.0 if score_scalar(X, n, w, b[0]) > 0.0 else -1.0

    return epoch, predict


def _params(X, w, b, writable):
    X = float_array("X", X, ndim=2, finite=True)
    _checks.nonempty("X", X)
    n_features = X.shape[1]
    w = float_array("w", w, ndim=1, dtype=X.dtype, finite=True, writable=writable)
    _checks.shape("w", w, (n_features,))
    b = float_array("b", b, dtype=X.dtype, finite=True, writable=writable)
    _checks.shape("b", b, (1,))
    return X, w, b


def gpu_perceptron_epoch(X, y, w, b, lr=1.0, order=None):
    r"""GPU :func:`dlbasics.kernels.perceptron.perceptron_epoch`: one epoch, ``w`` and ``b`` in
    place.

    Parameters
    ----------
    X : ndarray or device array of shape (n_samples, n_features)
    y : array of shape (n_samples,)
        Labels -1/+1 (host labels are checked and converted to ``X``'s dtype; device labels
        must already hold -1/+1 in ``X``'s dtype).
    w : array of shape (n_features,)
        Updated in place (a device array in device mode).
    b : array of shape (1,)
        Updated in place.
    lr : float > 0, default=1.0
    order : int array of shape (n_samples,), optional
        A permutation of ``0..n_samples-1`` (checked when on the host).

    Returns
    -------
    int
        Number of mistakes in the epoch.
    """
    X, w, b = _params(X, w, b, writable=True)
    n = X.shape[0]
    if g.is_device_array(y):
        y = float_array("y", y, ndim=1, dtype=X.dtype)
        _checks.shape("y", y, (n,))
    else:
        y = _labels(y, n, X.dtype)
    lr = _checks.real("lr", lr, low=0.0, low_open=True)
    if order is not None and g.is_device_array(order):
        order = int_array("order", order)
        _checks.shape("order", order, (n,))
    else:
        order = _order(order, n)
    call = Call(X, y, w, b, order)
    g.require_cuda()
    dX, dy, dorder = call.input(X), call.input(y), call.input(order)
    dw, db = call.inplace("w", w), call.inplace("b", b)
    out = g.device_zeros(1, np.int64)
    threads = g.reduce_threads()
    g.launch(_kernels(threads)[0], 1, threads, dX, dy, dw, db, lr, dorder, out)
    call.finish()
    return int(g.copy_to_host(out)[0])


def gpu_perceptron_predict(X, w, b):
    """GPU :func:`dlbasics.kernels.perceptron.perceptron_predict`: ``+1`` where ``w.x + b > 0``,
    else -1.

    Returns
    -------
    array of shape (n_samples,), dtype of ``X`` (device array in device mode)
    """
    X, w, b = _params(X, w, b, writable=False)
    call = Call(X, w, b)
    g.require_cuda()
    dX, dw, db = call.input(X), call.input(w), call.input(b)
    out = call.output("out", None, (X.shape[0],), X.dtype)
    g.launch(_kernels(g.reduce_threads())[1], *g.grid_1d(X.shape[0]), dX, dw, db, out)
    call.finish()
    return call.result(out)
