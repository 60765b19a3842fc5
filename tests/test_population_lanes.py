"""The lane layout of ``train_population`` (``dlbasics.models._lanes``) against the per-network
kernel and
against training each network alone with ``dlbasics.models.train``."""

import math
import time

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose

import dlbasics.models.population as pop
from dlbasics.models import MLP, SGD, Adam, Momentum, RMSProp, _core, _lanes, train
from dlbasics.models.backends import BACKENDS
from dlbasics.models.population import lanes_eligible, train_population
from dlbasics.models.training import _validate

K = 10  # with LANES = 4: three chunks, the last one half padding
SEEDS = list(range(3, 3 + K))
SHUFFLE = [7 * k + 1 for k in range(K)]  # every network visits the rows in its own order

CONFIGS = {
    "regression": dict(sizes=[3, 5, 4, 2], activation="relu", output="identity",
                       loss="squared"),
    "squared_sigmoid": dict(sizes=[3, 6, 2], activation="leaky_relu", output="sigmoid",
                            loss="squared"),
    "binary": dict(sizes=[3, 8, 8, 1], activation="tanh", output="sigmoid",
                   loss="binary_cross_entropy"),
    "multiclass": dict(sizes=[3, 7, 4], activation="sigmoid", output="softmax",
                       loss="cross_entropy"),
    "multiclass_onehot": dict(sizes=[3, 5, 3], activation="identity", output="softmax",
                              loss="cross_entropy"),
}
OPTS = {"sgd": lambda: SGD(0.1), "momentum": lambda: Momentum(0.05, 0.9),
        "adam": lambda: Adam(0.01)}


def _data(name, n=22, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    if name == "regression":
        y = np.stack([X[:, 0] * X[:, 1], X[:, 2] - X[:, 0]], axis=1)
    elif name == "squared_sigmoid":
        y = np.stack([X[:, 0] > 0, X[:, 1] * X[:, 2] > 0], axis=1).astype(np.float64)
    elif name == "binary":
        y = (X[:, 0] * X[:, 1] > 0).astype(np.float64)
    elif name == "multiclass":
        y = rng.integers(0, 4, n)
    else:
        y = np.eye(3)[rng.integers(0, 3, n)]
    Xv = rng.normal(size=(9, 3))
    return X, y, Xv, y[:9]


@pytest.fixture
def lanes4(monkeypatch):
    """Small chunks, so that the test populations span several, the last one partial."""
    monkeypatch.setattr(pop, "LANES", 4)
    monkeypatch.setattr(pop, "LANES_MIN_NETWORKS", 2)


def _population(template, X, y, opt, batch, epochs, Xv=None, yv=None, lanes=True):
    old = pop.LANES_MIN_NETWORKS
    if not lanes:
        pop.LANES_MIN_NETWORKS = 1 << 30
    try:
        return train_population(template, X, y, opt, SEEDS, batch_size=batch, epochs=epochs,
                                shuffle_seeds=SHUFFLE, X_val=Xv, y_val=yv)
    finally:
        pop.LANES_MIN_NETWORKS = old


def _alone(cfg, dtype, k, X, y, opt, batch, epochs, Xv=None, yv=None):
    m = MLP(dtype=dtype, seed=SEEDS[k], **cfg)
    h = train(m, X, y, opt, batch_size=batch, epochs=epochs, seed=SHUFFLE[k], X_val=Xv,
              y_val=yv)
    return h, m.params


def _same(a, b, rtol, atol=0.0):
    assert len(a) == len(b)
    assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rtol, atol=atol,
                    equal_nan=True)


def _check(cfg_name, opt_name, batch, dtype, rtol, atol, epochs=3):
    cfg = CONFIGS[cfg_name]
    X, y, Xv, yv = _data(cfg_name)
    template = MLP(dtype=dtype, **cfg)
    opt = OPTS[opt_name]()
    assert lanes_eligible(template, [opt] * K, K)
    lh, lP = _population(template, X, y, opt, batch, epochs, Xv, yv, lanes=True)
    ph, pP = _population(template, X, y, opt, batch, epochs, Xv, yv, lanes=False)
    assert lP.dtype == dtype
    assert_allclose(lP, pP, rtol=rtol, atol=atol)
    for k in range(K):
        h, params = _alone(cfg, dtype, k, X, y, opt, batch, epochs, Xv, yv)
        for other, P in ((lh[k], lP), (ph[k], pP)):
            _same(other.train_loss, h.train_loss, rtol)
            _same(other.val_loss, h.val_loss, rtol)
            assert other.updates == h.updates and other.grad_evals == h.grad_evals
            assert other.diverged == h.diverged and other.diverged_epoch == h.diverged_epoch
            assert other.state.count == h.state.count
            assert_allclose(P[k], params, rtol=rtol, atol=atol)
            for a, b in zip(other.state[1:], h.state[1:], strict=True):
                assert_allclose(a, b, rtol=rtol, atol=atol)
    return lh


