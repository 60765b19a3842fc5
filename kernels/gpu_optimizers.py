r"""GPU twins of :mod:`dlbasics.kernels.optimizers`: every update rule, in place, on flat device
arrays.

Adam (and AdamW, AMSGrad) has its own kernel: its two per-step scalars, the bias corrections
``step_size = lr / (1 - beta1^t)`` and ``1 / sqrt(1 - beta2^t)``, are computed once per update on
the host by :func:`adam_step_scalars` (the expressions of
:func:`dlbasics.kernels.optimizers.adam_kernel`, compiled the same way, so bitwise the CPU's) and
passed to the kernel, whose threads run the CPU's per-element
:func:`dlbasics.kernels.optimizers._adam_at`; no thread evaluates a power. Every other rule is
one kernel too: a grid-stride loop over the elements in which each thread runs
the CPU's own compiled rule (``sgd_kernel`` ... ``adam_kernel`` of
:mod:`dlbasics.kernels.optimizers`) on the one-element slices of its element, through
:func:`dlbasics.kernels.optimizers.apply_update` (an integer rule code, a hyper-parameter vector in
the parameter dtype, three slot arrays). Each element therefore sees exactly the CPU's arithmetic:
the scalar coefficients formed in float64 and rounded once to the parameter dtype, then the
same per-element expression (a real GPU may still contract a multiply-add into an FMA). The CPU
training paths (:mod:`dlbasics.models.optimizers`) use that same dispatcher, so
:mod:`dlbasics.models._cuda` and :mod:`dlbasics.kernels.gpu_population` drive the same code as the
public ``gpu_*_update`` functions.

float32 arrays: every per-element update runs in float32. The scalar coefficients are formed as
the CPU forms them, with the types Numba gives them: ``float()`` of a float32 hyper-parameter
stays float32 in Numba, so ``beta**t`` is a float32 power (by repeated multiplication) and the
rest of each coefficient float64, rounded once to float32, as on the CPU (bitwise the same).

Host arrays in, host arrays updated in place; device arrays in, device arrays updated in place
(see :mod:`dlbasics.kernels._gpu_arrays`). Every function returns ``params``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from . import _checks
from . import gpu_config as g
from ._gpu_arrays import Call, float_array
from .optimizers import (
    ADAGRAD_CODE,
    ADAM_CODE,
    HP_B1,
    HP_B2,
    HP_DECOUPLED,
    HP_EPS,
    HP_FLAG,
    HP_LR,
    HP_MOMENTUM_DECAY,
    HP_SIZE,
    HP_WD,
    MOMENTUM_CODE,
    N_CODES,
    NADAM_CODE,
    NESTEROV_CODE,
    RADAM_CODE,
    RMSPROP_CODE,
    SGD_CODE,
    _adam_at,
    _cast,
    _eps,
    _flag,
    _lr,
    _unit,
    apply_update,
)

__all__ = [
    "gpu_sgd_update",
    "gpu_momentum_update",
    "gpu_nesterov_update",
    "gpu_adagrad_update",
    "gpu_rmsprop_update",
    "gpu_adam_update",
    "gpu_adamw_update",
    "gpu_nadam_update",
    "gpu_radam_update",
    "GPU_OPTIMIZERS",
    "apply_update",
]

cuda = None  # numba.cuda, bound by _kernels() on first use (import-safe without numba-cuda)

#: Rule codes and hyper-parameter vector layout: the same values as in
#:mod:`dlbasics.models.optimizers`.
@njit(inline="always", cache=True)
def update_at(code, i, params, grads, s1, s2, s3, t, hp):
    """:func:`apply_update` on element ``i`` only (slots may be empty where unused)."""
    j = i + 1
    apply_update(code, params[i:j], grads[i:j], s1[i:j], s2[i:j], s3[i:j], t, hp)


@njit(cache=True)
def adam_step_scalars(hp, step):
    """``(lr / (1 - beta1^step), 1 / sqrt(1 - beta2^step))`` rounded to ``hp``'s dtype (returned
    to Python as floats holding those values exactly), as
    :func:`dlbasics.kernels.optimizers.adam_kernel` forms them (float64, rounded once); called
    on the host once per update, and by the fused small-network kernel once per step."""
    t = hp.dtype.type
    lr64 = float(hp[HP_LR])
    b1f = float(hp[HP_B1])
    b2f = float(hp[HP_B2])
    return t(lr64 / (1.0 - b1f**step)), t(1.0 / math.sqrt(1.0 - b2f**step))


@njit(inline="always", cache=True)
def adam_at(i, params, grads, m, v, vmax, hp, step_size, inv_sqrt_bc2):
    """Adam on element ``i`` with the per-step scalars given (see :func:`adam_step_scalars`);
    the per-run coefficients are formed from ``hp`` as :func:`~dlbasics.kernels.optimizers.\
adam_kernel` forms them."""
    t = params.dtype.type
    lr64 = float(hp[HP_LR])
    b1f = float(hp[HP_B1])
    b2f = float(hp[HP_B2])
    wdf = float(hp[HP_WD])
    decoupled = hp[HP_DECOUPLED] != 0
    coef = (step_size, inv_sqrt_bc2, t(b1f), t(b2f), t(1.0 - b1f), t(1.0 - b2f),
            t(float(hp[HP_EPS])), t(wdf), t(1.0 - lr64 * wdf))
    _adam_at(i, params, grads, m, v, vmax, coef, decoupled, (not decoupled) and wdf != 0.0,
             hp[HP_FLAG] != 0)


@functools.cache
def _kernels():
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()

    @cuda.jit
    def update(code, params, grads, s1, s2, s3, t, hp, stop):
        """Rule ``code`` on every element, unless ``stop[0] != 0`` (a diverged epoch)."""
        params = A(params)
        grads = A(grads)
        s1 = A(s1)
        s2 = A(s2)
        s3 = A(s3)
        hp = A(hp)
        stop = A(stop)
        if stop[0] != 0:
            return
        for i in range(cuda.grid(1), params.shape[0], cuda.gridsize(1)):
            update_at(code, i, params, grads, s1, s2, s3, t, hp)

    @cuda.jit
    def adam(params, grads, m, v, vmax, hp, step_size, inv_sqrt_bc2, stop):
        """Adam with the host's per-step scalars, unless ``stop[0] != 0``."""
        params = A(params)
        grads = A(grads)
        m = A(m)
        v = A(v)
        vmax = A(vmax)
        hp = A(hp)
        stop = A(stop)
        if stop[0] != 0:
            return
        for i in range(cuda.grid(1), params.shape[0], cuda.gridsize(1)):
            adam_at(i, params, grads, m, v, vmax, hp, step_size, inv_sqrt_bc2)

    return update, adam


