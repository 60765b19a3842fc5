"""GPU update rules against the CPU kernels and the formulas of tests/naive.py."""

import inspect

import numpy as np
import pytest

from dlbasics.kernels import gpu_optimizers as G
from dlbasics.kernels import optimizers as O
from tests import naive
from tests.gpu.conftest import SIMULATOR, assert_close, host

DTYPES = [np.float32, np.float64]
N = 37  # several blocks of the patched 8-thread launch, and a grid-stride remainder

# name -> (hyper-parameters, slot names)
CASES = {
    "sgd": ({"lr": 0.1}, []),
    "momentum": ({"lr": 0.1, "momentum": 0.9}, ["buf"]),
    "nesterov": ({"lr": 0.1, "momentum": 0.8}, ["buf"]),
    "adagrad": ({"lr": 0.1, "eps": 1e-8}, ["sum_sq"]),
    "rmsprop": ({"lr": 0.01, "alpha": 0.9, "eps": 1e-8, "centered": True},
                ["sq_avg", "grad_avg"]),
    "adam": ({"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}, ["m", "v", "vmax"]),
    "adamw": ({"lr": 0.01, "weight_decay": 0.1}, ["m", "v"]),
    "nadam": ({"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.1,
               "momentum_decay": 0.01, "decoupled_weight_decay": False}, ["m", "v"]),
    # beta2 0.5 keeps RAdam's rho_t below 5 (the un-adapted step); the rectified step is
    # checked over more steps below
    "radam": ({"lr": 0.01, "beta1": 0.8, "beta2": 0.5, "eps": 1e-6, "weight_decay": 0.1,
               "decoupled_weight_decay": True}, ["m", "v"]),
}


def _naive_step(name, p, g, slots, t, hp):
    if name == "sgd":
        return naive.sgd_step(p, g, hp["lr"]), []
    if name in ("momentum", "nesterov"):
        step = naive.momentum_step if name == "momentum" else naive.nesterov_step
        p, b = step(p, g, slots[0], hp["lr"], hp["momentum"])
        return p, [b]
    if name == "adagrad":
        p, s = naive.adagrad_step(p, g, slots[0], hp["lr"], hp["eps"])
        return p, [s]
    if name == "rmsprop":
        p, v, ga = naive.rmsprop_step(p, g, slots[0], slots[1], hp["lr"], hp["alpha"],
                                      hp["eps"], hp["centered"])
        return p, [v, ga]
    if name == "nadam":
        p, m, v = naive.nadam_step(p, g, slots[0], slots[1], t, hp["lr"], hp["beta1"],
                                   hp["beta2"], hp["eps"], hp["weight_decay"],
                                   hp["momentum_decay"], hp["decoupled_weight_decay"])
        return p, [m, v]
    if name == "radam":
        p, m, v = naive.radam_step(p, g, slots[0], slots[1], t, hp["lr"], hp["beta1"],
                                   hp["beta2"], hp["eps"], hp["weight_decay"],
                                   hp["decoupled_weight_decay"])
        return p, [m, v]
    vmax = slots[2] if len(slots) == 3 else np.zeros_like(p)
    p, m, v, vmax = naive.adam_step(p, g, slots[0], slots[1], vmax, t, hp["lr"], 0.9, 0.999,
                                    1e-8, hp["weight_decay"], name == "adamw",
                                    hp.get("amsgrad", False))
    return p, [m, v, vmax][: len(slots)]


def _call(fn, name, params, grads, slots, t, hp):
    names = CASES[name][1]
    kwargs = dict(hp)
    kwargs.update(zip(names, slots, strict=True))
    if "step" in inspect.signature(fn).parameters:
        return fn(params, grads, step=t, **kwargs)
    return fn(params, grads, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_three_steps_match_cpu_and_naive(name, dtype, rng):
    hp, slot_names = CASES[name]
    p0 = rng.normal(size=N).astype(dtype)
    gpu_p, cpu_p = p0.copy(), p0.copy()
    gpu_s = [np.zeros(N, dtype) for _ in slot_names]
    cpu_s = [np.zeros(N, dtype) for _ in slot_names]
    ref_p, ref_s = p0.astype(np.float64), [np.zeros(N) for _ in slot_names]
    for t in (1, 2, 3):
        g = rng.normal(size=N).astype(dtype)
        assert _call(G.GPU_OPTIMIZERS[name], name, gpu_p, g, gpu_s, t, hp) is gpu_p
        _call(O.OPTIMIZERS[name], name, cpu_p, g, cpu_s, t, hp)
        ref_p, ref_s = _naive_step(name, ref_p, g, ref_s, t, hp)
        assert_close(gpu_p, cpu_p)
        for a, b in zip(gpu_s, cpu_s, strict=True):
            assert_close(a, b)
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gpu_p, ref_p, rtol=rtol, atol=rtol)


def test_every_rule_has_a_case():
    assert set(CASES) == set(O.OPTIMIZERS) == set(G.GPU_OPTIMIZERS)


@pytest.mark.parametrize("name", ["nadam", "radam"])
def test_rules_with_step_scalars_over_many_steps(name, rng):
    """NAdam's momentum product and RAdam's switch to the rectified step (from t = 6 with
    beta2 = 0.9), formed per thread, over 12 steps against the CPU kernels (float64)."""
    hp = {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "eps": 1e-6}
    p = rng.normal(size=N)
    cp = p.copy()
    s = [np.zeros(N) for _ in range(2)]
    cs = [np.zeros(N) for _ in range(2)]
    for t in range(1, 13):
        g = rng.normal(size=N)
        G.GPU_OPTIMIZERS[name](p, g, s[0], s[1], t, **hp)
        O.OPTIMIZERS[name](cp, g, cs[0], cs[1], t, **hp)
        assert_close(p, cp)


@pytest.mark.parametrize("code", [-1, O.N_CODES, 99])
def test_launch_rejects_an_unknown_code(code):
    """Checked on the host: numba.cuda reports a kernel's raise only in debug builds, so the
    dispatcher's raise would leave the parameters silently untouched on a GPU."""
    from dlbasics.kernels import gpu_config as g

    p = g.to_device(np.ones(4))
    hp = np.zeros(O.HP_SIZE)
    hp[O.HP_LR] = 0.1
    empty = g.device_array((0,), np.float64)
    with pytest.raises(ValueError, match="unknown optimizer rule code"):
        G.launch_update(code, p, g.to_device(np.ones(4)), empty, empty, empty, g.to_device(hp), 1)
    assert_close(host(p), np.ones(4))


def test_device_arrays_updated_in_place(rng):
    from numba import cuda

    p = rng.normal(size=N).astype(np.float32)
    g = rng.normal(size=N).astype(np.float32)
    dp, dm, dv = cuda.to_device(p), cuda.to_device(np.zeros(N, np.float32)), cuda.to_device(
        np.zeros(N, np.float32))
    assert G.gpu_adam_update(dp, cuda.to_device(g), dm, dv, 1, lr=0.1) is dp
    m, v = np.zeros(N, np.float32), np.zeros(N, np.float32)
    O.adam_update(p, g, m, v, 1, lr=0.1)
    assert_close(host(dp), p)
    assert_close(host(dv), v)
    with pytest.raises(TypeError, match="device array"):
        G.gpu_momentum_update(dp, g, np.zeros(N, np.float32), 0.1)


def test_one_dispatcher_for_cpu_models_and_gpu():
    """The GPU kernels and the models layer call the one dispatcher of
    dlbasics.kernels.optimizers."""
    from dlbasics.kernels import optimizers as K
    from dlbasics.models import optimizers as M

    assert G.apply_update is K.apply_update and M.apply_update is K.apply_update


def test_errors_before_launch(rng):
    p = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="lr"):
        G.gpu_sgd_update(p, p.copy(), -1.0)
    with pytest.raises(TypeError, match="dtype"):
        G.gpu_sgd_update(p, np.zeros(5), 0.1)
    with pytest.raises(ValueError, match="share memory"):
        G.gpu_momentum_update(p, np.ones(5, np.float32), p, 0.1)
    with pytest.raises(ValueError, match="vmax"):
        G.gpu_adam_update(p, np.ones(5, np.float32), p.copy(), p.copy(), 1, amsgrad=True)
    with pytest.raises(ValueError, match="grad_avg"):
        G.gpu_rmsprop_update(p, np.ones(5, np.float32), p.copy(), centered=True)
    with pytest.raises(ValueError, match="step"):
        G.gpu_adam_update(p, np.ones(5, np.float32), p.copy(), p.copy(), 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_step_scalars_are_the_bias_corrections(dtype):
    """The host-side bias corrections are adam_kernel's expressions (bitwise the CPU's: see the
    simulator test below); Numba forms them in ``hp``'s dtype (``float()`` of a float32 stays
    float32 in Numba) and ``beta**step`` by multiplications, so against float64 formulas they
    agree to float32 rounding only."""
    from dlbasics.kernels.gpu_optimizers import adam_step_scalars
    from dlbasics.models import Adam

    hp = Adam(0.003, b1=0.8, b2=0.99).hyper_vector(dtype, 0.003)
    rtol = 2e-6 if dtype == np.float32 else 1e-14
    for step in (1, 2, 10, 1000):
        step_size, inv = (dtype(v) for v in adam_step_scalars(hp, step))
        b1, b2 = float(hp[1]), float(hp[2])
        assert float(step_size) == pytest.approx(float(hp[0]) / (1.0 - b1**step), rel=rtol)
        assert float(inv) == pytest.approx(1.0 / np.sqrt(1.0 - b2**step), rel=rtol)


@pytest.mark.skipif(not SIMULATOR, reason="bitwise only where no FMA contraction happens")
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_with_host_scalars_is_bitwise_the_cpu_in_the_simulator(amsgrad, rng):
    p = rng.normal(size=N).astype(np.float32)
    cp = p.copy()
    s = [np.zeros(N, np.float32) for _ in range(3)]
    cs = [np.zeros(N, np.float32) for _ in range(3)]
    for t in range(1, 6):
        g = rng.normal(size=N).astype(np.float32)
        G.gpu_adamw_update(p, g, s[0], s[1], t, lr=0.01, amsgrad=amsgrad, vmax=s[2])
        O.adamw_update(cp, g, cs[0], cs[1], t, lr=0.01, amsgrad=amsgrad, vmax=cs[2])
    np.testing.assert_array_equal(p, cp)
    for a, b in zip(s, cs, strict=True):
        np.testing.assert_array_equal(a, b)
