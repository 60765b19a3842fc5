"""CPU entry points of the MLP: batch gradient, a whole epoch, prediction, evaluation, Monte-Carlo
dropout and a population, each one compiled call around the shared step of
:mod:`dlbasics.kernels.network` (gather, forward with dropout, loss, backward, update; the
records :class:`Net`, :class:`Data`, :class:`Buffers` and :class:`Opt` are defined there and
re-exported here).

The general path (``MLP.gradient`` plus a Python loop over mini-batches) and the fused epoch
call the same functions in the same order, so both give bitwise-equal results. Each entry point
takes its records as plain tuples (built by :func:`net_record` and friends) and lends them
once (:func:`~dlbasics.kernels.network.lend_net` and friends). :class:`Population` is the
record of :func:`population_epoch_kernel`'s per-network arrays.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit, prange

from ..kernels.atomics import fetch_add, load_acquire
from ..kernels.colsplit import COL_PARTS, cols_worker
from ..kernels.losses import loss_dense_kernel, loss_labels_kernel
from ..kernels.network import (
    BAD,
    DONE,
    FAILED,
    NO_BLAS,
    PENALTY,
    Buffers,
    Data,
    Net,
    Opt,
    Split,
    batch_gradient,
    epoch,
    forward,
    gather,
    lend_buffers,
    lend_data,
    lend_net,
    lend_opt,
    member_epoch,
    reseed,
    row_hits,
    split_epoch,
    split_gradient,
    team_checks,
    team_out,
    team_task,
    wait_until,
)
from ..kernels.optimizers import SGD_CODE
from ..kernels.probes import WAITING, lap, stamp
from ..kernels.views import borrow, grid, lent, row
from ._mt19937 import mt_shuffle
from ._threads import run_blocks

__all__ = ["Net", "Data", "Buffers", "Opt", "Split", "Population", "NO_BLAS", "net_record",
           "data_record", "buffers_record", "opt_record", "batch_gradient_kernel", "epoch_kernel",
           "split_gradient_kernel", "split_epoch_kernel", "split_epochs_kernel", "epochs_rule",
           "NO_SHUFFLE",
           "cols_epoch_kernel",
           "predict_kernel", "evaluate_kernel", "mc_forward_kernel", "population_epoch_kernel",
           "population_epoch_serial"]

#: K networks of one architecture, row ``k`` of each array belonging to network ``k``:
#: parameters, gradients, workspaces, label buffers, visiting orders, dropout seeds, optimizer
#: codes, hyper-parameters, slots, update counts, which networks train, and their records.
Population = namedtuple("Population", ["P", "G", "WS", "LB", "orders", "seeds", "codes", "HP",
                                       "S1", "S2", "S3", "T0", "active", "OUT"])


# The Python side passes records as plain tuples in the field order of the named tuples above:
# Numba's dispatcher types a plain tuple in C (about 0.6 us for a record of five fields) and a
# named tuple through Python (about 1.7 us). Compiled code turns them into named tuples (lend_*).


def net_record(model, min_rows, min_work, own_rows=None, own_work=None):
    """The :class:`Net` of ``model`` (a plain tuple) with BLAS thresholds ``min_rows``/
    ``min_work`` and, for the products BLAS would take, those that run through
    :mod:`dlbasics.kernels.smallgemm` instead: fewer than ``own_rows`` rows through a layer of
    at least ``own_work`` weights (``None``: none, and the compiled code holds no such
    product; see :func:`dlbasics.kernels.network.own_products`)."""
    return (model.layout, model.codes, model.keep, model.dropout == "inverted", model.slope,
            model.loss_code, model.fused, model.eps, model.seed, min_rows, min_work, own_rows,
            own_work)


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
def batch_gradient_kernel(params, grad, net, data, order, start, stop, buf, step, sgd_lr=0.0,
                          alpha=0.0):
    """Mean loss of rows ``order[start:stop]`` and its gradient (training mode); with
    ``sgd_lr > 0`` on one row, the SGD update instead, the rate rounded to the parameters'
    dtype first (as the fused epoch passes it and :func:`~dlbasics.kernels.optimizers.
    sgd_kernel` rounds it: the same bits as the gradient followed by that kernel); ``alpha > 0``
    adds the L2 penalty of the weights (see :func:`dlbasics.kernels.network.batch_gradient`).
    """
    params, grad, order = borrow(params), borrow(grad), borrow(order)
    net, data, buf = lend_net(net), lend_data(data), lend_buffers(buf)
    # the rate in the parameters' dtype, as the fused epoch passes it (and as sgd_kernel
    # rounds it): the backward pass is then compiled once for both
    lr = params.dtype.type(sgd_lr)
    return batch_gradient(params, grad, net, data, order, start, stop, buf, step, lr, alpha)


@njit(cache=True)
def epoch_kernel(params, grad, net, data, order, batch, buf, opt, out, alpha=0.0):
    """A whole epoch of mini-batch gradient descent in one call: the shared step's
    :func:`dlbasics.kernels.network.epoch` on the records ``net``, ``data``, ``buf`` and ``opt``
    (plain tuples), writing ``out[0..3]`` = loss sum weighted by batch rows, updates done, rows
    processed, 1.0 if a loss was non-finite; ``alpha``: the L2 penalty of each batch."""
    # Borrowed arrays: the per-batch calls below then do no reference counting (see
    # dlbasics.kernels.views; bitwise the same results).
    epoch(borrow(params), borrow(grad), lend_net(net), lend_data(data), borrow(order), batch,
          lend_buffers(buf), lend_opt(opt), out, alpha)


@njit(cache=True, parallel=True)
def split_gradient_kernel(params, grad, net, data, order, start, stop, split, step, alpha=0.0):
    """:func:`batch_gradient_kernel` with the rows split into chunks, one thread each
    (:func:`dlbasics.kernels.network.split_gradient`; ``split`` a plain :class:`Split` tuple)."""
    return split_gradient(params, grad, net, data, order, start, stop, split, step, alpha)


#: Fields of the ``rule`` vector (float64) of :func:`split_epochs_kernel`: what the caller
#: sets (the epochs to run at most; scikit-learn's stopping rule: ``tol``, ``n_iter_no_change``
#: (negative: no rule), the best loss so far and the epochs without improvement, which the
#: kernel updates) and what the kernel reports (epochs run to the end, updates made, why it
#: stopped: :data:`RAN_ALL`, :data:`CONVERGED` or :data:`DIVERGED`).
(RULE_EPOCHS, RULE_TOL, RULE_PATIENCE, RULE_BEST, RULE_COUNT, RULE_RUN, RULE_DONE,
 RULE_STOP) = range(8)
RULE_SIZE = 8
RAN_ALL, CONVERGED, DIVERGED = 0, 1, 2


def epochs_rule(epochs, tol=0.0, patience=-1.0, best=np.inf, count=0):
    """A ``rule`` vector of :func:`split_epochs_kernel`: at most ``epochs`` epochs, stopping as
    scikit-learn's stochastic solvers do when ``patience >= 0``."""
    rule = np.zeros(RULE_SIZE)
    rule[RULE_EPOCHS] = epochs
    rule[RULE_TOL] = tol
    rule[RULE_PATIENCE] = patience
    rule[RULE_BEST] = best
    rule[RULE_COUNT] = count
    return rule


