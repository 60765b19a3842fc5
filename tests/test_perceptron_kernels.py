"""Perceptron rule: a hand-worked step, the s == 0 convention, agreement with the plain-Python
reference over shuffled epochs, convergence on separable data, and input validation."""

import numpy as np
import pytest

from dlbasics.kernels.perceptron import epoch_kernel, perceptron_epoch, perceptron_predict
from tests import naive

DTYPES = [np.float32, np.float64]


def _zeros(d, dtype):
    return np.zeros(d, dtype), np.zeros(1, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hand_worked_epochs(dtype):
    X = np.array([[1.0, 2.0], [-1.0, 1.0]], dtype)
    y = np.array([1, -1])
    w, b = _zeros(2, dtype)
    # epoch 1, lr = 0.5
    # sample 0: s = 0*1 + 0*2 + 0 = 0 -> y*s = 0 <= 0, mistake:
    #           w = [0, 0] + 0.5*(+1)*[1, 2] = [0.5, 1.0],  b = 0 + 0.5*(+1) = 0.5
    # sample 1: s = 0.5*(-1) + 1.0*1 + 0.5 = 1.0 -> y*s = -1 <= 0, mistake:
    #           w = [0.5, 1.0] + 0.5*(-1)*[-1, 1] = [1.0, 0.5],  b = 0.5 - 0.5 = 0
    assert perceptron_epoch(X, y, w, b, lr=0.5) == 2
    np.testing.assert_array_equal(w, [1.0, 0.5])
    np.testing.assert_array_equal(b, [0.0])
    # epoch 2: sample 0: s = 1 + 1 + 0 = 2 > 0 (y=+1) ok; sample 1: s = -1 + 0.5 = -0.5 (y=-1) ok
    assert perceptron_epoch(X, y, w, b, lr=0.5) == 0
    np.testing.assert_array_equal(w, [1.0, 0.5])
    np.testing.assert_array_equal(perceptron_predict(X, w, b), [1.0, -1.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_notes_rule_with_lr_one_and_reversed_order(dtype):
    # lr = 1 is the notes' w <- w + y x. Visit sample 1 first:
    # sample 1: s = 0 -> mistake: w = [0,0] + (-1)*[-1, 1] = [1, -1], b = -1
    # sample 0: s = 1*1 + (-1)*2 - 1 = -2, y = +1 -> mistake: w = [1,-1] + [1, 2] = [2, 1], b = 0
    X = np.array([[1.0, 2.0], [-1.0, 1.0]], dtype)
    y = np.array([1.0, -1.0], dtype)
    w, b = _zeros(2, dtype)
    assert perceptron_epoch(X, y, w, b, order=np.array([1, 0])) == 2
    np.testing.assert_array_equal(w, [2.0, 1.0])
    np.testing.assert_array_equal(b, [0.0])


@pytest.mark.parametrize("label", [1, -1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_score_zero_is_a_mistake_for_either_label(label, dtype):
    # w = [1, -1], b = 0, x = [2, 2]: s = 2 - 2 + 0 = 0 -> y*s = 0 <= 0 -> update
    X = np.array([[2.0, 2.0]], dtype)
    w = np.array([1.0, -1.0], dtype)
    b = np.zeros(1, dtype)
    assert perceptron_epoch(X, np.array([label]), w, b) == 1
    np.testing.assert_array_equal(w, [1.0 + 2 * label, -1.0 + 2 * label])
    np.testing.assert_array_equal(b, [label])
    # prediction at s == 0 is -1 (the threshold neuron fires only for s > 0)
    w0 = np.array([1.0, -1.0], dtype)
    np.testing.assert_array_equal(perceptron_predict(X, w0, np.zeros(1, dtype)), [-1.0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 13), (7, 1), (7, 13), (128, 300)])
def test_epochs_match_naive_with_shuffled_order(shape, dtype):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    n, d = shape
    X = rng.normal(size=shape).astype(dtype)
    y = np.where(rng.random(n) < 0.5, -1, 1)
    w = rng.normal(size=d).astype(dtype) * 0.1
    b = np.array([0.05], dtype)
    rw, rb = w.copy(), b.copy()
    for epoch in range(4):
        order = rng.permutation(n)
        lr = 0.3 + 0.1 * epoch
        got = perceptron_epoch(X, y, w, b, lr=lr, order=order)
        rw, rb, ref = naive.perceptron_epoch(X, y, rw, rb, lr=lr, order=order)
        assert got == ref, epoch
        np.testing.assert_array_equal(w, rw)
        np.testing.assert_array_equal(b, rb)
    np.testing.assert_array_equal(perceptron_predict(X, w, b), naive.perceptron_predict(X, w, b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_worker_directly(dtype):
    X = np.array([[1.0, 2.0], [-1.0, 1.0]], dtype)
    y = np.array([1.0, -1.0], dtype)
    w, b = _zeros(2, dtype)
    assert epoch_kernel(X, y, w, b, 0.5, np.arange(2, dtype=np.int64)) == 2
    np.testing.assert_array_equal(w, [1.0, 0.5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_converges_on_separable_data(dtype):
    # Points with margin >= 0.1 from a random hyperplane through w*, b*: Novikoff bounds the
    # number of updates by (R / gamma)^2 (with the bias folded in), far below 100 epochs here.
    rng = np.random.default_rng(12)
    n, d = 200, 5
    w_star = rng.normal(size=d)
    w_star /= np.linalg.norm(w_star)
    X = rng.uniform(-1, 1, size=(4 * n, d))
    s = X @ w_star + 0.2
    keep = np.abs(s) > 0.1
    X, s = X[keep][:n].astype(dtype), s[keep][:n]
    y = np.sign(s).astype(dtype)
    w, b = _zeros(d, dtype)
    history = []
    for _ in range(100):
        history.append(perceptron_epoch(X, y, w, b, order=rng.permutation(n)))
        if history[-1] == 0:
            break
    assert history[-1] == 0, history
    assert history[0] > 0
    np.testing.assert_array_equal(perceptron_predict(X, w, b), y)


def test_label_dtypes_are_converted():
    X = np.array([[1.0, 2.0], [-1.0, 1.0]], np.float32)
    for labels in ([1, -1], [1.0, -1.0]):
        for ydt in (np.int8, np.int64, np.float32, np.float64):
            y = np.array(labels).astype(ydt)
            w, b = _zeros(2, np.float32)
            assert perceptron_epoch(X, y, w, b, lr=0.5) == 2, ydt
            assert w.tolist() == [1.0, 0.5] and b.tolist() == [0.0]


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def _good(dtype=np.float64):
    X = np.array([[1.0, 2.0], [-1.0, 1.0], [0.5, 0.5]], dtype)
    return X, np.array([1, -1, 1]), np.zeros(2, dtype), np.zeros(1, dtype)


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize(
    "name, value, exc, match",
    [
        ("X", [[1.0, 2.0]], TypeError, "X must be a numpy"),
        ("X", np.ones((3, 2), np.int64), TypeError, "X must have dtype"),
        ("X", np.ones(6), ValueError, "X must have 2"),
        ("X", np.array([[1.0, np.nan], [0, 0], [0, 0]]), ValueError, "X contains NaN"),
        ("X", np.array([[1.0, np.inf], [0, 0], [0, 0]]), ValueError, "X contains NaN"),
        ("X", np.ones((0, 2)), ValueError, "X must not be empty"),
        ("X", np.ones((2, 3)).T, ValueError, "X must be C-contiguous"),
        ("y", [1, -1, 1], TypeError, "y must be a numpy"),
        ("y", np.array([True, False, True]), TypeError, "y must have an integer or float"),
        ("y", np.array([1, -1]), ValueError, "y must have shape"),
        ("y", np.array([1, 0, 1]), ValueError, "y must contain only -1 and \\+1"),
        ("y", np.array([1.0, -1.0, 2.0]), ValueError, "y must contain only"),
        ("y", np.array([1.0, -1.0, np.nan]), ValueError, "y must contain only"),
        ("y", np.array([[1, -1, 1]]), ValueError, "y must have shape"),
        ("w", np.zeros(2, np.float32), TypeError, "w has dtype"),
        ("w", np.zeros(3), ValueError, "w must have shape"),
        ("w", np.zeros((1, 2)), ValueError, "w must have 1"),
        ("w", np.array([np.nan, 0.0]), ValueError, "w contains NaN"),
        ("w", _readonly(np.zeros(2)), ValueError, "w must be writable"),
        ("b", np.zeros(2), ValueError, "b must have shape"),
        ("b", np.zeros((1, 1)), ValueError, "b must have shape"),
        ("b", np.zeros(1, np.float32), TypeError, "b has dtype"),
        ("b", 0.0, TypeError, "b must be a numpy"),
        ("b", _readonly(np.zeros(1)), ValueError, "b must be writable"),
        ("lr", 0.0, ValueError, "lr must be >"),
        ("lr", -1.0, ValueError, "lr must be >"),
        ("lr", float("nan"), ValueError, "lr must be finite"),
        ("lr", "1", TypeError, "lr must be a real"),
        ("order", [0, 1, 2], TypeError, "order must be a numpy"),
        ("order", np.array([0.0, 1.0, 2.0]), TypeError, "order must have an integer"),
        ("order", np.array([0, 1]), ValueError, "order must have shape"),
        ("order", np.array([0, 1, 3]), ValueError, "order must index samples"),
        ("order", np.array([0, -1, 2]), ValueError, "order must index samples"),
        ("order", np.array([0, 1, 1]), ValueError, "order must be a permutation"),
    ],
)
def test_epoch_validation(name, value, exc, match):
    X, y, w, b = _good()
    args = dict(X=X, y=y, w=w, b=b, lr=1.0, order=None)
    args[name] = value
    with pytest.raises(exc, match=match):
        perceptron_epoch(**args)
    if name in ("X", "w", "b") and match not in ("w must be writable", "b must be writable"):
        with pytest.raises(exc, match=match):
            perceptron_predict(args["X"], args["w"], args["b"])


def test_predict_accepts_readonly_parameters():
    X, _, w, b = _good()
    assert perceptron_predict(X, _readonly(w), _readonly(b)).tolist() == [-1.0, -1.0, -1.0]
