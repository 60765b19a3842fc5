"""Input validation shared by the public kernel wrappers.

Numba does not check bounds: every public function validates its arguments with these helpers
*before* any compiled code runs, and raises a ``TypeError`` or ``ValueError`` that names the
offending argument.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(name, a, ndim=None, dtype=None, finite=False, writable=False):
    """Check that ``a`` is a C-contiguous float32/float64 ndarray and return it.

    Parameters
    ----------
    name : str
        Argument name used in error messages.
    a : object
        The value to check. Must already be an ndarray (no silent conversion: a list or an
        integer array is a ``TypeError``).
    ndim : int or tuple of int, optional
        Allowed numbers of dimensions.
    dtype : numpy dtype, optional
        Required dtype (to keep all arrays of one call in one precision).
    finite : bool
        If True, NaN or inf in ``a`` is a ``ValueError``.
    writable : bool
        If True, ``a`` must be writable (an output buffer).
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise TypeError(
            f"{name} has dtype {a.dtype} but {np.dtype(dtype)} is required "
            "(all arrays of one call share a dtype; cast explicitly with .astype)"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if a.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{name} must have {want} dimension(s), got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name} must be writable")
    if finite and a.size and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def shape(name, a, expected):
    """Raise ``ValueError`` unless ``a.shape == expected``."""
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(a.shape)}")


def nonempty(name, a):
    """Raise ``ValueError`` if ``a`` has no elements."""
    if a.size == 0:
        raise ValueError(f"{name} must not be empty (shape {a.shape})")


def out_array(name, out, shape_, dtype):
    """Return ``out`` validated as a writable buffer, or a fresh one if ``out`` is None."""
    if out is None:
        return np.empty(shape_, dtype=dtype)
    float_array(name, out, dtype=dtype, writable=True)
    shape(name, out, shape_)
    return out


def real(name, value, low=None, high=None, low_open=False, high_open=False):
    """Check a real scalar hyper-parameter and return it as ``float``.

    ``low``/``high`` bound it (inclusive unless ``*_open``). NaN and inf are rejected.
    """
    if type(value) is not float and (isinstance(value, bool)
                                     or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (v < low or (low_open and v == low)):
        op = ">" if low_open else ">="
        raise ValueError(f"{name} must be {op} {low}, got {value}")
    if high is not None and (v > high or (high_open and v == high)):
        op = "<" if high_open else "<="
        raise ValueError(f"{name} must be {op} {high}, got {value}")
    return v


def integer(name, value, low=None, high=None):
    """Check an integer argument (bools rejected) and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {v}")
    return v


def choice(name, value, options):
    """Check that ``value`` is one of ``options`` (a mapping or sequence of names)."""
    if not isinstance(value, str) or value not in options:
        opts = ", ".join(repr(o) for o in options)
        raise ValueError(f"{name} must be one of {opts}, got {value!r}")
    return value


def int_labels(name, y, n_rows, n_classes):
    """Check integer class labels of shape ``(n_rows,)`` in ``[0, n_classes)``."""
    if not isinstance(y, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(y).__name__}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer class labels, got dtype {y.dtype}")
    shape(name, y, (n_rows,))
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}), got range [{y.min()}, {y.max()}]")
    return np.ascontiguousarray(y, dtype=np.int64)
