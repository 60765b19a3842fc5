"""scikit-learn-style MLPClassifier / MLPRegressor on top of MLP + train."""

import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from dlbasics.models.estimators import (
    ConvergenceWarning,
    LossPlateau,
    MLPClassifier,
    MLPRegressor,
    NotFittedError,
)
from dlbasics.models.mlp import MLP
from dlbasics.models.training import History

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def moons(n=300, noise=0.1, seed=0):
    """Two interleaving half circles (the shape of sklearn's make_moons)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.where(label == 0, np.cos(t), 1 - np.cos(t))
    y = np.where(label == 0, np.sin(t), 0.5 - np.sin(t))
    return np.column_stack([x, y]) + noise * rng.normal(size=(n, 2)), label


def xor(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


def blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    k = rng.integers(0, 3, n)
    return centers[k] + rng.normal(size=(n, 2)), np.array(["ant", "bee", "cat"])[k]


def sine(n=200):
    x = np.linspace(-3, 3, n)[:, None]
    return x, np.sin(x[:, 0])


def quiet(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **kw)


# -- learning -------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [moons, xor])
def test_classifier_learns_nonlinear_boundaries(make):
    X, y = make()
    clf = quiet(MLPClassifier(learning_rate=3e-2, max_epochs=400), X, y)
    assert clf.score(X, y) >= 0.97
    Xt, yt = make(seed=1)
    assert clf.score(Xt, yt) >= 0.9
    assert clf.model_.sizes == [2, 16, 1] and clf.model_.output == "sigmoid"
    assert clf.n_iter_ == len(clf.loss_curve_) == clf.history_.epochs
    assert clf.loss_curve_[-1] < 0.2 * clf.loss_curve_[0]


def test_classifier_three_blobs_with_string_labels():
    X, y = blobs()
    clf = quiet(MLPClassifier(learning_rate=1e-2, max_epochs=200), X, y)
    np.testing.assert_array_equal(clf.classes_, ["ant", "bee", "cat"])
    assert clf.model_.output == "softmax" and clf.model_.n_outputs == 3
    assert clf.score(X, y) >= 0.95
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba)


def test_binary_predict_proba_rows_sum_to_one():
    X, y = moons(100)
    clf = quiet(MLPClassifier(max_epochs=5), X, np.where(y == 1, "yes", "no"))
    proba = clf.predict_proba(X)
    assert proba.shape == (100, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), np.where(proba[:, 1] > 0.5, "yes", "no"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_regressor_fits_a_sine(dtype):
    x, y = sine()
    reg = quiet(MLPRegressor(learning_rate=1e-2, max_epochs=300, dtype=dtype), x, y)
    assert reg.score(x, y) > 0.9
    pred = reg.predict(x)
    assert pred.shape == (200,) and pred.dtype == np.float64
    assert reg.model_.dtype == np.dtype(dtype)


def test_regressor_two_outputs():
    x, _ = sine()
    Y = np.column_stack([np.sin(x[:, 0]), np.cos(x[:, 0])])
    reg = quiet(MLPRegressor(learning_rate=1e-2, max_epochs=300, hidden_layer_sizes=(32,)), x, Y)
    assert reg.n_outputs_ == 2 and reg.predict(x).shape == (200, 2)
    assert reg.score(x, Y) > 0.9
    col = quiet(MLPRegressor(max_epochs=3), x, Y[:, :1])
    assert col.predict(x).shape == (200, 1)


# -- partial_fit ----------------------------------------------------------------------------------
def test_partial_fit_continues_model_and_optimizer():
    X, y = moons(200)
    clf = MLPClassifier(learning_rate=1e-2, batch_size=50)
    clf.partial_fit(X, y, classes=[0, 1])
    model, state = clf.model_, clf.optimizer_state_
    assert state.count == 4  # 200 samples / 50 per batch
    for _ in range(29):
        clf.partial_fit(X, y)
    assert clf.model_ is model  # same network, trained further
    assert clf.optimizer_state_.count == 120
    assert clf.n_iter_ == 30 and len(clf.loss_curve_) == 30
    curve = np.array(clf.loss_curve_)
    assert curve[-1] < 0.5 * curve[0]
    assert np.all(curve[5:] < curve[0])
    # the Adam moments are carried over: dropping them changes the next step
    a, b = pickle.loads(pickle.dumps(clf)), pickle.loads(pickle.dumps(clf))
    b.optimizer_state_ = None
    a.partial_fit(X, y)
    b.partial_fit(X, y)
    assert not np.array_equal(a.model_.params, b.model_.params)


def test_partial_fit_after_fit_and_classes_checks():
    X, y = blobs(120)
    with pytest.raises(ValueError, match="classes"):
        MLPClassifier().partial_fit(X, y)
    clf = quiet(MLPClassifier(max_epochs=3), X, y)
    clf.partial_fit(X[:10], y[:10])  # a batch need not show every class
    assert clf.n_iter_ == 4
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y, classes=["ant", "bee"])
    with pytest.raises(ValueError, match="classes_"):
        clf.partial_fit(X[:2], np.array(["ant", "dog"]))
    reg = MLPRegressor(batch_size=None)
    for _ in range(3):
        reg.partial_fit(*sine())
    assert reg.n_iter_ == 3 and reg.optimizer_state_.count == 3  # full batch: one update each


def test_fit_restarts():
    X, y = moons(100)
    clf = quiet(MLPClassifier(max_epochs=10), X, y)
    first = clf.predict_proba(X)
    clf.partial_fit(X, y)
    quiet(clf, X, y)
    assert clf.n_iter_ == 10
    np.testing.assert_array_equal(clf.predict_proba(X), first)


# -- early stopping -------------------------------------------------------------------------------
def test_loss_plateau_rule():
    cb = LossPlateau(tol=0.1, n_iter_no_change=2)
    hist = History()
    stops = []
    for loss in [1.0, 0.8, 0.75, 0.74, 0.5, 0.45, 0.44, 0.43]:
        hist.train_loss.append(loss)
        stops.append(cb(len(hist.train_loss), hist, None))
    # improvements of >= tol reset the count; 3 (> 2) epochs without one stop
    assert stops == [False, False, False, False, False, False, False, True]


def test_early_stopping_and_convergence_warning():
    X, y = sine()
    reg = MLPRegressor(learning_rate=1e-2, tol=1e-2, n_iter_no_change=3, max_epochs=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg.fit(X, y)
    assert reg.n_iter_ < 500 and reg.history_.stopped_by == "loss_plateau"
    with pytest.warns(ConvergenceWarning, match="max_epochs"):
        MLPRegressor(max_epochs=2).fit(X, y)


def test_batch_size_is_clipped_and_none_is_full_batch():
    X, y = moons(10)
    clf = quiet(MLPClassifier(batch_size=32, max_epochs=4, shuffle=False), X, y)
    assert clf.optimizer_state_.count == 4  # one batch of 10 per epoch
    full = quiet(MLPClassifier(batch_size=None, max_epochs=4, shuffle=False), X, y)
    np.testing.assert_array_equal(full.model_.params, clf.model_.params)


def test_training_diverges_loudly():
    x, y = sine()
    with pytest.raises(ValueError, match="diverged"):
        MLPRegressor(optimizer="sgd", learning_rate=1e3, max_epochs=50).fit(x, 1e3 * y)


# -- parameters, clone, determinism, persistence --------------------------------------------------
def test_get_set_params_round_trip():
    clf = MLPClassifier(hidden_layer_sizes=(8, 4), optimizer="nesterov", momentum=0.8)
    params = clf.get_params()
    assert params["hidden_layer_sizes"] == (8, 4) and params["momentum"] == 0.8
    assert params["random_state"] == 0 and params["dtype"] == "float32"
    other = MLPClassifier().set_params(**params)
    assert other.get_params() == params
    assert "model_" not in vars(clf)
    with pytest.raises(ValueError, match="learning_rate_init"):
        clf.set_params(learning_rate_init=0.1)


def test_optimizers_and_their_hyper_parameters():
    X, y = moons(80)
    for name in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"):
        clf = quiet(MLPClassifier(optimizer=name, max_epochs=2, momentum=0.5,
                                  weight_decay=0.1), X, y)
        assert clf.optimizer_.name == name
    assert clf.optimizer_.weight_decay == 0.1
    nes = quiet(MLPClassifier(optimizer="nesterov", momentum=0.5, max_epochs=1), X, y)
    assert nes.optimizer_.momentum == 0.5


def test_clone():
    pytest.importorskip("sklearn")
    from sklearn.base import clone

    X, y = moons(80)
    clf = quiet(MLPClassifier(hidden_layer_sizes=(4,), max_epochs=3), X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "model_")
    quiet(twin, X, y)
    np.testing.assert_array_equal(twin.predict_proba(X), clf.predict_proba(X))


def test_determinism():
    X, y = moons(200)
    a = quiet(MLPClassifier(random_state=3, max_epochs=20), X, y).predict_proba(X)
    b = quiet(MLPClassifier(random_state=3, max_epochs=20), X, y).predict_proba(X)
    c = quiet(MLPClassifier(random_state=4, max_epochs=20), X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rs = np.random.RandomState(0)
    quiet(MLPClassifier(random_state=rs, max_epochs=2), X, y)  # RandomState accepted


def test_save_load_and_pickle(tmp_path):
    X, y = blobs(150)
    clf = quiet(MLPClassifier(hidden_layer_sizes=(8, 8), max_epochs=20), X, y)
    path = tmp_path / "clf.npz"
    clf.model_.save(path)
    loaded = MLP.load(path)
    np.testing.assert_array_equal(loaded.predict(X.astype(np.float32)), clf.model_.predict(
        X.astype(np.float32)))
    np.testing.assert_array_equal(loaded.forward(X.astype(np.float32)),
                                  clf.model_.forward(X.astype(np.float32)))
    np.testing.assert_array_equal(clf.classes_[loaded.predict(X.astype(np.float32))],
                                  clf.predict(X))
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    again.partial_fit(X, y)  # a pickled estimator keeps training (views and state intact)
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(again.model_.weights[0], clf.model_.weights[0])


def test_dropout_and_numpy_backend():
    X, y = moons(200)
    clf = quiet(MLPClassifier(keep_prob=0.9, learning_rate=3e-2, max_epochs=200), X, y)
    assert clf.score(X, y) > 0.9
    cpu = quiet(MLPRegressor(max_epochs=5, dtype="float64"), *sine())
    ref = quiet(MLPRegressor(max_epochs=5, dtype="float64", backend="numpy"), *sine())
    np.testing.assert_allclose(ref.predict(sine()[0]), cpu.predict(sine()[0]), rtol=1e-9,
                               atol=1e-12)


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"hidden_layer_sizes": (0,)}, ValueError, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": "16"}, TypeError, "hidden_layer_sizes"),
        ({"activation": "swish"}, ValueError, "activation"),
        ({"optimizer": "lbfgs"}, ValueError, "optimizer"),
        ({"learning_rate": -1.0}, ValueError, "learning_rate"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"max_epochs": 0}, ValueError, "max_epochs"),
        ({"keep_prob": 1.5}, ValueError, "keep_prob"),
        ({"dropout": "alpha"}, ValueError, "dropout"),
        ({"init": "zeros"}, ValueError, "init"),
        ({"dtype": "int32"}, TypeError, "dtype"),
        ({"backend": "tpu"}, ValueError, "backend"),
        ({"random_state": -1}, ValueError, "random_state"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change"),
        ({"optimizer": "momentum", "momentum": 1.0}, ValueError, "momentum"),
        ({"optimizer": "adamw", "weight_decay": -1.0}, ValueError, "weight_decay"),
    ],
)
def test_bad_parameters_are_reported_at_fit(params, error, match):
    X, y = moons(20)
    clf = MLPClassifier(**params)  # stored as-is
    with pytest.raises(error, match=match):
        clf.fit(X, y)


def test_bad_data():
    X, y = moons(20)
    with pytest.raises(ValueError, match="NaN"):
        MLPClassifier().fit(np.where(X > 1.5, np.nan, X), y)
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, X[:, 0])
    with pytest.raises(ValueError, match="class"):
        MLPClassifier().fit(X, np.zeros(20))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPRegressor().fit(X, y[:-1])
    with pytest.raises(NotFittedError):
        MLPRegressor().predict(X)
    reg = quiet(MLPRegressor(max_epochs=2), X, y)
    with pytest.raises(ValueError, match="features"):
        reg.predict(X[:, :1])
    with pytest.raises(ValueError, match="outputs"):
        reg.partial_fit(X, np.column_stack([y, y]))


# -- scikit-learn's own conformance suite ---------------------------------------------------------
ESTIMATORS = [
    MLPClassifier(),
    MLPRegressor(),
    MLPClassifier(hidden_layer_sizes=(), optimizer="sgd", learning_rate=0.1, batch_size=None,
                  dtype="float64"),
    MLPRegressor(hidden_layer_sizes=(8, 8), optimizer="momentum", keep_prob=0.8,
                 dtype="float64", backend="numpy", max_epochs=50),
]


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: repr(e).replace("\n", ""))
def test_sklearn_estimator_checks(est):
    pytest.importorskip("sklearn")
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            results = check_estimator(est, on_fail=None)
        except TypeError:  # scikit-learn < 1.6: no on_fail, raises on the first failure
            check_estimator(est)
            return
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 40


# -- without scikit-learn -------------------------------------------------------------------------
def test_fallback_without_sklearn():
    code = textwrap.dedent("""
        import sys, warnings
        sys.modules["sklearn"] = None  # make "import sklearn" fail
        import numpy as np
        import dlbasics.models.estimators as est
        from dlbasics.models.perceptron import Perceptron
        assert not est.HAVE_SKLEARN
        warnings.simplefilter("ignore", est.ConvergenceWarning)
        rng = np.random.default_rng(0)
        X = rng.uniform(-1, 1, size=(100, 2))
        y = np.where(X[:, 0] + X[:, 1] > 0, "up", "down")
        clf = est.MLPClassifier(learning_rate=3e-2, max_epochs=100)
        assert clf.get_params()["learning_rate"] == 3e-2
        assert clf.set_params(max_epochs=50) is clf and clf.max_epochs == 50
        assert repr(clf).startswith("MLPClassifier(")
        try:
            clf.predict(X)
        except est.NotFittedError:
            pass
        else:
            raise AssertionError("predict before fit")
        assert clf.fit(X.tolist(), list(y)).score(X, y) > 0.95
        assert clf.n_features_in_ == 2
        for bad, exc in [(X[:, 0], ValueError), (np.full_like(X, np.nan), ValueError)]:
            try:
                est.MLPClassifier().fit(bad, y)
            except exc:
                pass
            else:
                raise AssertionError("bad X accepted")
        try:
            clf.predict(X[:, :1])
        except ValueError as e:
            assert "features" in str(e)
        reg = est.MLPRegressor(learning_rate=1e-2, max_epochs=300)
        x = np.linspace(-3, 3, 200)[:, None]
        assert reg.fit(x, np.sin(x[:, 0])).score(x, np.sin(x[:, 0])) > 0.9
        p = Perceptron().fit(X, y)
        assert p.converged_ and p.score(X, y) == 1.0
        try:
            est.MLPClassifier().set_params(nope=1)
        except ValueError as e:
            assert "nope" in str(e)
        print("fallback ok")
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fallback ok" in out.stdout
