"""The L2 penalty ``alpha`` in the training loop (scikit-learn's definition): for a batch of
``n`` rows, ``alpha / (2 n) * sum_l ||W_l||^2`` over the weights (not the biases) is added to the
batch loss and ``alpha / n * W`` to the weight gradient, on every backend and both paths."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from dlbasics.models import MLP, SGD, Adam, Momentum, train

ALPHA = 0.7


def _data(n=24, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, rng.integers(0, 3, n), rng.normal(size=(n, 2))


def _net(kind, backend="cpu", dtype=np.float64, **kw):
    if kind == "ce":
        return MLP([4, 6, 5, 3], activation="tanh", output="softmax", loss="cross_entropy",
                   dtype=dtype, backend=backend, seed=3, **kw)
    return MLP([4, 6, 2], activation="relu", output="identity", loss="squared", dtype=dtype,
               backend=backend, seed=3, **kw)


def _target(kind, data):
    X, labels, Y = data
    return labels if kind == "ce" else Y


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("kind", ["ce", "squared"])
def test_penalised_gradient_matches_central_differences(kind, backend):
    data = _data()
    X, y = data[0], _target(kind, data)
    m = _net(kind, backend)
    value, grad = m.gradient(X, y, alpha=ALPHA)
    p0 = m.params.copy()
    h = 1e-6
    num = np.empty_like(p0)
    for i in range(p0.size):
        p = p0.copy()
        p[i] += h
        m.set_params_vector(p)
        up = m.gradient(X, y, alpha=ALPHA)[0]
        p[i] -= 2 * h
        m.set_params_vector(p)
        down = m.gradient(X, y, alpha=ALPHA)[0]
        num[i] = (up - down) / (2 * h)
    m.set_params_vector(p0)
    assert_allclose(grad, num, rtol=1e-6, atol=1e-8)
    # the penalty's share, written out: value and weight gradients grow, biases do not
    plain_value, plain_grad = m.gradient(X, y)
    n = X.shape[0]
    squares = sum(float((W**2).sum()) for W in m.weights)
    assert_allclose(value - plain_value, ALPHA / (2 * n) * squares, rtol=1e-12)
    for W, (n_in, n_out, w_off, b_off) in zip(m.weights, m.layout, strict=True):
        assert_allclose(grad[w_off:w_off + n_in * n_out] - plain_grad[w_off:w_off + n_in * n_out],
                        ALPHA / n * W.ravel(), rtol=1e-9, atol=1e-15)
        assert np.array_equal(grad[b_off:b_off + n_out], plain_grad[b_off:b_off + n_out])


@pytest.mark.parametrize("kind", ["ce", "squared"])
def test_penalised_loss_and_gradient_match_torch(kind):
    data = _data()
    X, y = data[0], _target(kind, data)
    m = _net(kind)
    value, grad = m.gradient(X, y, alpha=ALPHA)
    Ws = [torch.tensor(W.copy(), requires_grad=True) for W in m.weights]
    bs = [torch.tensor(b.copy(), requires_grad=True) for b in m.biases]
    h = torch.tensor(X)
    for l, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        z = h @ W + b
        last = l == len(Ws) - 1
        h = z if last else (torch.tanh(z) if kind == "ce" else torch.relu(z))
    n = X.shape[0]
    if kind == "ce":
        data_loss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    else:
        data_loss = 0.5 * ((h - torch.tensor(y)) ** 2).sum() / n
    loss = data_loss + ALPHA / (2 * n) * sum((W**2).sum() for W in Ws)
    loss.backward()
    assert_allclose(value, loss.item(), rtol=1e-12)
    for W, b, (n_in, n_out, w_off, b_off) in zip(Ws, bs, m.layout, strict=True):
        assert_allclose(grad[w_off:w_off + n_in * n_out], W.grad.numpy().ravel(), rtol=1e-10,
                        atol=1e-14)
        assert_allclose(grad[b_off:b_off + n_out], b.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("opt", [SGD(0.1), Momentum(0.05, 0.9), Adam(0.01)], ids=repr)
@pytest.mark.parametrize("batch_size", [1, 5, None])
def test_alpha_zero_is_bitwise_training_without_penalty(opt, batch_size):
    data = _data()
    for fast in (True, False):
        a, b = _net("ce", dtype=np.float32), _net("ce", dtype=np.float32)
        ha = train(a, data[0], data[1], opt, batch_size=batch_size, epochs=3, seed=1, fast=fast)
        hb = train(b, data[0], data[1], opt, batch_size=batch_size, epochs=3, seed=1, fast=fast,
                   alpha=0.0)
        assert np.array_equal(a.params, b.params)
        assert ha.train_loss == hb.train_loss


@pytest.mark.parametrize("batch_size", [1, 5, None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_penalty_same_on_fused_general_and_numpy_paths(batch_size, dtype):
    data = _data()
    runs = []
    for backend, fast in (("cpu", True), ("cpu", False), ("numpy", False)):
        m = _net("ce", backend, dtype=dtype)
        h = train(m, data[0], data[1], SGD(0.1), batch_size=batch_size, epochs=3, seed=2,
                  fast=fast, alpha=ALPHA)
        runs.append((m.params.copy(), h.train_loss))
    # fused and general paths: the same operations in the same order
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    assert_allclose(runs[2][0], runs[0][0], rtol=rtol, atol=rtol)
    assert_allclose(runs[2][1], runs[0][1], rtol=rtol)


def test_penalised_sgd_step_by_formula():
    """One full-batch SGD step with the penalty, rebuilt by hand from the plain gradient."""
    data = _data()
    m = _net("squared")
    p0 = m.params.copy()
    value0, g0 = m.gradient(data[0], data[2])
    h = train(m, data[0], data[2], SGD(0.3), batch_size=None, epochs=1, shuffle=False,
              alpha=ALPHA)
    n = data[0].shape[0]
    expect = p0 - 0.3 * g0
    squares = 0.0
    for n_in, n_out, w_off, _ in m.layout:
        w = slice(w_off, w_off + n_in * n_out)
        expect[w] -= 0.3 * ALPHA / n * p0[w]
        squares += float(p0[w] @ p0[w])
    assert_allclose(m.params, expect, rtol=1e-13, atol=1e-15)
    assert_allclose(h.train_loss[0], value0 + ALPHA / (2 * n) * squares, rtol=1e-13)


def test_alpha_is_checked():
    data = _data()
    m = _net("ce")
    with pytest.raises(ValueError, match="alpha"):
        train(m, data[0], data[1], SGD(0.1), alpha=-1.0)
    with pytest.raises(TypeError, match="alpha"):
        m.gradient(data[0], data[1], alpha="big")
