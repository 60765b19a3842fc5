"""cuBLAS for the large dense products, through CuPy, on our own device arrays.

:mod:`dlbasics.kernels.gpu_dense` sends a product to cuBLAS when its batch has at least
:data:`dlbasics.kernels.config.BLAS_MIN_ROWS` rows (as the CPU sends it to BLAS) and this module
is :func:`available`: CuPy (``cupy-cuda13x``, in the ``cuda`` extra) imports and sees a GPU, and
numba runs on a real GPU. Our numba device arrays are handed to CuPy through
``__cuda_array_interface__`` (no copy; each array's CuPy view is made once and kept on it), CuPy
calls cuBLAS (``sgemm``/``dgemm``; TF32 stays off unless ``CUPY_TF32=1``), and the results land
in our output buffers (``out=``). numba launches on the legacy default stream and CuPy uses the null
stream, so the two are ordered without a synchronisation. Bias, activation, dropout mask and
activation derivative stay in our epilogue kernels; small products, populations, the
one-launch small-network epoch and everything under the simulator keep our tiled kernels, which
are also the reference the cuBLAS route is tested against.

Under the CUDA simulator (and in compile-only mode) the CuPy route is skipped, and
:func:`status` says so.
"""

from __future__ import annotations

import functools

import numpy as np

from . import gpu_config as g

_ONES = {}  # (n, dtype) -> CuPy vector of ones (db = delta^T 1)


@functools.cache
def _cupy():
    """``(cupy module or None, reason it is unusable or None)``, decided once per process."""
    if g.simulator_enabled():
        return None, "skipped under the CUDA simulator (CuPy needs a real GPU)"
    if g._state["compile_only"] is not None:
        return None, "skipped in compile-only mode"
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken CUDA install
        return None, f"CuPy not usable ({type(exc).__name__}: {exc}); pip install dlbasics[cuda]"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "CuPy sees no GPU"
    except Exception as exc:  # noqa: BLE001 - no driver
        return None, f"CuPy sees no GPU ({type(exc).__name__})"
    return cupy, None


#: Set False to keep every product in our tiled kernels (tests and benchmarks switch it).
ENABLED = True


def available():
    """True when products go to cuBLAS (CuPy usable on a real GPU and :data:`ENABLED`)."""
    return ENABLED and _cupy()[0] is not None


def status():
    """One line saying which route the large products take, and why."""
    from .config import BLAS_MIN_ROWS

    cupy, reason = _cupy()
    if cupy is None:
        return f"cuBLAS route off: {reason}; every product uses the tiled kernels"
    if not ENABLED:
        return "cuBLAS route switched off (gpu_blas.ENABLED); every product uses the tiled kernels"
    return (f"cuBLAS via CuPy {cupy.__version__} for products of {BLAS_MIN_ROWS} rows or more; "
            "tiled kernels below")


def view(d):
    """The CuPy view of numba device array ``d`` (made once per array and kept on it, so it
    lives as long as the array; no copy)."""
    c = getattr(d, "_dlbasics_cupy", None)
    if c is None:
        c = _cupy()[0].asarray(d)
        try:
            d._dlbasics_cupy = c
        except AttributeError:  # pragma: no cover - an array type without a __dict__
            pass
    return c


def _ones(n, dtype):
    key = (int(n), np.dtype(dtype).str)
    v = _ONES.get(key)
    if v is None:
        v = _cupy()[0].ones(int(n), dtype=np.dtype(dtype))
        _ONES[key] = v
    return v


def matmul(a, b, out, trans_a=False, trans_b=False):
    """``out = op(a) @ op(b)`` with cuBLAS (``op`` transposes where asked; no copies)."""
    cupy = _cupy()[0]
    ca = view(a)
    cb = view(b)
    cupy.matmul(ca.T if trans_a else ca, cb.T if trans_b else cb, out=view(out))


def column_sums(a, out):
    """``out = a^T 1`` (the sum of ``a``'s rows) with cuBLAS."""
    cupy = _cupy()[0]
    ca = view(a)
    cupy.matmul(ca.T, _ones(ca.shape[0], ca.dtype), out=view(out))
