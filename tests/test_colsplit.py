"""Each layer's units split between threads (``dlbasics.kernels.colsplit``; the cpu backend's
epoch for plain SGD on batches of 8 to 128 rows through networks of 32k parameters or more, and
on single rows through networks of 96k parameters or more).

The parts partition every layer on cache lines; the packed layout of the parts' columns; one
thread and two give the same bits; the epoch equals the whole batch's to rounding (float64:
1e-12; the whole batch's through BLAS and through its loops), one row at a time (the first
layer's update deferred) and in batches (``kernels/smallgemm.py``), with a last short batch, a
last batch of one row, unfused losses, widths that are no multiple of 16 and an output layer
shared by both parts; a diverging epoch stops where the whole one does; the backend's rule.
"""

import numba
import numpy as np
import pytest

from dlbasics.kernels import colsplit
from dlbasics.kernels.network import NO_BLAS
from dlbasics.models import MLP, SGD, Adam, _core, train


def test_parts_partition_each_layer_on_cache_lines():
    """Contiguous, in order, covering ``[0, n)``; inner boundaries on multiples of 16 units;
    hand-checked: 256 -> 128 + 128, 100 -> 48 + 52, 10 -> 0 + 10."""
    assert [colsplit.part_columns(256, p) for p in range(2)] == [(0, 128), (128, 256)]
    assert [colsplit.part_columns(100, p) for p in range(2)] == [(0, 48), (48, 100)]
    assert [colsplit.part_columns(10, p) for p in range(2)] == [(0, 0), (0, 10)]
    for n in range(1, 300):
        parts = [colsplit.part_columns(n, p) for p in range(colsplit.COL_PARTS)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        for (a0, a1), (b0, _) in zip(parts, parts[1:], strict=False):
            assert a1 == b0 and a1 % 16 == 0 and a0 <= a1


@pytest.mark.parametrize("sizes", [(784, 256, 256, 10), (30, 37, 50, 3), (40, 3), (12, 64, 5)])
def test_packed_layout(sizes):
    """Each part's matrices and biases hold its columns of every layer, then its pending
    update of the first layer (an input row and its columns of delta); they do not overlap,
    start on 16-element lines, and each part on a 1,024-element page; hand-checked for
    784-256-256-10: part 0 from 0 (W1 784 x 128, b1 at 100,352, W2 at 100,480, b2 at 133,248,
    no output units, the pending row at 133,376 and delta at 134,160), part 1 from 135,168
    (132 x 1,024, the page after 134,288)."""
    poffs, size = colsplit.packed_layout(list(sizes))
    L = len(sizes) - 1
    assert poffs.shape == (L + 1, colsplit.COL_PARTS, 2)
    spans = []
    for p in range(colsplit.COL_PARTS):
        for l in range(L):
            c0, c1 = colsplit.part_columns(sizes[l + 1], p)
            nc = c1 - c0
            w, b = poffs[l, p]
            assert w % 16 == 0 and b % 16 == 0 and b >= w + sizes[l] * nc
            spans += [(w, w + sizes[l] * nc), (b, b + nc)]
        c0, c1 = colsplit.part_columns(sizes[1], p)
        h, d = poffs[L, p]
        assert h % 16 == 0 and d % 16 == 0 and d >= h + sizes[0]
        spans += [(h, h + sizes[0]), (d, d + c1 - c0)]
        assert poffs[0, p, 0] % 1024 == 0
    spans.sort()
    assert all(a1 <= b0 for (_, a1), (b0, _) in zip(spans, spans[1:], strict=False))
    assert spans[-1][1] <= size
    n_params = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    pending = colsplit.COL_PARTS * sizes[0] + sizes[1]
    assert sum(b - a for a, b in spans) == n_params + pending
    if sizes == (784, 256, 256, 10):
        assert poffs[0, 0].tolist() == [0, 100_352] and poffs[1, 0, 0] == 100_480
        assert poffs[1, 0, 1] == 133_248 and poffs[3, 0].tolist() == [133_376, 134_160]
        assert poffs[0, 1, 0] == 135_168


def _model(sizes, dtype=np.float64, output="softmax", loss="cross_entropy", activation="tanh"):
    return MLP(list(sizes), activation=activation, output=output, loss=loss, dtype=dtype, seed=5)


def _data(model, n, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, model.sizes[0])).astype(model.dtype)
    k = model.sizes[-1]
    if model.output == "softmax":
        return X, np.zeros((0, 0), model.dtype), rng.integers(0, k, size=n), False
    Y = (rng.random((n, k)) < 0.5).astype(model.dtype)
    return X, Y, np.zeros(0, np.int64), True


def _order(n):
    return np.random.default_rng(7).permutation(n).astype(np.int64)


