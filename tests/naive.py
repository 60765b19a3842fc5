"""Slow, obvious NumPy references for every kernel.

Every kernel test reads ``ref = naive.f(...)``, ``comp = f(...)`` and compares the two. These
functions favour readability over speed: explicit formulas, float64 arithmetic where it makes
the reference more trustworthy, no cleverness.
"""

import numpy as np
from scipy.special import erf

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
    elif name == "gelu":  # z Phi(z), Phi the standard normal CDF
        r = x * 0.5 * (1 + erf(x / np.sqrt(2)))
    elif name == "gelu_tanh":  # Hendrycks-Gimpel's tanh approximation, as torch's 'tanh'
        r = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
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
    elif name == "gelu":  # Phi(z) + z phi(z)
        r = 0.5 * (1 + erf(x / np.sqrt(2))) + x * np.exp(-x**2 / 2) / np.sqrt(2 * np.pi)
    elif name == "gelu_tanh":  # product and chain rule on z/2 (1 + tanh u(z))
        c = np.sqrt(2 / np.pi)
        th = np.tanh(c * (x + 0.044715 * x**3))
        r = 0.5 * (1 + th) + 0.5 * x * (1 - th**2) * c * (1 + 3 * 0.044715 * x**2)
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


def _weight_decay(p, g, lr, wd, decoupled):
    """Decoupled (p (1 - lr wd)) or L2 (g + wd p) weight decay, as torch's NAdam and RAdam."""
    if decoupled:
        return p * (1 - lr * wd), g
    return p, g + wd * p


def nadam_step(p, g, m, v, t, lr, b1, b2, eps, wd, psi, decoupled):
    """NAdam: mu_i = b1 (1 - 0.96^(i psi) / 2), P_t = mu_1 ... mu_t; m = b1 m + (1-b1) g,
    v = b2 v + (1-b2) g^2, d = sqrt(v / (1 - b2^t)) + eps;
    p = p - lr (1 - mu_t) / (1 - P_t) g / d - lr mu_(t+1) / (1 - P_t mu_(t+1)) m / d.
    Returns (p, m, v)."""
    p, g, m, v = _f64(p, g, m, v)
    p, g = _weight_decay(p, g, lr, wd, decoupled)

    def mu(i):
        return b1 * (1 - 0.5 * 0.96 ** (i * psi))

    prod = float(np.prod([mu(i) for i in range(1, t + 1)]))
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    d = np.sqrt(v / (1 - b2**t)) + eps
    p = p - lr * (1 - mu(t)) / (1 - prod) * g / d
    return p - lr * mu(t + 1) / (1 - prod * mu(t + 1)) * m / d, m, v


def radam_step(p, g, m, v, t, lr, b1, b2, eps, wd, decoupled):
    """RAdam: moments as Adam, m_hat = m / (1 - b1^t), rho_inf = 2 / (1 - b2) - 1,
    rho_t = rho_inf - 2 t b2^t / (1 - b2^t); if rho_t > 5:
    r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)),
    p = p - lr m_hat r sqrt(1 - b2^t) / (sqrt(v) + eps); else p = p - lr m_hat.
    Returns (p, m, v)."""
    p, g, m, v = _f64(p, g, m, v)
    p, g = _weight_decay(p, g, lr, wd, decoupled)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    m_hat = m / (1 - b1**t)
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
    if rho_t <= 5:
        return p - lr * m_hat, m, v
    r = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
    return p - lr * m_hat * r * np.sqrt(1 - b2**t) / (np.sqrt(v) + eps), m, v


# =============================================================================================
# whole networks (issue #15): forward, loss, gradient, one training step, one epoch
# =============================================================================================
# Written from the lecture notes (forward pass, the three losses, backpropagation layer by layer,
# gradient descent by batch / mini-batch, dropout with its test-time weight scaling), in float64
# with plain array expressions and independently of dlbasics.models: what is shared with it is
# only the parameter layout (layer by layer, W row-major (n_in, n_out) then b), the names of
# activations, losses and optimizer rules, and the dropout mask bits (dropout_mask above, the
# counter hash of (seed, step, layer, row within the batch, unit)). A network is described by a
# plain dict (see network()); every function returns new float64 arrays.