_STOP = {}


def _no_stop():
    if "zero" not in _STOP:
        _STOP["zero"] = g.device_zeros(1, np.float64)
    return _STOP["zero"]


def launch_update(code, params, grads, s1, s2, s3, hp, t, stop=None, hp_host=None):
    """Apply rule ``code`` at update ``t`` to flat device arrays; ``hp`` is a device vector in
    the parameter dtype laid out as in :mod:`dlbasics.models.optimizers`; unused slots may be empty.
    ``stop``: a device float64 array whose first element, when non-zero, makes the launch a
    no-op (the MLP's epoch record after a non-finite loss). ``hp_host``: the host copy of ``hp``,
    from which Adam's per-step scalars are computed (copied from the device when not given).
    An unknown ``code`` raises ``ValueError`` before anything is launched."""
    if not 0 <= int(code) < N_CODES:
        # checked here: numba.cuda checks a kernel's raise only when built with debug=True
        raise ValueError(f"unknown optimizer rule code {int(code)}")
    update, adam = _kernels()
    stop = _no_stop() if stop is None else stop
    grid = g.grid_1d(params.shape[0])
    if int(code) == ADAM_CODE:
        if hp_host is None:
            hp_host = g.copy_to_host(hp)
        dt = np.dtype(params.dtype).type  # the scalars come back as Python floats: exact
        step_size, inv_sqrt_bc2 = (dt(v) for v in adam_step_scalars(hp_host, int(t)))
        g.launch(adam, *grid, params, grads, s1, s2, s3, hp, step_size, inv_sqrt_bc2, stop)
    else:
        g.launch(update, *grid, int(code), params, grads, s1, s2, s3, int(t), hp, stop)


# ---------------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------------


def _check_params(params, grads):
    params = float_array("params", params, ndim=1, writable=True)
    grads = float_array("grads", grads, ndim=1, dtype=params.dtype, finite=True)
    _checks.shape("grads", grads, params.shape)
    return params, grads


