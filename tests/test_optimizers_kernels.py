"""Tests of dlbasics.kernels.optimizers: references, hand-worked steps, torch.optim trajectories,
determinism, compilation and validation."""

import inspect
import math

import numpy as np
import pytest
from numba import types
from numpy.testing import assert_allclose, assert_array_equal

from dlbasics.kernels import optimizers as O
from tests import naive
from tests.conftest import DTYPES

SIZES = (1, 7, 1000)

#: State buffers of each public update, in argument order.
SLOTS = {
    "sgd": (),
    "momentum": ("buf",),
    "nesterov": ("buf",),
    "adagrad": ("sum_sq",),
    "rmsprop": ("sq_avg", "grad_avg"),
    "adam": ("m", "v", "vmax"),
    "adamw": ("m", "v", "vmax"),
    "nadam": ("m", "v"),
    "radam": ("m", "v"),
}

KERNELS = {
    "sgd": O.sgd_kernel,
    "momentum": O.momentum_kernel,
    "nesterov": O.nesterov_kernel,
    "adagrad": O.adagrad_kernel,
    "rmsprop": O.rmsprop_kernel,
    "adam": O.adam_kernel,
    "adamw": O.adam_kernel,
    "nadam": O.nadam_kernel,
    "radam": O.radam_kernel,
}

#: Test cases: (rule, hyper-parameters). Values differ from the defaults so that a swapped or
#: ignored argument shows; every option is covered.
CASES = {
    "sgd": ("sgd", {"lr": 0.1}),
    "momentum": ("momentum", {"lr": 0.05, "momentum": 0.8}),
    "nesterov": ("nesterov", {"lr": 0.05, "momentum": 0.8}),
    "adagrad": ("adagrad", {"lr": 0.1, "eps": 1e-6}),
    "rmsprop": ("rmsprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "centered": False}),
    "rmsprop_centered": ("rmsprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "centered": True}),
    "adam": ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
                      "weight_decay": 0.0, "amsgrad": False}),
    "adam_l2": ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
                         "weight_decay": 0.1, "amsgrad": False}),
    "adam_amsgrad": ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
                              "weight_decay": 0.0, "amsgrad": True}),
    "adam_l2_amsgrad": ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
                                 "weight_decay": 0.1, "amsgrad": True}),
    "adamw": ("adamw", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
                        "weight_decay": 0.1, "amsgrad": False}),
    "adamw_amsgrad": ("adamw", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
                                "weight_decay": 0.1, "amsgrad": True}),
    "nadam": ("nadam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
                        "weight_decay": 0.0, "momentum_decay": 0.01,
                        "decoupled_weight_decay": False}),
    "nadam_l2": ("nadam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
                           "weight_decay": 0.1, "momentum_decay": 0.01,
                           "decoupled_weight_decay": False}),
    "nadam_decoupled": ("nadam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6,
                                  "weight_decay": 0.1, "momentum_decay": 0.01,
                                  "decoupled_weight_decay": True}),
    # beta1 0.3: the first moment's lerp takes its second form (weight 1 - beta1 >= 0.5)
    "radam": ("radam", {"lr": 0.01, "beta1": 0.3, "beta2": 0.9, "eps": 1e-6,
                        "weight_decay": 0.0, "decoupled_weight_decay": False}),
    "radam_l2": ("radam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "eps": 1e-6,
                           "weight_decay": 0.1, "decoupled_weight_decay": False}),
    "radam_decoupled": ("radam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "eps": 1e-6,
                                  "weight_decay": 0.1, "decoupled_weight_decay": True}),
}


def zero_slots(rule, n, dtype):
    return {k: np.zeros(n, dtype) for k in SLOTS[rule]}


def kernel_step(case, p, g, s, t):
    """One in-place step of the public wrapper for ``case``."""
    rule, hp = CASES[case]
    update = O.OPTIMIZERS[rule]
    if "step" in inspect.signature(update).parameters:  # the rules with a step count
        update(p, g, **s, step=t, **hp)
    else:
        update(p, g, *(s[k] for k in SLOTS[rule]), **hp)