#: The shuffle record of :func:`split_epochs_kernel` that shuffles nothing (the caller orders
#: the rows): an empty MT19937 key.
NO_SHUFFLE = (np.zeros(0, np.uint32), np.zeros(1, np.int64), np.zeros(0, np.uint32))


@njit(cache=True, parallel=True)
def split_epoch_kernel(params, grad, net, data, order, batch, split, opt, out, alpha):
    """:func:`epoch_kernel` with each batch split into row chunks and the update into as many
    parts, one thread each (:func:`dlbasics.kernels.network.split_epoch`, the threads of a
    ``prange``; records as plain tuples, ``split`` a :class:`Split`). One epoch a call: the
    ``train`` loop's; :func:`split_epochs_kernel` runs many in one call."""
    split_epoch(params, grad, net, data, order, batch, split, opt, out, alpha)


#: Slots of the counters of :func:`split_epochs_worker` after the team's (``CLAIMED`` to
#: ``FAILED``, of which it uses ``DONE``, ``BAD`` and ``FAILED``): the updates of the call's
#: epochs before the current one, and 1 once the epochs end.
EPOCHS_UPDATES, EPOCHS_END = 4, 5
EPOCHS_SLOTS = 6


@njit(cache=True)
def epochs_boundary(e, order, batch, out, shuffle, rule, losses, counters, results):
    """The serial task between the epochs of :func:`split_epochs_worker`, before epoch ``e``
    (``e`` = ``rule[RULE_EPOCHS]``: after the last). After an epoch (``e > 0``): its ``out``
    (:func:`dlbasics.kernels.network.team_out`), its updates counted, its running loss into
    ``losses[e - 1]`` and scikit-learn's rule (:func:`split_epochs_kernel`); where the epochs
    end (the last, a diverged epoch or the rule), ``rule``'s report and
    ``counters[EPOCHS_END]``. Before an epoch: ``order`` shuffled (a non-empty ``shuffle``
    key), the team's counters and results of the epoch cleared."""
    n = order.shape[0]
    epochs = np.intp(rule[RULE_EPOCHS])
    stop = RAN_ALL
    if e > 0:
        team_out(counters, results, n, batch, out)
        counters[EPOCHS_UPDATES] += np.int64(out[1])
        if out[3] != 0.0:
            stop = DIVERGED
        else:
            loss = out[0] / out[2]
            losses[e - 1] = loss
            if rule[RULE_PATIENCE] >= 0.0:
                if loss > rule[RULE_BEST] - rule[RULE_TOL]:
                    rule[RULE_COUNT] += 1.0
                else:
                    rule[RULE_COUNT] = 0.0
                rule[RULE_BEST] = min(rule[RULE_BEST], loss)
                if rule[RULE_COUNT] > rule[RULE_PATIENCE]:
                    stop = CONVERGED
    if stop != RAN_ALL or e == epochs:
        rule[RULE_RUN] = e - 1 if stop == DIVERGED else e
        rule[RULE_DONE] = counters[EPOCHS_UPDATES]
        rule[RULE_STOP] = stop
        counters[EPOCHS_END] = 1
        return
    key, pos, words = shuffle
    if key.shape[0] != 0:
        mt_shuffle(key, pos, order, words)
    counters[BAD] = (n + batch - 1) // batch
    results[:] = 0.0


