import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from dlbasics.kernels import activations as A
from dlbasics.kernels import losses as L
from tests import naive
from tests.conftest import DTYPES, rtol_for

PROB_LOSSES = ("binary_cross_entropy", "cross_entropy")


def _targets(name, shape, rng, dtype):
    if name in ("binary_cross_entropy", "binary_cross_entropy_logits"):
        return (rng.random(shape) < 0.5).astype(dtype)
    if name in ("cross_entropy", "cross_entropy_logits"):
        k = shape[1] if len(shape) == 2 else 1
        return np.eye(k, dtype=dtype)[rng.integers(0, k, shape[0])].reshape(shape)
    return rng.normal(size=shape).astype(dtype)


def _preds(name, shape, rng, dtype):
    z = rng.normal(size=shape) * 2
    if name == "binary_cross_entropy":
        z = 1 / (1 + np.exp(-z))
    elif name == "cross_entropy":
        z = naive.activate("softmax", np.atleast_2d(z)).reshape(shape)
    return z.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (7, 1), (10, 3), (33, 10), (5,)])
@pytest.mark.parametrize("name", list(L.LOSSES))
def test_loss_and_gradient_match_naive(name, shape, dtype, rng):
    y = _targets(name, shape, rng, dtype)
    p = _preds(name, shape, rng, dtype)
    eps = L.default_eps(dtype)
    value, grad = L.loss_and_gradient(name, y, p)
    assert isinstance(value, float)
    assert grad.shape == p.shape and grad.dtype == dtype
    assert_allclose(value, naive.loss(name, y, p, eps), rtol=rtol_for(dtype))
    assert_allclose(grad, naive.loss_gradient(name, y, p, eps), rtol=rtol_for(dtype),
                    atol=1e-7 if dtype == np.float32 else 1e-15)
    assert L.loss(name, y, p) == value
    assert np.array_equal(L.loss_gradient(name, y, p), grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["cross_entropy", "cross_entropy_logits"])
