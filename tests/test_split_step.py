"""Batches split into row chunks, one thread each (``dlbasics.kernels.network.split_gradient``,
``split_epoch``; the cpu backend from ``split_min_rows()`` rows on).

The whole-network references of ``tests/naive.py`` check the split path too
(``tests/test_network_reference.py``, its ``cpu-split`` variants, in float64 at 1e-12). Here:
the chunks partition the batch, the split's bits do not depend on the thread count (and one
thread runs the batch whole), a batch under
``min_rows`` keeps the bits of the unsplit step, the update in parts keeps the bits of one
whole update for every optimizer rule, dropout and a slow threading layer are not split, and a
diverging split epoch stops as the general loop does.
"""

import re

import numba
import numpy as np
import pytest

import dlbasics.models.backends as backends
from dlbasics.kernels import losses, network
from dlbasics.kernels.activations import ACTIVATIONS
from dlbasics.kernels.config import SPLIT_MIN_ROWS
from dlbasics.kernels.optimizers import apply_update
from dlbasics.models import MLP, SGD, Adam, _core, train
from dlbasics.models.optimizers import OPTIMIZERS, make_optimizer

needs_threads = pytest.mark.skipif(
    not backends.fast_parallel_regions() or numba.config.NUMBA_NUM_THREADS < 2,
    reason="needs two Numba threads and an OpenMP or TBB threading layer to split")


def _problem(dtype, n=600, sizes=(20, 32, 4), seed=0, **kw):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=n)
    model = MLP(list(sizes), activation="relu", output="softmax", loss="cross_entropy",
                dtype=dtype, seed=3, **kw)
    return model, X, y


def test_chunks_partition_the_batch():
    """Contiguous, in order, covering ``[start, stop)`` exactly, sizes differing by at most
    one (hand-checked cases, then every small case)."""
    assert [network.chunk_rows(10, 17, c, 2) for c in range(2)] == [(10, 13), (13, 17)]
    assert [network.chunk_rows(0, 9, c, 3) for c in range(3)] == [(0, 3), (3, 6), (6, 9)]
    for start in range(3):
        for n in range(0, 40):
            for C in range(1, 6):
                parts = [network.chunk_rows(start, start + n, c, C) for c in range(C)]
                assert parts[0][0] == start and parts[-1][1] == start + n
                assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
                sizes = [hi - lo for lo, hi in parts]
                assert max(sizes) - min(sizes) <= 1


def test_splitting_rule():
    """From SPLIT_MIN_ROWS rows on, without dropout, with two threads or more; never with
    dropout or one thread."""
    plain, _, _ = _problem(np.float32)
    dropped, _, _ = _problem(np.float32, keep_prob=0.8)
    if backends.fast_parallel_regions() and numba.get_num_threads() >= 2:
        assert plain.engine.splits(SPLIT_MIN_ROWS) and plain.engine.splits(10_000)
    assert not plain.engine.splits(SPLIT_MIN_ROWS - 1)
    tiny = MLP([2, 16, 16, 1], activation="tanh", output="sigmoid",
               loss="binary_cross_entropy")  # 337 parameters: from 64 rows on
    assert tiny.engine.split_min_rows() == 64 and not tiny.engine.splits(63)
    tinier = MLP([2, 8, 1], activation="tanh", output="sigmoid",
                 loss="binary_cross_entropy")  # 33 parameters: from ceil(16384 / 33) rows on
    assert tinier.engine.split_min_rows() == 497 and not tinier.engine.splits(496)
    assert plain.engine.split_min_rows() == SPLIT_MIN_ROWS
    assert not dropped.engine.splits(SPLIT_MIN_ROWS) and not dropped.engine.splits(10_000)
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert not plain.engine.splits(10_000)
    finally:
        numba.set_num_threads(saved)


def test_slow_threading_layer_is_not_used(monkeypatch):
    """The workqueue layer (about 70 us a parallel region) is never used to split."""
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "workqueue")
    backends.fast_parallel_regions.cache_clear()
    try:
        assert not backends.fast_parallel_regions()
        model, _, _ = _problem(np.float32)
        assert not model.engine.splits(10_000)
    finally:
        monkeypatch.undo()
        backends.fast_parallel_regions.cache_clear()


