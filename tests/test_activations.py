import math

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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", A.ELEMENTWISE)
def test_act_flat_is_the_scalar_form_bit_for_bit(name, dtype, rng):
    """``act_flat``'s loop for each activation (one small formula each, or ``_act_rare``) gives
    the bits of ``act_scalar``, the dispatching form that the GPU kernels inline, rounded to the
    dtype, on 33 elements (the vector loop and its remainder) with 0, -0, +-inf, NaN and large
    values among them."""
    code = A.ACTIVATIONS[name]
    z = (rng.normal(size=33) * 3).astype(dtype)
    z[[1, 5, 9, 13, 17, 21, 26]] = [0.0, -0.0, np.inf, -np.inf, np.nan, 50.0, -50.0]
    out = np.full_like(z, 7.0)
    A.act_flat(code, z, out, dtype(0.01))
    want = np.array([A.act_scalar(code, z[e], dtype(0.01)) for e in range(33)]).astype(dtype)
    np.testing.assert_array_equal(out.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", A.ELEMENTWISE)
def test_dact_mul_in_place_is_the_separate_output_form_bit_for_bit(name, dtype, rng):
    """``dact_mul_inplace`` (the network step's form), ``dact_mul_flat`` in place and into a
    separate ``out`` give the same bits, and those of ``delta * f'(z)`` with the derivative
    from the scalar kernel, multiplied in float64 and rounded to the dtype (33 elements: the
    vector loop and its remainder)."""
    code = A.ACTIVATIONS[name]
    z = (rng.normal(size=33) * 3).astype(dtype)
    a = np.empty_like(z)
    A.act_flat(code, z, a, dtype(0.01))
    delta = rng.normal(size=33).astype(dtype)
    out = np.full_like(z, np.nan)
    A.dact_mul_flat(code, z, a, delta, out, dtype(0.01))
    d1, d2 = delta.copy(), delta.copy()
    A.dact_mul_flat(code, z, a, d1, d1, dtype(0.01))
    A.dact_mul_inplace(code, z, a, d2, dtype(0.01))
    want = np.array([float(delta[e]) * A.dact_scalar(code, z[e], a[e], dtype(0.01))
                     for e in range(33)]).astype(dtype)  # the product in float64, rounded
    for got in (out, d1, d2):
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("name", A.ELEMENTWISE)
def test_derivative_central_differences(name, rng):
    z = rng.normal(size=(4, 6)) * 2
    z[np.abs(z) < 1e-3] = 0.5  # stay off the kinks of relu/leaky_relu and the steps
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
    # Phi(1) = 0.8413447460685429, so gelu(1) = Phi(1) and gelu(-1) = -(1 - Phi(1))
    assert_allclose(A.activate("gelu", np.array([-1.0, 0.0, 1.0])),
                    [-0.15865525393145707, 0.0, 0.8413447460685429], rtol=1e-15)
    # tanh(sqrt(2/pi) 1.044715) = 0.6823839812165536: 0.5 (1 +- that)
    assert_allclose(A.activate("gelu_tanh", np.array([-1.0, 1.0])),
                    [-0.15880800939172324, 0.8411919906082768], rtol=1e-15)
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
    for name in A.ELEMENTWISE:
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


def torch_functions(torch):
    """torch's twin of every activation of the registry (the step has none: its value and
    zero derivative are checked against naive.py only)."""
    F = torch.nn.functional
    return {
        "identity": lambda t: t * 1.0, "sign": torch.sign,
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
        "leaky_relu": lambda t: F.leaky_relu(t, 0.01),
        "softplus": F.softplus,
        "softmax": lambda t: torch.softmax(t, dim=1),
        "gelu": lambda t: F.gelu(t, approximate="none"),
        "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    }


def test_every_activation_has_a_torch_twin():
    torch = pytest.importorskip("torch")
    assert set(torch_functions(torch)) | {"step"} == set(A.ACTIVATIONS)


@pytest.mark.parametrize("name", [n for n in A.ACTIVATIONS if n != "step"])
def test_against_torch(name, rng):
    """Value and gradient against torch in float64: to 1e-12 (and 1e-15 absolute)."""
    torch = pytest.importorskip("torch")
    fn = torch_functions(torch)[name]
    z = rng.normal(size=(5, 7)) * 3
    z[0, :6] = [-40.0, -8.0, -1e-9, 0.5, 8.0, 40.0]  # tails and the centre
    delta = rng.normal(size=(5, 7))
    t = torch.tensor(z, requires_grad=True)
    out = fn(t)
    out.backward(torch.tensor(delta))
    a = A.activate(name, z)
    assert_allclose(a, out.detach().numpy(), rtol=1e-12, atol=1e-15)
    assert_allclose(A.activation_backward(name, z, a, delta), t.grad.numpy(), rtol=1e-12,
                    atol=1e-15)


@pytest.mark.parametrize("code", [-1, A.SOFTMAX, A.N_CODES, 99])
def test_compiled_kernels_reject_an_unknown_code(code):
    """An unknown code raises (softmax is not elementwise: it raises where only elementwise
    codes are allowed), before anything is written."""
    z = np.ones((2, 3))
    out = np.zeros((2, 3))
    calls = [lambda: A.derivative_kernel(code, z, out, 0.01),
             lambda: A.act_flat(code, z[0], out[0], 0.01),
             lambda: A.dact_mul_flat(code, z[0], z[0], z[0], out[0], 0.01),
             lambda: A.dact_mul_inplace(code, z[0], z[0], out[0], 0.01)]
    if code != A.SOFTMAX:
        calls += [lambda: A.forward_kernel(code, z, out, 0.01),
                  lambda: A.backward_kernel(code, z, z, z, out, 0.01)]
    for call in calls:
        with pytest.raises(ValueError, match="activation code"):
            call()
        assert not out.any()


@pytest.mark.parametrize("name", list(A.ACTIVATIONS))
def test_numpy_backend_table_matches_the_kernels(name, rng):
    """The NumPy backend's one table (name -> value, backward) holds every registry entry and
    agrees with the kernels (softmax's backward included: it is the Jacobian product)."""
    from dlbasics.models import _numpy

    z = rng.normal(size=(4, 5)) * 3
    delta = rng.normal(size=(4, 5))
    a = A.activate(name, z)
    value, backward = _numpy.ACTIVATIONS[name]
    assert_allclose(value(z, 0.01), a, rtol=1e-13, atol=1e-15)
    assert_allclose(backward(z, a, delta, 0.01), A.activation_backward(name, z, a, delta),
                    rtol=1e-13, atol=1e-15)


def test_numpy_backend_raises_for_unknown_names_and_codes():
    from types import SimpleNamespace

    from dlbasics.models import _numpy

    assert set(_numpy.ACTIVATIONS) == set(A.ACTIVATIONS)
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="swish"):
        _numpy._act("swish", z, 0.01)
    with pytest.raises(ValueError, match="swish"):
        _numpy._backward("swish", z, z, z, 0.01)
    model = SimpleNamespace(loss_code=99, n_outputs=3, dtype=np.float64)
    cache = [(z, z, z, None)]
    with pytest.raises(ValueError, match="loss code 99"):
        _numpy._loss_and_delta(model, cache, z, None, True)


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


@pytest.mark.parametrize("output", ["softmax", "gelu", "gelu_tanh"])
def test_numpy_backend_backprops_every_output_activation(output, rng):
    """A non-fused output (squared loss) back-propagates through the activation's own backward
    on the NumPy backend too: the gradient equals the compiled backend's. (Its old if-chain gave
    softmax a zero derivative, so the output layer of softmax + squared loss learnt nothing.)"""
    from dlbasics.models import MLP

    X = rng.normal(size=(6, 3))
    Y = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    got = []
    for backend in ("cpu", "numpy"):
        m = MLP([3, 4, 3], activation="gelu", output=output, loss="squared", backend=backend,
                dtype=np.float64)
        value, grad = m.gradient(X, Y)
        got.append((value, np.array(grad)))
    assert got[0][0] == pytest.approx(got[1][0], rel=1e-13)
    assert_allclose(got[1][1], got[0][1], rtol=1e-11, atol=1e-14)
    assert np.abs(got[1][1]).max() > 1e-3


def _sig(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def test_float64_sigmoid_softplus_softmax_are_libm_bitwise(rng):
    # float64 keeps libm's exp/log1p (dlbasics.kernels.vecmath): the plain formulas, bit for bit
    z = rng.normal(size=(40, 25)) * 8
    np.testing.assert_array_equal(A.activate("sigmoid", z), np.vectorize(_sig)(z))
    sp = np.vectorize(lambda v: max(v, 0.0) + math.log1p(math.exp(-abs(v))))(z)
    np.testing.assert_array_equal(A.activate("softplus", z), sp)
    d = rng.normal(size=z.shape)
    np.testing.assert_array_equal(A.activation_backward("softplus", z, sp, d),
                                  d * np.vectorize(_sig)(z))
    ref = np.empty_like(z)
    for i, zi in enumerate(z):
        e = [math.exp(v - zi.max()) for v in zi]
        s = 0.0
        for v in e:
            s += v
        ref[i] = np.array(e) * (1.0 / s)
    np.testing.assert_array_equal(A.activate("softmax", z), ref)


def test_float32_sigmoid_is_rounded_libm(rng):
    # float32: the sigmoid is computed in float64 (vecmath.sigmoid_f64_eval) and rounded once,
    # so it is libm's float64 sigmoid rounded (correctly rounded but for rare near-ties); the
    # old float32 form, 1 / (1 + expf(-z)), missed in 3.3% of values
    z = (rng.normal(size=(200, 100)) * 6).astype(np.float32)
    ref = np.vectorize(_sig)(z.astype(np.float64)).astype(np.float32)
    assert (A.activate("sigmoid", z) != ref).sum() <= 2
