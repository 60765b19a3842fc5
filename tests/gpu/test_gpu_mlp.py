"""``MLP(..., backend="cuda")`` against the CPU backend: gradients, predictions, training runs
(SGD and Adam, without dropout, with the notes' dropout and with inverted dropout), divergence
and optimizer state; every test runs with the one-launch epoch (:mod:`dlbasics.kernels.gpu_small`,
one block and cooperative grid) and with the per-layer kernels."""

import math

import numpy as np
import pytest

from dlbasics.kernels import gpu_small
from dlbasics.models import MLP, SGD, Adam, Momentum, train
from tests.gpu.conftest import assert_close, tol

# A few steps amplify the rounding differences of a real GPU (FMA, libdevice): float32 runs are
# compared at 1e-4, float64 runs at 1e-10. Under the simulator both backends agree bit for bit.
RUN_TOL = {np.float32: 1e-4, np.float64: 1e-10}


@pytest.fixture(autouse=True, params=["one-block", "grid", "per-layer"])
def epoch_path(request, monkeypatch):
    """Every device epoch: the one-launch kernel in one block (the networks here are small), on
    a cooperative grid, and the per-layer kernels."""
    if request.param != "one-block":
        monkeypatch.setattr(gpu_small, "SMALL_MAX_WIDTH", 0)
    monkeypatch.setattr(gpu_small, "GRID_ENABLED", request.param == "grid")
    return request.param


def _classification(rng, n=16, d=3, classes=3):
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X, rng.integers(0, classes, size=n)


def _pair(sizes, **kw):
    return MLP(sizes, backend="cpu", **kw), MLP(sizes, backend="cuda", **kw)


def _assert_same_run(h_cpu, h_gpu, m_cpu, m_gpu, dtype):
    rtol = RUN_TOL[dtype]
    assert_close(m_gpu.params, m_cpu.params, rtol=rtol)
    np.testing.assert_allclose(h_gpu.train_loss, h_cpu.train_loss, rtol=rtol)
    np.testing.assert_allclose(h_gpu.full_loss, h_cpu.full_loss, rtol=rtol)
    np.testing.assert_allclose(h_gpu.full_accuracy, h_cpu.full_accuracy)
    assert h_gpu.updates == h_cpu.updates
    assert h_gpu.diverged == h_cpu.diverged
    assert h_gpu.path == "device"


@pytest.mark.parametrize("opt", [SGD(0.2), Adam(0.02)], ids=["sgd", "adam"])
@pytest.mark.parametrize(
    "dropout",
    [{}, {"keep_prob": 0.8}, {"keep_prob": [0.9, 0.7], "dropout": "inverted"}],
    ids=["none", "scale", "inverted"],
)
def test_training_run_equals_cpu(dropout, opt, rng):
    X, y = _classification(rng)
    m_cpu, m_gpu = _pair([3, 6, 3], activation="tanh", output="softmax", loss="cross_entropy",
                         seed=5, **dropout)
    np.testing.assert_array_equal(m_gpu.params, m_cpu.params)
    h_cpu = train(m_cpu, X, y, opt, batch_size=6, epochs=2, metrics="full")
    h_gpu = train(m_gpu, X, y, opt, batch_size=6, epochs=2, metrics="full")
    _assert_same_run(h_cpu, h_gpu, m_cpu, m_gpu, np.float32)
    assert_close(m_gpu.forward(X), m_cpu.forward(X), rtol=1e-4)


