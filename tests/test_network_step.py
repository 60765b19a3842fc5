"""The shared network step (``dlbasics.kernels.network``) on its own: the loops and the BLAS
route of the CPU, strided per-network buffers (the GPU population's interleaved layout), the
element-parallel gather of the GPU kernels, the loss rows and the accuracy rows, each against
an independent reference."""

import numpy as np
import pytest
from numba import njit

from dlbasics.kernels import network
from dlbasics.kernels.losses import loss_dense_kernel, loss_labels_kernel
from dlbasics.kernels.smallgemm import block_forward, block_grad_w, block_grad_x
from dlbasics.models import MLP, Adam, _core
from dlbasics.models.mlp import Workspace
from tests import naive

CASES = {
    "binary-dropout": (dict(sizes=[3, 6, 4, 1], activation="tanh", output="sigmoid",
                            loss="binary_cross_entropy", keep_prob=0.8), None),
    "softmax-inverted": (dict(sizes=[3, 5, 3], activation="relu", output="softmax",
                              loss="cross_entropy", keep_prob=0.7, dropout="inverted"), 3),
    "unfused-squared": (dict(sizes=[3, 7, 2], activation="leaky_relu", output="tanh",
                             loss="squared"), None),
}


def _problem(case, dtype, n=13, seed=0):
    kw, classes = CASES[case]
    model = MLP(dtype=dtype, seed=5, **kw)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, model.sizes[0])).astype(dtype)
    if classes:
        y = rng.integers(0, classes, size=n)
    elif model.sizes[-1] == 1:
        y = (X[:, 0] > X[:, 1]).astype(dtype)
    else:
        y = rng.normal(size=(n, model.sizes[-1])).astype(dtype)
    return model, X, y


def _records(model, X, y, batch, thresholds):
    Xc = model.check_X(X)
    Y, labels, dense = model.check_y(y, Xc.shape[0])
    w = Workspace(model.sizes, model.keep, batch, model.dtype)
    net = _core.net_record(model, *thresholds)
    return net, _core.data_record(Xc, Y, labels, dense), w


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_strided_buffers_take_the_loops(case, dtype):
    """Per-network buffers as columns of 2-D arrays (the GPU population's interleaved layout,
    which the simulator runs on the CPU): the CPU overloads of the BLAS route fall back to the
    loops for non-contiguous buffers, and the epoch equals that of contiguous buffers to
    rounding (``dx``'s sums are reassociated where the compiler vectorises them, which it does
    over contiguous buffers only: 1e-12 relative in float64, 1e-5 in float32), the updates,
    rows and flags exactly."""
    model, X, y = _problem(case, dtype)
    batch, K = 4, 3
    net, data, w = _records(model, X, y, batch, (network.NO_BLAS, network.NO_BLAS))
    opt = Adam(0.01)
    order = np.random.default_rng(1).permutation(X.shape[0]).astype(np.int64)
    n_p = model.params.size

    def run(strided):
        def make(width, dt, fill=0):
            if strided:  # column k of a (width, K) array: stride K elements
                return np.full((width, K), fill, dt)[:, 1]
            return np.full(width, fill, dt)

        p, g = make(n_p, dtype), make(n_p, dtype)
        p[:] = model.params
        ws, lb = make(w.ws.size, dtype), make(batch, np.int64)
        slots = [make(n_p, dtype) for _ in range(3)]
        out = make(4, np.float64)
        network.member_epoch(p, g, net, data, order, batch, (ws, w.offs, lb),
                             (opt.code, opt.hyper_vector(model.dtype), *slots, 0), 11, out)
        return np.array(p), np.array(out), [np.array(s) for s in slots]

    (p1, o1, s1), (p2, o2, s2) = run(False), run(True)
    assert o1[1] == 4 and o1[2] == X.shape[0] and o1[3] == 0
    assert not np.array_equal(p1, model.params)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(p2, p1, rtol=rtol, atol=rtol * np.max(np.abs(p1)))
    np.testing.assert_allclose(o2[0], o1[0], rtol=rtol)
    np.testing.assert_array_equal(o2[1:], o1[1:])
    for a, b in zip(s1, s2, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(np.max(np.abs(a)), 1e-30))


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("case", list(CASES))
def test_blas_route_and_loops_give_one_gradient(case, dtype, rtol):
    """The same batch gradient through BLAS (every product) and through the loops (none),
    both equal to the obvious reference of tests/naive.py."""
    model, X, y = _problem(case, dtype, n=9)
    order = np.arange(9, dtype=np.int64)
    grads, values = [], []
    for thresholds in ((1, 1), (network.NO_BLAS, network.NO_BLAS)):
        net, data, w = _records(model, X, y, 9, thresholds)
        g = np.zeros_like(model.params)
        values.append(_core.batch_gradient_kernel(model.params.copy(), g, net, data, order, 0, 9,
                                                  (w.ws, w.offs, w.lbuf), 3))
        grads.append(g)
    np.testing.assert_allclose(grads[0], grads[1], rtol=rtol, atol=rtol)
    assert values[0] == pytest.approx(values[1], rel=rtol)
    ref_value, ref_grad = naive.net_gradient(naive.network(seed=model.seed, **CASES[case][0]),
                                             model.params.astype(np.float64),
                                             X.astype(np.float64), y, step=3)
    np.testing.assert_allclose(grads[1], ref_grad, rtol=50 * rtol, atol=50 * rtol)
    assert values[1] == pytest.approx(ref_value, rel=50 * rtol)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("threads", [1, 3, 8, 64])
