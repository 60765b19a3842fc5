r"""The network step with every layer's units shared out between threads (CPU).

A batch of a few rows through a wide network is mostly the three products of each layer with its
weights, and the weights do not fit one core's cache: 784-256-256-10 holds 1.08 MB (1.03 MiB) of
float32 parameters, and a core of the 2-core benchmark machine has 1 MiB of L2. Splitting the *rows*
of such a batch between two threads (:func:`dlbasics.kernels.network.split_epoch`) makes each thread
read all the weights and write a whole gradient, which the threads then add: at 32 rows it lost
(0.95x). Here each layer's *output units* are split instead, in :data:`COL_PARTS` contiguous parts,
one task each, and a part keeps its columns of ``W`` and ``b`` for the whole epoch (each thread runs
the same part in every phase: half of the weights per core, 526 KiB of 784-256-256-10, which stay in
its L2 from one batch to the next; a wider network's halves do not, and still gain). The thread
copies them into a block of their own first (:func:`packed_layout`, back into the parameters when
the epoch ends): in place, every row of a part's columns of a 256-wide matrix sits at the same
offset within 1 kB, so the part could use half of the L2's sets (512 KiB for its 526 KiB), and did
not fit.

The phases of a batch:

* forward, layer ``l``: ``z[:, c] = h W[:, c] + b[c]`` and ``a[:, c] = f(z[:, c])`` for the
  part's columns ``c``; every part needs all of ``h``, so the parts meet after each layer;
* the loss, by part 0 alone (the output layer is small);
* backward, layer ``l``: the part's columns of ``delta = dL/dz`` (for a hidden layer, the sum of
  the parts' partial products below, times ``f'``), its share of the next product down,
  ``P_p = delta[:, c] W[:, c]^T`` (a partial sum over its columns, into its own buffer), then
  plain SGD on its columns, fused into the gradient's product: ``W[:, c] += (-lr) h^T
  delta[:, c]`` in one BLAS call (no ``dW`` is written). Plain SGD only: other rules would need
  their state's columns too, and applied row segment by row segment (a call each), Adam in a
  first version of this split took 100 against 73 ms an epoch of 784-256-256-10 at batch 8 on
  the whole batch's path (float32, 2048 rows), 38 against 39 ms at batch 32.

Nothing of the gradient crosses between the threads but the partial products (``B x n_in`` per
part) and the activations; the parts meet ``2 L + 2`` times a batch (gather, ``L`` layers forward,
loss, ``L`` layers backward) through an atomic counter of finished tasks, as the threads of
:func:`dlbasics.kernels.network.team_worker` do, in one call for the whole epoch. The
threads are Python threads (:mod:`dlbasics.models._threads`, the worker releases the GIL), so
that the worker is compiled once, not again in a ``prange``'s functions.

Products of ``min_rows`` rows or more call BLAS (SciPy's, as ``np.dot`` in compiled code does,
through :func:`gemm`, which takes matrices at offsets into 1-D arrays with leading dimensions:
the packed columns, and the parts' columns of the activations where they lie; each thread's
BLAS on one thread); smaller ones run the shared step's loops on
the part's columns. The part count is a constant, not the thread count: one thread or two give the
same bits. They are not the bits of the batch taken whole (each part sums the back-propagated
products over its own columns, then the parts' sums are added; BLAS may block a product of other
shapes differently; BLAS may fuse the update's multiply and add): equal to rounding
(``tests/test_colsplit.py``). No dropout and no L2 penalty (the callers check).

Measured on the 2-core benchmark machine (784-256-256-10, float32, plain SGD, us a step, the better
of two alternating runs; the column split against the path the backend takes otherwise): one row
21.8 against 34.8 (whole, one thread), 8 rows 80.5 against 232 (whole), 32 rows 373 against 576 (row
split), 128 rows 1001 against 1200 (row split); measured apart from the speed report, whose runs of
the same code differ by up to 1.5x between passes. A single row gained nothing with the columns in
place (42 against 40 us a step at first, 77 against 35 us before they were packed). Rows from BLAS's
``min_rows`` on, up to 128, and single rows through networks of 98,304 parameters or more
(:meth:`dlbasics.models.backends.CpuBackend.col_splits`; the measurements in
:mod:`dlbasics.kernels.config`).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic
from numba.np.arrayobj import make_array
from numba.np.linalg import ensure_blas

from .activations import SOFTMAX, act_flat, dact_mul_flat
from .atomics import fetch_add, load_acquire
from .dense import use_blas
from .network import (
    BAD,
    DONE,
    FAILED,
    TOTAL,
    _fwd_loops,
    _grad_w_loops,
    _grad_x_loops,
    _sgd_row_update,
    chunk_rows,
    column_block,
    gather_row,
    lend_buffers,
    lend_data,
    lend_net,
    lend_opt,
    loss_rows,
    output_backward,
    prefetch_rows,
    softmax_row,
    wait_until,
)
from .optimizers import HP_LR, sgd_kernel
from .probes import ELEMENTWISE, GATHER, LOSS, PRODUCTS, UPDATE, WAITING, lap, stamp
from .views import borrow, lent, span

__all__ = ["COL_PARTS", "gemm", "part_columns", "packed_layout", "cols_worker", "cols_extra",
           "cols_phases"]

#: Parts each layer's units are split into (a constant: the bits do not depend on the threads).
COL_PARTS = 2


@intrinsic
def gemm(typingctx, trans_a, trans_b, M, N, K, alpha, A, a_off, lda, B, b_off, ldb, beta, C,
         c_off, ldc):
    """Row-major ``C = alpha op(A) op(B) + beta C`` by BLAS (``?gemm``), the matrices given as
    offsets into 1-D arrays and leading dimensions (row strides, in elements): ``op(A)`` is
    ``M x K``, stored as ``M x K`` rows of stride ``lda`` (``trans_a`` false) or as ``K x M``;
    likewise ``op(B)`` ``K x N`` and ``C`` ``M x N`` (stride ``ldc``). Column slices of a
    row-major matrix are thus taken where they lie. Float32 or float64, one dtype; nothing is
    checked (the callers pass validated layouts). SciPy's BLAS is loaded when this module is
    imported (:func:`numba.np.linalg.ensure_blas`): loaded lazily, at the first call of a
    cached caller, it added 0.07-0.13 s to the first epoch of a fresh process (importing
    ``scipy.linalg.cython_blas`` alone took 0.13 s on the benchmark machine)."""
    arrays = (A, B, C)
    for arr in arrays:
        if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
                and isinstance(arr.dtype, types.Float) and arr.dtype.bitwidth in (32, 64)):
            raise TypingError(f"gemm: expected 1-D contiguous float32 or float64 arrays, "
                              f"got {arr}")
    if len({arr.dtype for arr in arrays}) != 1:
        raise TypingError("gemm: the arrays must share one dtype")
    dtype = A.dtype
    sig = types.none(trans_a, trans_b, M, N, K, alpha, A, a_off, lda, B, b_off, ldb, beta, C,
                     c_off, ldc)

    def codegen(context, builder, sig, args):
        tys = sig.args
        char = ir.IntType(8)
        intp = context.get_value_type(types.intp)
        voidp = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(32), [char, char, char, intp, intp, intp, voidp, voidp,
                                                intp, voidp, intp, voidp, voidp, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")

        def i64(k):
            return context.cast(builder, args[k], tys[k], types.intp)

        def ptr(k, off):
            data = make_array(tys[k])(context, builder, args[k]).data
            return builder.bitcast(builder.gep(data, [i64(off)]), voidp)

        def flag(k):
            t = context.cast(builder, args[k], tys[k], types.boolean)
            return builder.select(t, ir.Constant(char, ord("t")), ir.Constant(char, ord("n")))

        def scalar(k):
            slot = cgutils.alloca_once(builder, context.get_value_type(dtype))
            builder.store(context.cast(builder, args[k], tys[k], dtype), slot)
            return builder.bitcast(slot, voidp)

        kind = ir.Constant(char, ord("s" if dtype.bitwidth == 32 else "d"))
        # Column-major BLAS sees a row-major matrix as its transpose: C^T = op(B)^T op(A)^T.
        res = builder.call(fn, (kind, flag(1), flag(0), i64(3), i64(2), i64(4), scalar(5),
                                ptr(9, 10), i64(11), ptr(6, 7), i64(8), scalar(12), ptr(13, 14),
                                i64(15)))
        with builder.if_then(builder.icmp_signed("!=", res, ir.Constant(res.type, 0)),
                             likely=False):
            context.call_conv.return_user_exc(builder, RuntimeError, ("gemm: BLAS call failed",))
        return context.get_dummy_value()

    return sig, codegen


ensure_blas()


def packed_layout(sizes):
    """Where each part keeps its own columns during an epoch: ``(poffs, size)``, ``poffs[l, p]``
    = the offsets of part ``p``'s ``W`` (``n_in x nc`` row-major, rows ``nc`` apart, ``nc`` its
    columns of layer ``l``) and ``b`` in a buffer of ``size`` elements. A part's layers follow
    one another, each matrix starting on a 64-byte line (for float32) and each part on a
    4-kB page (of a buffer that starts on one), so that the parts share no line.

    Packed, a part's weights are one contiguous block. In place, a part's columns of a 256-wide
    float32 matrix are the first or second 512 bytes of every 1,024-byte row, which fixes one bit of
    every address: the part could use half of its core's L2 cache (on the 2-core benchmark machine 1
    MiB, 8 ways, indexed by address bits 6-16), and 784-256-256-10's 526 KiB a part did not fit in
    that 512 KiB half. Measured there (the three loops of a one-row step over the 1,040 rows of
    784-256 and 256-256, two threads of 128 columns each): 87 us a step with the columns in place,
    27 us packed; one thread doing both parts, 60 and 53 us.
    """
    L = len(sizes) - 1
    poffs = np.zeros((L, COL_PARTS, 2), np.int64)
    at = 0
    for p in range(COL_PARTS):
        at = -(-at // 1024) * 1024
        for l in range(L):
            c0, c1 = part_columns(sizes[l + 1], p)
            nc = c1 - c0
            poffs[l, p, 0] = at
            at += -(-(sizes[l] * nc) // 16) * 16
            poffs[l, p, 1] = at
            at += -(-nc // 16) * 16
    return poffs, at


@njit(inline="always", cache=True)
def _pack(params, packed, layout, poffs, p, back):
    """Copy part ``p``'s columns of every layer from ``params`` into ``packed``
    (:func:`packed_layout`), or back (``back``)."""
    for l in range(layout.shape[0]):
        n_in, n_out, wo, bo = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        c0, c1 = part_columns(n_out, p)
        nc = c1 - c0
        for k in range(n_in + 1):  # the rows of W, then b
            a = span(params, wo + k * n_out + c0 if k < n_in else bo + c0, nc)
            b = span(packed, poffs[l, p, 0] + k * nc if k < n_in else poffs[l, p, 1], nc)
            if back:
                for j in range(nc):
                    a[j] = b[j]
            else:
                for j in range(nc):
                    b[j] = a[j]


def cols_extra(n_in_max, batch):
    """Elements the workspace needs beyond the step's own regions: two sets (layers alternate)
    of :data:`COL_PARTS` partial products of ``batch x n_in_max`` (``n_in_max`` the widest input
    of a layer but the first)."""
    return 2 * COL_PARTS * batch * n_in_max


@njit(inline="always", cache=True)
def cols_phases(L):
    """Phases of a batch: gather, ``L`` forward, loss, ``L`` backward."""
    return 2 * L + 2


@njit(inline="always", cache=True)
def part_columns(n, p):
    """Columns ``[c0, c1)`` of part ``p`` of a layer of ``n`` units: contiguous, in order, the
    boundaries rounded to multiples of 16 units (``n = 10``: all in the last part;
    :func:`dlbasics.kernels.network.column_block`). Where a matrix's rows start on 64-byte
    cache lines (a width of a multiple of 16 float32 units in an array that starts on one, as
    the parameters and workspaces do), the parts then write no line in common; other widths
    share a line per row at the boundary (slower, never wrong)."""
    return column_block(n, p, COL_PARTS)


@njit(inline="always", cache=True)
def _partial(base, B, n_max, layer, p):
    """Offset of part ``p``'s partial product for the input of ``layer`` (``B`` rows of that
    layer's ``n_in``, in a region of ``B x n_max``; layers alternate between two sets)."""
    return base + ((layer % 2) * COL_PARTS + p) * B * n_max


