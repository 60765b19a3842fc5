"""GPU twin of :func:`dlbasics.models._core.population_epoch_kernel`: K small networks trained at
once.

One thread trains one network for a whole epoch: it runs :func:`network_epoch`, the serial code
of :func:`dlbasics.models._core.epoch_kernel` (gather a mini-batch, forward with dropout masks,
loss, backward, optimizer update; stop at a non-finite loss) with the hand-written loops the CPU
uses inside its population kernel (no BLAS), in the same order, on flat per-network buffers. The
scalar formulas are the CPU's (:func:`~dlbasics.kernels.activations.act_scalar`,
:func:`~dlbasics.kernels.activations.dact_scalar`, :func:`~dlbasics.kernels.dropout.row_key` /
:func:`~dlbasics.kernels.dropout.unit_keep`, the loss rows of :mod:`dlbasics.kernels.gpu_losses`,
the per-element rules of :mod:`dlbasics.kernels.optimizers` through
:func:`dlbasics.kernels.gpu_optimizers.apply_update`), so a network trained in a GPU population
follows the CPU trajectory of the same network up to the rounding differences of the GPU's math
library and its fused multiply-adds. :func:`network_epoch` is an ordinary ``@njit`` function: it
also runs on the CPU, where it gives bitwise the result of
:func:`dlbasics.models._core.epoch_kernel` with BLAS disabled.

float32 networks: the loss of a batch is summed in float64 (as the CPU does), the softmax row
sum is float64, and the activation formulas run in float64 and are rounded once (the branches of
``act_scalar``/``dact_scalar`` unify to float64); products and updates are float32. All of it is
the CPU's arithmetic, kept for bitwise CPU parity.

Memory layout. The arguments are those of the CPU kernel: row ``k`` of every per-network 2-D
array belongs to network ``k`` (``P``, ``G``, ``orders``, ``WS``, ``LB``, ``HP``, ``S1..S3``,
``OUT``). On a GPU, threads of a warp then read addresses ``n_params`` apart; with
``interleaved=True`` every per-network array is given transposed instead (column ``k`` is
network ``k``, e.g. ``P`` of shape ``(n_params, K)``), so neighbouring threads read neighbouring
addresses. Host inputs are always transposed for the launch (and back), device inputs are used
in the layout the caller states.

Blocks hold at most 32 threads (one warp; ``THREADS_PER_BLOCK`` if smaller), so that even a
population of a thousand networks spreads over many multiprocessors.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from . import _checks
from . import gpu_config as g
from ._gpu_arrays import Call, float_array, int_array
from .activations import SOFTMAX, act_scalar, dact_scalar
from .dropout import row_key, unit_keep
from .gpu_optimizers import HP_SIZE, apply_update
from .losses import dense_row, label_row

__all__ = ["gpu_population_epoch", "network_epoch"]

cuda = None  # numba.cuda, bound by _kernels() on first use (import-safe without numba-cuda)

#: Largest block of the population kernel (one warp).
POPULATION_BLOCK = 32


@njit(inline="always", cache=True)
def softmax_row(ws, zr, ar, n_out):
    """``ws[ar:ar + n_out] = softmax(ws[zr:zr + n_out])``, max-shifted: the softmax row of
    :func:`network_epoch`, shared with the one-launch epoch of :mod:`.gpu_small` (an ``@njit``
    function, so the simulator runs it compiled, with the GPU's float32 ``exp``)."""
    mx = ws[zr]
    for j in range(1, n_out):
        if ws[zr + j] > mx:
            mx = ws[zr + j]
    s = 0.0
    for j in range(n_out):
        ex = math.exp(ws[zr + j] - mx)
        ws[ar + j] = ex
        s += ex
    inv = 1.0 / s
    for j in range(n_out):
        ws[ar + j] *= inv


@njit(cache=True)
def _gather(X, Y, labels, order, start, B, ws, x_off, y_off, lb, dense):
    """Rows ``order[start:start + B]`` of ``X`` (and targets) into the workspace."""
    n_in = X.shape[1]
    for i in range(B):
        r = order[start + i]
        for k in range(n_in):
            ws[x_off + i * n_in + k] = X[r, k]
    if dense:
        n_out = Y.shape[1]
        for i in range(B):
            r = order[start + i]
            for j in range(n_out):
                ws[y_off + i * n_out + j] = Y[r, j]
    else:
        for i in range(B):
            lb[i] = labels[order[start + i]]


@njit(cache=True)
def _forward(p, layout, codes, keep, inverted, slope, B, ws, offs, train, seed, step):
    """:func:`dlbasics.models._core.forward_kernel` on flat buffers (hand-written loops)."""
    L = layout.shape[0]
    h = offs[L, 0]
    for l in range(L):
        n_in = layout[l, 0]
        n_out = layout[l, 1]
        w_off = layout[l, 2]
        b_off = layout[l, 3]
        pk = keep[l]
        if pk < 1.0 and (train or not inverted):
            hd = offs[l, 2]
            if train:
                m = offs[l, 3]
                scale = 1.0 / pk if inverted else 1.0
                for i in range(B):
                    key = row_key(seed, step, l, i)
                    for k in range(n_in):
                        e = i * n_in + k
                        ws[m + e] = scale if unit_keep(key, k, pk) else 0.0
                        ws[hd + e] = ws[h + e] * ws[m + e]
            else:
                for e in range(B * n_in):
                    ws[hd + e] = ws[h + e] * pk
            h = hd
        z = offs[l, 0]
        a = offs[l, 1]
        for i in range(B):
            zr = z + i * n_out
            for j in range(n_out):
                ws[zr + j] = p[b_off + j]
            for k in range(n_in):
                xik = ws[h + i * n_in + k]
                wr = w_off + k * n_out
                for j in range(n_out):
                    ws[zr + j] += xik * p[wr + j]
        code = codes[l]
        if code == SOFTMAX:
            for i in range(B):
                softmax_row(ws, z + i * n_out, a + i * n_out, n_out)
        else:
            for e in range(B * n_out):
                ws[a + e] = act_scalar(code, ws[z + e], slope)
        h = a


@njit(cache=True)
def _backward(p, grad, layout, codes, keep, slope, B, ws, offs, lb, loss_code, fused, dense,
              eps):
    """:func:`dlbasics.models._core.backward_kernel_` on flat buffers; returns the batch-mean
    loss."""
    L = layout.shape[0]
    k_last = layout[L - 1, 1]
    pred = offs[L - 1, 0] if fused else offs[L - 1, 1]
    d = offs[L, 2]
    y = offs[L, 1]
    inv_n = 1.0 / B
    total = 0.0
    for i in range(B):
        r = i * k_last
        prow = ws[pred + r : pred + r + k_last]
        grow = ws[d + r : d + r + k_last]
        if dense:
            total = dense_row(loss_code, ws[y + r : y + r + k_last], prow, grow, True, eps,
                              inv_n, total)
        else:
            total = label_row(loss_code, lb[i], prow, grow, True, eps, inv_n, total)
    value = total * inv_n
    if not fused:
        zL = offs[L - 1, 0]
        aL = offs[L - 1, 1]
        code = codes[L - 1]
        if code == SOFTMAX:
            for i in range(B):
                r = i * k_last
                s = 0.0
                for j in range(k_last):
                    s += ws[d + r + j] * ws[aL + r + j]
                for j in range(k_last):
                    ws[d + r + j] = ws[aL + r + j] * (ws[d + r + j] - s)
        else:
            for e in range(B * k_last):
                ws[d + e] = ws[d + e] * dact_scalar(code, ws[zL + e], ws[aL + e], slope)
    cur = 2
    for l in range(L - 1, -1, -1):
        n_in = layout[l, 0]
        n_out = layout[l, 1]
        w_off = layout[l, 2]
        b_off = layout[l, 3]
        dl = offs[L, cur]
        if keep[l] < 1.0:
            h = offs[l, 2]
        elif l == 0:
            h = offs[L, 0]
        else:
            h = offs[l - 1, 1]
        for j in range(n_out):
            grad[b_off + j] = 0.0
        for i in range(B):
            for j in range(n_out):
                grad[b_off + j] += ws[dl + i * n_out + j]
        for e in range(n_in * n_out):
            grad[w_off + e] = 0.0
        for i in range(B):
            for k in range(n_in):
                xik = ws[h + i * n_in + k]
                wr = w_off + k * n_out
                for j in range(n_out):
                    grad[wr + j] += xik * ws[dl + i * n_out + j]
        if l == 0:
            break
        nxt = 5 - cur
        dh = offs[L, nxt]
        for i in range(B):
            for k in range(n_in):
                wr = w_off + k * n_out
                s = ws[dl + i * n_out] * p[wr]
                for j in range(1, n_out):
                    s += ws[dl + i * n_out + j] * p[wr + j]
                ws[dh + i * n_in + k] = s
        if keep[l] < 1.0:
            m = offs[l, 3]
            for e in range(B * n_in):
                ws[dh + e] *= ws[m + e]
        zp = offs[l - 1, 0]
        ap = offs[l - 1, 1]
        cp = codes[l - 1]
        for e in range(B * n_in):
            ws[dh + e] *= dact_scalar(cp, ws[zp + e], ws[ap + e], slope)
        cur = nxt
    return value


@njit(cache=True)
def network_epoch(p, grad, layout, codes, keep, inverted, slope, X, Y, labels, order, batch, ws,
                  offs, lb, loss_code, fused, dense, eps, seed, opt_code, hp, s1, s2, s3, t0,
                  out):
    """One epoch of one network: :func:`dlbasics.models._core.epoch_kernel` without BLAS, on 1-D
    (possibly strided) per-network arrays. Writes ``out[0..3]`` = loss sum weighted by batch
    rows, updates done, rows processed, 1.0 if a loss was non-finite."""
    n = order.shape[0]
    L = layout.shape[0]
    total = 0.0
    t = t0
    rows = 0
    out[3] = 0.0
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        B = stop - start
        _gather(X, Y, labels, order, start, B, ws, offs[L, 0], offs[L, 1], lb, dense)
        _forward(p, layout, codes, keep, inverted, slope, B, ws, offs, True, seed, t)
        value = _backward(p, grad, layout, codes, keep, slope, B, ws, offs, lb, loss_code, fused,
                          dense, eps)
        rows += B
        if not math.isfinite(value):
            total = value
            out[3] = 1.0
            break
        t += 1
        apply_update(opt_code, p, grad, s1, s2, s3, t, hp)
        total += value * B
    out[0] = total
    out[1] = t - t0
    out[2] = rows


@njit(inline="always", cache=True)
def _row(a, k):
    return a[k]


@njit(inline="always", cache=True)
def _col(a, k):
    return a[:, k]


@functools.cache
def _kernels(interleaved):
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()
    net = _col if interleaved else _row

    @cuda.jit
    def population(P, G, layout, codes, keep, inverted, slope, X, Y, labels, orders, batch, WS,
                   offs, LB, loss_code, fused, dense, eps, seeds, opt_codes, HP, S1, S2, S3, T0,
                   active, OUT):
        """One epoch of every active network ``k``, one thread per network."""
        P = A(P)
        G = A(G)
        layout = A(layout)
        codes = A(codes)
        keep = A(keep)
        X = A(X)
        Y = A(Y)
        labels = A(labels)
        orders = A(orders)
        WS = A(WS)
        offs = A(offs)
        LB = A(LB)
        seeds = A(seeds)
        opt_codes = A(opt_codes)
        HP = A(HP)
        S1 = A(S1)
        S2 = A(S2)
        S3 = A(S3)
        T0 = A(T0)
        active = A(active)
        OUT = A(OUT)
        for k in range(cuda.grid(1), seeds.shape[0], cuda.gridsize(1)):
            if active[k]:
                network_epoch(net(P, k), net(G, k), layout, codes, keep, inverted, slope, X, Y,
                              labels, net(orders, k), batch, net(WS, k), offs, net(LB, k),
                              loss_code, fused, dense, eps, seeds[k], opt_codes[k], net(HP, k),
                              net(S1, k), net(S2, k), net(S3, k), T0[k], net(OUT, k))

    return population


# ---------------------------------------------------------------------------------------------
# driver and public function
# ---------------------------------------------------------------------------------------------


def launch_population(args, interleaved):
    """Launch on device arrays; ``args`` are the 27 kernel arguments in order."""
    K = args[19].shape[0]  # seeds
    tpb = max(1, min(g.threads_per_block(), POPULATION_BLOCK))
    g.launch(_kernels(bool(interleaved)), g.blocks_for(K, tpb), tpb, *args)


def _per_network(name, a, K, width, dtype, interleaved, integer=False):
    """Check a per-network 2-D array: ``(K, width)`` (or ``(width, K)`` interleaved)."""
    a = int_array(name, a, ndim=2) if integer else float_array(name, a, ndim=2, dtype=dtype)
    want = (width, K) if interleaved else (K, width)
    if width is None:
        got_k = a.shape[1] if interleaved else a.shape[0]
        if got_k != K:
            raise ValueError(f"{name} must have one {'column' if interleaved else 'row'} per "
                             f"network ({K}), got shape {tuple(a.shape)}")
    else:
        _checks.shape(name, a, want)
    return a


def _vector(name, a, n, integer=False, dtype=None):
    """A 1-D host or device array of length ``n`` (integer, or of ``dtype``)."""
    if integer:
        a = int_array(name, a, ndim=1)
    else:
        if g.is_device_array(a):
            a = g.as_device(a)
        elif not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
        if a.ndim != 1:
            raise ValueError(f"{name} must have 1 dimension, got shape {tuple(a.shape)}")
        if dtype is not None and np.dtype(a.dtype) != np.dtype(dtype):
            raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {a.dtype}")
    _checks.shape(name, a, (n,))
    return a


def _check(P, G, layout, codes, keep, X, Y, labels, orders, batch, WS, offs, LB, seeds,
           opt_codes, HP, S1, S2, S3, T0, active, OUT, dense, interleaved):
    """Validate every shape the kernel relies on (host arrays also for values)."""
    for name, a in (("layout", layout), ("offs", offs)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a host numpy.ndarray (it is read on the host)")
    layout = int_array("layout", layout, ndim=2)
    offs = int_array("offs", offs, ndim=2)
    L = layout.shape[0]
    if L < 1 or layout.shape != (L, 4):
        raise ValueError(f"layout must have shape (n_layers, 4), got {layout.shape}")
    _checks.shape("offs", offs, (L + 1, 4))
    n_params = int((layout[:, 0] * layout[:, 1] + layout[:, 1]).sum())
    if int(layout[-1, 3] + layout[-1, 1]) != n_params or np.any(layout[1:, 0] != layout[:-1, 1]):
        raise ValueError("layout does not describe one flat parameter vector of chained layers")
    seeds = int_array("seeds", seeds, ndim=1)
    K = seeds.shape[0]
    if K == 0:
        raise ValueError("seeds must name at least one network")
    P = _per_network("P", P, K, n_params, None, interleaved)
    dtype = P.dtype
    G = _per_network("G", G, K, n_params, dtype, interleaved)
    X = float_array("X", X, ndim=2, dtype=dtype, finite=True)
    _checks.nonempty("X", X)
    n = X.shape[0]
    if X.shape[1] != layout[0, 0]:
        raise ValueError(f"X must have {layout[0, 0]} features, got shape {tuple(X.shape)}")
    n_out = int(layout[-1, 1])
    if dense:
        Y = float_array("Y", Y, ndim=2, dtype=dtype, finite=True)
        _checks.shape("Y", Y, (n, n_out))
        labels = int_array("labels", labels, ndim=1)
    else:
        Y = float_array("Y", Y, ndim=2, dtype=dtype)
        labels = _vector("labels", labels, n, integer=True)
        if isinstance(labels, np.ndarray) and (labels.min() < 0 or labels.max() >= n_out):
            raise ValueError(f"labels must lie in [0, {n_out})")
    batch = _checks.integer("batch", batch, low=1, high=n)
    orders = _per_network("orders", orders, K, n, None, interleaved, integer=True)
    if isinstance(orders, np.ndarray) and (orders.min() < 0 or orders.max() >= n):
        raise ValueError(f"orders must index samples in [0, {n})")
    widest = int(max(layout[:, 0].max(), layout[:, 1].max()))
    ws_size = int(offs.max()) + batch * widest
    WS = _per_network("WS", WS, K, None, dtype, interleaved)
    if WS.shape[0 if interleaved else 1] < ws_size:
        raise ValueError(f"WS must hold at least {ws_size} values per network (the workspace "
                         f"of dlbasics.models.mlp.Workspace for batch {batch})")
    LB = _per_network("LB", LB, K, batch, None, interleaved, integer=True)
    HP = _per_network("HP", HP, K, HP_SIZE, dtype, interleaved)
    slots = []
    for name, s in (("S1", S1), ("S2", S2), ("S3", S3)):
        s = _per_network(name, s, K, None, dtype, interleaved)
        if s.shape[0 if interleaved else 1] not in (0, n_params):
            raise ValueError(f"{name} must hold 0 or {n_params} values per network")
        slots.append(s)
    OUT = _per_network("OUT", OUT, K, 4, np.float64, interleaved)
    codes = _vector("codes", codes, L, integer=True)
    keep = _vector("keep", keep, L, dtype=np.float64)
    opt_codes = _vector("opt_codes", opt_codes, K, integer=True)
    T0 = _vector("T0", T0, K, integer=True)
    active = _vector("active", active, K, dtype=np.bool_)
    return (P, G, layout, codes, keep, X, Y, labels, orders, batch, WS, offs, LB, seeds,
            opt_codes, HP, slots, T0, active, OUT)


def gpu_population_epoch(P, G, layout, codes, keep, inverted, slope, X, Y, labels, orders, batch,
                         WS, offs, LB, loss_code, fused, dense_targets, eps, seeds, opt_codes, HP,
                         S1, S2, S3, T0, active, OUT, interleaved=False):
    """GPU :func:`dlbasics.models._core.population_epoch_kernel`: one epoch of K networks.

    Arguments are those of the CPU kernel (see :func:`dlbasics.models.population.train_population`
    for how they are built from an :class:`dlbasics.models.MLP` template); ``layout`` and ``offs``
    must be host arrays. Arrays updated in place: ``P``, ``G``, ``WS``, ``LB``, ``S1..S3``, ``OUT``.

    Parameters
    ----------
    interleaved : bool, default=False
        Device inputs only: the per-network arrays are given transposed (column ``k`` is
        network ``k``), the layout the kernel reads fastest. Host inputs are transposed
        internally whatever this says.

    Returns
    -------
    OUT : array of shape (K, 4) (``(4, K)`` when ``interleaved``)
        Per network: loss sum weighted by batch rows, updates done, rows processed, diverged.
    """
    dense_targets = bool(dense_targets)
    arrays = (P, G, X, Y, labels, orders, WS, LB, seeds, opt_codes, HP, S1, S2, S3, T0, active,
              OUT)
    interleaved = bool(interleaved) and any(g.is_device_array(a) for a in arrays)
    (P, G, layout, codes, keep, X, Y, labels, orders, batch, WS, offs, LB, seeds, opt_codes, HP,
     slots, T0, active, OUT) = _check(P, G, layout, codes, keep, X, Y, labels, orders, batch, WS,
                                      offs, LB, seeds, opt_codes, HP, S1, S2, S3, T0, active,
                                      OUT, dense_targets, interleaved)
    per_net = [P, G, orders, WS, LB, HP, *slots, OUT]
    call = Call(P, G, X, Y, labels, orders, WS, LB, seeds, opt_codes, HP, *slots, T0, active,
                OUT)
    g.require_cuda()
    if call.device:
        inter = interleaved
        dev = [call.inplace("P", P), call.inplace("G", G), call.input(orders),
               call.inplace("WS", WS), call.inplace("LB", LB), call.input(HP)]
        dev += [call.inplace(f"S{i + 1}", s) for i, s in enumerate(slots)]
        dev.append(call.inplace("OUT", OUT))
    else:
        inter = True
        dev = [g.to_device(np.ascontiguousarray(a.T)) for a in per_net]
    dP, dG, dorders, dWS, dLB, dHP, dS1, dS2, dS3, dOUT = dev
    args = (dP, dG, call.input(layout), call.input(codes), call.input(keep), bool(inverted),
            P.dtype.type(slope), call.input(X), call.input(Y), call.input(labels), dorders,
            int(batch), dWS, call.input(offs), dLB, int(loss_code), bool(fused), dense_targets,
            float(eps), call.input(seeds), call.input(opt_codes), dHP, dS1, dS2, dS3,
            call.input(T0), call.input(active), dOUT)
    launch_population(args, inter)
    if call.device:
        call.finish()
        return OUT
    for host, d in zip(per_net, dev, strict=True):
        if host is orders or host is HP:
            continue
        host[...] = g.copy_to_host(d).T
    return OUT
