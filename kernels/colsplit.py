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
  part's columns ``c``; every part needs all of ``h``, so the parts meet after each layer (the
  first layer reads the batch's rows of ``X`` where they lie: no copy, no meeting for one);
* the loss, by one part (the output layer is small), which gathers the batch's targets first:
  where the last part holds every output unit (:func:`output_merged`, e.g. 10 classes), the
  output layer's forward pass, the loss and the output layer's backward pass are one task of
  that part, else the loss is part 0's task;
* backward, layer ``l``: the part's columns of ``delta = dL/dz`` (for a hidden layer, the sum of
  the parts' partial products below, times ``f'``), its share of the next product down,
  ``P_p = delta[:, c] W[:, c]^T`` (a partial sum over its columns, into its own buffer), then
  plain SGD on its columns, ``W[:, c] -= lr h^T delta[:, c]``, summed in registers and added
  to the weights once (no ``dW`` is written). Plain SGD only: other rules would need their
  state's columns too, and applied row segment by row segment (a call each), Adam in a first
  version of this split took 100 against 73 ms an epoch of 784-256-256-10 at batch 8 on the
  whole batch's path (float32, 2048 rows), 38 against 39 ms at batch 32.

Nothing of the gradient crosses between the threads but the partial products (``B x n_in`` per
part) and the activations; the parts meet :func:`cols_phases` times a batch (``2 L + 1``: ``L``
layers forward, loss, ``L`` layers backward; ``2 L - 1`` with the output layer merged)
through an atomic counter of finished tasks, as the threads of
:func:`dlbasics.kernels.network.team_worker` do, in one call for the whole epoch. The
threads are Python threads (:mod:`dlbasics.models._threads`, the worker releases the GIL), so
that the worker is compiled once, not again in a ``prange``'s functions.

The products are our own, emitted as LLVM vector code, reading the packed weights where they
lie: batches through the register-blocked products of :mod:`dlbasics.kernels.smallgemm` (BLAS
copies its operands into blocks of its own at every call, which a batch of 32 rows does not
amortise: OpenBLAS ran the forward product of 32 rows with 784 x 128 at 71 GFLOP/s on one core
of the benchmark machine, ours at 108-117), single rows through
:mod:`dlbasics.kernels.rowvec`, whose first layer's update waits for the next row's forward
pass and is applied on its way through the weights (one pass over them instead of two; the
row's input and the part's columns of its delta are kept in the part's block,
:func:`packed_layout`). The part count is a constant, not the thread count: one
thread or two give the same bits. They are not the bits of the batch taken whole (each part sums
the back-propagated products over its own columns, then the parts' sums are added; every
multiply-add is one FMA): equal to rounding (``tests/test_colsplit.py``). No dropout and no L2
penalty (the callers check).

