"""The one-launch epoch of a small network (:mod:`dlbasics.kernels.gpu_small`): the same
operations as :func:`dlbasics.kernels.gpu_population.network_epoch` (to float rounding), and the
launches per step of both device epochs."""

import numpy as np
import pytest

from dlbasics.kernels import gpu_config as g
from dlbasics.kernels import gpu_small
from dlbasics.kernels.gpu_population import network_epoch
from dlbasics.models import MLP, SGD, Adam, Momentum, train
from dlbasics.models.mlp import Workspace
from tests.gpu.conftest import SIMULATOR

CASES = {
    "softmax-ce": (dict(sizes=[3, 5, 4, 3], activation="tanh", output="softmax",
                        loss="cross_entropy"), "labels"),
    "scaled-dropout": (dict(sizes=[3, 6, 3], activation="relu", output="softmax",
                            loss="cross_entropy", keep_prob=0.8), "labels"),
    "inverted-dropout": (dict(sizes=[3, 5, 4, 2], activation="sigmoid", output="softmax",
                              loss="cross_entropy", keep_prob=[0.9, 0.7, 1.0],
                              dropout="inverted"), "labels"),
    "unfused-regression": (dict(sizes=[2, 7, 1], activation="leaky_relu", output="tanh",
                                loss="squared"), "dense"),
}


def _args(model, X, y, batch, opt, order):
    Y, labels, dense = model.check_y(y, X.shape[0])
    w = Workspace(model.sizes, model.keep, batch, model.dtype)
    state = opt.init(model.params)
    s1, s2, s3 = (np.array(a, copy=True) for a in opt.slots(state, model.params))
    return [model.params.copy(), np.zeros_like(model.params), model.layout, model.codes,
            model.keep, model.dropout == "inverted", model.slope, X, Y, labels, order, batch,
            w.ws, w.offs, w.lbuf, model.loss_code, model.fused, dense, model.eps, model.seed,
            opt.code, opt.hyper_vector(model.dtype), s1, s2, s3, 0, np.zeros(4)]


@pytest.mark.parametrize("grid,dtype", [(False, np.float32), (False, np.float64),
                                        (True, np.float32)], ids=["block-f32", "block-f64",
                                                                  "grid-f32"])
@pytest.mark.parametrize("opt", [SGD(0.2), Momentum(0.1), Adam(0.02)],
                         ids=["sgd", "momentum", "adam"])
@pytest.mark.parametrize("case", list(CASES))
def test_one_launch_epoch_is_network_epoch(case, opt, dtype, grid, rng):
    kw, targets = CASES[case]
    model = MLP(dtype=dtype, seed=4, **kw)
    n = 11  # batches of 4, 4, 3
    X = rng.normal(size=(n, model.sizes[0])).astype(dtype)
    if targets == "labels":
        y = rng.integers(0, model.sizes[-1], size=n)
    else:
        y = rng.normal(size=n).astype(dtype)
    order = rng.permutation(n).astype(np.int64)
    want = _args(model, X, y, 4, opt, order)
    network_epoch(*want)
    got = _args(model, X, y, 4, opt, order)
    dev = [g.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
           for a in got]
    gpu_small.launch_small_epoch(*dev, grid=grid, work=gpu_small.phase_work(model.sizes, 4))
    back = [g.copy_to_host(d) if isinstance(a, np.ndarray) else a for a, d in zip(got, dev,
                                                                                  strict=True)]
    # Every element takes network_epoch's operations in its order and dtypes; what is left is
    # the compiled exp/log of the loss rows (Numba compiles the inlined row function apart from
    # network_epoch's loop, ~1 ulp) and, on a real GPU, fused multiply-adds and libdevice.
    if SIMULATOR:
        rtol = 1e-5 if dtype == np.float32 else 1e-13
    else:
        rtol = 1e-4 if dtype == np.float32 else 1e-10
    for idx, name in ((0, "params"), (22, "s1"), (23, "s2"), (26, "out")):
        np.testing.assert_allclose(back[idx], want[idx], rtol=rtol, atol=rtol, err_msg=name)
    assert back[26][1] == 3 and back[26][2] == n and back[26][3] == 0


def test_one_launch_epoch_stops_at_a_non_finite_loss(rng):
    model = MLP([2, 4, 1], activation="relu", output="identity", loss="squared", seed=1)
    X = rng.normal(size=(8, 2)).astype(np.float32) * 1e18
    y = rng.normal(size=8).astype(np.float32) * 1e18
    order = np.arange(8, dtype=np.int64)
    want = _args(model, X, y, 2, SGD(10.0), order)
    network_epoch(*want)
    got = _args(model, X, y, 2, SGD(10.0), order)
    dev = [g.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
           for a in got]
    gpu_small.launch_small_epoch(*dev)
    out = g.copy_to_host(dev[26])
    assert want[26][3] == 1.0 and out[3] == 1.0
    np.testing.assert_array_equal(out[1:], want[26][1:])
    assert not np.isfinite(out[0])


def _launches_per_step(monkeypatch, sizes, batch, n):
    count = [0]
    launch = g.launch

    def counting(*args):
        count[0] += 1
        launch(*args)

    monkeypatch.setattr(g, "launch", counting)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=n)
    m = MLP(sizes, activation="relu", output="softmax", loss="cross_entropy", backend="cuda")
    train(m, X, y, SGD(0.01), batch_size=batch, epochs=1)  # compile, data
    count[0] = 0
    train(m, X, y, SGD(0.01), batch_size=batch, epochs=1)
    return count[0] / (n // batch)


@pytest.mark.usefixtures("default_launch")
def test_launches_per_step(monkeypatch):
    """2-16-16-2 at batch 4: one launch for the whole epoch (3 steps), in one block or, when
    too wide for one block, on a cooperative grid; with the grid path off: gather, forward per
    layer, loss, dW/db per layer, dx per hidden layer, update (3 L + 2 for L layers, no
    dropout)."""
    assert gpu_small.path([2, 16, 16, 2], 4) == "block"
    assert _launches_per_step(monkeypatch, [2, 16, 16, 2], 4, 12) == pytest.approx(1 / 3)
    monkeypatch.setattr(gpu_small, "SMALL_MAX_WIDTH", 8)
    assert gpu_small.path([2, 16, 16, 2], 4) == "grid"
    assert _launches_per_step(monkeypatch, [2, 16, 16, 2], 4, 12) == pytest.approx(1 / 3)
    monkeypatch.setattr(gpu_small, "GRID_ENABLED", False)
    assert gpu_small.path([2, 16, 16, 2], 4) is None
    assert _launches_per_step(monkeypatch, [2, 16, 16, 2], 4, 12) == 3 * 3 + 2


def test_paths_and_phase_work():
    assert gpu_small.path([2, 16, 16, 1], 32) == "block"
    assert gpu_small.path([784, 256, 256, 10], 32) == "grid"
    assert gpu_small.path([784, 256, 256, 10], gpu_small.GRID_MAX_BATCH + 1) is None
    # 784-256-256-10 at batch 32: the most work of a phase is the update of 269,322 parameters
    assert gpu_small.phase_work([784, 256, 256, 10], 32) == 784 * 256 + 256 * 256 + 2570 + 512
    # at batch 1024: dx of the first layer, 1024 x 784
    assert gpu_small.phase_work([784, 256, 256, 10], 1024) == 1024 * 784