def _run(model, X, Y, labels, dense, batch, lr, cols, threads=2, min_rows=8, epochs=2,
         order=None):
    """``epochs`` epochs of plain SGD, column-split or whole, visiting the rows in ``order``
    (default :func:`_order`); the parameters and the last ``out``."""
    eng = model.engine
    opt = SGD(lr=lr)
    state = opt.init(model.params)
    net = _core.net_record(model, min_rows, 1)
    data = _core.data_record(X, Y, labels, dense)
    order = _order(X.shape[0]) if order is None else order
    out = np.zeros(4)
    for _e in range(epochs):
        o = _core.opt_record(opt, state, model.params, None)
        if cols:
            buf, cols = eng._cols_buffers(batch)
            _core.cols_epoch_kernel(model.params, model.grad, net, data, order, batch, buf, o,
                                    out, cols, threads=threads)
        else:
            _core.epoch_kernel(model.params, model.grad, net, data, order, batch,
                               _core.buffers_record(model.workspace(batch)), o, out)
        state = state._replace(count=state.count + int(out[1]))
    return model.params.copy(), out.copy()


CASES = [
    # sizes, output, loss, batch, min_rows of the whole batch (NO_BLAS: its loops), rows
    ((30, 40, 20, 3), "softmax", "cross_entropy", 8, 8, 203),  # last batch of 3
    ((30, 37, 50, 3), "softmax", "cross_entropy", 32, 8, 200),  # widths no multiple of 16
    ((30, 40, 20, 3), "sigmoid", "binary_cross_entropy", 8, 8, 100),  # dense targets
    ((30, 48, 33, 4), "sigmoid", "squared", 5, NO_BLAS, 101),  # the loops, unfused loss
    ((30, 40, 20, 3), "softmax", "cross_entropy", 1, NO_BLAS, 60),  # one row: fused update
    ((30, 40, 20, 3), "softmax", "cross_entropy", 1, 8, 61),  # one row, deferred, odd rows
    ((30, 40, 24), "softmax", "cross_entropy", 8, 8, 100),  # output units in both parts
    ((30, 40, 24), "softmax", "cross_entropy", 1, 8, 41),  # the same, one row at a time
    ((40, 3), "softmax", "cross_entropy", 1, 8, 23),  # one layer, merged task, deferred update
    ((40, 24), "softmax", "cross_entropy", 8, 8, 45),  # one layer in both parts
    ((40, 24), "softmax", "cross_entropy", 1, 8, 19),  # the same, one row at a time
    ((30, 40, 20, 3), "softmax", "cross_entropy", 8, 8, 201),  # last batch one row: deferred
    ((12, 64, 5), "softmax", "cross_entropy", 16, 8, 100),  # two layers
    ((40, 3), "softmax", "cross_entropy", 8, 8, 50),  # one layer: no partial products
    ((30, 12, 20, 3), "softmax", "cross_entropy", 8, 8, 60),  # a hidden layer all in part 1
]


@pytest.mark.parametrize("case", CASES, ids=[str(c[:1] + c[3:5]) for c in CASES])
def test_epoch_equals_the_whole_batch_to_rounding(case):
    """float64: the parameters after two epochs within 1e-12 (relative to the largest) of the
    shared step's epoch, the loss sums within 1e-12; one thread and two bitwise equal."""
    sizes, output, loss, batch, min_rows, n = case
    ref = _model(sizes, output=output, loss=loss)
    X, Y, labels, dense = _data(ref, n)
    one = _model(sizes, output=output, loss=loss)
    two = _model(sizes, output=output, loss=loss)
    p_ref, out_ref = _run(ref, X, Y, labels, dense, batch, 0.05, False, min_rows=min_rows)
    p_one, out_one = _run(one, X, Y, labels, dense, batch, 0.05, True, 1, min_rows)
    p_two, out_two = _run(two, X, Y, labels, dense, batch, 0.05, True, 2, min_rows)
    np.testing.assert_array_equal(p_one, p_two)
    np.testing.assert_array_equal(out_one, out_two)
    assert np.max(np.abs(p_two - p_ref)) <= 1e-12 * np.max(np.abs(p_ref))
    assert not np.array_equal(p_two, ref.params * 0)  # it trained
    assert not np.array_equal(p_two, _model(sizes, output=output, loss=loss).params)
    np.testing.assert_allclose(out_two[0], out_ref[0], rtol=1e-12)
    np.testing.assert_array_equal(out_two[1:], out_ref[1:])