def as_kernel_sees(dtype, x):
    """A hyper-parameter as the kernel receives it: rounded to the array dtype."""
    return float(np.dtype(dtype).type(x)) if isinstance(x, float) else x


def naive_step(case, p, g, s, t, dtype):
    """The reference step in float64; returns (p, slots) as new arrays."""
    rule, hp = CASES[case]
    h = {k: as_kernel_sees(dtype, v) for k, v in hp.items()}
    if rule == "sgd":
        return naive.sgd_step(p, g, h["lr"]), {}
    if rule in ("momentum", "nesterov"):
        f = naive.momentum_step if rule == "momentum" else naive.nesterov_step
        p, b = f(p, g, s["buf"], h["lr"], h["momentum"])
        return p, {"buf": b}
    if rule == "adagrad":
        p, ss = naive.adagrad_step(p, g, s["sum_sq"], h["lr"], h["eps"])
        return p, {"sum_sq": ss}
    if rule == "rmsprop":
        p, v, ga = naive.rmsprop_step(p, g, s["sq_avg"], s["grad_avg"], h["lr"], h["alpha"],
                                      h["eps"], h["centered"])
        return p, {"sq_avg": v, "grad_avg": ga}
    if rule == "nadam":
        p, m, v = naive.nadam_step(p, g, s["m"], s["v"], t, h["lr"], h["beta1"], h["beta2"],
                                   h["eps"], h["weight_decay"], h["momentum_decay"],
                                   h["decoupled_weight_decay"])
        return p, {"m": m, "v": v}
    if rule == "radam":
        p, m, v = naive.radam_step(p, g, s["m"], s["v"], t, h["lr"], h["beta1"], h["beta2"],
                                   h["eps"], h["weight_decay"], h["decoupled_weight_decay"])
        return p, {"m": m, "v": v}
    p, m, v, vmax = naive.adam_step(p, g, s["m"], s["v"], s["vmax"], t, h["lr"], h["beta1"],
                                    h["beta2"], h["eps"], h["weight_decay"], rule == "adamw",
                                    h["amsgrad"])
    return p, {"m": m, "v": v, "vmax": vmax}


def assert_close(comp, ref, dtype, rtol32):
    """Relative comparison, with an absolute floor at ``rtol`` times the array's scale (a new
    parameter can be near zero after cancellation)."""
    rtol = rtol32 if np.dtype(dtype) == np.float32 else 1e-12
    scale = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
    assert_allclose(comp, ref, rtol=rtol, atol=rtol * scale)


def random_problem(rng, n, dtype, rule):
    p = rng.normal(size=n).astype(dtype)
    s = zero_slots(rule, n, dtype)
    return p, s


# ---------------------------------------------------------------------------------------------
# against the NumPy references
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_one_step_matches_naive(case, dtype, n, rng):
    rule = CASES[case][0]
    p, s = random_problem(rng, n, dtype, rule)
    # non-zero starting state, as in the middle of a run (Adam still at t = 1 here)
    for k in s:
        s[k][:] = np.abs(rng.normal(size=n)) * 0.1 if k in ("sum_sq", "sq_avg", "v", "vmax") \
            else rng.normal(size=n) * 0.1
    if "grad_avg" in s:  # keep sq_avg - grad_avg^2 well positive
        s["grad_avg"][:] = np.sqrt(s["sq_avg"]) * 0.5
    g = rng.normal(size=n).astype(dtype)
    ref_p, ref_s = naive_step(case, p, g, s, 1, dtype)
    g_before = g.copy()
    kernel_step(case, p, g, s, 1)
    assert p.dtype == dtype
    assert_array_equal(g, g_before)  # grads are read only
    assert_close(p, ref_p, dtype, 1e-6)
    for k, v in ref_s.items():
        assert s[k].dtype == dtype
        assert_close(s[k], v, dtype, 1e-6)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_several_steps_match_naive(case, dtype, n, rng):
    rule = CASES[case][0]
    p, s = random_problem(rng, n, dtype, rule)
    ref_p = p.astype(np.float64)
    ref_s = {k: v.astype(np.float64) for k, v in s.items()}
    for t in range(1, 9):
        # gradients shrink and change sign, so that v falls below vmax (AMSGrad matters)
        g = (rng.normal(size=n) / t).astype(dtype)
        ref_p, ref_s = naive_step(case, ref_p, g, ref_s, t, dtype)
        kernel_step(case, p, g, s, t)
    assert_close(p, ref_p, dtype, 2e-6)
    for k, v in ref_s.items():
        assert_close(s[k], v, dtype, 2e-6)
    if CASES[case][1].get("amsgrad") and n > 1:
        assert np.any(s["vmax"] > s["v"]), "AMSGrad maximum never differed from v"


