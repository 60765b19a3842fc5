import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from dlbasics.models import MLP, SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp, train
from dlbasics.models import schedules as S
from dlbasics.models.population import train_population

OPTIMIZERS = [SGD(0.1), Momentum(0.05, 0.9), Nesterov(0.05, 0.9), AdaGrad(0.1),
              RMSProp(0.01), RMSProp(0.01, centered=True), Adam(0.01), Adam(0.01, amsgrad=True),
              AdamW(0.01, weight_decay=0.1)]


def _xor(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float64)
    return X, y


def _model(**kw):
    base = dict(activation="tanh", output="sigmoid", loss="binary_cross_entropy",
                dtype=np.float64, seed=1)
    base.update(kw)
    return MLP([2, 8, 8, 1], **base)


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=repr)
@pytest.mark.parametrize("batch_size", [None, 1, 7])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_epoch_equals_general_path(opt, batch_size, dtype):
    """Bitwise, in both precisions: at batch 1 plain SGD's update fused into the backward pass
    takes the same float operations as the gradient then ``sgd_kernel`` (in float32 its rate
    was once float64, which rounded the fused update otherwise)."""
    X, y = _xor(30)
    X = X.astype(dtype)
    a, b = _model(keep_prob=0.8, dtype=dtype), _model(keep_prob=0.8, dtype=dtype)
    ha = train(a, X, y, opt, batch_size=batch_size, epochs=4, seed=3, fast=True)
    hb = train(b, X, y, opt, batch_size=batch_size, epochs=4, seed=3, fast=False)
    assert ha.path == "fused" and hb.path == "general"
    assert np.array_equal(a.params, b.params)
    assert ha.train_loss == hb.train_loss
    assert ha.state.count == hb.state.count


def test_batch_stochastic_minibatch_counts():
    X, y = _xor(50)
    for batch_size, per_epoch in ((None, 1), (1, 50), (8, 7), (50, 1)):
        h = train(_model(), X, y, SGD(0.1), batch_size=batch_size, epochs=3)
        assert h.updates == [per_epoch, 2 * per_epoch, 3 * per_epoch]
        assert h.grad_evals == [50, 100, 150]
        assert len(h.time) == 3 and h.time == sorted(h.time)


def test_batch_gd_loss_is_exact_loss_before_update():
    """Full batch: the epoch's running loss is the loss at the start of the epoch."""
    X, y = _xor(40)
    m = _model()
    before = m.loss(X, y)
    h = train(m, X, y, SGD(0.5), epochs=1, metrics="full")
    assert_allclose(h.train_loss[0], before, rtol=1e-12)
    assert_allclose(h.full_loss[0], before, rtol=1e-12)
    assert_allclose(h.full_loss[1], m.loss(X, y), rtol=1e-12)


def test_last_partial_batch_weighted():
    """Running mean weights batch losses by batch size: with lr tiny, the epoch loss equals the
    loss of the whole set."""
    X, y = _xor(23)
    m = _model()
    full = m.loss(X, y)
    h = train(m, X, y, SGD(1e-12), batch_size=5, epochs=1, shuffle=False)
    assert_allclose(h.train_loss[0], full, rtol=1e-9)


def test_learns_xor_and_validation_metrics():
    X, y = _xor(200)
    Xv, yv = _xor(100, seed=1)
    m = _model()
    h = train(m, X, y, Adam(0.02), batch_size=16, epochs=60, X_val=Xv, y_val=yv,
              metrics="full")
    assert len(h.val_loss) == len(h.full_loss) == 61
    assert h.full_loss[-1] < 0.5 * h.full_loss[0]
    assert h.val_accuracy[-1] > 0.9
    assert_allclose(h.val_accuracy[-1], m.accuracy(Xv, yv))


def test_same_seed_same_history_bitwise():
    X, y = _xor(60)
    runs = [train(_model(keep_prob=0.9), X, y, Adam(0.01), batch_size=4, epochs=5, seed=9)
            for _ in range(2)]
    assert runs[0].train_loss == runs[1].train_loss
    other = train(_model(keep_prob=0.9), X, y, Adam(0.01), batch_size=4, epochs=5, seed=10)
    assert other.train_loss != runs[0].train_loss


@pytest.mark.parametrize("fast", [True, False])
def test_divergence_recorded_not_crashed(fast):
    X, y = _xor(40)
    X = X * 100
    m = MLP([2, 8, 1], activation="relu", dtype=np.float64)
    h = train(m, X, y * 1e3, SGD(1e3), batch_size=4, epochs=50, fast=fast)
    assert h.diverged and h.diverged_epoch is not None and h.diverged_epoch <= 50
    assert math.isnan(h.train_loss[-1]) and len(h.train_loss) == h.diverged_epoch


def test_callbacks_stop_and_schedule():
    X, y = _xor(30)

    def stop_at_3(epoch, hist, model):
        return epoch == 3

    h = train(_model(), X, y, SGD(0.1), epochs=10, callbacks=[stop_at_3],
              schedule=S.StepDecay(0.4, step_size=2, gamma=0.5))
    assert h.epochs == 3 and h.stopped_by == "stop_at_3"
    assert h.lr == [0.4, 0.4, 0.2]


def test_schedules_values():
    assert S.Constant(0.1)(7) == 0.1
    assert_allclose(S.InverseScaling(1.0, 0.5)(3), 0.5)
    assert S.StepDecay(1.0, 3, 0.1)(7) == pytest.approx(0.01)
    c = S.Cosine(1.0, 10, 0.1)
    assert c(0) == 1.0 and c(10) == pytest.approx(0.1) and c(5) == pytest.approx(0.55)


