"""The Perceptron model: the notes' rule, Novikoff's bound, XOR, the estimator API, and
equality with scikit-learn's Perceptron (same numbers with ``shuffle=False``)."""

import warnings

import numpy as np
import pytest

from dlbasics.models.estimators import NotFittedError
from dlbasics.models.perceptron import (
    ConvergenceWarning,
    Perceptron,
    max_margin_separator,
    mistake_bound,
)

W_TRUE = np.array([1.0, -2.0, 0.5])
B_TRUE = 0.3
MARGIN = 0.2


def separable_blobs(seed, n=200, margin=MARGIN):
    """Points in [-2, 2]^3 labelled by ``(W_TRUE, B_TRUE)``, at augmented margin >= ``margin``.

    The margin is measured on ``(x, 1)`` against the unit vector ``(W_TRUE, B_TRUE) / norm``,
    as in Novikoff's theorem.
    """
    rng = np.random.default_rng(seed)
    v = np.append(W_TRUE, B_TRUE)
    v = v / np.linalg.norm(v)
    X = np.empty((0, 3))
    while len(X) < n:
        cand = rng.uniform(-2, 2, size=(4 * n, 3))
        m = cand @ v[:3] + v[3]
        X = np.vstack([X, cand[np.abs(m) >= margin]])
    X = X[:n]
    y = np.where(X @ W_TRUE + B_TRUE > 0, 1, -1)
    return X, y


XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0, 1, 1, 0])


