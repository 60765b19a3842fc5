"""A drop-in estimator's ``fit`` with all its epochs in one compiled call
(``dlbasics.models.training.train_epochs``, ``_core.split_epochs_kernel`` with a stopping rule):
bitwise the fit of the Python loop over epochs (``train`` with the ``end_of_epoch`` callback),
the same fitted attributes, stopping epoch, optimizer state, divergence and ``RandomState``
afterwards; where it does not apply, the loop runs."""

import warnings

import numba
import numpy as np
import pytest

import dlbasics.models.backends as backends
from dlbasics.models import SGD, MLPClassifier, MLPRegressor, _core, estimators, train, training
from dlbasics.models.mlp import MLP
from dlbasics.models.training import train_epochs

needs_threads = pytest.mark.skipif(
    not backends.fast_parallel_regions() or numba.config.NUMBA_NUM_THREADS < 2,
    reason="the epochs run in one call on the row split: two Numba threads and OpenMP or TBB")


def _data(n=700, d=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (X[:, :k] @ rng.standard_normal(k) > 0).astype(int) + (X[:, 0] > 1)
    return X, y


def _fit(est, X, y, fused, monkeypatch):
    """``est`` fitted with the epochs in one call (asserting that they were) or by the loop."""
    calls = []
    real = estimators.train_epochs

    def spy(*args, **kw):
        out = real(*args, **kw)
        calls.append(out is not None)
        return out

    with monkeypatch.context() as m:
        m.setattr(estimators, "train_epochs", spy)
        if not fused:
            m.setattr(type(est), "_fused_epochs", lambda *a, **k: None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                est.fit(X, y)
            finally:  # also when fit raises: the epochs ran in one call (or calls)
                assert calls == ([True] if fused else [])
    return est, [str(w.message) for w in caught]


_FITTED = ("n_iter_", "t_", "loss_", "best_loss_", "loss_curve_", "_no_improvement_count")


def _check_same(a, b):
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(p, q)
    for name in _FITTED:
        assert getattr(a, name) == getattr(b, name), name
    assert type(a.loss_) is float and type(a.best_loss_) is float
    assert all(type(v) is float for v in a.loss_curve_)
    sa, sb = a._opt_state, b._opt_state
    assert sa.count == sb.count
    for x, y in zip(sa[1:], sb[1:], strict=True):
        np.testing.assert_array_equal(x, y)


@needs_threads
@pytest.mark.parametrize("kw", [
    dict(solver="adam", max_iter=15),
    dict(solver="sgd", max_iter=15),
    dict(solver="sgd", momentum=0.0, max_iter=12, alpha=0.0),
    dict(solver="adam", max_iter=400, tol=1e-2, n_iter_no_change=3),   # stops early
    dict(solver="sgd", max_iter=300, tol=1e-3, n_iter_no_change=1, dtype=np.float64),
    dict(solver="adam", max_iter=10, shuffle=False, batch_size=150),   # last batch 100 rows
    dict(solver="adam", max_iter=8, n_iter_no_change=np.inf),
])
def test_fused_fit_is_the_loops_fit_bit_for_bit(kw, monkeypatch):
    X, y = _data()
    a, wa = _fit(MLPClassifier(hidden_layer_sizes=(24,), random_state=3, **kw), X, y, True,
                 monkeypatch)
    b, wb = _fit(MLPClassifier(hidden_layer_sizes=(24,), random_state=3, **kw), X, y, False,
                 monkeypatch)
    _check_same(a, b)
    assert wa == wb  # the ConvergenceWarning where max_iter ran out, and only there
    assert (a.n_iter_ < kw["max_iter"]) == (not wa)
    if kw.get("n_iter_no_change") in (3, 1):
        assert a.n_iter_ < kw["max_iter"]  # the rule stopped it, in the same epoch


@needs_threads
@pytest.mark.parametrize("kw", [dict(max_iter=10), dict(max_iter=60, tol=1e-2, n_iter_no_change=2)])
@pytest.mark.parametrize("call_seconds", [100.0, 0.0])
def test_fused_fit_in_several_calls(kw, call_seconds, monkeypatch):
    """``train_epochs`` runs one epoch a first compiled call, then as many as take about
    ``CALL_SECONDS`` (at most ``EPOCHS_PER_CALL``): the order, shuffle state, optimizer state
    and the rule carry over from call to call, and the stopping epoch ends its call."""
    X, y = _data()
    a, _ = _fit(MLPClassifier(hidden_layer_sizes=(10,), random_state=1, **kw), X, y, False,
                monkeypatch)
    monkeypatch.setattr(training, "EPOCHS_PER_CALL", 3)
    monkeypatch.setattr(training, "CALL_SECONDS", call_seconds)
    calls = []
    real = _core.split_epochs_kernel

    def counted(*args):
        calls.append(int(args[11][_core.RULE_EPOCHS]))
        return real(*args)

    monkeypatch.setattr(_core, "split_epochs_kernel", counted)
    b, _ = _fit(MLPClassifier(hidden_layer_sizes=(10,), random_state=1, **kw), X, y, True,
                monkeypatch)
    _check_same(a, b)
    per_call = 3 if call_seconds else 1
    expected = [1] + [per_call] * (-(-(b.n_iter_ - 1) // per_call))
    if b.n_iter_ == kw["max_iter"] and (b.n_iter_ - 1) % per_call:
        expected[-1] = (b.n_iter_ - 1) % per_call  # the last call runs what is left
    assert calls == expected and len(calls) > 2


@needs_threads
def test_an_interrupt_after_a_call_keeps_the_record_with_the_parameters(monkeypatch):
    """Ctrl-C reaches Python between the compiled calls: the epochs of the calls that ended
    are booked (``n_iter_``, ``loss_curve_``, ``t_``, the rule's state), as the loop would
    have booked them, and the ``RandomState`` is put back."""
    X, y = _data()
    monkeypatch.setattr(training, "CALL_SECONDS", 100.0)
    monkeypatch.setattr(training, "EPOCHS_PER_CALL", 4)
    real = backends.CpuBackend.epochs
    calls = []

    def interrupted(self, *args):
        real(self, *args)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    rs = np.random.RandomState(3)
    with monkeypatch.context() as m:
        m.setattr(backends.CpuBackend, "epochs", interrupted)
        a = MLPClassifier(hidden_layer_sizes=(10,), random_state=rs, max_iter=50)
        with pytest.raises(KeyboardInterrupt):
            a.fit(X, y)
    assert a.n_iter_ == 5 == len(a.loss_curve_)  # 1 + 4 epochs
    rs_b = np.random.RandomState(3)
    b, _ = _fit(MLPClassifier(hidden_layer_sizes=(10,), random_state=rs_b, max_iter=5), X, y,
                False, monkeypatch)
    for name in ("n_iter_", "t_", "loss_", "best_loss_", "loss_curve_", "_no_improvement_count"):
        assert getattr(a, name) == getattr(b, name), name
    for p, q in zip(a.coefs_, b.coefs_, strict=True):
        np.testing.assert_array_equal(p, q)
    assert rs.random_sample() == rs_b.random_sample()


@needs_threads
def test_fused_warm_start_continues_the_rule_and_the_random_state(monkeypatch):
    """A warm start goes on from ``best_loss_`` and ``_no_improvement_count`` (the rule's
    state), and both fits leave their ``RandomState`` where ``RandomState.shuffle`` would."""
    X, y = _data(900, seed=1)
    rs_a, rs_b = np.random.RandomState(7), np.random.RandomState(7)
    kw = dict(hidden_layer_sizes=(16, 8), warm_start=True, tol=1e-3, n_iter_no_change=4,
              max_iter=6)
    a = MLPRegressor(random_state=rs_a, **kw)
    b = MLPRegressor(random_state=rs_b, **kw)
    target = X[:, 0] - 2 * X[:, 1] + 0.1 * y
    for _ in range(3):
        _fit(a, X, target, True, monkeypatch)
        _fit(b, X, target, False, monkeypatch)
        _check_same(a, b)
    assert a.t_ == b.t_ == 18 * 900
    assert rs_a.random_sample() == rs_b.random_sample()


@needs_threads
def test_fused_warm_starts_stop_on_the_count_they_inherit(monkeypatch):
    """Warm starts whose losses do not improve by ``tol``: the count of epochs without
    improvement goes on from fit to fit until the rule stops one early, in both paths."""
    X, y = _data(900, seed=1)
    kw = dict(hidden_layer_sizes=(16,), warm_start=True, tol=0.05, n_iter_no_change=5,
              max_iter=4, random_state=0)
    a, b = MLPClassifier(**kw), MLPClassifier(**kw)
    for _ in range(4):
        _, wa = _fit(a, X, y, True, monkeypatch)
        _, wb = _fit(b, X, y, False, monkeypatch)
        _check_same(a, b)
        assert wa == wb
    assert a.n_iter_ < 4 and a._no_improvement_count > 5  # stopped by the inherited count


@needs_threads
def test_fused_rule_keeps_the_best_loss_when_the_loss_rises(monkeypatch):
    """A rate high enough that the loss goes up between epochs: the best loss is the
    minimum so far, not the last, in both paths."""
    X, y = _data()
    kw = dict(hidden_layer_sizes=(24,), learning_rate_init=0.3, max_iter=25,
              n_iter_no_change=50, random_state=0)
    a, _ = _fit(MLPClassifier(**kw), X, y, True, monkeypatch)
    b, _ = _fit(MLPClassifier(**kw), X, y, False, monkeypatch)
    _check_same(a, b)
    curve = a.loss_curve_
    assert a.best_loss_ == min(curve) < curve[-1]
    assert any(later > earlier for earlier, later in zip(curve, curve[1:], strict=False))


@needs_threads
def test_fused_divergence_raises_in_the_same_epoch(monkeypatch):
    """A fit that diverges after some epochs (those booked, the diverging one not): the same
    error, epoch, record and parameters in both paths."""
    X, _ = _data(400)
    kw = dict(hidden_layer_sizes=(24,), solver="sgd", learning_rate_init=0.05, max_iter=30,
              random_state=0, batch_size=100)
    errors = []
    for fused in (True, False):
        est = MLPRegressor(**kw)
        with pytest.raises(ValueError, match="non-finite") as info:
            _fit(est, X, X[:, 0] * 30 + 5, fused, monkeypatch)
        errors.append((str(info.value), est.n_iter_, list(est.loss_curve_), est.t_,
                       est._no_improvement_count, est._model.params.copy()))
    a, b = errors
    assert a[:5] == b[:5] and a[1] >= 1 and f"epoch {a[1] + 1})" in a[0]
    np.testing.assert_array_equal(a[5], b[5])


def test_where_the_epochs_do_not_run_in_one_call_the_loop_does(monkeypatch):
    """Small batches (not split), ``verbose``, ``early_stopping``, an adaptive or invscaling
    rate and ``partial_fit`` train epoch by epoch; the fused path is never entered with a
    rule it does not apply."""
    X, y = _data(300)
    entered = []
    real = estimators.train_epochs
    monkeypatch.setattr(estimators, "train_epochs",
                        lambda *a, **k: entered.append(1) or real(*a, **k))
    for kw in (dict(verbose=True), dict(early_stopping=True),
               dict(solver="sgd", learning_rate="adaptive"),
               dict(solver="sgd", learning_rate="invscaling")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPClassifier(hidden_layer_sizes=(6,), max_iter=2, random_state=0, **kw).fit(X, y)
    MLPClassifier(hidden_layer_sizes=(6,), random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    assert entered == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier(hidden_layer_sizes=(6,), max_iter=2, batch_size=20,
                      random_state=0).fit(X, y)
    assert entered == [1]  # entered, found no call for 20-row batches, and the loop ran


def test_train_epochs_checks_its_arguments():
    model = MLP([3, 4, 2], activation="relu", output="softmax", loss="cross_entropy")
    X = np.zeros((10, 3))
    y = np.zeros(10, dtype=int)
    opt = SGD(0.1)
    with pytest.raises(TypeError, match="rule must be"):
        train_epochs(model, X, y, opt, 5, np.zeros(3))
    with pytest.raises(TypeError, match="shuffle must be"):
        train_epochs(model, X, y, opt, 5, _core.epochs_rule(2),
                     shuffle=(np.zeros(5, np.uint32), np.zeros(1, np.int64),
                              np.zeros(624, np.uint32)))
    with pytest.raises(TypeError, match="optimizer"):
        train_epochs(model, X, y, "sgd", 5, _core.epochs_rule(2))
    with pytest.raises(ValueError, match="lr"):
        train_epochs(model, X, y, opt, 5, _core.epochs_rule(2), lr=-1.0)
    for bad in (-1, 2.5, np.inf, np.nan):
        with pytest.raises(ValueError, match="RULE_EPOCHS"):
            train_epochs(model, X, y, opt, 5, _core.epochs_rule(bad))


@needs_threads
def test_train_epochs_is_train_with_the_rule(monkeypatch):
    """``train_epochs`` on a model (not an estimator): the epochs, losses and state of
    ``train`` with a callback applying scikit-learn's rule, and the rule's state as the
    callback leaves it."""
    X, y = _data(640)
    sizes = [12, 20, 3]

    def model():
        return MLP(sizes, activation="tanh", output="softmax", loss="cross_entropy", seed=4,
                   dtype=np.float64)

    opt = SGD(0.05)
    a = model()
    rule = _core.epochs_rule(50, tol=1e-3, patience=2.0)
    state, losses, stop = train_epochs(a, X, y, opt, 128, rule, alpha=1e-3)
    b = model()
    best, count = [np.inf], [0]

    def rule_cb(epoch, hist, m):
        loss = hist.train_loss[-1]
        count[0] = count[0] + 1 if loss > best[0] - 1e-3 else 0
        best[0] = min(best[0], loss)
        return count[0] > 2

    hist = train(b, X, y, opt, batch_size=128, epochs=50, shuffle=False, callbacks=[rule_cb],
                 alpha=1e-3)
    np.testing.assert_array_equal(a.params, b.params)
    assert losses.tolist() == hist.train_loss
    assert state.count == hist.state.count == 5 * len(losses)
    assert stop == (_core.CONVERGED if hist.stopped_by else _core.RAN_ALL)
    assert rule[_core.RULE_BEST] == best[0] and rule[_core.RULE_COUNT] == count[0]
    assert rule[_core.RULE_RUN] == len(losses)

