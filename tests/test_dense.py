import numpy as np
import pytest
from numpy.testing import assert_allclose

from dlbasics.kernels import activations as A
from dlbasics.kernels import dense as D
from dlbasics.kernels import losses as L
from tests import naive
from tests.conftest import DTYPES, rtol_for

SHAPES = [(1, 1, 1), (1, 784, 256), (3, 2, 16), (7, 5, 1), (32, 13, 10), (64, 100, 70)]
# (min_rows, min_work) forcing each implementation: hand-written loops, BLAS
PATHS = {"loops": (10**9, 10**9), "blas": (0, 0)}


def _layer(shape, dtype, rng):
    n, n_in, n_out = shape
    x = rng.normal(size=(n, n_in)).astype(dtype)
    W = (rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.normal(size=n_out).astype(dtype)
    return x, W, b


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ["identity", "tanh", "relu", "softmax"])
def test_forward_matches_naive(activation, shape, dtype, path, rng):
    x, W, b = _layer(shape, dtype, rng)
    z = np.empty((shape[0], shape[2]), dtype)
    a = np.empty_like(z)
    code = A.activation_code(activation)
    D.forward_kernel(x, W, b, code, dtype(0.01), z, a, *PATHS[path])
    zr, ar = naive.dense_forward(x, W, b, activation)
    tol = rtol_for(dtype) * (10 if shape[1] > 100 else 1)
    assert_allclose(z, zr, rtol=tol, atol=tol)
    assert_allclose(a, ar, rtol=tol, atol=tol)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_naive(shape, dtype, path, rng):
    x, W, _ = _layer(shape, dtype, rng)
    delta = rng.normal(size=(shape[0], shape[2])).astype(dtype)
    dW = np.empty_like(W)
    db = np.empty(shape[2], dtype)
    dx = np.empty_like(x)
    D.backward_kernel(x, W, delta, dW, db, dx, True, *PATHS[path])
    rW, rb, rx = naive.dense_backward(x, W, delta)
    tol = rtol_for(dtype) * (10 if max(shape) > 100 else 1)
    assert_allclose(dW, rW, rtol=tol, atol=tol)
    assert_allclose(db, rb, rtol=tol, atol=tol)
    assert_allclose(dx, rx, rtol=tol, atol=tol)


def test_public_wrappers_and_buffers(rng):
    x, W, b = _layer((4, 3, 2), np.float64, rng)
    z = np.empty((4, 2))
    a = np.empty((4, 2))
    z2, a2 = D.dense_forward(x, W, b, "sigmoid", z=z, a=a)
    assert z2 is z and a2 is a
    zr, ar = naive.dense_forward(x, W, b, "sigmoid")
    assert_allclose(a, ar, rtol=1e-14)
    dW, db, dx = D.dense_backward(x, W, a, need_dx=False)
    assert dx is None
    assert_allclose(dW, x.T @ a, rtol=1e-14)


def test_notes_identity_sigmoid_bce(rng):
    """The notes: with a sigmoid output and binary cross-entropy, dL/dw_j = (y* - y) z_j."""
    z_hidden = rng.normal(size=(1, 2))  # z_1, z_2 of the hidden layer, one sample
    W = rng.normal(size=(2, 1))
    b = np.zeros(1)
    y = np.array([[1.0]])
    _, ystar = D.dense_forward(z_hidden, W, b, "sigmoid")
    v = np.empty((1, 1))
    D.forward_kernel(z_hidden, W, b, A.IDENTITY, 0.0, v, v.copy(), 0, 0)
    dL_dystar = L.loss_gradient("binary_cross_entropy", y, ystar)
    delta = A.activation_backward("sigmoid", v, ystar, dL_dystar)
    dW, _, _ = D.dense_backward(z_hidden, W, delta)
    assert_allclose(dW[:, 0], (ystar[0, 0] - y[0, 0]) * z_hidden[0], rtol=1e-10)


