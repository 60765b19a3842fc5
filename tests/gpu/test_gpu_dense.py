"""Tiled GPU dense layer against tests/naive.py and against the CPU twin.

With the patched geometry (4 x 4 tiles, at most 3 blocks) the shapes below cover partial tiles
on every edge, products with several tiles along the reduction axis, and grid-stride loops over
more output tiles than blocks.
"""

import numpy as np
import pytest

from dlbasics.kernels import activations as A
from dlbasics.kernels import dense as D
from dlbasics.kernels.gpu_dense import gpu_dense_backward, gpu_dense_forward, launch_grad_input
from tests import naive
from tests.gpu.conftest import assert_close, host, naive_tol

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1, 1), (7, 9, 6), (13, 5, 11), (2, 33, 3)]


def _layer(shape, dtype, rng):
    n, n_in, n_out = shape
    x = rng.normal(size=(n, n_in)).astype(dtype)
    W = (rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.normal(size=n_out).astype(dtype)
    return x, W, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ["identity", "tanh", "softmax"])
def test_forward_matches_naive_and_cpu(activation, shape, dtype, rng):
    x, W, b = _layer(shape, dtype, rng)
    z, a = gpu_dense_forward(x, W, b, activation)
    zc, ac = D.dense_forward(x, W, b, activation)
    assert_close(z, zc)
    assert_close(a, ac)
    zr, ar = naive.dense_forward(x, W, b, activation)
    t = naive_tol(dtype, shape[1])
    np.testing.assert_allclose(z, zr, rtol=t, atol=t)
    np.testing.assert_allclose(a, ar, rtol=t, atol=t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_naive_and_cpu(shape, dtype, rng):
    x, W, _ = _layer(shape, dtype, rng)
    delta = rng.normal(size=(shape[0], shape[2])).astype(dtype)
    got = gpu_dense_backward(x, W, delta)
    cpu = D.dense_backward(x, W, delta)
    ref = naive.dense_backward(x, W, delta)
    t = naive_tol(dtype, max(shape))
    for g_, c_, r_ in zip(got, cpu, ref, strict=True):
        assert_close(g_, c_)
        np.testing.assert_allclose(g_, r_, rtol=t, atol=t)
    dW, db, dx = gpu_dense_backward(x, W, delta, need_dx=False)
    assert dx is None
    assert_close(dW, cpu[0])
    assert_close(db, cpu[1])


def test_shipped_geometry(default_launch, rng):
    """The shipped 16 x 16 tiles (one block per output tile here)."""
    x, W, b = _layer((18, 20, 17), np.float32, rng)
    z, a = gpu_dense_forward(x, W, b, "relu")
    assert_close(a, D.dense_forward(x, W, b, "relu")[1])
    delta = rng.normal(size=(18, 17)).astype(np.float32)
    for g_, c_ in zip(gpu_dense_backward(x, W, delta), D.dense_backward(x, W, delta),
                      strict=True):
        assert_close(g_, c_)


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_input_epilogue_mask_and_activation(dtype, rng):
    """``dx = (delta W^T) * mask * f'(zp)``: the hidden-layer step of the MLP backward pass."""
    from numba import cuda

    x, W, _ = _layer((6, 7, 5), dtype, rng)
    delta = rng.normal(size=(6, 5)).astype(dtype)
    mask = (rng.uniform(size=(6, 7)) < 0.7).astype(dtype) / dtype(0.7)
    zp = rng.normal(size=(6, 7)).astype(dtype)
    ap = np.tanh(zp)
    dx = cuda.device_array((6, 7), dtype)
    launch_grad_input(cuda.to_device(delta), cuda.to_device(W), dx, mask=cuda.to_device(mask),
                      code=A.TANH, zp=cuda.to_device(zp), ap=cuda.to_device(ap),
                      slope=0.01)
    want = D.dense_backward(x, W, delta)[2] * mask * (1.0 - ap.astype(np.float64) ** 2)
    assert_close(host(dx), want, dtype=dtype)


def test_device_mode_and_buffers(rng):
    from numba import cuda

    x, W, b = _layer((5, 6, 4), np.float32, rng)
    dx, dW, db = cuda.to_device(x), cuda.to_device(W), cuda.to_device(b)
    z_buf = cuda.device_array((5, 4), np.float32)
    z, a = gpu_dense_forward(dx, dW, db, "tanh", z=z_buf)
    assert z is z_buf and not isinstance(a, np.ndarray)
    zc, ac = D.dense_forward(x, W, b, "tanh")
    assert_close(host(z), zc)
    assert_close(host(a), ac)
    # a host input among device inputs is uploaded; results stay on the device
    z2, _ = gpu_dense_forward(x, dW, db)
    assert not isinstance(z2, np.ndarray)
    with pytest.raises(TypeError, match="device array"):
        gpu_dense_forward(dx, dW, db, z=np.empty((5, 4), np.float32))
    # host buffers are filled in place
    zh, ah = np.empty((5, 4), np.float32), np.empty((5, 4), np.float32)
    assert gpu_dense_forward(x, W, b, "tanh", z=zh, a=ah) == (zh, ah)
    assert_close(ah, ac)


def test_errors_before_launch(rng):
    from numba import cuda

    x, W, b = _layer((3, 4, 2), np.float32, rng)
    with pytest.raises(ValueError, match="n_in"):
        gpu_dense_forward(x, W.T.copy(), b)
    with pytest.raises(TypeError, match="dtype"):
        gpu_dense_forward(x, W.astype(np.float64), b)
    with pytest.raises(ValueError, match="shape"):
        gpu_dense_forward(x, W, b[:1])
    with pytest.raises(ValueError, match="NaN"):
        gpu_dense_forward(np.full_like(x, np.nan), W, b)
    with pytest.raises(ValueError, match="contiguous"):
        gpu_dense_forward(cuda.to_device(np.asfortranarray(np.ones((3, 4), np.float32))),
                          cuda.to_device(W), cuda.to_device(b))
    with pytest.raises(ValueError, match="shape"):
        gpu_dense_backward(x, W, np.ones((3, 3), np.float32))
