"""Our MLPClassifier / MLPRegressor as estimators: parameter checks, targets (binary,
multiclass with any labels, multilabel, multi-output), partial_fit and warm starts, the stopping
rule, our extras (dropout, dtype, backends), persistence, and the NumPy fallback without
scikit-learn. Equivalence with scikit-learn's numbers is in ``test_sklearn_equivalence.py``."""

import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from dlbasics.models.estimators import (
    ConvergenceWarning,
    MLPClassifier,
    MLPRegressor,
    NotFittedError,
)
from tests import naive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    k = rng.integers(0, 3, n)
    return centers[k] + rng.normal(size=(n, 2)), np.array(["ant", "bee", "cat"])[k]


def xor(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


#: scikit-learn's activation names -> those of tests/naive.py.
_NAIVE = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
          "softmax": "softmax"}


def reference_output(est, X):
    """The network's outputs recomputed from the fitted ``coefs_``/``intercepts_`` by the
    reference forward pass of ``tests/naive.py`` (float64, on X rounded to the weights' dtype
    as the estimator rounds it)."""
    sizes = [W.shape[0] for W in est.coefs_] + [est.coefs_[-1].shape[1]]
    net = naive.network(sizes, _NAIVE[est.activation], _NAIVE[est.out_activation_])
    params = naive.net_flat([(np.asarray(W, np.float64), np.asarray(b, np.float64))
                             for W, b in zip(est.coefs_, est.intercepts_, strict=True)])
    X = np.asarray(X).astype(est.coefs_[0].dtype)
    return naive.net_forward(net, params, X)[-1][2]


def quiet(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


# -- targets ----------------------------------------------------------------------------------
def test_string_labels_multiclass_softmax():
    X, y = blobs()
    clf = quiet(MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.01, max_iter=100,
                              random_state=0), X, y)
    np.testing.assert_array_equal(clf.classes_, ["ant", "bee", "cat"])
    assert clf.out_activation_ == "softmax" and clf.n_outputs_ == 3 and clf.n_layers_ == 3
    assert [W.shape for W in clf.coefs_] == [(2, 8), (8, 3)]
    ref = reference_output(clf, X)
    proba = clf.predict_proba(X)
    assert_allclose(proba, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[ref.argmax(axis=1)])
    assert clf.score(X, y) == np.mean(clf.classes_[ref.argmax(axis=1)] == y) >= 0.95
    assert_allclose(clf.predict_log_proba(X), np.log(ref), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("labels,classes", [
    (np.array([7, -3, 12]), [-3, 7, 12]),
    (np.array([3, 1, 3]).astype(np.uint8), [1, 3]),
    (np.array([True, False, False]), [False, True]),
    (np.array([0.0, 2.0, 1.0]), [0.0, 1.0, 2.0]),
])
def test_label_types_give_scikit_learns_classes(labels, classes):
    """Integer and bool labels skip type_of_target (they can only be binary or multiclass):
    the classes and the encoded targets are still scikit-learn's, and continuous or unknown
    labels are still refused."""
    from sklearn.neural_network import MLPClassifier as Theirs

    X, _ = blobs(60)
    y = np.resize(labels, 60)
    kw = dict(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
    ours, theirs = quiet(MLPClassifier(dtype="float64", **kw), X, y), quiet(Theirs(**kw), X, y)
    assert ours.classes_.tolist() == theirs.classes_.tolist() == classes
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-6)
    for bad, kind in ((np.resize([0.5, 1.5, 2.25], 60), "continuous"),
                      (np.resize(np.array([1, "a"], dtype=object), 60), "unknown")):
        with pytest.raises(ValueError, match=f"Unknown label type.*{kind}"):
            MLPClassifier(**kw).fit(X, bad)


def test_binary_one_logistic_output_and_threshold():
    X, y = xor()
    clf = quiet(MLPClassifier(hidden_layer_sizes=(16,), activation="tanh",
                              learning_rate_init=0.02, max_iter=300, random_state=0), X, y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.coefs_[-1].shape == (16, 1)
    p1 = reference_output(clf, X)[:, 0]
    assert_allclose(clf.predict_proba(X), np.column_stack([1 - p1, p1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(clf.predict(X), (p1 > 0.5).astype(int))
    assert clf.score(X, y) == np.mean((p1 > 0.5) == y) >= 0.95


def test_multilabel_indicator_targets():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 4))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < 0.3]).astype(int)
    clf = quiet(MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=150,
                              random_state=0), X, Y)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    ref = reference_output(clf, X)
    assert_allclose(clf.predict_proba(X), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(clf.predict(X), (ref > 0.5).astype(int))
    subset = np.mean(((ref > 0.5) == Y).all(axis=1))  # subset accuracy
    assert clf.score(X, Y) == subset >= 0.9


def test_regressor_one_and_two_outputs():
    x = np.linspace(-3, 3, 200)[:, None]
    y = np.sin(x[:, 0])
    reg = quiet(MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", solver="lbfgs",
                             max_iter=500, random_state=0), x, y)
    assert reg.out_activation_ == "identity"
    assert_allclose(reg.predict(x), reference_output(reg, x)[:, 0], rtol=1e-5, atol=1e-6)
    assert reg.score(x, y) > 0.99
    Y2 = np.column_stack([y, np.cos(x[:, 0])])
    reg2 = quiet(MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", solver="lbfgs",
                              max_iter=500, random_state=0), x, Y2)
    assert reg2.n_outputs_ == 2
    assert_allclose(reg2.predict(x), reference_output(reg2, x), rtol=1e-5, atol=1e-6)
    assert reg2.score(x, Y2) > 0.99


