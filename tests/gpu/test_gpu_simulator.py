"""The CUDA simulator's shared memory, as :mod:`dlbasics.kernels.gpu_simulator` patches it:
thread-safe, NaN-filled, version-gated; and bounds checking in the simulator run.

numba-cuda's simulator hands each simulated thread its ``cuda.shared.array`` through an
unlocked *look up, else create, then store*; a thread switch inside it gave two threads of a
block different arrays, and a tiled product or a reduction of that launch came out wrong (the
intermittent CPU/GPU mismatches of whole training runs). These tests widen that window on
purpose (the allocation gives up the GIL) and check that every thread still shares one array.
"""

import os
import time
import warnings

import numpy as np
import pytest

from dlbasics.kernels import gpu_config, gpu_simulator
from dlbasics.kernels import losses as L
from dlbasics.kernels.gpu_dense import gpu_dense_backward, gpu_dense_forward
from dlbasics.kernels.gpu_losses import gpu_loss_and_gradient
from tests.gpu.conftest import SIMULATOR, assert_close

pytestmark = pytest.mark.skipif(not SIMULATOR, reason="checks the CUDA simulator only")

cuda = None  # numba.cuda as a module global, as in kernels/gpu_*.py (the simulator swaps it)


@pytest.fixture
def slow_shared(monkeypatch):
    """Shared arrays whose creation gives up the GIL, so that other threads of the block run
    between the look-up and the store (where a preemption used to split the block)."""
    create = gpu_simulator.new_shared

    def slow(shape, dtype):
        time.sleep(1e-4)
        return create(shape, dtype)

    monkeypatch.setattr(gpu_simulator, "new_shared", slow)


def test_shared_array_is_replaced_once():
    from numba.cuda.simulator import kernelapi

    gpu_config.require_cuda()
    array = kernelapi.FakeCUDAShared.array
    assert getattr(array, "_dlbasics_patched", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the installed numba-cuda is one the patch was checked on
        assert gpu_simulator.patch_shared_arrays()
    assert kernelapi.FakeCUDAShared.array is array


def test_version_gate_messages():
    def locked(self, shape, dtype):
        with self.lock:
            return shape

    def unlocked(self, shape, dtype):
        return shape

    assert gpu_simulator.gate(gpu_simulator.LAST_CHECKED, unlocked) is None
    assert "not applied" in gpu_simulator.gate(gpu_simulator.LAST_CHECKED, None)
    assert "no longer needed" in gpu_simulator.gate(gpu_simulator.LAST_CHECKED, locked)
    newer = (gpu_simulator.LAST_CHECKED[0], gpu_simulator.LAST_CHECKED[1] + 1)
    assert "outside the versions" in gpu_simulator.gate(newer, unlocked)
    assert "outside the versions" in gpu_simulator.gate(None, unlocked)


def test_new_shared_arrays_read_as_nan_before_a_write():
    """A kernel that reads a shared element no thread wrote gets NaN (floats) or the most
    negative integer, never a quiet zero."""
    global cuda
    cuda = gpu_config.require_cuda()

    @cuda.jit
    def kernel(out, iout):
        buf = cuda.shared.array(4, np.float32)
        ibuf = cuda.shared.array(4, np.int64)
        tid = cuda.threadIdx.x
        if tid < 2:
            buf[tid] = 1.0
            ibuf[tid] = 1
        cuda.syncthreads()
        out[tid] = buf[tid]
        iout[tid] = ibuf[tid]

    out = np.zeros(4, np.float32)
    iout = np.zeros(4, np.int64)
    kernel[1, 4](out, iout)
    np.testing.assert_array_equal(out[:2], 1.0)
    assert np.isnan(out[2:]).all()
    np.testing.assert_array_equal(iout, [1, 1, np.iinfo(np.int64).min, np.iinfo(np.int64).min])


@pytest.mark.skipif(os.environ.get("NUMBA_BOUNDSCHECK") != "1",
                    reason="CI runs the simulator with NUMBA_BOUNDSCHECK=1 (scripts/test.sh)")
def test_bounds_checked_helpers_raise():
    """Under NUMBA_BOUNDSCHECK=1 the compiled helpers the simulated kernels call check every
    index: an out-of-range read raises instead of reading past the array."""
    from numba import njit

    @njit
    def at(a, i):
        return a[i]

    with pytest.raises(IndexError):
        at(np.zeros(3), 3)


@pytest.mark.usefixtures("slow_shared")
def test_every_thread_of_a_block_gets_the_same_shared_array():
    global cuda
    cuda = gpu_config.require_cuda()
    threads = 8

    @cuda.jit
    def kernel(out):
        buf = cuda.shared.array(threads, np.float64)
        other = cuda.shared.array(threads, np.float64)
        tid = cuda.threadIdx.x
        buf[tid] = tid + 1
        other[tid] = -1.0
        cuda.syncthreads()
        s = 0.0
        for k in range(threads):
            s += buf[k]
        out[cuda.blockIdx.x, tid] = s

    out = np.zeros((2, threads))
    for _ in range(5):
        out[:] = 0.0
        kernel[2, threads](out)
        np.testing.assert_array_equal(out, threads * (threads + 1) / 2)


@pytest.mark.usefixtures("slow_shared")
def test_tiled_products_and_reductions_with_slow_shared_allocation(rng):
    # two data sets in turn: a thread left with a private array would leave the shared one
    # holding the other set's values, never the right ones
    sets = []
    for _ in range(2):
        x = rng.normal(size=(7, 6))
        W = rng.normal(size=(6, 5))
        b = rng.normal(size=5)
        d = rng.normal(size=(7, 5))
        y = rng.uniform(size=(7, 5))
        sets.append((x, W, b, d, y / y.sum(axis=1, keepdims=True)))
    for _ in range(2):
        for x, W, b, d, y in sets:
            z, _ = gpu_dense_forward(x, W, b)
            assert_close(z, x @ W + b)
            dW, db, dx = gpu_dense_backward(x, W, d)
            assert_close(dW, x.T @ d)
            assert_close(db, d.sum(axis=0))
            assert_close(dx, d @ W.T)
            p = np.ascontiguousarray(x[:, :5])
            value, grad = gpu_loss_and_gradient("cross_entropy_logits", y, p)
            cv, cg = L.loss_and_gradient("cross_entropy_logits", y, p)
            assert value == pytest.approx(cv, rel=1e-12)
            assert_close(grad, cg)