@njit(cache=True)
def _forward_part(packed, poffs, net, buf, B, l, p):
    """Columns of part ``p`` of layer ``l``'s ``z`` and (not the output layer) ``a``, from the
    part's packed weights (:func:`packed_layout`)."""
    layout, codes = lent(net, "layout"), lent(net, "codes")
    ws, offs = lent(buf, "ws"), lent(buf, "offs")
    L = layout.shape[0]
    n_in, n_out = layout[l, 0], layout[l, 1]
    c0, c1 = part_columns(n_out, p)
    nc = c1 - c0
    if nc == 0:
        return
    pwo, pbo = poffs[l, p, 0], poffs[l, p, 1]
    ho = offs[L, 0] if l == 0 else offs[l - 1, 1]
    zo, ao = offs[l, 0], offs[l, 1]
    t = stamp()
    if use_blas(B, n_in, n_out, net.min_rows, net.min_work):
        gemm(False, False, B, nc, n_in, 1.0, ws, ho, n_in, packed, pwo, nc, 0.0, ws, zo + c0,
             n_out)
        t = lap(t, PRODUCTS)
        b = span(packed, pbo, nc)
        for i in range(B):
            z = span(ws, zo + i * n_out + c0, nc)
            for j in range(nc):
                z[j] += b[j]
        t = lap(t, ELEMENTWISE)
    else:
        _fwd_loops(packed, pwo, pbo, nc, n_in, n_out, ws, ho, zo, B, c0, c1)
        t = lap(t, PRODUCTS)
    if l < L - 1:
        for i in range(B):
            act_flat(codes[l], span(ws, zo + i * n_out + c0, nc), span(ws, ao + i * n_out + c0, nc),
                     net.slope)
        lap(t, ELEMENTWISE)