# -- the rule, worked by hand ---------------------------------------------------------------------
# X = (3, 1) labelled "pos", (1, 2) labelled "neg"; classes_ = ["neg", "pos"] so pos = +1.
# Visiting order fixed (shuffle=False), eta0 = 1, start w = (0, 0), b = 0; s = w.x + b and a
# mistake is y * s <= 0 (s = 0 is a mistake).
#
# epoch 1: n0 (+1): s = 0                      -> mistake: w = (3, 1),   b = 1
#          n1 (-1): s = 3 + 2 + 1 = 6          -> mistake: w = (2, -1),  b = 0
# epoch 2: n0 (+1): s = 6 - 1 + 0 = 5          -> correct
#          n1 (-1): s = 2 - 2 + 0 = 0          -> mistake: w = (1, -3),  b = -1
# epoch 3: n0 (+1): s = 3 - 3 - 1 = -1         -> mistake: w = (4, -2),  b = 0
#          n1 (-1): s = 4 - 4 + 0 = 0          -> mistake: w = (3, -4),  b = -1
# epoch 4: n0: s = 9 - 4 - 1 = 4 > 0, n1: s = 3 - 8 - 1 = -6 < 0 -> no mistake, converged.
# scikit-learn's stopping rule on the mean perceptron loss max(0, -y s) of each epoch:
# epochs 1..4 have losses (0 + 6)/2 = 3, (0 + 0)/2 = 0, (1 + 0)/2 = 0.5, 0; best so far
# 3, 0, 0, 0; epochs 3, 4, 5, 6, 7 do not improve on it by tol = 1e-3, and the fifth such
# epoch (n_iter_no_change = 5) stops: n_iter_ = 7, the last three epochs without mistakes.
HAND_X = np.array([[3.0, 1.0], [1.0, 2.0]])
HAND_Y = np.array(["pos", "neg"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hand_worked_two_epochs(dtype):
    clf = Perceptron(shuffle=False, max_iter=2, dtype=dtype)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        clf.fit(HAND_X, HAND_Y)
    assert clf.mistakes_ == [2, 1]
    assert clf.n_iter_ == 2 and not clf.converged_ and clf.t_ == 1 + 2 * 2
    np.testing.assert_array_equal(clf.coef_, [[1.0, -3.0]])
    np.testing.assert_array_equal(clf.intercept_, [-1.0])
    assert clf.coef_.dtype == dtype
    assert list(clf.classes_) == ["neg", "pos"]


def test_hand_worked_to_convergence():
    clf = Perceptron(shuffle=False).fit(HAND_X, HAND_Y)
    assert clf.mistakes_ == [2, 1, 2, 0, 0, 0, 0]
    assert clf.converged_ and clf.n_iter_ == 7
    np.testing.assert_array_equal(clf.coef_, [[3.0, -4.0]])
    np.testing.assert_array_equal(clf.intercept_, [-1.0])
    np.testing.assert_array_equal(clf.decision_function(HAND_X), [4.0, -6.0])
    np.testing.assert_array_equal(clf.predict(HAND_X), HAND_Y)
    assert clf.score(HAND_X, HAND_Y) == 1.0


def test_tol_none_runs_max_iter_and_no_intercept_keeps_b_zero():
    clf = Perceptron(shuffle=False, tol=None, max_iter=9).fit(HAND_X, HAND_Y)
    assert clf.n_iter_ == 9 and clf.mistakes_[3:] == [0] * 6
    flat = Perceptron(shuffle=False, fit_intercept=False, max_iter=3, tol=None)
    flat.fit(HAND_X, HAND_Y)
    assert flat.intercept_[0] == 0.0
    # epoch 1 without b: n0 s = 0 -> w = (3, 1); n1 s = 5 -> w = (2, -1); epoch 2: n0 s = 5,
    # n1 s = 0 -> w = (1, -3); epoch 3: n0 s = 0 -> w = (4, -2); n1 s = 0 -> w = (3, -4)
    np.testing.assert_array_equal(flat.coef_, [[3.0, -4.0]])


def test_learning_rate_scales_weights_only():
    # From w = 0 the rule with eta0 = 0.5 is the eta0 = 1 run scaled by 0.5 (exact in binary);
    # the loss-based stopping rule sees losses halved, so it may stop differently: tol=None.
    a = Perceptron(shuffle=False, eta0=0.5, tol=None, max_iter=4).fit(HAND_X, HAND_Y)
    assert a.mistakes_ == [2, 1, 2, 0]
    np.testing.assert_array_equal(a.coef_, [[1.5, -2.0]])
    np.testing.assert_array_equal(a.intercept_, [-0.5])


def test_partial_fit_runs_one_epoch_each():
    clf = Perceptron(shuffle=False)
    clf.partial_fit(HAND_X, HAND_Y, classes=["neg", "pos"])
    np.testing.assert_array_equal(clf.coef_, [[2.0, -1.0]])
    np.testing.assert_array_equal(clf.intercept_, [0.0])
    clf.partial_fit(HAND_X, HAND_Y)
    assert clf.mistakes_ == [2, 1] and clf.n_iter_ == 1 and not clf.converged_
    np.testing.assert_array_equal(clf.coef_, [[1.0, -3.0]])
    clf.partial_fit(HAND_X, HAND_Y)
    clf.partial_fit(HAND_X, HAND_Y)
    assert clf.mistakes_ == [2, 1, 2, 0] and clf.converged_


def test_partial_fit_needs_classes_first():
    with pytest.raises(ValueError, match="classes"):
        Perceptron().partial_fit(HAND_X, HAND_Y)
    clf = Perceptron().partial_fit(HAND_X, HAND_Y, classes=["neg", "pos"])
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(HAND_X, HAND_Y, classes=["neg", "other"])
    with pytest.raises(ValueError, match="classes_"):
        clf.partial_fit(HAND_X, np.array(["pos", "maybe"]))


# -- Novikoff's bound -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_separable_blobs_converge_within_the_mistake_bound(seed):
    X, y = separable_blobs(seed)
    bound_true = mistake_bound(X, y, (W_TRUE, B_TRUE))
    bound_best = mistake_bound(X, y)
    # R <= sqrt(3 * 2^2 + 1) and the known separator has margin >= MARGIN.
    assert bound_true <= 13.0 / MARGIN**2
    assert bound_best <= bound_true * (1 + 1e-9)  # the max-margin separator is at least as good
    for shuffle in (True, False):
        clf = Perceptron(random_state=seed, shuffle=shuffle, tol=None, max_iter=300).fit(X, y)
        assert clf.converged_
        first_clean = clf.mistakes_.index(0)
        assert all(m > 0 for m in clf.mistakes_[:first_clean])
        assert all(m == 0 for m in clf.mistakes_[first_clean:])
        assert sum(clf.mistakes_) <= bound_best
        assert clf.score(X, y) == 1.0
        # same mistakes whatever the learning rate, from zero (0.25: exact scaling)
        slow = Perceptron(random_state=seed, shuffle=shuffle, eta0=0.25, tol=None,
                          max_iter=300).fit(X, y)
        assert slow.mistakes_ == clf.mistakes_


def test_max_margin_separator_simple_case():
    # z = (x, 1): (1, 1) with +1 and (-1, 1) with -1; best v = (1, 0), gamma = 1, R^2 = 2.
    X = np.array([[1.0], [-1.0]])
    y = np.array([1, -1])
    w, b, gamma = max_margin_separator(X, y)
    np.testing.assert_allclose(w, [1.0], atol=1e-6)
    assert abs(b) < 1e-6 and gamma == pytest.approx(1.0, abs=1e-6)
    assert mistake_bound(X, y) == pytest.approx(2.0, abs=1e-5)
    assert mistake_bound(X, y, np.array([1.0, 0.0])) == pytest.approx(2.0)
    # a worse separator gives a larger, still valid, bound: v = (1, 0.5) -> gamma = 0.5/|v|
    assert mistake_bound(X, y, (np.array([1.0]), 0.5)) == pytest.approx(2.0 * 1.25 / 0.25)


def test_mistake_bound_errors():
    X, y = separable_blobs(0, n=50)
    with pytest.raises(ValueError, match="w_star"):
        mistake_bound(X, y, np.ones(3))  # bias missing
    with pytest.raises(ValueError, match="w_star does not separate"):
        mistake_bound(X, y, -np.append(W_TRUE, B_TRUE))  # the opposite side
    with pytest.raises(ValueError, match="not linearly separable"):
        mistake_bound(XOR_X, XOR_Y)
    with pytest.raises(ValueError, match="y must have shape"):
        mistake_bound(X, y[:-1])


# -- XOR: not separable ---------------------------------------------------------------------------
def test_xor_does_not_converge_and_warns():
    clf = Perceptron(max_iter=25, tol=None)
    clf.fit(XOR_X, XOR_Y)  # tol=None: no stopping rule, so no warning either
    assert not clf.converged_ and clf.n_iter_ == 25 and len(clf.mistakes_) == 25
    assert min(clf.mistakes_) > 0
    assert clf.score(XOR_X, XOR_Y) < 1.0
    with pytest.warns(ConvergenceWarning, match="Maximum number of iteration"):
        Perceptron(max_iter=3, tol=0.0, n_iter_no_change=10).fit(XOR_X, XOR_Y)


# -- scikit-learn's Perceptron: the same numbers --------------------------------------------------
@pytest.mark.parametrize("params", [
    {}, {"fit_intercept": False}, {"eta0": 0.1}, {"tol": None, "max_iter": 7},
    {"n_iter_no_change": 2, "tol": 0.01}, {"class_weight": "balanced"},
    {"class_weight": {1: 3.0}},
], ids=["defaults", "no-intercept", "eta0", "tol-none", "n_iter_no_change", "balanced",
        "class-weight-dict"])
@pytest.mark.parametrize("data", ["iris", "digits-binary"])
def test_same_numbers_as_scikit_learn_without_shuffling(params, data):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits, load_iris

    del sklearn
    from sklearn.linear_model import Perceptron as Theirs

    if data == "iris":
        X, y = load_iris(return_X_y=True)
    else:
        X, y = load_digits(return_X_y=True)
        y = (y == 9).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = Theirs(shuffle=False, **params).fit(X, y)
        ours = Perceptron(shuffle=False, **params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.coef_, theirs.coef_)
    np.testing.assert_array_equal(ours.intercept_, theirs.intercept_)
    np.testing.assert_array_equal(ours.decision_function(X), theirs.decision_function(X))
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_parameters_and_defaults_are_scikit_learns():
    sklearn = pytest.importorskip("sklearn")
    del sklearn
    from sklearn.linear_model import Perceptron as Theirs

    ours = Perceptron().get_params()
    assert ours.pop("dtype") is np.float64
    assert ours == Theirs().get_params()


def test_shuffled_multiclass_accuracy_like_scikit_learn():
    sklearn = pytest.importorskip("sklearn")
    del sklearn
    from sklearn.datasets import load_digits
    from sklearn.linear_model import Perceptron as Theirs

    X, y = load_digits(return_X_y=True)
    ours = Perceptron(random_state=0).fit(X, y)
    theirs = Theirs(random_state=0).fit(X, y)
    assert ours.coef_.shape == theirs.coef_.shape == (10, 64)
    assert ours.score(X, y) >= theirs.score(X, y) - 0.03


def test_early_stopping_holds_out_validation():
    X, y = separable_blobs(3, n=300)
    clf = Perceptron(early_stopping=True, validation_fraction=0.2, n_iter_no_change=3,
                     random_state=0).fit(X, y)
    assert 3 <= clf.n_iter_ < 1000
    # scikit-learn counts all rows, the 60 held out (not trained on) too
    assert clf.t_ == 1 + clf.n_iter_ * 300
    assert clf.score(X, y) > 0.95


# -- determinism ----------------------------------------------------------------------------------
def test_same_seed_same_result():
    X, y = separable_blobs(7)
    a = Perceptron(random_state=3).fit(X, y)
    b = Perceptron(random_state=3).fit(X, y)
    assert a.mistakes_ == b.mistakes_
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    # refitting the same estimator starts again from zero
    a.fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    # warm_start continues from the weights instead
    c = Perceptron(shuffle=False, tol=None, max_iter=2).fit(HAND_X, HAND_Y)
    c.set_params(warm_start=True, max_iter=2).fit(HAND_X, HAND_Y)
    np.testing.assert_array_equal(c.coef_, [[3.0, -4.0]])  # epochs 3 and 4 of the hand run


def test_any_two_labels_and_list_input():
    X, y = separable_blobs(1, n=60)
    labels = np.where(y > 0, 7, 3)
    clf = Perceptron().fit(X.tolist(), labels.tolist())
    np.testing.assert_array_equal(clf.classes_, [3, 7])
    np.testing.assert_array_equal(clf.predict(X), labels)
    ref = Perceptron().fit(X, (y > 0).astype(float))
    np.testing.assert_array_equal(ref.coef_, clf.coef_)


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"eta0": 0.0}, ValueError, "eta0"),
        ({"eta0": "fast"}, TypeError, "eta0"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"max_iter": 2.5}, TypeError, "max_iter"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"penalty": "l2"}, ValueError, "penalty"),
        ({"class_weight": "heavy"}, ValueError, "class_weight"),
        ({"class_weight": {"cat": 2.0}}, ValueError, "class_weight"),
        ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
        ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change"),
        ({"shuffle": "yes"}, TypeError, "shuffle"),
        ({"random_state": "seven"}, TypeError, "random_state"),
        ({"dtype": np.int32}, TypeError, "dtype"),
    ],
)
def test_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        Perceptron(**params).fit(HAND_X, HAND_Y)