def test_continue_from_state_equals_one_long_run():
    X, y = _xor(30)
    a, b = _model(), _model()
    ha = train(a, X, y, Adam(0.01), batch_size=5, epochs=4, shuffle=False)
    h1 = train(b, X, y, Adam(0.01), batch_size=5, epochs=2, shuffle=False)
    train(b, X, y, Adam(0.01), batch_size=5, epochs=2, shuffle=False, state=h1.state)
    assert np.array_equal(a.params, b.params)
    assert ha.state.count == 24


def test_population_equals_individual_runs():
    X, y = _xor(40)
    opts = [SGD(0.2), Adam(0.01), Momentum(0.05), RMSProp(0.01)]
    seeds = [5, 6, 7, 8]
    template = _model(keep_prob=0.9)
    hists, P = train_population(template, X, y, opts, seeds, batch_size=4, epochs=3,
                                shuffle_seeds=[1, 2, 3, 4], X_val=X, y_val=y)
    for k in range(4):
        m = _model(keep_prob=0.9, seed=seeds[k])
        h = train(m, X, y, opts[k], batch_size=4, epochs=3, seed=k + 1, X_val=X, y_val=y)
        assert np.array_equal(m.params, P[k])
        assert h.train_loss == hists[k].train_loss
        assert h.val_loss == hists[k].val_loss
        assert h.state.count == hists[k].state.count


def test_population_marks_diverged_networks_and_continues():
    X, y = _xor(30)
    m = MLP([2, 8, 1], activation="relu", dtype=np.float64)
    hists, P = train_population(m, X * 100, y * 1e3, [SGD(1e3), SGD(1e-9)], [0, 1],
                                batch_size=3, epochs=20)
    assert hists[0].diverged and not hists[1].diverged
    assert len(hists[1].train_loss) == 20 and np.isfinite(P[1]).all()


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=31), ValueError, "batch_size"),
        (dict(batch_size=2.5), TypeError, "batch_size"),
        (dict(epochs=-1), ValueError, "epochs"),
        (dict(metrics="some"), ValueError, "metrics"),
        (dict(X_val=np.zeros((3, 2))), ValueError, "X_val"),
        (dict(schedule=lambda e: -1.0), ValueError, "lr"),
    ],
)
def test_train_bad_arguments(kwargs, exc, match):
    X, y = _xor(30)
    with pytest.raises(exc, match=match):
        train(_model(), X, y, SGD(0.1), **kwargs)


@pytest.mark.parametrize(
    "bad",
    [lambda o: o[:-1], lambda o: np.where(o == 0, -1, o), lambda o: np.where(o == 0, len(o), o),
     lambda o: np.where(o == 0, np.iinfo(np.int64).min, o), lambda o: o.reshape(2, -1)],
)
def test_shuffle_callable_must_return_indices_in_range(bad):
    X, y = _xor(30)
    with pytest.raises(ValueError, match="permutation of range"):
        train(_model(), X, y, SGD(0.1), batch_size=5, epochs=2, shuffle=bad)


def test_shuffle_callable_order_is_used():
    X, y = _xor(30)
    seen = []

    def reverse(order):
        seen.append(order.copy())
        return order[::-1]  # not contiguous: train makes it so

    h1 = train(_model(), X, y, SGD(0.1), batch_size=5, epochs=2, shuffle=reverse)
    assert [s.tolist() for s in seen] == [list(range(30)), list(range(29, -1, -1))]
    h2 = train(_model(), X, y, SGD(0.1), batch_size=5, epochs=2, shuffle=lambda o: o[::-1])
    assert h1.train_loss == h2.train_loss


def test_train_rejects_non_optimizer():
    X, y = _xor(30)
    with pytest.raises(TypeError, match="optimizer"):
        train(_model(), X, y, "sgd")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SGD(0.0), "lr"), (lambda: SGD(-1), "lr"), (lambda: SGD(float("nan")), "lr"),
        (lambda: Momentum(0.1, 1.0), "momentum"), (lambda: Adam(b1=1.0), "b1"),
        (lambda: Adam(b2=-0.1), "b2"), (lambda: AdaGrad(eps=0), "eps"),
        (lambda: RMSProp(alpha=1.5), "alpha"), (lambda: AdamW(weight_decay=-1), "weight_decay"),
    ],
)
def test_optimizer_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_population_serial_and_parallel_kernels_agree(monkeypatch):
    import dlbasics.models.population as pop

    X, y = _xor(30)
    args = (_model(), X, y, [SGD(0.1), Adam(0.01), SGD(0.3)], [1, 2, 3])
    par_h, par_P = train_population(*args, batch_size=4, epochs=2)
    monkeypatch.setattr(pop.numba, "get_num_threads", lambda: 1)
    ser_h, ser_P = train_population(*args, batch_size=4, epochs=2)
    assert np.array_equal(par_P, ser_P)
    assert [h.train_loss for h in par_h] == [h.train_loss for h in ser_h]


def test_blas_single_thread_limits_and_restores_every_time():
    """The BLAS libraries are found once per process; each use still limits scipy's OpenBLAS
    (the one compiled code calls) to one thread and restores the previous count."""
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import threadpool_info, threadpool_limits

    from dlbasics.models.training import blas_single_thread

    def counts():
        return {p["filepath"]: p["num_threads"] for p in threadpool_info()
                if p["user_api"] == "blas"}

    with threadpool_limits(limits=2, user_api="blas"):
        before = counts()
        assert before
        if set(before.values()) != {2}:
            pytest.skip(f"BLAS cannot run 2 threads on this machine: {before}")
        for _ in range(2):
            with blas_single_thread():
                assert set(counts().values()) == {1}
            assert counts() == before
