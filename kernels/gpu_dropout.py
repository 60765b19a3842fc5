"""GPU twins of :mod:`dlbasics.kernels.dropout`: the same counter-hash masks, bit for bit.

Every element is a pure function of its counters ``(seed, step, layer, row, unit)``, so one
thread per element (a grid-stride loop over all elements) computes the CPU's mask exactly: the
kernels call the CPU's own :func:`dlbasics.kernels.dropout.row_key` and
:func:`~dlbasics.kernels.dropout.unit_keep` (``uint64`` integer arithmetic and one exact
conversion), with the keep probability passed as float64. Applying a mask and scaling weights
reproduce the CPU's arithmetic (``a * mask * s`` with the float64 scale, rounded once).

:func:`launch_layer_dropout` is the variant of :func:`dlbasics.kernels.network.forward` (the
mask holds the scale, rows are numbered within the batch) used by :mod:`dlbasics.models._cuda`.

Host arrays in, host arrays out; device arrays in, device arrays out (see
:mod:`dlbasics.kernels._gpu_arrays`). :func:`gpu_dropout_mask` has no array input: it returns a
NumPy array unless ``device=True``.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

from . import _checks
from . import gpu_config as g
from ._gpu_arrays import Call, float_array
from .dropout import _counters, _keep_prob, _scale, row_key, unit_keep

__all__ = [
    "gpu_dropout_mask",
    "gpu_dropout_forward",
    "gpu_dropout_apply",
    "gpu_dropout_backward",
    "gpu_scale_weights",
]

cuda = None  # numba.cuda, bound by _kernels() on first use (import-safe without numba-cuda)


@functools.cache
def _kernels():
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()

    @cuda.jit
    def forward(a, seed, step, layer, row_offset, p, s, mask, out, with_out):
        """``mask[i, j] = [u < p]`` and (``with_out``) ``out = a * mask * s``."""
        a = A(a)
        mask = A(mask)
        out = A(out)
        n, k = mask.shape
        for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
            i = e // k
            j = e - i * k
            key = np.uint64(row_key(seed, step, layer, np.uint64(row_offset) + np.uint64(i)))
            m = 1.0 if unit_keep(key, j, p) else 0.0
            mask[i, j] = m
            if with_out:
                out[i, j] = a[i, j] * m * np.float64(s)

    @cuda.jit
    def apply(a, mask, s, out):
        """``out = a * mask * s`` (``s`` float64)."""
        a = A(a)
        mask = A(mask)
        out = A(out)
        n, k = a.shape
        for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
            i = e // k
            j = e - i * k
            out[i, j] = a[i, j] * mask[i, j] * np.float64(s)

    @cuda.jit
    def scale_rows(W, p, out):
        """``out[i, j] = W[i, j] * p[i]`` (``p`` float64)."""
        W = A(W)
        p = A(p)
        out = A(out)
        n, k = W.shape
        for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
            i = e // k
            j = e - i * k
            out[i, j] = W[i, j] * p[i]

    @cuda.jit
    def layer(h, hd, m, seed, step, layer, p, scale, train):
        """Dropout on a layer input as in :func:`dlbasics.kernels.network.forward`: training
        ``m = scale`` or ``0`` per the hash of ``(seed, step, layer, i, k)`` and ``hd = h * m``;
        test time ``hd = h * p``."""
        h = A(h)
        hd = A(hd)
        m = A(m)
        n, k = h.shape
        for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
            i = e // k
            c = e - i * k
            if train:
                key = np.uint64(row_key(seed, step, layer, i))
                m[i, c] = scale if unit_keep(key, c, p) else 0.0
                hd[i, c] = h[i, c] * m[i, c]
            else:
                hd[i, c] = h[i, c] * np.float64(p)

    return forward, apply, scale_rows, layer


# ---------------------------------------------------------------------------------------------
# drivers on 2-D device arrays (no validation)
# ---------------------------------------------------------------------------------------------


def launch_mask(a, seed, step, layer, row_offset, p, s, mask, out, with_out):
    """Fill ``mask`` (and ``out = a * mask * s`` when ``with_out``); device arrays."""
    n, k = mask.shape
    g.launch(_kernels()[0], *g.grid_1d(n * k), a, int(seed), int(step), int(layer),
             int(row_offset), float(p), float(s), mask, out, bool(with_out))


def launch_apply(a, mask, s, out):
    """``out = a * mask * s`` for 2-D device arrays."""
    n, k = a.shape
    g.launch(_kernels()[1], *g.grid_1d(n * k), a, mask, float(s), out)


def launch_layer_dropout(h, hd, m, seed, step, layer, p, scale, train):
    """Dropout of an MLP layer input (see the ``layer`` kernel); device arrays."""
    n, k = h.shape
    g.launch(_kernels()[3], *g.grid_1d(n * k), h, hd, m, int(seed), int(step), int(layer),
             float(p), float(scale), bool(train))


# ---------------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------------


def _as_2d(d):
    return d.reshape(1, d.shape[0]) if d.ndim == 1 else d


def gpu_dropout_mask(shape, p, seed, step=0, layer=0, row_offset=0, dtype=np.float32,
                     device=False):
    """GPU :func:`dlbasics.kernels.dropout.dropout_mask`: the same mask, bit for bit.

    Parameters
    ----------
    shape, p, seed, step, layer, row_offset, dtype
        As in :func:`dlbasics.kernels.dropout.dropout_mask`.
    device : bool, default=False
        Return the device array instead of copying the mask to the host.

    Returns
    -------
    mask : ndarray (or device array) of ``shape``
    """
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, tuple) or len(shape) not in (1, 2):
        raise ValueError(f"shape must be an int or a tuple of 1 or 2 ints, got {shape!r}")
    dims = tuple(_checks.integer("shape", d, low=0) for d in shape)
    dt = np.dtype(dtype)
    if dt not in _checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    p = _keep_prob(p)
    n_rows = dims[0] if len(dims) == 2 else 1
    seed, step, layer, row_offset = _counters(seed, step, layer, row_offset, n_rows)
    g.require_cuda()
    mask = g.device_array(dims, dt)
    if mask.size:
        m2 = _as_2d(mask)
        launch_mask(m2, seed, step, layer, row_offset, p, 1.0, m2, m2, False)
    return mask if device else g.copy_to_host(mask)


def gpu_dropout_forward(a, p, seed, step=0, layer=0, row_offset=0, inverted=False, out=None,
                        mask=None):
    """GPU :func:`dlbasics.kernels.dropout.dropout_forward`: draw the mask and apply it.

    Parameters are as in :func:`dlbasics.kernels.dropout.dropout_forward` (``out``, ``mask``: device
    arrays in device mode).

    Returns
    -------
    out, mask : arrays shaped like ``a``
    """
    a = float_array("a", a, ndim=(1, 2))
    p = _keep_prob(p)
    s = _scale(p, inverted)
    n_rows = a.shape[0] if a.ndim == 2 else 1
    seed, step, layer, row_offset = _counters(seed, step, layer, row_offset, n_rows)
    if mask is not None and (mask is a or mask is out):
        raise ValueError("mask must not overlap a or out")
    if not g.is_device_array(a) and mask is not None and isinstance(mask, np.ndarray):
        if np.shares_memory(mask, a) or (out is not None and np.shares_memory(mask, out)):
            raise ValueError("mask must not overlap a or out")
    call = Call(a, out, mask)
    g.require_cuda()
    da = call.input(a)
    dout = call.output("out", out, a.shape, a.dtype)
    dmask = call.output("mask", mask, a.shape, a.dtype)
    if a.size:
        launch_mask(_as_2d(da), seed, step, layer, row_offset, p, s, _as_2d(dmask),
                    _as_2d(dout), True)
    call.finish()
    return call.result(dout), call.result(dmask)


def _apply(name, a, mask, p, inverted, out):
    a = float_array(name, a, ndim=(1, 2))
    mask = float_array("mask", mask, dtype=a.dtype)
    _checks.shape("mask", mask, a.shape)
    s = _scale(_keep_prob(p), inverted)
    call = Call(a, mask, out)
    g.require_cuda()
    da, dm = call.input(a), call.input(mask)
    dout = call.output("out", out, a.shape, a.dtype)
    if a.size:
        launch_apply(_as_2d(da), _as_2d(dm), s, _as_2d(dout))
    call.finish()
    return call.result(dout)


def gpu_dropout_apply(a, mask, p, inverted=False, out=None):
    """GPU :func:`dlbasics.kernels.dropout.dropout_apply`: ``out = a * mask`` (``/ p`` if
    inverted)."""
    return _apply("a", a, mask, p, inverted, out)


def gpu_dropout_backward(delta, mask, p, inverted=False, out=None):
    """GPU :func:`dlbasics.kernels.dropout.dropout_backward`: ``delta * mask`` (``/ p`` if
    inverted)."""
    return _apply("delta", delta, mask, p, inverted, out)


def gpu_scale_weights(W, p, out=None):
    """GPU :func:`dlbasics.kernels.dropout.scale_weights`: ``out[i, j] = W[i, j] * p_i``.

    ``p`` is a float in (0, 1] or an array of shape (n_in,) (host arrays are range-checked).
    """
    W = float_array("W", W, ndim=2)
    n_in = W.shape[0]
    if isinstance(p, np.ndarray) or g.is_device_array(p):
        p = float_array("p", p, ndim=1)
        _checks.shape("p", p, (n_in,))
        if isinstance(p, np.ndarray):
            pv = p.astype(np.float64)
            if pv.size and not (np.all(pv > 0.0) and np.all(pv <= 1.0)):
                raise ValueError("p must lie in (0, 1] for every unit (NaN is rejected)")
        else:
            pv = p
    else:
        pv = np.full(n_in, _keep_prob(p), dtype=np.float64)
    call = Call(W, pv, out)
    g.require_cuda()
    dW, dp = call.input(W), call.input(pv)
    dout = call.output("out", out, W.shape, W.dtype)
    if W.size:
        n, k = W.shape
        g.launch(_kernels()[2], *g.grid_1d(n * k), dW, dp, dout)
    call.finish()
    return call.result(dout)
