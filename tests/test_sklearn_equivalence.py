"""Proof of equivalence: our MLPClassifier / MLPRegressor against scikit-learn's, fitted with
identical parameters.

For the same ``random_state`` ours draws the same initial weights, validation split and
visiting orders as scikit-learn's, so in float64 the two trainings follow the same path:
the loss curves agree to rounding for ``sgd`` (the same update formula) and to about 1e-5 for
``adam`` (ours adds ``epsilon`` to the bias-corrected root, as torch does, scikit-learn to the
raw one), and L-BFGS reaches the same solution. Tolerances are stated per test.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

sklearn = pytest.importorskip("sklearn")
from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from dlbasics.models import MLPClassifier, MLPRegressor  # noqa: E402


def _standard(X):
    return StandardScaler().fit_transform(X)


def _digits():
    X, y = load_digits(return_X_y=True)
    return _standard(X), y


def _cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return _standard(X), y


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return _standard(X), (y - y.mean()) / y.std()


def _multilabel(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    Y = np.column_stack([X[:, 0] + X[:, 1] > 0, X[:, 2] * X[:, 3] > 0, X[:, 4] > 0.5])
    return X, Y.astype(int)


def _fit_both(ours_cls, sk_cls, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = sk_cls(**params).fit(X, y)
        ours = ours_cls(dtype="float64", **params).fit(X, y)
    return ours, theirs


def _assert_same_weights(ours, theirs, rtol, atol):
    assert len(ours.coefs_) == len(theirs.coefs_)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_,
                    strict=True):
        assert a.shape == b.shape
        assert_allclose(a, b, rtol=rtol, atol=atol)


CLASSIFICATION = [("digits", _digits), ("cancer", _cancer), ("multilabel", _multilabel)]
STOCHASTIC = [
    ("sgd-plain", dict(solver="sgd", momentum=0.0, learning_rate_init=0.05), 1e-9),
    ("sgd-nesterov", dict(solver="sgd", learning_rate_init=0.02), 1e-9),
    ("sgd-momentum", dict(solver="sgd", nesterovs_momentum=False, learning_rate_init=0.02), 1e-9),
    ("adam", dict(solver="adam", learning_rate_init=0.003), 2e-5),
]


@pytest.mark.parametrize("name,make", CLASSIFICATION, ids=[c[0] for c in CLASSIFICATION])
@pytest.mark.parametrize("solver_id,params,rtol", STOCHASTIC, ids=[s[0] for s in STOCHASTIC])
def test_classifier_stochastic_solvers_follow_scikit_learn(name, make, solver_id, params, rtol):
    X, y = make()
    ours, theirs = _fit_both(MLPClassifier, sk.MLPClassifier, X, y, hidden_layer_sizes=(20,),
                             activation="tanh", alpha=1e-3, batch_size=64, max_iter=8,
                             random_state=3, **params)
    assert ours.n_iter_ == theirs.n_iter_ == 8
    assert ours.t_ == theirs.t_ == 8 * X.shape[0]
    assert ours.n_layers_ == theirs.n_layers_ and ours.n_outputs_ == theirs.n_outputs_
    assert ours.out_activation_ == theirs.out_activation_
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=rtol)
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=rtol)
    _assert_same_weights(ours, theirs, rtol=100 * rtol, atol=100 * rtol)
    assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e3 * rtol,
                    atol=1e3 * rtol)
    assert np.mean(ours.predict(X) == theirs.predict(X)) >= 0.995


@pytest.mark.parametrize("params", [
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2, power_t=0.3),
    dict(solver="sgd", momentum=0.0, learning_rate="adaptive", learning_rate_init=0.05,
         n_iter_no_change=2, tol=0.05),
    dict(solver="adam", shuffle=False, learning_rate_init=0.01),
], ids=["invscaling", "adaptive", "no-shuffle"])
def test_schedules_and_shuffle_follow_scikit_learn(params):
    X, y = _digits()
    ours, theirs = _fit_both(MLPClassifier, sk.MLPClassifier, X, y, hidden_layer_sizes=(16,),
                             batch_size=100, max_iter=12, random_state=0, **params)
    rtol = 2e-5 if params["solver"] == "adam" else 1e-9
    assert ours.n_iter_ == theirs.n_iter_
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    if params.get("learning_rate") == "adaptive":
        assert ours._lr == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)
        assert ours._lr < params["learning_rate_init"]  # the rate was divided at least once


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_regressor_stochastic_solvers_follow_scikit_learn(solver):
    X, y = _diabetes()
    ours, theirs = _fit_both(MLPRegressor, sk.MLPRegressor, X, y, hidden_layer_sizes=(30, 10),
                             solver=solver, learning_rate_init=0.01, alpha=0.01, max_iter=15,
                             random_state=1)
    rtol = 1e-9 if solver == "sgd" else 1e-4
    assert ours.n_iter_ == theirs.n_iter_
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e3 * rtol, atol=1e3 * rtol)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), abs=1e3 * rtol)


@pytest.mark.parametrize("name,make,cls,sk_cls", [
    ("digits", _digits, MLPClassifier, sk.MLPClassifier),
    ("cancer", _cancer, MLPClassifier, sk.MLPClassifier),
    ("diabetes", _diabetes, MLPRegressor, sk.MLPRegressor),
], ids=["digits", "cancer", "diabetes"])
def test_lbfgs_follows_scikit_learn(name, make, cls, sk_cls):
    X, y = make()
    ours, theirs = _fit_both(cls, sk_cls, X, y, solver="lbfgs", hidden_layer_sizes=(15,),
                             alpha=0.1, max_iter=30, random_state=2)
    assert ours.n_iter_ == theirs.n_iter_ == 30
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    _assert_same_weights(ours, theirs, rtol=1e-4, atol=1e-5)
    assert not hasattr(ours, "loss_curve_") and not hasattr(theirs, "loss_curve_")


def test_lbfgs_max_fun_and_convergence_as_scikit_learn():
    X, y = _cancer()
    ours, theirs = _fit_both(MLPClassifier, sk.MLPClassifier, X, y, solver="lbfgs",
                             hidden_layer_sizes=(5,), max_fun=7, random_state=0)
    assert ours.n_iter_ == theirs.n_iter_ <= 7
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPClassifier(solver="lbfgs", hidden_layer_sizes=(5,), max_iter=3).fit(X, y)


@pytest.mark.parametrize("cls,sk_cls,make", [
    (MLPClassifier, sk.MLPClassifier, _digits),
    (MLPClassifier, sk.MLPClassifier, _cancer),
    (MLPRegressor, sk.MLPRegressor, _diabetes),
], ids=["digits", "cancer", "diabetes"])
def test_early_stopping_follows_scikit_learn(cls, sk_cls, make):
    """Same validation split (stratified for one output), same scores, same stopping epoch,
    best weights restored."""
    X, y = make()
    ours, theirs = _fit_both(cls, sk_cls, X, y, hidden_layer_sizes=(12,), early_stopping=True,
                             validation_fraction=0.2, n_iter_no_change=3, tol=1e-3,
                             learning_rate_init=0.01, max_iter=60, random_state=4)
    assert ours.n_iter_ == theirs.n_iter_ < 60
    assert ours.best_loss_ is None and theirs.best_loss_ is None
    assert_allclose(ours.validation_scores_, theirs.validation_scores_, atol=1e-4)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_,
                                                        abs=1e-4)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), abs=1e-3)


def test_warm_start_from_identical_set_weights():
    """Weights set through ``coefs_``/``intercepts_`` before a warm start (the way to give
    scikit-learn's estimator chosen initial weights): both continue from them alike."""
    X, y = _cancer()
    rng = np.random.default_rng(0)
    init_W = [rng.normal(0, 0.2, size=(30, 8)), rng.normal(0, 0.2, size=(8, 1))]
    init_b = [rng.normal(0, 0.1, size=8), rng.normal(0, 0.1, size=1)]
    fitted = []
    for est in (MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.05,
                              max_iter=1, random_state=0, dtype="float64"),
                sk.MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.05,
                                 max_iter=1, random_state=0)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
            est.coefs_ = [W.copy() for W in init_W]
            est.intercepts_ = [b.copy() for b in init_b]
            est.set_params(warm_start=True, max_iter=5, random_state=7)
            est.fit(X, y)
        fitted.append(est)
    ours, theirs = fitted
    assert len(ours.loss_curve_) == len(theirs.loss_curve_) == 6
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    _assert_same_weights(ours, theirs, rtol=1e-8, atol=1e-10)


