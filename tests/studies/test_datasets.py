import builtins
import random

import numpy as np
import pytest

from dlbasics.studies import datasets as D

SMALL = {"digits": {"n": 300}, "mnist1d": {"n_train": 240, "n_val": 60}}


@pytest.mark.parametrize("name", list(D.PROBLEMS))
def test_problem_shapes_splits_and_standardisation(name):
    args = SMALL.get(name, {})
    ds = D.load(name, 0, **args)
    d, k, task = D.dims(name, **args)
    assert (ds.n_features, ds.n_outputs, ds.task) == (d, k, task)
    ntr, nva, nte = ds.sizes()
    assert min(ntr, nva, nte) > 0 and ntr > nva
    for X, y in ((ds.X_train, ds.y_train), (ds.X_val, ds.y_val), (ds.X_test, ds.y_test)):
        assert X.dtype == np.float32 and X.flags.c_contiguous and np.isfinite(X).all()
        assert y.shape[0] == X.shape[0]
        if task == "binary":
            assert y.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
        elif task == "multiclass":
            assert y.dtype == np.int64 and y.min() >= 0 and y.max() < ds.n_classes
        else:
            assert y.shape == (X.shape[0], 1)
    # standardised on the training split only
    assert np.allclose(ds.X_train.mean(axis=0), 0, atol=1e-4)
    sd = ds.X_train.std(axis=0)
    assert np.allclose(sd[sd > 0], 1, atol=1e-3)
    # splits do not share samples
    rows = {tuple(r) for r in ds.X_train}
    assert not any(tuple(r) in rows for r in ds.X_test)


@pytest.mark.parametrize("name", ["xor", "moons", "spirals", "sine"])
def test_seeded_and_deterministic(name):
    a, b, c = (D.PROBLEMS[name][0](seed=s) for s in (3, 3, 4))
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)


@pytest.mark.parametrize("name", ["blobs", "xor", "moons", "circles", "spirals", "sine"])
def test_synthetic_problems_test_on_a_separate_draw_of_n_test_points(name):
    ds = D.PROBLEMS[name][0](seed=2, n=80, n_test=500)
    assert ds.sizes() == (60, 20, 500)
    assert D.PROBLEMS[name][0](seed=2).sizes()[2] == D.N_TEST == 10_000
    if ds.task == "binary":  # balanced classes in the test draw too
        assert abs(float(ds.y_test.mean()) - 0.5) < 0.06


def test_digits_and_mnist1d_resplit_per_seed():
    a, b = D.digits(seed=0), D.digits(seed=1)
    assert a.sizes() == b.sizes() == (1078, 359, 360)
    assert not np.array_equal(a.X_test, b.X_test)


def test_unstandardised_inputs_are_raw():
    ds = D.xor(seed=0, standardize=False)
    assert abs(ds.X_train.mean()) < 0.5 and ds.X_train.std() > 0.8
    assert ds.info["standardize"] is False


@pytest.mark.parametrize("dim", [2, 5])
def test_blobs_are_separable_with_the_stated_margin(dim):
    ds = D.blobs(seed=1, n=300, dim=dim, margin=0.4)
    w, b = np.array(ds.info["w"]), ds.info["b"]
    X = np.vstack([ds.X_train, ds.X_val, ds.X_test]).astype(np.float64)
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test]) * 2 - 1
    dist = y * (X @ w + b) / np.linalg.norm(w)
    assert dist.min() > 0
    assert np.isclose(dist.min(), ds.info["margin"], rtol=1e-5)
    raw = D.blobs(seed=1, n=300, dim=dim, margin=0.4, standardize=False)
    assert raw.info["margin"] >= 0.4 - 1e-5
    assert ds.info["radius"] == pytest.approx(np.linalg.norm(ds.X_train, axis=1).max(),
                                              rel=1e-6)


def test_mnist1d_is_generated_offline_and_leaves_global_rngs_alone():
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    before = (np.random.get_state()[1].copy(), random.getstate())  # noqa: NPY002
    ds = D.mnist1d(seed=5, n_train=160, n_val=40)
    assert np.array_equal(np.random.get_state()[1], before[0])  # noqa: NPY002
    assert random.getstate() == before[1]
    # the package generates 250 samples: 200 in its training part, 50 held out for the test
    assert ds.n_features == 40 and ds.n_classes == 10 and ds.sizes() == (160, 40, 50)


def test_missing_extra_names_the_install_command(monkeypatch):
    real = builtins.__import__

    def fake(name, *a, **kw):
        if name.startswith(("sklearn", "mnist1d")):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    for fn in (D.digits, D.mnist1d):
        with pytest.raises(D.MissingExtra, match=r"pip install dlbasics\[data\]"):
            fn(seed=0)


def test_unknown_problem_or_argument():
    with pytest.raises(ValueError, match="unknown problem"):
        D.load("nope")
    with pytest.raises(TypeError, match="no argument 'bogus'"):
        D.load("xor", bogus=1)


def test_load_caches_per_process():
    assert D.load("circles", 0, n=100) is D.load("circles", 0, n=100)
    assert D.load("circles", 1, n=100) is not D.load("circles", 0, n=100)


def test_require_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mnist1d" else real(name, *a))
    D.require("xor")
    with pytest.raises(D.MissingExtra, match=r"dlbasics\[data\]"):
        D.require("mnist1d")
