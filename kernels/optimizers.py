r"""First-order optimizer updates: in-place elementwise steps on flat parameter vectors.

Every rule follows the update equations and default hyper-parameters documented for
``torch.optim`` (single-tensor form), so trajectories can be cross-checked against PyTorch.
For parameters :math:`p`, gradient :math:`g`, learning rate :math:`\eta` and step
:math:`t = 1, 2, \dots` (all state buffers start at zero):

==============  =================================================================================
rule            update
==============  =================================================================================
``sgd``         :math:`p \leftarrow p - \eta g`
``momentum``    :math:`b \leftarrow \mu b + g,\quad p \leftarrow p - \eta b`
``nesterov``    :math:`b \leftarrow \mu b + g,\quad p \leftarrow p - \eta (g + \mu b)`
``adagrad``     :math:`s \leftarrow s + g^2,\quad p \leftarrow p - \eta g / (\sqrt{s} + \epsilon)`
``rmsprop``     :math:`v \leftarrow \alpha v + (1-\alpha) g^2,\quad
                p \leftarrow p - \eta g / (\sqrt{v} + \epsilon)`; centered:
                :math:`\bar g \leftarrow \alpha \bar g + (1-\alpha) g` and
                :math:`\sqrt{v - \bar g^2}` in the denominator
``adam``        :math:`m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
                v \leftarrow \beta_2 v + (1-\beta_2) g^2,`
                :math:`p \leftarrow p - \frac{\eta}{1-\beta_1^t}\,
                \frac{m}{\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon}`
                (L2 weight decay :math:`g \leftarrow g + \lambda p`; AMSGrad uses
                :math:`\hat v = \max(\hat v, v)` in place of :math:`v`)
``adamw``       Adam with decoupled weight decay: first :math:`p \leftarrow p(1 - \eta\lambda)`
``nadam``       Adam with Nesterov momentum (Dozat 2016), momentum schedule
                :math:`\mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi})`, :math:`\Pi_t = \prod_{i\le t}
                \mu_i`, :math:`d = \sqrt{v / (1-\beta_2^t)} + \epsilon`:
                :math:`p \leftarrow p - \eta\frac{1-\mu_t}{1-\Pi_t}\frac g d
                - \eta\frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\frac m d`
``radam``       rectified Adam (Liu et al. 2020): :math:`\rho_\infty = 2/(1-\beta_2) - 1`,
                :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`; if :math:`\rho_t > 5`,
                :math:`p \leftarrow p - \eta\,\hat m\, r_t \sqrt{1-\beta_2^t}/(\sqrt v + \epsilon)`
                with :math:`r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}
                {(\rho_\infty-4)(\rho_\infty-2)\rho_t}}`, else :math:`p \leftarrow p - \eta\hat m`
                (:math:`\hat m = m / (1-\beta_1^t)`)
==============  =================================================================================

NAdam and RAdam take L2 (``weight_decay``) or decoupled (``decoupled_weight_decay``) weight
decay as ``torch.optim.NAdam`` / ``RAdam`` do.

The compiled ``*_kernel`` functions take 1-D C-contiguous arrays of one dtype and do no
validation (they are called directly by the models layer); the ``*_update`` wrappers validate
everything first and pass the hyper-parameters cast to the parameter dtype. Inside a kernel,
scalar coefficients (``1 - beta``, bias corrections) are formed once in float64 and rounded to
the array dtype, so the per-element work of a float32 update is float32 arithmetic.
(One consequence: a float32 call sees ``beta2 = float32(0.999) = 0.99900001``, so its
``1 - beta2`` is 1.3e-5 smaller, relatively, than torch's float32 Adam, which forms ``1 - 0.999``
from the Python float; float64 calls match torch to rounding.)

Parallelism: none; the loops are serial and vectorized (SIMD). ``numba.prange`` was measured on
the 2-core development machine (float32, GNU OpenMP threading layer): in isolation it is slower
below ~65k elements and 1.5-2.6x faster in the median at ~270k (the 269,322 parameters of a
784-256-256-10 network), but a third of its calls stall ~8 ms waiting for a worker thread, and
interleaved with the OpenBLAS calls of a training step nearly every call does (an iteration
became ~8x slower). It did not clearly win, so it is not used.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import _checks

# The kernels use ``error_model="numpy"``: it drops Numba's division-by-zero check (a branch per
# element), so the loops vectorize; a zero denominator cannot occur anyway (every denominator is
# a square root plus ``eps > 0``).


# ---------------------------------------------------------------------------------------------
# compiled workers (no validation, no allocation)
# ---------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def sgd_kernel(params, grads, lr):
    r"""Plain gradient descent, in place: :math:`p \leftarrow p - \eta g`."""
    lr_ = params.dtype.type(lr)
    for i in range(params.shape[0]):
        params[i] -= lr_ * grads[i]


@njit(cache=True, error_model="numpy")
def momentum_kernel(params, grads, buf, lr, mu):
    r"""Heavy-ball momentum (torch SGD, dampening 0), in place:
    :math:`b \leftarrow \mu b + g`, :math:`p \leftarrow p - \eta b`.

    ``buf`` starts at zero, which reproduces torch's first step :math:`b = g`.
    """
    t = params.dtype.type
    lr_ = t(lr)
    mu_ = t(mu)
    for i in range(params.shape[0]):
        b = mu_ * buf[i] + grads[i]
        buf[i] = b
        params[i] -= lr_ * b


@njit(cache=True, error_model="numpy")
def nesterov_kernel(params, grads, buf, lr, mu):
    r"""Nesterov momentum (torch SGD ``nesterov=True``), in place:
    :math:`b \leftarrow \mu b + g`, :math:`p \leftarrow p - \eta (g + \mu b)`."""
    t = params.dtype.type
    lr_ = t(lr)
    mu_ = t(mu)
    for i in range(params.shape[0]):
        g = grads[i]
        b = mu_ * buf[i] + g
        buf[i] = b
        params[i] -= lr_ * (g + mu_ * b)


@njit(cache=True, error_model="numpy")
def adagrad_kernel(params, grads, sum_sq, lr, eps):
    r"""Adagrad, in place: :math:`s \leftarrow s + g^2`,
    :math:`p \leftarrow p - \eta g / (\sqrt{s} + \epsilon)`."""
    t = params.dtype.type
    lr_ = t(lr)
    eps_ = t(eps)
    for i in range(params.shape[0]):
        g = grads[i]
        s = sum_sq[i] + g * g
        sum_sq[i] = s
        params[i] -= lr_ * g / (math.sqrt(s) + eps_)


@njit(cache=True, error_model="numpy")
def rmsprop_kernel(params, grads, sq_avg, grad_avg, lr, alpha, eps, centered):
    r"""RMSprop, in place: :math:`v \leftarrow \alpha v + (1-\alpha) g^2`,
    :math:`p \leftarrow p - \eta g / (\sqrt{v} + \epsilon)`.

    If ``centered``, also :math:`\bar g \leftarrow \alpha \bar g + (1-\alpha) g` and the
    denominator is :math:`\sqrt{v - \bar g^2} + \epsilon` (as in torch, not clamped at zero).
    ``grad_avg`` is not touched (and may have length 0) when ``centered`` is False.
    """
    t = params.dtype.type
    lr_ = t(lr)
    a = t(alpha)
    c = t(1.0 - float(alpha))  # formed in float64, rounded once (as torch's ``1 - alpha``)
    eps_ = t(eps)
    for i in range(params.shape[0]):
        g = grads[i]
        v = a * sq_avg[i] + c * (g * g)
        sq_avg[i] = v
        if centered:
            ga = a * grad_avg[i] + c * g
            grad_avg[i] = ga
            v = v - ga * ga
        params[i] -= lr_ * g / (math.sqrt(v) + eps_)


@njit(inline="always", cache=True)
def _adam_at(i, params, grads, m, v, vmax, coef, decoupled, l2, amsgrad):
    """Adam on element ``i``; ``coef``: the step's ``step_size``, ``1 / sqrt(1 - beta2^t)``,
    ``beta1``, ``beta2``, ``1 - beta1``, ``1 - beta2``, ``eps``, ``weight_decay`` and the
    decoupled decay factor ``1 - lr weight_decay``, each in the array dtype."""
    step_size, inv_sqrt_bc2, b1, b2, c1, c2, eps, wd, decay = coef
    p = params[i]
    g = grads[i]
    if decoupled:
        p = p * decay
    elif l2:
        g = g + wd * p
    mi = b1 * m[i] + c1 * g
    vi = b2 * v[i] + c2 * (g * g)
    m[i] = mi
    v[i] = vi
    if amsgrad:
        if vmax[i] > vi:
            vi = vmax[i]
        vmax[i] = vi
    params[i] = p - step_size * mi / (math.sqrt(vi) * inv_sqrt_bc2 + eps)


@njit(cache=True, error_model="numpy")
def adam_kernel(params, grads, m, v, vmax, step, lr, beta1, beta2, eps, weight_decay,
                decoupled, amsgrad):
    r"""Adam / AdamW / AMSGrad, in place.

    With :math:`t` = ``step`` (1-based, already incremented by the caller):

    * decoupled (AdamW): :math:`p \leftarrow p (1 - \eta \lambda)`; otherwise, if
      :math:`\lambda \ne 0`, L2 decay :math:`g \leftarrow g + \lambda p`;
    * :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`,
      :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`;
    * amsgrad: :math:`\hat v \leftarrow \max(\hat v, v)` and :math:`\hat v` replaces
      :math:`v` below;
    * :math:`p \leftarrow p - \frac{\eta}{1-\beta_1^t}
      \frac{m}{\sqrt{v}/\sqrt{1-\beta_2^t} + \epsilon}`.

    The scalar coefficients (:math:`1-\beta`, bias corrections, :math:`1 - \eta\lambda`) are
    formed in float64 and rounded once to the array dtype. ``vmax`` is not touched (and may
    have length 0) when ``amsgrad`` is False.
    """
    t = params.dtype.type
    lr64 = float(lr)
    b1f = float(beta1)
    b2f = float(beta2)
    wdf = float(weight_decay)
    step_size = t(lr64 / (1.0 - b1f**step))
    inv_sqrt_bc2 = t(1.0 / math.sqrt(1.0 - b2f**step))
    b1 = t(b1f)
    b2 = t(b2f)
    c1 = t(1.0 - b1f)
    c2 = t(1.0 - b2f)
    eps_ = t(eps)
    wd = t(wdf)
    decay = t(1.0 - lr64 * wdf)
    l2 = (not decoupled) and wdf != 0.0
    coef = (step_size, inv_sqrt_bc2, b1, b2, c1, c2, eps_, wd, decay)
    # One loop per ``amsgrad`` value: the literal folds the branch, so both loops vectorize.
    if amsgrad:
        for i in range(params.shape[0]):
            _adam_at(i, params, grads, m, v, vmax, coef, decoupled, l2, True)
    else:
        for i in range(params.shape[0]):
            _adam_at(i, params, grads, m, v, vmax, coef, decoupled, l2, False)


@njit(inline="always", cache=True)
def _lerp(m, g, w, one_minus_w):
    """``m + w (g - m)`` as torch's ``lerp`` (its first-moment update in NAdam and RAdam):
    ``g - (g - m)(1 - w)`` for weights of 0.5 or more."""
    if w < 0.5:
        return m + w * (g - m)
    return g - (g - m) * one_minus_w


@njit(inline="always", cache=True)
def _torch_moment_coefficients(params, lr64, b1f, b2f, eps, wdf, decoupled):
    """The array-dtype coefficients shared by NAdam and RAdam, formed in float64 and rounded
    once: ``(b2, 1 - b1, b1 (as 1 - (1 - b1)), 1 - b2, eps, wd, 1 - lr wd, l2, decoupled)``,
    ``l2``/``decoupled`` true only for a non-zero decay."""
    t = params.dtype.type
    c1 = t(1.0 - b1f)
    return (t(b2f), c1, t(1.0) - c1, t(1.0 - b2f), t(eps), t(wdf), t(1.0 - lr64 * wdf),
            (not decoupled) and wdf != 0.0, decoupled and wdf != 0.0)


@njit(inline="always", cache=True)
def _torch_moments(p, g, mi, vi, co):
    """Weight decay and both moments of one element as torch's NAdam and RAdam update them
    (``co`` from :func:`_torch_moment_coefficients`): ``(p, g, m, v)`` after."""
    b2, c1, b1_lerp, c2, _, wd, decay, l2, decoupled = co
    if decoupled:
        p = p * decay
    elif l2:
        g = g + wd * p
    return p, g, _lerp(mi, g, c1, b1_lerp), vi * b2 + c2 * g * g


@njit(cache=True)
def nadam_mu_product(step, beta1, momentum_decay):
    r""":math:`\Pi_t = \prod_{i=1}^{t} \mu_i`, :math:`\mu_i = \beta_1(1 - \frac12 0.96^{i\psi})`,
    in float64, multiplied in the order of torch's running product (its ``mu_product`` state).

    The update needs only :math:`1 - \Pi_t` and :math:`1 - \Pi_t\mu_{t+1}`; once the product
    falls below :math:`2^{-60}` both round to exactly 1 (the spacing of floats below 1 is
    :math:`2^{-53}`), so the loop stops there: the result is what the full product gives, at a
    cost of about 60 factors for the defaults (at most ``step``)."""
    b1 = np.float64(beta1)
    psi = np.float64(momentum_decay)
    prod = 1.0
    for i in range(1, step + 1):
        prod *= b1 * (1.0 - 0.5 * 0.96 ** (np.float64(i) * psi))
        if prod < 8.673617379884035e-19:  # 2**-60
            break
    return prod


@njit(cache=True, error_model="numpy")
def nadam_kernel(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, momentum_decay,
                 decoupled):
    r"""NAdam (``torch.optim.NAdam``), in place; ``step`` is :math:`t \ge 1`.

    * weight decay as in :func:`adam_kernel` (decoupled or L2, when :math:`\lambda \ne 0`);
    * :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`,
      :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
      :math:`d = \sqrt{v / (1 - \beta_2^t)} + \epsilon`;
    * :math:`p \leftarrow p - \eta\frac{1-\mu_t}{1-\Pi_t}\frac g d`, then
      :math:`p \leftarrow p - \eta\frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\frac m d`, with
      :math:`\mu_t = \beta_1 (1 - \frac12 0.96^{t\psi})` (:math:`\psi` = ``momentum_decay``)
      and :math:`\Pi_t` from :func:`nadam_mu_product`.

    The step's coefficients are formed in float64 (as torch forms them from Python floats) and
    rounded once to the array dtype.
    """
    t = params.dtype.type
    lr64 = np.float64(lr)
    b1f = np.float64(beta1)
    b2f = np.float64(beta2)
    wdf = np.float64(weight_decay)
    psi = np.float64(momentum_decay)
    tf = np.float64(step)
    mu = b1f * (1.0 - 0.5 * 0.96 ** (tf * psi))
    mu_next = b1f * (1.0 - 0.5 * 0.96 ** ((tf + 1.0) * psi))
    prod = nadam_mu_product(step, b1f, psi)
    cg = t(-lr64 * (1.0 - mu) / (1.0 - prod))
    cm = t((-lr64 * mu_next) / (1.0 - prod * mu_next))
    bc2 = t(1.0 - b2f**tf)
    co = _torch_moment_coefficients(params, lr64, b1f, b2f, eps, wdf, decoupled)
    eps_ = co[4]
    for i in range(params.shape[0]):
        p, g, mi, vi = _torch_moments(params[i], grads[i], m[i], v[i], co)
        m[i] = mi
        v[i] = vi
        d = math.sqrt(vi / bc2) + eps_
        p = p + cg * g / d
        params[i] = p + cm * mi / d


@njit(cache=True)
def radam_scalars(step, beta1, beta2):
    r"""``(1 - beta1^t, sqrt(1 - beta2^t), r_t, adaptive)`` in float64 as ``torch.optim.RAdam``
    forms them: ``r_t`` is the rectification term and ``adaptive`` is :math:`\rho_t > 5`
    (the last three are ``0, 0, False`` while it is not: the un-adapted step)."""
    b1f = np.float64(beta1)
    b2f = np.float64(beta2)
    tf = np.float64(step)
    bc1 = 1.0 - b1f**tf
    bc2 = 1.0 - b2f**tf
    rho_inf = 2.0 / (1.0 - b2f) - 1.0
    rho_t = rho_inf - 2.0 * tf * (b2f**tf) / bc2
    if rho_t > 5.0:
        rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                         / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        return bc1, math.sqrt(bc2), rect, True
    return bc1, 0.0, 0.0, False


@njit(cache=True, error_model="numpy")
def radam_kernel(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    r"""RAdam (``torch.optim.RAdam``), in place; ``step`` is :math:`t \ge 1`.

    * weight decay as in :func:`adam_kernel`; the moments as in Adam;
    * :math:`\hat m = m / (1 - \beta_1^t)`; if :math:`\rho_t > 5` (see :func:`radam_scalars`)
      :math:`p \leftarrow p - \eta \hat m \frac{\sqrt{1-\beta_2^t}}{\sqrt v + \epsilon} r_t`,
      else :math:`p \leftarrow p - \eta \hat m` (in torch's order of operations).
    """
    t = params.dtype.type
    lr64 = np.float64(lr)
    wdf = np.float64(weight_decay)
    b1f = np.float64(beta1)
    b2f = np.float64(beta2)
    bc1f, sq_bc2f, rectf, adaptive = radam_scalars(step, b1f, b2f)
    bc1 = t(bc1f)
    sq_bc2 = t(sq_bc2f)
    rect = t(rectf)
    lr_ = t(lr64)
    co = _torch_moment_coefficients(params, lr64, b1f, b2f, eps, wdf, decoupled)
    eps_ = co[4]
    for i in range(params.shape[0]):
        p, g, mi, vi = _torch_moments(params[i], grads[i], m[i], v[i], co)
        m[i] = mi
        v[i] = vi
        if adaptive:
            params[i] = p - (mi / bc1 * lr_) * (sq_bc2 / (math.sqrt(vi) + eps_)) * rect
        else:
            params[i] = p - mi / bc1 * lr_


SGD_CODE, MOMENTUM_CODE, NESTEROV_CODE, ADAGRAD_CODE, RMSPROP_CODE, ADAM_CODE = range(6)
NADAM_CODE, RADAM_CODE = 6, 7
#: One more than the largest rule code: :func:`apply_update` rejects codes outside ``[0, N_CODES)``.
N_CODES = 8
#: Layout of the hyper-parameter vector ``hp`` read by :func:`apply_update`.
HP_LR, HP_B1, HP_B2, HP_EPS, HP_WD, HP_FLAG, HP_DECOUPLED, HP_MOMENTUM_DECAY = range(8)
HP_SIZE = 8


@njit(cache=True)
def apply_update(code, params, grads, s1, s2, s3, t, hp):
    """Apply update rule ``code`` in place; ``t`` is the 1-based update count.

    ``hp`` holds ``lr, beta1 | momentum | alpha, beta2, eps, weight_decay, flag, decoupled,
    momentum_decay`` where ``flag`` is ``centered`` (RMSProp) or ``amsgrad`` (Adam) and
    ``momentum_decay`` is NAdam's; ``s1..s3`` are the slots. An unknown ``code`` raises
    ``ValueError`` (checked once per call, outside the loops).
    """
    lr = hp[HP_LR]
    if code == SGD_CODE:
        sgd_kernel(params, grads, lr)
    elif code == MOMENTUM_CODE:
        momentum_kernel(params, grads, s1, lr, hp[HP_B1])
    elif code == NESTEROV_CODE:
        nesterov_kernel(params, grads, s1, lr, hp[HP_B1])
    elif code == ADAGRAD_CODE:
        adagrad_kernel(params, grads, s1, lr, hp[HP_EPS])
    elif code == RMSPROP_CODE:
        rmsprop_kernel(params, grads, s1, s2, lr, hp[HP_B1], hp[HP_EPS], hp[HP_FLAG] != 0)
    elif code == ADAM_CODE:
        adam_kernel(params, grads, s1, s2, s3, t, lr, hp[HP_B1], hp[HP_B2], hp[HP_EPS],
                    hp[HP_WD], hp[HP_DECOUPLED] != 0, hp[HP_FLAG] != 0)
    elif code == NADAM_CODE:
        nadam_kernel(params, grads, s1, s2, t, lr, hp[HP_B1], hp[HP_B2], hp[HP_EPS], hp[HP_WD],
                     hp[HP_MOMENTUM_DECAY], hp[HP_DECOUPLED] != 0)
    elif code == RADAM_CODE:
        radam_kernel(params, grads, s1, s2, t, lr, hp[HP_B1], hp[HP_B2], hp[HP_EPS], hp[HP_WD],
                     hp[HP_DECOUPLED] != 0)
    else:
        raise ValueError("apply_update: unknown optimizer rule code")


# ---------------------------------------------------------------------------------------------
# validating wrappers
# ---------------------------------------------------------------------------------------------


def _params_grads(params, grads):
    _checks.float_array("params", params, ndim=1, writable=True)
    _checks.float_array("grads", grads, ndim=1, dtype=params.dtype, finite=True)
    _checks.shape("grads", grads, params.shape)
    return params.dtype.type


def _state(name, a, params, others):
    """Validate state buffer ``a`` (1-D, params' dtype and length, writable, no overlap with
    ``params`` or the earlier arrays in ``others``, a sequence of (name, array))."""
    _checks.float_array(name, a, ndim=1, dtype=params.dtype, writable=True)
    _checks.shape(name, a, params.shape)
    for other_name, other in others:
        if other is not None and a.size and np.may_share_memory(a, other):
            raise ValueError(f"{name} must not share memory with {other_name}")


#: Largest finite value of each array dtype (a hyper-parameter above it overflows to inf).
_FMAX = {t: float(np.finfo(t).max) for t in (np.float32, np.float64)}


def _cast(t, name, value, positive=False, below_one=False):
    """``value`` (already checked finite and >= 0) in the array dtype ``t``, checked not to have
    been pushed out of its range by the rounding (e.g. eps=1e-50 is 0 and 0.99999999 is 1 in
    float32)."""
    if value > _FMAX[t]:
        raise ValueError(f"{name}={value} overflows {np.dtype(t).name}")
    c = t(value)
    if positive and c == 0:
        raise ValueError(f"{name}={value} underflows to 0 in {np.dtype(t).name}")
    if below_one and c >= 1:
        raise ValueError(f"{name}={value} rounds to 1 in {np.dtype(t).name}; it must be < 1")
    return c


def _lr(t, lr):
    return _cast(t, "lr", _checks.real("lr", lr, low=0.0, low_open=True), positive=True)


def _unit(t, name, value):
    """A decay rate in [0, 1)."""
    v = _checks.real(name, value, low=0.0, high=1.0, high_open=True)
    return _cast(t, name, v, below_one=True)


def _flag(name, value):
    """A boolean option: ``bool`` or NumPy ``bool_`` (also the integers 0 and 1); anything else
    (an array, a string, ...) raises ``TypeError`` naming the option."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def _eps(t, eps):
    return _cast(t, "eps", _checks.real("eps", eps, low=0.0, low_open=True), positive=True)


def sgd_update(params, grads, lr):
    r"""One step of plain gradient descent, in place.

    .. math:: p \leftarrow p - \eta g

    Parameters
    ----------
    params : ndarray of shape (n,)
        Flat parameter vector, float32 or float64, C-contiguous, writable; updated in place.
    grads : ndarray of shape (n,)
        Gradient of the loss with respect to ``params``, same dtype, finite.
    lr : float
        Learning rate :math:`\eta > 0` (torch requires it explicitly; no default).

    Returns
    -------
    params : ndarray of shape (n,)
        The same array, updated.
    """
    t = _params_grads(params, grads)
    sgd_kernel(params, grads, _lr(t, lr))
    return params


def momentum_update(params, grads, buf, lr, momentum=0.9):
    r"""One step of heavy-ball momentum (``torch.optim.SGD(momentum=mu)``), in place.

    .. math:: b \leftarrow \mu b + g, \qquad p \leftarrow p - \eta b

    Parameters
    ----------
    params, grads : ndarray of shape (n,)
        As in :func:`sgd_update`.
    buf : ndarray of shape (n,)
        Momentum buffer :math:`b`, same dtype, zero before the first step; updated in place.
    lr : float
        Learning rate :math:`\eta > 0`.
    momentum : float, default=0.9
        :math:`\mu \in [0, 1)`.

    Returns
    -------
    params : ndarray of shape (n,)
    """
    t = _params_grads(params, grads)
    _state("buf", buf, params, (("params", params), ("grads", grads)))
    momentum_kernel(params, grads, buf, _lr(t, lr), _unit(t, "momentum", momentum))
    return params


def nesterov_update(params, grads, buf, lr, momentum=0.9):
    r"""One step of Nesterov momentum (``torch.optim.SGD(momentum=mu, nesterov=True)``).

    .. math:: b \leftarrow \mu b + g, \qquad p \leftarrow p - \eta (g + \mu b)

    Parameters are as in :func:`momentum_update`.

    Returns
    -------
    params : ndarray of shape (n,)
    """
    t = _params_grads(params, grads)
    _state("buf", buf, params, (("params", params), ("grads", grads)))
    nesterov_kernel(params, grads, buf, _lr(t, lr), _unit(t, "momentum", momentum))
    return params


def adagrad_update(params, grads, sum_sq, lr=1e-2, eps=1e-10):
    r"""One step of Adagrad (``torch.optim.Adagrad``, no lr decay), in place.

    .. math:: s \leftarrow s + g^2, \qquad p \leftarrow p - \eta\, g / (\sqrt{s} + \epsilon)

    Parameters
    ----------
    params, grads : ndarray of shape (n,)
        As in :func:`sgd_update`.
    sum_sq : ndarray of shape (n,)
        Running sum of squared gradients :math:`s`, zero before the first step.
    lr : float, default=1e-2
    eps : float, default=1e-10
        :math:`\epsilon > 0`.

    Returns
    -------
    params : ndarray of shape (n,)
    """
    t = _params_grads(params, grads)
    _state("sum_sq", sum_sq, params, (("params", params), ("grads", grads)))
    adagrad_kernel(params, grads, sum_sq, _lr(t, lr), _eps(t, eps))
    return params


def rmsprop_update(params, grads, sq_avg, grad_avg=None, lr=1e-2, alpha=0.99, eps=1e-8,
                   centered=False):
    r"""One step of RMSprop (``torch.optim.RMSprop``, no momentum), in place.

    .. math::

        v \leftarrow \alpha v + (1 - \alpha) g^2, \qquad
        p \leftarrow p - \eta\, g / (\sqrt{v} + \epsilon)

    Centered: :math:`\bar g \leftarrow \alpha \bar g + (1 - \alpha) g` and the denominator is
    :math:`\sqrt{v - \bar g^2} + \epsilon`.

    Parameters
    ----------
    params, grads : ndarray of shape (n,)
        As in :func:`sgd_update`.
    sq_avg : ndarray of shape (n,)
        Running average of squared gradients :math:`v`, zero before the first step.
    grad_avg : ndarray of shape (n,), optional
        Running average of gradients :math:`\bar g` (zero before the first step); required
        when ``centered``, ignored otherwise.
    lr : float, default=1e-2
    alpha : float, default=0.99
        Smoothing constant :math:`\alpha \in [0, 1)`.
    eps : float, default=1e-8
    centered : bool, default=False

    Returns
    -------
    params : ndarray of shape (n,)
    """
    t = _params_grads(params, grads)
    seen = [("params", params), ("grads", grads)]
    _state("sq_avg", sq_avg, params, seen)
    centered = _flag("centered", centered)
    if centered and grad_avg is None:
        raise ValueError("grad_avg is required when centered=True")
    if grad_avg is not None:
        _state("grad_avg", grad_avg, params, [*seen, ("sq_avg", sq_avg)])
    else:
        grad_avg = np.empty(0, dtype=params.dtype)
    rmsprop_kernel(params, grads, sq_avg, grad_avg, _lr(t, lr), _unit(t, "alpha", alpha),
                   _eps(t, eps), centered)
    return params


def _adam(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, amsgrad, vmax,
          decoupled):
    t = _params_grads(params, grads)
    seen = [("params", params), ("grads", grads)]
    _state("m", m, params, seen)
    seen.append(("m", m))
    _state("v", v, params, seen)
    seen.append(("v", v))
    amsgrad = _flag("amsgrad", amsgrad)
    if amsgrad and vmax is None:
        raise ValueError("vmax is required when amsgrad=True")
    if vmax is not None:
        _state("vmax", vmax, params, seen)
    else:
        vmax = np.empty(0, dtype=params.dtype)
    step = _checks.integer("step", step, low=1, high=2**63 - 1)
    weight_decay = _cast(t, "weight_decay", _checks.real("weight_decay", weight_decay, low=0.0))
    adam_kernel(params, grads, m, v, vmax, step, _lr(t, lr), _unit(t, "beta1", beta1),
                _unit(t, "beta2", beta2), _eps(t, eps), weight_decay, decoupled, amsgrad)
    return params


def adam_update(params, grads, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, amsgrad=False, vmax=None):
    r"""One step of Adam (``torch.optim.Adam``), in place.

    .. math::

        g &\leftarrow g + \lambda p \quad (\text{if } \lambda \ne 0)\\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2\\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t}\,
            \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    With ``amsgrad``, :math:`\hat v \leftarrow \max(\hat v, v)` replaces :math:`v` in the
    denominator.

    Parameters
    ----------
    params, grads : ndarray of shape (n,)
        As in :func:`sgd_update`.
    m, v : ndarray of shape (n,)
        First and second moment estimates, zero before the first step; updated in place.
    step : int
        The step number :math:`t \ge 1` of this update (1 on the first call; the caller
        increments it).
    lr : float, default=1e-3
    beta1, beta2 : float, default=0.9, 0.999
        Decay rates in [0, 1).
    eps : float, default=1e-8
    weight_decay : float, default=0.0
        L2 penalty :math:`\lambda \ge 0`, added to the gradient.
    amsgrad : bool, default=False
    vmax : ndarray of shape (n,), optional
        Running maximum :math:`\hat v` of ``v``, zero before the first step; required when
        ``amsgrad``.

    Returns
    -------
    params : ndarray of shape (n,)
    """
    return _adam(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, amsgrad, vmax,
                 False)


def adamw_update(params, grads, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=1e-2, amsgrad=False, vmax=None):
    r"""One step of AdamW (``torch.optim.AdamW``), in place.

    .. math::

        p &\leftarrow p\,(1 - \eta \lambda)\\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2\\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t}\,
            \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    Parameters are as in :func:`adam_update`, except that ``weight_decay`` (default 1e-2) is
    decoupled from the gradient.

    Returns
    -------
    params : ndarray of shape (n,)
    """
    return _adam(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, amsgrad, vmax,
                 True)


def _moments(params, grads, m, v, step, weight_decay):
    """Validate the arguments NAdam and RAdam share; returns ``(dtype type, step, weight
    decay in the array dtype)``."""
    t = _params_grads(params, grads)
    seen = [("params", params), ("grads", grads)]
    _state("m", m, params, seen)
    _state("v", v, params, [*seen, ("m", m)])
    step = _checks.integer("step", step, low=1, high=2**63 - 1)
    weight_decay = _cast(t, "weight_decay", _checks.real("weight_decay", weight_decay, low=0.0))
    return t, step, weight_decay


def nadam_update(params, grads, m, v, step, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.0, momentum_decay=4e-3, decoupled_weight_decay=False):
    r"""One step of NAdam (``torch.optim.NAdam``), in place.

    .. math::

        \mu_t &= \beta_1 (1 - \tfrac12 0.96^{t \psi}), \qquad \Pi_t = \prod_{i \le t} \mu_i\\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \qquad
        d = \sqrt{v / (1 - \beta_2^t)} + \epsilon\\
        p &\leftarrow p - \eta \frac{1 - \mu_t}{1 - \Pi_t} \frac g d
            - \eta \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} \frac m d

    Parameters
    ----------
    params, grads : ndarray of shape (n,)
        As in :func:`sgd_update`.
    m, v : ndarray of shape (n,)
        First and second moment estimates, zero before the first step; updated in place.
    step : int
        The step number :math:`t \ge 1` of this update (the caller increments it); the
        momentum product :math:`\Pi_t` is recomputed from it (:func:`nadam_mu_product`).
    lr : float, default=2e-3
    beta1, beta2 : float, default=0.9, 0.999
        Decay rates in [0, 1).
    eps : float, default=1e-8
    weight_decay : float, default=0.0
        :math:`\lambda \ge 0`: L2 term :math:`g \leftarrow g + \lambda p`, or with
        ``decoupled_weight_decay`` :math:`p \leftarrow p (1 - \eta \lambda)` first.
    momentum_decay : float, default=4e-3
        :math:`\psi \ge 0`.
    decoupled_weight_decay : bool, default=False

    Returns
    -------
    params : ndarray of shape (n,)
    """
    t, step, weight_decay = _moments(params, grads, m, v, step, weight_decay)
    psi = _cast(t, "momentum_decay", _checks.real("momentum_decay", momentum_decay, low=0.0))
    nadam_kernel(params, grads, m, v, step, _lr(t, lr), _unit(t, "beta1", beta1),
                 _unit(t, "beta2", beta2), _eps(t, eps), weight_decay, psi,
                 _flag("decoupled_weight_decay", decoupled_weight_decay))
    return params


def radam_update(params, grads, m, v, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.0, decoupled_weight_decay=False):
    r"""One step of RAdam (``torch.optim.RAdam``), in place.

    .. math::

        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \qquad \hat m = m / (1 - \beta_1^t)\\
        \rho_\infty &= \frac{2}{1 - \beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t}\\
        p &\leftarrow p - \eta \hat m\, r_t \frac{\sqrt{1 - \beta_2^t}}{\sqrt v + \epsilon}
            \ \text{if}\ \rho_t > 5, \quad\text{else}\quad p \leftarrow p - \eta \hat m

    with :math:`r_t = \sqrt{(\rho_t - 4)(\rho_t - 2)\rho_\infty /
    ((\rho_\infty - 4)(\rho_\infty - 2)\rho_t)}`.

    Parameters
    ----------
    params, grads, m, v, step, lr, beta1, beta2, eps
        As in :func:`adam_update`.
    weight_decay : float, default=0.0
        As in :func:`nadam_update`.
    decoupled_weight_decay : bool, default=False

    Returns
    -------
    params : ndarray of shape (n,)
    """
    t, step, weight_decay = _moments(params, grads, m, v, step, weight_decay)
    radam_kernel(params, grads, m, v, step, _lr(t, lr), _unit(t, "beta1", beta1),
                 _unit(t, "beta2", beta2), _eps(t, eps), weight_decay,
                 _flag("decoupled_weight_decay", decoupled_weight_decay))
    return params


#: Public update functions by name.
OPTIMIZERS = {
    "sgd": sgd_update,
    "momentum": momentum_update,
    "nesterov": nesterov_update,
    "adagrad": adagrad_update,
    "rmsprop": rmsprop_update,
    "adam": adam_update,
    "adamw": adamw_update,
    "nadam": nadam_update,
    "radam": radam_update,
}