def network(sizes, activation="tanh", output="identity", loss="squared", keep_prob=None,
            dropout="scale", seed=0, slope=LEAKY_SLOPE):
    """The description the functions below take, from MLP's constructor arguments.

    ``activation`` is one name for every hidden layer or a list with one per hidden layer;
    ``keep_prob`` a float (every hidden layer's input keeps units with that probability, the
    network's input keeps all) or a list with one value per layer input (index 0: the input).
    """
    L = len(sizes) - 1
    hidden = [activation] * (L - 1) if isinstance(activation, str) else list(activation)
    if keep_prob is None:
        keep = [1.0] * L
    elif isinstance(keep_prob, (int, float)):
        keep = [1.0] + [float(keep_prob)] * (L - 1)
    else:
        keep = [float(p) for p in keep_prob]
    return {"sizes": list(sizes), "names": hidden + [output], "loss": loss, "keep": keep,
            "dropout": dropout, "seed": seed, "slope": slope}


def net_layers(net, params):
    """``[(W, b), ...]`` float64 copies of each layer's weights ``(n_in, n_out)`` and biases."""
    params = np.asarray(params, np.float64)
    layers = []
    pos = 0
    for n_in, n_out in zip(net["sizes"][:-1], net["sizes"][1:], strict=True):
        W = params[pos : pos + n_in * n_out].reshape(n_in, n_out).copy()
        pos += n_in * n_out
        b = params[pos : pos + n_out].copy()
        pos += n_out
        layers.append((W, b))
    assert pos == params.size, "params does not match sizes"
    return layers


def net_init(net, init, seed, dtype=np.float64):
    """Initial flat parameters: one generator ``default_rng(seed)`` draws each layer's ``W`` in
    turn, Glorot uniform ``U(-l, l)`` with ``l = sqrt(6 / (n_in + n_out))`` or He normal
    ``N(0, 2 / n_in)``, in float64, then cast to ``dtype``; biases are zero."""
    rng = np.random.default_rng(seed)
    layers = []
    for n_in, n_out in zip(net["sizes"][:-1], net["sizes"][1:], strict=True):
        if init == "glorot":
            limit = np.sqrt(6.0 / (n_in + n_out))
            W = rng.uniform(-limit, limit, size=(n_in, n_out))
        elif init == "he":
            W = rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_in, n_out))
        else:
            raise KeyError(init)
        layers.append((W, np.zeros(n_out)))
    return net_flat(layers).astype(dtype)


def net_flat(layers):
    """The flat parameter vector of ``[(W, b), ...]`` (the inverse of :func:`net_layers`)."""
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in layers])


def net_forward(net, params, X, train=False, step=0):
    """Forward pass; returns per layer ``(h, z, a, mask)``: the layer's (dropped) input, its
    pre-activation ``z = h W + b``, its activation ``a = f(z)`` and the 0/1 dropout mask of its
    input (None without dropout or at test time).

    Training (``train=True``): each row of a layer input with keep probability ``p < 1`` is
    multiplied by its own 0/1 mask (the masks of update ``step``); inverted dropout also divides
    the kept units by ``p``. Test time: the notes' rule multiplies the outgoing weights of every
    unit kept with probability ``p`` by ``p``; inverted dropout changes nothing.
    """
    h = np.asarray(X, np.float64)
    trace = []
    for l, (W, b) in enumerate(net_layers(net, params)):
        p = net["keep"][l]
        mask = None
        if p < 1.0 and train:
            mask = dropout_mask(h.shape, p, net["seed"], step, l, dtype=np.float64)
            h = h * mask
            if net["dropout"] == "inverted":
                h = h / p
        elif p < 1.0 and net["dropout"] == "scale":
            W = W * p  # test time: outgoing weights times the keep probability
        z = h @ W + b
        a = activate(net["names"][l], z, net["slope"])
        trace.append((h, z, a, mask))
        h = a
    return trace