# ---------------------------------------------------------------------------------------------
# steps worked out by hand (float64)
# ---------------------------------------------------------------------------------------------


def test_sgd_by_hand():
    p = np.array([1.0, -2.0])
    g = np.array([0.5, 0.25])
    O.sgd_update(p, g, lr=0.1)
    # 1 - 0.1 * 0.5 = 0.95;  -2 - 0.1 * 0.25 = -2.025
    assert_allclose(p, [0.95, -2.025], rtol=1e-15)


def test_momentum_by_hand():
    p = np.array([1.0])
    g = np.array([0.5])
    buf = np.array([0.2])
    O.momentum_update(p, g, buf, lr=0.1, momentum=0.9)
    # b = 0.9 * 0.2 + 0.5 = 0.68;  p = 1 - 0.1 * 0.68 = 0.932
    assert_allclose(buf, [0.68], rtol=1e-15)
    assert_allclose(p, [0.932], rtol=1e-15)


def test_nesterov_by_hand():
    p = np.array([1.0])
    g = np.array([0.5])
    buf = np.array([0.2])
    O.nesterov_update(p, g, buf, lr=0.1, momentum=0.9)
    # b = 0.9 * 0.2 + 0.5 = 0.68;  p = 1 - 0.1 * (0.5 + 0.9 * 0.68) = 1 - 0.1 * 1.112 = 0.8888
    assert_allclose(buf, [0.68], rtol=1e-15)
    assert_allclose(p, [0.8888], rtol=1e-15)


def test_momentum_first_step_from_zero_is_sgd():
    # torch starts the buffer as b = g; from b = 0, mu * 0 + g = g gives the same first step
    p1, p2 = np.array([1.0, 2.0]), np.array([1.0, 2.0])
    g = np.array([0.3, -0.7])
    O.momentum_update(p1, g, np.zeros(2), lr=0.1, momentum=0.9)
    O.sgd_update(p2, g, lr=0.1)
    assert_array_equal(p1, p2)


def test_adagrad_by_hand():
    p = np.array([1.0])
    s = np.zeros(1)
    O.adagrad_update(p, np.array([0.5]), s, lr=0.1)
    # s = 0.25;  p = 1 - 0.1 * 0.5 / (0.5 + 1e-10) = 0.9 + 2e-11 (to 1e-21)
    assert_allclose(s, [0.25], rtol=1e-15)
    assert_allclose(p, [0.90000000002], rtol=1e-15)


def test_rmsprop_by_hand():
    p = np.array([1.0])
    v = np.zeros(1)
    O.rmsprop_update(p, np.array([0.5]), v)
    # v = 0.01 * 0.25 = 0.0025, sqrt(v) = 0.05;  p = 1 - 0.01 * 0.5 / (0.05 + 1e-8)
    #   = 1 - 0.1 / (1 + 2e-7) = 0.900000019999996
    assert_allclose(v, [0.0025], rtol=1e-15)
    assert_allclose(p, [0.900000019999996], rtol=1e-14)


