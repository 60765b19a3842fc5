r"""Activation functions: value, derivative and backward pass, selectable by name.

Each scalar formula is written once as an ``@njit`` function (:func:`act_scalar`,
:func:`dact_scalar`, made of :func:`_act_common` and :func:`_act_rare`, :func:`_dact_common`
and :func:`_dact_rare`, the common ones made of small functions such as ``_relu`` and
``_drelu``, or of :func:`~dlbasics.kernels.vecmath.tanh` and :func:`sigmoid_vec`) and inlined
into the CPU array kernels here (their loop for one common activation inlines only that
activation's formula), the fused dense kernels and the GPU twins in
``dlbasics.kernels.gpu_activations``.

=============  ===================================================  =============================
name           :math:`f(z)`                                         :math:`f'(z)`
=============  ===================================================  =============================
identity       :math:`z`                                            :math:`1`
step           :math:`1` if :math:`z > 0` else :math:`0`           :math:`0` (a.e.)
               (the threshold neuron: fires when the weighted sum exceeds the threshold)
sign           :math:`+1, 0, -1` for :math:`z >0, =0, <0`           :math:`0` (a.e.)
sigmoid        :math:`1 / (1 + e^{-z})`                             :math:`f(1 - f)`
tanh           :math:`\tanh z`                                      :math:`1 - f^2`
relu           :math:`\max(z, 0)`                                   :math:`1` if :math:`z>0` else 0
leaky_relu     :math:`z` if :math:`z > 0` else :math:`s z`          :math:`1` or :math:`s`
softplus       :math:`\log(1 + e^{z})`                              :math:`\sigma(z)`
softmax        :math:`e^{z_j - m} / \sum_k e^{z_k - m}`, row-wise,  Jacobian
               :math:`m = \max_k z_k`                               :math:`\mathrm{diag}(a) - a a^T`
gelu           :math:`z \Phi(z)`,                                   :math:`\Phi(z) + z \varphi(z)`
               :math:`\Phi(z) = (1 + \mathrm{erf}(z/\sqrt 2)) / 2`
gelu_tanh      :math:`\frac z 2 (1 + \tanh u)`,                     :math:`\frac 1 2 (1 + \tanh u)
               :math:`u = \sqrt{2/\pi}\,(z + 0.044715 z^3)`         + \frac z 2 (1 - \tanh^2 u)
                                                                    \sqrt{2/\pi}(1 + 3 \cdot
                                                                    0.044715 z^2)`
=============  ===================================================  =============================

GELU (Hendrycks and Gimpel 2016) follows ``torch.nn.functional.gelu`` with ``approximate='none'``
(``gelu``) and ``'tanh'`` (``gelu_tanh``), value and derivative written as PyTorch's CPU kernels
write them. Its derivative needs :math:`z` (the others' can be read from :math:`a = f(z)`, the
lecture's convention): the backward pass gets both.

All forms are overflow-free for :math:`|z|` up to the float range: the sigmoid uses the
branch-stable form, softplus uses :math:`\max(z, 0) + \log(1 + e^{-|z|})` and softmax is
max-shifted.

In float32, ``tanh`` and the sigmoid activation come from :mod:`dlbasics.kernels.vecmath`:
plain arithmetic that vectorises, evaluated in float64 and correctly rounded to float32 but for
rare near-ties (no libm call per element). In float64 they are libm's, and every float64 result
is what the plain formulas above give with libm. Softplus (value and derivative) and softmax
keep libm's ``exp``/``log1p``, and so do the losses (:func:`sigmoid_scalar`): softplus runs in
the loops for the rarer activations of :func:`act_flat`, :func:`dact_mul_inplace` and
:func:`dact_mul_flat`, which do not vectorise, and
softmax and the losses take one value at a time into a serial sum; in scalar code libm is
faster (``dlbasics.kernels.vecmath``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import _checks
from .config import LEAKY_SLOPE
from .vecmath import sigmoid_f64_eval, tanh
from .views import row

IDENTITY, STEP, SIGN, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTPLUS, SOFTMAX = range(9)
GELU, GELU_TANH = 9, 10

#: Activation codes by name (the compiled kernels take the integer code).
ACTIVATIONS = {
    "identity": IDENTITY,
    "step": STEP,
    "sign": SIGN,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "softplus": SOFTPLUS,
    "softmax": SOFTMAX,
    "gelu": GELU,
    "gelu_tanh": GELU_TANH,
}
#: One more than the largest code: the compiled dispatchers reject codes outside ``[0, N_CODES)``.
N_CODES = max(ACTIVATIONS.values()) + 1
#: Names of the activations applied elementwise (all but softmax).
ELEMENTWISE = tuple(n for n in ACTIVATIONS if n != "softmax")


@njit(inline="always", cache=True)
def sigmoid_scalar(z):
    """Numerically stable logistic function ``1 / (1 + exp(-z))`` with libm's ``exp`` (a float64
    value for float32 ``z`` too). For code that takes one value at a time, such as the losses'
    serial sums, which keep libm's functions: there the vectorisable :func:`sigmoid_vec` is
    no faster (one value's latency 45 against 43 ns, ``dlbasics.kernels.vecmath``)."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def sigmoid_vec(z):
    """The logistic function for loops that vectorise, as a float64 value (from Python: the
    float64 form of :func:`sigmoid_scalar`)."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@overload(sigmoid_vec)
def _sigmoid_vec_overload(z):
    """float64 ``z``: :func:`sigmoid_scalar`'s libm form, the same bits. float32 ``z``:
    :func:`dlbasics.kernels.vecmath.sigmoid_f64_eval` (plain arithmetic that vectorises,
    relative error at most ``1.1e-13``), not rounded: stored into a float32 array it is the
    correctly rounded sigmoid but for rare near-ties (``vecmath.sigmoid``), and a gradient
    ``s - y`` keeps the small differences that a float32 ``s`` near 1 would lose."""
    if isinstance(z, types.Float) and z.bitwidth == 32:
        return lambda z: sigmoid_f64_eval(np.float64(z))
    if isinstance(z, types.Float):
        return sigmoid_vec
    return None


# GELU constants as PyTorch forms them (M_SQRT1_2, M_2_SQRTPI * M_SQRT1_2 / 2 = 1/sqrt(2 pi),
# M_SQRT2 * M_2_SQRTPI / 2 = sqrt(2/pi)).
_SQRT1_2 = 0.7071067811865476
_INV_SQRT_2PI = 1.1283791670955126 * 0.7071067811865476 * 0.5
_SQRT_2_PI = 1.4142135623730951 * 1.1283791670955126 * 0.5
_GELU_KAPPA = 0.044715


# The GELU formulas are called, not inlined, into act_scalar/dact_scalar: inlined, their erf,
# exp and tanh made every specialisation of the generic activation loops (the backward kernel's
# above all: 3.0 -> 4.2 s of CPU time to compile, float64) compile a third slower.


@njit(cache=True)
def gelu_scalar(z):
    r""":math:`z \Phi(z) = \frac z2 (1 + \mathrm{erf}(z / \sqrt 2))`, as torch orders it."""
    return z * 0.5 * (1.0 + math.erf(z * _SQRT1_2))


@njit(cache=True)
def dgelu_scalar(z):
    r""":math:`\Phi(z) + z \varphi(z)`, :math:`\varphi(z) = e^{-z^2/2} / \sqrt{2\pi}`."""
    cdf = 0.5 * (1.0 + math.erf(z * _SQRT1_2))
    return cdf + z * (_INV_SQRT_2PI * math.exp(-0.5 * (z * z)))


@njit(cache=True)
def gelu_tanh_scalar(z):
    r""":math:`\frac z2 (1 + \tanh u)`, :math:`u = \sqrt{2/\pi}(z + 0.044715 z^3)`."""
    inner = _SQRT_2_PI * (z + _GELU_KAPPA * (z * z * z))
    return 0.5 * z * (1.0 + math.tanh(inner))


@njit(cache=True)
def dgelu_tanh_scalar(z):
    r"""Its derivative :math:`\frac12 (1 + \tanh u) + \frac z2 (1 - \tanh^2 u)\, u'(z)`,
    written as torch's backward kernel writes it."""
    z2 = z * z
    th = math.tanh(_SQRT_2_PI * (z + _GELU_KAPPA * (z2 * z)))
    left = 0.5 * z
    right = 1.0 + th
    return 0.5 * right + left * (1.0 - th * th) * (_SQRT_2_PI * (1.0 + 3.0 * _GELU_KAPPA * z2))


# Numba copies an inlined function's IR at every call site, at a cost that grows with the
# callee's branches times its variables. The array loops below (act_flat, dact_mul_inplace,
# dact_mul_flat) therefore inline one small formula each (_relu, _drelu, ...), their dispatch
# outside the loops, and one loop for the rarer activations inlines _act_rare / _dact_rare; only
# derivative_kernel and the GPU kernels inline the whole act_scalar / dact_scalar. Before, each
# of those loops inlined the five-branch _act_common / _dact_common with a constant code (or the
# whole act_scalar): inlining those loops took 2.1 s of the 13.1 s that the first training call
# of 784-256-256-10 (batch 32, empty cache) spent compiling (all IR inlining of that call: 3.6 s,
# 0.9 s since), the call 11.4 s since. Calling the rarer activations instead of inlining them
# made those loops call a function per element (float32 step and sign 2.6-3.3x slower, softplus
# and the GELUs 10-19%).


@njit(inline="always", cache=True)
def _relu(z):
    """relu: ``z`` where ``z > 0`` (and a NaN, which propagates), else 0."""
    if z > 0 or z != z:
        return z
    return 0.0


@njit(inline="always", cache=True)
def _leaky_relu(z, slope):
    """leaky relu: ``z`` where ``z > 0``, else ``slope * z``."""
    return z if z > 0 else slope * z


@njit(inline="always", cache=True)
def _act_common(code, z, slope):
    """:func:`act_scalar` of identity, tanh, relu, sigmoid and leaky relu (NaN for another
    code)."""
    if code == IDENTITY:
        return z
    if code == TANH:
        return tanh(z)  # vectorisable in float32 (dlbasics.kernels.vecmath), libm in float64
    if code == RELU:
        return _relu(z)
    if code == SIGMOID:
        return sigmoid_vec(z)  # vectorisable in float32 (dlbasics.kernels.vecmath)
    if code == LEAKY_RELU:
        return _leaky_relu(z, slope)
    return math.nan


@njit(inline="always", cache=True)
def _act_rare(code, z, slope):
    """:func:`act_scalar` of softplus, step, sign and the two GELUs (NaN for another code)."""
    if code == SOFTPLUS:
        return max(z, 0.0) + math.log1p(math.exp(-abs(z)))
    if code == STEP:
        if z > 0:
            return 1.0
        return 0.0 if z <= 0 else math.nan  # NaN propagates
    if code == SIGN:
        if z > 0:
            return 1.0
        if z < 0:
            return -1.0
        return 0.0 if z == 0 else math.nan
    if code == GELU:
        return gelu_scalar(z)
    if code == GELU_TANH:
        return gelu_tanh_scalar(z)
    return math.nan


@njit(inline="always", cache=True)
def _is_rare(code):
    """Whether ``code`` is one of :func:`_act_rare`'s activations."""
    return code == SOFTPLUS or code == STEP or code == SIGN or code == GELU or code == GELU_TANH


@njit(inline="always", cache=True)
def act_scalar(code, z, slope):
    """Value of elementwise activation ``code`` at ``z`` (softmax is not elementwise; NaN for
    a code that is no activation: the dispatchers below reject it before any loop runs)."""
    if _is_rare(code):
        return _act_rare(code, z, slope)
    return _act_common(code, z, slope)


@njit(inline="always", cache=True)
def _drelu(z):
    """relu's derivative: 1 where ``z > 0``, else 0."""
    return 1.0 if z > 0 else 0.0


@njit(inline="always", cache=True)
def _dtanh(a):
    """tanh's derivative from ``a = tanh(z)``: ``1 - a**2``."""
    return 1.0 - a * a


@njit(inline="always", cache=True)
def _dsigmoid(a):
    """The sigmoid's derivative from ``a = sigmoid(z)``: ``a (1 - a)``."""
    return a * (1.0 - a)


@njit(inline="always", cache=True)
def _dleaky_relu(z, slope):
    """leaky relu's derivative: 1 where ``z > 0``, else ``slope``."""
    return 1.0 if z > 0 else slope


@njit(inline="always", cache=True)
def _dact_common(code, z, a, slope):
    """:func:`dact_scalar` of identity, tanh, relu, sigmoid and leaky relu (NaN for another
    code)."""
    if code == IDENTITY:
        return 1.0
    if code == TANH:
        return _dtanh(a)
    if code == RELU:
        return _drelu(z)
    if code == SIGMOID:
        return _dsigmoid(a)
    if code == LEAKY_RELU:
        return _dleaky_relu(z, slope)
    return math.nan


@njit(inline="always", cache=True)
def _dact_rare(code, z, slope):
    """:func:`dact_scalar` of softplus, step, sign and the two GELUs (NaN for another code)."""
    if code == SOFTPLUS:
        return sigmoid_scalar(z)
    if code == STEP or code == SIGN:
        return 0.0
    if code == GELU:  # from z, not from a
        return dgelu_scalar(z)
    if code == GELU_TANH:
        return dgelu_tanh_scalar(z)
    return math.nan


@njit(inline="always", cache=True)
def dact_scalar(code, z, a, slope):
    """Derivative ``f'(z)`` of elementwise activation ``code``, given ``z`` and ``a = f(z)``
    (NaN for a code that is no activation)."""
    if _is_rare(code):
        return _dact_rare(code, z, slope)
    return _dact_common(code, z, a, slope)


@njit(cache=True)
def act_flat(code, z, out, slope):
    """``out = f(z)`` for 1-D ``z`` and ``out`` (elementwise activations only; may alias).

    One loop per common activation, the dispatch outside it, so that the compiler can
    vectorise the loop body; one loop for the others (:func:`_act_rare`).
    """
    n = z.shape[0]
    if code == RELU:
        for e in range(n):
            out[e] = _relu(z[e])
    elif code == TANH:
        for e in range(n):
            out[e] = tanh(z[e])
    elif code == IDENTITY:
        for e in range(n):
            out[e] = z[e]
    elif code == SIGMOID:
        for e in range(n):
            out[e] = sigmoid_vec(z[e])
    elif code == LEAKY_RELU:
        for e in range(n):
            out[e] = _leaky_relu(z[e], slope)
    elif 0 <= code < N_CODES and code != SOFTMAX:
        for e in range(n):
            out[e] = _act_rare(code, z[e], slope)
    else:
        raise ValueError("act_flat: unknown (or softmax) activation code")


# The in-place loops run over one array: with ``out`` and ``delta`` the same memory, the
# compiler's run-time overlap test picks the scalar form of dact_mul_flat's loops (3x slower).


@njit(cache=True)
def dact_mul_inplace(code, z, a, delta, slope):
    """``delta *= f'(z)`` for 1-D arrays, ``a = f(z)`` (elementwise activations only): the
    network step's form, a loop for each common activation and one for any other (what
    :func:`dact_mul_flat` runs where ``out`` is ``delta``; the step compiles this alone, not
    :func:`dact_mul_flat`'s loops into a separate output)."""
    n = z.shape[0]
    if code == RELU:
        for e in range(n):
            delta[e] = delta[e] * _drelu(z[e])
    elif code == TANH:
        for e in range(n):
            delta[e] = delta[e] * _dtanh(a[e])
    elif code == IDENTITY:
        for e in range(n):
            delta[e] = delta[e] * 1.0
    elif code == SIGMOID:
        for e in range(n):
            delta[e] = delta[e] * _dsigmoid(a[e])
    elif code == LEAKY_RELU:
        for e in range(n):
            delta[e] = delta[e] * _dleaky_relu(z[e], slope)
    elif 0 <= code < N_CODES and code != SOFTMAX:
        for e in range(n):
            delta[e] = delta[e] * _dact_rare(code, z[e], slope)
    else:
        raise ValueError("dact_mul_inplace: unknown (or softmax) activation code")


@njit(cache=True)
def dact_mul_flat(code, z, a, delta, out, slope):
    """``out = delta * f'(z)`` for 1-D arrays, ``a = f(z)`` (elementwise activations only;
    ``out`` may alias ``delta``: in place it is :func:`dact_mul_inplace`). Dispatch outside
    the loop, as in :func:`act_flat`."""
    n = z.shape[0]
    if out.ctypes.data == delta.ctypes.data and out.strides[0] == delta.strides[0]:
        dact_mul_inplace(code, z, a, delta, slope)
    elif code == RELU:
        for e in range(n):
            out[e] = delta[e] * _drelu(z[e])
    elif code == TANH:
        for e in range(n):
            out[e] = delta[e] * _dtanh(a[e])
    elif code == IDENTITY:
        for e in range(n):
            out[e] = delta[e] * 1.0
    elif code == SIGMOID:
        for e in range(n):
            out[e] = delta[e] * _dsigmoid(a[e])
    elif code == LEAKY_RELU:
        for e in range(n):
            out[e] = delta[e] * _dleaky_relu(z[e], slope)
    elif 0 <= code < N_CODES and code != SOFTMAX:
        for e in range(n):
            out[e] = delta[e] * _dact_rare(code, z[e], slope)
    else:
        raise ValueError("dact_mul_flat: unknown (or softmax) activation code")


@njit(cache=True)
def softmax_rows(z, out):
    """Row-wise max-shifted softmax of 2-D ``z`` into ``out`` (may alias ``z``)."""
    for i in range(z.shape[0]):
        softmax_vec(row(z, i), row(out, i))


@njit(inline="always", cache=True)
def softmax_vec(z, out):
    """Max-shifted softmax of the 1-D ``z`` into ``out`` (may alias ``z``), the sum in float64:
    the one softmax of the package (the row kernels here, the network step and the GPU
    kernels call it)."""
    k = z.shape[0]
    m = z[0]
    for j in range(1, k):
        if z[j] > m:
            m = z[j]
    s = 0.0
    for j in range(k):
        e = math.exp(z[j] - m)  # libm: a scalar loop (the sum is serial)
        out[j] = e
        s += e
    inv = 1.0 / s
    for j in range(k):
        out[j] *= inv


@njit(inline="always", cache=True)
def softmax_vjp(a, delta, out):
    """The softmax vector-Jacobian product of one 1-D row, ``a * (delta - sum(delta * a))``
    into ``out`` (may alias ``delta``)."""
    k = a.shape[0]
    s = 0.0
    for j in range(k):
        s += delta[j] * a[j]
    for j in range(k):
        out[j] = a[j] * (delta[j] - s)


@njit(cache=True)
def forward_kernel(code, z, out, slope):
    """``out = f(z)`` for 2-D arrays; softmax is applied row by row."""
    if code == SOFTMAX:
        softmax_rows(z, out)
        return
    for i in range(z.shape[0]):
        act_flat(code, row(z, i), row(out, i), slope)


@njit(cache=True)
def backward_kernel(code, z, a, delta, out, slope):
    """``out = dL/dz`` from ``delta = dL/da``: ``delta * f'(z)``, or the softmax
    vector-Jacobian product ``a * (delta - sum(delta * a))`` row by row. ``out`` may alias
    ``delta``."""
    n, k = z.shape
    if code == SOFTMAX:
        for i in range(n):
            softmax_vjp(row(a, i), row(delta, i), row(out, i))
        return
    for i in range(n):  # plain rows: the GPU twin compiles this function for CUDA too
        dact_mul_flat(code, z[i], a[i], delta[i], out[i], slope)


@njit(cache=True)
def derivative_kernel(code, z, out, slope):
    """Elementwise ``out = f'(z)`` (not for softmax)."""
    if not 0 <= code < N_CODES or code == SOFTMAX:
        raise ValueError("derivative_kernel: unknown (or softmax) activation code")
    n, k = z.shape
    for i in range(n):
        for j in range(k):
            zij = z[i, j]
            out[i, j] = dact_scalar(code, zij, act_scalar(code, zij, slope), slope)


def activation_code(name):
    """Integer code of activation ``name`` (see :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[_checks.choice("activation", name, ACTIVATIONS)]


def _as_2d(z):
    return z.reshape(1, -1) if z.ndim == 1 else z


def _prepare(name, z, out, slope):
    code = activation_code(name)
    _checks.float_array("z", z, ndim=(1, 2))
    slope = _checks.real("slope", slope)
    out = _checks.out_array("out", out, z.shape, z.dtype)
    return code, z, out, slope


def activate(name, z, out=None, slope=LEAKY_SLOPE):
    """Apply activation ``name`` to ``z``.

    Parameters
    ----------
    name : str
        One of :data:`ACTIVATIONS`.
    z : ndarray of shape (n_samples, n_units) or (n_units,)
        Pre-activations, float32 or float64, C-contiguous.
    out : ndarray, optional
        Buffer of the same shape and dtype to write into (may be ``z`` itself).
    slope : float, default=0.01
        Negative-side slope of ``leaky_relu``.

    Returns
    -------
    out : ndarray of the shape of ``z``
        ``f(z)``; softmax is taken over the last axis.
    """
    code, z, out, slope = _prepare(name, z, out, slope)
    if z.size:  # an empty array (or softmax over zero units) has nothing to compute
        forward_kernel(code, _as_2d(z), _as_2d(out), z.dtype.type(slope))
    return out


def derivative(name, z, out=None, slope=LEAKY_SLOPE):
    """Elementwise derivative ``f'(z)`` of activation ``name``.

    Softmax has a full Jacobian per row; use :func:`activation_backward` for it.

    Parameters
    ----------
    name : str
        One of :data:`ELEMENTWISE`.
    z : ndarray of shape (n_samples, n_units) or (n_units,)
    out : ndarray, optional
    slope : float, default=0.01

    Returns
    -------
    out : ndarray of the shape of ``z``
    """
    if activation_code(name) == SOFTMAX:
        raise ValueError(
            "name='softmax' has no elementwise derivative; use activation_backward"
        )
    code, z, out, slope = _prepare(name, z, out, slope)
    if z.size:
        derivative_kernel(code, _as_2d(z), _as_2d(out), z.dtype.type(slope))
    return out


def activation_backward(name, z, a, delta, out=None, slope=LEAKY_SLOPE):
    """Back-propagate ``delta = dL/da`` through the activation: return ``dL/dz``.

    Parameters
    ----------
    name : str
        One of :data:`ACTIVATIONS`.
    z : ndarray of shape (n_samples, n_units)
        Pre-activations of the forward pass.
    a : ndarray of shape (n_samples, n_units)
        Activations ``f(z)`` of the forward pass.
    delta : ndarray of shape (n_samples, n_units)
        Gradient of the loss with respect to ``a``.
    out : ndarray, optional
        Output buffer (may be ``delta``).
    slope : float, default=0.01

    Returns
    -------
    out : ndarray of shape (n_samples, n_units)
        ``delta * f'(z)`` elementwise, or ``a * (delta - sum(delta * a))`` row-wise for softmax.
    """
    code, z, out, slope = _prepare(name, z, out, slope)
    for arg, v in (("a", a), ("delta", delta)):
        _checks.float_array(arg, v, dtype=z.dtype)
        _checks.shape(arg, v, z.shape)
    if not delta.flags.writeable:
        # the compiled loop writes through ``delta`` when it is ``out`` (in place), so Numba
        # cannot type it for a read-only array; a read-only ``delta`` is never ``out``
        delta = delta.copy()
    if z.size:
        backward_kernel(
            code, _as_2d(z), _as_2d(a), _as_2d(delta), _as_2d(out), z.dtype.type(slope)
        )
    return out
