"""Property-based tests over the public entry points of ``models`` (issue: hardening).

Valid arguments, usually with one of them corrupted; every call either works (and its result is
checked) or raises ValueError/TypeError naming an argument.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlbasics.models import MLP, SGD, Adam, MLPClassifier, MLPRegressor, Perceptron, train
from dlbasics.models.population import train_population
from tests.hardening.fuzz import Entry, dims, draw_mutated, dtype_of, floats, run_entry

EXAMPLES = 200
HEADS = [("identity", "squared"), ("sigmoid", "binary_cross_entropy"),
         ("softmax", "cross_entropy")]


def _data(draw, n_in, n_out, loss, n=None):
    n = n or dims(draw, 1, 12)
    X = floats(draw, (n, n_in), np.float64)
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    if loss == "cross_entropy":
        y = rng.integers(0, n_out, n)
    elif loss == "binary_cross_entropy":
        y = (rng.random((n, n_out)) < 0.5).astype(np.float64)
    else:
        y = rng.normal(size=(n, n_out))
    return X, y


def _ctor_build(draw):
    L = dims(draw, 1, 3)
    sizes = [dims(draw, 1, 5) for _ in range(L + 1)]
    output, loss = draw(st.sampled_from(HEADS))
    keep = draw(st.sampled_from([None, 0.5, 1.0]))
    return {"sizes": sizes, "activation": draw(st.sampled_from(["tanh", "relu", "sigmoid"])),
            "output": output, "loss": loss, "keep_prob": keep,
            "dropout": draw(st.sampled_from(["scale", "inverted"])),
            "init": draw(st.sampled_from(["glorot", "he"])), "dtype": dtype_of(draw),
            "backend": draw(st.sampled_from(["cpu", "numpy"])), "seed": draw(st.integers(0, 99))}


def _ctor_check(kw, model):
    assert model.params.shape == (model.n_params,) and np.isfinite(model.params).all()
    X = np.ones((2, model.sizes[0]))
    out = model.forward(X)
    assert out.shape == (2, model.sizes[-1]) and np.isfinite(out).all()


def _model_and_data(draw):
    kw = _ctor_build(draw)
    kw["backend"] = "cpu"
    model = MLP(**kw)
    X, y = _data(draw, kw["sizes"][0], kw["sizes"][-1], kw["loss"])
    return model, X, y


def _gradient_build(draw):
    model, X, y = _model_and_data(draw)
    return {"model": model, "X": X, "y": y, "step": draw(st.integers(0, 50))}


def _gradient_call(model, X, y, step):
    return model.gradient(X, y, step=step)


def _gradient_check(kw, out):
    value, g = out
    assert np.isfinite(value) and g.shape == kw["model"].params.shape and np.isfinite(g).all()


def _forward_build(draw):
    model, X, _ = _model_and_data(draw)
    return {"model": model, "X": X}


def _forward_check(kw, out):
    assert out.shape == (kw["X"].shape[0], kw["model"].sizes[-1]) and np.isfinite(out).all()


def _train_build(draw):
    model, X, y = _model_and_data(draw)
    n = X.shape[0]
    return {"model": model, "X": X, "y": y, "optimizer": draw(st.sampled_from([SGD(0.1),
                                                                               Adam(0.01)])),
            "batch_size": draw(st.sampled_from([None, 1, max(1, n // 2)])),
            "epochs": draw(st.integers(0, 3)), "seed": draw(st.integers(0, 9)),
            "metrics": draw(st.sampled_from(["running", "full"]))}


def _train_check(kw, hist):
    assert hist.epochs == kw["epochs"] or hist.diverged
    assert all(np.isfinite(v) for v in hist.train_loss) or hist.diverged


def _population_build(draw):
    kw = _train_build(draw)
    kw["seeds"] = [draw(st.integers(0, 9)) for _ in range(dims(draw, 1, 3))]
    kw["optimizers"] = kw.pop("optimizer")
    kw.pop("seed")
    return kw


def _population_check(kw, out):
    hists, P = out
    assert P.shape == (len(kw["seeds"]), kw["model"].n_params) and len(hists) == len(kw["seeds"])


def _estimator_build(draw):
    cls = draw(st.sampled_from([MLPClassifier, MLPRegressor]))
    n_in = dims(draw, 1, 4)
    loss = "cross_entropy" if cls is MLPClassifier else "squared"
    X, y = _data(draw, n_in, 3 if cls is MLPClassifier else 1, loss, n=dims(draw, 3, 12))
    y = y if cls is MLPClassifier else y[:, 0]
    est = cls(hidden_layer_sizes=(dims(draw, 1, 5),), max_iter=draw(st.integers(1, 3)),
              learning_rate_init=draw(st.sampled_from([1e-3, 1e-2])),
              batch_size=draw(st.sampled_from([1, 4, 100])))
    return {"est": est, "X": X, "y": y}


def _estimator_call(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def _estimator_check(kw, est):
    pred = est.predict(kw["X"])
    assert pred.shape[0] == len(kw["X"])


def _perceptron_build(draw):
    n, d = dims(draw, 2, 12), dims(draw, 1, 4)
    X = floats(draw, (n, d), np.float64)
    y = np.where(X[:, 0] > 0, 1, -1)
    y[0], y[-1] = 1, -1
    return {"est": Perceptron(max_iter=draw(st.integers(1, 5)),
                              eta0=draw(st.floats(0.1, 2.0))), "X": X, "y": y}


ENTRIES = [
    Entry("MLP", MLP, _ctor_build, _ctor_check,
          ("sizes", "activation", "output", "loss", "keep_prob", "dropout", "init", "dtype",
           "backend", "seed")),
    Entry("MLP.gradient", _gradient_call, _gradient_build, _gradient_check,
          ("X", "y", "step")),
    Entry("MLP.forward", lambda model, X: model.forward(X), _forward_build, _forward_check,
          ("X",)),
    Entry("train", train, _train_build, _train_check,
          ("X", "y", "optimizer", "batch_size", "epochs", "seed", "metrics")),
    Entry("train_population", train_population, _population_build, _population_check,
          ("X", "y", "optimizers", "seeds", "batch_size", "epochs", "metrics")),
    Entry("estimator.fit", _estimator_call, _estimator_build, _estimator_check, ("X", "y"),
          ("sample", "feature", "Input", "input", "array", "label", "class", "target",
           "Unknown", "NaN", "infinity", "data")),
    Entry("Perceptron.fit", _estimator_call, _perceptron_build, _estimator_check, ("X", "y"),
          ("sample", "feature", "Input", "input", "array", "label", "class", "target",
           "Unknown", "NaN", "infinity", "data")),
]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_entry_point_works_or_names_the_argument(entry, data):
    kwargs, mutation = draw_mutated(data.draw, entry)
    run_entry(entry, kwargs, mutation)