def test_integer_labels_equal_onehot(name, dtype, rng):
    labels = rng.integers(0, 4, 9)
    p = _preds(name, (9, 4), rng, dtype)
    onehot = np.eye(4, dtype=dtype)[labels]
    v1, g1 = L.loss_and_gradient(name, labels, p)
    v2, g2 = L.loss_and_gradient(name, onehot, p)
    assert_allclose(v1, v2, rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert_allclose(g1, g2, rtol=1e-6, atol=1e-8)


def test_hand_values():
    # squared: 1/2 [(1 - 3)^2 + (2 - 2)^2] = 2 for one sample; mean over 1 sample
    assert L.loss("squared", np.array([[1.0, 2.0]]), np.array([[3.0, 2.0]])) == 2.0
    # binary cross-entropy of p = 0.8 for y = 1 is -log 0.8
    assert_allclose(L.loss("binary_cross_entropy", np.array([1.0]), np.array([0.8])),
                    -np.log(0.8))
    # logits: z = log 4 gives sigmoid 0.8
    assert_allclose(L.loss("binary_cross_entropy_logits", np.array([1.0]),
                           np.array([np.log(4.0)])), -np.log(0.8), rtol=1e-14)
    # cross-entropy: logits (0, log 3) -> softmax (1/4, 3/4); label 1 -> -log 3/4
    v, g = L.loss_and_gradient("cross_entropy_logits", np.array([1]),
                               np.array([[0.0, np.log(3.0)]]))
    assert_allclose(v, -np.log(0.75), rtol=1e-14)
    assert_allclose(g, [[0.25, -0.25]], rtol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stable_for_huge_logits(dtype):
    z = np.array([[1e4, -1e4, 0.0]], dtype=dtype)
    with np.errstate(all="raise"):
        v, g = L.loss_and_gradient("cross_entropy_logits", np.array([1]), z)
        assert_allclose(v, 2e4, rtol=1e-6)
        assert_allclose(g, [[1.0, -1.0, 0.0]], atol=1e-6)
        yb = np.array([[0.0, 1.0, 1.0]], dtype=dtype)
        v, g = L.loss_and_gradient("binary_cross_entropy_logits", yb, z)
        assert_allclose(v, 1e4 + 1e4 + np.log(2), rtol=1e-6)
        assert_allclose(g, [[1.0, -1.0, -0.5]], atol=1e-6)
        # saturated probabilities are clipped, never log(0)
        v = L.loss("binary_cross_entropy", np.array([1.0, 0.0], dtype), np.array([0.0, 1.0],
                                                                                 dtype))
        assert np.isfinite(v)


# Every activation x loss: gradient of loss(f(z)) w.r.t. z by the kernels against central
# differences in float64. Probability-form losses need activations whose range is (0, 1).
PAIRS = [(act, loss) for act in A.ACTIVATIONS if act not in ("step", "sign")
         for loss in ("squared", "binary_cross_entropy_logits", "cross_entropy_logits")]
PAIRS += [("sigmoid", "binary_cross_entropy"), ("softmax", "cross_entropy"),
          ("sigmoid", "squared"), ("step", "squared"), ("sign", "squared")]


@pytest.mark.parametrize("act, loss_name", PAIRS)
def test_activation_loss_gradient_central_differences(act, loss_name, rng):
    z = rng.normal(size=(4, 3)) * 1.5
    z[np.abs(z) < 1e-3] = 0.3
    y = _targets(loss_name, z.shape, rng, np.float64)

    def total(zz):
        return naive.loss(loss_name, y, naive.activate(act, zz), 1e-12)

    h = 1e-6
    fd = np.empty_like(z)
    for idx in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[idx] = h
        fd[idx] = (total(z + e) - total(z - e)) / (2 * h)
    a = A.activate(act, z)
    g = L.loss_gradient(loss_name, y, a)
    comp = A.activation_backward(act, z, a, g)
    assert_allclose(comp, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: L.loss("hinge", np.zeros(2), np.zeros(2)), ValueError, "loss"),
        (lambda: L.loss("squared", np.zeros(2), np.zeros(3)), ValueError, "y_true"),
        (lambda: L.loss("squared", np.zeros(2, np.float32), np.zeros(2)), TypeError, "y_true"),
        (lambda: L.loss("squared", np.zeros(2), np.array([np.nan, 0])), ValueError, "y_pred"),
        (lambda: L.loss("squared", np.zeros(0), np.zeros(0)), ValueError, "y_pred"),
        (lambda: L.loss("squared", np.zeros(2, np.int64), np.zeros(2)), TypeError, "y_true"),
        (lambda: L.loss("cross_entropy_logits", np.array([0, 3]), np.zeros((2, 3))),
         ValueError, "y_true"),
        (lambda: L.loss("cross_entropy_logits", np.array([0, -1]), np.zeros((2, 3))),
         ValueError, "y_true"),
        (lambda: L.loss("cross_entropy_logits", np.array([0.5, 1.0]), np.zeros((2, 3))),
         ValueError, "y_true"),
        (lambda: L.loss_gradient("squared", np.zeros(2), np.zeros(2), out=np.zeros(3)),
         ValueError, "out"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z = rng.normal(size=(6, 4)) * 2
    labels = rng.integers(0, 4, 6)
    yb = (rng.random((6, 4)) < 0.5).astype(np.float64)
    cases = {
        "cross_entropy_logits": (labels, lambda t: F.cross_entropy(t, torch.tensor(labels))),
        "binary_cross_entropy_logits": (
            yb, lambda t: F.binary_cross_entropy_with_logits(t, torch.tensor(yb),
                                                             reduction="sum") / 6),
        "squared": (yb, lambda t: 0.5 * ((t - torch.tensor(yb)) ** 2).sum() / 6),
    }
    for name, (y, fn) in cases.items():
        t = torch.tensor(z, requires_grad=True)
        out = fn(t)
        out.backward()
        v, g = L.loss_and_gradient(name, y, z)
        assert_allclose(v, out.item(), rtol=1e-12)
        assert_allclose(g, t.grad.numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("code", [-1, L.N_CODES, 99])
def test_batch_kernels_reject_an_unknown_code(code):
    """An unknown loss code raises in the compiled batch kernels (the per-row code would treat
    it as cross-entropy from probabilities), and labels take only the cross-entropy codes."""
    y = np.full((2, 3), 1 / 3)
    p = np.full((2, 3), 1 / 3)
    g = np.zeros((2, 3))
    with pytest.raises(ValueError, match="unknown loss code"):
        L.loss_dense_kernel(code, y, p, g, True, 1e-12)
    for bad in (code, L.SQUARED, L.BCE, L.BCE_LOGITS):
        with pytest.raises(ValueError, match="not a cross-entropy"):
            L.loss_labels_kernel(bad, np.zeros(2, np.int64), p, g, True, 1e-12)
    assert not g.any()


def _sig(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def test_float64_logit_losses_are_libm_bitwise(rng):
    # float64 (and float32: the losses' serial sums keep libm, dlbasics.kernels.activations):
    # the value and gradient are the plain formulas with libm, bit for bit
    z = rng.normal(size=(200, 3)) * 5
    y = (rng.random((200, 3)) < 0.5).astype(float)
    v, g = L.loss_and_gradient("binary_cross_entropy_logits", y, z)
    total = 0.0
    for zi, yi in zip(z.ravel(), y.ravel(), strict=True):
        total += max(zi, 0.0) - zi * yi + math.log1p(math.exp(-abs(zi)))
    assert v == total * (1.0 / 200)
    ref = np.array([(_sig(zi) - yi) * (1.0 / 200)
                    for zi, yi in zip(z.ravel(), y.ravel(), strict=True)])
    np.testing.assert_array_equal(g.ravel(), ref)
    labels = rng.integers(0, 3, 200)
    v = L.loss("cross_entropy_logits", labels, z)
    total = 0.0
    for zi, c in zip(z, labels, strict=True):
        m = zi.max()
        s = 0.0
        for v_ in zi:
            s += math.exp(v_ - m)
        total += m + math.log(s) - zi[c]
    assert v == total * (1.0 / 200)