def test_bad_data():
    with pytest.raises(ValueError, match="NaN"):
        Perceptron().fit(np.array([[np.nan, 1.0], [1.0, 2.0]]), HAND_Y)
    with pytest.raises(ValueError, match="class"):
        Perceptron().fit(HAND_X, np.array([1, 1]))
    with pytest.raises(ValueError, match="2D"):
        Perceptron().fit(np.array([1.0, 2.0]), HAND_Y)
    with pytest.raises(NotFittedError):
        Perceptron().predict(HAND_X)
    clf = Perceptron().fit(HAND_X, HAND_Y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(np.ones((2, 3)))


# -- estimator API --------------------------------------------------------------------------------
def test_get_set_params():
    clf = Perceptron(eta0=0.5, random_state=4)
    assert clf.get_params()["eta0"] == 0.5 and clf.get_params()["random_state"] == 4
    assert clf.set_params(max_iter=3) is clf and clf.max_iter == 3
    with pytest.raises(ValueError, match="momentum"):
        clf.set_params(momentum=0.9)


def test_sklearn_estimator_checks():
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.utils.estimator_checks import check_estimator

    est = Perceptron()
    assert clone(est).get_params() == est.get_params()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(est, on_fail=None)
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 40


def test_warm_start_partial_fit_and_t_as_scikit_learn():
    """``warm_start``: each ``fit`` counts ``t_`` from 1 again and continues from ``coef_``
    whenever its shape fits (other labels too), the same numbers as scikit-learn's; a shape
    that does not fit raises, as scikit-learn's does; ``partial_fit`` refuses
    ``early_stopping`` with scikit-learn's message."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import Perceptron as Theirs

    X, y = load_iris(return_X_y=True)
    kw = dict(shuffle=False, max_iter=5, tol=None, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = Perceptron(**kw), Theirs(**kw)
        for labels in (y, y + 5):  # the second fit: other labels, as many classes
            ours.fit(X, labels)
            theirs.fit(X, labels)
            assert ours.t_ == theirs.t_ == 1 + 5 * 150 and ours.n_iter_ == theirs.n_iter_
            np.testing.assert_array_equal(ours.coef_, theirs.coef_)
            np.testing.assert_array_equal(ours.intercept_, theirs.intercept_)
            assert len(ours.mistakes_) == 5
        for bad_X, bad_y in ((X[y != 2], y[y != 2]), (X[:, :3], y)):
            with pytest.raises(ValueError, match="does not match dataset"):
                theirs.fit(bad_X, bad_y)
            with pytest.raises(ValueError, match="does not match dataset"):
                ours.fit(bad_X, bad_y)
    with pytest.raises(ValueError, match="early_stopping should be False with partial_fit"):
        Perceptron(early_stopping=True).partial_fit(X, y, classes=np.unique(y))