def test_gather_part_over_all_threads_is_the_gather(dense, threads):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 5))
    Y = rng.normal(size=(20, 3))
    labels = rng.integers(0, 3, size=20)
    order = rng.permutation(20).astype(np.int64)
    start, B = 6, 7
    x, y, lb = np.zeros((B, 5)), np.zeros((B, 3)), np.zeros(B, np.int64)
    for t in range(threads):  # each simulated thread does its share
        network.gather_part((X, Y, labels, dense), order, start, B, x, y, lb, t, threads)
    rows = order[start : start + B]
    np.testing.assert_array_equal(x, X[rows])
    if dense:
        np.testing.assert_array_equal(y, Y[rows])
    else:
        np.testing.assert_array_equal(lb, labels[rows])


@pytest.mark.parametrize("code", range(5))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_rows_are_the_loss_kernels_bit_for_bit(code, dtype):
    """The loss of the step (rows of a flat workspace) against the loss kernels of the kernel
    layer on 2-D arrays, value and gradient."""
    rng = np.random.default_rng(code)
    B, k = 6, 3
    p = rng.uniform(0.05, 0.95, size=(B, k)).astype(dtype)
    if code == 4:  # CE from logits: any reals
        p = rng.normal(size=(B, k)).astype(dtype) * 3
    Y = rng.uniform(size=(B, k)).astype(dtype)
    ws = np.concatenate([p.ravel(), Y.ravel(), np.zeros(B * k, dtype)])
    eps = 1e-7
    got = network.loss_rows(code, ws, 0, B * k, 2 * B * k, np.zeros(B, np.int64), B, k, True,
                            eps)
    g = np.zeros((B, k), dtype)
    want = loss_dense_kernel(code, Y, p, g, True, eps)
    assert got == want
    np.testing.assert_array_equal(ws[2 * B * k :].reshape(B, k), g)
    if code in (3, 4):
        labels = rng.integers(0, k, size=B)
        got = network.loss_rows(code, ws, 0, B * k, 2 * B * k, labels, B, k, False, eps)
        want = loss_labels_kernel(code, labels, p, g, True, eps)
        assert got == want
        np.testing.assert_array_equal(ws[2 * B * k :].reshape(B, k), g)


def test_row_hits_count_as_accuracy_does():
    rng = np.random.default_rng(4)
    a = rng.uniform(size=(50, 4))
    Y = np.eye(4)[rng.integers(0, 4, size=50)]
    labels = Y.argmax(axis=1)
    c_dense = c_label = c_sig = 0.0
    for i in range(50):
        c_dense = network.row_hits(c_dense, a[i], Y[i], 0, True, True)
        c_label = network.row_hits(c_label, a[i], a[i], labels[i], False, True)
        c_sig = network.row_hits(c_sig, a[i], Y[i], 0, True, False)
    want = float((a.argmax(axis=1) == labels).sum())
    assert c_dense == want and c_label == want
    assert c_sig == pytest.approx(((a > 0.5) == (Y > 0.5)).mean(axis=1).sum(), rel=1e-14)


