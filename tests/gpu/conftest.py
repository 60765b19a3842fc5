"""GPU tests: run on a real GPU, or under the CUDA simulator in their own pytest process::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/gpu -q

Without a GPU and without that variable (e.g. the main ``pytest`` run, where numba must not be
switched to the simulator) every test here is skipped, except those marked ``nocuda``: they
need no GPU in this process (they start subprocesses to check the import and error behaviour).

Launch geometry is patched small for every test (``THREADS_PER_BLOCK``, ``TILE``,
``MAX_BLOCKS``), so tiny inputs span several blocks and every grid-stride loop turns more than
once; tests that want the shipped geometry use the ``default_launch`` fixture.
"""

import os
import sys

import numpy as np
import pytest

from dlbasics.kernels import config

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"
SMALL = {"THREADS_PER_BLOCK": 8, "TILE": 4, "MAX_BLOCKS": 3}
SHIPPED = {name: getattr(config, name) for name in SMALL}

_reason = []


def skip_reason():
    """None when GPU kernels can run in this process, else why not."""
    if not _reason:
        from dlbasics.kernels import gpu_config

        try:
            gpu_config.require_cuda()
            _reason.append(None)
        except RuntimeError as exc:
            _reason.append(f"GPU tests need a GPU or NUMBA_ENABLE_CUDASIM=1: {exc}")
    return _reason[0]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "nocuda: runs without a GPU or simulator in this process (subprocess checks)"
    )


@pytest.fixture(scope="session", autouse=True)
def _fast_simulator():
    """The simulator polls its block threads under the GIL: a short switch interval makes
    ``syncthreads`` rounds several times faster."""
    if not SIMULATOR:
        yield
        return
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old)


@pytest.fixture(autouse=True)
def _gpu(request, monkeypatch):
    if request.node.get_closest_marker("nocuda") is None:
        reason = skip_reason()
        if reason is not None:
            pytest.skip(reason)
    for name, value in SMALL.items():
        monkeypatch.setattr(config, name, value)


@pytest.fixture
def default_launch(monkeypatch):
    """The launch geometry shipped in kernels/config.py."""
    for name, value in SHIPPED.items():
        monkeypatch.setattr(config, name, value)


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def tol(dtype):
    """Tolerance of a GPU result against its CPU twin: 1e-5 (float32) or 1e-10 (float64)."""
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-10


def assert_close(got, want, dtype=None, rtol=None):
    """``got`` within ``rtol`` (default :func:`tol`) of ``want``, relative to ``want``'s
    elements or, for elements near zero, to its largest magnitude."""
    got = np.asarray(got)
    want = np.asarray(want)
    rtol = tol(dtype if dtype is not None else want.dtype) if rtol is None else rtol
    scale = float(np.max(np.abs(want))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(scale, 1e-30))


def naive_tol(dtype, work=1):
    """Tolerance against the float64 references of tests/naive.py (as tests/conftest.py),
    widened for long reductions."""
    base = 2e-5 if np.dtype(dtype) == np.float32 else 1e-12
    return base * (10 if work > 100 else 1)


def host(a):
    """Host copy of a device array (or the array itself)."""
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)