def test_poisson_loss_is_refused_by_name():
    with pytest.raises(ValueError, match="poisson"):
        MLPRegressor(loss="poisson").fit(np.ones((4, 1)), np.ones(4))


# -- the stochastic training record -----------------------------------------------------------
def test_training_record_and_loss_plateau_stop():
    X, y = blobs()
    clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.05, tol=1e-2,
                        n_iter_no_change=3, random_state=0).fit(X, y)
    curve = clf.loss_curve_
    assert clf.n_iter_ == len(curve) < 200 and clf.t_ == 300 * clf.n_iter_
    assert clf.loss_ == curve[-1] and clf.best_loss_ == min(curve)
    # scikit-learn's rule replayed: an epoch not below best - tol counts, an improving one
    # resets the count; the count passes n_iter_no_change = 3 at the last epoch, not before
    best, count, counts = np.inf, 0, []
    for v in curve:
        count = count + 1 if v > best - 1e-2 else 0
        best = min(best, v)
        counts.append(count)
    assert counts[-1] == 4 and max(counts[:-1]) <= 3
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None


def test_max_iter_warns_convergence():
    X, y = blobs()
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\)"):
        clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3


def test_batch_size_clipped_with_warning():
    """A batch larger than the data is clipped to it: the same training as batch_size=n, and
    the same as scikit-learn's clipped one (float64, Adam: to 2e-5, see
    test_sklearn_equivalence.py)."""
    X, y = blobs(50)
    kw = dict(hidden_layer_sizes=(4,), max_iter=2, random_state=0, dtype="float64")
    with pytest.warns(UserWarning, match="clipped"):
        clipped = quiet(MLPClassifier(batch_size=500, **kw), X, y)
    whole = quiet(MLPClassifier(batch_size=50, **kw), X, y)
    assert clipped.loss_curve_ == whole.loss_curve_ and clipped.t_ == 2 * 50
    sk = pytest.importorskip("sklearn.neural_network")
    with pytest.warns(UserWarning, match="clipped"):
        theirs = quiet(sk.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0,
                                        batch_size=500), X, y)
    assert_allclose(clipped.loss_curve_, theirs.loss_curve_, rtol=2e-5)