def test_adam_by_hand():
    p = np.array([1.0])
    m, v = np.zeros(1), np.zeros(1)
    # t = 1, g = 0.5, lr = 0.1, betas (0.9, 0.999), eps 1e-8:
    #   m = 0.1 * 0.5 = 0.05;  v = 0.001 * 0.25 = 0.00025
    #   m_hat = 0.05 / (1 - 0.9) = 0.5;  v_hat = 0.00025 / (1 - 0.999) = 0.25, sqrt = 0.5
    #   p = 1 - 0.1 * 0.5 / (0.5 + 1e-8) = 1 - 0.1 / (1 + 2e-8) = 0.900000002 (to 4e-17)
    O.adam_update(p, np.array([0.5]), m, v, step=1, lr=0.1)
    assert_allclose(m, [0.05], rtol=1e-15)
    assert_allclose(v, [0.00025], rtol=1e-14)
    assert_allclose(p, [0.900000002], rtol=1e-15)
    # t = 2, g = -0.5:
    #   m = 0.9 * 0.05 - 0.1 * 0.5 = -0.005;  v = 0.999 * 0.00025 + 0.001 * 0.25 = 0.00049975
    #   m_hat = -0.005 / (1 - 0.81) = -1/38;  v_hat = 0.00049975 / (1 - 0.998001) = 0.25
    #   p = 0.900000002 + 0.1 / 38 / (0.5 + 1e-8) = 0.9052631597894737
    O.adam_update(p, np.array([-0.5]), m, v, step=2, lr=0.1)
    assert_allclose(m, [-0.005], rtol=1e-14)
    assert_allclose(v, [0.00049975], rtol=1e-14)
    assert_allclose(p, [0.9052631597894737], rtol=1e-15)


def test_adamw_by_hand():
    p = np.array([1.0])
    O.adamw_update(p, np.array([0.5]), np.zeros(1), np.zeros(1), step=1, lr=0.1)
    # decay first: p = 1 * (1 - 0.1 * 0.01) = 0.999; then the Adam step of test_adam_by_hand,
    # 0.1 / (1 + 2e-8):  p = 0.999 - 0.099999998 = 0.899000002
    assert_allclose(p, [0.899000002], rtol=1e-15)


def test_amsgrad_keeps_the_maximum():
    p = np.array([1.0])
    m, v, vmax = np.zeros(1), np.zeros(1), np.array([4.0])
    O.adam_update(p, np.array([0.5]), m, v, step=1, lr=0.1, amsgrad=True, vmax=vmax)
    # v = 0.00025 < vmax = 4: vmax stays, v_hat = 4 / 0.001 = 4000, sqrt = 63.245553...
    #   p = 1 - 0.1 * 0.5 / (63.2455532 + 1e-8)
    assert vmax[0] == 4.0
    assert_allclose(p, [1 - 0.05 / (math.sqrt(4000.0) + 1e-8)], rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# against torch.optim (float64 trajectories)
# ---------------------------------------------------------------------------------------------

TORCH_CASES = {
    "sgd": ("SGD", {"lr": 0.1}),
    "momentum": ("SGD", {"lr": 0.05, "momentum": 0.8}),
    "nesterov": ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    "adagrad": ("Adagrad", {"lr": 0.1, "eps": 1e-6}),
    "rmsprop": ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}),
    "rmsprop_centered": ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "centered": True}),
    "adam": ("Adam", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6}),
    "adam_l2": ("Adam", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}),
    "adam_amsgrad": ("Adam", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6, "amsgrad": True}),
    "adam_l2_amsgrad": ("Adam", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6,
                                 "weight_decay": 0.1, "amsgrad": True}),
    "adamw": ("AdamW", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}),
    "adamw_amsgrad": ("AdamW", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6,
                                "weight_decay": 0.1, "amsgrad": True}),
    "nadam": ("NAdam", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6, "momentum_decay": 0.01}),
    "nadam_l2": ("NAdam", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1,
                           "momentum_decay": 0.01}),
    "nadam_decoupled": ("NAdam", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6,
                                  "weight_decay": 0.1, "momentum_decay": 0.01,
                                  "decoupled_weight_decay": True}),
    "radam": ("RAdam", {"lr": 0.01, "betas": (0.3, 0.9), "eps": 1e-6}),
    "radam_l2": ("RAdam", {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.1}),
    "radam_decoupled": ("RAdam", {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-6,
                                  "weight_decay": 0.1, "decoupled_weight_decay": True}),
}