def _fit(dtype, batch, threads=None, epochs=2, fast=True, **kw):
    model, X, y = _problem(dtype)
    saved = numba.get_num_threads()
    try:
        if threads is not None:
            numba.set_num_threads(threads)
        hist = train(model, X, y, Adam(1e-2), batch_size=batch, epochs=epochs, seed=4,
                     fast=fast, **kw)
    finally:
        numba.set_num_threads(saved)
    return model.params.copy(), hist.train_loss


@needs_threads
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_bits_do_not_depend_on_the_thread_count(dtype):
    """The split epoch kernel on one Numba thread and on two: the same bits (the chunk count
    is a constant, not the thread count)."""
    model, X, y = _problem(dtype)
    Y, labels, dense = model.check_y(y, X.shape[0])
    order = np.random.default_rng(2).permutation(X.shape[0]).astype(np.int64)
    opt = Adam(1e-2)
    p0 = model.params.copy()
    runs = []
    saved = numba.get_num_threads()
    for threads in (1, 2, 1):
        numba.set_num_threads(threads)
        try:
            model.set_params_vector(p0)
            out = np.zeros(4)
            _core.split_epoch_kernel(model.params, model.grad, _core.net_record(model, 8, 1),
                                     _core.data_record(X, Y, labels, dense), order, 250,
                                     model.engine._split(250),
                                     _core.opt_record(opt, opt.init(model.params), model.params),
                                     out, 0.0)
        finally:
            numba.set_num_threads(saved)
        runs.append((model.params.copy(), out.copy()))
    assert runs[0][1][1] == 3 and runs[0][1][2] == X.shape[0]  # 250 + 250 + 100 rows
    for p, out in runs[1:]:
        np.testing.assert_array_equal(p, runs[0][0])
        np.testing.assert_array_equal(out, runs[0][1])


@numba.njit(parallel=True)
def _team_parallel(workers, params, grad, net, data, order, batch, split, opt, alpha, counters,
                   results):
    for _ in numba.prange(workers):
        network.team_worker(params, grad, net, data, order, batch, split, opt, alpha, counters,
                            results)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
def test_team_bits_do_not_depend_on_who_runs_the_tasks(alpha, dtype):
    """The split epoch kernel against its batches one by one (:func:`_core.split_gradient_kernel`
    and the whole update, no team code), and its tasks (:func:`network.team_worker`) run by
    one worker alone, by workers one after another (as a threading layer that runs ``prange``
    iterations in turn would: the first takes every task, nothing waits on the second) and by
    two, three and five workers in parallel for two chunks (on however many threads there are;
    the extra ones find no task left): the same bits, the last batch of 60 rows whole
    (with an L2 penalty, its value summed in the chunk tasks' parts,
    :func:`network.l2_squares_part`)."""
    model, X, y = _problem(dtype, n=560)
    Y, labels, dense = model.check_y(y, X.shape[0])
    assert model.engine.split_min_rows() > 60
    order = np.random.default_rng(2).permutation(X.shape[0]).astype(np.int64)
    opt = Adam(1e-2)
    p0 = model.params.copy()
    net = _core.net_record(model, 8, 1)
    data = _core.data_record(X, Y, labels, dense)
    batch = 250

    def run(kernel):
        model.set_params_vector(p0)
        rec = _core.opt_record(opt, opt.init(model.params), model.params)
        out = np.zeros(4)
        kernel(rec, out)
        return model.params.copy(), out, rec[2].copy()

    def by_kernel(rec, out):
        _core.split_epoch_kernel(model.params, model.grad, net, data, order, batch,
                                 model.engine._split(batch), rec, out, alpha)

    def in_turn(workers):
        def kernel(rec, out):
            counters, results = network.team_state(3, model.engine._split(batch)[0].shape[0])
            for _ in range(workers):
                network.team_worker(model.params, model.grad, net, data, order, batch,
                                    model.engine._split(batch), rec, alpha, counters, results)
            network.team_out(counters, results, X.shape[0], batch, out)
        return kernel

    def by_batches(rec, out):  # the reference: no team code
        total = 0.0
        for b in range(3):
            start, stop = 250 * b, min(250 * (b + 1), X.shape[0])
            value = _core.split_gradient_kernel(model.params, model.grad, net, data, order, start,
                                                stop, model.engine._split(batch), rec[5] + b,
                                                alpha)
            network.update_part(rec, model.params, model.grad, rec[5] + b + 1, 0, 1)
            total += value * (stop - start)
        out[:] = (total, 3.0, X.shape[0], 0.0)

    whole = run(by_kernel)
    assert tuple(whole[1]) == (whole[1][0], 3.0, 560.0, 0.0) and np.isfinite(whole[1][0])
    reference = run(by_batches)
    for a, b in zip(whole, reference, strict=True):
        np.testing.assert_array_equal(a, b)
    for other in (run(in_turn(1)), run(in_turn(2))):
        for a, b in zip(whole, other, strict=True):
            np.testing.assert_array_equal(a, b)
    for workers in (2, 3, 5):
        def parallel(rec, out, workers=workers):
            counters, results = network.team_state(3, model.engine._split(batch)[0].shape[0])
            _team_parallel(workers, model.params, model.grad, net, data, order, batch,
                           model.engine._split(batch), rec, alpha, counters, results)
            network.team_out(counters, results, X.shape[0], batch, out)

        other = run(parallel)
        for a, b in zip(whole, other, strict=True):
            np.testing.assert_array_equal(a, b)



