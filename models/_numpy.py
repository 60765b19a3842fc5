"""The ``"numpy"`` backend: the same network in plain NumPy array expressions.

It is the baseline that shows what compilation buys: no Numba in the forward and backward
passes (the dropout masks come from the shared counter hash so that both backends train the
very same thinned networks, and optimizer updates use the shared kernels).
"""

from __future__ import annotations

import functools

import numpy as np

from ..kernels.dropout import mask_kernel
from ..kernels.losses import BCE_LOGITS, CE_LOGITS, SQUARED


def _quiet(fn):
    """Run ``fn`` with floating-point warnings off: a diverging run's overflow shows up as a
    non-finite loss, which the training loop records, not as warnings leaking to the user."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def _act(name, z, slope):
    if name == "identity":
        return z.copy()
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, slope * z)
    if name == "sigmoid":
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    if name == "softplus":
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
    if name == "step":
        return np.where(np.isnan(z), z, (z > 0).astype(z.dtype))
    if name == "sign":
        return np.sign(z)
    e = np.exp(z - z.max(axis=1, keepdims=True))  # softmax
    return e / e.sum(axis=1, keepdims=True)


def _dact(name, z, a, slope):
    if name == "identity":
        return np.ones_like(z)
    if name == "tanh":
        return 1 - a * a
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z > 0, 1, slope).astype(z.dtype)
    if name == "sigmoid":
        return a * (1 - a)
    if name == "softplus":
        return _act("sigmoid", z, slope)
    return np.zeros_like(z)


def _names(model):
    L = model.n_layers
    hidden = [model.activation] * (L - 1) if isinstance(model.activation, str) else model.activation
    return list(hidden) + [model.output]


@_quiet
def forward(model, X, train, step=0):
    """Per layer ``(h, z, a, mask)``: (dropped) input, pre-activation, activation, mask."""
    h = X
    names = _names(model)
    inverted = model.dropout == "inverted"
    cache = []
    for l, (W, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        p = model.keep[l]
        mask = None
        if p < 1.0 and train:
            mask = np.empty_like(h)
            mask_kernel(model.seed, step, l, 0, p, mask)
            if inverted:
                mask /= model.dtype.type(p)
            h = h * mask
        elif p < 1.0 and not inverted:
            h = h * model.dtype.type(p)
        z = h @ W + b
        a = _act(names[l], z, model.slope)
        cache.append((h, z, a, mask))
        h = a
    return cache


def _loss_and_delta(model, cache, Y, labels, dense, want_grad=True):
    z, a = cache[-1][1], cache[-1][2]
    n = z.shape[0]
    code = model.loss_code
    y = Y if dense else np.eye(model.n_outputs, dtype=model.dtype)[labels]
    if code == SQUARED:
        pred = a
        value = 0.5 * ((pred - y) ** 2).sum() / n
        grad = (pred - y) / n
    elif code == BCE_LOGITS:
        value = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).sum() / n
        grad = (a - y) / n
    else:
        assert code == CE_LOGITS
        m = z.max(axis=1, keepdims=True)
        lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
        value = (y * (lse - z)).sum() / n
        grad = (a * y.sum(axis=1, keepdims=True) - y) / n
    if not want_grad:
        return float(value), None
    if not model.fused:  # back through the output activation (squared loss, non-identity)
        grad = grad * _dact(model.output, z, a, model.slope)
    return float(value), grad.astype(model.dtype, copy=False)


@_quiet
def batch_gradient(model, X, Y, labels, dense, rows, step, alpha=0.0):
    """Loss of the rows ``rows`` and its gradient into ``model.grad``; ``alpha > 0`` adds the
    L2 penalty ``alpha / (2 n) * sum ||W||^2`` of the weights (see
    :func:`dlbasics.models._core.l2_penalty_kernel`)."""
    Xb = X[rows]
    Yb = Y[rows] if dense else Y
    lb = labels if dense else labels[rows]
    cache = forward(model, Xb, train=True, step=step)
    value, delta = _loss_and_delta(model, cache, Yb, lb, dense)
    names = _names(model)
    for l in range(model.n_layers - 1, -1, -1):
        h, _, _, _ = cache[l]
        n_in, n_out, w_off, b_off = model.layout[l]
        model.grad[w_off : w_off + n_in * n_out] = (h.T @ delta).ravel()
        model.grad[b_off : b_off + n_out] = delta.sum(axis=0)
        if l == 0:
            break
        dh = delta @ model.weights[l].T
        if cache[l][3] is not None:
            dh = dh * cache[l][3]
        _, zp, ap, _ = cache[l - 1]
        delta = dh * _dact(names[l - 1], zp, ap, model.slope)
    if alpha > 0.0:
        scale = alpha / len(rows)
        total = 0.0
        for n_in, n_out, w_off, _ in model.layout:
            w = model.params[w_off : w_off + n_in * n_out]
            total += float(np.dot(w.astype(np.float64), w.astype(np.float64)))
            model.grad[w_off : w_off + n_in * n_out] += model.dtype.type(scale) * w
        value += 0.5 * scale * total
    return value


@_quiet
def evaluate(model, X, Y, labels, dense):
    """Test-mode ``(mean loss, accuracy)``."""
    cache = forward(model, X, train=False)
    value, _ = _loss_and_delta(model, cache, Y, labels, dense, want_grad=False)
    if not model.is_classifier:
        return value, float("nan")
    a = cache[-1][2]
    if model.output == "softmax":
        truth = Y.argmax(axis=1) if dense else labels
        return value, float((a.argmax(axis=1) == truth).mean())
    return value, float(((a > 0.5) == (Y > 0.5)).mean())
