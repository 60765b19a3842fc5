"""The backend interface: ``MLP``, ``train`` and ``train_population`` reach the arithmetic only
through a :class:`dlbasics.models.backends.Backend`, so a backend registered under a new name is
used everywhere without any other edit."""

from __future__ import annotations

import numpy as np
import pytest

from dlbasics.models import MLP, SGD, Adam, train, train_population
from dlbasics.models import backends as B


class Recording(B.NumpyBackend):
    """The NumPy backend under another name, counting the calls it gets."""

    name = "recording"

    def __init__(self, model):
        super().__init__(model)
        self.calls = {}

    def _count(self, what):
        self.calls[what] = self.calls.get(what, 0) + 1

    def forward(self, X):
        self._count("forward")
        return super().forward(X)

    def evaluate(self, X, Y, labels, dense):
        self._count("evaluate")
        return super().evaluate(X, Y, labels, dense)

    def batch_gradient(self, X, Y, labels, dense, order, start, stop, step, alpha=0.0):
        self._count("batch_gradient")
        return super().batch_gradient(X, Y, labels, dense, order, start, stop, step, alpha)

    def start(self, optimizer, state):
        self._count("start")
        return super().start(optimizer, state)

    def finish(self, optimizer, state):
        self._count("finish")
        return super().finish(optimizer, state)


@pytest.fixture
def recording(monkeypatch):
    monkeypatch.setitem(B.BACKENDS, "recording", Recording)
    return "recording"


def _data(seed=0, n=24):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float64)
    return X, y


CFG = dict(sizes=[3, 5, 1], output="sigmoid", loss="binary_cross_entropy", dtype=np.float64,
           seed=4)


def test_a_registered_backend_is_used_by_mlp_and_train_without_other_edits(recording):
    X, y = _data()
    model = MLP(backend=recording, **CFG)
    reference = MLP(backend="numpy", **CFG)
    assert isinstance(model.engine, Recording) and model.config()["backend"] == recording
    hist = train(model, X, y, Adam(0.05), batch_size=8, epochs=3, seed=2, X_val=X, y_val=y,
                 metrics="full")
    ref = train(reference, X, y, Adam(0.05), batch_size=8, epochs=3, seed=2, X_val=X, y_val=y,
                metrics="full")
    # the same arithmetic as the backend it derives from, bit for bit
    np.testing.assert_array_equal(model.params, reference.params)
    assert hist.train_loss == ref.train_loss and hist.val_loss == ref.val_loss
    assert hist.path == "general"
    calls = model.engine.calls
    # 3 epochs x 3 batches; the full and the validation evaluation at epochs 0..3
    assert calls == {"start": 1, "finish": 1, "batch_gradient": 9, "evaluate": 8}
    np.testing.assert_array_equal(model.forward(X), reference.forward(X))
    loss, grad = model.gradient(X, y)
    ref_loss, ref_grad = reference.gradient(X, y)
    assert loss == ref_loss
    np.testing.assert_array_equal(grad, ref_grad)
    grad[:] = 0.0  # a copy: the model's gradient buffer is untouched
    assert np.array_equal(model.grad, ref_grad)


def test_pickling_rebuilds_the_backend(recording):
    import pickle

    model = MLP(backend=recording, **CFG)
    clone = pickle.loads(pickle.dumps(model))
    assert isinstance(clone.engine, Recording) and clone.engine is not model.engine
    assert clone.engine.model is clone
    X, _ = _data()
    np.testing.assert_array_equal(clone.forward(X), model.forward(X))


@pytest.mark.parametrize("name", sorted(set(B.BACKENDS) - {"cuda"}))
def test_population_training_is_a_property_of_the_backend(name):
    X, y = _data()
    model = MLP(backend=name, **CFG)
    if type(model.engine).population_kernel is B.Backend.population_kernel:
        with pytest.raises(ValueError, match="population training runs on backend"):
            train_population(model, X, y, SGD(0.1), seeds=[1, 2], epochs=1)
        return
    hists, P = train_population(model, X, y, SGD(0.1), seeds=[1, 2], batch_size=4, epochs=2)
    alone = MLP(backend=name, **{**CFG, "seed": 2})
    h = train(alone, X, y, SGD(0.1), batch_size=4, epochs=2)
    # batches under 8 rows: the per-network kernel runs the same loops as training alone
    np.testing.assert_array_equal(P[1], alone.params)
    assert hists[1].train_loss == h.train_loss


def test_the_shared_epoch_bookkeeping_of_train_and_population():
    X, y = _data()
    stop_after = 2

    def early(epoch, hist, model):
        return epoch >= stop_after

    model = MLP(**CFG)
    h = train(model, X, y, SGD(0.1), batch_size=5, epochs=6, callbacks=[early])
    hp, _ = train_population(MLP(**CFG), X, y, SGD(0.1), seeds=[4], batch_size=5, epochs=6,
                             callbacks=[early])
    for hist in (h, hp[0]):
        assert hist.epochs == stop_after and hist.stopped_by == "early"
        assert hist.updates == [5, 10] and hist.grad_evals == [24, 48]
        assert len(hist.time) == 2 and 0 < hist.time[0] <= hist.time[1]
    assert h.train_loss == hp[0].train_loss
    # divergence: too large a rate on a regression overflows in epoch 2 (loss 1.5e76 after
    # epoch 1); both record it the same way and stop there
    reg = dict(sizes=[3, 5, 1], activation="relu", dtype=np.float64, seed=4)
    target = X.sum(axis=1)
    hd = train(MLP(**reg), X, target, SGD(3.0), batch_size=5, epochs=6)
    hpd, _ = train_population(MLP(**reg), X, target, SGD(3.0), seeds=[4], batch_size=5,
                              epochs=6)
    for hist in (hd, hpd[0]):
        assert hist.diverged and hist.diverged_epoch == hist.epochs == 2
        assert np.isnan(hist.train_loss[-1]) and 1e70 < hist.train_loss[0] < np.inf
        assert hist.stopped_by is None


@pytest.mark.parametrize("name", sorted(set(B.BACKENDS) - {"cuda"}))
def test_lbfgs_reaches_the_gradient_through_the_backend(name):
    from dlbasics.models import MLPClassifier

    X, y = _data(n=40)
    fits = [MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=20, random_state=0,
                          dtype=np.float64, backend=b).fit(X, y.astype(int))
            for b in ("cpu", name)]
    assert fits[0].n_iter_ == fits[1].n_iter_ >= 5
    assert abs(fits[0].loss_ - fits[1].loss_) < 1e-9
    for a, b in zip(fits[0].coefs_, fits[1].coefs_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
