"""Property-based tests over the public entry points of ``models`` (issue: hardening).

Valid arguments, usually with one of them corrupted; every call either works, and its result
is checked against the references of ``tests/naive.py`` (initialisation, forward pass, gradient,
whole training runs, fitted estimators' predictions), or raises ValueError/TypeError naming an
argument.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlbasics.models import MLP, SGD, Adam, MLPClassifier, MLPRegressor, Perceptron, train
from dlbasics.models.population import train_population
from tests import naive
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


def _net(model):
    """The naive description of ``model`` (see ``tests/naive.py``)."""
    c = model.config()
    return naive.network(c["sizes"], c["activation"], c["output"], c["loss"], c["keep_prob"],
                         c["dropout"], c["seed"])


def _tol(dtype):
    return 2e-4 if np.dtype(dtype) == np.float32 else 1e-10


def _close(actual, expected, dtype, scale_floor=1.0):
    """Relative to the largest expected element (at least ``scale_floor``): float32 results
    against float64 references computed on the same float32 inputs."""
    expected = np.asarray(expected, np.float64)
    scale = max(float(np.max(np.abs(expected))) if expected.size else 0.0, scale_floor)
    tol = _tol(dtype)
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=tol,
                               atol=tol * scale)


def _ctor_check(kw, model):
    """The drawn initialisation (Glorot uniform or He normal from the seed, zero biases) and
    the test-time forward pass against the references."""
    net = naive.network(kw["sizes"], kw["activation"], kw["output"], kw["loss"],
                        kw["keep_prob"], kw["dropout"], kw["seed"])
    want = naive.net_init(net, kw["init"], kw["seed"], kw["dtype"])
    np.testing.assert_array_equal(model.params, want)
    X = np.linspace(-1.5, 1.5, 2 * model.sizes[0]).reshape(2, model.sizes[0])
    _close(model.forward(X), naive.net_forward(net, model.params, X)[-1][2], kw["dtype"])


def _model_and_data(draw):
    kw = _ctor_build(draw)
    model = MLP(**kw)
    X, y = _data(draw, kw["sizes"][0], kw["sizes"][-1], kw["loss"])
    return model, X, y


def _gradient_build(draw):
    model, X, y = _model_and_data(draw)
    return {"model": model, "X": X, "y": y, "step": draw(st.integers(0, 50))}


def _gradient_call(model, X, y, step):
    return model.gradient(X, y, step=step)


def _gradient_check(kw, out):
    """Loss and gradient against the hand-written backprop of ``tests/naive.py``."""
    model = kw["model"]
    X = kw["X"].astype(model.dtype)
    value, g = out
    want_value, want_g = naive.net_gradient(_net(model), model.params, X, kw["y"],
                                            step=kw["step"])
    _close(value, want_value, model.dtype)
    _close(g, want_g, model.dtype)


def _forward_build(draw):
    model, X, _ = _model_and_data(draw)
    return {"model": model, "X": X}


def _forward_check(kw, out):
    model = kw["model"]
    want = naive.net_forward(_net(model), model.params, kw["X"].astype(model.dtype))[-1][2]
    _close(out, want, model.dtype)


def _train_build(draw):
    model, X, y = _model_and_data(draw)
    n = X.shape[0]
    return {"model": model, "X": X, "y": y, "optimizer": draw(st.sampled_from([SGD(0.1),
                                                                               Adam(0.01)])),
            "batch_size": draw(st.sampled_from([None, 1, max(1, n // 2)])),
            "epochs": draw(st.integers(0, 3)), "seed": draw(st.integers(0, 9)),
            "metrics": draw(st.sampled_from(["running", "full"]))}


def _reference_run(model, X, y, optimizer, batch_size, epochs, shuffle_seed, net_seed):
    """The training run of one network by ``naive.net_epoch``, from the initialisation of
    ``net_seed``: final parameters, epoch losses and test-time losses at epochs 0..E."""
    net = dict(_net(model), seed=net_seed)
    X = X.astype(model.dtype)
    params = naive.net_init(net, model.init, net_seed, model.dtype).astype(np.float64)
    n = X.shape[0]
    batch = n if batch_size is None else batch_size
    rng = np.random.default_rng(shuffle_seed)
    slots, count, losses = {}, 0, []
    full = [naive.net_loss(net, params, X, y)]
    for _ in range(epochs):
        params, slots, count, total = naive.net_epoch(
            net, params, X, y, rng.permutation(n), batch, optimizer.name,
            optimizer.get_params(), slots, count)
        losses.append(total / n)
        full.append(naive.net_loss(net, params, X, y))
    return params, losses, full


def _check_run(model, hist, params, ref, metrics):
    want_params, losses, full = ref
    with np.errstate(all="ignore"):
        peak = max(np.max(np.abs(want_params), initial=0.0), np.max(np.abs(full)),
                   np.max(np.abs(losses), initial=0.0))
    if not np.isfinite(peak) or peak > np.sqrt(np.finfo(model.dtype).max):
        # A "huge" input (1e30) drives the reference beyond what squares in the model's dtype
        # without overflow; where and whether the model overflows then depends on its
        # precision: it must have stopped as diverged, or match.
        if hist.diverged or not np.isfinite(params).all():
            return
    assert not hist.diverged
    assert hist.epochs == len(losses)
    # a few steps of float32 drift from the float64 reference by more than one step's rounding
    slack = 5 if model.dtype == np.float32 else 1
    _close(np.asarray(hist.train_loss), losses, model.dtype, 1.0 / slack)
    _close(params, want_params, model.dtype, slack)
    if metrics == "full":
        _close(np.asarray(hist.full_loss), full, model.dtype, 1.0 / slack)


def _train_check(kw, hist):
    """The run against the reference: same initialisation, shuffled orders of the seed's
    generator, dropout masks, optimizer steps."""
    model = kw["model"]
    ref = _reference_run(model, kw["X"], kw["y"], kw["optimizer"], kw["batch_size"],
                         kw["epochs"], kw["seed"], model.seed)
    _check_run(model, hist, model.params, ref, kw["metrics"])


def _population_build(draw):
    kw = _train_build(draw)
    kw["seeds"] = [draw(st.integers(0, 9)) for _ in range(dims(draw, 1, 3))]
    kw["optimizers"] = kw.pop("optimizer")
    kw.pop("seed")
    if kw["model"].backend != "cpu":
        kw["model"] = MLP(**dict(kw["model"].config(), backend="cpu"))
    return kw


def _population_check(kw, out):
    """Each network against the reference run from its own seed (shuffling seed 0)."""
    hists, P = out
    model = kw["model"]
    assert P.shape == (len(kw["seeds"]), model.n_params) and len(hists) == len(kw["seeds"])
    for hist, params, seed in zip(hists, P, kw["seeds"], strict=True):
        ref = _reference_run(model, kw["X"], kw["y"], kw["optimizers"], kw["batch_size"],
                             kw["epochs"], 0, seed)
        _check_run(model, hist, params, ref, kw["metrics"])


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


#: scikit-learn's activation names -> the references' names.
_SK = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
       "softmax": "softmax"}


def _estimator_check(kw, est):
    """Predictions against the reference forward pass of the fitted ``coefs_``/``intercepts_``
    (argmax or 0.5 threshold mapped through ``classes_`` for a classifier)."""
    X = np.asarray(kw["X"])
    sizes = [c.shape[0] for c in est.coefs_] + [est.coefs_[-1].shape[1]]
    net = naive.network(sizes, _SK[est.activation], _SK[est.out_activation_])
    params = naive.net_flat([(np.asarray(W, np.float64), np.asarray(b, np.float64))
                             for W, b in zip(est.coefs_, est.intercepts_, strict=True)])
    dtype = est.coefs_[0].dtype
    out = naive.net_forward(net, params, X.astype(dtype))[-1][2]
    pred = est.predict(X)
    if not hasattr(est, "classes_"):
        _close(pred, out[:, 0] if out.shape[1] == 1 else out, dtype)
        return
    # away from the decision boundary (where float32 rounding may flip a prediction)
    if out.shape[1] == 1:
        idx = out[:, 0] > 0.5
        sure = np.abs(out[:, 0] - 0.5) > 1e-4
    else:
        idx = out.argmax(axis=1)
        top2 = np.sort(out, axis=1)[:, -2:]
        sure = top2[:, 1] - top2[:, 0] > 1e-4
    np.testing.assert_array_equal(pred[sure], est.classes_[idx.astype(np.int64)][sure])


def _perceptron_check(kw, est):
    """Predictions: ``classes_[1]`` where ``X coef_^T + intercept_ > 0`` (two classes)."""
    X = np.asarray(kw["X"], np.float64)
    s = X @ np.asarray(est.coef_, np.float64)[0] + float(est.intercept_[0])
    pred = est.predict(kw["X"])
    sure = np.abs(s) > 1e-6
    np.testing.assert_array_equal(pred[sure], np.where(s > 0, est.classes_[1],
                                                       est.classes_[0])[sure])


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
    Entry("Perceptron.fit", _estimator_call, _perceptron_build, _perceptron_check, ("X", "y"),
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


def test_population_seeds_none_names_the_argument():
    model = MLP([2, 3, 1], dtype=np.float64)
    with pytest.raises(TypeError, match="seeds"):
        train_population(model, np.zeros((4, 2)), np.zeros(4), SGD(0.1), None)