def test_partial_fit_and_warm_start_continue():
    X, y = blobs()
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for i in range(3):
        clf.partial_fit(X, y, classes=["ant", "bee", "cat"])
        assert len(clf.loss_curve_) == i + 1 and clf.n_iter_ == 1
    assert clf.loss_curve_[2] < clf.loss_curve_[0]
    assert clf._opt_state.count == 3 * 2  # Adam continued: 2 batches (auto = 200) per epoch
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(X, y, classes=["ant", "bee"])
    kw = dict(hidden_layer_sizes=(8,), max_iter=2, warm_start=True, random_state=0)
    warm = quiet(MLPClassifier(dtype="float64", **kw), X, y)
    quiet(warm, X, y)
    assert len(warm.loss_curve_) == 4 and warm.t_ == 4 * 300
    # the second fit continues from the first's weights, as scikit-learn's does (float64,
    # same initial weights and orders; Adam to 2e-5, see test_sklearn_equivalence.py)
    sk = pytest.importorskip("sklearn.neural_network")
    theirs = quiet(sk.MLPClassifier(**kw), X, y)
    quiet(theirs, X, y)
    assert_allclose(warm.loss_curve_, theirs.loss_curve_, rtol=2e-5)
    with pytest.raises(ValueError, match="same classes"):
        warm.fit(X[y != "cat"], y[y != "cat"])
    # with warm_start, partial_fit too needs the same classes (scikit-learn's rule)
    with pytest.raises(ValueError, match="same classes"):
        warm.partial_fit(X[y != "cat"], y[y != "cat"])
    warm.set_params(warm_start=False).partial_fit(X[y != "cat"], y[y != "cat"])  # fine then


def test_lbfgs_has_no_partial_fit():
    X, y = blobs(40)
    with pytest.raises(AttributeError, match="stochastic"):
        MLPClassifier(solver="lbfgs").partial_fit(X, y, classes=np.unique(y))


def test_early_stopping_keeps_the_best_weights():
    X, y = blobs(400)
    clf = quiet(MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True,
                              n_iter_no_change=2, max_iter=50, random_state=1), X, y)
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    with pytest.raises(ValueError, match="early_stopping"):
        clf.partial_fit(X, y)


def test_coefs_are_views_and_assignment_is_taken_over():
    X, y = xor(60)
    clf = quiet(MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0), X, y)
    assert np.shares_memory(clf.coefs_[0], clf._model.params)
    clf.coefs_ = [np.zeros((2, 3)), np.zeros((3, 1))]
    clf.intercepts_ = [np.zeros(3), np.array([2.0])]
    # a constant network: sigmoid(2) everywhere
    assert_allclose(clf.predict_proba(X)[:, 1], 1 / (1 + np.exp(-2.0)), rtol=1e-6)
    clf.coefs_ = [np.zeros((5, 3)), np.zeros((3, 1))]
    with pytest.raises(ValueError, match="coefs_"):
        clf.predict(X)


def test_diverging_training_raises():
    X, y = blobs(60)
    with pytest.raises(ValueError, match="non-finite"):
        quiet(MLPRegressor(solver="sgd", learning_rate_init=1e6, max_iter=20, random_state=0),
              X * 1e3, np.arange(60.0) * 1e3)


def test_verbose_prints_the_loss(capsys):
    X, y = blobs(40)
    clf = quiet(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, verbose=True,
                              random_state=0), X, y)
    out = capsys.readouterr().out.splitlines()
    # scikit-learn's format ("Iteration %d, loss = %.8f"), with the recorded losses
    assert out == [f"Iteration {i}, loss = {v:.8f}" for i, v in enumerate(clf.loss_curve_, 1)]


@pytest.mark.parametrize("kw", [
    dict(solver="adam"),
    dict(solver="adam", early_stopping=True),
    dict(solver="sgd", learning_rate="adaptive", learning_rate_init=1e-5),
], ids=["adam", "early-stopping", "sgd-adaptive"])
def test_verbose_says_why_training_stops_as_scikit_learn(kw, capsys):
    """The lines after the epochs' losses: why training stopped (or the rate was cut), in
    scikit-learn's words, the same lines as its fit prints for the same run (float64)."""
    sk = pytest.importorskip("sklearn.neural_network")
    X, y = blobs(200)
    kw = dict(hidden_layer_sizes=(4,), max_iter=300, tol=0.05, n_iter_no_change=2,
              verbose=True, random_state=0, **kw)
    lines = []
    for est in (MLPClassifier(dtype="float64", **kw), sk.MLPClassifier(**kw)):
        quiet(est, X, y)
        lines.append([ln for ln in capsys.readouterr().out.splitlines()
                      if not ln.startswith(("Iteration", "Validation score:"))])
    assert lines[0] == lines[1] and any("did not improve more than tol=" in ln
                                        for ln in lines[0])
    assert lines[0][-1].endswith("Stopping.")


