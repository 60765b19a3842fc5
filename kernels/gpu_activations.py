"""GPU twins of :mod:`dlbasics.kernels.activations`: value, derivative and backward pass by name.

The scalar formulas are the CPU's own inlined functions
(:func:`dlbasics.kernels.activations.act_scalar`,
:func:`~dlbasics.kernels.activations.dact_scalar`); softmax rows go through the CPU's
:func:`~dlbasics.kernels.activations.softmax_rows` and
:func:`~dlbasics.kernels.activations.backward_kernel` on one-row views, so each row is computed by
the same code in the same order as on the CPU. Elementwise kernels are grid-stride loops over all
elements; softmax kernels are grid-stride loops over rows (one thread per row).

float32 arrays: the branches of ``act_scalar`` and ``dact_scalar`` unify to float64 in Numba, so
the formulas (sigmoid, softplus, the leaky slope, the derivatives; tanh itself is float32) run in
float64 and are rounded once on the store, and the softmax row sum is a float64 sum: the CPU's
arithmetic exactly, kept on purpose for bitwise CPU parity.

Host arrays in, host arrays out; device arrays in, device arrays out (see
:mod:`dlbasics.kernels._gpu_arrays`).
"""

from __future__ import annotations

import functools

from . import _checks
from . import gpu_config as g
from ._gpu_arrays import Call, float_array
from .activations import SOFTMAX, act_scalar, activation_code, dact_scalar, softmax_rows
from .activations import backward_kernel as _rows_backward
from .config import LEAKY_SLOPE

__all__ = ["gpu_activate", "gpu_derivative", "gpu_activation_backward"]

cuda = None  # numba.cuda, bound by _kernels() on first use (import-safe without numba-cuda)

_VALUE, _DERIVATIVE = 0, 1


@functools.cache
def _kernels():
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()

    @cuda.jit
    def elementwise(code, z, out, slope, mode):
        """``out = f(z)`` (mode 0) or ``f'(z)`` (mode 1), elementwise."""
        z = A(z)
        out = A(out)
        n, k = z.shape
        for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
            i = e // k
            j = e - i * k
            zij = z[i, j]
            if mode == _VALUE:
                out[i, j] = act_scalar(code, zij, slope)
            else:
                out[i, j] = dact_scalar(code, zij, act_scalar(code, zij, slope), slope)

    @cuda.jit
    def backward(code, z, a, delta, out, slope):
        """``out = delta * f'(z)`` elementwise."""
        z = A(z)
        a = A(a)
        delta = A(delta)
        out = A(out)
        n, k = z.shape
        for e in range(cuda.grid(1), n * k, cuda.gridsize(1)):
            i = e // k
            j = e - i * k
            out[i, j] = delta[i, j] * dact_scalar(code, z[i, j], a[i, j], slope)

    @cuda.jit
    def softmax(z, out):
        """Row-wise softmax, one thread per row."""
        z = A(z)
        out = A(out)
        for i in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
            softmax_rows(z[i : i + 1], out[i : i + 1])

    @cuda.jit
    def softmax_backward(z, a, delta, out, slope):
        """``out = a * (delta - sum(delta * a))`` row-wise, one thread per row."""
        z = A(z)
        a = A(a)
        delta = A(delta)
        out = A(out)
        for i in range(cuda.grid(1), z.shape[0], cuda.gridsize(1)):
            _rows_backward(SOFTMAX, z[i : i + 1], a[i : i + 1], delta[i : i + 1],
                           out[i : i + 1], slope)

    return elementwise, backward, softmax, softmax_backward


# ---------------------------------------------------------------------------------------------
# drivers on 2-D device arrays (no validation; used by the public wrappers and
# dlbasics.models._cuda)
# ---------------------------------------------------------------------------------------------


def launch_activate(code, z, out, slope):
    """``out = f(z)`` for 2-D device arrays (softmax row-wise); ``slope`` in z's dtype."""
    elementwise, _, softmax, _ = _kernels()
    n, k = z.shape
    if code == SOFTMAX:
        g.launch(softmax, *g.grid_1d(n), z, out)
    else:
        g.launch(elementwise, *g.grid_1d(n * k), code, z, out, slope, _VALUE)