def _team_problem():
    """A float64 problem of 560 rows in batches of 250 (two chunks), its rows in order: the
    model, ``order``, the net and data records, the split, an Adam record, that record with an
    unknown rule code, and the initial parameters."""
    model, X, y = _problem(np.float64, n=560)
    Y, labels, dense = model.check_y(y, X.shape[0])
    opt = Adam(1e-2)
    rec = _core.opt_record(opt, opt.init(model.params), model.params)
    return (model, np.arange(X.shape[0], dtype=np.int64), _core.net_record(model, 8, 1),
            _core.data_record(X, Y, labels, dense), model.engine._split(250), rec,
            (99,) + rec[1:], model.params.copy())


def _mt_state(seed):
    """An MT19937 ``shuffle`` record of ``_core.split_epochs_kernel`` and the ``RandomState``
    that it follows."""
    rs = np.random.RandomState(seed)
    _, key, pos, _, _ = rs.get_state()
    return (key.copy(), np.array([pos], np.int64), np.zeros(624, np.uint32)), rs


@pytest.mark.timeout(300, method="thread")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype, alpha, tol, patience, lr, ran, stop", [
    (np.float64, 0.0, 0.0, -1.0, 1e-2, 4, _core.RAN_ALL),     # no rule: all 4 epochs
    (np.float32, 1e-3, 10.0, 1.0, 1e-2, 3, _core.CONVERGED),  # the rule stops after the third
    (np.float64, 0.0, 0.0, -1.0, 1e30, 2, _core.DIVERGED),    # the third epoch diverges
])
def test_split_epochs_are_split_epochs_one_after_another(threads, dtype, alpha, tol, patience,
                                                         lr, ran, stop):
    """``_core.split_epochs_kernel`` (the epochs of a call on Python threads that stay
    together) against ``split_epoch_kernel`` called epoch by epoch, each order shuffled by
    ``RandomState.shuffle`` and scikit-learn's rule applied in Python: the same parameters,
    optimizer state, running losses, last ``out``, rule (epochs run, updates, why it stopped)
    and MT19937 state, bit for bit, on one thread and on two (an epoch's last batch of 60
    rows whole); a diverging epoch ends the call uncounted."""
    model, X, y = _problem(dtype, n=560)
    Y, labels, dense = model.check_y(y, X.shape[0])
    net = _core.net_record(model, 8, 1)
    data = _core.data_record(X, Y, labels, dense)
    opt, batch, epochs = (SGD(lr) if lr > 1 else Adam(lr)), 250, 4
    split = model.engine._split(batch)
    p0 = model.params.copy()

    def fresh():
        model.set_params_vector(p0)
        return _core.opt_record(opt, opt.init(model.params), model.params)

    rec = fresh()
    shuffle, _ = _mt_state(7)
    order = np.arange(X.shape[0], dtype=np.int64)
    rule = _core.epochs_rule(epochs, tol, patience)
    losses, out = np.zeros(epochs), np.zeros(4)
    _core.split_epochs_kernel(model.params, model.grad, net, data, order, batch, split, rec,
                              out, alpha, shuffle, rule, losses, threads=threads)
    got = (model.params.copy(), rec[2].copy(), rec[3].copy(), out.copy(), order.copy())

    ref = fresh()
    _, rs = _mt_state(7)
    ref_order = np.arange(X.shape[0], dtype=np.int64)
    ref_losses, ref_out, best, count, done = [], np.zeros(4), np.inf, 0, 0
    for _e in range(epochs):
        rs.shuffle(ref_order)
        _core.split_epoch_kernel(model.params, model.grad, net, data, ref_order, batch, split,
                                 ref[:5] + (ref[5] + done,), ref_out, alpha)
        done += int(ref_out[1])
        if ref_out[3] != 0.0:
            break
        loss = ref_out[0] / ref_out[2]
        ref_losses.append(loss)
        if patience >= 0:
            count = count + 1 if loss > best - tol else 0
            best = min(best, loss)
            if count > patience:
                break
    assert len(ref_losses) == ran
    np.testing.assert_array_equal(losses[:ran], ref_losses)
    for a, b in zip(got, (model.params, ref[2], ref[3], ref_out, ref_order), strict=True):
        np.testing.assert_array_equal(a, b)
    assert rule[_core.RULE_RUN] == ran and rule[_core.RULE_DONE] == done
    assert done == 3 * ran + (ref_out[1] if stop == _core.DIVERGED else 0)
    assert rule[_core.RULE_STOP] == stop
    if patience >= 0:
        assert (rule[_core.RULE_BEST], rule[_core.RULE_COUNT]) == (best, count)
    _, key, pos, _, _ = rs.get_state()
    np.testing.assert_array_equal(shuffle[0], key)
    assert shuffle[1][0] == pos