# -- parameters --------------------------------------------------------------------------------
@pytest.mark.parametrize("params,error,match", [
    ({"hidden_layer_sizes": (4, 0)}, ValueError, "hidden_layer_sizes"),
    ({"hidden_layer_sizes": "big"}, TypeError, "hidden_layer_sizes"),
    ({"activation": "softmax"}, ValueError, "activation"),
    ({"solver": "rmsprop"}, ValueError, "solver"),
    ({"alpha": -1.0}, ValueError, "alpha"),
    ({"batch_size": "full"}, ValueError, "batch_size"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"learning_rate": "cosine"}, ValueError, "learning_rate"),
    ({"learning_rate_init": 0.0}, ValueError, "learning_rate_init"),
    ({"power_t": -0.5}, ValueError, "power_t"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"shuffle": "yes"}, TypeError, "shuffle"),
    ({"tol": -1e-3}, ValueError, "tol"),
    ({"momentum": 1.5}, ValueError, "momentum"),
    ({"momentum": 1.0, "solver": "sgd"}, ValueError, "momentum"),
    ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
    ({"beta_1": 1.0}, ValueError, "beta_1"),
    ({"beta_2": -0.1}, ValueError, "beta_2"),
    ({"epsilon": 0.0}, ValueError, "epsilon"),
    ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change"),
    ({"max_fun": 0}, ValueError, "max_fun"),
    ({"random_state": "seven"}, TypeError, "random_state"),
    ({"dtype": "int8"}, TypeError, "dtype"),
    ({"backend": "tpu"}, ValueError, "backend"),
    ({"dropout": "gaussian"}, ValueError, "dropout"),
])
def test_bad_parameters_are_reported_at_fit_by_name(params, error, match):
    X, y = blobs(30)
    est = MLPClassifier(**params)  # stored as given
    with pytest.raises(error, match=match):
        est.fit(X, y)


def test_unknown_parameter_is_an_error():
    with pytest.raises(TypeError, match="sample_weight"):
        MLPClassifier().fit(np.ones((4, 2)), [0, 1, 0, 1], sample_weight=np.ones(4))
    with pytest.raises(TypeError, match="max_epochs"):
        MLPClassifier(max_epochs=10)


def test_not_fitted():
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.ones((2, 2)))


# -- extras: dtype, backends, dropout ----------------------------------------------------------
def test_dtype_none_follows_X_and_float32_default():
    X, y = blobs(60)
    a = quiet(MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X, y)
    b = quiet(MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, dtype=None),
              X, y)
    assert a.coefs_[0].dtype == np.float32 and b.coefs_[0].dtype == np.float64
    assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-4)


def test_numpy_backend_matches_cpu():
    X, y = blobs(100)
    kw = dict(hidden_layer_sizes=(6,), max_iter=5, random_state=0, dtype="float64")
    a = quiet(MLPClassifier(**kw), X, y)
    b = quiet(MLPClassifier(backend="numpy", **kw), X, y)
    assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-9, atol=1e-12)


def test_dropout_extra_trains_and_is_repeatable():
    X, y = blobs(200)
    kw = dict(hidden_layer_sizes=(16,), learning_rate_init=0.02, max_iter=60, random_state=3)
    a = quiet(MLPClassifier(keep_prob=0.8, **kw), X, y)
    b = quiet(MLPClassifier(keep_prob=0.8, **kw), X, y)
    c = quiet(MLPClassifier(**kw), X, y)
    assert a.loss_curve_ == b.loss_curve_ and a.loss_curve_ != c.loss_curve_
    assert a.score(X, y) > 0.9


# -- persistence -------------------------------------------------------------------------------
def test_pickle_round_trip_and_continue():
    X, y = blobs(100)
    clf = quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0), X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert np.shares_memory(back.coefs_[0], back._model.params)
    back.partial_fit(X, y)
    clf.partial_fit(X, y)
    assert back.loss_curve_ == clf.loss_curve_


