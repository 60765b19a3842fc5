"""Benchmarks of the optimizer updates (pytest-benchmark), float32 flat parameter vectors.

Sizes are the parameter counts of a 784-256-256-10 network (269,322) and of a 2-16-16-1 network
(337). Each case times either the validating public wrapper (``update``) or the bare compiled
worker (``kernel``, what the models layer calls). Every timed call alternates between two
gradient vectors of opposite signs, so the parameters stay bounded and the state well
conditioned (a constant gradient drives the centered RMSprop variance v - avg(g)^2 to zero,
where float32 rounding makes it negative and the update NaN, as in torch). Compilation happens
in a warm-up call outside the timing.
Runs under ``--benchmark-disable`` too (each case is then called once), as a correctness test:
the parameters after the warm-up step and after the timed one equal the naive float64 twins'.
"""

import numpy as np
import pytest

from dlbasics.kernels import optimizers as O
from tests import naive

F32 = np.float32


def n_params(layers):
    """Weights and biases of a dense network with these layer widths."""
    return sum(a * b + b for a, b in zip(layers[:-1], layers[1:], strict=True))


SIZES = {"784-256-256-10": n_params((784, 256, 256, 10)), "2-16-16-1": n_params((2, 16, 16, 1))}

CASES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "rmsprop_centered", "adam",
         "adam_amsgrad", "adamw")


def make_step(case, n, path):
    """A zero-argument callable doing one in-place update of a fresh problem of size ``n``."""
    rng = np.random.default_rng(0)
    p = (rng.normal(size=n) * 0.05).astype(F32)
    g = rng.normal(size=n).astype(F32)
    grads = (g, -g)  # alternating signs: bounded parameters, a well-conditioned state
    s1, s2, s3 = (np.zeros(n, F32) for _ in range(3))
    empty = np.zeros(0, F32)
    count = [0]
    lr, mu, alpha = F32(1e-3), F32(0.9), F32(0.99)
    b1, b2, eps, wd = F32(0.9), F32(0.999), F32(1e-8), F32(1e-2)

    if path == "update":
        calls = {
            "sgd": lambda g, t: O.sgd_update(p, g, lr=1e-3),
            "momentum": lambda g, t: O.momentum_update(p, g, s1, lr=1e-3),
            "nesterov": lambda g, t: O.nesterov_update(p, g, s1, lr=1e-3),
            "adagrad": lambda g, t: O.adagrad_update(p, g, s1),
            "rmsprop": lambda g, t: O.rmsprop_update(p, g, s1),
            "rmsprop_centered": lambda g, t: O.rmsprop_update(p, g, s1, s2, centered=True),
            "adam": lambda g, t: O.adam_update(p, g, s1, s2, t),
            "adam_amsgrad": lambda g, t: O.adam_update(p, g, s1, s2, t, amsgrad=True, vmax=s3),
            "adamw": lambda g, t: O.adamw_update(p, g, s1, s2, t),
        }
    else:
        calls = {
            "sgd": lambda g, t: O.sgd_kernel(p, g, lr),
            "momentum": lambda g, t: O.momentum_kernel(p, g, s1, lr, mu),
            "nesterov": lambda g, t: O.nesterov_kernel(p, g, s1, lr, mu),
            "adagrad": lambda g, t: O.adagrad_kernel(p, g, s1, F32(1e-2), F32(1e-10)),
            "rmsprop": lambda g, t: O.rmsprop_kernel(p, g, s1, empty, F32(1e-2), alpha, eps,
                                                     False),
            "rmsprop_centered": lambda g, t: O.rmsprop_kernel(p, g, s1, s2, F32(1e-2), alpha,
                                                              eps, True),
            "adam": lambda g, t: O.adam_kernel(p, g, s1, s2, empty, t, lr, b1, b2, eps, F32(0),
                                               False, False),
            "adam_amsgrad": lambda g, t: O.adam_kernel(p, g, s1, s2, s3, t, lr, b1, b2, eps,
                                                       F32(0), False, True),
            "adamw": lambda g, t: O.adam_kernel(p, g, s1, s2, empty, t, lr, b1, b2, eps, wd,
                                                True, False),
        }
    call = calls[case]

    def step():
        count[0] += 1
        t = count[0]
        call(grads[t & 1], t)

    return step, p


#: Each case as the rule and hyper-parameters of ``naive.optimizer_step`` (those of both paths
#: above: the public wrappers' defaults, and the kernels' explicit constants).
REFERENCE = {
    "sgd": ("sgd", {"lr": 1e-3}),
    "momentum": ("momentum", {"lr": 1e-3, "momentum": 0.9}),
    "nesterov": ("nesterov", {"lr": 1e-3, "momentum": 0.9}),
    "adagrad": ("adagrad", {"lr": 1e-2, "eps": 1e-10}),
    "rmsprop": ("rmsprop", {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "centered": False}),
    "rmsprop_centered": ("rmsprop", {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "centered": True}),
    "adam": ("adam", {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "amsgrad": False}),
    "adam_amsgrad": ("adam", {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8,
                              "amsgrad": True}),
    "adamw": ("adamw", {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-2,
                        "amsgrad": False}),
}


def reference(case, n, steps):
    """The parameters after ``steps`` updates of :func:`make_step`'s problem, by the naive
    float64 twins (same initial parameters, same alternating gradients)."""
    rng = np.random.default_rng(0)
    p = (rng.normal(size=n) * 0.05).astype(F32).astype(np.float64)
    g = rng.normal(size=n).astype(F32)
    rule, hyper = REFERENCE[case]
    slots = {}
    for t in range(1, steps + 1):
        p, slots = naive.optimizer_step(rule, hyper, p, (g, -g)[t & 1], slots, t)
    return p


@pytest.mark.parametrize("path", ["update", "kernel"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("case", CASES)
def test_bench_optimizer(benchmark, case, size, path):
    """Timed updates; the warm-up step (and under ``--benchmark-disable`` the one timed step
    after it) is checked against the naive twin."""
    step, params = make_step(case, SIZES[size], path)
    step()  # compile (or load from the cache) outside the timing
    np.testing.assert_allclose(params, reference(case, SIZES[size], 1), rtol=1e-6, atol=2e-7)
    benchmark.group = f"optimizers {size}"
    benchmark.extra_info["n_params"] = SIZES[size]
    benchmark(step)
    if benchmark.disabled:
        np.testing.assert_allclose(params, reference(case, SIZES[size], 2), rtol=1e-6,
                                   atol=2e-7)
