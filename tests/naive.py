"""Slow, obvious NumPy references for every kernel.

Every kernel test reads ``ref = naive.f(...)``, ``comp = f(...)`` and compares the two. These
functions favour readability over speed: explicit formulas, float64 arithmetic where it makes
the reference more trustworthy, no cleverness.
"""

import numpy as np

# ---------------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------------

LEAKY_SLOPE = 0.01


def activate(name, z, slope=LEAKY_SLOPE):
    """f(z) elementwise (softmax row-wise), computed in float64 then cast back."""
    x = np.asarray(z, dtype=np.float64)
    if name == "identity":
        r = x.copy()
    elif name == "step":
        r = np.where(np.isnan(x), np.nan, (x > 0).astype(np.float64))
    elif name == "sign":
        r = np.sign(x)
    elif name == "sigmoid":
        e = np.exp(-np.abs(x))
        r = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    elif name == "tanh":
        r = np.tanh(x)
    elif name == "relu":
        r = np.maximum(x, 0)
    elif name == "leaky_relu":
        r = np.where(x > 0, x, slope * x)
    elif name == "softplus":
        r = np.logaddexp(0, x)
    elif name == "softmax" and x.size == 0:
        r = x.copy()
    elif name == "softmax":
        x2 = np.atleast_2d(x)
        e = np.exp(x2 - x2.max(axis=1, keepdims=True))
        r = (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)
    else:
        raise KeyError(name)
    return r.astype(np.asarray(z).dtype)


def derivative(name, z, slope=LEAKY_SLOPE):
    """f'(z) elementwise (not softmax)."""
    x = np.asarray(z, dtype=np.float64)
    if name == "identity":
        r = np.ones_like(x)
    elif name in ("step", "sign"):
        r = np.zeros_like(x)
    elif name == "sigmoid":
        s = activate("sigmoid", x)
        r = s * (1 - s)
    elif name == "tanh":
        r = 1 - np.tanh(x) ** 2
    elif name == "relu":
        r = (x > 0).astype(np.float64)
    elif name == "leaky_relu":
        r = np.where(x > 0, 1.0, slope)
    elif name == "softplus":
        r = activate("sigmoid", x)
    else:
        raise KeyError(name)
    return r.astype(np.asarray(z).dtype)


def activation_backward(name, z, delta, slope=LEAKY_SLOPE):
    """dL/dz from dL/da; for softmax through the explicit Jacobian diag(a) - a a^T per row."""
    if name != "softmax":
        return (np.asarray(delta, np.float64) * derivative(name, z, slope)).astype(z.dtype)
    a = activate("softmax", np.asarray(z, np.float64))
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        jac = np.diag(a[i]) - np.outer(a[i], a[i])
        out[i] = jac @ np.asarray(delta[i], np.float64)
    return out.astype(z.dtype)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------


def _onehot(y, k):
    out = np.zeros((y.shape[0], k))
    out[np.arange(y.shape[0]), y] = 1.0
    return out


def loss(name, y_true, y_pred, eps):
    """Batch-mean loss, float64."""
    p = np.asarray(y_pred, np.float64)
    p2 = p.reshape(-1, 1) if p.ndim == 1 else p
    if np.asarray(y_true).dtype.kind in "iu":
        y = _onehot(np.asarray(y_true), p2.shape[1])
    else:
        y = np.asarray(y_true, np.float64).reshape(p2.shape)
    n = p2.shape[0]
    if name == "squared":
        per = 0.5 * ((y - p2) ** 2).sum(axis=1)
    elif name == "binary_cross_entropy":
        q = np.clip(p2, eps, 1 - eps)
        per = (-y * np.log(q) - (1 - y) * np.log(1 - q)).sum(axis=1)
    elif name == "binary_cross_entropy_logits":
        q = 1 / (1 + np.exp(-p2))
        per = (-y * np.log(q) - (1 - y) * np.log(1 - q)).sum(axis=1)
    elif name == "cross_entropy":
        per = (-y * np.log(np.maximum(p2, eps))).sum(axis=1)
    elif name == "cross_entropy_logits":
        m = p2.max(axis=1, keepdims=True)
        logsm = p2 - m - np.log(np.exp(p2 - m).sum(axis=1, keepdims=True))
        per = (-y * logsm).sum(axis=1)
    else:
        raise KeyError(name)
    return per.sum() / n