@njit(cache=True, nogil=True)
def split_epochs_worker(first, last, params, grad, net, data, order, batch, split, opt, out,
                        alpha, shuffle, rule, losses, counters, results):
    """One thread of :func:`split_epochs_kernel`: the tasks of chunks and parts ``first`` to
    ``last - 1`` (the block of :func:`dlbasics.models._threads.run_blocks`) of every phase of
    every epoch, and with ``first == 0`` the serial task between the epochs
    (:func:`epochs_boundary`). The tasks are :func:`dlbasics.kernels.network.team_task`'s, in
    the order of its epoch, numbered on across the epochs (each epoch's boundary first);
    each runs after every task numbered before it (``counters[DONE]``,
    :func:`~dlbasics.kernels.network.wait_until`), so the bits are those of
    :func:`split_epoch_kernel`'s epochs one after another. One thread alone runs every task in
    turn. A task that raises is counted in ``counters[FAILED]`` and no task runs after it (its
    error is lost: :func:`~dlbasics.kernels.network.team_checks` raises the step's own errors
    before the threads start). Records as plain tuples; ``counters`` and ``results`` as
    :func:`split_epochs_kernel` makes them."""
    C = split[0].shape[0]
    n_batches = (order.shape[0] + batch - 1) // batch
    per_epoch = 1 + 2 * n_batches * C
    code, hp, s1, s2, s3, count = opt
    epochs = np.intp(rule[RULE_EPOCHS])
    for e in range(epochs + 1):
        base = e * per_epoch
        t = stamp()
        if first == 0:
            wait_until(counters, DONE, base)
            if load_acquire(counters, FAILED) == 0:
                try:
                    epochs_boundary(e, order, batch, out, shuffle, rule, losses, counters,
                                    results)
                except Exception:  # any error: see the docstring
                    fetch_add(counters, FAILED, 1)
            fetch_add(counters, DONE, 1)
        wait_until(counters, DONE, base + 1)
        lap(t, WAITING)
        if counters[EPOCHS_END] != 0 or load_acquire(counters, FAILED) != 0:
            return
        epoch_opt = (code, hp, s1, s2, s3, count + counters[EPOCHS_UPDATES])
        for phase in range(2 * n_batches):
            t = stamp()
            wait_until(counters, DONE, base + 1 + phase * C)
            lap(t, WAITING)
            for c in range(first, last):
                if load_acquire(counters, FAILED) == 0:
                    try:
                        team_task(phase * C + c, params, grad, net, data, order, batch, split,
                                  epoch_opt, alpha, counters, results)
                    except Exception:  # any error: see the docstring
                        fetch_add(counters, FAILED, 1)
                fetch_add(counters, DONE, 1)


