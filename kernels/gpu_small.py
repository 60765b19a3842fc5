"""A whole training epoch of one MLP in one launch: every layer, every step.

For a small network (2-16-16-1 and the like) at small batches a step is a few thousand
multiply-adds: launching the step's ten-odd kernels costs far more than the arithmetic. Here one
block of threads runs the epoch's loop itself, step after step, the phases of a step separated
by ``cuda.syncthreads()``: gather the mini-batch (threads over its elements), per layer the
dropout mask (threads over inputs) and ``z = h W + b``, ``a = f(z)`` (threads over outputs),
the loss rows (threads over rows; thread 0 adds their losses in row order), per layer ``db``
and ``dW`` (threads over parameters, each summing over the rows in order) and ``dx`` with the
mask and the derivative of the previous activation (threads over inputs), then the optimizer
update (threads over parameters; Adam's bias corrections formed once per step by thread 0).
One launch per epoch, so the per-step launch count is ``1 / steps``.

Networks too large for one block (784-256-256-10, say) at batches up to :data:`GRID_MAX_BATCH`
run the same code on a cooperative grid (``grid=True``): thread indices and strides are the
grid's, the phases are separated by grid syncs, and the grid has as many blocks as a phase has
work for, at most as many as can be resident at once (a cooperative launch requires it). The
launch-bound regime of numba-cuda (several microseconds per launch and per array argument) is
then replaced by about a dozen grid syncs per step. Under the simulator, whose grid sync only
spans one block, the grid kernel runs with one block.

This is the parallel decomposition of the shared network step
(:func:`dlbasics.kernels.network.epoch`, which the CPU runs with BLAS off in its populations):
every element is computed by one thread with the step's operations, order and dtypes (the
gather, softmax, output-activation backward and loss rows are the step's own functions), except
that the batch loss is the row-order sum of per-row losses (for a loss with several terms per
row, that regroups float64 additions) and that ``dx`` is summed over outputs in order (the
step's CPU loop may reassociate it): results agree with the CPU up to that and a real GPU's
fused multiply-adds and math library.

float32 networks: products, gradients and updates are float32; the activation formulas run in
float64 and are rounded once (the branches of ``act_scalar``/``dact_scalar`` unify to float64 in
Numba; tanh itself is float32), and the losses and the softmax row sums are float64, as on the
CPU, kept on purpose for CPU parity.

The arguments are the step's records (:mod:`dlbasics.kernels.network`: flat buffers, the
:class:`dlbasics.models.mlp.Workspace` layout) as tuples of device arrays; the workspace lives in
global memory (a small network's fits in the L1 cache). :func:`path` says which kernel a
network and batch take (None: the per-layer kernels of :mod:`dlbasics.models._cuda`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import gpu_config as g
from .activations import SOFTMAX, act_scalar, dact_scalar
from .dropout import row_key, unit_keep
from .gpu_optimizers import adam_at, adam_step_scalars, update_at
from .losses import dense_row, label_row
from .network import gather_part, output_backward_row, region, softmax_row
from .optimizers import ADAM_CODE

__all__ = ["fits", "path", "phase_work", "launch_small_epoch", "SMALL_MAX_WIDTH",
           "SMALL_MAX_BATCH", "SMALL_MAX_PARAMS", "SMALL_THREADS", "GRID_MAX_BATCH"]

cuda = None  # numba.cuda, bound by _kernels() on first use (import-safe without numba-cuda)

#: Largest layer width, batch size and parameter count of the one-launch path.
SMALL_MAX_WIDTH = 64
SMALL_MAX_BATCH = 128
SMALL_MAX_PARAMS = 16384
#: Threads of its block (``THREADS_PER_BLOCK`` if smaller).
SMALL_THREADS = 256


#: Largest batch of the grid-wide one-launch path (larger ones launch per layer, with cuBLAS).
GRID_MAX_BATCH = 1024
#: False keeps networks that do not fit one block on the per-layer kernels.
GRID_ENABLED = True


def fits(sizes, batch):
    """True when a network of layer ``sizes`` trained at ``batch`` takes the one-block path."""
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return (max(sizes) <= SMALL_MAX_WIDTH and batch <= SMALL_MAX_BATCH
            and n_params <= SMALL_MAX_PARAMS)


def path(sizes, batch):
    """``"block"`` (one block), ``"grid"`` (a cooperative grid) or None (per-layer kernels)
    for a network of layer ``sizes`` trained at ``batch``."""
    if fits(sizes, batch):
        return "block"
    if GRID_ENABLED and batch <= GRID_MAX_BATCH:
        return "grid"
    return None


@functools.cache
def _kernels(dtype, grid):
    """The epoch kernel for arrays of ``dtype``: one block (``grid=False``, phases separated by
    ``syncthreads``) or a cooperative grid (``grid=True``, phases separated by grid syncs)."""
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()

    if grid:
        @cuda.jit(device=True)
        def barrier():
            cuda.cg.this_grid().sync()

        @cuda.jit(device=True)
        def first():
            return cuda.grid(1)

        @cuda.jit(device=True)
        def stride():
            return cuda.gridsize(1)
    else:
        @cuda.jit(device=True)
        def barrier():
            cuda.syncthreads()

        @cuda.jit(device=True)
        def first():
            return cuda.threadIdx.x

        @cuda.jit(device=True)
        def stride():
            return cuda.blockDim.x

    @cuda.jit
    def small_epoch(p, grad, net, data, order, batch, buf, opt, out, scratch):
        """One epoch of one network (see the module docstring); the records ``net``, ``data``,
        ``buf`` and ``opt`` are those of :mod:`dlbasics.kernels.network` (plain tuples; the
        BLAS and own-product thresholds of ``net`` are not used). ``scratch`` (float64, at least
        ``3 + batch``) holds the row losses, and passes the batch loss and Adam's step scalars
        from thread 0 to the others."""
        p = A(p)
        grad = A(grad)
        layout, codes, keep, inverted, slope, loss_code, fused, eps, seed, _, _, _, _ = A(net)
        X, Y, labels, dense = A(data)
        ws, offs, lb = A(buf)
        opt_code, hp, s1, s2, s3, t0 = A(opt)
        order = A(order)
        out = A(out)
        scratch = A(scratch)
        tid = first()
        T = stride()
        zero = ws.dtype.type(0)
        n = order.shape[0]
        L = layout.shape[0]
        n_params = p.shape[0]
        x_off = offs[L, 0]
        y_off = offs[L, 1]
        total = 0.0
        t = t0
        rows = 0
        bad = 0.0
        for start in range(0, n, batch):
            B = min(start + batch, n) - start
            # -- gather ---------------------------------------------------------------------
            gather_part((X, Y, labels, dense), order, start, B,
                        region(ws, x_off, B, X.shape[1]),
                        region(ws, y_off, B, Y.shape[1]) if dense else region(ws, x_off, 0, 0),
                        lb, tid, T)
            barrier()
            # -- forward --------------------------------------------------------------------
            h = x_off
            for l in range(L):
                n_in = layout[l, 0]
                n_out = layout[l, 1]
                w_off = layout[l, 2]
                b_off = layout[l, 3]
                pk = keep[l]
                if pk < 1.0:
                    hd = offs[l, 2]
                    mo = offs[l, 3]
                    scale = 1.0 / pk if inverted else 1.0
                    for e in range(tid, B * n_in, T):
                        i = e // n_in
                        key = np.uint64(row_key(seed, t, l, i))
                        ws[mo + e] = scale if unit_keep(key, e - i * n_in, pk) else 0.0
                        ws[hd + e] = ws[h + e] * ws[mo + e]
                    barrier()
                    h = hd
                z = offs[l, 0]
                a = offs[l, 1]
                code = codes[l]
                for e in range(tid, B * n_out, T):
                    i = e // n_out
                    j = e - i * n_out
                    acc = p[b_off + j]
                    for k in range(n_in):
                        acc += ws[h + i * n_in + k] * p[w_off + k * n_out + j]
                    ws[z + e] = acc
                    if code != SOFTMAX:
                        ws[a + e] = act_scalar(code, acc, slope)
                if code == SOFTMAX:
                    barrier()
                    for i in range(tid, B, T):
                        softmax_row(ws, z + i * n_out, a + i * n_out, n_out)
                barrier()
                h = a
            # -- loss: rows over threads, their losses added by thread 0 in row order ---------
            k_last = layout[L - 1, 1]
            pred = offs[L - 1, 0] if fused else offs[L - 1, 1]
            d = offs[L, 2]
            inv_n = 1.0 / B
            for i in range(tid, B, T):
                r = i * k_last
                prow = ws[pred + r : pred + r + k_last]
                grow = ws[d + r : d + r + k_last]
                if dense:
                    scratch[3 + i] = dense_row(loss_code, ws[y_off + r : y_off + r + k_last],
                                               prow, grow, True, eps, inv_n, 0.0)
                else:
                    scratch[3 + i] = label_row(loss_code, lb[i], prow, grow, True, eps, inv_n,
                                               0.0)
            barrier()
            if tid == 0:
                tot = 0.0
                for i in range(B):
                    tot += scratch[3 + i]
                scratch[0] = tot * inv_n
            barrier()
            if not fused:
                zL = offs[L - 1, 0]
                aL = offs[L - 1, 1]
                for i in range(tid, B, T):
                    r = i * k_last
                    output_backward_row(codes[L - 1], ws, zL + r, aL + r, d + r, k_last, slope)
                barrier()
            # -- backward -------------------------------------------------------------------
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
                    h = x_off
                else:
                    h = offs[l - 1, 1]
                for j in range(tid, n_out, T):
                    acc = zero
                    for i in range(B):
                        acc += ws[dl + i * n_out + j]
                    grad[b_off + j] = acc
                for e in range(tid, n_in * n_out, T):
                    k = e // n_out
                    j = e - k * n_out
                    acc = zero
                    for i in range(B):
                        acc += ws[h + i * n_in + k] * ws[dl + i * n_out + j]
                    grad[w_off + e] = acc
                if l > 0:
                    nxt = 5 - cur
                    dh = offs[L, nxt]
                    mo = offs[l, 3]
                    zp = offs[l - 1, 0]
                    ap = offs[l - 1, 1]
                    cp = codes[l - 1]
                    for e in range(tid, B * n_in, T):
                        i = e // n_in
                        wr = w_off + (e - i * n_in) * n_out
                        v = ws[dl + i * n_out] * p[wr]
                        for j in range(1, n_out):
                            v += ws[dl + i * n_out + j] * p[wr + j]
                        if keep[l] < 1.0:
                            v = v * ws[mo + e]
                        ws[dh + e] = v * dact_scalar(cp, ws[zp + e], ws[ap + e], slope)
                    cur = nxt
                barrier()
            # -- update -----------------------------------------------------------------------
            value = scratch[0]
            rows += B
            if not math.isfinite(value):
                total = value
                bad = 1.0
                break
            t += 1
            if opt_code == ADAM_CODE:
                if tid == 0:
                    step_size, inv_bc2 = adam_step_scalars(hp, t)
                    scratch[1] = step_size  # float64 holds the dtype's value exactly
                    scratch[2] = inv_bc2
                barrier()
                step_size = ws.dtype.type(scratch[1])
                inv_bc2 = ws.dtype.type(scratch[2])
                for i in range(tid, n_params, T):
                    adam_at(i, p, grad, s1, s2, s3, hp, step_size, inv_bc2)
            else:
                for i in range(tid, n_params, T):
                    update_at(opt_code, i, p, grad, s1, s2, s3, t, hp)
            total += value * B
            barrier()
        if tid == 0:
            out[0] = total
            out[1] = t - t0
            out[2] = rows
            out[3] = bad

    return small_epoch


def threads():
    """Block size of the one-launch kernel: ``SMALL_THREADS``, or ``THREADS_PER_BLOCK`` if
    smaller (the tests patch it small so every loop turns)."""
    return max(1, min(SMALL_THREADS, g.threads_per_block()))


_COOPERATIVE_LIMIT = {}  # (kernel id, threads) -> blocks a cooperative grid may have


def _grid_blocks(kernel, args, tpb, work):
    """Blocks of the grid-wide launch: enough for ``work`` items a phase, at most what can be
    resident at once (a cooperative launch needs every block resident); one block under the
    simulator (whose grid sync is a block sync) and in compile-only mode."""
    if g.simulator_enabled() or g._state["compile_only"] is not None:
        return 1
    key = (id(kernel), tpb)
    limit = _COOPERATIVE_LIMIT.get(key)
    if limit is None:
        argtypes = tuple(kernel.typeof_pyval(a) for a in args)
        limit = int(kernel.compile(argtypes).max_cooperative_grid_blocks(tpb))
        _COOPERATIVE_LIMIT[key] = limit
    return max(1, min(limit, -(-int(work) // tpb)))


def phase_work(sizes, batch):
    """The most items a phase of a step hands out (outputs, weights, inputs or parameters)."""
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    return max([n_params] + [batch * max(a, b) for a, b in layers]
               + [a * b for a, b in layers])


def launch_small_epoch(p, grad, net, data, order, batch, buf, opt, out, grid=False, work=0):
    """Launch one epoch of one network on device arrays (no validation: the caller,
    :class:`dlbasics.models._cuda.DeviceMLP`, builds every array from a checked model); one
    launch. The records ``net``, ``data``, ``buf`` and ``opt`` are those of
    :mod:`dlbasics.kernels.network` as plain tuples of device arrays and scalars (``net``'s
    ``slope`` in the parameters' dtype). ``out`` (device float64, 4) receives ``[loss sum
    weighted by rows, updates, rows, diverged]``. ``grid=True``: the cooperative-grid kernel,
    with blocks for ``work`` items per phase (:func:`phase_work`)."""
    kernel = _kernels(np.dtype(p.dtype).str, bool(grid))
    scratch = _SCRATCH.get("scratch")
    if scratch is None or scratch.shape[0] < 3 + int(batch):
        scratch = _SCRATCH["scratch"] = g.device_zeros(3 + max(int(batch), 128), np.float64)
    args = (p, grad, tuple(net), tuple(data), order, int(batch), tuple(buf), tuple(opt), out,
            scratch)
    tpb = threads()
    blocks = _grid_blocks(kernel, args, tpb, work) if grid else 1
    g.launch(kernel, blocks, tpb, *args)


_SCRATCH = {}
