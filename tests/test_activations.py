import numpy as np
import pytest
from numpy.testing import assert_allclose

from dlbasics.kernels import activations as A
from tests import naive
from tests.conftest import DTYPES, rtol_for

SHAPES = [(1, 1), (1, 7), (5, 1), (13, 17), (64, 33)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(A.ACTIVATIONS))
def test_activate_matches_naive(name, shape, dtype, rng):
    z = (rng.normal(size=shape) * 3).astype(dtype)
    ref = naive.activate(name, z)
    comp = A.activate(name, z)
    assert comp.dtype == dtype
    assert_allclose(comp, ref, rtol=rtol_for(dtype), atol=1e-7 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", A.ELEMENTWISE)
def test_derivative_matches_naive(name, dtype, rng):
    z = (rng.normal(size=(9, 11)) * 3).astype(dtype)
    assert_allclose(A.derivative(name, z), naive.derivative(name, z), rtol=rtol_for(dtype),
                    atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(A.ACTIVATIONS))
def test_backward_matches_naive(name, dtype, rng):
    z = (rng.normal(size=(6, 5)) * 2).astype(dtype)
    delta = rng.normal(size=(6, 5)).astype(dtype)
    a = A.activate(name, z)
    comp = A.activation_backward(name, z, a, delta)
    assert_allclose(comp, naive.activation_backward(name, z, delta), rtol=rtol_for(dtype),
                    atol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu", "softplus", "identity"])
def test_derivative_central_differences(name, rng):
    z = rng.normal(size=(4, 6)) * 2
    z[np.abs(z) < 1e-3] = 0.5  # stay off the kinks of relu/leaky_relu
    h = 1e-6
    fd = (naive.activate(name, z + h) - naive.activate(name, z - h)) / (2 * h)
    assert_allclose(A.derivative(name, z), fd, rtol=1e-7, atol=1e-9)


def test_softmax_backward_central_differences(rng):
    z = rng.normal(size=(3, 5))
    delta = rng.normal(size=(3, 5))
    h = 1e-6
    fd = np.empty_like(z)
    for idx in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[idx] = h
        fd[idx] = ((naive.activate("softmax", z + e) - naive.activate("softmax", z - e)) * delta
                   ).sum() / (2 * h)
    comp = A.activation_backward("softmax", z, A.activate("softmax", z), delta)
    assert_allclose(comp, fd, rtol=1e-7, atol=1e-9)


def test_hand_values():
    z = np.array([-2.0, 0.0, 3.0])
    assert_allclose(A.activate("step", z), [0.0, 0.0, 1.0])  # fires only above the threshold
    assert_allclose(A.activate("sign", z), [-1.0, 0.0, 1.0])
    assert_allclose(A.activate("relu", z), [0.0, 0.0, 3.0])
    assert_allclose(A.activate("leaky_relu", z), [-0.02, 0.0, 3.0])
    assert_allclose(A.activate("sigmoid", z), [1 / (1 + np.e**2), 0.5, 1 / (1 + np.e**-3)])
    assert_allclose(A.activate("softplus", np.array([0.0])), [np.log(2.0)])
    sm = A.activate("softmax", np.array([[0.0, np.log(3.0)]]))
    assert_allclose(sm, [[0.25, 0.75]])
    assert not np.signbit(A.activate("relu", np.array([-1.0]))).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(A.ACTIVATIONS))
def test_no_overflow_for_large_inputs(name, dtype):
    z = np.array([[-1e4, -500.0, 0.0, 500.0, 1e4]], dtype=dtype)
    with np.errstate(all="raise"):
        a = A.activate(name, z)
        d = A.activation_backward(name, z, a, np.ones_like(z))
    assert np.isfinite(a).all() and np.isfinite(d).all()
    if name == "sigmoid":
        assert_allclose(a, [[0, 0, 0.5, 1, 1]], atol=1e-30)
    if name == "softplus":
        assert_allclose(a[0, [0, 4]], [0.0, 1e4])
    if name == "softmax":
        assert_allclose(a, [[0, 0, 0, 0, 1]])


def test_nan_propagates():
    z = np.array([[np.nan, 1.0]])
    for name in ("identity", "sigmoid", "tanh", "relu", "softplus", "leaky_relu"):
        assert np.isnan(A.activate(name, z)[0, 0]), name


def test_out_buffer_and_inplace(rng):
    z = rng.normal(size=(4, 4))
    ref = naive.activate("tanh", z)
    A.activate("tanh", z, out=z)
    assert_allclose(z, ref, rtol=1e-14)


def test_deterministic(rng):
    z = rng.normal(size=(50, 50)).astype(np.float32)
    for name in A.ACTIVATIONS:
        assert np.array_equal(A.activate(name, z), A.activate(name, z))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: A.activate("swish", np.zeros((2, 2))), ValueError, "activation"),
        (lambda: A.activate("relu", [1.0, 2.0]), TypeError, "z"),
        (lambda: A.activate("relu", np.zeros((2, 2), dtype=np.int64)), TypeError, "z"),
        (lambda: A.activate("relu", np.zeros((2, 2, 2))), ValueError, "z"),
        (lambda: A.activate("relu", np.zeros((4, 4))[:, ::2]), ValueError, "z"),
        (lambda: A.activate("relu", np.zeros((2, 2)), out=np.zeros((2, 3))), ValueError, "out"),
        (lambda: A.activate("relu", np.zeros((2, 2)), out=np.zeros((2, 2), np.float32)),
         TypeError, "out"),
        (lambda: A.derivative("softmax", np.zeros((2, 2))), ValueError, "softmax"),
        (lambda: A.activation_backward("relu", np.zeros((2, 2)), np.zeros((2, 2)),
                                       np.zeros((2, 2), np.float32)), TypeError, "delta"),
        (lambda: A.activate("leaky_relu", np.zeros(2), slope=float("nan")), ValueError, "slope"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    fns = {
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
        "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, 0.01),
        "softplus": torch.nn.functional.softplus,
        "softmax": lambda t: torch.softmax(t, dim=1),
    }
    z = rng.normal(size=(5, 7)) * 3
    delta = rng.normal(size=(5, 7))
    for name, fn in fns.items():
        t = torch.tensor(z, requires_grad=True)
        out = fn(t)
        out.backward(torch.tensor(delta))
        a = A.activate(name, z)
        assert_allclose(a, out.detach().numpy(), rtol=1e-12, atol=1e-15)
        assert_allclose(A.activation_backward(name, z, a, delta), t.grad.numpy(), rtol=1e-10,
                        atol=1e-14)


@pytest.mark.parametrize("name", ["tanh", "relu", "softmax"])
def test_backward_takes_read_only_inputs(name, rng):
    z = rng.normal(size=(5, 4))
    a = A.activate(name, z)
    delta = rng.normal(size=(5, 4))
    want = A.activation_backward(name, z, a, delta)
    for arr in (z, a, delta):
        arr.flags.writeable = False
    got = A.activation_backward(name, z, a, delta)
    np.testing.assert_array_equal(got, want)
    assert not delta.flags.writeable and not np.shares_memory(got, delta)
