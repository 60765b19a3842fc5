"""The compiled ``RandomState.shuffle`` of the drop-in estimators: the same permutations as
NumPy's, and the generator left where NumPy's would be."""

import numpy as np
import pytest

from dlbasics.models._mt19937 import LegacyShuffler


@pytest.mark.parametrize("seed", [0, 7, 2**31 + 5])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 623, 624, 625, 1797, 4097, 100_000])
def test_same_permutations_and_state_as_numpy(seed, n):
    ref, ours = np.random.RandomState(seed), np.random.RandomState(seed)
    ref.standard_normal(3)  # a cached Gaussian and a position inside a block
    ours.standard_normal(3)
    shuffler = LegacyShuffler(ours)
    a, b = np.arange(n), np.arange(n)
    for _ in range(4):  # several epochs, crossing blocks of 624 words
        ref.shuffle(a)
        assert shuffler(b) is b
        np.testing.assert_array_equal(b, a)
    shuffler.close()
    shuffler.close()  # idempotent
    # the generator goes on as NumPy's: raw words, doubles and the cached Gaussian
    assert ours.randint(0, 2**31, size=700).tolist() == ref.randint(0, 2**31, size=700).tolist()
    assert ours.standard_normal() == ref.standard_normal()


def test_any_integer_dtype_and_a_block_boundary():
    ref = np.random.RandomState(3)
    ref.random_sample(623)  # the next draw ends the block: the shuffle generates the next one
    ours = np.random.RandomState()
    ours.set_state(ref.get_state())
    a = np.arange(1000, dtype=np.int32)
    b = a.copy()
    ref.shuffle(a)
    shuffler = LegacyShuffler(ours)
    shuffler(b)
    shuffler.close()
    np.testing.assert_array_equal(b, a)
    assert ours.random_sample() == ref.random_sample()


@pytest.mark.parametrize("n", [1, 5, 624, 1000])
def test_a_fresh_generator_starts_a_block(n):
    """A ``RandomState`` seeded and not drawn from (``pos == 624``, as each ``fit`` makes
    one from an integer ``random_state``) generates its first block inside the shuffle."""
    ref, ours = np.random.RandomState(42), np.random.RandomState(42)
    assert ours.get_state()[2] == 624
    shuffler = LegacyShuffler(ours)
    a, b = np.arange(n), np.arange(n)
    ref.shuffle(a)
    shuffler(b)
    shuffler.close()
    np.testing.assert_array_equal(b, a)
    assert ours.random_sample() == ref.random_sample()


def test_the_state_is_put_back_when_training_raises(monkeypatch):
    """The estimator closes its shuffler in a ``finally``: after an epoch raises, its
    ``RandomState`` is where ``RandomState.shuffle`` would have left it."""
    from dlbasics.models import MLPClassifier, estimators

    seen = {}

    def failing_train(model, X, T, optimizer, shuffle, **kw):
        seen["start"] = shuffle._rs.get_state()  # the state when the epochs began
        order = np.arange(X.shape[0], dtype=np.int64)
        shuffle(order)
        shuffle(order)
        raise RuntimeError("an epoch failed")

    monkeypatch.setattr(estimators, "train", failing_train)
    rs = np.random.RandomState(9)
    X = np.random.default_rng(0).normal(size=(40, 3))
    y = np.arange(40) % 2
    with pytest.raises(RuntimeError, match="an epoch failed"):
        MLPClassifier(hidden_layer_sizes=(4,), random_state=rs, max_iter=3).fit(X, y)
    ref = np.random.RandomState()
    ref.set_state(seen["start"])
    order = np.arange(40)
    ref.shuffle(order)
    ref.shuffle(order)
    assert rs.random_sample() == ref.random_sample()


def test_other_bit_generators_fall_back_to_numpy():
    ref = np.random.RandomState(np.random.PCG64(11))
    ours = np.random.RandomState(np.random.PCG64(11))
    shuffler = LegacyShuffler(ours)
    a, b = np.arange(500), np.arange(500)
    for _ in range(2):
        ref.shuffle(a)
        shuffler(b)
        np.testing.assert_array_equal(b, a)
    shuffler.close()
    assert ours.random_sample() == ref.random_sample()


def test_estimator_leaves_its_random_state_where_sklearn_would():
    pytest.importorskip("sklearn")
    from sklearn.neural_network import MLPClassifier as Theirs

    from dlbasics.models import MLPClassifier as Ours

    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    rs_theirs, rs_ours = np.random.RandomState(5), np.random.RandomState(5)
    kw = dict(hidden_layer_sizes=(5,), max_iter=3, batch_size=40, tol=0.0)
    with pytest.warns(Warning):
        Theirs(random_state=rs_theirs, **kw).fit(X, y)
    with pytest.warns(Warning):
        Ours(random_state=rs_ours, **kw).fit(X, y)
    assert rs_ours.random_sample() == rs_theirs.random_sample()
