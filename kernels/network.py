"""The network step, written once: gather, forward with dropout, loss, backward, update, epoch.

Every serial training path of an MLP runs the functions of this module: the CPU backend's
epoch and batch gradient (:mod:`dlbasics.models._core`), each network of a CPU population
(``prange`` over :func:`member_epoch`) and each thread of the GPU population kernel
(:mod:`dlbasics.kernels.gpu_population`, which calls :func:`member_epoch` from a ``cuda.jit``
kernel). They are ordinary ``@njit`` functions on flat buffers: Numba compiles them for the CPU,
and numba-cuda compiles the same source as device functions, the way the scalar activations are
shared.

One thing differs between the targets: the products of a layer. On the CPU a product of at
least ``min_rows`` rows and ``min_work`` multiply-adds goes to BLAS (``np.dot`` through
:mod:`dlbasics.kernels.dense`); a GPU thread has no BLAS. That choice sits in four functions
resolved per target at compile time (``numba.extending.overload`` with ``target="cpu"`` and
``target="cuda"``): :func:`blas_ok` (the thresholds; on the GPU, and on the CPU for
non-contiguous buffers, the constant ``False``), :func:`blas_forward`, :func:`blas_grad_input`
and :func:`blas_grad_weights`; on the CPU the last three run our register-blocked products
(:mod:`dlbasics.kernels.smallgemm`) instead of BLAS where :func:`own_products` says so. The
training step's class-major output layer (:func:`class_major`, see :func:`forward`) adds four
more: :func:`class_major_forward`, :func:`class_major_grad_input`,
:func:`class_major_grad_weights` and :func:`class_major_loss` (no-ops on the GPU, where
:func:`class_major` is constant ``False``). Everything else, the hand-written loops included,
is one source.

The other parallel decompositions of the same step keep their own loops and are tested against
this one: the lane layout of :mod:`dlbasics.models._lanes` (K networks as the innermost axis of
every array, a different memory layout), the one-launch GPU epoch of
:mod:`dlbasics.kernels.gpu_small` (threads over the elements of each phase; it shares the row
functions :func:`gather_part`, :func:`softmax_row`, :func:`output_backward_row` and the loss
rows) and the per-layer GPU kernels of :mod:`dlbasics.models._cuda` (the GPU's counterpart of
the BLAS route; they share :func:`gather_part` and :func:`row_hits`). The NumPy backend
(:mod:`dlbasics.models._numpy`) is the plain-NumPy baseline.

Buffers. Layer table ``layout`` (int64, shape ``(L, 4)``): ``n_in, n_out, w_off, b_off`` of each
layer, ``W`` being ``params[w_off : w_off + n_in * n_out]`` viewed as ``(n_in, n_out)`` and ``b``
being ``params[b_off : b_off + n_out]``. Workspace offsets ``offs`` (int64, shape ``(L + 1, 4)``):
for layer ``l`` the starts of its ``z``, ``a``, dropped-input ``h`` and ``mask`` regions (``-1``
when the layer has no dropout); row ``L`` holds the starts of the gathered inputs ``x``, gathered
targets ``y`` and the two ping-pong delta buffers (see :class:`dlbasics.models.mlp.Workspace`).
Every region is sized for the largest batch; a smaller batch uses the first ``B * width``
elements. Nothing here allocates.

Records. What travels together travels as one named tuple, so that no function takes more than
about ten parameters and a new field is added in one place:

* :class:`Net`: the network description (``layout``, activation ``codes``, ``keep``
  probabilities, the ``inverted`` dropout convention, leaky ``slope``, ``loss_code``, ``fused``
  loss, probability clip ``eps``, dropout ``seed``) and the BLAS thresholds of its products
  (``min_rows``, ``min_work``, see :func:`dlbasics.kernels.dense.use_blas`; :data:`NO_BLAS`
  keeps every product in the loops) and ``own_rows``, ``own_work``: a product that BLAS would
  take, of fewer than ``own_rows`` rows through a layer of at least ``own_work`` weights, runs
  through the register-blocked products of :mod:`dlbasics.kernels.smallgemm` instead (CPU;
  :func:`own_products`);
* :class:`Data`: ``X``, dense targets ``Y``, integer ``labels`` and which of the two is used
  (``dense``);
* :class:`Buffers`: the workspace ``ws``, its offset table ``offs`` and the label buffer ``lbuf``;
* :class:`Opt`: the optimizer's rule ``code``, hyper-parameters ``hp``, state slots ``s1..s3``
  and update ``count`` before the call (see :func:`dlbasics.kernels.optimizers.apply_update`);
* :class:`Split`: the buffers of a batch split into row chunks (below).

Callers pass them as plain tuples in the field order (Numba's dispatcher types a plain tuple in
C, about 0.6 us for five fields, a named one through Python, about 1.7 us); each entry point
turns them into named tuples whose arrays are borrowed (:func:`lend_net` and friends), once.
The inner functions read array fields with :func:`~dlbasics.kernels.views.lent`, not as
attributes: an array read as an attribute of a tuple is reference-counted again, which cost
5-10% of a 2-16-16-1 step at batch 1.

Two threads on one batch. :func:`split_epoch` and :func:`split_gradient` split each batch of
at least ``Split.min_rows`` rows into ``C`` contiguous row chunks (``prange``, one thread each
in a caller compiled with ``parallel=True``): each chunk runs :func:`batch_gradient` on its
own workspace and gradient row, the chunk gradients are combined as ``sum_c (B_c / B) G[c]``
(:func:`combine_chunks`) and the update is applied in as many parameter parts
(:func:`update_part`), all in chunk order, so the bits depend on ``C``, never on the thread
count. The epoch combines, adds the L2 penalty and updates each part in one task
(:func:`combine_update_part`), and its threads stay in one parallel region for the whole
epoch, meeting between phases through atomic counters (:func:`split_epoch`,
:func:`team_worker`). On the 2-core benchmark machine a 20-100-4 batch of 200 rows (the
scikit-learn drop-in's default) takes 27 us split against 46 us whole (one chunk's work alone:
23 us), and 2-16-16-1 trains 1.3x faster split from 64 rows, 1.5x from 128; at 32 rows the
split gains little or loses (2-16-16-1 1.05x, 784-256-256-10 0.95x), so batches split from 64
rows (:data:`dlbasics.kernels.config.SPLIT_MIN_ROWS`, ``SPLIT_MIN_WORK``).

Two threads on a narrow batch of a wide network: :mod:`dlbasics.kernels.colsplit` splits each
layer's *units* between two threads instead (plain SGD, 8 to 128 rows, 32k parameters or more
and 1.5M rows x parameters, and single rows through 98k parameters or more), each part's
columns packed in a block of its own and trained by products of its own
(:mod:`dlbasics.kernels.smallgemm`, :mod:`dlbasics.kernels.rowvec`).

Compile time. Numba optimises each compiled function together with the code of its compiled
callees, so every level of calls optimises the levels below it again. :func:`epoch` and
:func:`batch_gradient` are therefore inlined into their callers (``inline="always"``): with an
empty cache, the first training call of 784-256-256-10 at batch 32 took 19.8-19.9 s of CPU time
instead of 21.6-22.1 s. Inlining :func:`forward` and :func:`backward` too made it slower
(24.8 s). A ``prange`` adds two such levels (the parallel loop's function and the function
holding the loop), and its body types the loop index as uint64 where a serial caller's is int64:
an index passed on to a compiled function is cast to ``np.intp`` (:func:`chunk_losses`), or that
function is compiled twice (chunk_gradient: 13 s). The lane layout's population epoch runs on
Python threads instead (:mod:`dlbasics.models._threads`). Inlining has its own cost: Numba
copies an inlined function's IR at every call site, at a cost that grows with the callee's
branches and variables, so the activations' loop for one activation inlines that
activation's formula alone (``kernels/activations.py``), and the step multiplies by the
activations' derivative in place only (:func:`dlbasics.kernels.activations.dact_mul_inplace`).
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit, prange, types
from numba.extending import overload
from numba.np.linalg import ensure_blas

from . import losses
from .activations import N_CODES as N_ACT_CODES
from .activations import SOFTMAX, act_flat, dact_mul_inplace, softmax_vec, softmax_vjp
from .atomics import fetch_add, load_acquire, spin_pause, yield_cpu
from .dense import grad_input_kernel, grad_weights_kernel, matmul_bias_kernel, use_blas
from .dropout import row_key, unit_keep
from .losses import dense_row, label_row
from .optimizers import HP_LR, SGD_CODE, apply_update
from .optimizers import N_CODES as N_OPT_CODES
from .probes import ELEMENTWISE, GATHER, LOSS, PRODUCTS, UPDATE, WAITING, lap, stamp
from .smallgemm import block_forward_grouped, block_grad_w, block_grad_x
from .vecmath import exp as vexp
from .views import borrow, grid, lent, prefetch, prefetch_write, row, span

# SciPy's BLAS, which ``np.dot`` calls in compiled code, loaded when this module is imported:
# loaded lazily, at the first call of a cached caller, it added 0.07-0.13 s to the first epoch
# of a fresh process (importing ``scipy.linalg.cython_blas`` alone took 0.13 s on the benchmark
# machine).
ensure_blas()

__all__ = ["Net", "Data", "Buffers", "Opt", "NO_BLAS", "lend_net", "lend_data", "lend_buffers",
           "lend_opt", "reseed", "gather", "forward", "backward", "batch_gradient", "epoch",
           "member_epoch", "l2_penalty", "loss_rows", "output_backward", "gather_row",
           "gather_part", "region", "softmax_row", "output_backward_row", "row_hits"]

#: The network description (see the module docstring).
Net = namedtuple("Net", ["layout", "codes", "keep", "inverted", "slope", "loss_code", "fused",
                         "eps", "seed", "min_rows", "min_work", "own_rows", "own_work"])
#: Training or evaluation data.
Data = namedtuple("Data", ["X", "Y", "labels", "dense"])
#: A workspace (see :class:`dlbasics.models.mlp.Workspace`).
Buffers = namedtuple("Buffers", ["ws", "offs", "lbuf"])
#: An optimizer: rule code, hyper-parameters, state slots and update count.
Opt = namedtuple("Opt", ["code", "hp", "s1", "s2", "s3", "count"])
#: A batch split into row chunks, one thread each (:func:`split_gradient`): per-chunk
#: gradients ``G`` (shape ``(C, n_params)``), workspaces ``WS`` (``(C, size)``, sharing the
#: offset table ``offs``), label buffers ``LB``, the chunks' mean losses ``vals`` (``C``) and
#: the fewest rows a batch must have to be split (``min_rows``; smaller ones run whole on
#: workspace 0).
Split = namedtuple("Split", ["G", "WS", "offs", "LB", "vals", "min_rows"])

#: BLAS thresholds that keep every product in the hand-written loops.
NO_BLAS = 1 << 62


# ---------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def lend_net(n):
    """The :class:`Net` of record ``n`` (a plain tuple or a ``Net``) with borrowed arrays."""
    n = Net(*n)
    return Net(lent(n, "layout"), lent(n, "codes"), lent(n, "keep"), n.inverted, n.slope,
               n.loss_code, n.fused, n.eps, n.seed, n.min_rows, n.min_work, n.own_rows, n.own_work)


@njit(cache=True)
def reseed(n, seed, min_rows, min_work):
    """The :class:`Net` ``n`` with dropout seed ``seed`` and BLAS thresholds
    ``min_rows``/``min_work`` (``own_rows`` and ``own_work`` kept)."""
    return Net(n.layout, n.codes, n.keep, n.inverted, n.slope, n.loss_code, n.fused, n.eps, seed,
               min_rows, min_work, n.own_rows, n.own_work)


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
def lend_split(s):
    """The :class:`Split` of record ``s`` with borrowed arrays."""
    s = Split(*s)
    return Split(lent(s, "G"), lent(s, "WS"), lent(s, "offs"), lent(s, "LB"), lent(s, "vals"),
                 s.min_rows)


@njit(cache=True)
def lend_opt(o):
    """The :class:`Opt` of record ``o`` with borrowed arrays."""
    o = Opt(*o)
    return Opt(o.code, lent(o, "hp"), lent(o, "s1"), lent(o, "s2"), lent(o, "s3"), o.count)


# ---------------------------------------------------------------------------------------------
# rows shared with the parallel decompositions (gpu_small, the per-layer GPU kernels)
# ---------------------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def gather_row(X, Y, labels, r, i, ws, xo, yo, lbuf, dense):
    """Row ``r`` of ``X`` (and of ``Y`` or ``labels``) into row ``i`` of the workspace's ``x``
    (and ``y`` or ``lbuf``) regions, starting at ``xo`` and ``yo``."""
    n_in = X.shape[1]
    x = span(ws, xo + i * n_in, n_in)
    for k in range(n_in):
        x[k] = X[r, k]
    gather_target(Y, labels, r, i, ws, yo, lbuf, dense)


@njit(inline="always", cache=True)
def gather_target(Y, labels, r, i, ws, yo, lbuf, dense):
    """The target of row ``r`` (row ``r`` of ``Y``, or ``labels[r]``) into row ``i`` of the
    workspace's ``y`` region from ``yo`` (or ``lbuf[i]``)."""
    if dense:
        n_out = Y.shape[1]
        y = span(ws, yo + i * n_out, n_out)
        for j in range(n_out):
            y[j] = Y[r, j]
    else:
        lbuf[i] = labels[r]