@pytest.mark.parametrize("batch", [8, 1])
def test_float32_epoch_close_to_the_whole_batch(batch):
    """float32 784-64-32-10 at batch 8 and one row at a time (the deferred update): within 1e-5
    of the shared step after one epoch."""
    ref = _model((784, 64, 32, 10), dtype=np.float32, activation="relu")
    got = _model((784, 64, 32, 10), dtype=np.float32, activation="relu")
    X, Y, labels, dense = _data(ref, 256 if batch > 1 else 64)
    p_ref, _ = _run(ref, X, Y, labels, dense, batch, 0.01, False, epochs=1)
    p_got, _ = _run(got, X, Y, labels, dense, batch, 0.01, True, epochs=1)
    assert np.max(np.abs(p_got - p_ref)) <= 1e-5 * np.max(np.abs(p_ref))
    assert np.max(np.abs(p_got - _model((784, 64, 32, 10), np.float32, activation="relu")
                         .params)) > 1e-4


def test_diverging_epoch_stops_where_the_whole_one_does():
    """A rate that overflows: the same batch flagged (``out[3]``), as many updates done, rows
    counted and a non-finite loss sum, as the shared step's epoch."""
    sizes = (30, 40, 20, 3)
    ref, got = _model(sizes, activation="relu"), _model(sizes, activation="relu")
    X, Y, labels, dense = _data(ref, 200)
    X[40:] *= 1e300  # 160 of 200 rows overflow: some batch in the shuffled order soon does
    p_ref, out_ref = _run(ref, X, Y, labels, dense, 8, 0.05, False, epochs=1)
    p_got, out_got = _run(got, X, Y, labels, dense, 8, 0.05, True, epochs=1)
    assert out_ref[3] == 1.0 and out_got[3] == 1.0
    np.testing.assert_array_equal(out_got[1:], out_ref[1:])
    assert out_got[1] < 25  # stopped on the way
    # the weights of the last finite step, not of the diverging batch
    assert np.all(np.isfinite(p_got))
    assert np.max(np.abs(p_got - p_ref)) <= 1e-12 * np.max(np.abs(p_ref))
    assert not np.isfinite(out_got[0])


def test_diverging_single_rows_keep_the_deferred_update():
    """One row at a time (the first layer's update deferred to the next row's forward pass): a
    row that overflows stops the epoch where the shared step's does, and the weights are those
    after the last finite row (the diverging row's forward pass applies its deferred update,
    and nothing of the diverging row's is applied): equal to rounding to the shared step's
    epoch over the rows before it (whose own fused one-row update is applied before the loss
    is seen, so that its weights end non-finite)."""
    sizes = (30, 40, 20, 3)
    ref, got, upto = (_model(sizes, activation="relu") for _ in range(3))
    X, Y, labels, dense = _data(ref, 60)
    X[45:] *= 1e300
    _, out_ref = _run(ref, X, Y, labels, dense, 1, 0.05, False, epochs=1)
    p_got, out_got = _run(got, X, Y, labels, dense, 1, 0.05, True, epochs=1)
    assert out_ref[3] == 1.0 and out_got[3] == 1.0 and 0 < out_got[1] < 60
    np.testing.assert_array_equal(out_got[1:], out_ref[1:])
    done = int(out_got[1])
    p_upto, _ = _run(upto, X, Y, labels, dense, 1, 0.05, False, epochs=1,
                     order=_order(60)[:done])
    assert np.all(np.isfinite(p_got)) and np.all(np.isfinite(p_upto))
    assert np.max(np.abs(p_got - p_upto)) <= 1e-12 * np.max(np.abs(p_upto))


def test_data_of_another_dtype_is_refused():
    """The first layer reads the rows of X where they lie: X of another dtype than the
    parameters is a ValueError naming it, before the threads start."""
    m = _model((30, 40, 3), dtype=np.float32)
    X, Y, labels, dense = _data(m, 40)
    opt = SGD(lr=0.1)
    o = _core.opt_record(opt, opt.init(m.params), m.params, None)
    buf, cols = m.engine._cols_buffers(8)
    with pytest.raises(ValueError, match="X must be C-contiguous"):
        _core.cols_epoch_kernel(m.params, m.grad, _core.net_record(m, 8, 1),
                                _core.data_record(X.astype(np.float64), Y, labels, dense),
                                np.arange(40), 8, buf, o, np.zeros(4), cols)


def test_other_optimizers_and_dropout_are_refused():
    """The kernel trains with plain SGD and no dropout only: a ValueError saying so."""
    m = _model((30, 40, 3))
    X, Y, labels, dense = _data(m, 40)
    opt = Adam()
    o = _core.opt_record(opt, opt.init(m.params), m.params, None)
    buf, cols = m.engine._cols_buffers(8)
    with pytest.raises(ValueError, match="plain SGD"):
        _core.cols_epoch_kernel(m.params, m.grad, _core.net_record(m, 8, 1),
                                _core.data_record(X, Y, labels, dense),
                                np.arange(40, dtype=np.int64), 8, buf, o, np.zeros(4), cols)
    dropped = MLP([30, 40, 3], output="softmax", loss="cross_entropy", keep_prob=0.8)
    sgd = SGD()
    o = _core.opt_record(sgd, sgd.init(dropped.params), dropped.params, None)
    buf, cols = dropped.engine._cols_buffers(8)
    with pytest.raises(ValueError, match="no dropout"):
        _core.cols_epoch_kernel(dropped.params, dropped.grad, _core.net_record(dropped, 8, 1),
                                _core.data_record(X.astype(np.float32), Y, labels, dense),
                                np.arange(40, dtype=np.int64), 8, buf, o, np.zeros(4), cols)