def test_every_rule_has_cases():
    """A rule added to the registry must come with its cases here (and a naive twin)."""
    assert {rule for rule, _ in CASES.values()} == set(O.OPTIMIZERS)
    assert set(TORCH_CASES) == set(CASES)


@pytest.fixture
def torch64():
    """torch with float64 as its default dtype: torch keeps NAdam's momentum product (and every
    rule's step count) in the default dtype, so in float32 its product is rounded each step."""
    torch = pytest.importorskip("torch")
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(before)


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_trajectory_matches_torch(case, rng, torch64):
    """200 steps in float64 against torch.optim, to 1e-12 relative to the parameters' scale at
    every step."""
    torch = torch64
    cls, kw = TORCH_CASES[case]
    n = 50
    p = rng.normal(size=n)
    s = zero_slots(CASES[case][0], n, np.float64)
    tp = torch.tensor(p.copy(), dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, cls)([tp], **kw)
    for t in range(1, 201):
        g = rng.normal(size=n) / math.sqrt(t)
        tp.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        kernel_step(case, p, g, s, t)
        ref = tp.detach().numpy()
        assert_allclose(p, ref, rtol=1e-12, atol=1e-12 * np.max(np.abs(ref)),
                        err_msg=f"step {t}")


@pytest.mark.parametrize(("rule", "cls"), [
    ("adagrad", "Adagrad"), ("rmsprop", "RMSprop"), ("adam", "Adam"), ("adamw", "AdamW"),
    ("nadam", "NAdam"), ("radam", "RAdam"),
])
def test_defaults_match_torch(rule, cls):
    torch = pytest.importorskip("torch")
    theirs = dict(getattr(torch.optim, cls)([torch.zeros(1, requires_grad=True)]).defaults)
    if "betas" in theirs:
        theirs["beta1"], theirs["beta2"] = theirs["betas"]
    checked = 0
    for name, par in inspect.signature(O.OPTIMIZERS[rule]).parameters.items():
        if par.default is inspect.Parameter.empty or name in ("grad_avg", "vmax"):
            continue
        assert par.default == theirs[name], name
        checked += 1
    assert checked >= 2


# ---------------------------------------------------------------------------------------------
# determinism, compilation, options
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_deterministic(case, dtype, rng):
    rule = CASES[case][0]
    n = 1000
    p, s = random_problem(rng, n, dtype, rule)
    for t in (1, 2):  # bring the state away from zero first
        kernel_step(case, p, rng.normal(size=n).astype(dtype), s, t)
    g = rng.normal(size=n).astype(dtype)
    p2, s2 = p.copy(), {k: v.copy() for k, v in s.items()}
    kernel_step(case, p, g, s, 3)
    kernel_step(case, p2, g, s2, 3)
    assert_array_equal(p, p2)
    for k in s:
        assert_array_equal(s[k], s2[k])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_second_call_does_not_recompile(case, dtype, rng):
    rule = CASES[case][0]
    kernel = KERNELS[rule]
    p, s = random_problem(rng, 7, dtype, rule)
    kernel_step(case, p, rng.normal(size=7).astype(dtype), s, 1)
    n_sigs = len(kernel.signatures)
    p, s = random_problem(rng, 33, dtype, rule)  # new arrays, new length, same dtype
    kernel_step(case, p, rng.normal(size=33).astype(dtype), s, 5)
    assert len(kernel.signatures) == n_sigs