#: The most bytes of rows :func:`prefetch_rows` asks for at once (more would push the step's
#: own working set out of the caches).
PREFETCH_MAX_BYTES = 1 << 17


@njit(inline="always", cache=True)
def _prefetch_row(a, r):
    """Every cache line of row ``r`` of the 2-D ``a`` (:func:`~dlbasics.kernels.views.prefetch`)."""
    nb = a.shape[1] * a.itemsize
    for b in range(0, nb, 64):
        prefetch(a, r, b)
    prefetch(a, r, nb - 1)


#: Rows ahead of the copy that :func:`gather` asks for (:func:`prefetch_rows`), where ``X``
#: holds at least :data:`GATHER_AHEAD_MIN_BYTES`: the rows that :func:`prefetch_rows` asked
#: for a batch earlier may have left the caches again by the time they are copied. 20-100-4 on
#: 100,000 rows (8 MB of float32) at 200 rows a batch, split in two chunks: the gather took
#: 2.3-3.4 against 3.8-5.1 us a chunk (the phase probes of :mod:`dlbasics.kernels.probes`,
#: four runs each).
#: Where ``X`` stays in a core's L2 the requests can only cost: 2-16-16-1 on 65,536 rows at
#: batch 1024 (X 512 KiB), two alternating runs, took 70-77 against 68-75 us a step with
#: them (within the machine's noise, and no gain), hence the threshold.
GATHER_AHEAD = 16
#: See :data:`GATHER_AHEAD`: 1 MiB, the L2 cache of a core of the benchmark machine.
GATHER_AHEAD_MIN_BYTES = 1 << 20


@njit(inline="always", cache=True)
def _prefetch_target(data, r):
    """Ask for row ``r`` of ``data.X`` and its target (:func:`prefetch_rows`)."""
    X, Y, labels = lent(data, "X"), lent(data, "Y"), lent(data, "labels")
    _prefetch_row(X, r)
    if data.dense:
        _prefetch_row(Y, r)
    else:
        prefetch(labels, r, 0)


@njit(inline="always", cache=True)
def prefetch_rows(data, order, lo, hi):
    """Ask for rows ``order[lo:hi]`` of ``data`` (the rows of a coming batch; ``hi`` clipped to
    the order, nothing if they are more than :data:`PREFETCH_MAX_BYTES`) ahead of
    :func:`gather`: rows visited in a random order miss the caches, and a batch's gather then
    waits on memory row after row. A hint only: the results do not change; on a GPU it compiles
    to nothing."""
    X, Y, labels = lent(data, "X"), lent(data, "Y"), lent(data, "labels")
    hi = min(hi, order.shape[0])
    if (hi - lo) * X.shape[1] * X.itemsize > PREFETCH_MAX_BYTES:
        return
    for i in range(lo, hi):
        r = order[i]
        _prefetch_row(X, r)
        if data.dense:
            _prefetch_row(Y, r)
        else:
            prefetch(labels, r, 0)


@njit(inline="always", cache=True)
def region(ws, off, rows, cols):
    """``ws[off : off + rows * cols]`` as a ``(rows, cols)`` array: a workspace region as the
    element-parallel GPU kernels index it (an ordinary slice, so it also runs in the CUDA
    simulator, where the kernels are Python)."""
    return ws[off : off + rows * cols].reshape((rows, cols))


@njit(inline="always", cache=True)
def gather_part(data, order, start, B, x, y, lbuf, first, stride):
    """A thread's share of the gather of rows ``order[start:start + B]`` of ``data`` (a
    :class:`Data` record, plain or named) into the 2-D ``x`` (and ``y`` or ``lbuf``): elements
    ``first, first + stride, ...`` of the row-major batch. The element-parallel form of
    :func:`gather` for the GPU's one-launch epoch and per-layer kernels (neighbouring threads
    read neighbouring features)."""
    X, Y, labels, dense = data
    n_in = X.shape[1]
    for e in range(first, B * n_in, stride):
        i = e // n_in
        k = e - i * n_in
        x[i, k] = X[order[start + i], k]
    if dense:
        n_out = Y.shape[1]
        for e in range(first, B * n_out, stride):
            i = e // n_out
            j = e - i * n_out
            y[i, j] = Y[order[start + i], j]
    else:
        for i in range(first, B, stride):
            lbuf[i] = labels[order[start + i]]


@njit(inline="always", cache=True)
def softmax_row(ws, zo, ao, n):
    """``ws[ao:ao + n] = softmax(ws[zo:zo + n])`` (:func:`~dlbasics.kernels.activations.\
softmax_vec`; may alias)."""
    softmax_vec(span(ws, zo, n), span(ws, ao, n))


@njit(inline="always", cache=True)
def output_backward_row(code, ws, zo, ao, do, n, slope):
    """``dL/dz`` of one output row from ``dL/da`` in place at ``do``: ``delta * f'(z)``, or the
    softmax vector-Jacobian product ``a * (delta - sum(delta * a))``."""
    d = span(ws, do, n)
    a = span(ws, ao, n)
    if code == SOFTMAX:
        softmax_vjp(a, d, d)
    else:
        dact_mul_inplace(code, span(ws, zo, n), a, d, slope)


@njit(inline="always", cache=True)
def row_hits(correct, a, y, label, dense, softmax_out):
    """``correct`` plus the accuracy of one output row ``a`` (1-D): 1 when its argmax is the
    target's (``softmax_out``; the target is the argmax of ``y`` when ``dense``, else
    ``label``), else the fraction of outputs on the target's side of 0.5, added output by
    output."""
    k = a.shape[0]
    if softmax_out:
        best = 0
        for j in range(1, k):
            if a[j] > a[best]:
                best = j
        if dense:
            truth = 0
            for j in range(1, k):
                if y[j] > y[truth]:
                    truth = j
        else:
            truth = label
        return correct + (1.0 if best == truth else 0.0)
    for j in range(k):
        correct += (1.0 if (a[j] > 0.5) == (y[j] > 0.5) else 0.0) / k
    return correct


# ---------------------------------------------------------------------------------------------
# the BLAS route: CPU only, chosen at compile time per target
# ---------------------------------------------------------------------------------------------


# The plain Python bodies below are the CPU behaviour, for calls from Python; compiled code gets
# the overloads that follow, one per target.


def _rows(a, off, rows, cols):
    return a[off : off + rows * cols].reshape(rows, cols)


def blas_ok(ws, B, n_in, n_out, min_rows, min_work):
    """Whether the product of ``B`` rows through an ``n_in x n_out`` layer goes to BLAS: the
    thresholds on the CPU (contiguous buffers), never on the GPU."""
    return bool(ws.flags.c_contiguous and use_blas(B, n_in, n_out, min_rows, min_work))


def blas_forward(P, wo, bo, n_in, n_out, ws, ho, zo, B, own, idx):
    """``ws[z] = ws[h] @ W + b`` by BLAS, or with ``own`` true by
    :func:`~dlbasics.kernels.smallgemm.block_forward_grouped` in compiled code (``idx`` a 1-D int64
    array it does not read; ``own`` ``None`` compiles the BLAS call alone, see
    :func:`own_products`) (CPU; a no-op where :func:`blas_ok` is constant ``False``)."""
    matmul_bias_kernel(_rows(ws, ho, B, n_in), _rows(P, wo, n_in, n_out), P[bo : bo + n_out],
                       _rows(ws, zo, B, n_out), 0, 0)


def blas_grad_input(ws, do, P, wo, n_in, n_out, xo, B, own):
    """``dx = delta W^T`` by BLAS, or with ``own`` by
    :func:`~dlbasics.kernels.smallgemm.block_grad_x` in compiled code (CPU; a no-op where
    :func:`blas_ok` is constant ``False``)."""
    grad_input_kernel(_rows(ws, do, B, n_out), _rows(P, wo, n_in, n_out),
                      _rows(ws, xo, B, n_in), 0, 0)