def loss_gradient(name, y_true, y_pred, eps):
    """Gradient of the batch-mean loss w.r.t. y_pred, float64, written from the formulas."""
    p = np.asarray(y_pred, np.float64)
    p2 = p.reshape(-1, 1) if p.ndim == 1 else p
    if np.asarray(y_true).dtype.kind in "iu":
        y = _onehot(np.asarray(y_true), p2.shape[1])
    else:
        y = np.asarray(y_true, np.float64).reshape(p2.shape)
    n = p2.shape[0]
    if name == "squared":
        g = p2 - y
    elif name == "binary_cross_entropy":
        q = np.clip(p2, eps, 1 - eps)
        g = -y / q + (1 - y) / (1 - q)
    elif name == "binary_cross_entropy_logits":
        g = 1 / (1 + np.exp(-p2)) - y
    elif name == "cross_entropy":
        g = -y / np.maximum(p2, eps)
    elif name == "cross_entropy_logits":
        sm = activate("softmax", p2)
        g = sm * y.sum(axis=1, keepdims=True) - y
    else:
        raise KeyError(name)
    return (g / n).reshape(p.shape)


# ---------------------------------------------------------------------------------------------
# dense
# ---------------------------------------------------------------------------------------------


def dense_forward(x, W, b, activation, slope=LEAKY_SLOPE):
    """z = x W + b, a = f(z), in float64; returns (z, a)."""
    z = np.asarray(x, np.float64) @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
    return z, activate(activation, z, slope)


def dense_backward(x, W, delta):
    """dW = x^T delta, db = sum_rows delta, dx = delta W^T, in float64."""
    x = np.asarray(x, np.float64)
    W = np.asarray(W, np.float64)
    d = np.asarray(delta, np.float64)
    return x.T @ d, d.sum(axis=0), d @ W.T


# ---------------------------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------------------------

_U64 = 0xFFFFFFFFFFFFFFFF
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix_finalise(z):
    """splitmix64's output function on a Python int, wrapped to 64 bits by hand."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64
    return z ^ (z >> 31)


def dropout_hash(seed, step, layer, row, unit):
    """64-bit hash of the five counters with Python ints: splitmix64 started at ``seed``, then
    for each further counter c the (c+1)-th splitmix64 output of the stream seeded so far."""
    h = _splitmix_finalise((seed + _GOLDEN) & _U64)
    for c in (step, layer, row, unit):
        h = _splitmix_finalise((h + (c + 1) * _GOLDEN) & _U64)
    return h


def dropout_uniform(seed, step, layer, row, unit):
    """Top 24 bits of the hash as an exact fraction in [0, 1) (a Python float)."""
    return (dropout_hash(seed, step, layer, row, unit) >> 40) / 2**24


def dropout_mask(shape, p, seed, step=0, layer=0, row_offset=0, dtype=np.float32):
    """Mask with one Python-level hash per element: 1.0 iff uniform < p."""
    rows, units = (1, shape[0]) if len(shape) == 1 else shape
    m = np.zeros((rows, units), dtype=dtype)
    for i in range(rows):
        for j in range(units):
            if dropout_uniform(seed, step, layer, row_offset + i, j) < p:
                m[i, j] = 1.0
    return m.reshape(shape)


def dropout_apply(a, mask, scale):
    """a * mask * scale: the exact float64 product rounded once to a's dtype."""
    return (np.asarray(a, np.float64) * np.asarray(mask, np.float64) * scale).astype(a.dtype)


def dropout_backward(delta, mask, scale):
    """Gradient through dropout: delta * mask * scale (same formula as the forward pass)."""
    return dropout_apply(delta, mask, scale)


def scale_weights(W, p):
    """Outgoing weights of unit i (row i of W, shape (n_in, n_out)) times its keep prob p_i."""
    pv = np.broadcast_to(np.asarray(p, np.float64), (W.shape[0],))
    out = np.empty_like(W)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            out[i, j] = float(W[i, j]) * float(pv[i])
    return out


# ---------------------------------------------------------------------------------------------
# perceptron
# ---------------------------------------------------------------------------------------------


