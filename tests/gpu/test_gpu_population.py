"""GPU population training (one thread per network) against each network trained alone on the
CPU, against its per-network code run on the CPU, and in both memory layouts.

The chain of equalities: the GPU kernel runs the shared step
:func:`dlbasics.kernels.network.member_epoch` per network; on the CPU, ``member_epoch`` is bitwise
:func:`dlbasics.models._core.epoch_kernel` with BLAS off (and the body of the CPU population
kernel); and a population equals each network trained alone with ``dlbasics.models.train``.
"""

import numpy as np
import pytest

from dlbasics.kernels.gpu_population import gpu_population_epoch
from dlbasics.kernels.network import member_epoch
from dlbasics.models import MLP, SGD, Adam, Momentum, RMSProp, _core, train
from dlbasics.models.mlp import Workspace
from tests.gpu.conftest import assert_close, host

OPTIMIZERS = [SGD(0.2), Adam(0.02), Momentum(0.05), RMSProp(0.01, centered=True)]


def _data(rng, n=15, classes=None):
    X = rng.normal(size=(n, 2)).astype(np.float32)
    if classes is None:
        return X, (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    return X, rng.integers(0, classes, size=n)


class Population:
    """The arrays of :func:`dlbasics.models.population.train_population` for K networks."""

    def __init__(self, template, X, y, optimizers, seeds, batch):
        self.template = template
        self.X = template.check_X(X)
        self.Y, self.labels, self.dense = template.check_y(y, self.X.shape[0])
        K = len(seeds)
        cfg = template.config()
        self.nets = [MLP(**{**cfg, "seed": int(s)}) for s in seeds]
        self.P = np.stack([m.params for m in self.nets])
        self.G = np.zeros_like(self.P)
        w = Workspace(template.sizes, template.keep, batch, template.dtype)
        self.offs = w.offs
        self.WS = np.zeros((K, w.ws.size), template.dtype)
        self.LB = np.zeros((K, batch), np.int64)
        self.S = [np.zeros_like(self.P) for _ in range(3)]
        self.T0 = np.zeros(K, np.int64)
        self.codes = np.array([o.code for o in optimizers], np.int64)
        self.HP = np.stack([o.hyper_vector(template.dtype) for o in optimizers])
        self.seeds = np.asarray(seeds, np.int64)
        self.active = np.ones(K, np.bool_)
        self.OUT = np.zeros((K, 4))
        self.batch = batch

    def cpu_epoch(self, orders):
        """The CPU reference: :func:`member_epoch` for each active network, serially."""
        net = _core.net_record(self.template, _core.NO_BLAS, _core.NO_BLAS, 0, _core.NO_BLAS)
        data = _core.data_record(self.X, self.Y, self.labels, self.dense)
        for k in range(len(self.seeds)):
            if self.active[k]:
                member_epoch(self.P[k], self.G[k], net, data, orders[k], self.batch,
                             (self.WS[k], self.offs, self.LB[k]),
                             (self.codes[k], self.HP[k], self.S[0][k], self.S[1][k],
                              self.S[2][k], self.T0[k]), self.seeds[k], self.OUT[k])

    def args(self, orders):
        m = self.template
        return (self.P, self.G, m.layout, m.codes, m.keep, m.dropout == "inverted", m.slope,
                self.X, self.Y, self.labels, orders, self.batch, self.WS, self.offs, self.LB,
                m.loss_code, m.fused, self.dense, m.eps, self.seeds, self.codes, self.HP,
                self.S[0], self.S[1], self.S[2], self.T0, self.active, self.OUT)


@pytest.mark.parametrize(
    "kw, classes",
    [
        (dict(output="sigmoid", loss="binary_cross_entropy", keep_prob=0.8), None),
        (dict(output="tanh", loss="squared"), None),
        (dict(output="softmax", loss="cross_entropy", keep_prob=0.7, dropout="inverted"), 3),
    ],
)
def test_population_equals_each_network_trained_alone(kw, classes, rng):
    X, y = _data(rng, classes=classes)
    template = MLP([2, 5, 4, classes or 1], activation="tanh", **kw)
    K, batch, epochs = 26, 4, 2  # 26 networks > 3 blocks x 8 threads: a grid-stride loop
    seeds = list(range(K))
    opts = [OPTIMIZERS[k % 4] for k in range(K)]
    pop = Population(template, X, y, opts, seeds, batch)
    rngs = [np.random.default_rng(100 + k) for k in range(K)]
    losses = []
    for _ in range(epochs):
        orders = np.stack([r.permutation(15) for r in rngs]).astype(np.int64)
        gpu_population_epoch(*pop.args(orders))
        pop.T0 += pop.OUT[:, 1].astype(np.int64)
        losses.append(pop.OUT[:, 0] / pop.OUT[:, 2])
    for k in range(K):
        alone = MLP(**{**template.config(), "seed": k})
        hist = train(alone, X, y, opts[k], batch_size=batch, epochs=epochs, seed=100 + k)
        # float32 over two epochs: a real GPU's tanh/exp differ from the CPU's by an ulp
        assert_close(pop.P[k], alone.params, rtol=1e-4)
        np.testing.assert_allclose([ls[k] for ls in losses], hist.train_loss, rtol=1e-4)
        assert pop.T0[k] == hist.updates[-1]


def test_device_layouts_match_the_cpu(rng):
    from numba import cuda

    X, y = _data(rng, classes=3)
    template = MLP([2, 6, 3], activation="relu", output="softmax", loss="cross_entropy",
                   keep_prob=[0.9, 0.6])
    K, batch = 5, 6
    opts = [Adam(0.01), SGD(0.3), RMSProp(0.02), Momentum(0.1), Adam(0.05, amsgrad=True)]
    orders = np.stack([rng.permutation(15) for _ in range(K)]).astype(np.int64)
    cpu = Population(template, X, y, opts, range(K), batch)
    cpu.cpu_epoch(orders)

    rows = Population(template, X, y, opts, range(K), batch)
    args = list(rows.args(orders))
    per_net = {0, 1, 10, 12, 14, 21, 22, 23, 24, 27}  # P G orders WS LB HP S1 S2 S3 OUT
    shared_dev = {7, 8, 9, 19, 20, 25, 26}  # X Y labels seeds opt_codes T0 active
    dev = [cuda.to_device(a) if i in per_net | shared_dev else a for i, a in enumerate(args)]
    gpu_population_epoch(*dev)
    assert_close(host(dev[0]), cpu.P, rtol=1e-4)
    assert_close(host(dev[27]), cpu.OUT, rtol=1e-4)

    inter = Population(template, X, y, opts, range(K), batch)
    args = list(inter.args(orders))
    dev = [cuda.to_device(np.ascontiguousarray(a.T)) if i in per_net else
           (cuda.to_device(a) if i in shared_dev else a) for i, a in enumerate(args)]
    gpu_population_epoch(*dev, interleaved=True)
    assert_close(host(dev[0]).T, cpu.P, rtol=1e-4)
    assert_close(host(dev[27]).T, cpu.OUT, rtol=1e-4)


def test_divergence_and_inactive_networks(rng):
    X, y = _data(rng)
    template = MLP([2, 4, 1], activation="relu", output="identity", loss="squared")
    opts = [SGD(1e25), SGD(0.01), SGD(0.01)]  # the first one overflows after a step or two
    pop = Population(template, X, y, opts, [0, 1, 2], 5)
    pop.active[2] = False
    before = pop.P[2].copy()
    orders = np.tile(np.arange(15, dtype=np.int64), (3, 1))
    cpu = Population(template, X, y, opts, [0, 1, 2], 5)
    cpu.active[2] = False
    cpu.cpu_epoch(orders)
    gpu_population_epoch(*pop.args(orders))
    assert pop.OUT[0, 3] == 1.0 and pop.OUT[1, 3] == 0.0
    np.testing.assert_array_equal(pop.OUT[:2, 1:], cpu.OUT[:2, 1:])
    np.testing.assert_array_equal(pop.P[2], before)
    assert_close(pop.P[:2], cpu.P[:2], rtol=1e-4)


def test_member_epoch_on_the_cpu_is_the_fused_epoch(rng):
    """member_epoch (the GPU thread's code) is @njit code: on the CPU it gives the CPU's epoch
    with BLAS off bit for bit, and so does the CPU population kernel."""
    X, y = _data(rng)
    template = MLP([2, 5, 1], output="sigmoid", loss="binary_cross_entropy", keep_prob=0.8)
    a, b, c = (Population(template, X, y, [Adam(0.01)], [3], 4) for _ in range(3))
    order = rng.permutation(15).astype(np.int64)
    net = tuple(_core.Net(*_core.net_record(template, _core.NO_BLAS, _core.NO_BLAS, 0,
                                            _core.NO_BLAS))
                ._replace(seed=3))
    _core.epoch_kernel(a.P[0], a.G[0], net, _core.data_record(a.X, a.Y, a.labels, True), order,
                       4, (a.WS[0], a.offs, a.LB[0]),
                       (a.codes[0], a.HP[0], a.S[0][0], a.S[1][0], a.S[2][0], 0), a.OUT[0])
    b.cpu_epoch(order[None, :])
    c_net = _core.net_record(template, 1, 1)  # the kernel ignores the thresholds and the seed
    _core.population_epoch_serial(
        c_net, _core.data_record(c.X, c.Y, c.labels, True), 4, c.offs,
        (c.P, c.G, c.WS, c.LB, order[None, :], c.seeds, c.codes, c.HP, *c.S, c.T0, c.active,
         c.OUT))
    assert np.isfinite(a.OUT[0, 0]) and a.OUT[0, 1] == 4
    for other in (b, c):
        np.testing.assert_array_equal(a.P, other.P)
        np.testing.assert_array_equal(a.OUT, other.OUT)


def test_errors_before_launch(rng):
    X, y = _data(rng)
    template = MLP([2, 4, 1], output="sigmoid", loss="binary_cross_entropy")
    pop = Population(template, X, y, [SGD(0.1)] * 2, [0, 1], 5)
    args = list(pop.args(np.tile(np.arange(15, dtype=np.int64), (2, 1))))
    bad = list(args)
    bad[0] = np.ascontiguousarray(pop.P[:, :-1])
    with pytest.raises(ValueError, match="P must have shape"):
        gpu_population_epoch(*bad)
    bad = list(args)
    bad[12] = np.ascontiguousarray(pop.WS[:, :10])
    with pytest.raises(ValueError, match="WS must hold"):
        gpu_population_epoch(*bad)
    bad = list(args)
    bad[10] = args[10] + 20
    with pytest.raises(ValueError, match="orders"):
        gpu_population_epoch(*bad)
    bad = list(args)
    bad[11] = 99
    with pytest.raises(ValueError, match="batch"):
        gpu_population_epoch(*bad)