def test_backward_rejects_a_loss_code_it_cannot_apply():
    model, X, y = _problem("softmax-inverted", np.float64)
    net, data, w = _records(model, X, y, 4, (network.NO_BLAS, network.NO_BLAS))
    order = np.arange(13, dtype=np.int64)
    bad = list(net)
    bad[5] = 0  # squared loss with integer labels
    with pytest.raises(ValueError, match="cross-entropy"):
        _core.batch_gradient_kernel(model.params.copy(), np.zeros_like(model.params),
                                    tuple(bad), data, order, 0, 4, (w.ws, w.offs, w.lbuf), 0)
    bad[5] = 99
    dense_data = (data[0], np.eye(3)[y], data[2], True)
    with pytest.raises(ValueError, match="unknown loss code"):
        _core.batch_gradient_kernel(model.params.copy(), np.zeros_like(model.params),
                                    tuple(bad), dense_data, order, 0, 4, (w.ws, w.offs, w.lbuf),
                                    0)


def test_blas_route_from_python_and_compiled_agree():
    """The BLAS route's Python bodies (what a call from Python runs) and its CPU overloads (what
    compiled code runs) give the same products, and the thresholds decide as use_blas does."""
    rng = np.random.default_rng(5)
    B, n_in, n_out = 5, 4, 3
    P = rng.normal(size=n_in * n_out + n_out)
    ws = rng.normal(size=3 * B * max(n_in, n_out) + 40)
    ho, zo, xo = 0, 20, 40
    assert network.blas_ok(ws, B, n_in, n_out, 5, 12)
    assert not network.blas_ok(ws, B, n_in, n_out, 6, 12)
    assert not network.blas_ok(ws, B, n_in, n_out, 5, 13)
    assert not network.blas_ok(np.zeros((70, 2))[:, 0], B, n_in, n_out, 1, 1)  # strided
    h = ws[ho : ho + B * n_in].reshape(B, n_in)
    W = P[: n_in * n_out].reshape(n_in, n_out)
    want_z = h @ W + P[n_in * n_out :]
    py = ws.copy()
    idx = np.zeros(1, dtype=np.int64)
    network.blas_forward(P, 0, n_in * n_out, n_in, n_out, py, ho, zo, B, False, idx)
    np.testing.assert_allclose(py[zo : zo + B * n_out].reshape(B, n_out), want_z, rtol=1e-14)
    for own in (False, None):  # None: the overload compiled without our products
        compiled = ws.copy()
        _blas_calls(P, compiled, B, n_in, n_out, own)
        np.testing.assert_array_equal(compiled[zo : zo + B * n_out], py[zo : zo + B * n_out])
    G = np.zeros_like(P)
    network.blas_grad_weights(py, ho, zo, G, 0, n_in * n_out, n_in, n_out, B, False, idx)
    d = py[zo : zo + B * n_out].reshape(B, n_out)
    np.testing.assert_allclose(G[: n_in * n_out].reshape(n_in, n_out), h.T @ d, rtol=1e-14)
    np.testing.assert_allclose(G[n_in * n_out :], d.sum(axis=0), rtol=1e-14)
    network.blas_grad_input(py, zo, P, 0, n_in, n_out, xo, B, False)
    np.testing.assert_allclose(py[xo : xo + B * n_in].reshape(B, n_in), d @ W.T, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B, n_in, n_out", [(9, 70, 40), (64, 200, 130), (512, 300, 256)])
def test_own_products_in_the_blas_route(dtype, B, n_in, n_out):
    """With ``own`` the BLAS route's CPU overloads run the register-blocked products of
    smallgemm: bitwise those of block_forward, block_grad_x and block_grad_w called directly
    (the bias's gradient: delta's rows summed in order), and equal to float64 references to
    the rounding of float sums of ``n_in`` (``B``, ``n_out``) terms."""
    rng = np.random.default_rng(B + n_in)
    P = rng.normal(size=n_in * n_out + n_out).astype(dtype)
    bo = n_in * n_out
    ho, zo, xo = 0, B * n_in, B * (n_in + n_out)
    ws = rng.normal(size=B * (2 * n_in + n_out)).astype(dtype)
    h = ws[ho : ho + B * n_in].reshape(B, n_in).astype(np.float64)
    W = P[:bo].reshape(n_in, n_out).astype(np.float64)
    b = P[bo:].astype(np.float64)
    d = ws[zo : zo + B * n_out].reshape(B, n_out).astype(np.float64)  # delta = z's start
    G, direct_G = np.full_like(P, np.nan), np.full_like(P, np.nan)
    out, direct = ws.copy(), ws.copy()
    _own_calls(P, G, out, B, n_in, n_out, ho, zo, xo)
    _direct_calls(P, direct_G, direct, B, n_in, n_out, ho, zo, xo)
    np.testing.assert_array_equal(G, direct_G)
    np.testing.assert_array_equal(out, direct)
    eps = np.finfo(dtype).eps
    tol = 4 * eps * max(n_in, B, n_out)
    got_x = out[xo : xo + B * n_in].reshape(B, n_in)
    np.testing.assert_allclose(got_x, d @ W.T, rtol=0, atol=tol * (np.abs(d) @ np.abs(W.T)).max())
    np.testing.assert_allclose(G[:bo].reshape(n_in, n_out), h.T @ d, rtol=0,
                               atol=tol * (np.abs(h.T) @ np.abs(d)).max())
    want_b = np.zeros(n_out, dtype=dtype)
    for i in range(B):  # the bias's gradient: delta's rows summed in order, in the dtype
        want_b += ws[zo + i * n_out : zo + (i + 1) * n_out]
    np.testing.assert_array_equal(G[bo:], want_b)
    got_z = out[zo : zo + B * n_out].reshape(B, n_out)
    np.testing.assert_allclose(got_z, h @ W + b, rtol=0,
                               atol=tol * (np.abs(h) @ np.abs(W) + np.abs(b)).max())


@njit(cache=False)
def _own_calls(P, G, ws, B, n_in, n_out, ho, zo, xo):
    idx = np.zeros(1, dtype=np.int64)
    if network.blas_ok(ws, B, n_in, n_out, 1, 1):
        network.blas_grad_input(ws, zo, P, 0, n_in, n_out, xo, B, True)
        network.blas_grad_weights(ws, ho, zo, G, 0, n_in * n_out, n_in, n_out, B, True, idx)
        network.blas_forward(P, 0, n_in * n_out, n_in, n_out, ws, ho, zo, B, True, idx)


@njit(cache=False)
def _direct_calls(P, G, ws, B, n_in, n_out, ho, zo, xo):
    idx = np.zeros(1, dtype=np.int64)
    block_grad_x(B, n_in, n_out, ws, zo, n_out, P, 0, ws, xo, n_in)
    block_grad_w(B, n_in, n_out, ws, ho, n_in, idx, -1, ws, zo, n_out, G, 0)
    G[n_in * n_out :] = 0.0
    for i in range(B):
        G[n_in * n_out :] += ws[zo + i * n_out : zo + (i + 1) * n_out]
    block_forward(B, n_in, n_out, ws, ho, n_in, idx, -1, P, 0, n_in * n_out, ws, zo, n_out)


@njit(cache=False)
def _blas_calls(P, ws, B, n_in, n_out, own):
    if network.blas_ok(ws, B, n_in, n_out, 1, 1):
        network.blas_forward(P, 0, n_in * n_out, n_in, n_out, ws, 0, 20, B, own,
                             np.zeros(1, dtype=np.int64))


def test_training_record_chooses_own_products():
    """The cpu backend's training record: a network with a layer of OWN_PRODUCTS_MIN_WORK
    weights or more runs the products BLAS would take through smallgemm below 256 rows and,
    in the row split's chunks, at any row count; a smaller network's record compiles BLAS
    alone (``own_rows`` ``None``), and so do prediction's."""
    from dlbasics.kernels.config import BLAS_THREADED_MIN_ROWS, OWN_PRODUCTS_MIN_WORK

    fields = network.Net._fields
    rows, work = fields.index("own_rows"), fields.index("own_work")
    small = MLP([20, 32, 4], dtype=np.float32)
    assert small.engine.train_net(False)[rows] is None
    assert small.engine.train_net(True)[rows] is None
    n_in = OWN_PRODUCTS_MIN_WORK // 64
    big = MLP([n_in, 64, 3], dtype=np.float32)
    whole, split = big.engine.train_net(False), big.engine.train_net(True)
    assert (whole[rows], whole[work]) == (BLAS_THREADED_MIN_ROWS, OWN_PRODUCTS_MIN_WORK)
    assert (split[rows], split[work]) == (network.NO_BLAS, OWN_PRODUCTS_MIN_WORK)
    below = MLP([n_in - 1, 64, 3], dtype=np.float32)
    assert below.engine.train_net(True)[rows] is None
    net = network.Net(*whole)
    assert network.own_products(net, 255, n_in, 64)
    assert not network.own_products(net, 256, n_in, 64)
    assert not network.own_products(net, 8, n_in, 63)
    assert network.own_products(network.Net(*small.engine.train_net(True)), 8, 20, 32) is None




@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_sgd_row_is_the_gradient_then_sgd_kernel(dtype):
    """One row with ``sgd_lr > 0`` (the update fused into the backward pass) gives the bits of
    the row's gradient followed by :func:`sgd_kernel` at the same rate: the rate is rounded to
    the parameters' dtype first (0.1 is not a float32)."""
    from dlbasics.kernels.optimizers import sgd_kernel

    for case in CASES:
        if CASES[case][0].get("keep_prob"):
            continue  # dropout: the fused step is the training step of its own masks
        model, X, y = _problem(case, dtype)
        net, data, w = _records(model, X, y, 1, (network.NO_BLAS, network.NO_BLAS))
        order = np.arange(X.shape[0], dtype=np.int64)
        fused, grad = model.params.copy(), np.zeros_like(model.params)
        v1 = _core.batch_gradient_kernel(fused, grad, net, data, order, 4, 5,
                                         (w.ws, w.offs, w.lbuf), 0, 0.1)
        ref, g = model.params.copy(), np.zeros_like(model.params)
        v2 = _core.batch_gradient_kernel(ref, g, net, data, order, 4, 5, (w.ws, w.offs, w.lbuf),
                                         0)
        sgd_kernel(ref, g, 0.1)
        assert v1 == v2
        assert np.any(fused != model.params)
        np.testing.assert_array_equal(fused, ref)

#: Run in a process of its own with an empty Numba cache: functions whose callers come from the
#: cache are never compiled in the process, and their ``signatures`` would be empty.
_SPECIALISATIONS = r"""
import json
import numba
import numpy as np
from dlbasics.kernels import network
from dlbasics.models import MLP, SGD, Adam, _core, train

rng = np.random.default_rng(0)
X = rng.normal(size=(300, 3)).astype(np.float32)
y = (X[:, 0] > X[:, 1]).astype(np.float32)
model = MLP([3, 6, 4, 1], activation="tanh", output="sigmoid", loss="binary_cross_entropy",
            keep_prob=0.8, dtype=np.float32, seed=5)
train(model, X, y, Adam(1e-2), batch_size=16, epochs=1, X_val=X[:50], y_val=y[:50])
train(model, X, y, SGD(1e-2), batch_size=1, epochs=1)
model.forward(X)
model.forward_mc(X, 3, 0)
plain = MLP([3, 7, 2], activation="relu", output="softmax", loss="cross_entropy",
            dtype=np.float32, seed=5)
labels = rng.integers(0, 2, size=300)
Y, lab, dense = plain.check_y(labels, 300)
net, data = _core.net_record(plain, 8, 1), _core.data_record(X, Y, lab, dense)
order = np.arange(300, dtype=np.int64)
rec = _core.opt_record(Adam(1e-2), Adam(1e-2).init(plain.params), plain.params)
split = plain.engine._split(200)
value = _core.split_gradient_kernel(plain.params, plain.grad, net, data, order, 0, 200, split,
                                    rec[5], 1e-3)
assert np.isfinite(value) and split[0].shape[0] == 2
print(json.dumps({name: [[str(t) for t in sig] for sig in getattr(network, name).signatures]
                  for name in ("forward", "backward", "l2_grad_part", "chunk_gradient",
                               "combine_chunks")}))
"""


def test_one_specialisation_per_step_function(tmp_path):
    """Training with a validation set (the evaluation), fused single-row SGD, prediction,
    Monte-Carlo dropout and a split batch (its chunks and their combination) call the shared
    step's functions with the same argument types, so each is compiled once per dtype and
    record type (in a process with an empty Numba cache): no call passes a constant flag, step
    or index (Numba would compile a copy for its literal type), the backward pass takes its
    fused SGD rate in the parameters' dtype everywhere, and the chunk functions take their
    chunk index as int64 (a parallel loop's body types it as uint64). Each copy cost 1.2-1.9 s
    of compiling."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", _SPECIALISATIONS], env=env, check=True,
                         capture_output=True, text=True).stdout
    sigs = json.loads(out.strip().splitlines()[-1])
    assert all(sigs.values()), {k: len(v) for k, v in sigs.items()}  # each was compiled
    assert len(sigs["forward"]) == 1
    assert sigs["forward"][0][4:] == ["bool", "int64", "bool"]
    assert len(sigs["backward"]) == 1
    assert sigs["backward"][0][6] == "float32"
    assert len(sigs["l2_grad_part"]) == 1 and "Literal" not in str(sigs["l2_grad_part"])
    assert len(sigs["chunk_gradient"]) == 1 and sigs["chunk_gradient"][0][7] == "int64"
    assert len(sigs["combine_chunks"]) == 1 and sigs["combine_chunks"][0][4] == "int64"


@njit
def _class_major(net, ws, B, n_in, n_out):
    """network.class_major of a record as the models pass it (a plain tuple)."""
    return network.class_major(network.lend_net(net), ws, B, n_in, n_out)


def _class_major_problem(dtype, dense, n=37, seed=3):
    """A softmax network whose output layer (9 -> 5) the training step runs class-major with
    every product on BLAS (thresholds 1, 1), its rows, and labels or soft targets."""
    model = MLP(sizes=[6, 9, 5], activation="relu", output="softmax", loss="cross_entropy",
                dtype=dtype, seed=4)
    rng = np.random.default_rng(seed)
    model.params[:] = rng.normal(scale=0.5, size=model.params.size)  # biases not zero
    X = rng.normal(size=(n, 6)).astype(dtype) * 2
    if dense:  # rows of non-negative weights, not all summing to 1 (dense_row's ysum)
        y = rng.uniform(size=(n, 5)).astype(dtype)
        y[::3] /= y[::3].sum(axis=1, keepdims=True)
    else:
        y = rng.integers(0, 5, size=n)
    return model, X, y


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_class_major_output_layer_is_the_gradient(dtype, rtol, dense):
    """The training step's class-major output layer (logits as classes x rows, the loss's max,
    exponentials and sums down the rows): the batch's value and gradient equal the loops' (no
    BLAS, row-major) to rounding and the float64 reference of tests/naive.py, for labels and
    for soft targets."""
    model, X, y = _class_major_problem(dtype, dense)
    n = X.shape[0]
    order = np.random.default_rng(7).permutation(n).astype(np.int64)
    out = []
    for thresholds in ((1, 1), (network.NO_BLAS, network.NO_BLAS)):
        net, data, w = _records(model, X, y, n, thresholds)
        taken = _class_major(net, w.ws, n, 9, 5)
        assert taken == (thresholds[0] == 1)
        g = np.full_like(model.params, np.nan)  # every entry written
        v = _core.batch_gradient_kernel(model.params.copy(), g, net, data, order, 0, n,
                                        (w.ws, w.offs, w.lbuf), 0)
        out.append((v, g))
    (v_cm, g_cm), (v_loops, g_loops) = out
    assert np.all(np.isfinite(g_cm))
    np.testing.assert_allclose(g_cm, g_loops, rtol=rtol, atol=rtol * np.abs(g_loops).max())
    assert v_cm == pytest.approx(v_loops, rel=rtol)
    kw = dict(sizes=[6, 9, 5], activation="relu", output="softmax", loss="cross_entropy")
    ref_v, ref_g = naive.net_gradient(naive.network(seed=4, **kw),
                                      model.params.astype(np.float64),
                                      X[order].astype(np.float64),
                                      y[order] if not dense else y[order].astype(np.float64))
    np.testing.assert_allclose(g_cm, ref_g, rtol=50 * rtol, atol=50 * rtol * np.abs(ref_g).max())
    assert v_cm == pytest.approx(ref_v, rel=50 * rtol)


def test_class_major_output_layer_only_where_it_applies():
    """The class-major output layer takes only a fused softmax cross-entropy on BLAS, with at
    least 4 inputs to the output layer (the loss's scratch): not the loops, not contiguous-less
    buffers, not a sigmoid output, not a 3-input output layer."""
    model, X, y = _class_major_problem(np.float64, False)
    net, _, w = _records(model, X, y, 37, (1, 1))
    assert _class_major(net, w.ws, 37, 9, 5)
    assert not _class_major(net, w.ws, 37, 3, 5)
    assert not _class_major(net, np.zeros((w.ws.size, 2))[:, 0], 37, 9, 5)
    net_loops, _, _ = _records(model, X, y, 37, (network.NO_BLAS, network.NO_BLAS))
    assert not _class_major(net_loops, w.ws, 37, 9, 5)
    binary, Xb, yb = _problem("binary-dropout", np.float64)
    net_b, _, w_b = _records(binary, Xb, yb, 13, (1, 1))
    assert not _class_major(net_b, w_b.ws, 13, 4, 1)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("B", [1, 23])
def test_class_major_loss_is_the_row_loss_bit_for_bit_in_float64(dense, B):
    """In float64 (``vecmath.exp`` is ``math.exp`` there) the class-major loss gives the
    row-major loss's bits: the value, every gradient entry (transposed) and the bias's gradient
    (the rows summed in order), with the bias added to the logits as the BLAS route adds it."""
    rng = np.random.default_rng(B + dense)
    n = 7
    Z = rng.normal(size=(B, n)) * 4
    b = rng.normal(size=n)
    Y = rng.uniform(size=(B, n))
    labels = rng.integers(0, n, size=B)
    eps = 1e-12
    row_ws = np.concatenate([(Z + b).ravel(), Y.ravel(), np.zeros(B * n)])
    want = network.loss_rows(4, row_ws, 0, B * n, 2 * B * n, labels, B, n, dense, eps)
    g = row_ws[2 * B * n :].reshape(B, n)
    want_gb = g[0].copy()
    for i in range(1, B):
        want_gb += g[i]
    # class-major logits, row-major targets, the gradient zone, then 3B + 2 of scratch
    ws = np.concatenate([Z.T.ravel(), Y.ravel(), np.full(B * n, np.nan), np.zeros(3 * B + 2)])
    gb = np.full(n, np.nan)
    got = network.class_major_loss_kernel(ws, 0, B * n, 2 * B * n, 3 * B * n, labels, B, n,
                                          dense, b, gb)
    assert got == want
    np.testing.assert_array_equal(ws[2 * B * n : 3 * B * n].reshape(n, B).T, g)
    np.testing.assert_array_equal(gb, want_gb)


def test_class_major_output_layer_not_where_own_products_run():
    """Where the output layer's products are our own (:func:`network.own_products`), the step
    keeps them and the row-major output layer."""
    model, X, y = _class_major_problem(np.float32, False)
    _, _, w = _records(model, X, y, 37, (1, 1))
    own = _core.net_record(model, 1, 1, 1000, 45)  # 37 rows < 1000, 9 x 5 >= 45 weights
    assert not _class_major(own, w.ws, 37, 9, 5)
    not_own = _core.net_record(model, 1, 1, 1000, 46)
    assert _class_major(not_own, w.ws, 37, 9, 5)