@njit(cache=True)
def _loss(net, data, buf, B):
    """The batch's mean loss and ``dL/dz`` of the output layer (all rows, one task): the output
    activation first where the loss is not fused, as the shared step's forward and backward do."""
    layout, codes = lent(net, "layout"), lent(net, "codes")
    ws, offs, lbuf = lent(buf, "ws"), lent(buf, "offs"), lent(buf, "lbuf")
    L = layout.shape[0]
    n = layout[L - 1, 1]
    zL, aL, dL, yo = offs[L - 1, 0], offs[L - 1, 1], offs[L, 2], offs[L, 1]
    code = codes[L - 1]
    if not net.fused:
        if code == SOFTMAX:
            for i in range(B):
                softmax_row(ws, zL + i * n, aL + i * n, n)
        else:
            act_flat(code, span(ws, zL, B * n), span(ws, aL, B * n), net.slope)
    value = loss_rows(net.loss_code, ws, zL if net.fused else aL, yo, dL, lbuf, B, n, data.dense,
                      net.eps)
    if not net.fused:
        output_backward(code, ws, zL, aL, dL, B, n, net.slope)
    return value


@njit(cache=True)
def _backward_part(packed, poffs, grad, net, buf, opt, B, l, p, base, n_max):
    """Part ``p`` of layer ``l``'s backward pass and plain SGD update: its columns of ``delta``
    (for a hidden layer from the partial products of layer ``l + 1``), its partial product
    ``delta[:, c] W[:, c]^T`` for the layer below (with the weights before the update), its
    columns of ``db`` and the update of its columns. With BLAS the weights' update is the product
    itself, ``W[:, c] += (-lr) h^T delta[:, c]`` (no ``dW`` is written: a part's weights and
    nothing else stay in its core's cache); one row updates as the shared step's fused SGD
    does; other small batches write ``dW`` (into ``grad``, where the whole step would) and apply
    :func:`~dlbasics.kernels.optimizers.sgd_kernel` row by row. The part's weights are its
    packed ones (:func:`packed_layout`)."""
    layout, codes = lent(net, "layout"), lent(net, "codes")
    ws, offs = lent(buf, "ws"), lent(buf, "offs")
    lr = lent(opt, "hp")[HP_LR]
    L = layout.shape[0]
    n_in, n_out, wo, bo = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
    c0, c1 = part_columns(n_out, p)
    nc = c1 - c0
    if nc == 0:
        return
    pwo, pbo = poffs[l, p, 0], poffs[l, p, 1]
    do = offs[L, 2 + (L - 1 - l) % 2]
    ho = offs[L, 0] if l == 0 else offs[l - 1, 1]
    t = stamp()
    if l < L - 1:
        zo, ao = offs[l, 0], offs[l, 1]
        for i in range(B):
            r = i * n_out + c0
            d = span(ws, do + r, nc)
            first = True
            for q in range(COL_PARTS):
                q0, q1 = part_columns(layout[l + 1, 1], q)
                if q1 == q0:  # a part without units above has no partial product
                    continue
                s = span(ws, _partial(base, B, n_max, l + 1, q) + r, nc)
                if first:
                    for j in range(nc):
                        d[j] = s[j]
                else:
                    for j in range(nc):
                        d[j] += s[j]
                first = False
            dact_mul_flat(codes[l], span(ws, zo + r, nc), span(ws, ao + r, nc), d, d, net.slope)
        t = lap(t, ELEMENTWISE)
    blas = use_blas(B, n_in, n_out, net.min_rows, net.min_work)
    if l > 0:
        xo = _partial(base, B, n_max, l, p)
        if blas:
            gemm(False, True, B, n_in, nc, 1.0, ws, do + c0, n_out, packed, pwo, nc, 0.0, ws, xo,
                 n_in)
        else:
            _grad_x_loops(ws, do, packed, pwo, nc, n_in, n_out, xo, B, c0, c1)
        t = lap(t, PRODUCTS)
    if blas:
        db = span(grad, bo + c0, nc)
        for i in range(B):
            d = span(ws, do + i * n_out + c0, nc)
            if i == 0:
                for j in range(nc):
                    db[j] = d[j]
            else:
                for j in range(nc):
                    db[j] += d[j]
        t = lap(t, UPDATE)
        gemm(True, False, n_in, nc, B, -lr, ws, ho, n_in, ws, do + c0, n_out, 1.0, packed, pwo,
             nc)
        t = lap(t, PRODUCTS)
        sgd_kernel(span(packed, pbo, nc), db, lr)
        lap(t, UPDATE)
    elif B == 1:
        _sgd_row_update(ws, ho, do, packed, pwo, pbo, nc, n_in, n_out, lr, c0, c1)
        lap(t, PRODUCTS)
    else:
        _grad_w_loops(ws, ho, do, grad, wo + c0, bo + c0, n_out, n_in, n_out, B, c0, c1)
        t = lap(t, PRODUCTS)
        for k in range(n_in + 1):  # the rows of W, then b
            lo = wo + k * n_out + c0 if k < n_in else bo + c0
            sgd_kernel(span(packed, pwo + k * nc if k < n_in else pbo, nc), span(grad, lo, nc),
                       lr)
        lap(t, UPDATE)