def blas_grad_weights(ws, ho, do, G, wo, bo, n_in, n_out, B, own, idx):
    """``dW = h^T delta`` by BLAS, or with ``own`` by
    :func:`~dlbasics.kernels.smallgemm.block_grad_w` in compiled code, ``db = sum_rows delta``
    by a loop (CPU; a no-op where :func:`blas_ok` is constant ``False``)."""
    grad_weights_kernel(_rows(ws, ho, B, n_in), _rows(ws, do, B, n_out),
                        _rows(G, wo, n_in, n_out), G[bo : bo + n_out], 0, 0)


def own_products(net, B, n_in, n_out):
    """Whether a product of ``B`` rows through an ``n_in x n_out`` layer that BLAS would take
    runs through :mod:`dlbasics.kernels.smallgemm` instead: fewer than ``net.own_rows`` rows
    (the backend passes the rows from which BLAS may use several threads; for the row split's
    chunks, one thread each, any number) and at least ``net.own_work`` weights. ``None`` where
    ``net.own_rows`` is ``None`` (the backend's record for a network without a layer that
    large) and on the GPU: compiled code then holds no product of its own, a constant chosen
    at compile time (:func:`blas_forward`), so that the networks that never use them do not
    pay for compiling them."""
    if net.own_rows is None:
        return None
    return B < net.own_rows and n_in * n_out >= net.own_work


def takes_own(own):
    """Whether :func:`own_products`'s answer ``own`` is ``True`` (``None``: never)."""
    return bool(own)


@overload(takes_own, inline="always")
def _takes_own(own):
    if _has_own(own):
        return lambda own: own
    return lambda own: False


def _field(tup, name):
    return tup.types[tup.fields.index(name)]


@overload(own_products, target="cpu", inline="always")
def _own_products_cpu(net, B, n_in, n_out):
    if isinstance(_field(net, "own_rows"), types.NoneType):
        return lambda net, B, n_in, n_out: None
    return lambda net, B, n_in, n_out: B < net.own_rows and n_in * n_out >= net.own_work


@overload(own_products, target="cuda", inline="always")
def _own_products_cuda(net, B, n_in, n_out):
    return lambda net, B, n_in, n_out: None


def _has_own(own):
    return not isinstance(own, (types.NoneType, types.Omitted))


def _contiguous(*arrays):
    return all(isinstance(a, types.Array) and a.layout == "C" for a in arrays)


@overload(blas_ok, target="cpu", inline="always")
def _blas_ok_cpu(ws, B, n_in, n_out, min_rows, min_work):
    if _contiguous(ws):
        return lambda ws, B, n_in, n_out, min_rows, min_work: use_blas(B, n_in, n_out, min_rows,
                                                                       min_work)
    return lambda ws, B, n_in, n_out, min_rows, min_work: False


@overload(blas_forward, target="cpu")
def _blas_forward_cpu(P, wo, bo, n_in, n_out, ws, ho, zo, B, own, idx):
    if not _contiguous(P, ws):
        return lambda P, wo, bo, n_in, n_out, ws, ho, zo, B, own, idx: None

    def blas(P, wo, bo, n_in, n_out, ws, ho, zo, B, own, idx):
        matmul_bias_kernel(grid(ws, ho, B, n_in), grid(P, wo, n_in, n_out), span(P, bo, n_out),
                           grid(ws, zo, B, n_out), 0, 0)

    if not _has_own(own):
        return blas

    def impl(P, wo, bo, n_in, n_out, ws, ho, zo, B, own, idx):
        if own:
            block_forward_grouped(B, n_in, n_out, ws, ho, n_in, idx, -1, P, wo, bo, ws, zo,
                                  n_out)
        else:
            matmul_bias_kernel(grid(ws, ho, B, n_in), grid(P, wo, n_in, n_out),
                               span(P, bo, n_out), grid(ws, zo, B, n_out), 0, 0)

    return impl


@overload(blas_grad_input, target="cpu")
def _blas_grad_input_cpu(ws, do, P, wo, n_in, n_out, xo, B, own):
    if not _contiguous(P, ws):
        return lambda ws, do, P, wo, n_in, n_out, xo, B, own: None

    def blas(ws, do, P, wo, n_in, n_out, xo, B, own):
        grad_input_kernel(grid(ws, do, B, n_out), grid(P, wo, n_in, n_out), grid(ws, xo, B, n_in),
                          0, 0)

    if not _has_own(own):
        return blas

    def impl(ws, do, P, wo, n_in, n_out, xo, B, own):
        if own:
            block_grad_x(B, n_in, n_out, ws, do, n_out, P, wo, ws, xo, n_in)
        else:
            grad_input_kernel(grid(ws, do, B, n_out), grid(P, wo, n_in, n_out),
                              grid(ws, xo, B, n_in), 0, 0)

    return impl


@overload(blas_grad_weights, target="cpu")
def _blas_grad_weights_cpu(ws, ho, do, G, wo, bo, n_in, n_out, B, own, idx):
    if not _contiguous(G, ws):
        return lambda ws, ho, do, G, wo, bo, n_in, n_out, B, own, idx: None

    def blas(ws, ho, do, G, wo, bo, n_in, n_out, B, own, idx):
        grad_weights_kernel(grid(ws, ho, B, n_in), grid(ws, do, B, n_out),
                            grid(G, wo, n_in, n_out), span(G, bo, n_out), 0, 0)

    if not _has_own(own):
        return blas

    def impl(ws, ho, do, G, wo, bo, n_in, n_out, B, own, idx):
        if own:
            block_grad_w(B, n_in, n_out, ws, ho, n_in, idx, -1, ws, do, n_out, G, wo)
            sum_rows(span(G, bo, n_out), ws, do, B, n_out)
        else:
            grad_weights_kernel(grid(ws, ho, B, n_in), grid(ws, do, B, n_out),
                                grid(G, wo, n_in, n_out), span(G, bo, n_out), 0, 0)

    return impl


def class_major_forward(P, wo, n_in, n_out, ws, ho, zo, B):
    """``ws[z] = (ws[h] @ W)^T``: the output layer's logits in class-major layout (``n_out``
    rows of ``B``), without the bias (:func:`class_major_loss` adds it), by BLAS (CPU; a
    no-op on the GPU, where :func:`class_major` is constant ``False``)."""
    np.dot(_rows(P, wo, n_in, n_out).T, _rows(ws, ho, B, n_in).T, _rows(ws, zo, n_out, B))


def class_major_grad_input(ws, do, P, wo, n_in, n_out, xo, B):
    """``dx = G^T W^T`` from the class-major output gradient ``G`` (``n_out x B``) at ``do``
    (row-major ``dx``; CPU; a no-op on the GPU)."""
    np.dot(_rows(ws, do, n_out, B).T, _rows(P, wo, n_in, n_out).T, _rows(ws, xo, B, n_in))


def class_major_grad_weights(ws, ho, do, G, wo, n_in, n_out, B):
    """``dW = h^T G^T`` from the class-major output gradient at ``do`` (the bias's gradient
    comes from :func:`class_major_loss`; CPU; a no-op on the GPU)."""
    np.dot(_rows(ws, ho, B, n_in).T, _rows(ws, do, n_out, B).T, _rows(G, wo, n_in, n_out))


@overload(class_major_forward, target="cpu")
def _class_major_forward_cpu(P, wo, n_in, n_out, ws, ho, zo, B):
    if not _contiguous(P, ws):
        return lambda P, wo, n_in, n_out, ws, ho, zo, B: None

    def impl(P, wo, n_in, n_out, ws, ho, zo, B):
        np.dot(grid(P, wo, n_in, n_out).T, grid(ws, ho, B, n_in).T, grid(ws, zo, n_out, B))

    return impl


@overload(class_major_grad_input, target="cpu")
def _class_major_grad_input_cpu(ws, do, P, wo, n_in, n_out, xo, B):
    if not _contiguous(P, ws):
        return lambda ws, do, P, wo, n_in, n_out, xo, B: None

    def impl(ws, do, P, wo, n_in, n_out, xo, B):
        np.dot(grid(ws, do, n_out, B).T, grid(P, wo, n_in, n_out).T, grid(ws, xo, B, n_in))

    return impl


@overload(class_major_grad_weights, target="cpu")
def _class_major_grad_weights_cpu(ws, ho, do, G, wo, n_in, n_out, B):
    if not _contiguous(G, ws):
        return lambda ws, ho, do, G, wo, n_in, n_out, B: None

    def impl(ws, ho, do, G, wo, n_in, n_out, B):
        np.dot(grid(ws, ho, B, n_in).T, grid(ws, do, n_out, B).T, grid(G, wo, n_in, n_out))

    return impl


@overload(class_major_forward, target="cuda")
def _class_major_forward_cuda(P, wo, n_in, n_out, ws, ho, zo, B):
    return lambda P, wo, n_in, n_out, ws, ho, zo, B: None


@overload(class_major_grad_input, target="cuda")
def _class_major_grad_input_cuda(ws, do, P, wo, n_in, n_out, xo, B):
    return lambda ws, do, P, wo, n_in, n_out, xo, B: None


@overload(class_major_grad_weights, target="cuda")
def _class_major_grad_weights_cuda(ws, ho, do, G, wo, n_in, n_out, B):
    return lambda ws, ho, do, G, wo, n_in, n_out, B: None


@overload(blas_ok, target="cuda", inline="always")
def _blas_ok_cuda(ws, B, n_in, n_out, min_rows, min_work):
    return lambda ws, B, n_in, n_out, min_rows, min_work: False


@overload(blas_forward, target="cuda")
def _blas_forward_cuda(P, wo, bo, n_in, n_out, ws, ho, zo, B, own, idx):
    return lambda P, wo, bo, n_in, n_out, ws, ho, zo, B, own, idx: None


@overload(blas_grad_input, target="cuda")
def _blas_grad_input_cuda(ws, do, P, wo, n_in, n_out, xo, B, own):
    return lambda ws, do, P, wo, n_in, n_out, xo, B, own: None


@overload(blas_grad_weights, target="cuda")
def _blas_grad_weights_cuda(ws, ho, do, G, wo, bo, n_in, n_out, B, own, idx):
    return lambda ws, ho, do, G, wo, bo, n_in, n_out, B, own, idx: None


# ---------------------------------------------------------------------------------------------
# the loops (every target)
# ---------------------------------------------------------------------------------------------
# Flat-index loops for products too small for BLAS. Offsets address the flat arrays directly:
# creating 2-D views costs more than the arithmetic of a small layer.