def test_layer_gradient_central_differences(rng):
    x, W, b = _layer((5, 4, 3), np.float64, rng)
    labels = rng.integers(0, 3, 5)

    def total(W_, b_, x_):
        z, _ = naive.dense_forward(x_, W_, b_, "identity")
        return naive.loss("cross_entropy_logits", labels, z, 1e-12)

    z, _ = D.dense_forward(x, W, b)
    g = L.loss_gradient("cross_entropy_logits", labels, z)
    dW, db, dx = D.dense_backward(x, W, g)
    h = 1e-6
    for arr, grad in ((W, dW), (b, db), (x, dx)):
        fd = np.empty_like(arr)
        for idx in np.ndindex(arr.shape):
            save = arr[idx]
            arr[idx] = save + h
            up = total(W, b, x)
            arr[idx] = save - h
            down = total(W, b, x)
            arr[idx] = save
            fd[idx] = (up - down) / (2 * h)
        assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


def test_deterministic(rng):
    x, W, b = _layer((256, 784, 256), np.float32, rng)
    z1, a1 = D.dense_forward(x, W, b, "relu")
    z2, a2 = D.dense_forward(x, W, b, "relu")
    assert np.array_equal(a1, a2)
    g1 = D.dense_backward(x, W, a1)
    g2 = D.dense_backward(x, W, a1)
    for u, v in zip(g1, g2, strict=True):
        assert np.array_equal(u, v)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: D.dense_forward(np.zeros((2, 3)), np.zeros((4, 2)), np.zeros(2)), ValueError,
         "W"),
        (lambda: D.dense_forward(np.zeros((2, 3)), np.zeros((3, 2)), np.zeros(3)), ValueError,
         "b"),
        (lambda: D.dense_forward(np.zeros((2, 3)), np.zeros((3, 2), np.float32), np.zeros(2)),
         TypeError, "W"),
        (lambda: D.dense_forward(np.zeros((0, 3)), np.zeros((3, 2)), np.zeros(2)), ValueError,
         "x"),
        (lambda: D.dense_forward(np.full((2, 3), np.inf), np.zeros((3, 2)), np.zeros(2)),
         ValueError, "x"),
        (lambda: D.dense_forward(np.zeros(3), np.zeros((3, 2)), np.zeros(2)), ValueError, "x"),
        (lambda: D.dense_forward(np.zeros((2, 3)), np.zeros((3, 2)), np.zeros(2), "swish"),
         ValueError, "activation"),
        (lambda: D.dense_forward(np.zeros((2, 3)), np.zeros((3, 2)), np.zeros(2),
                                 z=np.zeros((2, 2), np.float32)), TypeError, "z"),
        (lambda: D.dense_backward(np.zeros((2, 3)), np.zeros((3, 2)), np.zeros((3, 2))),
         ValueError, "delta"),
        (lambda: D.dense_backward(np.zeros((2, 3)), np.zeros((3, 2)), np.zeros((2, 2)),
                                  dW=np.zeros((2, 3))), ValueError, "dW"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    x, W, b = _layer((6, 5, 4), np.float64, rng)
    labels = rng.integers(0, 4, 6)
    tx, tW, tb = (torch.tensor(v, requires_grad=True) for v in (x, W, b))
    h = torch.tanh(tx @ tW + tb)
    out = torch.nn.functional.cross_entropy(h, torch.tensor(labels))
    out.backward()
    z, a = D.dense_forward(x, W, b, "tanh")
    v, g = L.loss_and_gradient("cross_entropy_logits", labels, a)
    delta = A.activation_backward("tanh", z, a, g)
    dW, db, dx = D.dense_backward(x, W, delta)
    assert_allclose(v, out.item(), rtol=1e-12)
    for mine, theirs in ((dW, tW), (db, tb), (dx, tx)):
        assert_allclose(mine, theirs.grad.numpy(), rtol=1e-10, atol=1e-14)