@njit(inline="always", cache=True)
def _task(k, packed, poffs, grad, net, data, order, batch, buf, opt, counters, results, base,
          n_max):
    """Task ``k`` of the epoch: phase ``k // COL_PARTS`` (batch ``phase // (2 L + 2)``, its
    step :func:`cols_phases`), part ``k % COL_PARTS``."""
    L = net.layout.shape[0]
    per = cols_phases(L)
    phase = k // COL_PARTS
    p = k - phase * COL_PARTS
    b = phase // per
    s = phase - b * per
    if b >= load_acquire(counters, BAD):
        return
    n = order.shape[0]
    start = b * batch
    stop = min(start + batch, n)
    B = stop - start
    t = stamp()
    if s == 0:  # gather: the part's rows
        ws, offs, lbuf = lent(buf, "ws"), lent(buf, "offs"), lent(buf, "lbuf")
        X, Y, labels = lent(data, "X"), lent(data, "Y"), lent(data, "labels")
        lo, hi = chunk_rows(0, B, p, COL_PARTS)
        prefetch_rows(data, order, stop + lo, stop + hi)
        for i in range(lo, hi):
            gather_row(X, Y, labels, order[start + i], i, ws, offs[L, 0], offs[L, 1], lbuf,
                       data.dense)
        lap(t, GATHER)
    elif s <= L:
        _forward_part(packed, poffs, net, buf, B, s - 1, p)
    elif s == L + 1:
        if p == 0:
            value = _loss(net, data, buf, B)
            lap(t, LOSS)
            results[2] = value
            if not math.isfinite(value):
                results[TOTAL] = value
                n_batches = (n + batch - 1) // batch
                fetch_add(counters, BAD, b - n_batches)  # BAD: n_batches -> b
    else:
        l = L - 1 - (s - L - 2)
        _backward_part(packed, poffs, grad, net, buf, opt, B, l, p, base, n_max)
        if l == 0 and p == 0:
            results[TOTAL] += results[2] * B