@pytest.mark.timeout(300, method="thread")
def test_split_epochs_errors_are_raised_not_waited_for(monkeypatch):
    """``_core.split_epochs_kernel`` raises the step's own errors before its threads start;
    a task that raises all the same (the checks bypassed) is counted, nothing runs after it
    (the parameters and the rule's report stay as they were), and the kernel raises instead of
    its threads waiting (one worker running every task, and two threads through the kernel);
    no epochs: nothing runs."""
    model, order, net, data, split, rec, bad_rule, p0 = _team_problem()
    rule = _core.epochs_rule(3)
    rule[_core.RULE_RUN] = -1
    with pytest.raises(ValueError, match="unknown optimizer rule"):
        _core.split_epochs_kernel(model.params, model.grad, net, data, order, 250, split,
                                  bad_rule, np.zeros(4), 0.0, _core.NO_SHUFFLE, rule,
                                  np.zeros(3))
    counters = np.zeros(_core.EPOCHS_SLOTS, np.int64)
    results = np.zeros(network.PENALTY + split[0].shape[0])
    _core.split_epochs_worker(0, split[0].shape[0], model.params, model.grad, net, data, order,
                              250, split, bad_rule, np.zeros(4), 0.0, _core.NO_SHUFFLE, rule,
                              np.zeros(3), counters, results)
    # the first update task raised; the first epoch's tasks and the next boundary are counted
    # done (none ran after it), and the worker returned there
    assert counters[network.FAILED] == 1 and counters[network.DONE] == 1 + 2 * 3 * 2 + 1
    np.testing.assert_array_equal(model.params, p0)
    assert rule[_core.RULE_RUN] == -1
    rule = _core.epochs_rule(0)
    _core.split_epochs_kernel(model.params, model.grad, net, data, order, 250, split, rec,
                              np.zeros(4), 0.0, _core.NO_SHUFFLE, rule, np.zeros(0))
    np.testing.assert_array_equal(model.params, p0)
    assert (rule[_core.RULE_RUN], rule[_core.RULE_DONE], rule[_core.RULE_STOP]) == (
        0, 0, _core.RAN_ALL)
    with monkeypatch.context() as m:  # the same on two threads, through the kernel
        m.setattr(_core, "team_checks", lambda *args: None)
        rule = _core.epochs_rule(3)
        rule[_core.RULE_RUN] = -1
        with pytest.raises(ValueError, match="a task raised"):
            _core.split_epochs_kernel(model.params, model.grad, net, data, order, 250, split,
                                      bad_rule, np.zeros(4), 0.0, _core.NO_SHUFFLE, rule,
                                      np.zeros(3), threads=2)
    np.testing.assert_array_equal(model.params, p0)
    assert rule[_core.RULE_RUN] == -1