@njit(inline="always", cache=True)
def column_block(n, p, P):
    """Columns ``[c0, c1)`` of block ``p`` of ``P`` of ``n`` (the parts of
    :mod:`dlbasics.kernels.colsplit`): contiguous, in order, the inner boundaries rounded to
    multiples of 16 (whole 64-byte cache lines of float32 rows; ``n = 10`` in two: all in the
    last)."""
    c0 = ((n * p // P + 8) // 16) * 16
    c1 = ((n * (p + 1) // P + 8) // 16) * 16
    return min(c0, n), (n if p == P - 1 else min(c1, n))


@njit(inline="always", cache=True)
def _fwd_loops(P, wo, bo, ldw, n_in, n_out, ws, ho, zo, B, c0, c1):
    """``ws[z] = ws[h] @ W + b`` for ``B`` rows in columns ``c0:c1`` of ``z`` (the step: all,
    ``0, n_out``): the columns' ``W`` from ``wo`` in ``P`` (its rows ``ldw`` apart: ``n_out``
    for the whole matrix), their ``b`` from ``bo``.

    Inner loops run over 1-D row slices: indexing a slice with the loop counter lets the
    compiler drop the negative-index check and vectorise, which flat offsets prevent.
    """
    nc = c1 - c0
    b = span(P, bo, nc)
    k4 = n_in - n_in % 4
    for i in range(B):
        z = span(ws, zo + i * n_out + c0, nc)
        h = span(ws, ho + i * n_in, n_in)
        for j in range(nc):
            z[j] = b[j]
        # Four input rows per pass over z: a quarter of the loads and stores of z. The sum is
        # still ((z + h0 w0) + h1 w1) + ..., the order of one row at a time, bit for bit.
        for k in range(0, k4, 4):
            h0 = h[k]
            h1 = h[k + 1]
            h2 = h[k + 2]
            h3 = h[k + 3]
            w0 = span(P, wo + k * ldw, nc)
            w1 = span(P, wo + (k + 1) * ldw, nc)
            w2 = span(P, wo + (k + 2) * ldw, nc)
            w3 = span(P, wo + (k + 3) * ldw, nc)
            for j in range(nc):
                z[j] = z[j] + h0 * w0[j] + h1 * w1[j] + h2 * w2[j] + h3 * w3[j]
        for k in range(k4, n_in):
            hik = h[k]
            w = span(P, wo + k * ldw, nc)
            for j in range(nc):
                z[j] += hik * w[j]


@njit(inline="always", cache=True)
def _grad_w_loops(ws, ho, do, G, wo, bo, ldw, n_in, n_out, B, c0, c1):
    """``dW = h^T delta`` and ``db = sum_rows delta`` into ``G`` (first row assigns), in
    columns ``c0:c1`` (all: ``0, n_out``): the columns' ``dW`` from ``wo`` (rows ``ldw``
    apart), their ``db`` from ``bo``, as :func:`_fwd_loops` takes ``W`` and ``b``."""
    nc = c1 - c0
    sum_rows(span(G, bo, nc), ws, do + c0, B, n_out)
    for i in range(B):
        d = span(ws, do + i * n_out + c0, nc)
        h = span(ws, ho + i * n_in, n_in)
        for k in range(n_in):
            hik = h[k]
            g = span(G, wo + k * ldw, nc)
            if i == 0:
                for j in range(nc):
                    g[j] = hik * d[j]
            else:
                for j in range(nc):
                    g[j] += hik * d[j]


@njit(inline="always", cache=True)
def sum_rows(out, ws, off, B, ld):
    """``out[j] = sum_i ws[off + i * ld + j]`` over ``i < B`` in order, for ``j <
    len(out)``: a bias's gradient, the sum of ``B`` rows of ``delta`` (rows ``ld`` apart)."""
    n = out.shape[0]
    for i in range(B):
        d = span(ws, off + i * ld, n)
        if i == 0:
            for j in range(n):
                out[j] = d[j]
        else:
            for j in range(n):
                out[j] += d[j]


@njit(cache=True, fastmath={"reassoc"})
def _grad_x_loops(ws, do, P, wo, ldw, n_in, n_out, xo, B, c0, c1):
    """``dx = delta W^T`` for ``B`` rows, summed over columns ``c0:c1`` of ``delta`` and ``W``
    (the step: all, ``0, n_out``), the columns' ``W`` from
    ``wo`` in ``P``, rows ``ldw`` apart (as :func:`_fwd_loops`).

    Each ``dx[k]`` is a dot product over the ``n_out`` outputs. In strict order that is a
    chain of dependent adds, bound by the add latency (about 90 us of a 160 us step of
    784-256-256-10 at batch 1). ``reassoc`` lets the compiler keep several vector partial
    sums instead, as BLAS does; the order is fixed at compile time, so results stay
    deterministic. Four rows of ``W`` a pass, each sum from zero over all the columns (no
    scalar remainder when the columns fill whole vectors): 256 x 128 in 1.15 us against
    3.4 us one row a pass, its sum started from the first column's product (float32, one
    thread, the weights in L2, on the 2-core benchmark machine).
    """
    nc = c1 - c0
    k4 = n_in - n_in % 4
    zero = P.dtype.type(0)
    for i in range(B):
        d = span(ws, do + i * n_out + c0, nc)
        dx = span(ws, xo + i * n_in, n_in)
        for k in range(0, k4, 4):
            w0 = span(P, wo + k * ldw, nc)
            w1 = span(P, wo + (k + 1) * ldw, nc)
            w2 = span(P, wo + (k + 2) * ldw, nc)
            w3 = span(P, wo + (k + 3) * ldw, nc)
            s0 = zero
            s1 = zero
            s2 = zero
            s3 = zero
            for j in range(nc):
                dj = d[j]
                s0 += dj * w0[j]
                s1 += dj * w1[j]
                s2 += dj * w2[j]
                s3 += dj * w3[j]
            dx[k] = s0
            dx[k + 1] = s1
            dx[k + 2] = s2
            dx[k + 3] = s3
        for k in range(k4, n_in):
            w = span(P, wo + k * ldw, nc)
            s = zero
            for j in range(nc):
                s += d[j] * w[j]
            dx[k] = s


@njit(inline="always", cache=True)
def _sgd_row_update(ws, ho, do, P, wo, bo, ldw, n_in, n_out, lr, c0, c1):
    """Plain SGD fused into the backward pass of one row: ``W -= lr * (h^T delta)``,
    ``b -= lr * delta``, the same float operations as writing the gradient and then applying
    :func:`dlbasics.kernels.optimizers.sgd_kernel`, without the gradient's round trip through
    memory. Columns ``c0:c1`` (all: ``0, n_out``), ``W`` and ``b`` as :func:`_fwd_loops` takes
    them."""
    nc = c1 - c0
    d = span(ws, do + c0, nc)
    h = span(ws, ho, n_in)
    b = span(P, bo, nc)
    for j in range(nc):
        b[j] -= lr * d[j]
    for k in range(n_in):
        hk = h[k]
        w = span(P, wo + k * ldw, nc)
        for j in range(nc):
            w[j] -= lr * (hk * d[j])


# ---------------------------------------------------------------------------------------------
# the step
# ---------------------------------------------------------------------------------------------


@njit(cache=True)
def gather(data, order, start, stop, buf):
    """Copy rows ``order[start:stop]`` of ``data.X`` (and targets) into the workspace, asking
    for each row :data:`GATHER_AHEAD` rows before it is copied where ``X`` is large."""
    X, Y, labels = lent(data, "X"), lent(data, "Y"), lent(data, "labels")
    ws, offs, lbuf = lent(buf, "ws"), lent(buf, "offs"), lent(buf, "lbuf")
    L = offs.shape[0] - 1
    xo, yo = offs[L, 0], offs[L, 1]
    B = stop - start
    ahead = GATHER_AHEAD if X.shape[0] * X.shape[1] * X.itemsize >= GATHER_AHEAD_MIN_BYTES else B
    for i in range(B):
        if i + ahead < B:
            _prefetch_target(data, order[start + i + ahead])
        gather_row(X, Y, labels, order[start + i], i, ws, xo, yo, lbuf, data.dense)


@njit(cache=True)
def forward(params, net, B, buf, train, step, outputs):
    """Forward pass of the batch in the workspace; returns nothing, fills every ``z`` and every
    ``a`` but, with ``outputs`` false, the output layer's: a fused loss reads the output ``z``
    (:func:`backward`), so a gradient step skips the output activation (for softmax, an ``exp``
    per output a row).

    Dropout on the input of layer ``l`` (``keep[l] < 1``): in training each row gets its own
    mask from the counter hash of ``(seed, step, l, row, unit)``; kept inputs are multiplied by
    1 (the notes' rule) or ``1 / p`` (``inverted``). At test time with the notes' rule, the
    layer's outgoing weights are scaled by ``p``, computed as ``(p h) W``; inverted dropout does
    nothing at test time.

    Products of ``min_rows`` rows or more go to BLAS on the CPU (:func:`blas_ok`). Everything
    else runs on the calling thread: a parallel function called from a cached non-parallel one
    can crash once loaded from the cache by another process (Numba issue 8578;
    ``tests/hardening/test_cache_processes.py``).

    Callers pass the flags and the step as ``np.bool_(...)`` and ``np.intp(...)``, not as
    constants: Numba compiles a function called with a constant for that constant's literal
    type, so the training step, Monte-Carlo dropout and the evaluation with the prediction each
    had a ``forward`` of their own (1.2-1.4 s of compiling each, with an empty cache).

    The training step runs its output layer class-major where :func:`class_major` allows (a
    fused softmax cross-entropy on BLAS, the CPU): the logits as ``n_out`` rows of ``B``
    (:func:`class_major_forward`, no output activation, the bias added by the loss), so that
    the loss's max, exponentials and sums run down whole vectors
    (:func:`class_major_loss_kernel`). Measured on 2026-12-07 on the 2-core benchmark machine
    (AMD EPYC, Zen 4): a digits fit of ``MLPClassifier`` (100 epochs, float32; the fastest of
    15 fits in each process, 16 pairs of alternating processes, separate Numba caches) took
    46.46-46.49 against 49.51-49.72 ms with adam and 45.32-45.75 against 48.89-49.23 ms with
    sgd (the three fastest processes of each arm): 6-8% less. It costs compile time: the
    first default ``MLPClassifier`` fit on digits with an empty Numba cache took 21.53-24.92
    against 20.01-24.12 s, 0.8-1.5 s more in each of three alternating pairs of processes
    (the new functions compiled in each caller; presumably most of it the loss, which Numba
    optimises again in each compiled caller of :func:`backward` that links it in). The fit
    times were measured on the code of 8b020ba (the scratch's alignment test changed since,
    not timed), the compile times on c9e5374's.
    In the speed report's protocol (each fit after a 0.3 s pause, the fastest of five rounds)
    the first report with this layer read our digits fits at 58 ms, as the last one without
    it had (56.8-58.4 ms), and 9.8x (adam) and 9.0x (sgd) against scikit-learn, short of the
    drop-in's goal of 10x. Float32 results differ from the row-major step's in the last places
    (after 20 epochs of digits, losses by up to 5.2e-9, all 20 differing, and weights by up to
    6e-8, 3,083 of 7,510 with adam and 386 with sgd): the
    exponential (see :func:`class_major_loss_kernel`) and, possibly, BLAS's kernels for the
    transposed operands (the loss alone, in float64, gives the row-major loss's bits:
    ``tests/test_network_step.py``).

    Tried the same day and not kept: the bias passes of BLAS layers folded into their
    neighbours (the bias added in the ReLU pass, the hidden bias's gradient summed in
    :func:`backward`'s activation pass), bitwise the same results: 50.39-50.48 against
    49.44-50.45 ms with adam (0-2% slower), 48.71-49.36 against 49.13-49.87 ms with sgd (about
    1% faster; 12 pairs, the three fastest processes of each arm); with the output bias folded
    into a row-major loss whose exponentials ran through :func:`dlbasics.kernels.vecmath.exp`
    in one flat loop, 2-3% faster (14 pairs; presumably the exponential's gain, which, inlined
    into its callers, had added 1.1-1.4 s to the empty-cache first epoch in a loss-only
    prototype, see :func:`dlbasics.kernels.losses._lse_exps`; the prototypes were never run
    side by side).
    """
    layout, codes, keep = lent(net, "layout"), lent(net, "codes"), lent(net, "keep")
    inverted, slope = net.inverted, net.slope
    seed, min_rows, min_work = net.seed, net.min_rows, net.min_work
    ws, offs, lbuf = lent(buf, "ws"), lent(buf, "offs"), lent(buf, "lbuf")
    L = layout.shape[0]
    ho = offs[L, 0]
    t = stamp()
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
            t = lap(t, ELEMENTWISE)
        zo = offs[l, 0]
        ao = offs[l, 1]
        if l == L - 1 and not outputs and class_major(net, ws, B, n_in, n_out):
            class_major_forward(params, layout[l, 2], n_in, n_out, ws, ho, zo, B)
            lap(t, PRODUCTS)
            break
        if blas_ok(ws, B, n_in, n_out, min_rows, min_work):
            blas_forward(params, layout[l, 2], layout[l, 3], n_in, n_out, ws, ho, zo, B,
                         own_products(net, B, n_in, n_out), lbuf)
        else:
            _fwd_loops(params, layout[l, 2], layout[l, 3], n_out, n_in, n_out, ws, ho, zo, B, 0,
                       n_out)
        t = lap(t, PRODUCTS)
        code = codes[l]
        if l == L - 1 and not outputs:
            break
        if code == SOFTMAX:
            for i in range(B):
                softmax_row(ws, zo + i * n_out, ao + i * n_out, n_out)
        else:
            act_flat(code, span(ws, zo, B * n_out), span(ws, ao, B * n_out), slope)
        t = lap(t, ELEMENTWISE)
        ho = ao


@njit(cache=True)
def loss_rows(code, ws, po, yo, do, lbuf, B, n, dense, eps):
    """Batch-mean loss of the ``B`` rows of predictions (or logits) at ``po`` against targets
    at ``yo`` (``dense``) or labels ``lbuf``, summed row by row in float64; the gradient of the
    mean into the rows at ``do``. ``code`` is checked by the caller (:func:`backward`)."""
    inv_n = 1.0 / B
    total = 0.0
    for i in range(B):
        r = i * n
        p = span(ws, po + r, n)
        g = span(ws, do + r, n)
        if dense:
            total = dense_row(code, span(ws, yo + r, n), p, g, True, eps, inv_n, total)
        else:
            total = label_row(code, lbuf[i], p, g, True, eps, inv_n, total)
    return total * inv_n


@njit(cache=True)
def class_major(net, ws, B, n_in, n_out):
    """Whether the training step runs its output layer class-major (:func:`class_major_loss`):
    a fused softmax cross-entropy (``CE_LOGITS``) whose output layer goes to BLAS on the CPU
    (:func:`blas_ok`; never on the GPU) and not to our own products (fewer than
    :func:`own_products`), with at least 4 inputs (the loss's scratch, ``3 B + 1``
    elements, lives in the ``B x n_in`` buffer of that layer's ``dx``, free until the loss is
    done)."""
    blas = blas_ok(ws, B, n_in, n_out, net.min_rows, net.min_work)
    own = takes_own(own_products(net, B, n_in, n_out))
    return blas and not own and net.fused and net.loss_code == losses.CE_LOGITS and n_in >= 4


def class_major_loss(ws, zo, yo, do, so, lbuf, B, n, dense, b, gb):
    """Batch-mean softmax cross-entropy of class-major logits (CPU; 0 on the GPU, where
    :func:`class_major` is constant ``False``); see :func:`class_major_loss_kernel`."""
    return class_major_loss_kernel(ws, zo, yo, do, so, lbuf, B, n, dense, b, gb)


@njit(cache=True)
def class_major_loss_kernel(ws, zo, yo, do, so, lbuf, B, n, dense, b, gb):
    """Batch-mean softmax cross-entropy of the training step's output layer in class-major
    layout: the logits ``Z`` (``n`` rows of ``B``, :func:`class_major_forward`) at ``zo`` get
    the bias ``b``; the gradient of the mean w.r.t. them goes to ``G``, class-major, at ``do``,
    and its row sums, the bias's gradient, to ``gb``. Targets: labels ``lbuf`` or, with
    ``dense``, the row-major ``B x n`` rows at ``yo``. Scratch: ``3 B + 1`` elements at ``so``.

    Each row's value and gradient follow :func:`~dlbasics.kernels.losses.label_row` and
    :func:`~dlbasics.kernels.losses.dense_row` operation for operation (the max-shifted sum of
    exponentials in float64, in class order, the gradient ``e / s`` scaled in float64, the
    loss summed row by row in float64); what differs is the exponential,
    :func:`dlbasics.kernels.vecmath.exp`, which vectorises across the rows here (float32:
    correctly rounded but for 7.1e-8 of the arguments, where libm's ``expf`` is not for 7.6e-5
    of them, by one ulp, see :mod:`dlbasics.kernels.vecmath`; float64: ``math.exp``). With
    ``B`` rows in each class's row, the max, the exponentials and the sums run down whole
    vectors, where a row-major row of a few classes fills part of one: on the benchmark
    machine (2-core AMD EPYC, Zen 4) a digits fit of ``MLPClassifier`` (64-100-10, 100
    epochs, float32) took 6-8% less time than with the row-major output layer (see
    :func:`forward`). The bias add counts in the ``LOSS`` phase of
    :mod:`dlbasics.kernels.probes` (in ``PRODUCTS`` on the row-major path)."""
    Z = grid(ws, zo, n, B)
    G = grid(ws, do, n, B)
    M = span(ws, so, B)
    s0 = so + B
    if (ws.ctypes.data + s0 * ws.itemsize) % 8:  # the float64 view on an 8-byte boundary
        s0 += 1
    S = span(ws, s0, 2 * B).view(np.float64)
    inv_n = 1.0 / B
    for c in range(n):
        bc = b[c]
        zc = row(Z, c)
        for i in range(B):
            zc[i] = zc[i] + bc
    z0 = row(Z, 0)
    for i in range(B):
        M[i] = z0[i]
    for c in range(1, n):
        zc = row(Z, c)
        for i in range(B):
            v = zc[i]
            m = M[i]
            M[i] = v if v > m else m
    for i in range(B):
        S[i] = 0.0
    for c in range(n):
        zc = row(Z, c)
        gc = row(G, c)
        for i in range(B):
            e = vexp(zc[i] - M[i])
            gc[i] = e
            S[i] += e
    total = 0.0
    if dense:
        for i in range(B):
            s = S[i]
            lse = M[i] + math.log(s)
            yi = span(ws, yo + i * n, n)
            ysum = 0.0
            for j in range(n):
                total += yi[j] * (lse - Z[j, i])
                ysum += yi[j]
            f = 1.0 / s
            for j in range(n):
                G[j, i] = (G[j, i] * f * ysum - yi[j]) * inv_n
    else:
        for i in range(B):
            s = S[i]
            total += (M[i] + math.log(s)) - Z[lbuf[i], i]
            S[i] = inv_n / s  # the row's factor, then scaled down the rows
        for c in range(n):
            gc = row(G, c)
            for i in range(B):
                gc[i] = gc[i] * S[i]
        for i in range(B):
            G[lbuf[i], i] -= inv_n
    for j in range(n):  # the bias's gradient: the rows summed in order, as row-major
        gb[j] = G[j, 0]
    for i in range(1, B):
        for j in range(n):
            gb[j] += G[j, i]
    return total * inv_n


@overload(class_major_loss, target="cpu")
def _class_major_loss_cpu(ws, zo, yo, do, so, lbuf, B, n, dense, b, gb):
    if not _contiguous(ws):
        return lambda ws, zo, yo, do, so, lbuf, B, n, dense, b, gb: 0.0
    return lambda ws, zo, yo, do, so, lbuf, B, n, dense, b, gb: class_major_loss_kernel(
        ws, zo, yo, do, so, lbuf, B, n, dense, b, gb)


@overload(class_major_loss, target="cuda")
def _class_major_loss_cuda(ws, zo, yo, do, so, lbuf, B, n, dense, b, gb):
    return lambda ws, zo, yo, do, so, lbuf, B, n, dense, b, gb: 0.0


@njit(cache=True)
def output_backward(code, ws, zo, ao, do, B, n, slope):
    """:func:`output_backward_row` for the ``B`` output rows."""
    for i in range(B):
        r = i * n
        output_backward_row(code, ws, zo + r, ao + r, do + r, n, slope)


@njit(inline="always", cache=True)
def check_loss_code(loss_code, dense_targets):
    """Raise ``ValueError`` for a loss code the step cannot train: unknown, or not a
    cross-entropy with integer labels (``dense_targets`` false)."""
    if dense_targets:
        if not 0 <= loss_code < losses.N_CODES:
            raise ValueError("backward: unknown loss code")
    elif loss_code != losses.CE and loss_code != losses.CE_LOGITS:
        raise ValueError("backward: integer labels need a cross-entropy loss code")


@njit(cache=True)
def backward(params, grad, net, B, buf, dense_targets, sgd_lr):
    """Loss of the batch and the gradient of its mean w.r.t. all parameters (into ``grad``).

    ``fused``: the loss is evaluated on the output pre-activations ``z`` (the logit forms, or
    squared loss after an identity output), so ``dL/dz`` comes straight from the loss rows.
    Otherwise ``dL/da`` is back-propagated through the output activation. The loss is summed
    row by row in float64 and returned as the batch mean.

    ``sgd_lr > 0`` (one row, no BLAS): instead of writing the gradient, apply plain SGD with
    that rate layer by layer as soon as a layer's ``dx`` has been computed with its old weights.

    Runs after the training step's :func:`forward` (``outputs = not net.fused``, as
    :func:`batch_gradient` calls it): where :func:`class_major` holds, that left the output
    layer's logits class-major and without the bias, which the loss then adds
    (:func:`class_major_loss`); after a ``forward`` with ``outputs`` true the gradient would be
    wrong.
    """
    layout, codes, keep = lent(net, "layout"), lent(net, "codes"), lent(net, "keep")
    slope = net.slope
    loss_code, fused, eps, min_rows, min_work = (net.loss_code, net.fused, net.eps, net.min_rows,
                                                 net.min_work)
    ws, offs, lbuf = lent(buf, "ws"), lent(buf, "offs"), lent(buf, "lbuf")
    check_loss_code(loss_code, dense_targets)
    L = layout.shape[0]
    n_last = layout[L - 1, 1]
    zL = offs[L - 1, 0]
    aL = offs[L - 1, 1]
    dL = offs[L, 2]
    yo = offs[L, 1]
    t = stamp()
    cm = class_major(net, ws, B, layout[L - 1, 0], n_last)
    if cm:
        value = class_major_loss(ws, zL, yo, dL, offs[L, 3], lbuf, B, n_last, dense_targets,
                                 span(params, layout[L - 1, 3], n_last),
                                 span(grad, layout[L - 1, 3], n_last))
    else:
        value = loss_rows(loss_code, ws, zL if fused else aL, yo, dL, lbuf, B, n_last,
                          dense_targets, eps)
    if not fused:
        output_backward(codes[L - 1], ws, zL, aL, dL, B, n_last, slope)
    t = lap(t, LOSS)
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
        blas = blas_ok(ws, B, n_in, n_out, min_rows, min_work)
        own = own_products(net, B, n_in, n_out)
        nxt = 5 - cur
        xo = offs[L, nxt]
        out_cm = cm and l == L - 1
        if l > 0:  # dx first: it needs this layer's weights before any fused update
            if out_cm:
                class_major_grad_input(ws, do, params, wo, n_in, n_out, xo, B)
            elif blas:
                blas_grad_input(ws, do, params, wo, n_in, n_out, xo, B, own)
            else:
                _grad_x_loops(ws, do, params, wo, n_out, n_in, n_out, xo, B, 0, n_out)
        if out_cm:
            class_major_grad_weights(ws, ho, do, grad, wo, n_in, n_out, B)
        elif blas:
            blas_grad_weights(ws, ho, do, grad, wo, bo, n_in, n_out, B, own, lbuf)
        elif sgd_lr > 0:
            _sgd_row_update(ws, ho, do, params, wo, bo, n_out, n_in, n_out, sgd_lr, 0, n_out)
        else:
            _grad_w_loops(ws, ho, do, grad, wo, bo, n_out, n_in, n_out, B, 0, n_out)
        t = lap(t, PRODUCTS)
        if l == 0:
            break
        dx = span(ws, xo, B * n_in)
        if keep[l] < 1.0:
            m = span(ws, offs[l, 3], B * n_in)
            for e in range(B * n_in):
                dx[e] *= m[e]
        zp = span(ws, offs[l - 1, 0], B * n_in)
        ap = span(ws, offs[l - 1, 1], B * n_in)
        dact_mul_inplace(codes[l - 1], zp, ap, dx, slope)
        t = lap(t, ELEMENTWISE)
        cur = nxt
    return value


@njit(cache=True)
def l2_penalty(params, grad, layout, scale):
    r"""Add the L2 penalty of the weights (not the biases) to a batch gradient.

    With ``scale`` :math:`= \alpha / n` for a batch of :math:`n` rows, the penalty is
    :math:`\frac{\alpha}{2n} \sum_l \lVert W_l \rVert^2` (scikit-learn's ``alpha``): each
    weight's gradient gains :math:`\frac{\alpha}{n} w` (``grad += scale * W``, in the
    parameter dtype, :func:`l2_grad_part`) and the penalty, summed in float64
    (:func:`l2_value`), is returned to be added to the batch loss.
    """
    l2_grad_part(params, grad, layout, scale, np.intp(0), params.shape[0])  # see forward
    return l2_value(params, layout, scale)


@njit(inline="always", cache=True)
def _sum_squares(w):
    """``sum w_i^2`` of a 1-D array in float64 (each weight converted first, so a float32
    weight's square is exact; Numba's ``float()`` of a float32 stays a float32, and the
    squares were once rounded to float32 that way), as eight running sums (element ``i`` into
    sum ``i mod 8``, the rest into a ninth) added pairwise at the end: the same bits on every
    machine, and eight independent chains of additions instead of one (one chain waits on
    each addition's latency: 2.0 us for the 2,400 weights of 20-100-4, against 0.67 us
    here; the split epoch shares it between its chunk tasks, :func:`l2_squares_part`)."""
    n = w.shape[0]
    n8 = n - n % 8
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    for i in range(0, n8, 8):
        x0, x1 = np.float64(w[i]), np.float64(w[i + 1])
        x2, x3 = np.float64(w[i + 2]), np.float64(w[i + 3])
        x4, x5 = np.float64(w[i + 4]), np.float64(w[i + 5])
        x6, x7 = np.float64(w[i + 6]), np.float64(w[i + 7])
        s0 += x0 * x0
        s1 += x1 * x1
        s2 += x2 * x2
        s3 += x3 * x3
        s4 += x4 * x4
        s5 += x5 * x5
        s6 += x6 * x6
        s7 += x7 * x7
    rest = 0.0
    for i in range(n8, n):
        x = np.float64(w[i])
        rest += x * x
    return (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) + rest


@njit(cache=True)
def l2_value(params, layout, scale):
    """The L2 penalty ``scale / 2 * sum ||W_l||^2`` of the weights, summed in float64 layer
    by layer in order (:func:`l2_penalty`; within a layer :func:`_sum_squares`)."""
    total = 0.0
    for l in range(layout.shape[0]):
        total += _sum_squares(span(params, layout[l, 2], layout[l, 0] * layout[l, 1]))
    return 0.5 * scale * total


@njit(cache=True)
def l2_grad_part(params, grad, layout, scale, lo, hi):
    """``grad += scale * W`` (in the parameter dtype) for the weights among the parameters
    ``[lo, hi)`` (:func:`l2_penalty`; elementwise, so parts give the bits of the whole)."""
    c = params.dtype.type(scale)
    for l in range(layout.shape[0]):
        a = max(layout[l, 2], lo)
        b = min(layout[l, 2] + layout[l, 0] * layout[l, 1], hi)
        if a < b:
            w = span(params, a, b - a)
            g = span(grad, a, b - a)
            for i in range(b - a):
                g[i] += c * w[i]


@njit(cache=True)
def l2_squares_part(params, layout, part, parts):
    """``sum w^2`` over the weights among part ``part`` of ``parts`` of the parameters
    (:func:`chunk_rows`), in float64, layer by layer in order (:func:`_sum_squares` on each
    layer's share): the split step's penalty in parts, one a chunk task, so that no thread
    waits while one sums all the weights (:func:`l2_value_split`)."""
    lo, hi = chunk_rows(0, params.shape[0], part, parts)
    total = 0.0
    for l in range(layout.shape[0]):
        a = max(layout[l, 2], lo)
        b = min(layout[l, 2] + layout[l, 0] * layout[l, 1], hi)
        if a < b:
            total += _sum_squares(span(params, a, b - a))
    return total


@njit(inline="always", cache=True)
def _half_scaled(squares, scale):
    return 0.5 * scale * squares


@njit(cache=True)
def l2_value_split(params, layout, scale, parts):
    """The L2 penalty ``scale / 2 * sum ||W_l||^2`` as the split step sums it: the
    :func:`l2_squares_part` of each of ``parts`` parts (the batch's chunks) added in order;
    :func:`split_gradient` and the team of :func:`split_epoch` give the same bits, and with one
    part those of :func:`l2_value`."""
    squares = 0.0
    for c in range(parts):
        squares += l2_squares_part(params, layout, c, parts)
    return _half_scaled(squares, scale)


@njit(inline="always", cache=True)
def batch_gradient(params, grad, net, data, order, start, stop, buf, step, sgd_lr, alpha):
    """Mean loss of rows ``order[start:stop]`` and its gradient (training mode, dropout step
    ``step``); with ``sgd_lr > 0`` on one row, the SGD update instead (see :func:`backward`).
    ``alpha > 0`` adds the L2 penalty of the weights to both (:func:`l2_penalty`, with the
    batch's row count); ``alpha = 0`` leaves the results bitwise as without it. Records lent,
    arrays borrowed."""
    B = stop - start
    t = stamp()
    gather(data, order, start, stop, buf)
    lap(t, GATHER)
    forward(params, net, B, buf, np.bool_(True), step, not net.fused)  # see forward
    value = backward(params, grad, net, B, buf, data.dense, sgd_lr)
    if alpha > 0.0:
        t = stamp()
        value += l2_penalty(params, grad, lent(net, "layout"), alpha / B)
        lap(t, UPDATE)
    return value


@njit(inline="always", cache=True)
def epoch(params, grad, net, data, order, batch, buf, opt, out, alpha):
    """A whole epoch of mini-batch gradient descent (records lent, arrays borrowed).

    Visits ``order`` in batches of ``batch`` rows (the last one may be smaller), and after each
    batch applies optimizer ``opt`` (rule ``opt.code``, see
    :func:`dlbasics.kernels.optimizers.apply_update`) with update count ``opt.count + 1,
    opt.count + 2, ...`` (also the dropout step counter). Stops at the first non-finite batch
    loss.

    Writes ``out[0]`` = sum over batches of ``batch_loss * batch_rows``, ``out[1]`` = number of
    updates done, ``out[2]`` = rows processed, ``out[3]`` = 1.0 if a loss was non-finite.
    ``alpha``: the L2 penalty of each batch (see :func:`batch_gradient`).
    """
    opt_code, t0 = opt.code, opt.count
    hp, s1, s2, s3 = lent(opt, "hp"), lent(opt, "s1"), lent(opt, "s2"), lent(opt, "s3")
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
    # in the parameters' dtype (``0.0 * hp[...]`` would make it float64, and the fused update
    # of float32 weights then ran in float64: other roundings, 2x slower)
    sgd_lr = hp[HP_LR] if fuse else hp.dtype.type(0.0)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        mark = stamp()
        prefetch_rows(data, order, stop, stop + batch)
        lap(mark, GATHER)
        value = batch_gradient(params, grad, net, data, order, start, stop, buf, t, sgd_lr, alpha)
        rows += stop - start
        if not math.isfinite(value):
            total = value
            out[3] = 1.0
            break
        t += 1
        if sgd_lr == 0:
            mark = stamp()
            apply_update(opt_code, params, grad, s1, s2, s3, t, hp)
            lap(mark, UPDATE)
        total += value * (stop - start)
    out[0] = total
    out[1] = t - t0
    out[2] = rows


# team_task and what it calls (_chunk_gradient, combine_update_part, update_part) are inlined
# into the team's workers. Numba optimises the code of each separately compiled function, with
# everything it calls linked in, and turns it into machine code, then does it again in every
# caller: each level of calls repeated the work of the levels below it. Inlined, the first
# default MLPClassifier fit of digits with an empty cache took 20.3-21.3 s against 27.0-27.1 s
# (alternating processes); results bitwise the same, epoch times unchanged within this
# machine's noise. Not inlined into a parallel loop's body (chunk_gradient in chunk_losses,
# member_epoch in population_epoch_kernel): there Numba's dead-code elimination drops a store
# through an array field of a record made in the body (it does not count a named tuple as an
# alias of the arguments), as it dropped chunk_gradient's store into split.vals. Large
# functions stay separate too (forward, backward, apply_update; the column split's parts in
# dlbasics.kernels.colsplit): copying a large function's Numba IR into its call sites costs
# more than the repeated optimisation (the column split's three parts inlined: 12.6 against
# 11.0 s for the first training call of 784-256-256-10).


@njit(cache=True)
def member_epoch(params, grad, net, data, order, batch, buf, opt, seed, out):
    """One epoch of one network of a population: :func:`epoch` with dropout seed ``seed``, the
    hand-written loops only (no BLAS: no second thread pool inside a parallel loop, and the
    same code on the CPU and a GPU thread) and no L2 penalty. Records as plain tuples or named
    tuples; ``out`` as in :func:`epoch`."""
    epoch(borrow(params), borrow(grad), reseed(lend_net(net), seed, NO_BLAS, NO_BLAS),
          lend_data(data), borrow(order), batch, lend_buffers(buf), lend_opt(opt), out, 0.0)


# ---------------------------------------------------------------------------------------------
# a batch split into row chunks, one thread each
# ---------------------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def n_chunks(split, start, stop):
    """How many chunks the batch ``[start, stop)`` is split into: all of ``split``'s (the rows
    of ``G``) from ``min_rows`` rows on, else 1 (the batch whole, bitwise as
    :func:`batch_gradient`)."""
    return split[0].shape[0] if stop - start >= split[5] else 1


@njit(inline="always", cache=True)
def chunk_rows(start, stop, c, C):
    """Rows ``[lo, hi)`` of chunk ``c`` of ``C`` of ``[start, stop)``: contiguous, in order,
    sizes differing by at most one."""
    n = stop - start
    return start + (n * c) // C, start + (n * (c + 1)) // C


@njit(inline="always", cache=True)
def _part(a, lo, hi):
    """``a[lo:hi]`` borrowed, or ``a`` itself when it is an empty (unused) optimizer slot."""
    return span(a, lo, hi - lo) if a.shape[0] else a


@njit(cache=True)
def chunk_gradient(params, net, data, order, start, stop, split, c, step):
    """Chunk ``c`` of the batch ``order[start:stop]`` (:func:`chunk_rows`): its mean loss into
    ``split.vals[c]`` and the gradient of that mean into row ``c`` of ``split.G``, on workspace
    ``c``. Records as plain tuples (a ``prange`` body cannot hold named tuples).

    Called, not inlined, in :func:`chunk_losses`' ``prange``: inlined there, its store into
    ``split.vals`` was lost (the parallel loop's dead-code elimination, see above
    :func:`member_epoch`; ``tests/test_split_step.py`` caught it); :func:`team_task` inlines
    :func:`_chunk_gradient`, the same code."""
    _chunk_gradient(params, net, data, order, start, stop, split, c, step)


@njit(inline="always", cache=True)
def _chunk_gradient(params, net, data, order, start, stop, split, c, step):
    """:func:`chunk_gradient`'s body.

    Tried on 2026-12-07 and not kept: asking here for every line of the parameters (with the
    rows, before the forward pass), so that the part the other thread has just updated would
    cross between the cores at once rather than as BLAS reaches it. No difference shown: a
    digits fit of ``MLPClassifier`` (100 epochs, float32; the fastest of 15 fits in each of
    five pairs of alternating processes) took 49.3-50.5 against 49.2-50.4 ms with adam and
    48.8-49.5 against 48.6-50.4 ms with sgd."""
    params, order = borrow(params), borrow(order)
    net, data, split = lend_net(net), lend_data(data), lend_split(split)
    G, WS, LB = lent(split, "G"), lent(split, "WS"), lent(split, "LB")
    lo, hi = chunk_rows(start, stop, c, n_chunks(split, start, stop))
    t = stamp()
    prefetch_rows(data, order, lo + stop - start, hi + stop - start)  # this chunk's next rows
    lap(t, GATHER)
    buf = Buffers(row(WS, c), lent(split, "offs"), row(LB, c))
    # no fused update, in the parameters' dtype as in epoch: one backward for both
    split.vals[c] = batch_gradient(params, row(G, c), net, data, order, lo, hi, buf, step,
                                   params.dtype.type(0.0), 0.0)


@njit(cache=True)
def combine_chunks(grad, split, start, stop, part, parts):
    """Part ``part`` of ``parts`` of the batch gradient: ``grad = sum_c (B_c / B) G[c]`` over
    the chunks in order (``B_c`` rows of the batch's ``B``, the weight rounded to the
    parameter dtype; with two equal chunks it is exactly 1/2)."""
    grad, split = borrow(grad), lend_split(split)
    G = lent(split, "G")
    C = n_chunks(split, start, stop)
    lo, hi = chunk_rows(0, grad.shape[0], part, parts)
    # views from 0: an index counted from lo may be negative as far as LLVM knows, and the
    # wraparound of a negative index kept these loops scalar (half of 64-100-10's parameters,
    # two chunks, float32, one thread: 5.4 against 0.4 us)
    out = span(grad, lo, hi - lo)
    for c in range(C):
        a, b = chunk_rows(start, stop, c, C)
        w = grad.dtype.type((b - a) / (stop - start))
        g = span(row(G, c), lo, hi - lo)
        if c == 0:
            for i in range(hi - lo):
                out[i] = w * g[i]
        else:
            for i in range(hi - lo):
                out[i] += w * g[i]


@njit(inline="always", cache=True)
def update_part(opt, params, grad, t, part, parts):
    """:func:`~dlbasics.kernels.optimizers.apply_update` of record ``opt`` (a plain tuple) at
    update count ``t`` on part ``part`` of ``parts`` of the parameters (every rule is
    elementwise: the parts give the bits of one whole update)."""
    params, grad, opt = borrow(params), borrow(grad), lend_opt(opt)
    lo, hi = chunk_rows(0, params.shape[0], part, parts)
    apply_update(opt.code, span(params, lo, hi - lo), span(grad, lo, hi - lo),
                 _part(lent(opt, "s1"), lo, hi), _part(lent(opt, "s2"), lo, hi),
                 _part(lent(opt, "s3"), lo, hi), t, lent(opt, "hp"))


@njit(inline="always", cache=True)
def _prefetch_part(params, split, part, parts):
    """Ask for part ``part`` of ``parts`` of the chunk gradients (lines the other threads just
    wrote) and, to be written, of the parameters (lines the other threads just read), all at
    once: each line otherwise crosses between the cores when its turn comes, one after the
    other (20-100-4 at 200 rows: 1 to 2 us a batch less, of 27 to 29)."""
    G = lent(lend_split(split), "G")
    lo, hi = chunk_rows(0, params.shape[0], part, parts)
    step = 64 // params.itemsize
    for i in range(lo, hi, step):
        prefetch_write(params, i, 0)
        for c in range(G.shape[0]):
            prefetch(G, c, i * G.itemsize)


@njit(inline="always", cache=True)
def combine_update_part(opt, params, grad, split, start, stop, t, layout, scale, part, parts):
    """Part ``part`` of ``parts`` of the step after the chunk gradients, in one task, a pass
    each over the part: :func:`combine_chunks`, the L2 penalty's gradient (``scale > 0``,
    :func:`l2_grad_part`) and :func:`update_part` at update count ``t``; every operation is
    elementwise and in the order of the whole step, so the parts give its bits.

    Tried on 2026-12-07 and not kept: the three passes as one for plain SGD, momentum,
    Nesterov and Adam (each element's gradient formed and used in registers; the same bits,
    ``tests/test_split_step.py``). With every array in one core's cache it was faster, half of
    64-100-10's parameters (3,755, float32, two chunks, the penalty) 1.86-1.90 against
    2.11-2.39 us with Adam and 0.95-1.01 against 1.53-1.63 us with Nesterov (two timings
    each), but not in the team, where the other chunk's gradient comes from the other core: a
    digits fit of ``MLPClassifier`` (100 epochs, float32; the fastest of 15 fits in each of six
    pairs of alternating processes) took 52.0-56.3 against 50.1-74.3 ms with adam, the
    baseline faster in five pairs (its 74.3 in one of the machine's slow spells), and
    49.3-51.9 against 49.2-74.8 ms with sgd, no difference shown (two baselines at 71.3 and
    74.8 ms in slow spells). The phase probes put the update at 0.137-0.139 against
    0.128-0.130 thread-ms an epoch (at other moments), about 0.45 ms a fit on two threads:
    under half of adam's difference. Presumably the separate first pass takes the other core's
    lines at the pace of plain loads, where the fused pass waits on them between square roots
    and divisions (not measured)."""
    _prefetch_part(params, split, part, parts)
    combine_chunks(grad, split, start, stop, part, parts)
    if scale > 0.0:
        lo, hi = chunk_rows(0, grad.shape[0], part, parts)
        l2_grad_part(borrow(params), borrow(grad), borrow(layout), scale, lo, hi)
    update_part(opt, params, grad, t, part, parts)


@njit(inline="always", cache=True)
def chunk_losses(params, net, data, order, start, stop, split, step):
    """The chunks' gradients into the rows of ``split.G`` (:func:`chunk_gradient`, a
    ``prange``: one thread each in a caller compiled with ``parallel=True``, one after another
    otherwise) and the batch's mean loss (the chunks' means weighted by their rows, in float64,
    in chunk order). Records as plain tuples."""
    C = split[0].shape[0]
    for c in prange(C):
        # np.intp: a parallel loop's body types its index as uint64, a serial caller's as
        # int64; one type compiles chunk_gradient once, not twice
        if c < n_chunks(split, start, stop):
            chunk_gradient(params, net, data, order, start, stop, split, np.intp(c), step)
    return chunks_value(split, start, stop)


@njit(inline="always", cache=True)
def chunks_value(split, start, stop):
    """The batch's mean loss from its chunks' means (``split.vals``) weighted by their rows,
    in float64, in chunk order."""
    vals = split[4]
    value = 0.0
    C = n_chunks(split, start, stop)
    for c in range(C):
        a, b = chunk_rows(start, stop, c, C)
        value += (b - a) / (stop - start) * vals[c]
    return value


@njit(inline="always", cache=True)
def split_gradient(params, grad, net, data, order, start, stop, split, step, alpha):
    """Mean loss of rows ``order[start:stop]`` and its gradient into ``grad``, the rows split
    into chunks (:func:`n_chunks`, :func:`chunk_rows`), each on its own thread
    (:func:`chunk_losses`), then combined part by part (:func:`combine_chunks`); ``alpha > 0``
    adds the L2 penalty. Records as plain tuples.

    The bits do not depend on the number of threads. They are not those of the batch taken
    whole (each chunk sums its own rows; the chunk sums are then added), except for a batch
    under ``min_rows`` rows, which is one chunk: :func:`batch_gradient`'s bits. No dropout
    (a chunk numbers its rows from 0, so its masks would not be the whole batch's) and no
    fused SGD update: the callers check.
    """
    C = split[0].shape[0]
    value = chunk_losses(params, net, data, order, start, stop, split, step)
    for h in prange(C):
        combine_chunks(grad, split, start, stop, np.intp(h), C)  # np.intp: see chunk_losses
    if alpha > 0.0:
        layout, scale = Net(*net).layout, alpha / (stop - start)
        l2_grad_part(params, grad, layout, scale, np.intp(0), params.shape[0])
        value += l2_value_split(params, layout, scale, n_chunks(split, start, stop))
    return value


#: Slots of a team's counters (:func:`split_epoch`): tasks claimed, tasks done, the first
#: batch whose loss was not finite (the batch count while none), tasks that raised.
CLAIMED, DONE, BAD, FAILED = 0, 1, 2, 3
#: Slots of a team's float64 results: the loss sum, then from ``PENALTY`` on the batch's sums of
#: squares of the weights, one a chunk task (:func:`l2_squares_part`).
TOTAL, PENALTY = 0, 1
#: Spins with the CPU's pause hint before a waiting thread starts yielding its core.
SPINS_BEFORE_YIELD = 4000


@njit(inline="always", cache=True)
def wait_until(counters, slot, target):
    """Spin until ``counters[slot] >= target`` (:func:`~dlbasics.kernels.atomics.load_acquire`:
    the writes made before the count are then seen), yielding the core after
    :data:`SPINS_BEFORE_YIELD` spins."""
    spins = 0
    while load_acquire(counters, slot) < target:
        if spins < SPINS_BEFORE_YIELD:
            spin_pause()
            spins += 1
        else:
            yield_cpu()


@njit(inline="always", cache=True)
def _batch_value(split, start, stop, alpha, results):
    """The batch's mean loss from its chunks' (:func:`chunks_value`) plus the L2 penalty from
    the parts' sums of squares that the chunk tasks stored (``alpha > 0``; added as
    :func:`l2_value_split` adds them)."""
    value = chunks_value(split, start, stop)
    if alpha > 0.0:
        squares = 0.0
        for c in range(n_chunks(split, start, stop)):
            squares += results[PENALTY + c]
        value += _half_scaled(squares, alpha / (stop - start))
    return value


@njit(inline="always", cache=True)
def team_task(k, params, grad, net, data, order, batch, split, opt, alpha, counters, results):
    """Task ``k`` of :func:`team_worker`'s epoch: phase ``k // C``, task ``k % C`` of it (``C``
    the chunk count). Even phases: the gradient of chunk ``c`` of batch ``phase // 2``
    (:func:`chunk_gradient`'s code, inlined: :func:`_chunk_gradient`; with an L2 penalty also
    the sum of squares of part ``c`` of the weights before the update,
    :func:`l2_squares_part`, as many parts as chunks). Odd phases:
    part ``c`` of the update (:func:`combine_update_part`); task 0 adds the batch's loss times
    its rows to ``results[TOTAL]``, batch by batch in order. The update tasks of a batch whose
    loss is not finite write nothing but, task 0, the batch number (``counters[BAD]``) and the
    loss; the tasks after it do nothing. Records as plain tuples."""
    params, grad, order = borrow(params), borrow(grad), borrow(order)
    counters, results = borrow(counters), borrow(results)
    C = split[0].shape[0]
    layout = borrow(net[0])
    t0 = opt[5]
    n = order.shape[0]
    n_batches = (n + batch - 1) // batch
    phase = k // C
    c = k - phase * C
    b = phase // 2
    if b >= load_acquire(counters, BAD):
        return
    start = b * batch
    stop = min(start + batch, n)
    scale = alpha / (stop - start)
    if phase % 2 == 0:
        P = n_chunks(split, start, stop)
        if c < P:
            _chunk_gradient(params, net, data, order, start, stop, split, c, t0 + b)
            if alpha > 0.0:  # from the weights before the update
                t = stamp()
                results[PENALTY + c] = l2_squares_part(params, layout, c, P)
                lap(t, UPDATE)
        return
    value = _batch_value(split, start, stop, alpha, results)
    if not math.isfinite(value):
        if c == 0:
            results[TOTAL] = value
            fetch_add(counters, BAD, b - n_batches)  # BAD: n_batches -> b
        return
    t = stamp()
    combine_update_part(opt, params, grad, split, start, stop, t0 + b + 1, layout, scale, c, C)
    lap(t, UPDATE)
    if c == 0:
        results[TOTAL] += value * (stop - start)


@njit(cache=True)
def team_worker(params, grad, net, data, order, batch, split, opt, alpha, counters, results):
    """One thread of :func:`split_epoch`: claims the epoch's tasks in order and runs them
    (:func:`team_task`).

    The epoch is a sequence of phases, two a batch: the chunks' gradients and the update in
    parts. Each phase has ``C`` tasks (the chunk count), numbered in phase order; a thread
    claims the next number (``counters[CLAIMED]``), waits until every task of the phases
    before is done (``counters[DONE]``), runs it and counts it done. A thread that finds no
    task left returns. However many threads run, and in whatever order, each task runs once
    after all earlier phases: one thread alone runs them all in turn (nothing waits on a
    thread that has not started), and the results are bitwise those of the batch loop with a
    parallel region per phase.

    A task that raises is counted done and in ``counters[FAILED]`` (its error is lost), and no
    task runs after it: the other threads would otherwise wait for it for ever.
    :func:`team_checks` raises, before the threads start, the errors the step itself would.
    Records as plain tuples.
    """
    C = split[0].shape[0]
    n_batches = (order.shape[0] + batch - 1) // batch
    tasks = 2 * n_batches * C
    t = stamp()
    while True:
        k = fetch_add(counters, CLAIMED, 1)
        if k >= tasks:
            lap(t, WAITING)
            return
        wait_until(counters, DONE, (k // C) * C)
        lap(t, WAITING)
        if load_acquire(counters, FAILED) == 0:
            try:
                team_task(k, params, grad, net, data, order, batch, split, opt, alpha,
                          counters, results)
            except Exception:  # any error: see the docstring
                fetch_add(counters, FAILED, 1)
        t = stamp()
        fetch_add(counters, DONE, 1)


@njit(cache=True)
def team_checks(net, data, opt):
    """Raise the ``ValueError`` that a task of :func:`split_epoch` would raise, before its
    threads start (a task that raises stops the epoch without its message): an unknown loss
    code, integer labels without a cross-entropy loss, an unknown activation code (softmax
    only on the output layer) and an unknown optimizer rule. Records as plain tuples."""
    codes = net[1]
    check_loss_code(net[5], data[3])
    L = codes.shape[0]
    for l in range(L):
        if not 0 <= codes[l] < N_ACT_CODES or (codes[l] == SOFTMAX and l < L - 1):
            raise ValueError("act_flat: unknown (or softmax) activation code")
    if not 0 <= opt[0] < N_OPT_CODES:
        raise ValueError("apply_update: unknown optimizer rule code")


@njit(cache=True)
def team_state(n_batches, parts):
    """Fresh counters and results of :func:`team_worker` (``parts``: the chunk count).
    Allocated here, not in the parallel caller: Numba 0.68 turns an ``np.zeros`` there into a
    parallel loop of its own, and the caller's reads after the ``prange`` then missed what the
    threads wrote (the counters read back as zeros)."""
    counters = np.zeros(4, np.int64)
    counters[BAD] = n_batches
    return counters, np.zeros(PENALTY + parts)


@njit(inline="always", cache=True)
def split_epoch(params, grad, net, data, order, batch, split, opt, out, alpha):
    """:func:`epoch` with each batch split into row chunks (:func:`chunk_losses`) and the rest
    of the step (combining the chunks, the L2 penalty, the update) applied in as many
    parameter parts (:func:`combine_update_part`), one thread each. The threads stay in one
    parallel region for the whole epoch and meet between the phases through atomic counters
    (:func:`team_worker`) instead of a region per phase (1.2-2.6 us each on the 2-core
    benchmark machine; 20-100-4 at 200 rows went from 32 to 27 us a batch with this and the
    prefetching of :func:`prefetch_rows` and :func:`_prefetch_part` together; one chunk's
    work alone is 23 us). The bits are those of
    :func:`split_gradient` followed by the update, batch after batch. Records as plain
    tuples; ``out`` as in :func:`epoch`."""
    C = split[0].shape[0]
    n = order.shape[0]
    n_batches = (n + batch - 1) // batch
    team_checks(net, data, opt)
    counters, results = team_state(n_batches, C)
    for _w in prange(C):
        team_worker(params, grad, net, data, order, batch, split, opt, alpha, counters, results)
    team_out(counters, results, n, batch, out)


@njit(cache=True)
def team_out(counters, results, n, batch, out):
    """``out`` as :func:`epoch` writes it, from the counters and results of the
    :func:`team_worker` threads of an epoch of ``n`` rows in batches of ``batch``."""
    if counters[FAILED]:
        raise ValueError("split_epoch: a task raised an error (its message is lost in the "
                         "threads); the parameters may be partly updated")
    n_batches = (n + batch - 1) // batch
    bad = counters[BAD]
    out[0] = results[TOTAL]
    out[1] = bad
    out[2] = min(n, (bad + 1) * batch)
    out[3] = 1.0 if bad < n_batches else 0.0
