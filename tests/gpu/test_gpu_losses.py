"""GPU losses (single-block reduction) against tests/naive.py and the CPU twins."""

import numpy as np
import pytest

from dlbasics.kernels import losses as L
from dlbasics.kernels.gpu_losses import (
    dense_row,
    gpu_loss,
    gpu_loss_and_gradient,
    gpu_loss_gradient,
    label_row,
)
from tests import naive
from tests.gpu.conftest import assert_close, host, naive_tol, tol

DTYPES = [np.float32, np.float64]


def _data(name, dtype, rng, n=19, k=4):
    z = rng.normal(size=(n, k)).astype(dtype)
    if name in ("binary_cross_entropy", "cross_entropy"):
        p = 1.0 / (1.0 + np.exp(-z))
        if name == "cross_entropy":
            p = p / p.sum(axis=1, keepdims=True)
        z = p.astype(dtype)
    y = rng.uniform(size=(n, k)).astype(dtype)
    if name.startswith("cross_entropy"):
        y = (y / y.sum(axis=1, keepdims=True)).astype(dtype)
    return y, z


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(L.LOSSES))
def test_dense_targets_match_naive_and_cpu(name, dtype, rng):
    y, p = _data(name, dtype, rng)
    value, grad = gpu_loss_and_gradient(name, y, p)
    cv, cg = L.loss_and_gradient(name, y, p)
    # float64 sums in another order; float32 inputs also meet the GPU's expf/logf
    assert value == pytest.approx(cv, rel=tol(dtype))
    assert_close(grad, cg)
    eps = L.default_eps(dtype)
    t = naive_tol(dtype)
    np.testing.assert_allclose(value, naive.loss(name, y, p, eps), rtol=t)
    np.testing.assert_allclose(grad, naive.loss_gradient(name, y, p, eps), rtol=t, atol=t)
    assert gpu_loss(name, y, p) == value


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["cross_entropy", "cross_entropy_logits"])
def test_integer_labels(name, dtype, rng):
    _, p = _data(name, dtype, rng)
    labels = rng.integers(0, p.shape[1], size=p.shape[0])
    value, grad = gpu_loss_and_gradient(name, labels, p)
    cv, cg = L.loss_and_gradient(name, labels, p)
    assert value == pytest.approx(cv, rel=tol(dtype))
    assert_close(grad, cg)
    eps = L.default_eps(dtype)
    t = naive_tol(dtype)
    np.testing.assert_allclose(grad, naive.loss_gradient(name, labels, p, eps), rtol=t, atol=t)


def test_one_dimensional_and_buffers(rng):
    y = rng.uniform(size=11)
    p = rng.normal(size=11)
    out = np.empty(11)
    assert gpu_loss_gradient("squared", y, p, out=out) is out
    assert_close(out, L.loss_gradient("squared", y, p))
    assert gpu_loss("squared", y, p) == pytest.approx(L.loss("squared", y, p), rel=tol(np.float64))


def test_device_mode(rng):
    from numba import cuda

    y, p = _data("cross_entropy_logits", np.float32, rng)
    value, grad = gpu_loss_and_gradient("cross_entropy_logits", cuda.to_device(y),
                                        cuda.to_device(p))
    assert not isinstance(grad, np.ndarray)
    cv, cg = L.loss_and_gradient("cross_entropy_logits", y, p)
    assert value == pytest.approx(cv, rel=tol(np.float32))
    assert_close(host(grad), cg)
    labels = cuda.to_device(rng.integers(0, 4, size=p.shape[0]))
    gpu_loss("cross_entropy_logits", labels, cuda.to_device(p))


def test_row_functions_on_the_cpu(rng):
    """The row formulas are plain @njit code: summed row by row they give the CPU kernel."""
    y, p = _data("cross_entropy_logits", np.float64, rng)
    for code in (L.SQUARED, L.BCE_LOGITS, L.CE_LOGITS):
        grad = np.empty_like(p)
        total = 0.0
        for i in range(p.shape[0]):
            total = dense_row(code, y[i], p[i], grad[i], True, 1e-12, 1.0 / p.shape[0], total)
        want_grad = np.empty_like(p)
        want = L.loss_dense_kernel(code, y, p, want_grad, True, 1e-12)
        assert total * (1.0 / p.shape[0]) == want
        np.testing.assert_array_equal(grad, want_grad)
    labels = rng.integers(0, 4, size=p.shape[0])
    total = 0.0
    grad = np.empty_like(p)
    for i in range(p.shape[0]):
        total = label_row(L.CE_LOGITS, labels[i], p[i], grad[i], True, 1e-12, 1.0 / 19, total)
    want_grad = np.empty_like(p)
    want = L.loss_labels_kernel(L.CE_LOGITS, labels, p, want_grad, True, 1e-12)
    assert total * (1.0 / 19) == want
    np.testing.assert_array_equal(grad, want_grad)


def test_errors_before_launch(rng):
    y, p = _data("squared", np.float32, rng)
    with pytest.raises(TypeError, match="integer class labels"):
        gpu_loss("squared", np.zeros(19, np.int64), p)
    with pytest.raises(ValueError, match="range"):
        gpu_loss("cross_entropy", np.full(19, 7), p)
    with pytest.raises(ValueError, match="shape"):
        gpu_loss("squared", y[:3], p)
    with pytest.raises(ValueError, match="NaN"):
        gpu_loss("squared", y, np.full_like(p, np.inf))
    with pytest.raises(ValueError, match="loss"):
        gpu_loss("hinge", y, p)