def test_float32_work_stays_float32(rng):
    p = np.ones(4, np.float32)
    O.adam_update(p, np.ones(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32),
                  step=1)
    sigs = [sig for sig in O.adam_kernel.signatures if sig[0].dtype == types.float32]
    assert sigs and all(sig[6] == types.float32 for sig in sigs)  # lr arrives as float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_optional_buffers_may_be_omitted(dtype, rng):
    n = 9
    g = rng.normal(size=n).astype(dtype)
    p0 = rng.normal(size=n).astype(dtype)
    pa, pb = p0.copy(), p0.copy()
    O.adam_update(pa, g, np.zeros(n, dtype), np.zeros(n, dtype), 1)
    O.adam_update(pb, g, np.zeros(n, dtype), np.zeros(n, dtype), 1, vmax=np.zeros(n, dtype))
    assert_array_equal(pa, pb)
    pa, pb = p0.copy(), p0.copy()
    O.rmsprop_update(pa, g, np.zeros(n, dtype))
    O.rmsprop_update(pb, g, np.zeros(n, dtype), np.zeros(n, dtype))
    assert_array_equal(pa, pb)


def test_kernels_accept_empty_optional_state(rng):
    # the models layer calls the workers directly, with length-0 vmax / grad_avg when unused
    p = rng.normal(size=5)
    g = rng.normal(size=5)
    ref = naive.adam_step(p, g, np.zeros(5), np.zeros(5), np.zeros(5), 1, 1e-3, 0.9, 0.999,
                          1e-8, 0.0, False, False)[0]
    O.adam_kernel(p, g, np.zeros(5), np.zeros(5), np.empty(0), 1, 1e-3, 0.9, 0.999, 1e-8, 0.0,
                  False, False)
    assert_allclose(p, ref, rtol=1e-12)
    q = rng.normal(size=5)
    ref = naive.rmsprop_step(q, g, np.zeros(5), np.zeros(5), 1e-2, 0.99, 1e-8, False)[0]
    O.rmsprop_kernel(q, g, np.zeros(5), np.empty(0), 1e-2, 0.99, 1e-8, False)
    assert_allclose(q, ref, rtol=1e-12)


@pytest.mark.parametrize("rule", list(SLOTS))
def test_empty_vectors_are_a_no_op(rule):
    kw = valid_kwargs(rule, n=0)
    assert O.OPTIMIZERS[rule](**kw) is kw["params"]


@pytest.mark.parametrize("code", [-1, O.N_CODES, 99])
def test_apply_update_rejects_an_unknown_code(code):
    p = np.ones(3)
    hp = np.zeros(O.HP_SIZE)
    hp[O.HP_LR] = 0.1
    with pytest.raises(ValueError, match="unknown optimizer rule code"):
        O.apply_update(code, p, np.ones(3), np.zeros(3), np.zeros(3), np.zeros(3), 1, hp)
    assert_array_equal(p, 1.0)


@pytest.mark.parametrize(("beta1", "psi"), [(0.9, 4e-3), (0.5, 0.0), (0.99, 0.5), (0.3, 2.0)])
def test_nadam_mu_product_stops_only_where_the_rest_cannot_matter(beta1, psi):
    """The early exit gives the full running product's ``1 - prod`` and ``1 - prod mu_next``
    bitwise (torch's state is the full product)."""
    full = 1.0
    for t in range(1, 3001):
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        full *= mu
        got = O.nadam_mu_product(t, beta1, psi)
        assert 1.0 - got == 1.0 - full and 1.0 - got * mu_next == 1.0 - full * mu_next, t


def test_registry():
    assert set(O.OPTIMIZERS) == set(SLOTS)
    assert O.OPTIMIZERS["adam"] is O.adam_update
    assert O.OPTIMIZERS["adamw"] is O.adamw_update


# ---------------------------------------------------------------------------------------------
# validation: errors name the argument and come before any compiled code runs
# ---------------------------------------------------------------------------------------------

REQUIRED = {"sgd": {"lr": 0.1}, "momentum": {"lr": 0.1}, "nesterov": {"lr": 0.1},
            "adam": {"step": 1}, "adamw": {"step": 1}, "nadam": {"step": 1}, "radam": {"step": 1}}