def _check_slot(name, a, params, others):
    a = float_array(name, a, ndim=1, dtype=params.dtype, writable=True)
    _checks.shape(name, a, params.shape)
    if isinstance(a, np.ndarray):
        for other_name, other in others:
            if isinstance(other, np.ndarray) and a.size and np.may_share_memory(a, other):
                raise ValueError(f"{name} must not share memory with {other_name}")
    return a


def _run(code, params, grads, slots, hp_values, step=1):
    """Stage, launch and return ``params``; ``slots`` are the (name, array) slot arguments."""
    call = Call(params, grads, *(a for _, a in slots))
    g.require_cuda()
    dp = call.inplace("params", params)
    dg = call.input(grads)
    dslots = [call.inplace(name, a) for name, a in slots]
    empty = g.device_array((0,), params.dtype)
    while len(dslots) < 3:
        dslots.append(empty)
    hp = np.zeros(HP_SIZE, dtype=params.dtype)
    for idx, v in hp_values.items():
        hp[idx] = v
    if params.shape[0]:
        launch_update(code, dp, dg, dslots[0], dslots[1], dslots[2], g.to_device(hp), step,
                      hp_host=hp)
    call.finish()
    return params


def gpu_sgd_update(params, grads, lr):
    r"""GPU :func:`dlbasics.kernels.optimizers.sgd_update`: :math:`p \leftarrow p - \eta g`, in
    place.

    Parameters
    ----------
    params : ndarray or device array of shape (n,)
        Flat parameters, float32 or float64; updated in place.
    grads : array of shape (n,)
    lr : float > 0

    Returns
    -------
    params
    """
    params, grads = _check_params(params, grads)
    t = params.dtype.type
    return _run(SGD_CODE, params, grads, [], {HP_LR: _lr(t, lr)})


def gpu_momentum_update(params, grads, buf, lr, momentum=0.9):
    """GPU :func:`dlbasics.kernels.optimizers.momentum_update` (heavy ball), in place."""
    params, grads = _check_params(params, grads)
    buf = _check_slot("buf", buf, params, (("params", params), ("grads", grads)))
    t = params.dtype.type
    return _run(MOMENTUM_CODE, params, grads, [("buf", buf)],
                {HP_LR: _lr(t, lr), HP_B1: _unit(t, "momentum", momentum)})


def gpu_nesterov_update(params, grads, buf, lr, momentum=0.9):
    """GPU :func:`dlbasics.kernels.optimizers.nesterov_update`, in place."""
    params, grads = _check_params(params, grads)
    buf = _check_slot("buf", buf, params, (("params", params), ("grads", grads)))
    t = params.dtype.type
    return _run(NESTEROV_CODE, params, grads, [("buf", buf)],
                {HP_LR: _lr(t, lr), HP_B1: _unit(t, "momentum", momentum)})


def gpu_adagrad_update(params, grads, sum_sq, lr=1e-2, eps=1e-10):
    """GPU :func:`dlbasics.kernels.optimizers.adagrad_update`, in place."""
    params, grads = _check_params(params, grads)
    sum_sq = _check_slot("sum_sq", sum_sq, params, (("params", params), ("grads", grads)))
    t = params.dtype.type
    return _run(ADAGRAD_CODE, params, grads, [("sum_sq", sum_sq)],
                {HP_LR: _lr(t, lr), HP_EPS: _eps(t, eps)})


def gpu_rmsprop_update(params, grads, sq_avg, grad_avg=None, lr=1e-2, alpha=0.99, eps=1e-8,
                       centered=False):
    """GPU :func:`dlbasics.kernels.optimizers.rmsprop_update` (plain or centered), in place."""
    params, grads = _check_params(params, grads)
    seen = [("params", params), ("grads", grads)]
    sq_avg = _check_slot("sq_avg", sq_avg, params, seen)
    centered = _flag("centered", centered)
    if centered and grad_avg is None:
        raise ValueError("grad_avg is required when centered=True")
    slots = [("sq_avg", sq_avg)]
    if grad_avg is not None:
        slots.append(("grad_avg", _check_slot("grad_avg", grad_avg, params,
                                              [*seen, ("sq_avg", sq_avg)])))
    t = params.dtype.type
    return _run(RMSPROP_CODE, params, grads, slots,
                {HP_LR: _lr(t, lr), HP_B1: _unit(t, "alpha", alpha), HP_EPS: _eps(t, eps),
                 HP_FLAG: float(centered)})