@njit(cache=True, nogil=True)
def cols_worker(first, last, params, grad, net, data, order, batch, buf, opt, counters, results,
                base, n_max, packed, poffs):
    """One thread of the column-split epoch: parts ``first`` to ``last - 1`` of every phase (the
    block of :func:`dlbasics.models._threads.run_blocks`; a thread keeps its parts, so that
    their weights stay in its core's cache), each after every task of the phases before it
    (``counters[DONE]``, :func:`dlbasics.kernels.network.wait_until`). One thread alone runs
    every part in turn. A task that raises is counted in ``counters[FAILED]`` and no task runs
    after it (its error is lost: :func:`dlbasics.kernels.network.team_checks` raises the step's
    own errors before the threads start). ``buf``'s workspace holds the partial products from
    ``base`` (:func:`cols_extra` elements, ``n_max`` the widest input of a layer but the first).
    The thread copies its parts' columns of the parameters into ``packed`` (at the offsets
    ``poffs`` of :func:`packed_layout`) first, trains them there, and copies them back last
    (also after a failed task: the parameters then hold the updates done). Records as plain
    tuples; ``counters`` and ``results`` (3 slots) as
    :func:`dlbasics.models._core.cols_epoch_kernel` makes them."""
    params, grad, order = borrow(params), borrow(grad), borrow(order)
    counters, results = borrow(counters), borrow(results)
    net, data, buf, opt = lend_net(net), lend_data(data), lend_buffers(buf), lend_opt(opt)
    packed, poffs = borrow(packed), borrow(poffs)
    layout = lent(net, "layout")
    L = layout.shape[0]
    for p in range(first, last):
        _pack(params, packed, layout, poffs, p, False)
    n_batches = (order.shape[0] + batch - 1) // batch
    for phase in range(n_batches * cols_phases(L)):
        t = stamp()
        wait_until(counters, DONE, phase * COL_PARTS)
        lap(t, WAITING)
        for p in range(first, last):
            if load_acquire(counters, FAILED) == 0:
                try:
                    _task(phase * COL_PARTS + p, packed, poffs, grad, net, data, order, batch,
                          buf, opt, counters, results, base, n_max)
                except Exception:  # any error: see the docstring
                    fetch_add(counters, FAILED, 1)
            fetch_add(counters, DONE, 1)
    for p in range(first, last):
        _pack(params, packed, layout, poffs, p, True)
