"""The one-launch epoch of a small network (:mod:`dlbasics.kernels.gpu_small`): the same
operations as the shared step :func:`dlbasics.kernels.network.member_epoch` (to float rounding),
and the launches per step of both device epochs."""

import numpy as np
import pytest

from dlbasics.kernels import gpu_config as g
from dlbasics.kernels import gpu_small
from dlbasics.kernels.network import member_epoch
from dlbasics.models import MLP, SGD, Adam, Momentum, _core, train
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


class _Epoch:
    """One epoch of ``model`` from its initial weights, as the records of the shared step."""

    def __init__(self, model, X, y, batch, opt, order):
        Y, labels, dense = model.check_y(y, X.shape[0])
        w = Workspace(model.sizes, model.keep, batch, model.dtype)
        state = opt.init(model.params)
        self.seed, self.batch, self.order = model.seed, batch, order
        self.net = list(_core.net_record(model, _core.NO_BLAS, _core.NO_BLAS, 0,
                                         _core.NO_BLAS))  # slope: dtype
        self.data = [X, Y, labels, dense]
        self.buf = [w.ws, w.offs, w.lbuf]
        self.opt = [opt.code, opt.hyper_vector(model.dtype),
                    *(np.array(a, copy=True) for a in opt.slots(state, model.params)), 0]
        self.p, self.g, self.out = model.params.copy(), np.zeros_like(model.params), np.zeros(4)

    def cpu(self):
        """The shared step on the CPU."""
        member_epoch(self.p, self.g, tuple(self.net), tuple(self.data), self.order, self.batch,
                     tuple(self.buf), tuple(self.opt), self.seed, self.out)
        return self

    def gpu(self, **kw):
        """The one-launch kernel; the arrays come back into this object."""
        def dev(a):
            return g.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a

        d = [dev(a) for a in (self.p, self.g, self.order, self.out)]
        recs = [[dev(a) for a in r] for r in (self.net, self.data, self.buf, self.opt)]
        gpu_small.launch_small_epoch(d[0], d[1], tuple(recs[0]), tuple(recs[1]), d[2],
                                     self.batch, tuple(recs[2]), tuple(recs[3]), d[3], **kw)
        self.p, self.out = g.copy_to_host(d[0]), g.copy_to_host(d[3])
        for i in (2, 3, 4):
            self.opt[i] = g.copy_to_host(recs[3][i])
        return self


@pytest.mark.parametrize("grid,dtype", [(False, np.float32), (False, np.float64),
                                        (True, np.float32)], ids=["block-f32", "block-f64",
                                                                  "grid-f32"])
@pytest.mark.parametrize("opt", [SGD(0.2), Momentum(0.1), Adam(0.02)],
                         ids=["sgd", "momentum", "adam"])
@pytest.mark.parametrize("case", list(CASES))
def test_one_launch_epoch_is_the_shared_step(case, opt, dtype, grid, rng):
    kw, targets = CASES[case]
    model = MLP(dtype=dtype, seed=4, **kw)
    n = 11  # batches of 4, 4, 3
    X = rng.normal(size=(n, model.sizes[0])).astype(dtype)
    if targets == "labels":
        y = rng.integers(0, model.sizes[-1], size=n)
    else:
        y = rng.normal(size=n).astype(dtype)
    order = rng.permutation(n).astype(np.int64)
    want = _Epoch(model, X, y, 4, opt, order).cpu()
    got = _Epoch(model, X, y, 4, opt, order).gpu(grid=grid,
                                                  work=gpu_small.phase_work(model.sizes, 4))
    # Every element takes the shared step's operations in its order and dtypes; what is left is
    # the row-order sum of the batch loss and, on a real GPU, fused multiply-adds and libdevice.
    if SIMULATOR:
        rtol = 1e-5 if dtype == np.float32 else 1e-13
    else:
        rtol = 1e-4 if dtype == np.float32 else 1e-10
    for name, a, b in (("params", got.p, want.p), ("s1", got.opt[2], want.opt[2]),
                       ("s2", got.opt[3], want.opt[3]), ("out", got.out, want.out)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, err_msg=name)
    assert got.out[1] == 3 and got.out[2] == n and got.out[3] == 0
    assert not np.array_equal(got.p, model.params)  # it trained


def test_one_launch_epoch_stops_at_a_non_finite_loss(rng):
    model = MLP([2, 4, 1], activation="relu", output="identity", loss="squared", seed=1)
    X = rng.normal(size=(8, 2)).astype(np.float32) * 1e18
    y = rng.normal(size=8).astype(np.float32) * 1e18
    order = np.arange(8, dtype=np.int64)
    want = _Epoch(model, X, y, 2, SGD(10.0), order).cpu()
    got = _Epoch(model, X, y, 2, SGD(10.0), order).gpu()
    assert want.out[3] == 1.0 and got.out[3] == 1.0
    np.testing.assert_array_equal(got.out[1:], want.out[1:])
    assert not np.isfinite(got.out[0])


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
