"""The threaded elementwise paths give the serial results bit for bit."""

import numpy as np
import pytest

import models.mlp
from kernels.activations import (
    ELEMENTWISE,
    PARALLEL_CHUNK,
    act_flat,
    act_flat_auto,
    act_flat_parallel,
    activation_code,
    dact_mul_flat,
    dact_mul_flat_auto,
    dact_mul_flat_parallel,
)
from models import MLP, SGD, Adam, train


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_parallel_activation_equals_serial(name, dtype):
    rng = np.random.default_rng(3)
    n = 3 * PARALLEL_CHUNK + 17  # a partial last chunk
    z = (rng.normal(size=n) * 4).astype(dtype)
    z[:3] = [0.0, np.inf, -np.inf]
    a = np.empty_like(z)
    code = activation_code(name)
    slope = dtype(0.01)
    act_flat(code, z, a, slope)
    for fn in (lambda o: act_flat_parallel(code, z, o, slope),
               lambda o: act_flat_auto(code, z, o, slope, 1)):
        out = np.empty_like(z)
        fn(out)
        np.testing.assert_array_equal(out, a)
    delta = rng.normal(size=n).astype(dtype)
    ref = np.empty_like(z)
    dact_mul_flat(code, z, a, delta, ref, slope)
    for fn in (lambda o: dact_mul_flat_parallel(code, z, a, delta, o, slope),
               lambda o: dact_mul_flat_auto(code, z, a, delta, o, slope, 1)):
        out = np.empty_like(z)
        fn(out)
        np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("opt", [SGD(0.1), Adam(0.01)])
@pytest.mark.parametrize("batch_size", [64, None])
def test_training_threaded_elementwise_is_bitwise_serial(monkeypatch, opt, batch_size):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)

    def run(par_min):
        monkeypatch.setattr(models.mlp, "ELEMENTWISE_PARALLEL_MIN", par_min)
        m = MLP([3, 32, 32, 1], activation="tanh", output="sigmoid",
                loss="binary_cross_entropy", dtype=np.float32, seed=1)
        h = train(m, X, y, opt, batch_size=batch_size, epochs=3, seed=2, X_val=X, y_val=y)
        return m.params.copy(), h.train_loss, h.val_loss, m.forward(X)

    serial = run(0)
    threaded = run(1)  # every activation and derivative through prange
    assert MLP([3, 32, 32, 1]).elementwise_par_min == 1  # a small network: threaded
    assert MLP([3, 4096, 1]).elementwise_par_min == 0
    np.testing.assert_array_equal(serial[0], threaded[0])
    assert serial[1] == threaded[1]
    assert serial[2] == threaded[2]
    np.testing.assert_array_equal(serial[3], threaded[3])
