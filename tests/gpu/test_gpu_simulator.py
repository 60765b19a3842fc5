"""The CUDA simulator's shared memory, as :mod:`dlbasics.kernels.gpu_config` makes it thread-safe.

numba-cuda's simulator hands each simulated thread its ``cuda.shared.array`` through an
unlocked *look up, else create, then store*; a thread switch inside it gave two threads of a
block different arrays, and a tiled product or a reduction of that launch came out wrong (the
intermittent CPU/GPU mismatches of whole training runs). These tests widen that window on
purpose (the allocation gives up the GIL) and check that every thread still shares one array.
"""

import time

import numpy as np
import pytest

from dlbasics.kernels import gpu_config
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
    create = gpu_config._new_shared

    def slow(shape, dtype):
        time.sleep(1e-4)
        return create(shape, dtype)

    monkeypatch.setattr(gpu_config, "_new_shared", slow)


def test_shared_array_is_replaced_once():
    from numba.cuda.simulator import kernelapi

    gpu_config.require_cuda()
    array = kernelapi.FakeCUDAShared.array
    assert getattr(array, "_dlbasics_thread_safe", False)
    gpu_config._thread_safe_simulator_shared()
    assert kernelapi.FakeCUDAShared.array is array


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