def net_targets(net, y):
    """Targets as a float64 ``(n, n_outputs)`` array (integer labels one-hot)."""
    y = np.asarray(y)
    k = net["sizes"][-1]
    if y.dtype.kind in "iu" and net["loss"] == "cross_entropy" and y.ndim == 1:
        return _onehot(y, k)
    return np.asarray(y, np.float64).reshape(-1, k)


def net_loss_value(net, z, a, y):
    """Mean loss over the rows of the outputs ``a = f(z)`` (the notes' three losses).

    The logarithms of a sigmoid or softmax output are taken from ``z`` (``log sigmoid(z) =
    -log(1 + e^-z)``, ``log softmax(z)_j = z_j - log sum_k e^z_k``), so that a saturated output
    still has its finite loss.
    """
    y = net_targets(net, y)
    output = net["names"][-1]
    if net["loss"] == "squared":
        per = 0.5 * ((y - a) ** 2).sum(axis=1)
    elif net["loss"] == "binary_cross_entropy":
        if output == "sigmoid":
            log_a, log_1ma = -np.logaddexp(0, -z), -np.logaddexp(0, z)
        else:
            log_a, log_1ma = np.log(a), np.log(1 - a)
        per = (-y * log_a - (1 - y) * log_1ma).sum(axis=1)
    elif net["loss"] == "cross_entropy":
        if output == "softmax":
            m = z.max(axis=1, keepdims=True)
            log_a = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
        else:
            log_a = np.log(a)
        per = (-y * log_a).sum(axis=1)
    else:
        raise KeyError(net["loss"])
    return per.sum() / a.shape[0]


def _penalty(net, params, alpha, n):
    """L2 penalty alpha / (2 n) sum ||W||^2 of the weights (not the biases) and its gradient."""
    value = 0.0
    grads = []
    for W, b in net_layers(net, params):
        value += alpha / (2 * n) * (W**2).sum()
        grads.append((alpha / n * W, np.zeros_like(b)))
    return value, net_flat(grads)


def net_loss(net, params, X, y, train=False, step=0, alpha=0.0):
    """Mean loss of the network on ``(X, y)`` (test time by default; ``alpha``: L2 penalty)."""
    _, z, a, _ = net_forward(net, params, X, train, step)[-1]
    return net_loss_value(net, z, a, y) + _penalty(net, params, alpha, a.shape[0])[0]


def net_gradient(net, params, X, y, step=0, alpha=0.0):
    """``(loss, grad)`` of the mean training loss (dropout masks of update ``step``) by
    backpropagation, written out layer by layer; ``grad`` laid out like ``params``."""
    trace = net_forward(net, params, X, train=True, step=step)
    layers = net_layers(net, params)
    z, a = trace[-1][1], trace[-1][2]
    n = a.shape[0]
    t = net_targets(net, y)
    loss, output = net["loss"], net["names"][-1]
    # delta = dL/dz of the output layer
    if loss == "binary_cross_entropy" and output == "sigmoid":
        delta = (a - t) / n  # the notes: dL/dz = y* - y
    elif loss == "cross_entropy" and output == "softmax":
        # -sum_j t_j log softmax_j(z): dL/dz_i = a_i sum_j t_j - t_i
        delta = (a * t.sum(axis=1, keepdims=True) - t) / n
    elif loss == "squared":
        delta = activation_backward(output, z, (a - t) / n, net["slope"])
    else:
        raise KeyError((loss, output))
    grads = [None] * len(layers)
    for l in range(len(layers) - 1, -1, -1):
        h, _, _, mask = trace[l]
        W = layers[l][0]
        grads[l] = (h.T @ delta, delta.sum(axis=0))
        if l == 0:
            break
        dh = delta @ W.T  # dL/d(layer input h)
        if mask is not None:  # h = a_prev * mask (/ p): dropped units get no gradient
            dh = dh * mask
            if net["dropout"] == "inverted":
                dh = dh / net["keep"][l]
        _, z_prev, _, _ = trace[l - 1]
        delta = dh * derivative(net["names"][l - 1], z_prev, net["slope"])
    value = net_loss_value(net, z, a, y)
    if alpha > 0.0:
        pen, pen_grad = _penalty(net, params, alpha, n)
        return value + pen, net_flat(grads) + pen_grad
    return value, net_flat(grads)