def test_partial_fit_follows_scikit_learn():
    X, y = _digits()
    ours = MLPClassifier(hidden_layer_sizes=(10,), random_state=0, dtype="float64")
    theirs = sk.MLPClassifier(hidden_layer_sizes=(10,), random_state=0)
    classes = np.unique(y)
    for _ in range(3):
        ours.partial_fit(X[:600], y[:600], classes=classes)
        theirs.partial_fit(X[:600], y[:600], classes=classes)
    assert ours.n_iter_ == theirs.n_iter_ == 1 and ours.t_ == theirs.t_ == 1800
    assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=2e-5)


def test_defaults_accuracy_within_one_point_of_scikit_learn_on_digits():
    """The issue's check: standardised digits, 75/25 split, every parameter at its default
    (ours trains in float32, its default dtype)."""
    X, y = _digits()
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = sk.MLPClassifier(random_state=0).fit(Xtr, ytr).score(Xte, yte)
        ours = MLPClassifier(random_state=0).fit(Xtr, ytr).score(Xte, yte)
    assert theirs > 0.95
    assert abs(ours - theirs) <= 0.01


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_same_parameters_and_defaults_as_scikit_learn(cls):
    ours = cls().get_params()
    theirs = getattr(sk, cls.__name__)().get_params()
    extras = {"keep_prob": None, "dropout": "scale", "dtype": "float32", "backend": "cpu"}
    assert {k: v for k, v in ours.items() if k not in extras} == theirs
    assert {k: ours[k] for k in extras} == extras


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_check_estimator_passes_with_no_expected_failures(cls):
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(cls(), on_fail=None)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert failed == []
    assert len(results) > 40