def _team_abort(counters):
    """The ``abort`` of :func:`~dlbasics.models._threads.run_blocks` for a team that meets
    through ``counters`` (:func:`split_epochs_worker`, :func:`~dlbasics.kernels.colsplit.
    cols_worker`): a failed task and every task counted done, so that the other threads run
    nothing more and stop waiting."""

    def abort():
        counters[FAILED] = 1
        counters[DONE] = 1 << 62

    return abort


def split_epochs_kernel(params, grad, net, data, order, batch, split, opt, out, alpha, shuffle,
                        rule, losses, threads=None):
    """Up to ``rule[RULE_EPOCHS]`` epochs of :func:`split_epoch_kernel` in one call, their
    threads Python threads (:func:`dlbasics.models._threads.run_blocks` of
    :func:`split_epochs_worker`, which releases the GIL) that stay together from the first
    epoch to the last; ``threads`` as ``run_blocks`` takes it. The drop-in estimators' ``fit``.

    Before each epoch ``order`` is shuffled in place as ``RandomState.shuffle`` would
    (:func:`~dlbasics.models._mt19937.mt_shuffle` on ``shuffle = (key, pos, words)``; an empty
    ``key``: not shuffled). After each, ``losses[e]`` = its running loss (``out[0] / out[2]``); an
    epoch with a non-finite batch loss ends the call (:data:`DIVERGED`); with
    ``rule[RULE_PATIENCE] >= 0`` scikit-learn's rule follows: an epoch whose loss is not below
    the best loss minus ``tol`` counts, any other resets the count, and more than ``patience``
    counted epochs in a row end the call (:data:`CONVERGED`). ``out`` is the last epoch's (as
    :func:`epoch_kernel` writes it); ``rule``'s last fields what the call did.

    Why not a ``prange`` (as :func:`split_epoch_kernel`): Numba builds the code of the
    functions a ``prange`` calls again in the parallel loop's function and in its caller (see
    :mod:`dlbasics.models._threads`). The first ``fit`` of a default ``MLPClassifier`` on
    digits with an empty cache (2 cores, whole process after the imports, alternating
    processes) took 24.0 and 24.1 s on threads against 34.8 and 36.4 s with these epochs in a
    ``prange`` kernel. The threads cost 30-90 us a call to start and join (32-55 us here;
    the ``train`` loop's epochs, one a call, keep the ``prange``), which the epochs of a call
    share, and the epochs pay no parallel region each: a digits epoch took 486 us on threads
    against 494 us in the ``prange`` kernel (the slope of the fastest of 10 fits over 10 and
    100 epochs). The epochs of a ``fit`` in a few calls spare its Python between epochs (about
    45 us an epoch, a tenth of a digits epoch on the benchmark machine). The fits that take the
    ``train`` loop instead (``early_stopping``, ``verbose``, ``partial_fit``, a varying sgd
    rate) compile the ``prange`` kernel apart (with the default fit's kernels in the cache,
    an ``early_stopping`` digits fit took 15 s, against about 1 s when both were one).

    Tried on 2026-12-07 and not kept: one meeting a batch instead of two. Each thread kept a
    copy of its own of the parameters and of the optimizer's state and applied the whole
    update itself once every chunk gradient was in, the chunk gradients double-buffered so that
    a thread could start the next batch while the other still read them. The bits were the
    same (30-epoch digits fits, adam and sgd, with and without L2: every weight and the loss
    curve). A digits fit of ``MLPClassifier`` (100 epochs, float32) took 50.3 against 51.1 ms
    with adam and 48.8 against 50.1 ms with sgd: the fastest of 15 fits in each of nine
    alternating pairs of processes on the 2-core benchmark machine. In the phase probes, each
    thread's whole update (it still reads the other thread's chunk gradient) took about as long
    as its half had (13 against 12 thread-ms a fit, for both threads), and the one meeting
    waited longer than the two had. A gain of 1.6-2.6% did not pay for a second worker and a
    second copy of the state (and a wide network would have updated all its weights twice)."""
    team_checks(net, data, opt)
    counters = np.zeros(EPOCHS_SLOTS, np.int64)
    results = np.zeros(PENALTY + split[0].shape[0])
    run_blocks(split_epochs_worker, split[0].shape[0], params, grad, net, data, order, batch,
               split, opt, out, alpha, shuffle, rule, losses, counters, results, threads=threads,
               abort=_team_abort(counters))
    if counters[FAILED]:
        raise ValueError("split_epochs_kernel: a task raised an error (its message is lost in "
                         "the threads); the parameters may be partly updated")


