"""The ``"numpy"`` backend: the same network in plain NumPy array expressions.

It is the baseline that shows what compilation buys: no Numba in the forward and backward
passes (the dropout masks come from the shared counter hash so that both backends train the
very same thinned networks, and optimizer updates use the shared kernels).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import erf

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


def _sigmoid(z, slope):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(z, slope):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# Python floats as constants (weak scalars): a float32 array stays float32.
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_PI = math.sqrt(2 / math.pi)


def _gelu_cdf(z):
    return 0.5 * (1 + erf(z * _SQRT_HALF))


def _gelu_tanh(z):
    return np.tanh(_SQRT_2_PI * (z + 0.044715 * z**3))


def _softmax_backward(z, a, delta, slope):
    """The row-wise vector-Jacobian product ``a * (delta - sum(delta * a))``."""
    return a * (delta - (delta * a).sum(axis=1, keepdims=True))


def _times(deriv):
    """The backward pass ``delta * f'(z)`` of an elementwise activation with derivative
    ``deriv(z, a, slope)``."""
    return lambda z, a, delta, slope: delta * deriv(z, a, slope)


#: Per activation name: ``(f(z, slope), backward(z, a, delta, slope))`` as NumPy expressions,
#: ``backward`` giving ``dL/dz`` from ``delta = dL/da`` (``delta * f'(z)`` elementwise, the
#: Jacobian product for softmax). The kernels' table is
#: :data:`dlbasics.kernels.activations.ACTIVATIONS`; a name missing here raises.
ACTIVATIONS = {
    "identity": (lambda z, s: z.copy(), _times(lambda z, a, s: np.ones_like(z))),
    "step": (lambda z, s: np.where(np.isnan(z), z, (z > 0).astype(z.dtype)),
             _times(lambda z, a, s: np.zeros_like(z))),
    "sign": (lambda z, s: np.sign(z), _times(lambda z, a, s: np.zeros_like(z))),
    "sigmoid": (_sigmoid, _times(lambda z, a, s: a * (1 - a))),
    "tanh": (lambda z, s: np.tanh(z), _times(lambda z, a, s: 1 - a * a)),
    "relu": (lambda z, s: np.maximum(z, 0), _times(lambda z, a, s: (z > 0).astype(z.dtype))),
    "leaky_relu": (lambda z, s: np.where(z > 0, z, s * z),
                   _times(lambda z, a, s: np.where(z > 0, 1, s).astype(z.dtype))),
    "softplus": (lambda z, s: np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))),
                 _times(lambda z, a, s: _sigmoid(z, s))),
    "softmax": (_softmax, _softmax_backward),
    "gelu": (lambda z, s: z * _gelu_cdf(z),
             _times(lambda z, a, s: _gelu_cdf(z) + z * (_INV_SQRT_2PI * np.exp(-0.5 * z * z)))),
    "gelu_tanh": (lambda z, s: 0.5 * z * (1 + _gelu_tanh(z)),
                  _times(lambda z, a, s: 0.5 * (1 + _gelu_tanh(z)) + 0.5 * z
                         * (1 - _gelu_tanh(z) ** 2) * _SQRT_2_PI * (1 + 3 * 0.044715 * z * z))),
}


def _entry(name):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"the numpy backend has no activation {name!r}") from None


def _act(name, z, slope):
    return _entry(name)[0](z, slope)


def _backward(name, z, a, delta, slope):
    return _entry(name)[1](z, a, delta, slope)


def _squared(z, a, y, n):
    return 0.5 * ((a - y) ** 2).sum() / n, (a - y) / n


def _bce_logits(z, a, y, n):
    return (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).sum() / n, (a - y) / n


def _ce_logits(z, a, y, n):
    m = z.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    return (y * (lse - z)).sum() / n, (a * y.sum(axis=1, keepdims=True) - y) / n


#: Per loss code the model uses: ``(z, a, y, n) -> (mean loss, its gradient w.r.t. a, or z for
#: the logit forms)``; a code missing here raises.
LOSSES = {SQUARED: _squared, BCE_LOGITS: _bce_logits, CE_LOGITS: _ce_logits}


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
    y = Y if dense else np.eye(model.n_outputs, dtype=model.dtype)[labels]
    if model.loss_code not in LOSSES:
        raise ValueError(f"the numpy backend has no loss code {model.loss_code!r}")
    value, grad = LOSSES[model.loss_code](z, a, y, n)
    if not want_grad:
        return float(value), None
    if not model.fused:  # back through the output activation (squared loss, non-identity)
        grad = _backward(model.output, z, a, grad, model.slope)
    return float(value), grad.astype(model.dtype, copy=False)


@_quiet
def batch_gradient(model, X, Y, labels, dense, rows, step, alpha=0.0):
    """Loss of the rows ``rows`` and its gradient into ``model.grad``; ``alpha > 0`` adds the
    L2 penalty ``alpha / (2 n) * sum ||W||^2`` of the weights (see
    :func:`dlbasics.kernels.network.l2_penalty`)."""
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
        delta = _backward(names[l - 1], zp, ap, dh, model.slope)
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