Measured on the 2-core benchmark machine (784-256-256-10, float32, plain SGD, us a step, the
fastest of 8 epochs, alternating with the code before in fresh processes; the machine's speed
varied by up to 1.5x between runs): one row 15.4-17.7 against 19.2-25.9 with BLAS-free loops
and no deferred update, 8 rows 70 against 87, 32 rows 257 against 340, 128 rows 896 against
1115 with the parts' products in BLAS. Rows from 8 to 128, and single rows through networks of
98,304 parameters or more (:meth:`dlbasics.models.backends.CpuBackend.col_splits`; the
measurements in :mod:`dlbasics.kernels.config`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .activations import SOFTMAX, act_flat, dact_mul_inplace
from .atomics import fetch_add, load_acquire
from .network import (
    BAD,
    DONE,
    FAILED,
    TOTAL,
    chunk_rows,
    column_block,
    gather_target,
    lend_buffers,
    lend_data,
    lend_net,
    lend_opt,
    loss_rows,
    output_backward,
    prefetch_rows,
    softmax_row,
    sum_rows,
    wait_until,
)
from .optimizers import HP_LR, sgd_kernel
from .probes import ELEMENTWISE, GATHER, LOSS, PRODUCTS, UPDATE, WAITING, lap, stamp
from .rowvec import FORWARD, UPDATE_FORWARD, row_forward, row_grad_x_update
from .smallgemm import block_forward, block_grad_x, block_update
from .views import borrow, lent, span

__all__ = ["COL_PARTS", "part_columns", "packed_layout", "cols_worker", "cols_extra",
           "cols_phases"]

#: Parts each layer's units are split into (a constant: the bits do not depend on the threads).
COL_PARTS = 2
#: What a task did with its part's deferred update (:func:`_task`).
_APPLIED, _DEFERRED = 1, 2


def packed_layout(sizes):
    """Where each part keeps its own columns during an epoch: ``(poffs, size)``, ``poffs[l, p]``
    = the offsets of part ``p``'s ``W`` (``n_in x nc`` row-major, rows ``nc`` apart, ``nc`` its
    columns of layer ``l``) and ``b`` in a buffer of ``size`` elements, for ``l < L``;
    ``poffs[L, p]`` = the offsets of the part's pending update of the first layer (one row's
    input, ``sizes[0]`` elements, and its columns of that row's ``delta``; see
    :func:`_backward_part`). A part's regions follow one another, each starting on a 64-byte
    line (for float32) and each part on a 4-kB page (of a buffer that starts on one), so that
    the parts share no line.

    Packed, a part's weights are one contiguous block. In place, a part's columns of a 256-wide
    float32 matrix are the first or second 512 bytes of every 1,024-byte row, which fixes one bit of
    every address: the part could use half of its core's L2 cache (on the 2-core benchmark machine 1
    MiB, 8 ways, indexed by address bits 6-16), and 784-256-256-10's 526 KiB a part did not fit in
    that 512 KiB half. Measured there (the three loops of a one-row step over the 1,040 rows of
    784-256 and 256-256, two threads of 128 columns each): 87 us a step with the columns in place,
    27 us packed; one thread doing both parts, 60 and 53 us.
    """
    L = len(sizes) - 1
    poffs = np.zeros((L + 1, COL_PARTS, 2), np.int64)
    at = 0
    for p in range(COL_PARTS):
        at = -(-at // 1024) * 1024
        for l in range(L + 1):
            n_in = sizes[0] if l == L else sizes[l]
            c0, c1 = part_columns(sizes[1 if l == L else l + 1], p)
            nc = c1 - c0
            poffs[l, p, 0] = at
            at += -(-(n_in if l == L else n_in * nc) // 16) * 16
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
def cols_phases(L, merged):
    """Phases of a batch: ``L`` forward, loss, ``L`` backward; with ``merged``
    (:func:`output_merged`) ``L - 1`` forward, the output layer (its forward pass, the loss and
    its backward pass), ``L - 1`` backward."""
    return 2 * L - 1 if merged else 2 * L + 1


@njit(inline="always", cache=True)
def output_merged(layout):
    """Whether the last part holds every unit of the output layer (:func:`part_columns`: a layer
    of up to 15 units, whose boundary ``n // 2`` rounds to 0, such as 10 classes). Then the output
    layer's forward pass, the loss and the output layer's backward pass run as one task of that
    part, without the two meetings between them and the output's trip to the other core and
    back."""
    L = layout.shape[0]
    n = layout[L - 1, 1]
    c0, c1 = part_columns(n, COL_PARTS - 1)
    return c0 == 0 and c1 == n


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


@njit(cache=True, fastmath={"contract"})
def apply_pending(P, wo, bo, nc, n_in, hp, dp, lr):
    """A part's deferred update alone (at the end of an epoch): ``b[j] -= lr d[j]``,
    ``W[k, j] -= (lr h[k]) d[j]`` with ``h = P[hp:hp + n_in]``, ``d = P[dp:dp + nc]``, each
    multiply-subtract contracted into one FMA, the bits of
    :func:`~dlbasics.kernels.rowvec.row_forward`'s update (``tests/test_rowvec.py``). Plain
    loops, not that intrinsic: called from the epoch's worker, its code would be optimised again
    there (0.4-0.9 s more of the first call's compile time)."""
    lr = P.dtype.type(lr)
    b = span(P, bo, nc)
    d = span(P, dp, nc)
    h = span(P, hp, n_in)
    for j in range(nc):
        b[j] = b[j] - lr * d[j]
    for k in range(n_in):
        ck = lr * h[k]
        w = span(P, wo + k * nc, nc)
        for j in range(nc):
            w[j] = w[j] - ck * d[j]


@njit(inline="always", cache=True)
def _defers(B, l):
    """Whether a part's update of layer ``l`` waits for the next batch's forward pass
    (:func:`_backward_part`): the first layer, one row."""
    return l == 0 and B == 1


@njit(cache=True)
def _forward_part(packed, poffs, net, data, order, start, buf, B, l, p, lr, pending):
    """Columns of part ``p`` of layer ``l``'s ``z`` and (not the output layer) ``a``, from the
    part's packed weights (:func:`packed_layout`) and the layer's input (for the first layer the
    rows ``order[start:start + B]`` of ``data.X``, read where they lie; the part asks for its
    share of the next batch's rows first, :func:`~dlbasics.kernels.network.prefetch_rows`): a
    batch by :func:`~dlbasics.kernels.smallgemm.block_forward`, one row by
    :func:`~dlbasics.kernels.rowvec.row_forward`, which first applies the part's deferred
    update where ``pending`` (layer 0). Returns whether it applied one."""
    layout, codes = lent(net, "layout"), lent(net, "codes")
    ws, offs = lent(buf, "ws"), lent(buf, "offs")
    L = layout.shape[0]
    n_in, n_out = layout[l, 0], layout[l, 1]
    t = stamp()
    if l == 0:
        lo, hi = chunk_rows(0, B, p, COL_PARTS)
        prefetch_rows(data, order, start + B + lo, start + B + hi)
        t = lap(t, GATHER)
    c0, c1 = part_columns(n_out, p)
    nc = c1 - c0
    if nc == 0:
        return False
    pwo, pbo = poffs[l, p, 0], poffs[l, p, 1]
    H, ho, hio = _layer_input(data, buf, l, order, start)
    zo, ao = offs[l, 0], offs[l, 1]
    applied = False
    if B == 1:
        applied = pending and l == 0  # only the first layer's update is ever deferred
        hr = ho if hio < 0 else order[start] * n_in
        if applied:  # constant modes: each call compiles its mode's code alone
            row_forward(UPDATE_FORWARD, packed, pwo, pbo, nc, n_in, H, hr, ws, zo + c0,
                        poffs[L, p, 0], poffs[L, p, 1], lr)
        else:
            row_forward(FORWARD, packed, pwo, pbo, nc, n_in, H, hr, ws, zo + c0,
                        poffs[L, p, 0], poffs[L, p, 1], lr)
    else:
        block_forward(B, n_in, nc, H, ho, n_in, order, hio, packed, pwo, pbo, ws, zo + c0,
                      n_out)
    t = lap(t, PRODUCTS)
    if l < L - 1:
        for i in range(B):
            act_flat(codes[l], span(ws, zo + i * n_out + c0, nc), span(ws, ao + i * n_out + c0, nc),
                     net.slope)
        lap(t, ELEMENTWISE)
    return applied


@njit(inline="always", cache=True)
def _layer_input(data, buf, l, order, start):
    """``(H, ho, hio)``: where layer ``l``'s input rows lie, as
    :func:`~dlbasics.kernels.smallgemm.block_forward` takes them: the first layer's in
    ``data.X`` (flattened) in the order ``order[start + i]`` (``hio = start``), the others' in
    the workspace (``hio = -1``)."""
    ws, offs = lent(buf, "ws"), lent(buf, "offs")
    if l == 0:
        X = lent(data, "X")
        return X.reshape(X.shape[0] * X.shape[1]), 0, start
    return ws, offs[l - 1, 1], -1


@njit(cache=True)
def _gather_targets(data, order, start, B, buf):
    """The targets of rows ``order[start:start + B]`` into the workspace (dense rows into its
    ``y`` region, labels into ``lbuf``): the loss's inputs. The first layer reads its input rows
    from ``data.X`` where they lie (:func:`_layer_input`)."""
    Y, labels = lent(data, "Y"), lent(data, "labels")
    ws, offs, lbuf = lent(buf, "ws"), lent(buf, "offs"), lent(buf, "lbuf")
    yo = offs[offs.shape[0] - 1, 1]
    for i in range(B):
        gather_target(Y, labels, order[start + i], i, ws, yo, lbuf, data.dense)


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
def _backward_part(packed, poffs, grad, net, data, order, start, buf, opt, B, l, p, base,
                   n_max):
    """Part ``p`` of layer ``l``'s backward pass and plain SGD update: its columns of ``delta``
    (for a hidden layer from the partial products of layer ``l + 1``), its partial product
    ``delta[:, c] W[:, c]^T`` for the layer below (with the weights before the update), its
    columns of ``db`` and the update of its columns. A batch: the partial product by
    :func:`~dlbasics.kernels.smallgemm.block_grad_x`, the weights' update ``W[:, c] -= lr h^T
    delta[:, c]`` by :func:`~dlbasics.kernels.smallgemm.block_update` (no ``dW`` is written:
    a part's weights and nothing else stay in its core's cache; ``db`` goes through ``grad``,
    where the whole step keeps it). One row: a hidden layer's partial product and update in
    one pass over the weights (:func:`~dlbasics.kernels.rowvec.row_grad_x_update`); the first
    layer's update is deferred: the row's input and the part's columns of ``delta`` are kept
    (``poffs[L, p]``) and the next row's forward pass applies the update on its way
    (:func:`~dlbasics.kernels.rowvec.row_forward`), or the end of the epoch does
    (:func:`cols_worker`). The part's weights are its packed ones (:func:`packed_layout`).
    Returns whether it left a deferred update."""
    layout, codes = lent(net, "layout"), lent(net, "codes")
    ws, offs = lent(buf, "ws"), lent(buf, "offs")
    lr = lent(opt, "hp")[HP_LR]
    L = layout.shape[0]
    n_in, n_out, bo = layout[l, 0], layout[l, 1], layout[l, 3]
    c0, c1 = part_columns(n_out, p)
    nc = c1 - c0
    if nc == 0:
        return False
    pwo, pbo = poffs[l, p, 0], poffs[l, p, 1]
    do = offs[L, 2 + (L - 1 - l) % 2]
    H, ho, hio = _layer_input(data, buf, l, order, start)
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
            dact_mul_inplace(codes[l], span(ws, zo + r, nc), span(ws, ao + r, nc), d, net.slope)
        t = lap(t, ELEMENTWISE)
    if _defers(B, l):
        hq, h = span(packed, poffs[L, p, 0], n_in), span(H, order[start] * n_in, n_in)
        for k in range(n_in):
            hq[k] = h[k]
        dq, d = span(packed, poffs[L, p, 1], nc), span(ws, do + c0, nc)
        for j in range(nc):
            dq[j] = d[j]
        lap(t, UPDATE)
        return True
    if B == 1:  # a hidden layer (the first defers)
        row_grad_x_update(packed, pwo, pbo, nc, n_in, ws, do + c0, ho,
                          _partial(base, B, n_max, l, p), lr)
        lap(t, PRODUCTS)
        return False
    if l > 0:
        block_grad_x(B, n_in, nc, ws, do + c0, n_out, packed, pwo, ws,
                     _partial(base, B, n_max, l, p), n_in)
        t = lap(t, PRODUCTS)
    db = span(grad, bo + c0, nc)
    sum_rows(db, ws, do + c0, B, n_out)
    t = lap(t, UPDATE)
    block_update(B, n_in, nc, H, ho, n_in, order, hio, ws, do + c0, n_out, packed, pwo, lr)
    t = lap(t, PRODUCTS)
    sgd_kernel(span(packed, pbo, nc), db, lr)
    lap(t, UPDATE)
    return False


@njit(inline="always", cache=True)
def _loss_task(net, data, order, start, buf, B, b, n_batches, counters, results):
    """The batch's targets gathered (:func:`_gather_targets`) and its loss (all rows, one task)
    added to ``results[TOTAL]`` times its rows; a non-finite one is stored there instead and
    stops the epoch at batch ``b`` (``counters[BAD]``: ``n_batches -> b``). Returns whether it
    was finite."""
    t = stamp()
    _gather_targets(data, order, start, B, buf)
    t = lap(t, GATHER)
    value = _loss(net, data, buf, B)
    lap(t, LOSS)
    if math.isfinite(value):
        results[TOTAL] += value * B
        return True
    results[TOTAL] = value
    fetch_add(counters, BAD, b - n_batches)
    return False


@njit(inline="always", cache=True)
def _task(k, packed, poffs, grad, net, data, order, batch, buf, opt, counters, results, base,
          n_max, pending):
    """Task ``k`` of the epoch: phase ``k // COL_PARTS`` (batch ``phase // per``, its step ``<
    per`` = :func:`cols_phases`), part ``k % COL_PARTS``, whose deferred update of the first
    layer is ``pending`` (:func:`_backward_part`). Returns :data:`_APPLIED` where the task
    applied it, plus :data:`_DEFERRED` where it left one."""
    layout = lent(net, "layout")
    L = layout.shape[0]
    merged = output_merged(layout)
    per = cols_phases(L, merged)
    phase = k // COL_PARTS
    p = k - phase * COL_PARTS
    b = phase // per
    s = phase - b * per
    if b >= load_acquire(counters, BAD):
        return 0
    n = order.shape[0]
    n_batches = (n + batch - 1) // batch
    start = b * batch
    stop = min(start + batch, n)
    B = stop - start
    lr = lent(opt, "hp")[HP_LR]
    # what the phase does: a forward layer, the loss, a backward layer (-1: none), each called
    # from one place (every call site of a compiled callee is optimised again in the worker)
    fwd, loss, bwd = -1, False, -1
    if s < L - 1 or (s == L - 1 and not merged):
        fwd = s
    elif s == L - 1:  # merged: the output layer, its loss and its backward pass, one part
        if p == COL_PARTS - 1:
            fwd, loss, bwd = L - 1, True, L - 1
    elif s == L and not merged:
        loss = p == 0
    else:
        bwd = L - 2 - (s - L) if merged else L - 1 - (s - L - 1)
    code = 0
    if fwd >= 0:
        if _forward_part(packed, poffs, net, data, order, start, buf, B, fwd, p, lr, pending):
            code = _APPLIED
    if loss and not _loss_task(net, data, order, start, buf, B, b, n_batches, counters,
                               results):
        bwd = -1  # a non-finite loss: no update
    if bwd >= 0:
        if _backward_part(packed, poffs, grad, net, data, order, start, buf, opt, B, bwd, p,
                          base, n_max):
            code += _DEFERRED
    return code


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
    ``poffs`` of :func:`packed_layout`) first, trains them there, applies an update still
    deferred (:func:`_backward_part`) and copies them back last (also after a diverged batch or
    a failed task: the parameters then hold the updates done, but after a failed task not a
    deferred one, which the task may or may not have applied). Records as plain
    tuples; ``counters`` and ``results`` as
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
    pending = 0  # bit p: part p has a deferred update
    for phase in range(n_batches * cols_phases(L, output_merged(layout))):
        t = stamp()
        wait_until(counters, DONE, phase * COL_PARTS)
        lap(t, WAITING)
        for p in range(first, last):
            if load_acquire(counters, FAILED) == 0:
                try:
                    r = _task(phase * COL_PARTS + p, packed, poffs, grad, net, data, order,
                              batch, buf, opt, counters, results, base, n_max,
                              (pending >> p) & 1 == 1)
                    if r & _APPLIED:
                        pending &= ~(1 << p)
                    if r & _DEFERRED:
                        pending |= 1 << p
                except Exception:  # any error: see the docstring
                    fetch_add(counters, FAILED, 1)
                    pending = 0  # whether the failed task applied its part's update is unknown
            fetch_add(counters, DONE, 1)
    lr = lent(opt, "hp")[HP_LR]
    for p in range(first, last):
        if (pending >> p) & 1:
            c0, c1 = part_columns(layout[0, 1], p)
            apply_pending(packed, poffs[0, p, 0], poffs[0, p, 1], c1 - c0, layout[0, 0],
                          poffs[L, p, 0], poffs[L, p, 1], lr)
        _pack(params, packed, layout, poffs, p, True)
