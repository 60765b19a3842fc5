"""Availability of numba.cuda, launch geometry and the few device operations the GPU kernels use.

Every ``kernels/gpu_*.py`` module imports cleanly on a machine without numba-cuda or without a
GPU: ``numba.cuda`` is imported only when a GPU function is first called, through
:func:`require_cuda`, which raises a ``RuntimeError`` saying what is missing:

* ``numba-cuda is not installed: pip install dlbasics[cuda]``
* ``no CUDA GPU found (set NUMBA_ENABLE_CUDASIM=1 to use the simulator)``

The CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` in the environment before numba is imported)
counts as a GPU: it runs every kernel as Python threads, so it proves logic, not speed.
:func:`require_cuda` patches its ``cuda.shared.array`` (thread-safe, NaN-filled) through
:mod:`dlbasics.kernels.gpu_simulator`, the one version-gated module that touches the simulator.

Launch geometry is read from :mod:`dlbasics.kernels.config` *at launch time* (tests patch
``THREADS_PER_BLOCK``, ``TILE`` and ``MAX_BLOCKS`` small so tiny inputs span several blocks and
every grid-stride loop turns more than once). Kernels whose shared-memory size depends on these
values are compiled once per value (the ``functools.cache`` factories of each module).

Compile-only mode
-----------------
:func:`enable_compile_only` turns every launch into a PTX compilation of the kernel for the
argument types of that launch (no GPU needed, only libNVVM) and every device array into a host
NumPy array. Running the public functions in this mode type-checks and compiles all kernels
exactly as a real GPU would, with results left undefined; ``python -m tests.gpu.compile_all``
uses it. It cannot be turned off again in the same process.
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
from numba import njit

from . import config

MISSING_NUMBA_CUDA = "numba-cuda is not installed: pip install dlbasics[cuda]"
NO_GPU = "no CUDA GPU found (set NUMBA_ENABLE_CUDASIM=1 to use the simulator)"

_state = {"cuda": None, "compile_only": None, "ptx": {}}


def simulator_enabled():
    """True when numba runs CUDA code in its simulator (``NUMBA_ENABLE_CUDASIM=1`` in the
    environment when numba was imported; setting it later has no effect)."""
    try:
        from numba.core import config as nb_config
    except ImportError:  # pragma: no cover - numba is a hard dependency
        return False
    flag = getattr(nb_config, "ENABLE_CUDASIM", None)
    if flag is None:  # pragma: no cover - numba versions without the flag in core
        return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"
    return bool(flag)


def _numba_cuda_installed():
    try:
        return importlib.util.find_spec("numba_cuda") is not None
    except (ImportError, ValueError):
        return False


def cuda_available():
    """True when GPU kernels can run here: numba-cuda and a GPU (or the simulator)."""
    try:
        require_cuda()
    except RuntimeError:
        return False
    return True


def require_cuda():
    """Return the ``numba.cuda`` module, or raise ``RuntimeError`` saying what is missing."""
    cuda = _state["cuda"]
    if cuda is not None:
        return cuda
    if not _numba_cuda_installed():
        raise RuntimeError(MISSING_NUMBA_CUDA)
    try:
        from numba import cuda
    except ImportError as exc:  # pragma: no cover - broken installation
        raise RuntimeError(f"{MISSING_NUMBA_CUDA} ({exc})") from exc
    if _state["compile_only"] is None and not cuda.is_available():
        raise RuntimeError(NO_GPU)
    if simulator_enabled():
        from .gpu_simulator import patch_shared_arrays

        patch_shared_arrays()
    _state["cuda"] = cuda
    return cuda


def device_name():
    """A short description of the device the kernels run on."""
    cuda = require_cuda()
    if simulator_enabled():
        return "CUDA simulator"
    if _state["compile_only"] is not None:
        return f"compile-only (cc {_state['compile_only']})"
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return f"{name} (cc {dev.compute_capability[0]}.{dev.compute_capability[1]})"


# ---------------------------------------------------------------------------------------------
# launch geometry (read from dlbasics.kernels.config at call time)
# ---------------------------------------------------------------------------------------------


def threads_per_block():
    """``config.THREADS_PER_BLOCK`` as a positive int."""
    return max(1, int(config.THREADS_PER_BLOCK))


def reduce_threads():
    """Block size of the single-block reductions: the largest power of two that is at most
    ``THREADS_PER_BLOCK`` (a tree reduction halves it)."""
    return 1 << (threads_per_block().bit_length() - 1)


def tile():
    """``config.TILE``: the side of the square thread blocks and shared-memory tiles."""
    return max(1, int(config.TILE))


def max_blocks():
    """``config.MAX_BLOCKS``: the grid is never larger (grid-stride loops cover the rest)."""
    return max(1, int(config.MAX_BLOCKS))


def blocks_for(n_items, per_block):
    """Blocks needed for ``n_items`` at ``per_block`` items each, clipped to ``[1, MAX_BLOCKS]``."""
    return max(1, min(math.ceil(n_items / per_block), max_blocks()))


def grid_1d(n_items):
    """``(blocks, threads)`` of a 1-D grid-stride launch over ``n_items`` items."""
    tpb = threads_per_block()
    return blocks_for(n_items, tpb), tpb


# ---------------------------------------------------------------------------------------------
# array access inside kernels
# ---------------------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _same(a):
    return a


def _unwrap(a):
    """The NumPy array behind a simulator kernel argument (``FakeWithinKernelCUDAArray``); for
    a tuple (a record), the tuple of its fields unwrapped."""
    if isinstance(a, tuple):
        return tuple(_unwrap(v) for v in a)
    item = a.__dict__.get("_item") if hasattr(a, "__dict__") else None
    if item is not None:
        a = item
    ary = getattr(a, "_ary", None)
    return a if ary is None else ary


def array_access():
    """Function each kernel applies to its array arguments (and records of arrays: tuples)
    before using them.

    Compiled for a GPU it is the identity (inlined away). In the simulator it unwraps the
    simulator's array proxies into plain NumPy arrays, so that kernels can pass arrays to the
    shared ``@njit`` helpers (which Numba then runs as compiled CPU code, with the CPU's
    arithmetic) and index them at NumPy speed.
    """
    return _unwrap if simulator_enabled() else _same


# ---------------------------------------------------------------------------------------------
# device memory and launches (the only places the drivers touch numba.cuda)
# ---------------------------------------------------------------------------------------------


def is_device_array(a):
    """True for numba device arrays (and simulator arrays) and ``__cuda_array_interface__``
    objects (CuPy, PyTorch CUDA tensors); False for NumPy arrays and everything else."""
    if isinstance(a, np.ndarray) or a is None:
        return False
    return bool(getattr(a, "__cuda_ndarray__", False)) or hasattr(a, "__cuda_array_interface__")


def as_device(a):
    """A numba device array for a device object (zero-copy for ``__cuda_array_interface__``)."""
    if getattr(a, "__cuda_ndarray__", False):
        return a
    return require_cuda().as_cuda_array(a)


def to_device(a):
    """Copy host array ``a`` to a new device array."""
    if _state["compile_only"] is not None:
        return np.array(a, copy=True)
    return require_cuda().to_device(np.ascontiguousarray(a))


def device_array(shape, dtype):
    """A new uninitialised device array (zero-filled in compile-only mode)."""
    if _state["compile_only"] is not None:
        return np.zeros(shape, dtype=dtype)
    return require_cuda().device_array(shape, dtype=np.dtype(dtype))


def device_zeros(shape, dtype):
    """A new device array of zeros."""
    return to_device(np.zeros(shape, dtype=dtype))


def copy_to_host(d, out=None):
    """Copy device array ``d`` to ``out`` (a matching host array) or to a new host array."""
    if _state["compile_only"] is not None:
        if out is None:
            return np.array(d, copy=True)
        np.copyto(out, d)
        return out
    if out is None:
        return d.copy_to_host()
    if out.flags.c_contiguous:
        d.copy_to_host(out)
    else:  # pragma: no cover - callers pass contiguous buffers
        out[...] = d.copy_to_host()
    return out


def copy_to_device(d, a):
    """Overwrite device array ``d`` with host array ``a`` (same shape and dtype)."""
    if _state["compile_only"] is not None:
        np.copyto(d, a)
        return d
    d.copy_to_device(np.ascontiguousarray(a))
    return d


def synchronize():
    """Wait for all launched kernels (a no-op in the simulator and in compile-only mode)."""
    if _state["compile_only"] is None:
        require_cuda().synchronize()


def launch(kernel, grid, block, *args):
    """``kernel[grid, block](*args)``, or its PTX compilation in compile-only mode."""
    if _state["compile_only"] is not None:
        _compile(kernel, args)
        return
    kernel[grid, block](*args)


# ---------------------------------------------------------------------------------------------
# compile-only mode
# ---------------------------------------------------------------------------------------------


def enable_compile_only(cc=(9, 0)):
    """Switch this process to compile-only mode for compute capability ``cc`` (see above).

    A diagnostic for machines without a GPU: it needs numba-cuda and libNVVM, not a driver.
    Three process-wide adjustments to numba-cuda make that possible, none of which can be
    undone: the target architecture is forced to ``cc`` (``NUMBA_FORCE_CUDA_CC``), device
    functions are compiled for ``cc`` instead of asking the driver for the current device's
    capability, and when NVRTC is absent (only needed for its list of architectures) its path
    is left empty.
    """
    if simulator_enabled():
        raise RuntimeError("compile-only mode needs the real numba.cuda, not the simulator")
    if not _numba_cuda_installed():
        raise RuntimeError(MISSING_NUMBA_CUDA)
    cc = tuple(int(v) for v in cc)
    import numba.cuda.cuda_paths as cuda_paths
    import numba.cuda.dispatcher as cuda_dispatcher
    from numba.cuda import config as cuda_config

    cuda_config.FORCE_CUDA_CC = cc

    class _Device:
        compute_capability = cc

    cuda_dispatcher.get_current_device = _Device
    try:
        cuda_paths._get_nvrtc_path()
    except Exception:  # noqa: BLE001 - any failure to locate NVRTC
        cuda_paths._get_nvrtc_path = lambda: cuda_paths._env_path_tuple("unavailable", None)
    _state["compile_only"] = cc
    _state["cuda"] = None
    require_cuda()


def compiled_kernels():
    """``{(kernel name, kernel id, argument types): PTX text}`` of the kernels compiled in
    compile-only mode so far."""
    return dict(_state["ptx"])


def _compile(kernel, args):
    from numba import typeof

    cuda = require_cuda()
    sig = tuple(typeof(a) for a in args)
    key = (kernel.py_func.__qualname__, id(kernel), sig)
    if key in _state["ptx"]:
        return
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=_state["compile_only"])
    _state["ptx"][key] = ptx
