"""Numerical extremes: huge logits, saturated sigmoids, an absurd learning rate."""

import warnings

import numpy as np
import pytest

from dlbasics.kernels import activations as A
from dlbasics.kernels import losses as L
from dlbasics.models import MLP, SGD, train
from dlbasics.models.population import train_population


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_give_finite_losses_and_gradients(dtype):
    z = np.array([[1e4, -1e4, 3.0], [-1e4, -1e4, -1e4], [1e4, 1e4, 1e4]], dtype=dtype)
    labels = np.array([1, 0, 2])
    onehot = np.eye(3, dtype=dtype)[labels]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning may leak
        with np.errstate(all="raise"):
            for name, y in (("cross_entropy_logits", labels),
                            ("binary_cross_entropy_logits", onehot), ("squared", onehot)):
                v, g = L.loss_and_gradient(name, y, z)
                assert np.isfinite(v) and np.isfinite(g).all(), name
            v, g = L.loss_and_gradient("binary_cross_entropy", onehot,
                                       A.activate("sigmoid", z))
            assert np.isfinite(v) and np.isfinite(g).all()


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_saturated_network_trains_without_warnings(backend):
    """Inputs of magnitude 1e4 saturate every sigmoid; losses and gradients stay finite."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 3)) * 1e4
    y = (X[:, 0] > 0).astype(np.float64)
    model = MLP([3, 8, 1], activation="sigmoid", output="sigmoid", loss="binary_cross_entropy",
                dtype=np.float64, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            value, g = model.gradient(X, y)
            assert np.isfinite(value) and np.isfinite(g).all()
            hist = train(model, X, y, SGD(0.1), batch_size=8, epochs=3, metrics="full")
    assert not hist.diverged and np.isfinite(hist.full_loss).all()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_learning_rate_1e3_is_recorded_as_diverged(backend, fast):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(64, 4))
    y = X @ np.array([1.0, -2.0, 3.0, 0.5]) * 10
    model = MLP([4, 16, 1], activation="relu", dtype=np.float64, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hist = train(model, X, y, SGD(1e3), batch_size=4, epochs=20, fast=fast)
    assert hist.diverged and 1 <= hist.diverged_epoch <= 20
    assert len(hist.train_loss) == hist.diverged_epoch and np.isnan(hist.train_loss[-1])


def test_population_keeps_going_past_a_diverged_network():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 2))
    y = X[:, 0] * 5
    model = MLP([2, 8, 1], dtype=np.float64)
    hists, P = train_population(model, X, y, [SGD(1e3), SGD(0.01)], [0, 1], batch_size=4,
                                epochs=10)
    assert hists[0].diverged and not hists[1].diverged
    assert hists[1].epochs == 10 and np.isfinite(P[1]).all()
