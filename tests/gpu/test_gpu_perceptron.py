"""GPU perceptron epoch (one cooperating block) against the CPU rule and tests/naive.py."""

import numpy as np
import pytest

from dlbasics.kernels.gpu_perceptron import gpu_perceptron_epoch, gpu_perceptron_predict
from dlbasics.kernels.perceptron import perceptron_epoch, perceptron_predict
from tests import naive
from tests.gpu.conftest import assert_close, host

DTYPES = [np.float32, np.float64]


def _separable(rng, n, d, dtype, integer):
    X = rng.integers(-4, 5, size=(n, d)).astype(dtype) if integer else \
        rng.normal(size=(n, d)).astype(dtype)
    w = rng.normal(size=d)
    y = np.where(X.astype(np.float64) @ w + 0.3 > 0, 1, -1)
    return X, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lr", [1.0, 0.5])
def test_exact_data_gives_the_cpu_bits(lr, dtype, rng):
    """Small integers and lr in {1, 1/2}: every score is exact, whatever the summation order."""
    X, y = _separable(rng, 23, 19, dtype, integer=True)
    w, b = np.zeros(19, dtype), np.zeros(1, dtype)
    wc, bc = w.copy(), b.copy()
    for epoch in range(3):
        order = rng.permutation(23)
        wr, br, mr = naive.perceptron_epoch(X, y, wc, bc, lr, order)
        assert gpu_perceptron_epoch(X, y, w, b, lr, order) == perceptron_epoch(
            X, y, wc, bc, lr, order) == mr, epoch
        np.testing.assert_array_equal(w, wc)
        np.testing.assert_array_equal(b, bc)
        np.testing.assert_array_equal(w, wr)
    np.testing.assert_array_equal(gpu_perceptron_predict(X, w, b), perceptron_predict(X, w, b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_data_within_rounding(dtype, rng):
    X, y = _separable(rng, 30, 7, dtype, integer=False)
    w, b = np.zeros(7, dtype), np.zeros(1, dtype)
    wc, bc = w.copy(), b.copy()
    m = [gpu_perceptron_epoch(X, y, w, b, 0.1) for _ in range(2)]
    mc = [perceptron_epoch(X, y, wc, bc, 0.1) for _ in range(2)]
    assert m == mc
    assert_close(w, wc)
    assert_close(b, bc)


def test_device_mode(rng):
    from numba import cuda

    X, y = _separable(rng, 12, 5, np.float32, integer=True)
    dw = cuda.to_device(np.zeros(5, np.float32))
    db = cuda.to_device(np.zeros(1, np.float32))
    dX = cuda.to_device(X)
    mistakes = gpu_perceptron_epoch(dX, cuda.to_device(y.astype(np.float32)), dw, db,
                                    order=cuda.to_device(np.arange(12)))
    w, b = np.zeros(5, np.float32), np.zeros(1, np.float32)
    assert mistakes == perceptron_epoch(X, y, w, b)
    np.testing.assert_array_equal(host(dw), w)
    pred = gpu_perceptron_predict(dX, dw, db)
    assert not isinstance(pred, np.ndarray)
    np.testing.assert_array_equal(host(pred), perceptron_predict(X, w, b))


def test_errors_before_launch(rng):
    X, y = _separable(rng, 6, 3, np.float64, integer=True)
    w, b = np.zeros(3), np.zeros(1)
    with pytest.raises(ValueError, match="-1 and \\+1"):
        gpu_perceptron_epoch(X, np.zeros(6), w, b)
    with pytest.raises(ValueError, match="permutation"):
        gpu_perceptron_epoch(X, y, w, b, order=np.zeros(6, np.int64))
    with pytest.raises(ValueError, match="shape"):
        gpu_perceptron_epoch(X, y, np.zeros(2), b)
    with pytest.raises(ValueError, match="lr"):
        gpu_perceptron_epoch(X, y, w, b, lr=0.0)
