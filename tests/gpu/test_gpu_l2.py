"""The L2 penalty ``alpha`` on the ``"cuda"`` backend against the CPU backend: the batch
gradient (loss and weight gradients gain the penalty, biases do not) and whole training runs."""

import numpy as np
import pytest

from dlbasics.models import MLP, SGD, Adam, train
from tests.gpu.conftest import assert_close, tol


def _pair(dtype, seed=2):
    kw = dict(activation="tanh", output="softmax", loss="cross_entropy", dtype=dtype, seed=seed)
    return MLP([3, 9, 4, 3], backend="cpu", **kw), MLP([3, 9, 4, 3], backend="cuda", **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_penalised_gradient_equals_cpu(dtype, rng):
    X = rng.normal(size=(13, 3)).astype(dtype)
    y = rng.integers(0, 3, 13)
    m_cpu, m_gpu = _pair(dtype)
    v_cpu, g_cpu = m_cpu.gradient(X, y, alpha=0.9)
    v_gpu, g_gpu = m_gpu.gradient(X, y, alpha=0.9)
    v0, g0 = m_cpu.gradient(X, y)
    assert v_cpu > v0 and not np.array_equal(g_cpu, g0)  # the penalty is there
    assert v_gpu == pytest.approx(v_cpu, rel=tol(dtype))
    assert_close(g_gpu, g_cpu)


@pytest.mark.parametrize("opt", [SGD(0.2), Adam(0.02)], ids=["sgd", "adam"])
def test_penalised_training_run_equals_cpu(opt, rng):
    X = rng.normal(size=(16, 3)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    m_cpu, m_gpu = _pair(np.float32, seed=5)
    h_cpu = train(m_cpu, X, y, opt, batch_size=6, epochs=2, alpha=0.5)
    h_gpu = train(m_gpu, X, y, opt, batch_size=6, epochs=2, alpha=0.5)
    plain = MLP([3, 9, 4, 3], activation="tanh", output="softmax", loss="cross_entropy",
                seed=5)
    h_plain = train(plain, X, y, opt, batch_size=6, epochs=2)
    assert h_cpu.train_loss[0] > h_plain.train_loss[0]
    np.testing.assert_allclose(h_gpu.train_loss, h_cpu.train_loss, rtol=1e-4)
    assert_close(m_gpu.params, m_cpu.params, rtol=1e-4)


def test_estimator_on_cuda_follows_cpu(rng):
    """MLPClassifier(backend="cuda") with its default alpha: the same loss curve and weights as
    on the CPU (float64)."""
    import warnings

    from dlbasics.models import MLPClassifier

    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    kw = dict(hidden_layer_sizes=(5,), max_iter=3, batch_size=16, random_state=0,
              dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = MLPClassifier(**kw).fit(X, y)
        gpu = MLPClassifier(backend="cuda", **kw).fit(X, y)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-10)
    for a, b in zip(gpu.coefs_ + gpu.intercepts_, cpu.coefs_ + cpu.intercepts_, strict=True):
        assert_close(a, b)