@pytest.mark.timeout(300, method="thread")
def test_split_epochs_interrupted_before_they_start_do_not_hang(interrupt_first_block):
    """Ctrl-C in the calling thread before its block of ``_core.split_epochs_kernel`` starts
    (e.g. while Numba compiles it), with the other block already running: that block stops
    waiting for tasks that will never run (``run_blocks``' ``abort``), the interrupt is raised
    once it has returned, and nothing ran."""
    model, order, net, data, split, rec, _, p0 = _team_problem()
    ran = interrupt_first_block("split_epochs_worker")
    rule = _core.epochs_rule(3)
    rule[_core.RULE_RUN] = -1
    with pytest.raises(KeyboardInterrupt):
        _core.split_epochs_kernel(model.params, model.grad, net, data, order, 250, split, rec,
                                  np.zeros(4), 0.0, _core.NO_SHUFFLE, rule, np.zeros(3),
                                  threads=2)
    assert ran == [1]  # the other block returned
    np.testing.assert_array_equal(model.params, p0)
    assert rule[_core.RULE_RUN] == -1


def test_team_errors_are_raised_not_waited_for():
    """What a task of the split epoch would raise is raised before its threads start, with the
    step's own message (:func:`network.team_checks`); a task that raises all the same (here
    the checks bypassed) is counted, the tasks after it do not run, and the epoch raises
    instead of its threads waiting for it."""
    model, order, net, data, split, rec, bad_rule, p0 = _team_problem()
    with pytest.raises(ValueError, match="unknown optimizer rule"):
        _core.split_epoch_kernel(model.params, model.grad, net, data, order, 250, split,
                                 bad_rule, np.zeros(4), 0.0)
    hidden_softmax = net[:1] + (np.array([ACTIVATIONS["softmax"]] * 2, dtype=net[1].dtype),) \
        + net[2:]
    with pytest.raises(ValueError, match="softmax"):
        _core.split_epoch_kernel(model.params, model.grad, hidden_softmax, data, order, 250,
                                 split, rec, np.zeros(4), 0.0)
    squared = net[:5] + (losses.SQUARED,) + net[6:]
    with pytest.raises(ValueError, match="integer labels need a cross-entropy"):
        _core.split_epoch_kernel(model.params, model.grad, squared, data, order, 250, split,
                                 rec, np.zeros(4), 0.0)
    np.testing.assert_array_equal(model.params, p0)  # nothing ran
    counters, results = network.team_state(3, split[0].shape[0])
    network.team_worker(model.params, model.grad, net, data, order, 250, split, bad_rule, 0.0,
                        counters, results)
    assert counters[network.FAILED] == 1  # the first update task; none ran after it
    assert counters[network.DONE] == counters[network.CLAIMED] - 1 == 2 * 3 * 2
    with pytest.raises(ValueError, match="a task raised"):
        network.team_out(counters, results, order.shape[0], 250, np.zeros(4))
    np.testing.assert_array_equal(model.params, p0)


@needs_threads
@pytest.mark.parametrize("fast", [True, False])
def test_one_thread_runs_the_batch_whole(fast, monkeypatch):
    """With one Numba thread nothing is split: the bits of splitting turned off; with two,
    the split bits (different, equal to rounding), fused and general alike."""
    one = _fit(np.float64, 250, threads=1, fast=fast)
    two = _fit(np.float64, 250, threads=2, fast=fast)
    monkeypatch.setattr(backends, "SPLIT_MIN_ROWS", 10**9)
    whole = _fit(np.float64, 250, threads=2, fast=fast)
    np.testing.assert_array_equal(one[0], whole[0])
    assert one[1] == whole[1]
    assert not np.array_equal(two[0], whole[0])
    np.testing.assert_allclose(two[0], whole[0], rtol=0, atol=1e-12 * np.abs(whole[0]).max())