@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("opt_name", sorted(OPTS))
@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_lanes_equal_per_network_and_alone_float64(lanes4, cfg_name, opt_name, batch):
    """float64 within 1e-11: the lanes sum ``dx`` over outputs ascending, the shared step's
    loops reassociate it (vectorised, four rows of ``W`` a pass), and three epochs of
    momentum at batch 1 grew that rounding difference to 1.6e-12 relative (2.4e-13 absolute
    on a momentum of 5.5e-5)."""
    _check(cfg_name, opt_name, batch, np.float64, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_lanes_equal_per_network_and_alone_float32(lanes4, cfg_name, opt_name, batch):
    _check(cfg_name, opt_name, batch, np.float32, rtol=1e-5, atol=1e-6, epochs=2)


def test_lanes_full_batch_and_default_chunks():
    """Batch = all rows, the default chunk width, more networks than one chunk holds."""
    cfg = CONFIGS["binary"]
    X, y, _, _ = _data("binary")
    template = MLP(dtype=np.float64, **cfg)
    n_nets = pop.LANES + 3
    seeds = list(range(n_nets))
    hists, P = train_population(template, X, y, RMSProp(0.01), seeds, epochs=3)
    for k in (0, n_nets - 1):
        m = MLP(dtype=np.float64, seed=k, **cfg)
        h = train(m, X, y, RMSProp(0.01), epochs=3)
        _same(hists[k].train_loss, h.train_loss, 1e-12)
        assert_allclose(P[k], m.params, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("batch, lr", [(1, 0.005), (3, 0.012)])
def test_lanes_divergence_matches_training_alone(lanes4, batch, lr):
    """A shared rate at which some initialisations diverge and others do not: each network
    stops where it stops alone, its parameters as training alone leaves them."""
    cfg = dict(sizes=[2, 8, 1], activation="relu", output="identity", loss="squared")
    rng = np.random.default_rng(4)
    X = rng.normal(size=(20, 2)) * 3
    y = X[:, 0] * 5 + X[:, 1] ** 2
    template = MLP(dtype=np.float64, **cfg)
    opt = SGD(lr)
    hists, P = _population(template, X, y, opt, batch, 12)
    flags = [h.diverged for h in hists]
    assert any(flags) and not all(flags), flags
    for k in range(K):
        h, params = _alone(cfg, np.float64, k, X, y, opt, batch, 12)
        assert hists[k].diverged == h.diverged
        assert hists[k].diverged_epoch == h.diverged_epoch
        assert hists[k].updates == h.updates and hists[k].grad_evals == h.grad_evals
        _same(hists[k].train_loss, h.train_loss, 1e-12)
        if h.diverged:
            assert math.isnan(hists[k].train_loss[-1]) or math.isinf(hists[k].train_loss[-1])
        assert_allclose(P[k], params, rtol=1e-12, atol=1e-13, equal_nan=True)


def test_float32_full_width_chunks_tanh_bce():
    """The default chunk width in float32 (whole vectors of lanes, the register-blocked products
    and tanh_fast on their vector path): 2-16-16-1 as the speed benchmark trains it."""
    from dlbasics.studies.speed.common import make_data

    X, y = make_data("2-16-16-1", 512)
    cfg = dict(sizes=[2, 16, 16, 1], activation="tanh", output="sigmoid",
               loss="binary_cross_entropy")
    template = MLP(dtype=np.float32, **cfg)
    n_nets = 32  # 16 lanes per chunk on two threads, 32 on one
    seeds = list(range(n_nets))
    assert lanes_eligible(template, [SGD(0.1)] * n_nets, n_nets)
    hists, P = train_population(template, X, y, SGD(0.1), seeds, batch_size=32, epochs=3)
    ph, pP = train_population(template, X, y, SGD(0.1), seeds, batch_size=32, epochs=3,
                              lanes=False)
    assert_allclose(P, pP, rtol=2e-5, atol=2e-6)
    for k in (0, n_nets - 1):
        m = MLP(dtype=np.float32, seed=k, **cfg)
        h = train(m, X, y, SGD(0.1), batch_size=32, epochs=3)
        _same(hists[k].train_loss, h.train_loss, 1e-5)
        assert_allclose(P[k], m.params, rtol=2e-5, atol=2e-6)


def test_float32_bce_gradient_keeps_the_sigmoid_in_float64():
    """Confident logits of the positive class: the gradient ``s - 1`` is tiny, and a float32
    sigmoid would round it to a multiple of 2**-24 (or to 0 above about 17.3)."""
    from numba import njit

    from dlbasics.kernels.losses import BCE_LOGITS
    from dlbasics.models._lanes import _loss_elementwise

    @njit
    def run(ws, btot, C):
        _loss_elementwise(BCE_LOGITS, ws, 0, C, 2 * C, 1, 1, C, btot, 1.0)

    C = 8
    logits = np.array([0.5, 3.0, 9.0, 12.0, 16.0, 18.0, 25.0, -30.0], dtype=np.float32)
    ws = np.zeros(3 * C, dtype=np.float32)
    ws[:C] = logits
    ws[C:2 * C] = 1.0
    btot = np.zeros(C)
    run(ws, btot, C)
    z = logits.astype(np.float64)
    s = 1.0 / (1.0 + np.exp(-z))
    assert_allclose(ws[2 * C:], (s - 1.0).astype(np.float32), rtol=1e-6)
    assert np.all(ws[2 * C:] < 0)
    assert_allclose(btot, np.logaddexp(0.0, -z), rtol=1e-6)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("lanes", [True, False])
def test_one_shuffle_seed_for_all_networks(lanes4, shuffle, lanes):
    """One shuffle seed for every network (or no shuffling): the permutation is drawn once per
    epoch and the lane layout gathers each row once for all lanes; each network still trains
    as it does alone with that seed, also after others have diverged and stopped."""
    cfg = dict(sizes=[2, 8, 1], activation="relu", output="identity", loss="squared")
    rng = np.random.default_rng(4)
    X = rng.normal(size=(20, 2)) * 3
    y = X[:, 0] * 5 + X[:, 1] ** 2
    template = MLP(dtype=np.float64, **cfg)
    old = pop.LANES_MIN_NETWORKS
    pop.LANES_MIN_NETWORKS = 2 if lanes else 1 << 30
    try:
        hists, P = train_population(template, X, y, SGD(0.012), SEEDS, batch_size=3, epochs=12,
                                    shuffle=shuffle, shuffle_seeds=[11] * K)
    finally:
        pop.LANES_MIN_NETWORKS = old
    flags = [h.diverged for h in hists]
    assert any(flags) and not all(flags), flags
    # network 0 stops early: its row of the orders goes stale, the lanes must read another's
    assert hists[0].diverged and hists[0].diverged_epoch < 10
    for k in range(K):
        m = MLP(dtype=np.float64, seed=SEEDS[k], **cfg)
        h = train(m, X, y, SGD(0.012), batch_size=3, epochs=12, seed=11, shuffle=shuffle)
        assert hists[k].diverged == h.diverged
        assert hists[k].diverged_epoch == h.diverged_epoch
        assert hists[k].updates == h.updates
        _same(hists[k].train_loss, h.train_loss, 1e-12)
        assert_allclose(P[k], m.params, rtol=1e-12, atol=1e-13, equal_nan=True)


def test_ineligible_configurations_take_the_per_network_path(lanes4, monkeypatch):
    cfg = CONFIGS["binary"]
    X, y, _, _ = _data("binary")
    dropout = MLP(dtype=np.float64, keep_prob=0.9, **cfg)
    plain = MLP(dtype=np.float64, **cfg)
    assert not lanes_eligible(dropout, [SGD(0.1)] * K, K)
    assert not lanes_eligible(plain, [SGD(0.1)] * (K - 1) + [SGD(0.2)], K)
    assert not lanes_eligible(plain, [SGD(0.1)] * (K - 1) + [Momentum(0.1)], K)
    assert lanes_eligible(plain, [SGD(0.1) for _ in range(K)], K)  # equal, not identical
    for name, engine in BACKENDS.items():  # the lane layout is the CPU backend's alone
        other = MLP(dtype=np.float64, **cfg)
        other.engine = engine.__new__(engine)  # only its class attribute ``lanes`` is read
        assert lanes_eligible(other, [SGD(0.1)] * K, K) == (name == "cpu")
    monkeypatch.setattr(pop, "LANES_MIN_NETWORKS", K + 1)
    assert not lanes_eligible(plain, [SGD(0.1)] * K, K)
    monkeypatch.setattr(pop, "LANES_MIN_NETWORKS", 2)

    def boom(*args):
        raise AssertionError("the lane kernel must not run")

    monkeypatch.setattr(pop._lanes, "lanes_epoch_kernel", boom)
    monkeypatch.setattr(pop._lanes, "lanes_epoch_serial", boom)
    opts = [SGD(0.1), Adam(0.01)] * (K // 2)
    for template, o in ((dropout, SGD(0.1)), (plain, opts)):
        hists, P = train_population(template, X, y, o, SEEDS, batch_size=3, epochs=2,
                                    shuffle_seeds=SHUFFLE)
        for k in range(K):
            m = MLP(dtype=np.float64, seed=SEEDS[k], keep_prob=template.keep_prob, **cfg)
            h = train(m, X, y, o if not isinstance(o, list) else o[k], batch_size=3, epochs=2,
                      seed=SHUFFLE[k])
            assert h.train_loss == hists[k].train_loss  # batches under 8 rows: bitwise
            assert np.array_equal(P[k], m.params)
    # lanes=False: an eligible population also takes the per-network path
    hists, P = train_population(plain, X, y, SGD(0.1), SEEDS, batch_size=3, epochs=2,
                                shuffle_seeds=SHUFFLE, lanes=False)
    m = MLP(dtype=np.float64, seed=SEEDS[1], **cfg)
    h = train(m, X, y, SGD(0.1), batch_size=3, epochs=2, seed=SHUFFLE[1])
    assert h.train_loss == hists[1].train_loss
    assert np.array_equal(P[1], m.params)
    with pytest.raises(ValueError, match="lanes"):
        train_population(plain, X, y, SGD(0.1), SEEDS, lanes=True)


def test_lanes_serial_and_parallel_agree(lanes4, monkeypatch):
    cfg = CONFIGS["multiclass"]
    X, y, _, _ = _data("multiclass")
    template = MLP(dtype=np.float32, **cfg)
    par_h, par_P = train_population(template, X, y, Adam(0.01), SEEDS, batch_size=3, epochs=2,
                                    shuffle_seeds=SHUFFLE)
    monkeypatch.setattr(pop.numba, "get_num_threads", lambda: 1)
    ser_h, ser_P = train_population(template, X, y, Adam(0.01), SEEDS, batch_size=3, epochs=2,
                                    shuffle_seeds=SHUFFLE)
    assert np.array_equal(par_P, ser_P)
    assert [h.train_loss for h in par_h] == [h.train_loss for h in ser_h]
    # The threads and the serial loop share one compiled chunk epoch per dtype (a prange body
    # typed its index as uint64: a second full compile, ~20 s)
    sigs = _lanes.chunk_epoch.signatures
    assert sigs and {sig[0] for sig in sigs} == {numba.types.int64}
    # and it runs without the GIL, else the threads would take turns
    assert _lanes.chunk_epoch.targetoptions.get("nogil") is True


def _lane_call(K=8, C=2):
    """Arguments of one lane epoch of K networks in chunks of C (float64, SGD)."""
    cfg = CONFIGS["multiclass"]
    X, y, _, _ = _data("multiclass")
    model = MLP(dtype=np.float64, **cfg)

    X, Y, labels, dense, _ = _validate(model, X, y, None, None)
    net = _core.net_record(model, _core.NO_BLAS, _core.NO_BLAS)
    data = _core.data_record(X, Y, labels, dense)
    P = model.params + 0.1 * np.random.default_rng(0).standard_normal((K, model.params.size))
    S = [np.zeros_like(P) for _ in range(3)]
    opt = (SGD(0.1).code, SGD(0.1).hyper_vector(np.float64), S[0], S[1], S[2], 0)
    orders = np.arange(X.shape[0], dtype=np.int64)[None, :]
    pop_ = (P, orders, np.ones(K, dtype=np.bool_), np.zeros((K, 4)))
    lanes = (C, *pop._lane_buffers(model, P.shape[1], 3, K, C))
    return (net, data, 3, opt, pop_, lanes)


def test_lane_threads_equal_serial_for_any_thread_count():
    args = _lane_call()
    ref = [a.copy() for a in args[4]]
    _lanes.lanes_epoch_serial(*args[:4], (ref[0], args[4][1], ref[2], ref[3]), args[5])
    assert not np.array_equal(ref[0], args[4][0]) and np.all(ref[3][:, 2] > 0)  # it trained
    for threads in (2, 3, 4, 9):
        out = _lane_call()
        _lanes.lanes_epoch_kernel(*out, threads=threads)
        assert np.array_equal(out[4][0], ref[0]) and np.array_equal(out[4][3], ref[3])


def test_lane_threads_raise_a_thread_error_and_wait_for_all(monkeypatch):
    args = _lane_call()
    done = []

    def fake(q, *rest):
        if q == 2:
            raise ValueError("chunk 2 failed")
        time.sleep(0.2)
        done.append(q)

    monkeypatch.setattr(_lanes, "chunk_epoch", fake)
    with pytest.raises(ValueError, match="chunk 2 failed"):
        _lanes.lanes_epoch_kernel(*args, threads=2)
    assert sorted(done) == [0, 1]  # the calling thread's block (chunks 0, 1) ran to the end


def test_lane_threads_finish_before_an_interrupt_is_raised(monkeypatch):
    args = _lane_call()
    done = []

    def fake(q, *rest):
        if q == 0:  # the calling thread
            raise KeyboardInterrupt
        time.sleep(0.3)
        done.append(q)

    monkeypatch.setattr(_lanes, "chunk_epoch", fake)
    with pytest.raises(KeyboardInterrupt):
        _lanes.lanes_epoch_kernel(*args, threads=2)
    assert sorted(done) == [2, 3]  # the other thread's block, all finished


def test_lane_width_keeps_a_chunk_in_half_an_l2():
    """The lane width: 128 lanes, halved while a chunk's workspace, parameters and gradient
    exceed LANE_BYTES (down to 16 lanes) or while a thread would have no chunk (down to 4)."""
    model = MLP([2, 16, 16, 1], activation="tanh", output="sigmoid",
                loss="binary_cross_entropy")
    n = model.params.size
    assert n == 2 * 16 + 16 + 16 * 16 + 16 + 16 + 1
    # workspace per lane at batch B: z and a of each layer, inputs, targets, two deltas, a one
    for B in (1, 8, 32):
        ws = 2 * B * (16 + 16 + 1) + B * (2 + 1 + 16 + 16) + 1
        assert pop._lane_bytes(model, n, B) == (ws + 2 * n) * 4
    # 2-16-16-1, float32, 2 threads: 3,104 / 5,932 / 15,628 bytes a lane
    assert [pop._lane_width(512, 2, pop._lane_bytes(model, n, B)) for B in (1, 8, 32)] == \
        [128, 64, 32]
    assert pop._lane_width(64, 2, pop._lane_bytes(model, n, 32)) == 32  # both rules agree
    assert pop._lane_width(512, 2, 10**6) == 16  # no smaller than 16 for the cache
    assert pop._lane_width(10, 4, 10**6) == 4  # but down to 4 for the threads
    assert pop._lane_width(64, 1, 0) == 64  # no wider than the networks need
    assert pop._lane_width(65, 1, 0) == 128 and pop._lane_width(33, 1, 0) == 64
    assert pop._lane_width(3, 1, 0) == 4
    assert pop._lane_width(512, 2, pop.LANE_BYTES // 128) == 128  # exactly the budget fits
    assert pop._lane_width(512, 2, pop.LANE_BYTES // 128 + 1) == 64
    model64 = MLP([2, 16, 16, 1], activation="tanh", output="sigmoid",
                  loss="binary_cross_entropy", dtype=np.float64)
    assert pop._lane_bytes(model64, n, 32) == 2 * pop._lane_bytes(model, n, 32)
    assert pop._lane_width(512, 2, pop._lane_bytes(model64, n, 32)) == 16


def test_lane_width_changes_no_network(monkeypatch):
    """Narrower chunks (LANE_BYTES forcing 16 lanes instead of 32 or 64) give every network the
    same bits: the lanes of a chunk are independent."""
    X, y, _, _ = _data("binary", n=40)
    model = MLP(**CONFIGS["binary"], seed=0)
    lane_bytes = pop._lane_bytes(model, model.params.size, 8)
    widths = []
    runs = []
    for budget in (pop.LANE_BYTES, 1):
        monkeypatch.setattr(pop, "LANE_BYTES", budget)
        monkeypatch.setattr(pop, "LANES_MIN_NETWORKS", 2)
        widths.append(pop._lane_width(64, numba.get_num_threads(), lane_bytes))
        used = []
        buffers = pop._lane_buffers
        monkeypatch.setattr(pop, "_lane_buffers",
                            lambda *a, _b=buffers, _u=used: _u.append(a[-1]) or _b(*a))
        hists, P = train_population(model, X, y, SGD(0.1), seeds=list(range(64)), batch_size=8,
                                    epochs=2)
        runs.append((P, [h.train_loss for h in hists]))
        assert used == [widths[-1]]  # the lane layout ran, at that width
    assert widths[0] >= 32 and widths[1] == 16
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
