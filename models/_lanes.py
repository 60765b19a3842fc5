"""Compiled population epoch in the lane layout: the networks are the innermost axis.

:func:`dlbasics.models._core.population_epoch_kernel` trains each network with the shared network
step of :mod:`dlbasics.kernels.network`. For a small network (2-16-16-1) its loops run over 16
units at a time, too few to keep the vector units busy. Here the ``K`` networks are split into
chunks of ``C`` *lanes* (one lane per network), and every array of a chunk stores its values
lane-innermost:

* parameters ``pc[p * C + c]`` = parameter ``p`` of the chunk's network ``c`` (gradient and
  optimizer slots alike), i.e. the flat parameter vector of :class:`dlbasics.models.mlp.MLP`
  transposed to shape ``(n_params, C)``;
* activations ``z[(i * width + j) * C + c]``: row ``i`` of the batch, unit ``j``, lane ``c``.

Each arithmetic operation of the forward pass, back-propagation and update is then a loop over
the ``C`` lanes of one chunk, which the compiler turns into vector instructions, and the chunks
run in parallel, on threads (:func:`lanes_epoch_kernel`). A chunk's working set (about
``n_params * C`` values per array) stays in the core's caches for the whole epoch. The three
products (forward, back-propagation to the inputs, weight gradient) run as register-blocked
vector code
(:func:`dlbasics.kernels.lanes.block_product`: a block of rows x units of accumulators stays in
registers over the whole sum, bitwise the plain loops' result as long as the caller is compiled
without fast-math flags, as here), which halved their time at batch 32 (2-16-16-1, float32).

Every network visits the rows of its own ``orders[k]``: the batch is gathered per lane,
``x[i, f, c] = X[orders[k_c][start + i], f]``. An ``orders`` of one row (one shuffle seed for
every network, or no shuffling) is every network's order: each batch row is read once and
broadcast to the lanes.

This module keeps its own loops because its memory layout differs: the shared step indexes one
network's contiguous buffers, a lane loop strides over ``C`` networks. Per lane the arithmetic is
that of the shared step's loops (:mod:`dlbasics.kernels.network`) in the same order, and
``tests/test_population_lanes.py`` compares every lane against that step: ``z = b + h_0 W_0 +
h_1 W_1 + ...`` over inputs ascending, the loss through
:func:`dlbasics.kernels.losses.dense_row` / :func:`dlbasics.kernels.losses.label_row` (or the same
expressions, elementwise, where binary cross-entropy takes ``exp``, ``log1p`` and the sigmoid from
:mod:`dlbasics.kernels.vecmath`: vectorisable and correctly rounded but for rare ties in
float32, libm in float64), ``dW`` and ``db`` summed over batch rows ascending (first row assigns),
``dx`` summed over outputs ascending (the single-network loops reassociate that sum, so ``dx``
agrees with them to rounding only), and the optimizer update by
:func:`dlbasics.models.optimizers.apply_update` on the chunk's flat arrays, which is elementwise and
hence the same per element as the update of one network. Plain SGD at batch 1 is fused into the
backward pass as in :func:`dlbasics.models._core.epoch_kernel`. In float32 some functions differ
by more than the order of a sum, each within one ulp: the ``tanh`` activation is
:func:`dlbasics.kernels.vecmath.tanh_fast` (the shared step's ``vecmath.tanh`` is correctly
rounded but for rare ties) at 0.59 against 1.60 ns per value, and the elementwise binary
cross-entropy takes ``exp`` and ``log1p`` from :mod:`dlbasics.kernels.vecmath` (the shared step:
libm's ``expf``, ``log1pf``; see :func:`_loss_elementwise`). In float64 all are libm's.

All networks of one call share the optimizer rule, its hyper-parameters and the update count
(only then is the update of a chunk one elementwise call). A network whose batch loss becomes
non-finite is written back at that moment (its parameters as the per-network kernel leaves them)
and its lane keeps computing without being read again.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels import vecmath as vm
from ..kernels.activations import TANH, act_flat, dact_mul_inplace
from ..kernels.lanes import FIRST_DTANH, INIT_BIAS, INIT_FIRST, block_product
from ..kernels.losses import BCE_LOGITS, SQUARED, dense_row, label_row
from ..kernels.network import Opt, lend_data, lend_net
from ..kernels.views import borrow, lent, row, span
from ._threads import run_blocks
from .optimizers import HP_LR, SGD_CODE, apply_update

#: Fields of the lane workspaces record: lanes per chunk ``C`` and, per chunk ``q`` (first
#: axis), the float workspace ``WSL`` laid out by :func:`lane_offsets` (``loffs``), parameters
#: ``PL``, gradient ``GL``, optimizer slots ``SL`` (``(n_chunks, 3, n_params * C)``), float64
#: loss totals ``ACC`` (``(n_chunks, 2, C)``), gathered labels ``LBL`` and live flags ``LIVE``.
LANE_FIELDS = ("C", "WSL", "loffs", "PL", "GL", "SL", "ACC", "LBL", "LIVE")


def lane_offsets(sizes, batch, C):
    """Region starts of a chunk's float workspace for layer widths ``sizes``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``[n_0, ..., n_L]``.
    batch : int
        Largest batch (rows).
    C : int
        Lanes per chunk.

    Returns
    -------
    offs : ndarray of shape (L + 1, 5), int64
        Row ``l < L``: starts of layer ``l``'s pre-activations ``z`` and activations ``a``
        (columns 2 to 4 unused, -1). Row ``L``: starts of the gathered inputs, gathered dense
        targets, the two ping-pong delta buffers and one lane vector of ones (the bias
        gradient's sum as a product, :func:`_grad_w_layer`), which the caller fills.
    size : int
        Number of elements of the workspace.
    """
    L = len(sizes) - 1
    offs = np.full((L + 1, 5), -1, dtype=np.int64)
    pos = 0
    for l in range(L):
        width = batch * sizes[l + 1] * C
        offs[l, 0] = pos
        offs[l, 1] = pos + width
        pos += 2 * width
    widest = max(sizes)
    for col, width in enumerate((sizes[0], sizes[-1], widest, widest)):
        offs[L, col] = pos
        pos += batch * width * C
    offs[L, 4] = pos
    return offs, pos + C


@njit(inline="always", cache=True)
def _lane_slice(a, p, C):
    """The ``C`` lanes of element ``p`` of a lane-major flat array."""
    return span(a, p * C, C)


@njit(inline="always", cache=True)
def _gather(data, orders, k0, K, C, start, B, ws, xo, yo, lb):
    """Rows ``orders[k][start:start + B]`` of each lane's network ``k`` (``data`` lent); an
    ``orders`` of one row is every network's."""
    X, Y, labels, dense_targets = lent(data, "X"), lent(data, "Y"), lent(data, "labels"), \
        data.dense
    n0 = X.shape[1]
    if orders.shape[0] == 1:  # one order for every network: each row read once, broadcast
        for i in range(B):
            r = orders[0, start + i]
            for f in range(n0):
                v = X[r, f]
                dst = span(ws, xo + (i * n0 + f) * C, C)
                for c in range(C):
                    dst[c] = v
            if dense_targets:
                for j in range(Y.shape[1]):
                    v = Y[r, j]
                    dst = span(ws, yo + (i * Y.shape[1] + j) * C, C)
                    for c in range(C):
                        dst[c] = v
            else:
                v = labels[r]
                for c in range(C):
                    lb[i * C + c] = v
        return
    for i in range(B):
        for c in range(C):
            r = orders[min(k0 + c, K - 1), start + i]
            for f in range(n0):
                ws[xo + (i * n0 + f) * C + c] = X[r, f]
            if dense_targets:
                nl = Y.shape[1]
                for j in range(nl):
                    ws[yo + (i * nl + j) * C + c] = Y[r, j]
            else:
                lb[i * C + c] = labels[r]


@njit(inline="always", cache=True)
def _forward_layer(pc, wo, bo, n_in, n_out, ws, ho, zo, B, C):
    """``z[i, j] = b[j] + sum_k h[i, k] W[k, j]`` per lane, ``k`` ascending (as
    :func:`dlbasics.kernels.network._fwd_loops`, whose four-at-a-time sum has the same order),
    in register blocks of rows x units (:func:`dlbasics.kernels.lanes.block_product`)."""
    block_product(INIT_BIAS, ws, zo // C, n_out, 1, ws, ho // C, 1, n_in, pc, wo, n_out, 1, pc,
                  bo, ws, 0, B, n_out, n_in, C)


@njit(inline="always", cache=True)
def _grad_x_layer(pc, wo, n_in, n_out, ws, do, xo, B, C, dtanh, ao):
    """``dx[i, k] = sum_j delta[i, j] W[k, j]`` per lane, ``j`` ascending, in register blocks
    of rows x inputs; with ``dtanh``, times ``1 - a[i, k]^2`` (the activations at ``ao``, a
    ``tanh`` layer), as :func:`dlbasics.kernels.activations.dact_mul_flat` rounds it."""
    block_product(FIRST_DTANH if dtanh else INIT_FIRST, ws, xo // C, n_in, 1, ws, do // C, 1,
                  n_out, pc, wo, 1, n_out, pc, 0, ws, ao // C, B, n_in, n_out, C)


@njit(inline="always", cache=True)
def _grad_w_layer(gc, wo, bo, n_in, n_out, ws, ho, do, B, C, ones):
    """``dW[k, j] = sum_i h[i, k] delta[i, j]``, ``db[j] = sum_i delta[i, j]`` per lane, rows
    ascending, the first row assigning (as :func:`dlbasics.kernels.network._grad_w_loops`).
    ``db`` is the product of a lane vector of ones (at ``ones``) and the deltas: every term
    ``1 * delta`` is exact, so the sums are bitwise those of the plain loop."""
    hb = ho // C
    db_ = do // C
    block_product(INIT_FIRST, gc, bo, 0, 1, ws, ones // C, 0, 0, ws, db_, n_out, 1, gc, 0, gc, 0,
                  1, n_out, B, C)
    # dW[k, j]: rows ascending, the first assigning, in register blocks of inputs x units
    block_product(INIT_FIRST, gc, wo, n_out, 1, ws, hb, n_in, 1, ws, db_, n_out, 1, gc, 0, gc, 0,
                  n_in, n_out, B, C)


@njit(inline="always", cache=True)
def _sgd_layer(pc, wo, bo, n_in, n_out, ws, ho, do, lr, C):
    """One row (batch 1): ``b -= lr * delta``, ``W -= lr * (h^T delta)`` per lane (as
    :func:`dlbasics.kernels.network._sgd_row_update`)."""
    hb = ho // C
    db_ = do // C
    for j in range(n_out):
        b = _lane_slice(pc, bo + j, C)
        d = _lane_slice(ws, db_ + j, C)
        for c in range(C):
            b[c] -= lr * d[c]
    for k in range(n_in):
        h = _lane_slice(ws, hb + k, C)
        for j in range(n_out):
            w = _lane_slice(pc, wo + k * n_out + j, C)
            d = _lane_slice(ws, db_ + j, C)
            for c in range(C):
                w[c] -= lr * (h[c] * d[c])


@njit(inline="always", cache=True)
def _loss_elementwise(code, ws, po, yo, do, B, nl, C, btot, inv_n):
    """Squared loss or binary cross-entropy from logits, per element, rows then outputs
    ascending into the float64 lane totals ``btot``; gradient of the batch mean into ``do``.
    The expressions are those of :func:`dlbasics.kernels.losses.dense_row`, with functions that
    vectorise: in float32 ``exp`` and ``log1p`` from :mod:`dlbasics.kernels.vecmath` (correctly
    rounded but for rare ties; ``dense_row`` calls libm's ``expf`` and ``log1pf``, within an
    ulp) and the sigmoid of the gradient in float64 (``activations.sigmoid_vec``, as
    ``sigmoid_scalar`` keeps it, so ``s - y`` near ``s = 1`` loses nothing), both from one
    exponential (:func:`dlbasics.kernels.vecmath.bce_terms`, the same bits as those three
    calls; this loop 4.1 against 7.2 ns a value with them); in float64 libm's, the same
    bits."""
    for e in range(B * nl):
        p = _lane_slice(ws, po // C + e, C)
        y = _lane_slice(ws, yo // C + e, C)
        g = _lane_slice(ws, do // C + e, C)
        if code == SQUARED:
            for c in range(C):
                d = p[c] - y[c]
                btot[c] += 0.5 * d * d
                g[c] = d * inv_n
        else:
            for c in range(C):
                pj = p[c]
                yj = y[c]
                # log1p(exp(-|p|)) and sigmoid(p) with one exponential, the bits of
                # vm.log1p(vm.exp(-abs(pj))) and sigmoid_vec(pj) (vecmath.bce_terms)
                soft, sig = vm.bce_terms(pj)
                btot[c] += max(pj, 0.0) - pj * yj + soft
                g[c] = (sig - yj) * inv_n


@njit(inline="always", cache=True)
def _loss_rows(net, ws, po, yo, do, lb, B, nl, C, btot, inv_n, dense_targets):
    """Any loss (``net.loss_code``), one lane at a time through
    :func:`dlbasics.kernels.losses.dense_row` / :func:`dlbasics.kernels.losses.label_row` on
    strided views."""
    code, eps = net.loss_code, net.eps
    n = B * nl * C
    p3 = ws[po : po + n].reshape((B, nl, C))
    g3 = ws[do : do + n].reshape((B, nl, C))
    y3 = ws[yo : yo + n].reshape((B, nl, C))
    for c in range(C):
        total = 0.0
        for i in range(B):
            if dense_targets:
                total = dense_row(code, y3[i, :, c], p3[i, :, c], g3[i, :, c], True, eps, inv_n,
                                  total)
            else:
                total = label_row(code, lb[i * C + c], p3[i, :, c], g3[i, :, c], True, eps,
                                  inv_n, total)
        btot[c] = total


@njit(inline="always", cache=True)
def _act_lanes(code, z, a, slope):
    """``a = f(z)``: :func:`dlbasics.kernels.activations.act_flat`, but ``tanh`` by
    :func:`dlbasics.kernels.vecmath.tanh_fast` (faithful in float32, 2.7x faster; libm in
    float64, as ``act_flat``)."""
    if code == TANH:
        for e in range(z.shape[0]):
            a[e] = vm.tanh_fast(z[e])
    else:
        act_flat(code, z, a, slope)


@njit(inline="always", cache=True)
def _write_back(P, opt, k, c, pc, s1, s2, s3, C):
    """Lane ``c`` back into network ``k``'s row of ``P`` and of the slots of ``opt``."""
    S1, S2, S3 = lent(opt, "s1"), lent(opt, "s2"), lent(opt, "s3")
    for p in range(P.shape[1]):
        P[k, p] = pc[p * C + c]
        S1[k, p] = s1[p * C + c]
        S2[k, p] = s2[p * C + c]
        S3[k, p] = s3[p * C + c]


@njit(cache=True, nogil=True, error_model="numpy")
def chunk_epoch(q, net, data, batch, opt, pop, lanes):
    """Chunk ``q``'s epoch (the records as plain tuples; see :func:`lanes_epoch_kernel`).
    Compiled without the GIL, so that threads run chunks side by side."""
    # Borrowed arrays: no reference counting in the calls below (see dlbasics.kernels.views).
    net, data = lend_net(net), lend_data(data)
    opt = Opt(*opt)
    opt_code, t0 = opt.code, opt.count
    hp, S1, S2, S3 = lent(opt, "hp"), lent(opt, "s1"), lent(opt, "s2"), lent(opt, "s3")
    layout, codes, slope = lent(net, "layout"), lent(net, "codes"), net.slope
    loss_code, fused, dense_targets = net.loss_code, net.fused, data.dense
    P, orders, active, OUT = (borrow(pop[0]), borrow(pop[1]), borrow(pop[2]), borrow(pop[3]))
    C, WSL, loffs, PL, GL, LBL, LIVE = (lanes[0], lanes[1], borrow(lanes[2]), lanes[3], lanes[4],
                                        lanes[7], lanes[8])
    SL, ACC = borrow(lanes[5]), borrow(lanes[6])
    K, n_params = P.shape
    L = layout.shape[0]
    k0 = q * C
    pc = row(PL, q)
    gc = row(GL, q)
    s1 = SL[q, 0]
    s2 = SL[q, 1]
    s3 = SL[q, 2]
    ws = row(WSL, q)
    tot = ACC[q, 0]
    btot = ACC[q, 1]
    lb = row(LBL, q)
    live = row(LIVE, q)
    # Pack: lane c of this chunk is network k0 + c; lanes past K (padding) copy the last network,
    # networks already stopped hold their own last parameters; neither is ever written back.
    nlive = 0
    for c in range(C):
        k = min(k0 + c, K - 1)
        live[c] = k0 + c < K and active[k]
        if live[c]:
            nlive += 1
        tot[c] = 0.0
        for p in range(n_params):
            pc[p * C + c] = P[k, p]
            s1[p * C + c] = S1[k, p]
            s2[p * C + c] = S2[k, p]
            s3[p * C + c] = S3[k, p]
    if nlive == 0:
        return
    n = orders.shape[1]
    nl = layout[L - 1, 1]
    xo = loffs[L, 0]
    yo = loffs[L, 1]
    fuse = opt_code == SGD_CODE and batch == 1
    lr = hp[HP_LR]
    elementwise_loss = dense_targets and (loss_code == SQUARED or loss_code == BCE_LOGITS)
    t = t0
    rows = 0
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        B = stop - start
        _gather(data, orders, k0, K, C, start, B, ws, xo, yo, lb)
        # forward (the output activation only where the loss needs it)
        ho = xo
        for l in range(L):
            zo = loffs[l, 0]
            ao = loffs[l, 1]
            _forward_layer(pc, layout[l, 2], layout[l, 3], layout[l, 0], layout[l, 1], ws, ho,
                           zo, B, C)
            m = B * layout[l, 1] * C
            if l < L - 1 or not fused:
                _act_lanes(codes[l], span(ws, zo, m), span(ws, ao, m), slope)
            ho = ao
        # loss and its gradient with respect to the output (pre-)activations
        zLo = loffs[L - 1, 0]
        aLo = loffs[L - 1, 1]
        po = zLo if fused else aLo
        do = loffs[L, 2]
        inv_n = 1.0 / B
        for c in range(C):
            btot[c] = 0.0
        if elementwise_loss:
            _loss_elementwise(loss_code, ws, po, yo, do, B, nl, C, btot, inv_n)
        else:
            _loss_rows(net, ws, po, yo, do, lb, B, nl, C, btot, inv_n, dense_targets)
        if not fused:
            m = B * nl * C
            d_out = span(ws, do, m)
            dact_mul_inplace(codes[L - 1], span(ws, zLo, m), span(ws, aLo, m), d_out, slope)
        # back-propagation
        cur = 2
        for l in range(L - 1, -1, -1):
            n_in = layout[l, 0]
            n_out = layout[l, 1]
            wo = layout[l, 2]
            bo = layout[l, 3]
            do = loffs[L, cur]
            ho = xo if l == 0 else loffs[l - 1, 1]
            nxt = 5 - cur
            xo_ = loffs[L, nxt]
            # the previous layer's tanh derivative goes with dx (one pass less); others below
            dtanh = l > 0 and codes[l - 1] == TANH
            if l > 0:  # dx first: it needs this layer's weights before a fused update
                _grad_x_layer(pc, wo, n_in, n_out, ws, do, xo_, B, C, dtanh, loffs[l - 1, 1])
            if fuse:
                _sgd_layer(pc, wo, bo, n_in, n_out, ws, ho, do, lr, C)
            else:
                _grad_w_layer(gc, wo, bo, n_in, n_out, ws, ho, do, B, C, loffs[L, 4])
            if l == 0:
                break
            m = B * n_in * C
            zp = loffs[l - 1, 0]
            ap = loffs[l - 1, 1]
            d_in = span(ws, xo_, m)
            if not dtanh:
                dact_mul_inplace(codes[l - 1], span(ws, zp, m), span(ws, ap, m), d_in, slope)
            cur = nxt
        rows += B
        for c in range(C):
            if live[c]:
                value = btot[c] * inv_n
                if math.isfinite(value):
                    tot[c] += value * B
                else:  # stop this network here, as epoch_kernel does
                    k = k0 + c
                    _write_back(P, opt, k, c, pc, s1, s2, s3, C)
                    OUT[k, 0] = value
                    OUT[k, 1] = t - t0
                    OUT[k, 2] = rows
                    OUT[k, 3] = 1.0
                    live[c] = False
                    nlive -= 1
        if nlive == 0:
            return
        t += 1
        if not fuse:
            apply_update(opt_code, pc, gc, s1, s2, s3, t, hp)
    for c in range(C):
        if live[c]:
            k = k0 + c
            _write_back(P, opt, k, c, pc, s1, s2, s3, C)
            OUT[k, 0] = tot[c]
            OUT[k, 1] = t - t0
            OUT[k, 2] = rows
            OUT[k, 3] = 0.0


def lanes_chunks(start, stop, net, data, batch, opt, pop, lanes):
    """Chunks ``start .. stop - 1`` of an epoch in the lane layout, one after another
    (arguments as :func:`lanes_epoch_kernel`), each a call of :func:`chunk_epoch`."""
    for q in range(start, stop):
        chunk_epoch(q, net, data, batch, opt, pop, lanes)


def lanes_epoch_kernel(net, data, batch, opt, pop, lanes, threads=None):
    """One epoch of K networks in the lane layout, the chunks of ``C`` networks on threads.

    ``threads`` Python threads (default :func:`numba.get_num_threads`, at most one per chunk)
    each run :func:`lanes_chunks` on a contiguous block of chunks, the calling thread one of
    them (:func:`dlbasics.models._threads.run_blocks`); :func:`chunk_epoch` releases the GIL.
    Threads and not a ``prange`` because Numba then builds the chunk epoch once, not three
    times: first epoch with an empty cache, 2-16-16-1, K = 64, batch 32, 2 cores: 42-47 s with
    ``prange``, 16.6 s here; epoch times equal within the machine's noise (K = 64 batch 1,
    K = 512 batches 1 and 32). The call returns when every thread has finished, also when
    interrupted, so no thread writes the arrays after it; an error in a thread is raised here.

    Parameters
    ----------
    net : tuple
        The :class:`dlbasics.models._core.Net` of the architecture (plain tuple): layer table,
        activation codes (no softmax but a fused output), leaky-ReLU slope, loss code, fused
        loss, ``eps``; its dropout fields and BLAS thresholds are not used.
    data : tuple
        The :class:`dlbasics.models._core.Data` (plain tuple).
    batch : int
        Batch size.
    opt : tuple
        The :class:`dlbasics.models._core.Opt` shared by all networks (plain tuple): rule code,
        hyper-parameter vector, slots ``S1, S2, S3`` of shape ``(K, n_params)`` (one row per
        network, as in :func:`dlbasics.models._core.population_epoch_kernel`) and update count.
    pop : tuple
        ``(P, orders, active, OUT)``: parameters ``(K, n_params)``, visiting order of each network
        ``(K, n)`` (or one order for all, ``(1, n)``), which networks train (bool ``(K,)``;
        the others are left unchanged) and ``OUT`` ``(K, 4)``, per network as
        :func:`dlbasics.models._core.epoch_kernel` writes ``out``. Parameters and slots are
        read at the start and written back for every network that was active (at its first
        non-finite batch loss, or at the end).
    lanes : tuple
        The per-chunk workspaces, fields :data:`LANE_FIELDS`.
    threads : int, optional
        Threads to use; 1 runs every chunk in the calling thread.
    """
    run_blocks(lanes_chunks, lanes[3].shape[0], net, data, batch, opt, pop, lanes, threads=threads)


def lanes_epoch_serial(net, data, batch, opt, pop, lanes):
    """:func:`lanes_epoch_kernel` one chunk after another in the calling thread."""
    lanes_chunks(0, lanes[3].shape[0], net, data, batch, opt, pop, lanes)