def optimizer_step(rule, hyper, p, g, slots, t, lr=None):
    """One update of the optimizer rule ``rule`` (a name of dlbasics' OPTIMIZERS) with the
    hyper-parameters ``hyper`` (its ``get_params()``) at 1-based step ``t``, through the twins
    above. ``slots`` is a dict of float64 state arrays (an absent one starts at zero); returns
    ``(p, slots)``. A rule without a twin here raises KeyError: add its twin."""
    lr = hyper["lr"] if lr is None else lr
    s = {k: np.array(v, np.float64) for k, v in slots.items()}

    def slot(name):
        return s.get(name, np.zeros(np.shape(p)))

    if rule == "sgd":
        return sgd_step(p, g, lr), s
    if rule in ("momentum", "nesterov"):
        fn = momentum_step if rule == "momentum" else nesterov_step
        p, s["b"] = fn(p, g, slot("b"), lr, hyper["momentum"])
        return p, s
    if rule == "adagrad":
        p, s["s"] = adagrad_step(p, g, slot("s"), lr, hyper["eps"])
        return p, s
    if rule == "rmsprop":
        p, s["v"], s["ga"] = rmsprop_step(p, g, slot("v"), slot("ga"), lr, hyper["alpha"],
                                          hyper["eps"], hyper["centered"])
        return p, s
    if rule in ("adam", "adamw"):
        p, s["m"], s["v"], s["vmax"] = adam_step(
            p, g, slot("m"), slot("v"), slot("vmax"), t, lr, hyper["b1"], hyper["b2"],
            hyper["eps"], hyper.get("weight_decay", 0.0), rule == "adamw", hyper["amsgrad"])
        return p, s
    if rule == "nadam":
        p, s["m"], s["v"] = nadam_step(p, g, slot("m"), slot("v"), t, lr, hyper["b1"],
                                       hyper["b2"], hyper["eps"], hyper["weight_decay"],
                                       hyper["momentum_decay"], hyper["decoupled_weight_decay"])
        return p, s
    if rule == "radam":
        p, s["m"], s["v"] = radam_step(p, g, slot("m"), slot("v"), t, lr, hyper["b1"],
                                       hyper["b2"], hyper["eps"], hyper["weight_decay"],
                                       hyper["decoupled_weight_decay"])
        return p, s
    raise KeyError(f"no naive twin for optimizer {rule!r}: add a branch calling its twin to "
                   "optimizer_step in tests/naive.py")


def net_train_step(net, params, X, y, rule, hyper, slots, t, lr=None, alpha=0.0):
    """One gradient step on the whole batch ``(X, y)``: the gradient with the dropout masks of
    update count ``t - 1`` (the count before the step), then the optimizer's update ``t``.
    Returns ``(params, slots, loss)``."""
    value, grad = net_gradient(net, params, X, y, step=t - 1, alpha=alpha)
    params, slots = optimizer_step(rule, hyper, np.asarray(params, np.float64), grad, slots, t,
                                   lr)
    return params, slots, value


def net_epoch(net, params, X, y, order, batch, rule, hyper, slots, count, lr=None, alpha=0.0):
    """One epoch of mini-batch gradient descent: rows ``order[0:batch]``, ``order[batch:2
    batch]``, ... (the last batch may be smaller), one :func:`net_train_step` each, the
    optimizer's count going on from ``count``. Returns ``(params, slots, count, total)`` with
    ``total`` the sum of each batch's loss times its number of rows."""
    X = np.asarray(X)
    y = np.asarray(y)
    params = np.asarray(params, np.float64)
    total = 0.0
    for start in range(0, len(order), batch):
        rows = np.asarray(order[start : start + batch])
        count += 1
        params, slots, value = net_train_step(net, params, X[rows], y[rows], rule, hyper, slots,
                                              count, lr, alpha)
        total += value * len(rows)
    return params, slots, count, total