def cols_epoch_kernel(params, grad, net, data, order, batch, buf, opt, out, cols, threads=None):
    """:func:`epoch_kernel` with each layer's units split into
    :data:`~dlbasics.kernels.colsplit.COL_PARTS` parts, one thread each
    (:mod:`dlbasics.kernels.colsplit`). ``cols = (base, n_max, packed, poffs)``: ``buf``'s
    workspace holds the parts' partial products from element ``base`` on (``n_max`` the widest
    input of a layer but the first), and each part trains its columns in ``packed`` at the
    offsets ``poffs`` (:func:`~dlbasics.kernels.colsplit.packed_layout`; copied there and back
    by each epoch); ``threads`` as for :func:`~dlbasics.models._threads.run_blocks`. Records
    as plain tuples; ``out`` as in :func:`epoch_kernel`. Plain SGD only (``ValueError``
    otherwise), no dropout, no L2 penalty."""
    if opt[0] != SGD_CODE:
        raise ValueError(f"cols_epoch_kernel: the column split trains with plain SGD (rule code "
                         f"{SGD_CODE}), got rule code {opt[0]}")
    if np.any(np.asarray(net[2]) < 1.0):
        raise ValueError("cols_epoch_kernel: the column split has no dropout (net keep "
                         "probabilities must all be 1)")
    X = data[0]
    if X.dtype != params.dtype or not X.flags.c_contiguous:
        raise ValueError("cols_epoch_kernel: the data's X must be C-contiguous and of the "
                         f"parameters' dtype {params.dtype} (its first layer reads the rows "
                         f"where they lie), got {X.dtype}")
    team_checks(net, data, opt)
    n = order.shape[0]
    counters = np.zeros(4, np.int64)
    counters[BAD] = (n + batch - 1) // batch
    results = np.zeros(3)
    base, n_max, packed, poffs = cols
    run_blocks(cols_worker, COL_PARTS, params, grad, net, data, order, batch, buf, opt, counters,
               results, base, n_max, packed, poffs, threads=threads, abort=_team_abort(counters))
    if counters[FAILED]:
        raise ValueError("cols_epoch_kernel: a task raised an error (its message is lost in the "
                         "threads); the parameters may be partly updated")
    team_out(counters, results, n, batch, out)


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
        forward(params, net, B, buf, np.bool_(False), np.intp(0), np.bool_(True))
        aL = grid(ws, offs[L - 1, 1], B, n_last)
        for i in range(B):
            for j in range(n_last):
                out[start + i, j] = aL[i, j]


@njit(inline="always", cache=True)
def _population_member(k, net, data, batch, offs, pop):
    """Network ``k``'s epoch, :func:`~dlbasics.kernels.network.member_epoch` on row ``k`` of
    each array (the records as plain tuples: a parallel loop cannot take named tuples into its
    body, Numba's parfor lowering fails on their type names)."""
    pop = Population(*pop)
    if pop.active[k]:
        member_epoch(pop.P[k], pop.G[k], net, data, pop.orders[k], batch,
                     (pop.WS[k], offs, pop.LB[k]),
                     (pop.codes[k], pop.HP[k], pop.S1[k], pop.S2[k], pop.S3[k], pop.T0[k]),
                     pop.seeds[k], pop.OUT[k])


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

    A ``prange``, unlike the lane layout's threads
    (:func:`dlbasics.models._lanes.lanes_epoch_kernel`): Numba builds the network code again in
    the parallel loop's function and in this kernel (first epoch with an empty cache, 2-16-16-1,
    K = 8, batch 32: 26.7 s, against 17.9 s for one compiled loop on Python threads), but the
    code it builds there ran faster: 39.5 against 43.4 ms an epoch on one thread, 19.8 against
    21.4-23.5 ms on two (K = 64, batch 1, SGD and Adam alternating, 1,024 rows).
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
    match for softmax outputs and for integer labels, else the fraction of outputs on the right
    side of 0.5 (:func:`~dlbasics.kernels.network.row_hits`).
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
        gather(data, order, start, stop, buf)
        forward(params, net, B, buf, np.bool_(False), np.intp(0), np.bool_(True))
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
                ai = row(aL, i)
                if dense_targets:
                    correct = row_hits(correct, ai, row(yb, i), 0, True, softmax_out)
                else:
                    correct = row_hits(correct, ai, ai, lbuf[i], False, True)
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
            forward(params, net, B, buf, np.bool_(True), s, np.bool_(True))
            aL = grid(ws, offs[L - 1, 1], B, k)
            for i in range(B):
                for j in range(k):
                    out[start + i, j] += aL[i, j] * inv