ARRAY_ARGS = [(rule, arg) for rule in SLOTS for arg in ("params", "grads", *SLOTS[rule])]


def valid_kwargs(rule, n=5, dtype=np.float64):
    rng = np.random.default_rng(7)
    kw = {"params": rng.normal(size=n).astype(dtype), "grads": rng.normal(size=n).astype(dtype)}
    kw.update(zero_slots(rule, n, dtype))
    kw.update(REQUIRED.get(rule, {}))
    return kw


def raises_untouched(rule, kw, exc, match):
    """Call ``rule`` with ``kw``, expect ``exc`` matching ``match``; params must be unchanged."""
    params = kw["params"]
    before = params.copy() if isinstance(params, np.ndarray) else None
    with pytest.raises(exc, match=match):
        O.OPTIMIZERS[rule](**kw)
    if before is not None:
        assert_array_equal(params, before)


def test_valid_kwargs_are_valid():
    for rule in SLOTS:
        O.OPTIMIZERS[rule](**valid_kwargs(rule))


@pytest.mark.parametrize(("rule", "arg"), ARRAY_ARGS)
def test_wrong_dtype(rule, arg):
    kw = valid_kwargs(rule)
    kw[arg] = kw[arg].astype(np.int64)
    raises_untouched(rule, kw, TypeError, arg)
    kw[arg] = list(valid_kwargs(rule)[arg])
    raises_untouched(rule, kw, TypeError, arg)


@pytest.mark.parametrize(("rule", "arg"), ARRAY_ARGS)
def test_mixed_dtypes(rule, arg):
    kw = valid_kwargs(rule)
    kw[arg] = kw[arg].astype(np.float32)
    # params set the dtype of the call, so float32 params make float64 grads the odd one out
    raises_untouched(rule, kw, TypeError, "grads" if arg == "params" else arg)


@pytest.mark.parametrize(("rule", "arg"), ARRAY_ARGS)
def test_wrong_length(rule, arg):
    kw = valid_kwargs(rule)
    kw[arg] = np.zeros(6)
    raises_untouched(rule, kw, ValueError, "grads" if arg == "params" else arg)


@pytest.mark.parametrize(("rule", "arg"), ARRAY_ARGS)
def test_two_dimensional(rule, arg):
    kw = valid_kwargs(rule)
    kw[arg] = kw[arg].reshape(1, 5)
    raises_untouched(rule, kw, ValueError, arg)


@pytest.mark.parametrize(("rule", "arg"), ARRAY_ARGS)
def test_non_contiguous(rule, arg):
    kw = valid_kwargs(rule)
    kw[arg] = np.zeros(10)[::2]
    raises_untouched(rule, kw, ValueError, arg)


@pytest.mark.parametrize(("rule", "arg"), [ra for ra in ARRAY_ARGS if ra[1] != "grads"])
def test_read_only(rule, arg):  # grads are only read, so a read-only gradient is fine
    kw = valid_kwargs(rule)
    kw[arg].flags.writeable = False
    with pytest.raises(ValueError, match=f"{arg} must be writable"):
        O.OPTIMIZERS[rule](**kw)


@pytest.mark.parametrize("rule", [r for r in SLOTS if SLOTS[r]])
def test_state_sharing_memory_with_params(rule):
    kw = valid_kwargs(rule)
    slot = SLOTS[rule][0]
    kw[slot] = kw["params"]
    raises_untouched(rule, kw, ValueError, f"{slot} must not share memory with params")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("rule", list(SLOTS))
def test_non_finite_grad(rule, bad):
    kw = valid_kwargs(rule)
    kw["grads"][2] = bad
    raises_untouched(rule, kw, ValueError, "grads contains NaN or inf")


