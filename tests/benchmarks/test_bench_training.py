"""pytest-benchmark cases: one training epoch (plain SGD, float32) per backend.

Samples per second = epoch size / mean time. Run: pytest tests/benchmarks --benchmark-only.
The warm-up (compiling) call of each case is checked against the float64 references of
``tests/naive.py``: its epoch loss and its final parameters."""

import numpy as np
import pytest

from dlbasics.models import MLP, SGD, train
from tests import naive

CASES = [
    ("784-256-256-10", 1), ("784-256-256-10", 32), ("784-256-256-10", 1024),
    ("2-16-16-1", 1), ("2-16-16-1", 32),
]
EPOCH = {"784-256-256-10": 2048, "2-16-16-1": 4096}


def _problem(name, n, seed=0):
    rng = np.random.default_rng(seed)
    if name == "784-256-256-10":
        X = rng.normal(size=(n, 784)).astype(np.float32)
        y = rng.integers(0, 10, n)
        kw = dict(activation="relu", output="softmax", loss="cross_entropy")
        sizes = [784, 256, 256, 10]
    else:
        X = rng.normal(size=(n, 2)).astype(np.float32)
        y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
        kw = dict(activation="tanh", output="sigmoid", loss="binary_cross_entropy")
        sizes = [2, 16, 16, 1]
    return sizes, kw, X, y


def check_against_reference(model, start, X, y, batch, lr, loss, params, seed=0):
    """One epoch of plain SGD from ``start`` in the order ``train`` draws with its default
    seed 0, by ``tests/naive.py`` in float64: the epoch loss and the final parameters
    (float32 results, so relative to the largest parameter)."""
    c = model.config()
    net = naive.network(c["sizes"], c["activation"], c["output"], c["loss"], seed=seed)
    order = np.random.default_rng(0).permutation(len(X))
    want, _, _, total = naive.net_epoch(net, start, X, y, order, batch, "sgd", {"lr": lr}, {}, 0)
    assert loss == pytest.approx(total / len(X), rel=1e-4)
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(params, want, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("net, batch", CASES)
def test_training_epoch(benchmark, net, batch, backend):
    n = EPOCH[net]
    if backend == "numpy" and batch == 1:
        n //= 8  # the baseline is slow per sample; a shorter epoch keeps the case short
    sizes, kw, X, y = _problem(net, n)
    model = MLP(sizes, backend=backend, dtype=np.float32, seed=0, **kw)
    opt = SGD(0.01)
    start = model.params.copy()
    warm = train(model, X[:batch * 2], y[:batch * 2], opt, batch_size=batch, epochs=1)  # compile
    check_against_reference(model, start, X[:batch * 2], y[:batch * 2], batch, 0.01,
                            warm.train_loss[0], model.params)

    def epoch():
        return train(model, X, y, opt, batch_size=batch, epochs=1)

    hist = benchmark(epoch)
    benchmark.extra_info["samples_per_epoch"] = n
    assert hist.updates == [-(-n // batch)] and np.isfinite(hist.train_loss[0])


@pytest.mark.parametrize("path", ["lanes", "per-network"])
@pytest.mark.parametrize("batch", [1, 32])
def test_population_epoch(benchmark, monkeypatch, batch, path):
    """One epoch of 64 2-16-16-1 networks (float32, shared SGD) through ``train_population``:
    the lane layout against the per-network kernel. Network-samples per second = 64 * n / mean.
    """
    import dlbasics.models.population as pop
    from dlbasics.models.population import train_population

    if path == "per-network":
        monkeypatch.setattr(pop, "LANES_MIN_NETWORKS", 1 << 30)
    K, n = 64, 4096
    sizes, kw, X, y = _problem("2-16-16-1", n)
    template = MLP(sizes, dtype=np.float32, seed=0, **kw)
    seeds = list(range(K))
    warm, P = train_population(template, X[:64], y[:64], SGD(0.1), seeds, batch_size=batch,
                               epochs=1)
    for k in (0, 1, 37, K - 1):  # networks of different lane chunks
        start = naive.net_init(naive.network(sizes, seed=k), "glorot", k, np.float32)
        check_against_reference(template, start, X[:64], y[:64], batch, 0.1,
                                warm[k].train_loss[0], P[k], seed=k)

    def epoch():
        return train_population(template, X, y, SGD(0.1), seeds, batch_size=batch, epochs=1,
                                shuffle_seeds=[0] * K)

    hists, _ = benchmark(epoch)
    benchmark.extra_info["network_samples_per_epoch"] = K * n
    assert all(np.isfinite(h.train_loss[0]) for h in hists)
