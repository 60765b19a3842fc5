"""Validation and host/device staging shared by the public GPU wrappers.

Convention of every public ``gpu_*`` function:

* A call is in **device mode** when any of its array arguments is a device array (a numba
  device array, or any object with ``__cuda_array_interface__`` such as a CuPy array or a
  PyTorch CUDA tensor). Results are then device arrays, arrays updated in place and output
  buffers must be device arrays, and read-only host inputs are copied to the device.
* Otherwise the call is in **host mode**: inputs are copied to the device, the kernel runs, and
  results come back as NumPy arrays (written into the ``out`` buffers given, like the CPU
  functions; arrays updated in place are updated in place on the host).

Device arrays are checked for dtype, number of dimensions, shape and C-contiguity before any
launch (the same errors as :mod:`dlbasics.kernels._checks`); checks of *values* (finite, label
range) would need a transfer and are done for host arrays only.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from . import gpu_config as g


def _kind(name, a, allowed):
    if a.dtype not in allowed:
        names = " or ".join(str(d) for d in allowed)
        raise TypeError(f"{name} must have dtype {names}, got {a.dtype}")


def float_array(name, a, ndim=None, dtype=None, finite=False, writable=False):
    """:func:`dlbasics.kernels._checks.float_array` for host arrays; the same checks, except the
    value
    check ``finite``, for device arrays (returned as numba device arrays)."""
    if not g.is_device_array(a):
        return _checks.float_array(name, a, ndim=ndim, dtype=dtype, finite=finite,
                                   writable=writable)
    a = g.as_device(a)
    _kind(name, a, _checks.FLOAT_DTYPES)
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise TypeError(
            f"{name} has dtype {a.dtype} but {np.dtype(dtype)} is required "
            "(all arrays of one call share a dtype)"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{name} must have {want} dimension(s), got shape {tuple(a.shape)}")
    if not a.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous")
    return a


def int_array(name, a, ndim=1):
    """An integer array (host or device) of ``ndim`` dimensions."""
    if not g.is_device_array(a):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    else:
        a = g.as_device(a)
    if np.dtype(a.dtype).kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(a.shape)}")
    return a


class Call:
    """Staging of one public call (see the module docstring).

    Parameters
    ----------
    *arrays
        The array arguments of the call (``None`` entries are ignored); any device array among
        them puts the call in device mode.
    """

    def __init__(self, *arrays):
        self.device = any(g.is_device_array(a) for a in arrays if a is not None)
        self._copy_back = []

    def input(self, a):
        """Device copy (or the device array itself) of a read-only input."""
        if g.is_device_array(a):
            return g.as_device(a)
        return g.to_device(np.ascontiguousarray(a))

    def inplace(self, name, a):
        """Device array for ``a``, updated in place: copied back to ``a`` in host mode."""
        if self.device:
            if not g.is_device_array(a):
                raise TypeError(
                    f"{name} is updated in place and must be a device array when other "
                    "arguments are device arrays"
                )
            return g.as_device(a)
        d = g.to_device(a)
        self._copy_back.append((d, a))
        return d

    def output(self, name, out, shape, dtype):
        """Device buffer for a result of ``shape``/``dtype``; ``out`` is the caller's buffer
        (validated like the CPU's ``out`` arguments) or None."""
        shape = tuple(shape)
        if out is None:
            return g.device_array(shape, dtype)
        if self.device:
            if not g.is_device_array(out):
                raise TypeError(
                    f"{name} must be a device array when the inputs are device arrays"
                )
            out = float_array(name, out, dtype=dtype)
            _checks.shape(name, out, shape)
            return out
        out = _checks.out_array(name, out, shape, dtype)
        d = g.device_array(shape, dtype)
        self._copy_back.append((d, out))
        return d

    def finish(self):
        """Copy results back (host mode); call once after the launches."""
        for d, host in self._copy_back:
            g.copy_to_host(d, host)

    def result(self, d):
        """What to return for device result ``d``: itself (device mode) or its host copy
        (the caller's ``out`` buffer when one was given)."""
        if self.device:
            return d
        for dev, host in self._copy_back:
            if dev is d:
                return host
        return g.copy_to_host(d)


def dummy(dtype, ndim=1):
    """A one-element device array standing in for an unused array argument."""
    key = (np.dtype(dtype).str, ndim)
    cache = _DUMMIES
    if key not in cache:
        cache[key] = g.device_zeros((1,) * ndim, dtype)
    return cache[key]


_DUMMIES = {}
