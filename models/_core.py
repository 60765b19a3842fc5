"""Compiled core of the MLP: forward, backward, one mini-batch step, a whole epoch, a population.

Everything here works on the flat parameter vector and on one flat float workspace whose regions
are described by an integer offset table (see :class:`dlbasics.models.mlp.Workspace`); nothing
allocates. The general path (``MLP.gradient`` plus a Python loop over mini-batches) and the fused
epoch call the same functions in the same order, so both give bitwise-equal results.

Layer table ``layout`` (int64, shape ``(L, 4)``): ``n_in, n_out, w_off, b_off`` of each layer,
``W`` being ``params[w_off : w_off + n_in * n_out]`` viewed as ``(n_in, n_out)`` and ``b`` being
``params[b_off : b_off + n_out]``.

Workspace offsets ``offs`` (int64, shape ``(L + 1, 4)``): for layer ``l`` the starts of its
``z``, ``a``, dropped-input ``h`` and ``mask`` regions (``-1`` when the layer has no dropout);
row ``L`` holds the starts of the gathered inputs ``x``, gathered targets ``y`` and the two
ping-pong delta buffers. Every region is sized for the largest batch; a smaller batch uses the
first ``B * width`` elements.

Records. What travels together travels as one record, so that no compiled function here takes
more than about ten parameters and a new field is added in one place:

* :class:`Net`: the network description (``layout``, activation ``codes``, ``keep``
  probabilities, the ``inverted`` dropout convention, leaky ``slope``, ``loss_code``, ``fused``
  loss, probability clip ``eps``, dropout ``seed``) and the BLAS thresholds of its products
  (``min_rows``, ``min_work``, see :func:`dlbasics.kernels.dense.use_blas`);
* :class:`Data`: ``X``, dense targets ``Y``, integer ``labels`` and which of the two is used
  (``dense``);
* :class:`Buffers`: the workspace ``ws``, its offset table ``offs`` and the label buffer ``lbuf``;
* :class:`Opt`: the optimizer's rule ``code``, hyper-parameters ``hp``, state slots ``s1..s3`` and
  update ``count`` before the call (see :func:`dlbasics.models.optimizers.apply_update`);
* :class:`Population`: the per-network arrays of :func:`population_epoch_kernel`.

:func:`net_record` and friends build them on the Python side as plain tuples in the field order
of these named tuples; each compiled entry point turns them into named tuples whose arrays are
borrowed (:func:`lend_net` and friends, :func:`dlbasics.kernels.views.lent`), once. The inner
functions read array fields with :func:`~dlbasics.kernels.views.lent`, not as attributes: an
array read as an attribute of a tuple is reference-counted again, which cost 5-10% of a
2-16-16-1 step at batch 1.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit, prange

from ..kernels.activations import (
    SOFTMAX,
    act_flat,
    backward_kernel,
    dact_mul_flat,
    softmax_rows,
)
from ..kernels.dense import grad_input_kernel, grad_weights_kernel, matmul_bias_kernel, use_blas
from ..kernels.dropout import row_key, unit_keep
from ..kernels.losses import loss_dense_kernel, loss_labels_kernel
from ..kernels.views import borrow, grid, lent, span
from .optimizers import HP_LR, SGD_CODE, apply_update

#: The network description (see the module docstring).
Net = namedtuple("Net", ["layout", "codes", "keep", "inverted", "slope", "loss_code", "fused",
                         "eps", "seed", "min_rows", "min_work"])
#: Training or evaluation data.
Data = namedtuple("Data", ["X", "Y", "labels", "dense"])
#: A workspace (see :class:`dlbasics.models.mlp.Workspace`).
Buffers = namedtuple("Buffers", ["ws", "offs", "lbuf"])
#: An optimizer: rule code, hyper-parameters, state slots and update count.
Opt = namedtuple("Opt", ["code", "hp", "s1", "s2", "s3", "count"])
#: K networks of one architecture, row ``k`` of each array belonging to network ``k``:
#: parameters, gradients, workspaces, label buffers, visiting orders, dropout seeds, optimizer
#: codes, hyper-parameters, slots, update counts, which networks train, and their records.
Population = namedtuple("Population", ["P", "G", "WS", "LB", "orders", "seeds", "codes", "HP",
                                       "S1", "S2", "S3", "T0", "active", "OUT"])

#: BLAS thresholds that keep every product in the hand-written loops.
NO_BLAS = 1 << 62


# The Python side passes records as plain tuples in the field order of the named tuples above:
# Numba's dispatcher types a plain tuple in C (about 0.6 us for a record of five fields) and a
# named tuple through Python (about 1.7 us). Compiled code turns them into named tuples (lend_*).


def net_record(model, min_rows, min_work):
    """The :class:`Net` of ``model`` (a plain tuple) with BLAS thresholds ``min_rows``/
    ``min_work``."""
    return (model.layout, model.codes, model.keep, model.dropout == "inverted", model.slope,
            model.loss_code, model.fused, model.eps, model.seed, min_rows, min_work)


def data_record(X, Y, labels, dense):
    """The :class:`Data` (a plain tuple)."""
    return (X, Y, labels, dense)


def buffers_record(w):
    """The :class:`Buffers` of a :class:`dlbasics.models.mlp.Workspace` (a plain tuple)."""
    return (w.ws, w.offs, w.lbuf)


def opt_record(optimizer, state, params, lr=None):
    """The :class:`Opt` (a plain tuple) of ``optimizer`` in ``state`` for ``params`` (``lr``
    overrides the rate)."""
    s1, s2, s3 = optimizer.slots(state, params)
    return (optimizer.code, optimizer.hyper_vector(params.dtype, lr), s1, s2, s3, state.count)


@njit(cache=True)
def lend_net(n):
    """The :class:`Net` of record ``n`` (a plain tuple or a ``Net``) with borrowed arrays."""
    n = Net(*n)
    return Net(lent(n, "layout"), lent(n, "codes"), lent(n, "keep"), n.inverted, n.slope,
               n.loss_code, n.fused, n.eps, n.seed, n.min_rows, n.min_work)


@njit(cache=True)
def reseed(n, seed, min_rows, min_work):
    """The :class:`Net` ``n`` with dropout seed ``seed`` and BLAS thresholds
    ``min_rows``/``min_work``."""
    return Net(n.layout, n.codes, n.keep, n.inverted, n.slope, n.loss_code, n.fused, n.eps, seed,
               min_rows, min_work)


@njit(cache=True)
def lend_data(d):
    """The :class:`Data` of record ``d`` with borrowed arrays."""
    d = Data(*d)
    return Data(lent(d, "X"), lent(d, "Y"), lent(d, "labels"), d.dense)


@njit(cache=True)
def lend_buffers(b):
    """The :class:`Buffers` of record ``b`` with borrowed arrays."""
    b = Buffers(*b)
    return Buffers(lent(b, "ws"), lent(b, "offs"), lent(b, "lbuf"))


@njit(cache=True)
def lend_opt(o):
    """The :class:`Opt` of record ``o`` with borrowed arrays."""
    o = Opt(*o)
    return Opt(o.code, lent(o, "hp"), lent(o, "s1"), lent(o, "s2"), lent(o, "s3"), o.count)


@njit(cache=True)
def gather_kernel(data, order, start, stop, buf):
    """Copy rows ``order[start:stop]`` of ``data.X`` (and targets) into the workspace."""
    X, Y, labels, dense_targets = lent(data, "X"), lent(data, "Y"), lent(data, "labels"), data.dense
    ws, offs, lbuf = lent(buf, "ws"), lent(buf, "offs"), lent(buf, "lbuf")
    L = offs.shape[0] - 1
    n_in = X.shape[1]
    xo = offs[L, 0]
    for i in range(stop - start):
        r = order[start + i]
        for k in range(n_in):
            ws[xo + i * n_in + k] = X[r, k]
    if dense_targets:
        n_out = Y.shape[1]
        yo = offs[L, 1]
        for i in range(stop - start):
            r = order[start + i]
            for j in range(n_out):
                ws[yo + i * n_out + j] = Y[r, j]
    else:
        for i in range(stop - start):
            lbuf[i] = labels[order[start + i]]


# Flat-index loops for products too small for BLAS. Offsets address the flat arrays directly:
# creating 2-D views costs more than the arithmetic of a small layer.


@njit(inline="always", cache=True)
def _fwd_loops(P, wo, bo, n_in, n_out, ws, ho, zo, B):
    """``ws[z] = ws[h] @ W + b`` for ``B`` rows, ``W``/``b`` at ``wo``/``bo`` in ``P``.

    Inner loops run over 1-D row slices: indexing a slice with the loop counter lets the
    compiler drop the negative-index check and vectorise, which flat offsets prevent.
    """
    b = span(P, bo, n_out)
    k4 = n_in - n_in % 4
    for i in range(B):
        z = span(ws, zo + i * n_out, n_out)
        h = span(ws, ho + i * n_in, n_in)
        for j in range(n_out):
            z[j] = b[j]
        # Four input rows per pass over z: a quarter of the loads and stores of z. The sum is
        # still ((z + h0 w0) + h1 w1) + ..., the order of one row at a time, bit for bit.
        for k in range(0, k4, 4):
            h0 = h[k]
            h1 = h[k + 1]
            h2 = h[k + 2]
            h3 = h[k + 3]
            w0 = span(P, wo + k * n_out, n_out)
            w1 = span(P, wo + (k + 1) * n_out, n_out)
            w2 = span(P, wo + (k + 2) * n_out, n_out)
            w3 = span(P, wo + (k + 3) * n_out, n_out)
            for j in range(n_out):
                z[j] = z[j] + h0 * w0[j] + h1 * w1[j] + h2 * w2[j] + h3 * w3[j]
        for k in range(k4, n_in):
            hik = h[k]
            w = span(P, wo + k * n_out, n_out)
            for j in range(n_out):
                z[j] += hik * w[j]


@njit(inline="always", cache=True)
def _grad_w_loops(ws, ho, do, G, wo, bo, n_in, n_out, B):
    """``dW = h^T delta`` and ``db = sum_rows delta`` into ``G`` (first row assigns)."""
    db = span(G, bo, n_out)
    for i in range(B):
        d = span(ws, do + i * n_out, n_out)
        h = span(ws, ho + i * n_in, n_in)
        if i == 0:
            for j in range(n_out):
                db[j] = d[j]
        else:
            for j in range(n_out):
                db[j] += d[j]
        for k in range(n_in):
            hik = h[k]
            g = span(G, wo + k * n_out, n_out)
            if i == 0:
                for j in range(n_out):
                    g[j] = hik * d[j]
            else:
                for j in range(n_out):
                    g[j] += hik * d[j]


@njit(cache=True, fastmath={"reassoc"})
def _grad_x_loops(ws, do, P, wo, n_in, n_out, xo, B):
    """``dx = delta W^T`` for ``B`` rows.

    Each ``dx[k]`` is a dot product over the ``n_out`` outputs. In strict order that is a
    chain of dependent adds, bound by the add latency (about 90 us of a 160 us step of
    784-256-256-10 at batch 1). ``reassoc`` lets the compiler keep several vector partial
    sums instead, as BLAS does; the order is fixed at compile time, so results stay
    deterministic.
    """
    for i in range(B):
        d = span(ws, do + i * n_out, n_out)
        dx = span(ws, xo + i * n_in, n_in)
        for k in range(n_in):
            w = span(P, wo + k * n_out, n_out)
            s = d[0] * w[0]
            for j in range(1, n_out):
                s += d[j] * w[j]
            dx[k] = s


@njit(cache=True)
def forward_kernel(params, net, B, buf, train, step):
    """Forward pass of the batch in the workspace; returns nothing, fills every ``z`` and ``a``.

    Dropout on the input of layer ``l`` (``keep[l] < 1``): in training each row gets its own
    mask from the counter hash of ``(seed, step, l, row, unit)``; kept inputs are multiplied by
    1 (the notes' rule) or ``1 / p`` (``inverted``). At test time with the notes' rule, the
    layer's outgoing weights are scaled by ``p``, computed as ``(p h) W``; inverted dropout does
    nothing at test time.

    ``min_rows``/``min_work``: products from ``min_rows`` rows on go to BLAS (see
    :func:`dlbasics.kernels.dense.use_blas`). Everything else runs on the calling thread: a parallel
    function called from a cached non-parallel one can crash once loaded from the cache by
    another process (Numba issue 8578; ``tests/hardening/test_cache_processes.py``).
    """
    layout, codes, keep = lent(net, "layout"), lent(net, "codes"), lent(net, "keep")
    inverted, slope = net.inverted, net.slope
    seed, min_rows, min_work = net.seed, net.min_rows, net.min_work
    ws, offs = lent(buf, "ws"), lent(buf, "offs")
    L = layout.shape[0]
    ho = offs[L, 0]
    for l in range(L):
        n_in = layout[l, 0]
        n_out = layout[l, 1]
        p = keep[l]
        if p < 1.0 and (train or not inverted):
            hd = offs[l, 2]
            if train:
                mo = offs[l, 3]
                scale = 1.0 / p if inverted else 1.0
                for i in range(B):
                    key = row_key(seed, step, l, i)
                    for k in range(n_in):
                        e = i * n_in + k
                        ws[mo + e] = scale if unit_keep(key, k, p) else 0.0
                        ws[hd + e] = ws[ho + e] * ws[mo + e]
            else:
                for e in range(B * n_in):
                    ws[hd + e] = ws[ho + e] * p
            ho = hd
        zo = offs[l, 0]
        ao = offs[l, 1]
        if use_blas(B, n_in, n_out, min_rows, min_work):
            W = grid(params, layout[l, 2], n_in, n_out)
            b = span(params, layout[l, 3], n_out)
            matmul_bias_kernel(grid(ws, ho, B, n_in), W, b, grid(ws, zo, B, n_out), min_rows,
                               min_work)
        else:
            _fwd_loops(params, layout[l, 2], layout[l, 3], n_in, n_out, ws, ho, zo, B)
        code = codes[l]
        if code == SOFTMAX:
            softmax_rows(grid(ws, zo, B, n_out), grid(ws, ao, B, n_out))
        else:
            act_flat(code, span(ws, zo, B * n_out), span(ws, ao, B * n_out), slope)
        ho = ao


@njit(inline="always", cache=True)
def _sgd_row_update(ws, ho, do, P, wo, bo, n_in, n_out, lr):
    """Plain SGD fused into the backward pass of one row: ``W -= lr * (h^T delta)``,
    ``b -= lr * delta``, the same float operations as writing the gradient and then applying
    :func:`dlbasics.kernels.optimizers.sgd_kernel`, without the gradient's round trip through
    memory."""
    d = span(ws, do, n_out)
    h = span(ws, ho, n_in)
    b = span(P, bo, n_out)
    for j in range(n_out):
        b[j] -= lr * d[j]
    for k in range(n_in):
        hk = h[k]
        w = span(P, wo + k * n_out, n_out)
        for j in range(n_out):
            w[j] -= lr * (hk * d[j])


@njit(cache=True)
def backward_kernel_(params, grad, net, B, buf, dense_targets, sgd_lr=0.0):
    """Loss of the batch and the gradient of its mean w.r.t. all parameters (into ``grad``).

    ``fused``: the loss is evaluated on the output pre-activations ``z`` (the logit forms, or
    squared loss after an identity output), so ``dL/dz`` comes straight from the loss kernel.
    Otherwise ``dL/da`` is back-propagated through the output activation.

    ``sgd_lr > 0`` (one row, no BLAS): instead of writing the gradient, apply plain SGD with
    that rate layer by layer as soon as a layer's ``dx`` has been computed with its old weights.
    """
    layout, codes, keep = lent(net, "layout"), lent(net, "codes"), lent(net, "keep")
    slope = net.slope
    loss_code, fused, eps, min_rows, min_work = (net.loss_code, net.fused, net.eps, net.min_rows,
                                                 net.min_work)
    ws, offs, lbuf = lent(buf, "ws"), lent(buf, "offs"), lent(buf, "lbuf")
    L = layout.shape[0]
    n_last = layout[L - 1, 1]
    zL = grid(ws, offs[L - 1, 0], B, n_last)
    aL = grid(ws, offs[L - 1, 1], B, n_last)
    delta = grid(ws, offs[L, 2], B, n_last)
    pred = zL if fused else aL
    if dense_targets:
        yb = grid(ws, offs[L, 1], B, n_last)
        value = loss_dense_kernel(loss_code, yb, pred, delta, True, eps)
    else:
        value = loss_labels_kernel(loss_code, lbuf[:B], pred, delta, True, eps)
    if not fused:
        backward_kernel(codes[L - 1], zL, aL, delta, delta, slope)
    cur = 2
    for l in range(L - 1, -1, -1):
        n_in = layout[l, 0]
        n_out = layout[l, 1]
        wo = layout[l, 2]
        bo = layout[l, 3]
        do = offs[L, cur]
        if keep[l] < 1.0:
            ho = offs[l, 2]
        elif l == 0:
            ho = offs[L, 0]
        else:
            ho = offs[l - 1, 1]
        blas = use_blas(B, n_in, n_out, min_rows, min_work)
        nxt = 5 - cur
        xo = offs[L, nxt]
        if l > 0:  # dx first: it needs this layer's weights before any fused update
            if blas:
                grad_input_kernel(grid(ws, do, B, n_out), grid(params, wo, n_in, n_out),
                                  grid(ws, xo, B, n_in), min_rows, min_work)
            else:
                _grad_x_loops(ws, do, params, wo, n_in, n_out, xo, B)
        if blas:
            grad_weights_kernel(grid(ws, ho, B, n_in), grid(ws, do, B, n_out),
                                grid(grad, wo, n_in, n_out), span(grad, bo, n_out), min_rows,
                                min_work)
        elif sgd_lr > 0:
            _sgd_row_update(ws, ho, do, params, wo, bo, n_in, n_out, sgd_lr)
        else:
            _grad_w_loops(ws, ho, do, grad, wo, bo, n_in, n_out, B)
        if l == 0:
            break
        dx = span(ws, xo, B * n_in)
        if keep[l] < 1.0:
            m = span(ws, offs[l, 3], B * n_in)
            for e in range(B * n_in):
                dx[e] *= m[e]
        zp = span(ws, offs[l - 1, 0], B * n_in)
        ap = span(ws, offs[l - 1, 1], B * n_in)
        dact_mul_flat(codes[l - 1], zp, ap, dx, dx, slope)
        cur = nxt
    return value


@njit(cache=True)
def l2_penalty_kernel(params, grad, layout, scale):
    r"""Add the L2 penalty of the weights (not the biases) to a batch gradient.

    With ``scale`` :math:`= \alpha / n` for a batch of :math:`n` rows, the penalty is
    :math:`\frac{\alpha}{2n} \sum_l \lVert W_l \rVert^2` (scikit-learn's ``alpha``): each
    weight's gradient gains :math:`\frac{\alpha}{n} w` (``grad += scale * W``, in the
    parameter dtype) and the penalty, summed in float64, is returned to be added to the batch
    loss.
    """
    c = params.dtype.type(scale)
    total = 0.0
    for l in range(layout.shape[0]):
        m = layout[l, 0] * layout[l, 1]
        w = span(params, layout[l, 2], m)
        g = span(grad, layout[l, 2], m)
        for i in range(m):
            wi = w[i]
            total += float(wi) * float(wi)
            g[i] += c * wi
    return 0.5 * scale * total


@njit(cache=True)
def batch_gradient_kernel(params, grad, net, data, order, start, stop, buf, step, sgd_lr=0.0,
                          alpha=0.0):
    """Mean loss of rows ``order[start:stop]`` and its gradient (training mode); with
    ``sgd_lr > 0`` on one row, the SGD update instead (see :func:`backward_kernel_`).

    ``alpha > 0`` adds the L2 penalty of the weights to both (:func:`l2_penalty_kernel`, with
    the batch's row count); ``alpha = 0`` leaves the results bitwise as without it.
    """
    params, grad, order = borrow(params), borrow(grad), borrow(order)
    net, data, buf = lend_net(net), lend_data(data), lend_buffers(buf)
    return _batch_gradient(params, grad, net, data, order, start, stop, buf, step, sgd_lr, alpha)


@njit(cache=True)
def _batch_gradient(params, grad, net, data, order, start, stop, buf, step, sgd_lr, alpha):
    """:func:`batch_gradient_kernel` on borrowed arrays and records."""
    B = stop - start
    gather_kernel(data, order, start, stop, buf)
    forward_kernel(params, net, B, buf, True, step)
    value = backward_kernel_(params, grad, net, B, buf, data.dense, sgd_lr)
    if alpha > 0.0:
        value += l2_penalty_kernel(params, grad, lent(net, "layout"), alpha / B)
    return value


@njit(cache=True)
def epoch_kernel(params, grad, net, data, order, batch, buf, opt, out, alpha=0.0):
    """A whole epoch of mini-batch gradient descent in one call.

    Visits ``order`` in batches of ``batch`` rows (the last one may be smaller), and after each
    batch applies optimizer ``opt`` (rule ``opt.code``, see
    :func:`dlbasics.models.optimizers.apply_update`) with update count ``opt.count + 1,
    opt.count + 2, ...`` (also the dropout step counter). Stops at the first non-finite batch
    loss.

    Writes ``out[0]`` = sum over batches of ``batch_loss * batch_rows``, ``out[1]`` = number of
    updates done, ``out[2]`` = rows processed, ``out[3]`` = 1.0 if a loss was non-finite.
    ``alpha``: the L2 penalty of each batch (see :func:`batch_gradient_kernel`).
    """
    # Borrowed arrays: the per-batch calls below then do no reference counting (see
    # dlbasics.kernels.views; bitwise the same results).
    _epoch(borrow(params), borrow(grad), lend_net(net), lend_data(data), borrow(order), batch,
           lend_buffers(buf), lend_opt(opt), out, alpha)


@njit(cache=True)
def _epoch(params, grad, net, data, order, batch, buf, opt, out, alpha):
    """:func:`epoch_kernel` on borrowed arrays and lent records."""
    opt_code, t0 = opt.code, opt.count
    hp, s1, s2, s3 = opt.hp, opt.s1, opt.s2, opt.s3
    n = order.shape[0]
    total = 0.0
    t = t0
    rows = 0
    out[3] = 0.0
    # Stochastic plain SGD: the update is fused into the backward pass (same arithmetic, no
    # gradient round trip through memory; on a diverging step it is applied before the loss is
    # seen to be non-finite, so the weights end non-finite where the general path keeps the
    # last finite ones; the histories are the same).
    fuse = opt_code == SGD_CODE and batch == 1 and net.min_rows > 1 and alpha == 0.0
    sgd_lr = hp[HP_LR] if fuse else 0.0 * hp[HP_LR]
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        value = _batch_gradient(params, grad, net, data, order, start, stop, buf, t, sgd_lr,
                                alpha)
        rows += stop - start
        if not math.isfinite(value):
            total = value
            out[3] = 1.0
            break
        t += 1
        if sgd_lr == 0:
            apply_update(opt_code, params, grad, s1, s2, s3, t, hp)
        total += value * (stop - start)
    out[0] = total
    out[1] = t - t0
    out[2] = rows


@njit(cache=True)
def predict_kernel(params, net, X, buf, batch, out):
    """Test-mode forward pass of all rows of ``X`` in chunks of ``batch``; outputs into ``out``."""
    params, X, out = borrow(params), borrow(X), borrow(out)
    net, buf = lend_net(net), lend_buffers(buf)
    ws, offs, layout = lent(buf, "ws"), lent(buf, "offs"), lent(net, "layout")
    n, n0 = X.shape
    L = layout.shape[0]
    n_last = layout[L - 1, 1]
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        B = stop - start
        xb = grid(ws, offs[L, 0], B, n0)
        for i in range(B):
            for k in range(n0):
                xb[i, k] = X[start + i, k]
        forward_kernel(params, net, B, buf, False, 0)
        aL = grid(ws, offs[L - 1, 1], B, n_last)
        for i in range(B):
            for j in range(n_last):
                out[start + i, j] = aL[i, j]


@njit(inline="always", cache=True)
def _population_member(k, net, data, batch, offs, pop):
    """Network ``k``'s epoch (the records as plain tuples: a parallel loop cannot take named
    tuples into its body, Numba's parfor lowering fails on their type names)."""
    pop = Population(*pop)
    if pop.active[k]:
        net, data = lend_net(net), lend_data(data)
        buf = lend_buffers((pop.WS[k], offs, pop.LB[k]))
        opt = lend_opt((pop.codes[k], pop.HP[k], pop.S1[k], pop.S2[k], pop.S3[k], pop.T0[k]))
        # BLAS off: hand-written loops only
        _epoch(borrow(pop.P[k]), borrow(pop.G[k]), reseed(net, pop.seeds[k], NO_BLAS, NO_BLAS),
               data, borrow(pop.orders[k]), batch, buf, opt, pop.OUT[k], 0.0)


@njit(cache=True, parallel=True)
def population_epoch_kernel(net, data, batch, offs, pop):
    """One epoch for each of K independent networks of one architecture (``prange`` over them).

    Row ``k`` of every array of ``pop`` (a :class:`Population`) belongs to network ``k``:
    parameters ``P``, gradient ``G``, workspace ``WS``, label buffer ``LB``, visiting order
    ``orders``, dropout seed, optimizer code and hyper-parameters, optimizer slots ``S1..S3``,
    update count ``T0`` and results ``OUT`` (as in :func:`epoch_kernel`); networks with
    ``active[k] == False`` (e.g. diverged) are skipped. ``offs`` is the offset table of every
    workspace. Each network runs the serial single-network code with BLAS disabled (hand-written
    loops only, so no second thread pool runs inside the parallel loop); the seed and the BLAS
    thresholds of ``net`` are not used.
    """
    for k in prange(pop[0].shape[0]):  # pop[0]: the parameters P
        _population_member(k, net, data, batch, offs, pop)


@njit(cache=True)
def population_epoch_serial(net, data, batch, offs, pop):
    """:func:`population_epoch_kernel` one network after another (one thread)."""
    for k in range(pop[0].shape[0]):
        _population_member(k, net, data, batch, offs, pop)


@njit(cache=True)
def evaluate_kernel(params, net, data, chunk, buf, classify, softmax_out, out):
    """Test-mode mean loss (``out[0]``) and accuracy (``out[1]``) over all rows of ``X``.

    The loss is the training loss (computed from the logits for the fused forms) of the full
    network, dropout replaced by its test-time rule. Accuracy (when ``classify``) is the argmax
    match for softmax outputs, else the fraction of outputs on the right side of 0.5.
    """
    params = borrow(params)
    net, data, buf = lend_net(net), lend_data(data), lend_buffers(buf)
    ws, offs, lbuf = lent(buf, "ws"), lent(buf, "offs"), lent(buf, "lbuf")
    layout = lent(net, "layout")
    loss_code, fused, eps, dense_targets = net.loss_code, net.fused, net.eps, data.dense
    n = data.X.shape[0]
    L = layout.shape[0]
    k = layout[L - 1, 1]
    order = np.arange(n)
    total = 0.0
    correct = 0.0
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        B = stop - start
        gather_kernel(data, order, start, stop, buf)
        forward_kernel(params, net, B, buf, False, 0)
        zL = grid(ws, offs[L - 1, 0], B, k)
        aL = grid(ws, offs[L - 1, 1], B, k)
        pred = zL if fused else aL
        dummy = grid(ws, offs[L, 2], 1, 1)
        if dense_targets:
            yb = grid(ws, offs[L, 1], B, k)
            total += loss_dense_kernel(loss_code, yb, pred, dummy, False, eps) * B
        else:
            total += loss_labels_kernel(loss_code, lbuf[:B], pred, dummy, False, eps) * B
        if classify:
            for i in range(B):
                if softmax_out:
                    best = 0
                    for j in range(1, k):
                        if aL[i, j] > aL[i, best]:
                            best = j
                    if dense_targets:
                        truth = 0
                        for j in range(1, k):
                            if yb[i, j] > yb[i, truth]:
                                truth = j
                    else:
                        truth = lbuf[i]
                    correct += 1.0 if best == truth else 0.0
                else:
                    for j in range(k):
                        correct += (1.0 if (aL[i, j] > 0.5) == (yb[i, j] > 0.5) else 0.0) / k
    out[0] = total / n
    out[1] = correct / n


@njit(cache=True)
def mc_forward_kernel(params, net, X, buf, batch, n_nets, seed, out):
    """Monte-Carlo dropout prediction: the mean output of ``n_nets`` thinned networks.

    Thinned network ``s`` uses the training masks of step ``s`` under ``seed``; each row of
    ``X`` (its row index within the chunk of ``batch`` rows) gets its own mask. ``out`` is
    overwritten with the average of the outputs.
    """
    params, X, out = borrow(params), borrow(X), borrow(out)
    net = lend_net(net)
    net = reseed(net, seed, net.min_rows, net.min_work)
    buf = lend_buffers(buf)
    ws, offs, layout = lent(buf, "ws"), lent(buf, "offs"), lent(net, "layout")
    n, n0 = X.shape
    L = layout.shape[0]
    k = layout[L - 1, 1]
    for i in range(n):
        for j in range(k):
            out[i, j] = 0.0
    inv = 1.0 / n_nets
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        B = stop - start
        for s in range(n_nets):
            xb = grid(ws, offs[L, 0], B, n0)
            for i in range(B):
                for c in range(n0):
                    xb[i, c] = X[start + i, c]
            forward_kernel(params, net, B, buf, True, s)
            aL = grid(ws, offs[L - 1, 1], B, k)
            for i in range(B):
                for j in range(k):
                    out[start + i, j] += aL[i, j] * inv