# -- without scikit-learn -------------------------------------------------------------------------
def test_fallback_without_sklearn():
    code = textwrap.dedent("""
        import sys, warnings
        sys.modules["sklearn"] = None  # make "import sklearn" fail
        import numpy as np
        import dlbasics.models.estimators as est
        assert not est.HAVE_SKLEARN
        warnings.simplefilter("ignore", est.ConvergenceWarning)
        rng = np.random.default_rng(0)
        X = rng.uniform(-1, 1, size=(100, 2))
        y = np.where(X[:, 0] + X[:, 1] > 0, "up", "down")
        clf = est.MLPClassifier(learning_rate_init=3e-2, max_iter=100, random_state=0)
        assert clf.get_params()["learning_rate_init"] == 3e-2
        assert clf.set_params(max_iter=60) is clf and clf.max_iter == 60
        assert repr(clf).startswith("MLPClassifier(")
        try:
            clf.predict(X)
        except est.NotFittedError:
            pass
        else:
            raise AssertionError("predict before fit")
        assert clf.fit(X.tolist(), list(y)).score(X, y) > 0.95
        assert clf.n_features_in_ == 2
        clf2 = est.MLPClassifier(early_stopping=True, max_iter=30, random_state=0).fit(X, y)
        assert len(clf2.validation_scores_) == clf2.n_iter_
        try:
            clf.predict(X[:, :1])
        except ValueError as e:
            assert "features" in str(e)
        reg = est.MLPRegressor(solver="lbfgs", activation="tanh", max_iter=300, random_state=0)
        x = np.linspace(-3, 3, 200)[:, None]
        assert reg.fit(x, np.sin(x[:, 0])).score(x, np.sin(x[:, 0])) > 0.9
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


@pytest.mark.parametrize(
    "y",
    [np.array([3, 1, 3, 2, 1]), np.array([-4, 7, -4, 0], dtype=np.int32),
     np.array([250, 3, 3], dtype=np.uint8), np.array([2**40, 5, 2**40]),
     np.arange(5000)[::-1] % 1700, np.array([True, False, True]), np.array([1.0, 3.0, 1.0]),
     np.array(["b", "a", "b"]), np.array([-128, 127, 0], dtype=np.int8),
     # beyond 2**53 a table keyed in int64 would compare with uint64 through float64
     np.array([2**53 + 1, 2**53, 2**53 + 1, 2**53 + 2], dtype=np.uint64),
     np.array([2**63 + 1, 2**63], dtype=np.uint64), np.array([2**63 - 1, 2**63 - 2]),
     np.array([-(2**63), -(2**63) + 1]), np.array([2**62 - 1, 2**62 - 3])],
)
def test_label_helpers_equal_unique_and_searchsorted(y):
    from dlbasics.models.estimators import _label_indices, _unique_labels

    classes = _unique_labels(y)
    ref = np.unique(y)
    assert classes.dtype == ref.dtype
    np.testing.assert_array_equal(classes, ref)
    idx = _label_indices(classes, y)
    np.testing.assert_array_equal(idx, np.searchsorted(ref, y))


@pytest.mark.parametrize(
    "classes, y",
    [(np.array([1, 5, 9], dtype=np.uint8), np.array([1, 9, 5], dtype=np.int32)),
     (np.array([-3, 4]), np.array([4, -3], dtype=np.int8)),
     (np.array([3, 4], dtype=np.uint64), np.array([-1, 3, 4])),
     (np.array([0, 1], dtype=np.int8), np.array([300, 0, 1]))],
)
def test_label_indices_with_classes_of_another_dtype(classes, y):
    """``partial_fit``'s labels against the fitted ``classes_``: any integer dtypes, labels
    outside every class included (``np.searchsorted``'s positions; the caller rejects them)."""
    from dlbasics.models.estimators import _label_indices

    np.testing.assert_array_equal(_label_indices(classes, y), np.searchsorted(classes, y))


def test_partial_fit_is_present_where_scikit_learns_is():
    """``MLPClassifier.partial_fit`` exists only for the stochastic solvers, as scikit-learn's
    ``available_if`` makes it; ``MLPRegressor.partial_fit`` always (scikit-learn's check is
    never called), raising when called with lbfgs."""
    sk = pytest.importorskip("sklearn.neural_network")
    for solver in ("lbfgs", "sgd", "adam"):
        for ours, theirs in ((MLPClassifier, sk.MLPClassifier), (MLPRegressor, sk.MLPRegressor)):
            assert hasattr(ours(solver=solver), "partial_fit") == \
                hasattr(theirs(solver=solver), "partial_fit")
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    X, y = blobs(40)
    with pytest.raises(AttributeError, match="stochastic"):
        MLPRegressor(solver="lbfgs").partial_fit(X, np.arange(40.0))
    assert MLPClassifier.partial_fit.__doc__.startswith("One epoch over")
