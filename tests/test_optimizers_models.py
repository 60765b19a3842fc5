"""Optimizers of ``dlbasics.models.optimizers``: convergence on a parabola and on Rosenbrock, the
state
API, agreement with the kernels' formulas, and no recompilation on a second call."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from dlbasics.models import optimizers as O
from tests import naive

# Rosenbrock from the classic start (-1.2, 1): f = (1 - x)^2 + 100 (y - x^2)^2, minimum (1, 1).
ROSENBROCK = [
    (O.SGD(1e-3), 20000), (O.Momentum(5e-4, 0.9), 20000), (O.Nesterov(5e-4, 0.9), 20000),
    (O.AdaGrad(0.5), 20000), (O.RMSProp(1e-3), 20000), (O.RMSProp(1e-3, centered=True), 20000),
    (O.Adam(0.03), 20000), (O.Adam(0.03, amsgrad=True), 20000),
    (O.AdamW(0.03, weight_decay=0.0), 20000), (O.NAdam(0.01), 20000), (O.RAdam(0.003), 20000),
]


def _rosen_grad(p):
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


@pytest.mark.parametrize("opt, steps", ROSENBROCK, ids=lambda v: repr(v))
def test_converges_on_rosenbrock(opt, steps):
    p = np.array([-1.2, 1.0])
    state = opt.init(p)
    for _ in range(steps):
        state = opt.update(_rosen_grad(p), state, p)
    assert state.count == steps
    assert_allclose(p, [1.0, 1.0], atol=5e-3)


@pytest.mark.parametrize("name", list(O.OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_converges_on_parabola(name, dtype):
    """f(w) = 1/2 sum_i c_i (w_i - t_i)^2 with condition number 10."""
    c = np.linspace(1, 10, 5).astype(dtype)
    target = np.arange(5, dtype=dtype)
    hyper = {"sgd": 0.1, "momentum": 0.02, "nesterov": 0.02, "adagrad": 0.5, "rmsprop": 0.01}
    kw = {"weight_decay": 0.0} if name == "adamw" else {}
    opt = O.make_optimizer(name, lr=hyper.get(name, 0.05), **kw)  # the Adam family: 0.05
    w = np.zeros(5, dtype)
    state = opt.init(w)
    for _ in range(3000):
        state = opt.update(c * (w - target), state, w)
    assert w.dtype == dtype
    assert_allclose(w, target, atol=2e-2)


def test_update_matches_formula_adam_step_by_step(rng):
    p = rng.normal(size=6)
    ref_p, m, v, vmax = p.copy(), np.zeros(6), np.zeros(6), np.zeros(6)
    opt = O.Adam(0.01, amsgrad=True)
    state = opt.init(p)
    for t in range(1, 6):
        g = rng.normal(size=6)
        state = opt.update(g, state, p)
        ref_p, m, v, vmax = naive.adam_step(ref_p, g, m, v, vmax, t, 0.01, 0.9, 0.999, 1e-8, 0.0,
                                            False, True)
        assert_allclose(p, ref_p, rtol=1e-13)
        assert_allclose(state.exp_avg, m, rtol=1e-13)


def test_state_is_explicit_and_typed():
    p = np.zeros(3, np.float32)
    s = O.Adam().init(p)
    assert s._fields == ("count", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    assert s.count == 0 and s.exp_avg.dtype == np.float32 and s.max_exp_avg_sq.size == 0
    s2 = O.Adam().update(np.ones(3, np.float32), s, p)
    assert s2.count == 1 and s.count == 0
    assert O.SGD().init(p) == O.SGDState(0)
    assert O.RMSProp(centered=True).init(p).grad_avg.shape == (3,)


def test_lr_override_is_a_schedule_hook():
    p = np.ones(2)
    opt = O.SGD(0.1)
    opt.update(np.ones(2), opt.init(p), p, lr=0.5)
    assert_allclose(p, 0.5)


def test_second_call_does_not_recompile():
    p = np.zeros(4, np.float32)
    g = np.ones(4, np.float32)
    for opt in (O.SGD(0.1), O.Adam(), O.RMSProp(centered=True)):
        s = opt.update(g, opt.init(p), p)
        before = len(O.apply_update.signatures)
        opt.update(g, s, p)
        assert len(O.apply_update.signatures) == before
    q = np.zeros(9, np.float32)
    O.Momentum().update(np.ones(9, np.float32), O.Momentum().init(q), q)
    assert len(O.apply_update.signatures) == before  # same dtypes, other length: no compile


def test_update_rejects_bad_arguments():
    p = np.zeros(3)
    opt = O.Adam()
    s = opt.init(p)
    with pytest.raises(TypeError, match="grads"):
        opt.update(np.zeros(3, np.float32), s, p)
    with pytest.raises(ValueError, match="grads"):
        opt.update(np.zeros(4), s, p)
    with pytest.raises(ValueError, match="exp_avg"):
        opt.update(np.zeros(3), O.Adam().init(np.zeros(5)), p)
    with pytest.raises(ValueError, match="lr"):
        opt.update(np.zeros(3), s, p, lr=0.0)
    with pytest.raises(ValueError, match="optimizer"):
        O.make_optimizer("lbfgs")


def test_against_torch_trajectory(rng):
    torch = pytest.importorskip("torch")
    pairs = [
        (O.SGD(0.1), lambda w: torch.optim.SGD([w], lr=0.1)),
        (O.Nesterov(0.05, 0.8), lambda w: torch.optim.SGD([w], lr=0.05, momentum=0.8,
                                                          nesterov=True)),
        (O.RMSProp(0.01, centered=True), lambda w: torch.optim.RMSprop([w], lr=0.01,
                                                                        centered=True)),
        (O.AdamW(0.01), lambda w: torch.optim.AdamW([w], lr=0.01)),
    ]
    for ours, make in pairs:
        p = rng.normal(size=5)
        w = torch.tensor(p.copy(), requires_grad=True)
        topt = make(w)
        state = ours.init(p)
        for _ in range(20):
            g = np.sin(p) + p  # any smooth gradient field
            w.grad = torch.tensor(np.sin(w.detach().numpy()) + w.detach().numpy())
            topt.step()
            state = ours.update(g, state, p)
        assert_allclose(p, w.detach().numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# every optimizer of the registry against torch.optim, step by step (float64)
# ---------------------------------------------------------------------------------------------

#: Flags that change an optimizer's formula: each gets a case of its own (with weight decay, so
#: that the decoupled form differs from the L2 form).
FLAGS = ("centered", "amsgrad", "decoupled_weight_decay")


def registry_cases():
    """One optimizer per class of ``OPTIMIZERS`` with non-default hyper-parameters (each
    differs from its default, so a swapped or ignored one shows), plus one per flag."""
    cases = []
    for name, cls in O.OPTIMIZERS.items():
        params = cls().get_params()
        kw = {"lr": 0.02}
        for k in params:
            if k in ("b1", "momentum", "alpha"):
                kw[k] = 0.8
            elif k == "b2":
                kw[k] = 0.9  # RAdam's rectified step from t = 6 on
            elif k == "eps":
                kw[k] = 1e-6
            elif k == "weight_decay":
                kw[k] = 0.05
            elif k == "momentum_decay":
                kw[k] = 0.02
        cases.append(pytest.param(cls(**kw), id=name))
        for flag in FLAGS:
            if flag in params:
                cases.append(pytest.param(cls(**kw, **{flag: True}), id=f"{name}-{flag}"))
    return cases


def torch_twin(torch, opt, w):
    """The ``torch.optim`` optimizer of ``opt`` over tensor ``w``: the class of the same name
    (case-insensitive; momentum and nesterov are torch's SGD), ``b1, b2`` as ``betas`` and every
    other hyper-parameter under its own name."""
    params = opt.get_params()
    kw = {k: v for k, v in params.items() if k not in ("b1", "b2")}
    if "b1" in params:
        kw["betas"] = (params["b1"], params["b2"])
    if opt.name == "nesterov":
        kw["nesterov"] = True
    name = "sgd" if opt.name in ("momentum", "nesterov") else opt.name
    (cls,) = [getattr(torch.optim, a) for a in dir(torch.optim) if a.lower() == name]
    return cls([w], **kw)


@pytest.mark.parametrize("opt", registry_cases())
def test_matches_torch_step_by_step(opt, rng):
    """300 updates through ``Optimizer.update`` (the compiled dispatcher every training path
    uses) against ``torch.optim``, to 1e-12 relative to the parameters' scale at every step.
    torch runs with float64 as its default dtype: it keeps step counts and NAdam's momentum
    product in that dtype."""
    torch = pytest.importorskip("torch")
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        p = rng.normal(size=40)
        w = torch.tensor(p.copy(), requires_grad=True)
        theirs = torch_twin(torch, opt, w)
        state = opt.init(p)
        for t in range(1, 301):
            g = np.cos(3 * p) + 0.3 * p + rng.normal(size=p.shape) / t  # a curved, noisy field
            w.grad = torch.tensor(g)
            theirs.step()
            state = opt.update(g, state, p)
            ref = w.detach().numpy()
            scale = np.max(np.abs(ref))
            assert_allclose(p, ref, rtol=1e-12, atol=1e-12 * scale, err_msg=f"step {t}")
        assert state.count == 300
    finally:
        torch.set_default_dtype(before)


def test_every_optimizer_has_a_torch_twin():
    torch = pytest.importorskip("torch")
    for name, cls in O.OPTIMIZERS.items():
        w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        assert torch_twin(torch, cls(), w) is not None, name


# ---------------------------------------------------------------------------------------------
# fail loudly
# ---------------------------------------------------------------------------------------------


def test_an_optimizer_without_a_rule_code_cannot_be_built():
    class Bare(O.Optimizer):
        name = "bare"

    for cls in (O.Optimizer, Bare):
        with pytest.raises(TypeError, match="no rule code"):
            cls(0.1)


def test_an_unknown_rule_code_raises_in_the_dispatcher():
    class Wrong(O.SGD):
        code = 99

    p = np.ones(3)
    opt = Wrong(0.1)
    with pytest.raises(ValueError, match="unknown optimizer rule code"):
        opt.update(np.ones(3), opt.init(p), p)
    assert_allclose(p, 1.0)


@pytest.mark.parametrize("flag", FLAGS)
def test_a_flag_that_is_not_a_bool_is_named(flag):
    for cls in O.OPTIMIZERS.values():
        if flag in cls().get_params():
            with pytest.raises(TypeError, match=flag):
                cls(**{flag: np.ones(2)})
            assert cls(**{flag: np.True_}).get_params()[flag] is True