def _adam(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, amsgrad, vmax,
          decoupled):
    params, grads = _check_params(params, grads)
    seen = [("params", params), ("grads", grads)]
    m = _check_slot("m", m, params, seen)
    seen.append(("m", m))
    v = _check_slot("v", v, params, seen)
    seen.append(("v", v))
    amsgrad = _flag("amsgrad", amsgrad)
    if amsgrad and vmax is None:
        raise ValueError("vmax is required when amsgrad=True")
    slots = [("m", m), ("v", v)]
    if vmax is not None:
        slots.append(("vmax", _check_slot("vmax", vmax, params, seen)))
    step = _checks.integer("step", step, low=1, high=2**63 - 1)
    t = params.dtype.type
    hp = {
        HP_LR: _lr(t, lr),
        HP_B1: _unit(t, "beta1", beta1),
        HP_B2: _unit(t, "beta2", beta2),
        HP_EPS: _eps(t, eps),
        HP_WD: _cast(t, "weight_decay", _checks.real("weight_decay", weight_decay, low=0.0)),
        HP_FLAG: float(amsgrad),
        HP_DECOUPLED: float(decoupled),
    }
    return _run(ADAM_CODE, params, grads, slots, hp, step)


def gpu_adam_update(params, grads, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, amsgrad=False, vmax=None):
    """GPU :func:`dlbasics.kernels.optimizers.adam_update` (optionally AMSGrad), in place."""
    return _adam(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, amsgrad, vmax,
                 False)


def gpu_adamw_update(params, grads, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                     weight_decay=1e-2, amsgrad=False, vmax=None):
    """GPU :func:`dlbasics.kernels.optimizers.adamw_update` (decoupled weight decay), in place."""
    return _adam(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, amsgrad, vmax,
                 True)


def _moments(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay,
             decoupled_weight_decay):
    """Validated slots and ``hp`` entries shared by NAdam and RAdam."""
    params, grads = _check_params(params, grads)
    seen = [("params", params), ("grads", grads)]
    m = _check_slot("m", m, params, seen)
    v = _check_slot("v", v, params, [*seen, ("m", m)])
    step = _checks.integer("step", step, low=1, high=2**63 - 1)
    t = params.dtype.type
    hp = {
        HP_LR: _lr(t, lr),
        HP_B1: _unit(t, "beta1", beta1),
        HP_B2: _unit(t, "beta2", beta2),
        HP_EPS: _eps(t, eps),
        HP_WD: _cast(t, "weight_decay", _checks.real("weight_decay", weight_decay, low=0.0)),
        HP_DECOUPLED: float(_flag("decoupled_weight_decay", decoupled_weight_decay)),
    }
    return params, grads, [("m", m), ("v", v)], hp, step


def gpu_nadam_update(params, grads, m, v, step, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                     weight_decay=0.0, momentum_decay=4e-3, decoupled_weight_decay=False):
    """GPU :func:`dlbasics.kernels.optimizers.nadam_update`, in place (each thread forms the
    step's coefficients, the momentum product included, as the CPU kernel does)."""
    params, grads, slots, hp, step = _moments(params, grads, m, v, step, lr, beta1, beta2, eps,
                                              weight_decay, decoupled_weight_decay)
    t = params.dtype.type
    hp[HP_MOMENTUM_DECAY] = _cast(t, "momentum_decay",
                                  _checks.real("momentum_decay", momentum_decay, low=0.0))
    return _run(NADAM_CODE, params, grads, slots, hp, step)


def gpu_radam_update(params, grads, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                     weight_decay=0.0, decoupled_weight_decay=False):
    """GPU :func:`dlbasics.kernels.optimizers.radam_update`, in place."""
    params, grads, slots, hp, step = _moments(params, grads, m, v, step, lr, beta1, beta2, eps,
                                              weight_decay, decoupled_weight_decay)
    return _run(RADAM_CODE, params, grads, slots, hp, step)


#: Public update functions by name.
GPU_OPTIMIZERS = {
    "sgd": gpu_sgd_update,
    "momentum": gpu_momentum_update,
    "nesterov": gpu_nesterov_update,
    "adagrad": gpu_adagrad_update,
    "rmsprop": gpu_rmsprop_update,
    "adam": gpu_adam_update,
    "adamw": gpu_adamw_update,
    "nadam": gpu_nadam_update,
    "radam": gpu_radam_update,
}
