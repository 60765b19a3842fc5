"""The cuBLAS route of the dense products (:mod:`dlbasics.kernels.gpu_blas`): on a real GPU with
CuPy, against our tiled kernels and float64 NumPy; under the simulator (where the CuPy route is
skipped, and says so) the routing and the epilogue kernels, with NumPy standing in for cuBLAS."""

import numpy as np
import pytest

from dlbasics.kernels import gpu_blas
from dlbasics.kernels import gpu_config as g
from dlbasics.kernels.activations import IDENTITY, RELU, SIGMOID, SOFTMAX, TANH
from dlbasics.kernels.config import BLAS_MIN_ROWS
from dlbasics.kernels.gpu_dense import launch_forward, launch_grad_input, launch_grad_weights
from dlbasics.models import MLP, Adam, train
from tests import naive
from tests.gpu.conftest import SIMULATOR, assert_close, host


def _numpy_blas(monkeypatch):
    """NumPy in place of cuBLAS (simulator arrays are host memory); returns the call count."""
    calls = [0]

    def matmul(a, b, out, trans_a=False, trans_b=False):
        calls[0] += 1
        x, y = host(a), host(b)
        r = (x.T if trans_a else x) @ (y.T if trans_b else y)
        out.copy_to_device(np.ascontiguousarray(r, dtype=out.dtype))

    def column_sums(a, out):
        calls[0] += 1
        out.copy_to_device(host(a).sum(axis=0).astype(out.dtype))

    monkeypatch.setattr(gpu_blas, "available", lambda: True)
    monkeypatch.setattr(gpu_blas, "matmul", matmul)
    monkeypatch.setattr(gpu_blas, "column_sums", column_sums)
    return calls


@pytest.fixture
def blas(monkeypatch):
    """The cuBLAS route: CuPy's on a real GPU (skipped where CuPy cannot run), NumPy's under the
    simulator. Yields the number of routed calls so far (a list; None with real cuBLAS)."""
    if SIMULATOR:
        yield _numpy_blas(monkeypatch)
        return
    if not gpu_blas.available():
        pytest.skip(gpu_blas.status())
    yield None


@pytest.mark.skipif(not SIMULATOR, reason="checks the simulator")
def test_simulator_skips_the_cupy_route_and_says_so():
    assert not gpu_blas.available()
    assert "skipped under the CUDA simulator" in gpu_blas.status()


def _layer(rng, n, n_in, n_out, dtype):
    x = rng.normal(size=(n, n_in)).astype(dtype)
    W = rng.normal(size=(n_in, n_out)).astype(dtype)
    b = rng.normal(size=n_out).astype(dtype)
    d = rng.normal(size=(n, n_out)).astype(dtype)
    return x, W, b, d


def _run(x, W, b, d, code, mask, prev):
    dt = x.dtype
    n, n_in = x.shape
    n_out = W.shape[1]
    dx_, dW_, db_, dd_ = (g.to_device(a) for a in (x, W, b, d))
    z, a = g.device_array((n, n_out), dt), g.device_array((n, n_out), dt)
    launch_forward(dx_, dW_, db_, code, dt.type(0.01), z, a)
    gW, gb = g.device_array(W.shape, dt), g.device_array(b.shape, dt)
    launch_grad_weights(dx_, dd_, gW, gb)
    gx = g.device_array(x.shape, dt)
    zp = g.to_device(x)
    ap = g.to_device(np.tanh(x).astype(dt))
    launch_grad_input(dd_, dW_, gx, mask=None if mask is None else g.to_device(mask),
                      code=prev, zp=zp if prev >= 0 else None, ap=ap if prev >= 0 else None,
                      slope=0.01)
    return [host(v) for v in (z, gW, gb, gx, a)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("code,prev,with_mask", [(RELU, -1, False), (IDENTITY, TANH, True),
                                                 (SOFTMAX, TANH, False), (SIGMOID, -1, True)])
def test_cublas_route_matches_the_tiled_kernels(blas, code, prev, with_mask, dtype, rng,
                                                monkeypatch):
    n = BLAS_MIN_ROWS + 5
    x, W, b, d = _layer(rng, n, 7, 6, dtype)
    mask = (rng.uniform(size=x.shape) < 0.7).astype(dtype) if with_mask else None
    routed = _run(x, W, b, d, code, mask, prev)
    if blas is not None:
        assert blas[0] == 4  # z, dW, db, dx
    monkeypatch.setattr(gpu_blas, "available", lambda: False)
    tiled = _run(x, W, b, d, code, mask, prev)
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    for got, want in zip(routed, tiled, strict=True):
        assert_close(got, want, rtol=rtol)
    z = x.astype(np.float64) @ W + b
    assert_close(routed[0], z, rtol=rtol)
    assert_close(routed[1], x.T.astype(np.float64) @ d, rtol=rtol)
    assert_close(routed[2], d.astype(np.float64).sum(axis=0), rtol=rtol)
    dx = d.astype(np.float64) @ W.T
    if mask is not None:
        dx = dx * mask
    if prev >= 0:
        dx = dx * naive.derivative("tanh", x.astype(np.float64))
    assert_close(routed[3], dx, rtol=10 * rtol)


def test_small_products_keep_the_tiled_kernels(blas, rng):
    if blas is None:
        pytest.skip("counts routed calls with the NumPy stand-in (simulator)")
    x, W, b, d = _layer(rng, BLAS_MIN_ROWS - 1, 5, 4, np.float32)
    _run(x, W, b, d, RELU, None, -1)
    assert blas[0] == 0
    x, W, b, d = _layer(rng, BLAS_MIN_ROWS, 5, 4, np.float32)
    _run(x, W, b, d, RELU, None, -1)
    assert blas[0] == 4


def test_training_with_the_cublas_route_equals_cpu(blas, rng, monkeypatch):
    from dlbasics.kernels import gpu_small

    monkeypatch.setattr(gpu_small, "SMALL_MAX_WIDTH", 0)  # the per-layer kernels
    monkeypatch.setattr(gpu_small, "GRID_ENABLED", False)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    kw = dict(activation="tanh", output="softmax", loss="cross_entropy", seed=2, keep_prob=0.9)
    cpu = MLP([5, 9, 3], **kw)
    gpu = MLP([5, 9, 3], backend="cuda", **kw)
    h_cpu = train(cpu, X, y, Adam(0.01), batch_size=16, epochs=2)
    h_gpu = train(gpu, X, y, Adam(0.01), batch_size=16, epochs=2)
    if blas is not None:
        assert blas[0] > 0
    np.testing.assert_allclose(h_gpu.train_loss, h_cpu.train_loss, rtol=1e-4)
    assert_close(gpu.params, cpu.params, rtol=1e-4)
