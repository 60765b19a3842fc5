"""pytest-benchmark cases: one training epoch (plain SGD, float32) per backend.

Samples per second = epoch size / mean time. Run: pytest tests/benchmarks --benchmark-only."""

import numpy as np
import pytest

from models import MLP, SGD, train

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


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("net, batch", CASES)
def test_training_epoch(benchmark, net, batch, backend):
    n = EPOCH[net]
    if backend == "numpy" and batch == 1:
        n //= 8  # the baseline is slow per sample; a shorter epoch keeps the case short
    sizes, kw, X, y = _problem(net, n)
    model = MLP(sizes, backend=backend, dtype=np.float32, seed=0, **kw)
    opt = SGD(0.01)
    train(model, X[:batch * 2], y[:batch * 2], opt, batch_size=batch, epochs=1)  # compile

    def epoch():
        return train(model, X, y, opt, batch_size=batch, epochs=1)

    hist = benchmark(epoch)
    benchmark.extra_info["samples_per_epoch"] = n
    assert hist.updates == [-(-n // batch)] and np.isfinite(hist.train_loss[0])