def test_regressor_float64_unfused_output_and_state(rng):
    """tanh output with squared loss back-propagates through the output activation; a second
    run continues from the optimizer state of the first."""
    X = rng.normal(size=(14, 2))
    y = np.sin(X[:, 0]) * 0.5
    m_cpu, m_gpu = _pair([2, 7, 5, 1], activation="relu", output="tanh", loss="squared",
                         dtype=np.float64, seed=1)
    opt = Momentum(0.05)
    runs = []
    for m in (m_cpu, m_gpu):
        h1 = train(m, X, y, opt, batch_size=5, epochs=1, metrics="full", seed=3)
        h2 = train(m, X, y, opt, batch_size=5, epochs=2, metrics="full", seed=4,
                   state=h1.state)
        runs.append((h1, h2))
    (c1, c2), (g1, g2) = runs
    _assert_same_run(c2, g2, m_cpu, m_gpu, np.float64)
    assert g2.state.count == c2.state.count == 9
    assert_close(g2.state.momentum_buffer, c2.state.momentum_buffer)
    assert math.isnan(m_gpu.evaluate(X, *m_gpu.check_y(y, 14))[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_forward_and_metrics(dtype, rng):
    X, y = _classification(rng)
    X = X.astype(dtype)
    m_cpu, m_gpu = _pair([3, 5, 4, 3], activation=["relu", "sigmoid"], output="softmax",
                         loss="cross_entropy", keep_prob=0.75, dtype=dtype, seed=2)
    for step in (0, 7):
        v_cpu, g_cpu = m_cpu.gradient(X, y, step=step)
        v_gpu, g_gpu = m_gpu.gradient(X, y, step=step)
        assert v_gpu == pytest.approx(v_cpu, rel=tol(dtype))
        assert_close(g_gpu, g_cpu)
    assert_close(m_gpu.forward(X), m_cpu.forward(X))
    np.testing.assert_array_equal(m_gpu.predict(X), m_cpu.predict(X))
    assert m_gpu.loss(X, y) == pytest.approx(m_cpu.loss(X, y), rel=tol(dtype))
    assert m_gpu.accuracy(X, y) == m_cpu.accuracy(X, y)


def test_binary_classifier_and_chunked_prediction(rng, monkeypatch):
    from dlbasics.models import _cuda

    monkeypatch.setattr(_cuda, "CHUNK", 7)  # several chunks of rows
    X = rng.normal(size=(17, 2)).astype(np.float32)
    y = (X[:, 0] > X[:, 1]).astype(np.float32)
    m_cpu, m_gpu = _pair([2, 4, 1], output="sigmoid", loss="binary_cross_entropy", seed=4)
    assert_close(m_gpu.forward(X), m_cpu.forward(X))
    assert m_gpu.accuracy(X, y) == m_cpu.accuracy(X, y)
    assert m_gpu.loss(X, y) == pytest.approx(m_cpu.loss(X, y), rel=tol(np.float32))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf and NaN in simulated arithmetic
def test_divergence_is_detected_on_the_device(rng):
    X = rng.normal(size=(12, 2)).astype(np.float32)
    y = X[:, 0] * 3
    m_cpu, m_gpu = _pair([2, 4, 1], activation="relu", loss="squared", seed=0)
    h_cpu = train(m_cpu, X, y, SGD(1e25), batch_size=3, epochs=3)
    h_gpu = train(m_gpu, X, y, SGD(1e25), batch_size=3, epochs=3)
    assert h_cpu.diverged and h_gpu.diverged
    assert h_gpu.diverged_epoch == h_cpu.diverged_epoch
    assert h_gpu.updates == h_cpu.updates
    assert h_gpu.grad_evals == h_cpu.grad_evals
    np.testing.assert_array_equal(np.isfinite(m_gpu.params), np.isfinite(m_cpu.params))


def test_parameters_follow_the_host_and_data_is_not_cached_outside_runs(rng):
    X, y = _classification(rng)
    _, m = _pair([3, 4, 3], output="softmax", loss="cross_entropy", seed=9)
    before = m.forward(X)
    m.set_params_vector(np.zeros(m.n_params, np.float32))
    np.testing.assert_array_equal(m.forward(X), np.full_like(before, 1 / 3))
    m.initialize(9)
    assert_close(m.forward(X), before)
    X2 = X.copy()
    first = m.forward(X2)
    X2 *= 2.0  # changed in place: a new forward must see it
    assert not np.allclose(m.forward(X2), first)
    h = train(m, X, y, SGD(0.1), batch_size=4, epochs=1)
    assert m.engine.device._cache is None and h.state.count == 4
    m2 = MLP([3, 4, 3], output="softmax", loss="cross_entropy", seed=9)
    m2.set_params_vector(m.params)
    assert_close(m.forward(X), m2.forward(X))


def test_an_unknown_rule_code_raises_before_the_device_runs(rng):
    """A compiled GPU kernel cannot raise outside debug builds: the backend checks the rule code
    on the host, for a training run and for a population, and nothing changes."""
    from dlbasics.models import train_population

    class Unknown(SGD):
        code = 99

    X, y = _classification(rng)
    cpu, gpu = _pair([3, 4, 3], output="softmax", loss="cross_entropy", seed=2)
    before = gpu.params.copy()
    for model in (cpu, gpu):  # the CPU raises in compiled code, the GPU backend before a launch
        with pytest.raises(ValueError, match="unknown optimizer rule code"):
            train(model, X, y, Unknown(0.1), batch_size=4, epochs=1)
    np.testing.assert_array_equal(gpu.params, before)
    with pytest.raises(ValueError, match="unknown optimizer rule code 99"):
        train_population(gpu, X, y, [SGD(0.1), Unknown(0.1)], seeds=[1, 2], batch_size=4,
                         epochs=1)