HYPER_CASES = [
    ("sgd", "lr", 0.0, ValueError),
    ("sgd", "lr", -0.1, ValueError),
    ("sgd", "lr", np.nan, ValueError),
    ("sgd", "lr", np.inf, ValueError),
    ("sgd", "lr", "0.1", TypeError),
    ("momentum", "lr", 0, ValueError),
    ("momentum", "momentum", 1.0, ValueError),
    ("momentum", "momentum", -0.1, ValueError),
    ("nesterov", "momentum", 1.5, ValueError),
    ("adagrad", "lr", -1.0, ValueError),
    ("adagrad", "eps", 0.0, ValueError),
    ("rmsprop", "alpha", 1.0, ValueError),
    ("rmsprop", "alpha", -0.5, ValueError),
    ("rmsprop", "eps", -1e-8, ValueError),
    ("adam", "lr", 0.0, ValueError),
    ("adam", "beta1", 1.0, ValueError),
    ("adam", "beta1", -0.1, ValueError),
    ("adam", "beta2", 1.0, ValueError),
    ("adam", "beta2", 2.0, ValueError),
    ("adam", "eps", 0.0, ValueError),
    ("adam", "weight_decay", -0.1, ValueError),
    ("adam", "step", 0, ValueError),
    ("adam", "step", -3, ValueError),
    ("adam", "step", 1.0, TypeError),
    ("adam", "step", True, TypeError),
    ("adamw", "beta1", 1.0, ValueError),
    ("adamw", "beta2", -1e-3, ValueError),
    ("adamw", "weight_decay", -1.0, ValueError),
    ("adamw", "step", 0, ValueError),
    ("nadam", "lr", 0.0, ValueError),
    ("nadam", "beta1", 1.0, ValueError),
    ("nadam", "beta2", -0.1, ValueError),
    ("nadam", "eps", 0.0, ValueError),
    ("nadam", "weight_decay", -0.1, ValueError),
    ("nadam", "momentum_decay", -1e-3, ValueError),
    ("nadam", "momentum_decay", np.nan, ValueError),
    ("nadam", "step", 0, ValueError),
    ("nadam", "step", 1.0, TypeError),
    ("radam", "lr", -1.0, ValueError),
    ("radam", "beta1", 1.0, ValueError),
    ("radam", "beta2", 1.5, ValueError),
    ("radam", "eps", 0.0, ValueError),
    ("radam", "weight_decay", -0.1, ValueError),
    ("radam", "step", 0, ValueError),
    ("rmsprop", "centered", "yes", TypeError),
    ("adam", "amsgrad", np.zeros(3), TypeError),
    ("adamw", "amsgrad", 2, TypeError),
    ("nadam", "decoupled_weight_decay", [True], TypeError),
    ("radam", "decoupled_weight_decay", 0.5, TypeError),
]


@pytest.mark.parametrize(("rule", "name", "value", "exc"), HYPER_CASES)
def test_bad_hyper_parameter(rule, name, value, exc):
    kw = valid_kwargs(rule)
    kw[name] = value
    raises_untouched(rule, kw, exc, name)


@pytest.mark.parametrize(("rule", "name", "value"), [
    ("adam", "eps", 1e-50),        # underflows to 0 in float32
    ("adam", "beta2", 1 - 1e-9),   # rounds to 1 in float32
    ("rmsprop", "alpha", 1 - 1e-9),
    ("sgd", "lr", 1e40),           # overflows float32
])
def test_hyper_parameter_out_of_range_in_float32(rule, name, value):
    kw = valid_kwargs(rule, dtype=np.float32)
    kw[name] = value
    raises_untouched(rule, kw, ValueError, name)
    O.OPTIMIZERS[rule](**{**valid_kwargs(rule), name: value})  # fine in float64


@pytest.mark.parametrize("rule", ["adam", "adamw"])
def test_amsgrad_requires_vmax(rule):
    kw = valid_kwargs(rule)
    kw["vmax"] = None
    kw["amsgrad"] = True
    raises_untouched(rule, kw, ValueError, "vmax")


def test_centered_requires_grad_avg():
    kw = valid_kwargs("rmsprop")
    kw["grad_avg"] = None
    kw["centered"] = True
    raises_untouched("rmsprop", kw, ValueError, "grad_avg")
