"""The one patch this package makes to numba-cuda's CUDA simulator, and the versions it is for.

:func:`dlbasics.kernels.gpu_config.require_cuda` calls :func:`patch_shared_arrays` when the
simulator is on (``NUMBA_ENABLE_CUDASIM=1``). It replaces ``FakeCUDAShared.array``, the
simulator's ``cuda.shared.array``, for two reasons:

* **A race in the simulator** (numba-cuda up to at least 0.30). The simulator runs the threads
  of a block as Python threads, and each calls ``cuda.shared.array``; the original keys the
  block's arrays by the calling source line and does *look up, else create, then store* without
  a lock. A thread switch between the look-up and the store (the GIL can change hands there)
  lets two threads of a block each create an array and keep their own: one thread then loads its
  part of a tile, or its partial sum, into an array no other thread reads, and a tiled product or
  a reduction of that launch rarely comes out wrong. Here the look-up and the creation happen
  under one lock, with the same key (the caller's file and line), so every thread of a block gets
  the same array, as on a GPU.
* **Reads before writes show up.** GPU shared memory starts with whatever the last block left
  there; the original ``np.empty`` usually hands out zeros, which hides a kernel that reads an
  element no thread wrote. New arrays are filled with NaN (floating dtypes) or the most negative
  value (integer dtypes), so such a read turns a result into NaN or garbage and the tests fail.

Version gate: the patch is written against the layout of ``numba.cuda.simulator.kernelapi`` of
numba-cuda :data:`FIRST_CHECKED` to :data:`LAST_CHECKED`. Outside that range it is still applied
where the layout allows, with a ``RuntimeWarning`` asking to check whether numba-cuda fixed the
race (then only the NaN fill is still wanted); where the layout does not allow it (the class or
its ``_allocations`` dictionary is gone) nothing is patched and the warning says so. Dynamic
shared memory (``shape == 0``) and explicit alignments go to the original method unchanged.
"""

from __future__ import annotations

import inspect
import numbers
import re
import sys
import threading
import warnings

import numpy as np

#: numba-cuda versions whose simulator this patch was checked against (major, minor).
FIRST_CHECKED = (0, 10)
LAST_CHECKED = (0, 30)

#: Held while a simulated thread looks up or creates a shared array.
_SHARED_LOCK = threading.Lock()


def new_shared(shape, dtype):
    """Storage of one simulated shared array: NaN (floats) or the most negative integer, so a
    read of an element no thread wrote shows up."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return np.full(shape, np.nan, dtype)
    if dtype.kind in "iu":
        return np.full(shape, np.iinfo(dtype).min, dtype)
    return np.empty(shape, dtype)


def _version():
    try:
        import numba_cuda
    except ImportError:  # pragma: no cover - the simulator needs numba-cuda
        return None
    parts = []
    for p in str(getattr(numba_cuda, "__version__", "")).split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) if len(parts) == 2 else None


def gate(version, original):
    """The warning to give for numba-cuda ``version`` whose ``FakeCUDAShared.array`` is
    ``original`` (None where nothing needs saying).

    Parameters
    ----------
    version : tuple of 2 int or None
        ``(major, minor)`` of the installed numba-cuda.
    original : callable or None
        The simulator's method, or None when its layout no longer allows the patch.
    """
    if original is None:
        return ("numba-cuda's simulator no longer has FakeCUDAShared.array with an "
                "_allocations dictionary: dlbasics' shared-array patch is not applied (shared "
                "arrays may race, and reads before writes are not caught); update "
                "dlbasics.kernels.gpu_simulator")
    try:
        source = inspect.getsource(original)
    except (OSError, TypeError):
        source = ""
    if re.search(r"\bwith\b[^\n]*lock", source, re.IGNORECASE):
        return ("numba-cuda's simulator now locks FakeCUDAShared.array: dlbasics' race fix is "
                "no longer needed (the NaN fill of new shared arrays still is); update "
                "dlbasics.kernels.gpu_simulator")
    if version is None or not FIRST_CHECKED <= version <= LAST_CHECKED:
        shown = "unknown" if version is None else ".".join(map(str, version))
        return (f"numba-cuda {shown} is outside the versions dlbasics' simulator patch was "
                f"checked against ({FIRST_CHECKED[0]}.{FIRST_CHECKED[1]} to "
                f"{LAST_CHECKED[0]}.{LAST_CHECKED[1]}): it is applied; check whether "
                "FakeCUDAShared.array still needs it and update dlbasics.kernels.gpu_simulator")
    return None


def patch_shared_arrays():
    """Replace the simulator's ``cuda.shared.array`` (idempotent; see the module docstring).

    Returns
    -------
    bool
        True when the patch is in place.
    """
    from numba.cuda.simulator import kernelapi

    cls = getattr(kernelapi, "FakeCUDAShared", None)
    original = getattr(cls, "array", None)
    if getattr(original, "_dlbasics_patched", False):
        return True
    as_dtype = getattr(getattr(kernelapi, "numpy_support", None), "as_dtype", None)
    numba_type = getattr(getattr(kernelapi, "types", None), "Type", None)
    allows = (original is not None and as_dtype is not None and numba_type is not None
              and "_allocations" in inspect.getsource(cls))
    message = gate(_version(), original if allows else None)
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    if not allows:
        return False

    def array(self, shape, dtype, alignment=None):
        if alignment is not None:
            return original(self, shape, dtype, alignment)
        if isinstance(shape, numbers.Integral) and shape == 0:
            return original(self, shape, dtype)
        if isinstance(dtype, numba_type):
            dtype = as_dtype(dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        del frame
        with _SHARED_LOCK:
            res = self._allocations.get(caller)
            if res is None:
                res = sys.modules[__name__].new_shared(shape, dtype)
                self._allocations[caller] = res
        return res

    array._dlbasics_patched = True
    array.__doc__ = original.__doc__
    cls.array = array
    return True