@needs_threads
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_epoch_against_the_unsplit_one(dtype, monkeypatch):
    """Batches of 200 rows split in two against the same epochs with splitting off: equal up to
    the order of the gradient's sums (float32 1e-5, float64 1e-12 relative to the largest
    parameter), and not bitwise (the split path really ran)."""
    p_split, l_split = _fit(dtype, 200, alpha=1e-3)
    monkeypatch.setattr(backends, "SPLIT_MIN_ROWS", 10**9)
    p_whole, l_whole = _fit(dtype, 200, alpha=1e-3)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    scale = np.abs(p_whole).max()
    np.testing.assert_allclose(p_split, p_whole, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(l_split, l_whole, rtol=tol)
    assert not np.array_equal(p_split, p_whole)


@pytest.mark.parametrize("alpha", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_under_min_rows_keeps_the_unsplit_bits(dtype, alpha):
    """A batch under ``min_rows`` is one chunk on workspace 0: loss and gradient bitwise equal
    to :func:`_core.batch_gradient_kernel` (the L2 penalty included); the same batch split
    differs in the last bits only."""
    model, X, y = _problem(dtype, n=40)
    Y, labels, dense = model.check_y(y, X.shape[0])
    net = _core.net_record(model, 8, 1)
    data = _core.data_record(X, Y, labels, dense)
    order = np.random.default_rng(2).permutation(40).astype(np.int64)
    whole = model.grad.copy()
    want = _core.batch_gradient_kernel(model.params, whole, net, data, order, 3, 40,
                                       _core.buffers_record(model.workspace(37)), 5, 0.0, alpha)
    for min_rows, exact in ((38, True), (2, False)):
        model.engine._splits.clear()
        rec = list(model.engine._split(37))
        rec[5] = min_rows
        grad = np.full_like(whole, np.nan)
        got = _core.split_gradient_kernel(model.params, grad, net, data, order, 3, 40,
                                          tuple(rec), 5, alpha)
        if exact:
            assert got == want
            np.testing.assert_array_equal(grad, whole)
        else:
            tol = 1e-5 if dtype == np.float32 else 1e-13
            assert got == pytest.approx(want, rel=tol)
            np.testing.assert_allclose(grad, whole, rtol=0, atol=tol * np.abs(whole).max())


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_update_in_parts_is_one_update(name, dtype, parts):
    """Every optimizer rule of the registry, three steps on 1,001 parameters: the update applied
    part by part (:func:`network.update_part`) has the bits of one whole update
    (:func:`apply_update`), slots included."""
    rng = np.random.default_rng(7)
    opt = make_optimizer(name, lr=0.01)
    n = 1001
    p_whole = rng.normal(size=n).astype(dtype)
    p_parts = p_whole.copy()
    p0 = p_whole.copy()
    s_whole = opt.init(p_whole)
    s_parts = opt.init(p_parts)
    for t in (1, 2, 3):
        g = rng.normal(size=n).astype(dtype)
        slots_w = opt.slots(s_whole, p_whole)
        apply_update(opt.code, p_whole, g, *slots_w, t, opt.hyper_vector(dtype))
        rec = _core.opt_record(opt, s_parts, p_parts)
        for h in range(parts):
            network.update_part(rec, p_parts, g, t, h, parts)
        np.testing.assert_array_equal(p_parts, p_whole)
        for a, b in zip(opt.slots(s_parts, p_parts), slots_w, strict=True):
            np.testing.assert_array_equal(a, b)
    assert np.all(p_whole != p0)  # every parameter moved


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_l2_penalty_in_parts_is_the_whole_penalty(dtype, parts):
    """The L2 penalty's gradient added part by part (:func:`network.l2_grad_part`, as the
    split epoch's :func:`network.combine_update_part` adds it) has the bits of the whole
    (:func:`network.l2_penalty`); biases untouched; the value (:func:`network.l2_value`) is
    ``scale / 2 * sum w^2`` in float64 and what ``l2_penalty`` returns."""
    model, _, _ = _problem(dtype, sizes=(5, 7, 3, 2))
    rng = np.random.default_rng(4)
    params = rng.normal(size=model.n_params).astype(dtype)
    g0 = rng.normal(size=model.n_params).astype(dtype)
    scale = 1e-4 / 37
    g_whole = g0.copy()
    value = network.l2_penalty(params, g_whole, model.layout, scale)
    g_parts = g0.copy()
    n = model.n_params
    for h in range(parts):
        lo, hi = network.chunk_rows(0, n, h, parts)
        network.l2_grad_part(params, g_parts, model.layout, scale, lo, hi)
    np.testing.assert_array_equal(g_parts, g_whole)
    weights = np.zeros(n, dtype=bool)
    for n_in, n_out, w_off, _ in model.layout:
        weights[w_off : w_off + n_in * n_out] = True
    assert np.array_equal(g_whole[~weights], g0[~weights])  # biases: no penalty
    c = dtype(scale)
    np.testing.assert_array_equal(g_whole[weights], g0[weights] + c * params[weights])
    expected = 0.5 * scale * float(np.sum(params[weights].astype(np.float64) ** 2))
    assert value == network.l2_value(params, model.layout, scale)
    assert value == pytest.approx(expected, rel=1e-13, abs=0.0)


@numba.njit
def _combine_all_parts(grad, split, start, stop, parts):
    for h in range(parts):
        network.combine_chunks(grad, split, start, stop, h, parts)


@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_combined_chunks_are_the_weighted_sum_and_vectorise(dtype, parts):
    """:func:`network.combine_chunks`, part by part, writes ``sum_c (B_c / B) G[c]``, each
    weight rounded to the dtype and each product and sum rounded in turn (numpy's elementwise
    float operations, the same bits), for chunks of 100 and 101 rows of 201; its loops run on
    vectors (an index counted from the part's start kept them scalar, ten times slower)."""
    model, _, _ = _problem(dtype, sizes=(64, 100, 10))
    split = model.engine._split(201)
    rng = np.random.default_rng(5)
    G = split[0]
    G[:] = rng.normal(size=G.shape).astype(dtype)
    grad = np.full(model.n_params, np.nan, dtype=dtype)
    _combine_all_parts(grad, split, 0, 201, parts)
    assert G.shape[0] == 2 and network.n_chunks(split, 0, 201) == 2
    (a0, b0), (a1, b1) = (network.chunk_rows(0, 201, c, 2) for c in range(2))
    assert {b0 - a0, b1 - a1} == {100, 101}
    w0, w1 = dtype((b0 - a0) / 201), dtype((b1 - a1) / 201)
    np.testing.assert_array_equal(grad, w0 * G[0] + w1 * G[1])
    if dtype == np.float32:
        sig = next(s for s in _combine_all_parts.signatures if s[0].dtype == numba.float32)
        ir = _combine_all_parts.inspect_llvm(sig)
        # both loops: the sum's too (before, only the first chunk's products were vectors)
        assert re.search(r"fadd <(4|8|16) x float>", ir), "combine_chunks not vectorised"


@pytest.mark.parametrize("output,loss", [("softmax", "cross_entropy"),
                                         ("sigmoid", "binary_cross_entropy"),
                                         ("identity", "squared")])
def test_gradient_step_never_reads_the_output_activation(output, loss):
    """With a fused loss the training forward pass skips the output activation (the loss reads
    the output ``z``): a workspace whose output ``a`` region holds NaN gives the gradient and
    loss of a clean workspace, bit for bit, and the region stays NaN."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 6))
    y = rng.integers(0, 3, size=40) if output == "softmax" else rng.random((40, 3)).round()
    model = MLP([6, 8, 3], activation="tanh", output=output, loss=loss, dtype=np.float64,
                seed=1)
    assert model.fused
    Xc = model.check_X(X)
    Y, labels, dense = model.check_y(y, 40)
    order = np.arange(40, dtype=np.int64)
    net = _core.net_record(model, network.NO_BLAS, network.NO_BLAS)
    data = _core.data_record(Xc, Y, labels, dense)

    def step(poison):
        w = model.workspace(40)
        w.ws[:] = 0.0
        L = model.layout.shape[0]
        a_out = slice(w.offs[L - 1, 1], w.offs[L - 1, 1] + 40 * 3)
        if poison:
            w.ws[a_out] = np.nan
        grad = np.zeros_like(model.params)
        value = _core.batch_gradient_kernel(model.params, grad, net, data, order, 0, 40,
                                            _core.buffers_record(w), 0)
        return value, grad, w.ws[a_out].copy()

    v0, g0, _ = step(False)
    v1, g1, a1 = step(True)
    assert np.isfinite(v0) and v1 == v0
    np.testing.assert_array_equal(g1, g0)
    assert np.all(np.isnan(a1))


@needs_threads
def test_dropout_is_not_split(monkeypatch):
    """With dropout the batch runs whole (a chunk would number its rows from 0 and draw the
    wrong masks): the bits are those of the unsplit path, whatever SPLIT_MIN_ROWS says."""
    def fit():
        model, X, y = _problem(np.float64, keep_prob=0.8)
        train(model, X, y, Adam(1e-2), batch_size=200, epochs=1, seed=4)
        return model.params.copy()

    monkeypatch.setattr(backends, "SPLIT_MIN_ROWS", 2)
    monkeypatch.setattr(backends, "SPLIT_MIN_WORK", 0)
    low = fit()
    monkeypatch.setattr(backends, "SPLIT_MIN_ROWS", 10**9)
    np.testing.assert_array_equal(low, fit())


@needs_threads
@pytest.mark.parametrize("fast", [True, False])
def test_diverging_split_epoch_is_recorded(fast):
    """A learning rate that blows up: the split epoch stops at the first non-finite batch loss
    and the history says diverged, at the same update in the fused and the general loop."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1024, 5)) * 100
    y = rng.normal(size=(1024, 1)) * 100
    model = MLP([5, 64, 1], activation="relu", output="identity", loss="squared", seed=1)
    hist = train(model, X, y, SGD(10.0), batch_size=256, epochs=3, seed=0, fast=fast)
    assert hist.diverged
    assert model.engine.splits(256)
    stopped = (len(hist.train_loss), hist.updates[-1])
    model2 = MLP([5, 64, 1], activation="relu", output="identity", loss="squared", seed=1)
    hist2 = train(model2, X, y, SGD(10.0), batch_size=256, epochs=3, seed=0, fast=not fast)
    assert (len(hist2.train_loss), hist2.updates[-1]) == stopped
    np.testing.assert_array_equal(model.params, model2.params)


@needs_threads
@pytest.mark.parametrize("own", [False, True], ids=["blas", "own"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fused_and_general_loops_split_alike(name, own, monkeypatch):
    """Every optimizer rule of the registry, float64 with an L2 penalty, batches of 250 rows
    (split) and a last batch of 60 (whole): the fused epoch and the general Python loop give
    the same bits, and they split (the result differs from splitting turned off); also with
    our register-blocked products in place of BLAS for every layer (``own``), which then
    run."""
    if own:
        monkeypatch.setattr(backends, "OWN_PRODUCTS_MIN_WORK", 1)

    def fit(fast, min_rows=None):
        model, X, y = _problem(np.float64, n=560)
        if min_rows is not None:
            backends.SPLIT_MIN_ROWS, saved = min_rows, backends.SPLIT_MIN_ROWS
        try:
            hist = train(model, X, y, make_optimizer(name, lr=0.01), batch_size=250, epochs=2,
                         seed=4, fast=fast, alpha=1e-3)
        finally:
            if min_rows is not None:
                backends.SPLIT_MIN_ROWS = saved
        return model.params.copy(), hist.train_loss

    fused, general = fit(True), fit(False)
    np.testing.assert_array_equal(fused[0], general[0])
    assert fused[1] == general[1]
    assert not np.array_equal(fused[0], fit(True, min_rows=10**9)[0])
    if own:  # our products ran: BLAS's give other bits
        monkeypatch.setattr(backends, "OWN_PRODUCTS_MIN_WORK", 1 << 62)
        assert not np.array_equal(fused[0], fit(True)[0])


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_l2_value_in_parts(dtype, parts):
    """The split step's penalty value (:func:`network.l2_value_split`): each part's sum of
    squares covers exactly its share of the weights (biases excluded), the parts add up to
    :func:`network.l2_value` to rounding, and one part gives its bits."""
    model, _, _ = _problem(dtype, sizes=(5, 7, 3, 2))
    params = np.random.default_rng(5).normal(size=model.n_params).astype(dtype)
    n = model.n_params
    weights = np.zeros(n, dtype=bool)
    for n_in, n_out, w_off, _ in model.layout:
        weights[w_off : w_off + n_in * n_out] = True
    sq = params.astype(np.float64) ** 2
    total = 0.0
    for h in range(parts):
        lo, hi = network.chunk_rows(0, n, h, parts)
        part = network.l2_squares_part(params, model.layout, h, parts)
        assert part == pytest.approx(float(np.sum(sq[lo:hi][weights[lo:hi]])), rel=1e-14)
        total += part
    scale = 1e-4 / 37
    value = network.l2_value_split(params, model.layout, scale, parts)
    assert value == 0.5 * scale * total
    whole = network.l2_value(params, model.layout, scale)
    assert value == pytest.approx(whole, rel=1e-14)
    if parts == 1:
        assert value == whole