def perceptron_epoch(X, y, w, b, lr=1.0, order=None):
    """One epoch of w <- w + lr*y*x, b <- b + lr*y on mistakes (y*s <= 0), in plain Python
    floats; returns (w, b, mistakes) as new arrays of w's dtype (inputs untouched)."""
    dtype = np.asarray(w).dtype
    w = [float(v) for v in w]
    bias = float(b[0])
    order = range(len(X)) if order is None else [int(i) for i in order]
    mistakes = 0
    for n in order:
        x = [float(v) for v in X[n]]
        yn = float(y[n])
        s = bias
        for wj, xj in zip(w, x, strict=True):
            s += wj * xj
        if yn * s <= 0:
            mistakes += 1
            # round to the dtype after every update, as an in-place float32 array would
            w = [float(dtype.type(wj + lr * yn * xj)) for wj, xj in zip(w, x, strict=True)]
            bias = float(dtype.type(bias + lr * yn))
    return np.array(w, dtype=dtype), np.array([bias], dtype=dtype), mistakes


def perceptron_predict(X, w, b):
    """+1 where w.x + b > 0, else -1."""
    s = np.asarray(X, np.float64) @ np.asarray(w, np.float64) + float(b[0])
    return np.where(s > 0, 1.0, -1.0)


# ---------------------------------------------------------------------------------------------
# optimizers
# ---------------------------------------------------------------------------------------------
# One step of each torch.optim rule, straight from the documented formulas, in float64 on new
# arrays (inputs untouched). State buffers start at zero; t is the 1-based step count.


def _f64(*arrays):
    return [np.array(a, dtype=np.float64) for a in arrays]


def sgd_step(p, g, lr):
    """p - lr g; returns p."""
    p, g = _f64(p, g)
    return p - lr * g


def momentum_step(p, g, b, lr, mu):
    """b = mu b + g; p = p - lr b; returns (p, b)."""
    p, g, b = _f64(p, g, b)
    b = mu * b + g
    return p - lr * b, b


def nesterov_step(p, g, b, lr, mu):
    """b = mu b + g; p = p - lr (g + mu b); returns (p, b)."""
    p, g, b = _f64(p, g, b)
    b = mu * b + g
    return p - lr * (g + mu * b), b


def adagrad_step(p, g, s, lr, eps):
    """s = s + g^2; p = p - lr g / (sqrt(s) + eps); returns (p, s)."""
    p, g, s = _f64(p, g, s)
    s = s + g**2
    return p - lr * g / (np.sqrt(s) + eps), s


def rmsprop_step(p, g, v, ga, lr, alpha, eps, centered):
    """v = alpha v + (1-alpha) g^2; centered: ga = alpha ga + (1-alpha) g and
    denominator sqrt(v - ga^2) + eps, else sqrt(v) + eps; p = p - lr g / denominator.
    Returns (p, v, ga) (ga unchanged when not centered)."""
    p, g, v, ga = _f64(p, g, v, ga)
    v = alpha * v + (1 - alpha) * g**2
    if centered:
        ga = alpha * ga + (1 - alpha) * g
        denom = np.sqrt(v - ga**2) + eps
    else:
        denom = np.sqrt(v) + eps
    return p - lr * g / denom, v, ga


def adam_step(p, g, m, v, vmax, t, lr, b1, b2, eps, wd, decoupled, amsgrad):
    """Adam (decoupled=False, L2 term wd p added to g) or AdamW (decoupled=True, p *= 1 - lr wd
    first); m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2, m_hat = m / (1 - b1^t),
    v_hat = v / (1 - b2^t) (with amsgrad: vmax = max(vmax, v), v_hat = vmax / (1 - b2^t)),
    p = p - lr m_hat / (sqrt(v_hat) + eps). Returns (p, m, v, vmax)."""
    p, g, m, v, vmax = _f64(p, g, m, v, vmax)
    if decoupled:
        p = p * (1 - lr * wd)
    elif wd != 0:
        g = g + wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    m_hat = m / (1 - b1**t)
    if amsgrad:
        vmax = np.maximum(vmax, v)
        v_hat = vmax / (1 - b2**t)
    else:
        v_hat = v / (1 - b2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v, vmax
