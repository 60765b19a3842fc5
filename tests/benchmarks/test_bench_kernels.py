"""pytest-benchmark cases for the dense kernels (run: pytest tests/benchmarks --benchmark-only).

Under ``--benchmark-disable`` (CI) each case runs once, as a plain correctness test."""

import numpy as np
import pytest

from dlbasics.kernels import dense as D
from dlbasics.kernels.activations import RELU
from dlbasics.kernels.config import BLAS_MIN_ROWS, BLAS_MIN_WORK


def _layer(batch, n_in=784, n_out=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, n_in)).astype(np.float32)
    W = (rng.normal(size=(n_in, n_out)) * 0.05).astype(np.float32)
    b = np.zeros(n_out, np.float32)
    return x, W, b


@pytest.mark.parametrize("batch", [1, 32, 1024])
def test_dense_forward(benchmark, batch):
    x, W, b = _layer(batch)
    z = np.empty((batch, 256), np.float32)
    a = np.empty_like(z)
    args = (x, W, b, RELU, np.float32(0.01), z, a, BLAS_MIN_ROWS, BLAS_MIN_WORK)
    D.forward_kernel(*args)
    benchmark(D.forward_kernel, *args)
    np.testing.assert_allclose(a, np.maximum(x @ W + b, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch", [1, 32, 1024])
def test_dense_backward(benchmark, batch):
    x, W, _ = _layer(batch)
    delta = np.random.default_rng(1).normal(size=(batch, 256)).astype(np.float32)
    dW = np.empty_like(W)
    db = np.empty(256, np.float32)
    dx = np.empty_like(x)
    args = (x, W, delta, dW, db, dx, True, BLAS_MIN_ROWS, BLAS_MIN_WORK)
    D.backward_kernel(*args)
    benchmark(D.backward_kernel, *args)
    np.testing.assert_allclose(dW, x.T @ delta, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(dx, delta @ W.T, rtol=1e-3, atol=1e-3)