def launch_derivative(code, z, out, slope):
    """``out = f'(z)`` elementwise for 2-D device arrays (not softmax)."""
    elementwise = _kernels()[0]
    n, k = z.shape
    g.launch(elementwise, *g.grid_1d(n * k), code, z, out, slope, _DERIVATIVE)


def launch_backward(code, z, a, delta, out, slope):
    """``out = dL/dz`` from ``delta = dL/da`` for 2-D device arrays (``out`` may be ``delta``)."""
    _, backward, _, softmax_backward = _kernels()
    n, k = z.shape
    if code == SOFTMAX:
        g.launch(softmax_backward, *g.grid_1d(n), z, a, delta, out, slope)
    else:
        g.launch(backward, *g.grid_1d(n * k), code, z, a, delta, out, slope)


# ---------------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------------


def _as_2d(d):
    return d.reshape(1, d.shape[0]) if d.ndim == 1 else d


def _prepare(name, z, out, slope):
    code = activation_code(name)
    z = float_array("z", z, ndim=(1, 2))
    slope = _checks.real("slope", slope)
    call = Call(z, out)
    g.require_cuda()
    dz = call.input(z)
    dout = call.output("out", out, z.shape, z.dtype)
    return code, z, call, dz, dout, z.dtype.type(slope)


def gpu_activate(name, z, out=None, slope=LEAKY_SLOPE):
    """GPU :func:`dlbasics.kernels.activations.activate`: activation ``name`` of ``z``.

    Parameters
    ----------
    name : str
        One of :data:`dlbasics.kernels.activations.ACTIVATIONS`.
    z : ndarray or device array of shape (n_samples, n_units) or (n_units,)
        Pre-activations, float32 or float64, C-contiguous.
    out : array of the same kind, shape and dtype, optional
        Output buffer (may be ``z`` itself).
    slope : float, default=0.01
        Negative-side slope of ``leaky_relu``.

    Returns
    -------
    out : array of the shape of ``z``
        ``f(z)`` (softmax over the last axis); a device array in device mode, else NumPy.
    """
    code, z, call, dz, dout, slope = _prepare(name, z, out, slope)
    launch_activate(code, _as_2d(dz), _as_2d(dout), slope)
    call.finish()
    return call.result(dout)


def gpu_derivative(name, z, out=None, slope=LEAKY_SLOPE):
    """GPU :func:`dlbasics.kernels.activations.derivative`: elementwise ``f'(z)`` (not softmax).

    Parameters and return value are as in :func:`gpu_activate`.
    """
    if name == "softmax":
        raise ValueError(
            "name='softmax' has no elementwise derivative; use gpu_activation_backward"
        )
    code, z, call, dz, dout, slope = _prepare(name, z, out, slope)
    launch_derivative(code, _as_2d(dz), _as_2d(dout), slope)
    call.finish()
    return call.result(dout)


def gpu_activation_backward(name, z, a, delta, out=None, slope=LEAKY_SLOPE):
    """GPU :func:`dlbasics.kernels.activations.activation_backward`: ``dL/dz`` from ``dL/da``.

    Parameters
    ----------
    name : str
    z, a, delta : arrays of shape (n_samples, n_units)
        Pre-activations, activations ``f(z)`` and ``dL/da``; one kind (host or device) decides
        the kind of the result.
    out : array, optional
        Output buffer (may be ``delta``).
    slope : float, default=0.01

    Returns
    -------
    out : array of shape (n_samples, n_units)
    """
    code = activation_code(name)
    z = float_array("z", z, ndim=(1, 2))
    slope = _checks.real("slope", slope)
    a = float_array("a", a, dtype=z.dtype)
    _checks.shape("a", a, z.shape)
    delta = float_array("delta", delta, dtype=z.dtype)
    _checks.shape("delta", delta, z.shape)
    call = Call(z, a, delta, out)
    g.require_cuda()
    dz, da, dd = call.input(z), call.input(a), call.input(delta)
    dout = call.output("out", out, z.shape, z.dtype)
    launch_backward(code, _as_2d(dz), _as_2d(da), _as_2d(dd), _as_2d(dout), z.dtype.type(slope))
    call.finish()
    return call.result(dout)