@pytest.mark.timeout(300, method="thread")
def test_interrupted_before_the_threads_start_does_not_hang(interrupt_first_block):
    """Ctrl-C in the calling thread before its part of the column-split epoch starts (e.g.
    while Numba compiles it), with the other part already running: the other part stops
    waiting for the tasks that will never run (``run_blocks``' ``abort``) and returns, then the
    interrupt is raised."""
    m = _model((30, 40, 3))
    X, Y, labels, dense = _data(m, 40)
    opt = SGD(lr=0.1)
    o = _core.opt_record(opt, opt.init(m.params), m.params, None)
    buf, cols = m.engine._cols_buffers(8)
    ran = interrupt_first_block("cols_worker")
    with pytest.raises(KeyboardInterrupt):
        _core.cols_epoch_kernel(m.params, m.grad, _core.net_record(m, 8, 1),
                                _core.data_record(X, Y, labels, dense),
                                np.arange(40, dtype=np.int64), 8, buf, o, np.zeros(4), cols,
                                threads=2)
    assert ran == [1]


def test_backend_rule():
    """Plain SGD, 8 to 128 rows, 32k parameters and 1.5M rows x parameters or more, or one row
    and 96k parameters; no dropout, no L2, two threads; before the row split."""
    big = MLP([784, 256, 256, 10], dtype=np.float32)  # 269,322 parameters
    one_row = MLP([784, 112, 112, 10], dtype=np.float32)  # 101,706: one row too
    not_one_row = MLP([784, 96, 96, 10], dtype=np.float32)  # 85,642: not one row
    mid = MLP([200, 128, 64, 10], dtype=np.float32)  # 34,634: from 46 rows
    small = MLP([100, 128, 64, 10], dtype=np.float32)  # 21,834: never
    dropped = MLP([784, 256, 256, 10], dtype=np.float32, keep_prob=0.8)
    sgd, adam = SGD().code, Adam().code
    two = numba.get_num_threads() >= 2
    for rows in (1, 8, 32, 64, 128):
        assert big.engine.col_splits(rows, sgd) == two
    for rows in (2, 7, 129, 1000):
        assert not big.engine.col_splits(rows, sgd)
    assert one_row.engine.col_splits(1, sgd) == two
    assert not not_one_row.engine.col_splits(1, sgd) and not mid.engine.col_splits(1, sgd)
    assert not big.engine.col_splits(1, adam)
    assert not big.engine.col_splits(1, sgd, alpha=1e-4)
    assert mid.engine.col_splits(46, sgd) == two and not mid.engine.col_splits(45, sgd)
    assert not big.engine.col_splits(32, adam)
    assert not big.engine.col_splits(32, sgd, alpha=1e-4)
    assert not small.engine.col_splits(128, sgd) and not dropped.engine.col_splits(32, sgd)
    lopsided = MLP([4096, 10], dtype=np.float32)  # 40,970 parameters, all in part 1
    assert not lopsided.engine.col_split_fits(64, sgd)
    assert big.engine.col_split_fits(32, sgd)  # whatever the thread count
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert not big.engine.col_splits(32, sgd)
    finally:
        numba.set_num_threads(saved)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
def test_train_takes_the_column_split(monkeypatch):
    """``train`` with plain SGD at batch 64 on a 34k-parameter float64 network: the column split
    (not the row split) and within 1e-12 of the whole batch's epoch."""
    sizes = (200, 128, 64, 10)
    models = [MLP(list(sizes), output="softmax", loss="cross_entropy", dtype=np.float64, seed=2)
              for _ in range(2)]
    X, _, labels, _ = _data(models[0], 300)
    assert models[0].engine.col_splits(64, SGD().code)
    calls = []
    kernel = _core.cols_epoch_kernel
    monkeypatch.setattr(_core, "cols_epoch_kernel",
                        lambda *args, **kw: calls.append(1) or kernel(*args, **kw))
    train(models[0], X, labels, SGD(lr=0.05), batch_size=64, epochs=1, seed=4)
    assert calls == [1]  # the epoch went through the column split
    monkeypatch.undo()
    models[1].engine.col_splits = lambda *args: False
    models[1].engine.splits = lambda rows: False
    train(models[1], X, labels, SGD(lr=0.05), batch_size=64, epochs=1, seed=4)
    a, b = models[0].params, models[1].params
    assert 0 < np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(b))
