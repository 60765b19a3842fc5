r"""Elementary functions that the compiler can vectorise.

LLVM vectorises a loop only if every call in its body has a vector form. This Numba build has
no SVML (``numba -s``: "SVML Operational: False"), so ``math.tanh`` stays a scalar libm call,
about 25 ns per float32 element on the benchmark machine. That was the largest single cost of
a tanh network such as 2-16-16-1: 32 calls per sample in the forward pass alone.

:func:`tanh` is written in plain arithmetic (multiplies, adds, one division, selects) so that
a loop over it vectorises. In float32 it evaluates in float64 and rounds once at the end:

- For :math:`|x| < 0.05`, the odd Taylor series
  :math:`x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835`. The first omitted term is below
  :math:`2 \cdot 10^{-14}` relative.
- Otherwise :math:`\tanh|x| = (1 - e)/(1 + e)` with :math:`e = \exp(-2|x|)`, :math:`|x|`
  clamped to 10 (beyond about 9.01 the float32 result is exactly 1). The division is done
  by Newton's iteration (a divide would bring Numba's zero-divisor test, which stops
  vectorisation). The exponential is
  :math:`e^{y} = (e^{y/32})^{32}`. For :math:`y \in [-20, 0]`,
  :math:`u = y/32 + 5/16 \in [-5/16, 5/16]` and :math:`e^{y/32} = e^{-5/16} e^{u}`. Here
  :math:`e^u` is its degree-11 Taylor polynomial (truncation below
  :math:`2 \cdot 10^{-15}`), then squared five times. This needs no bit manipulation of the
  exponent, so it runs the same on every Numba target, the CUDA simulator included.

Multiplies and adds may be fused (:data:`FMA`). The float64 error before the final rounding
is below about :math:`10^{-12}` relative. The
float32 result is therefore the correctly rounded :math:`\tanh x`, except where the exact
value lies within that margin of a rounding boundary. ``tests/test_vecmath.py`` checks it
against ``math.tanh`` rounded to float32.

Float64 arguments go to ``math.tanh`` (libm), whose accuracy no polynomial here would match.
Both cases are reached through the one name :func:`tanh`, resolved by argument type at
compile time (``numba.extending.overload``).

:func:`exp`, :func:`log1p` and :func:`sigmoid` are built the same way: float64 inside, one
rounding to float32, no exponent bits, libm for float64 arguments.

- :func:`exp`: the argument clamped to ``[-104, 89]`` (outside, the float32 result is 0 or
  inf anyway); :math:`e^y = (e^{c} e^{u})^{256}` with :math:`u = y/256 - c \in [-0.377, 0.377]`,
  :math:`c = -15/512`, :math:`e^u` by its degree-13 Taylor polynomial (Estrin's scheme),
  then eight squarings. Relative error before the rounding: at most
  :math:`1.4 \cdot 10^{-13}` (measured on 400k points).
- :func:`sigmoid`: :math:`e = \exp(-|x|)` as above, then :math:`1/(1 + e)` for
  :math:`x \ge 0` and :math:`e/(1 + e)` below; at most :math:`1.1 \cdot 10^{-13}`. Its divisor
  lies in ``[1, 2]``, so the function is compiled with ``error_model="numpy"``: a plain divide
  without Numba's zero-divisor test, which vectorises. (The sigmoid activation uses
  ``sigmoid_f64_eval`` for float32 through ``activations.sigmoid_vec``.)
- :func:`log1p`: :math:`1 + x` scaled by powers of two, chosen by comparisons and selects,
  into :math:`[\sqrt{1/2}, \sqrt 2]`, then :math:`k \ln 2 + 2\,\mathrm{atanh}\, s` by its
  series; at most :math:`2.5 \cdot 10^{-16}`. As one function it exceeds LLVM's inlining
  threshold, and a call left in a loop keeps the loop scalar: it is four small functions, and
  its float32 overload (which holds no arithmetic) is inlined by Numba, so LLVM inlines each.

Error against libm: the float32 result against libm's float64 function of the same argument
rounded once to float32, over every float32 argument of the range (outside it the result is a
constant in both), by ``scripts/vecmath_ulps.py --exhaustive``; beside it the float32 function
that compiled code called before (``expf``, ``log1pf``, ``tanhf``; for the sigmoid
``1 / (1 + expf(-x))`` in float64, rounded), measured the same way (glibc 2.x on x86-64):

========  ===============  ==============  ==========================  ==========================
function  range            arguments       this module: not correctly  before: not correctly
                                           rounded (fraction), max     rounded (fraction), max
========  ===============  ==============  ==========================  ==========================
exp       [-104, 89]       2,239,889,410   159 (7.1e-8), 1 ulp         170,648 (7.6e-5), 1 ulp
log1p     (-1, 3.4e38]     3,204,448,256   1 (3.1e-10), 1 ulp          11,534,102 (3.6e-3), 1 ulp
sigmoid   [-104, 18]       2,220,883,970   535 (2.4e-7), 1 ulp         73,263,490 (3.3e-2), 1 ulp
tanh      [-9.1, 9.1]      2,183,344,950   82 (3.8e-8), 1 ulp          118,674,314 (5.4e-2), 2 ulps
tanh_fast [-9.1, 9.1]      2,183,344,950   23,816,082 (1.1e-2), 1 ulp  (``tanh``) 82 (3.8e-8), 1 ulp
========  ===============  ==============  ==========================  ==========================

:func:`tanh_fast` trades correct rounding for speed: :math:`x P(x^2) / Q(x^2)` with ``P`` of
degree 6 and ``Q`` of degree 3, fitted for the least largest relative error on ``[0, 9.25]``
(``scripts/fit_tanh.py``: Lawson's reweighted least squares, 8.9e-9), evaluated in float64
(nine multiply-adds and one divide; ``Q >= 1``) and rounded once, so it is within one ulp
everywhere, and not correctly rounded for 1.1% of the float32 arguments in ``[-9.1, 9.1]``
(exhaustive). That fraction is low because most float32 values are tiny, where ``tanh_fast``
returns ``x``, the correctly rounded value; of the arguments with ``|x|`` in ``[0.01, 9.1]``
8.9% are one ulp off. In a loop that vectorises
it costs 0.59 ns per float32 value against 1.60 for :func:`tanh` (65,536 values, one core,
same sitting). The lane layout of population training (``dlbasics.models._lanes``), which
agrees with training each network alone only to rounding anyway, uses it; everything else keeps
:func:`tanh`.

Speed in float32, ns per value, on one core of the 2-core AMD EPYC (AVX-512) machine, medians
of alternating runs in one process, under load from other sessions (``libm``: the float32 call
compiled code made before, for the sigmoid ``1 / (1 + expf(-x))``):

========  ===================  =======================  =======================
function  loop that            one value at a time:     one value at a time:
          vectorises           latency (dependent)      throughput (serial sum)
========  ===================  =======================  =======================
exp       0.91 (libm 2.36)     19 (libm 10)             4.9 (libm 3.3)
log1p     2.8 (libm 11.0)      100 (libm 55)            62 (libm 12)
sigmoid   1.15 (libm 10.2)     45 (libm 43)             6.4 (libm 7.5)
========  ===================  =======================  =======================

So they pay in loops that vectorise and not where values come one at a time (a serial float64
sum, a batch of one): there ``exp`` has the longer dependent chain (eight squarings) and
``log1p`` runs all of its 14 scaling steps, which a scalar loop cannot overlap. The package
uses them where loops vectorise (``tanh`` and the sigmoid activation; in the lane layout of
population training, ``tanh_fast`` and the binary cross-entropy's ``exp`` and ``log1p``);
softmax, softplus and the losses of the shared network step keep libm
(``kernels/activations.py``, ``kernels/losses.py``).

:func:`bce_terms` gives the binary cross-entropy's two transcendental terms from a logit,
``log1p(exp(-|x|))`` and the sigmoid, with the bits of the three calls above but one
exponential (the sigmoid's ``exp(-|x|)`` before its rounding to float32 is the ``exp``'s) and a
``log1p`` that skips the scaling steps no argument in ``[0, 1]`` takes (three of fourteen left):
the lane layout's loss loop (both terms, the loss sum and the gradient) took 4.1 against 7.2 ns
a value with the three calls (4,096 values, one core, same sitting,
``scripts/bce_terms_bits.py --time``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

#: Below this :math:`|x|` the Taylor series is used.
SERIES_MAX = 0.05
#: :math:`|x|` is clamped to this before the exponential (float32 ``tanh`` is 1 beyond 9.01).
CLAMP = 10.0
_E_M5_16 = math.exp(-5.0 / 16.0)
#: The only fast-math license taken: ``a * b + c`` may become one fused multiply-add (rounded
#: once instead of twice, so at least as accurate; fixed at compile time, so deterministic).
#: Without it the float64 evaluation runs as separate multiplies and adds: 3.6 ns against
#: 1.7-2.4 ns per float32 value (65536 values, same sitting), with the same float32 results
#: (0 differences in 65536, and 0 from libm's rounded ``tanh`` in 400k).
FMA = {"contract"}


@njit(cache=True, fastmath=FMA)
def _exp_neg20(y):
    """``exp(y)`` for float64 ``y`` in ``[-20, 0]``: ``(e^{-5/16} e^u)^{32}``, ``u = y/32 + 5/16``.
    """
    u = y * 0.03125 + 0.3125
    p = 1.0 / 39916800.0
    p = p * u + 1.0 / 3628800.0
    p = p * u + 1.0 / 362880.0
    p = p * u + 1.0 / 40320.0
    p = p * u + 1.0 / 5040.0
    p = p * u + 1.0 / 720.0
    p = p * u + 1.0 / 120.0
    p = p * u + 1.0 / 24.0
    p = p * u + 1.0 / 6.0
    p = p * u + 0.5
    p = p * u + 1.0
    p = p * u + 1.0
    p *= _E_M5_16
    p *= p
    p *= p
    p *= p
    p *= p
    p *= p
    return p


@njit(cache=True, fastmath=FMA)
def _recip_1_2(d):
    """``1 / d`` for ``d`` in ``[1, 2]`` without a division instruction.

    Numba's ``/`` tests for a zero divisor (its Python error model) and that branch stops
    vectorisation. Newton's iteration ``r <- r (2 - h r)`` for ``h = d / 2`` in ``[1/2, 1]``
    from the linear start ``48/17 - 32/17 h`` (error at most 1/17) squares the error each
    step: 1/17, 3.5e-3, 1.2e-5, 1.5e-10, 2e-20 after four.
    """
    h = 0.5 * d
    r = 48.0 / 17.0 - (32.0 / 17.0) * h
    r = r + r * (1.0 - h * r)
    r = r + r * (1.0 - h * r)
    r = r + r * (1.0 - h * r)
    r = r + r * (1.0 - h * r)
    return 0.5 * r


@njit(cache=True, fastmath=FMA)
def tanh_f64_eval(x):
    """``tanh`` of float64 ``x`` by the vectorisable formulas: about 1e-12 relative for
    ``|x| <= 10``; beyond, ``1 - 4e-9`` in magnitude (the clamp; exact once rounded to float32).

    The float32 :func:`tanh` rounds this; it is exposed for tests and for callers that want
    the float32 algorithm's pre-rounding value.
    """
    a = abs(x)
    s = a * a
    series = a + a * s * (-1.0 / 3.0 + s * (2.0 / 15.0 + s * (-17.0 / 315.0
                                                             + s * (62.0 / 2835.0))))
    e = _exp_neg20(-2.0 * min(a, CLAMP))
    big = (1.0 - e) * _recip_1_2(1.0 + e)
    r = series if a < SERIES_MAX else big
    r = math.copysign(r, x)  # odd, and tanh(-0.0) = -0.0
    return r if x == x else x  # NaN propagates (min() above would have dropped it)


def tanh(x):
    """Hyperbolic tangent for compiled code: vectorisable and correctly rounded (but for rare
    near-ties) in float32, ``math.tanh`` in float64. Called from Python it is ``math.tanh``."""
    return math.tanh(x)


@overload(tanh)
def _tanh_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def impl(x):
            return np.float32(tanh_f64_eval(np.float64(x)))

        return impl
    if isinstance(x, types.Float):
        return lambda x: math.tanh(x)
    return None


#: :func:`tanh_fast` evaluates its rational function for ``|x|`` clamped to this (the end of
#: the fitted range, where its value rounds to 1 in float32, as ``tanh`` does from about 9.011).
TANH_FAST_CLAMP = 9.25
# tanh x ~ x P(x^2) / Q(x^2) on [0, TANH_FAST_CLAMP], largest relative error 8.9e-9
# (scripts/fit_tanh.py prints these coefficients).
_TF_P0, _TF_P1, _TF_P2, _TF_P3, _TF_P4, _TF_P5, _TF_P6 = (
    0.999999991257081, 0.13073218466223377, 0.0030918950785489515, 1.1027935781130086e-05,
    -1.9711333421012503e-08, 5.0300749649366084e-11, -7.852078122364286e-14)
_TF_Q1, _TF_Q2, _TF_Q3 = 0.46406543667216593, 0.024447166656511345, 0.0002528568994883699


@njit(cache=True, fastmath=FMA, error_model="numpy")
def tanh_fast_f64_eval(x):
    """The rational function of :func:`tanh_fast` in float64: ``x P(x^2) / Q(x^2)`` for
    ``|x|`` clamped to :data:`TANH_FAST_CLAMP`, at most 1; relative error below ``8.9e-9`` up
    to the clamp (about ``1.9e-8`` beyond it, where float32 rounds to 1). ``Q >= 1``, so the
    plain divide (``error_model="numpy"``) cannot fault and the loop vectorises."""
    a = min(abs(x), TANH_FAST_CLAMP)
    s = a * a
    p = _TF_P6 * s + _TF_P5
    p = p * s + _TF_P4
    p = p * s + _TF_P3
    p = p * s + _TF_P2
    p = p * s + _TF_P1
    p = p * s + _TF_P0
    q = _TF_Q3 * s + _TF_Q2
    q = q * s + _TF_Q1
    q = q * s + 1.0
    r = math.copysign(min(a * p / q, 1.0), x)  # odd, and tanh(-0.0) = -0.0
    return r if x == x else x  # NaN propagates (min() above would have dropped it)


def tanh_fast(x):
    """Hyperbolic tangent for compiled code, faster than :func:`tanh` in float32 and
    faithfully rounded: at most one ulp from the correctly rounded value (see the module's
    error table), ``math.tanh`` in float64. Called from Python it is ``math.tanh``."""
    return math.tanh(x)


@overload(tanh_fast)
def _tanh_fast_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: np.float32(tanh_fast_f64_eval(np.float64(x)))
    if isinstance(x, types.Float):
        return lambda x: math.tanh(x)
    return None


# ---------------------------------------------------------------------------------------------
# exp, log1p and the sigmoid (float32 vectorisable, float64 libm)
# ---------------------------------------------------------------------------------------------

#: float32 ``exp`` is evaluated for arguments clamped to ``[EXP_MIN, EXP_MAX]``: ``exp(-104)``
#: rounds to 0 in float32 (below half the smallest subnormal, ``exp(-103.97)``) and
#: ``exp(89)`` to infinity (above ``exp(88.7228)``), so the clamp changes no float32 result.
EXP_MIN = -104.0
EXP_MAX = 89.0
#: ``exp(y) = (e^{c} e^{u})^{256}`` with ``u = y/256 - c``: the centre ``c`` of
#: ``[EXP_MIN, EXP_MAX] / 256`` (a short binary fraction, so ``u`` is formed exactly by an FMA).
_EXP_C = -15.0 / 512.0
_E_EXP_C = math.exp(_EXP_C)
_LN2 = math.log(2.0)
_SQRT2 = math.sqrt(2.0)
_SQRT1_2 = math.sqrt(0.5)


@njit(cache=True, fastmath=FMA)
def _exp_core(y):
    """``exp(y)`` for float64 ``y`` in ``[EXP_MIN, EXP_MAX]`` (no check):
    ``(e^c e^u)^{256}``, ``u = y/256 - c`` in ``[-0.377, 0.377]``, ``e^u`` by its degree-13
    Taylor polynomial (truncation below ``2e-17`` relative) in Estrin's scheme (pairs of terms,
    then pairs of pairs: 4 dependent steps instead of Horner's 13, which matters where one
    value's latency counts, at no cost in a vectorised loop), then eight squarings (each
    doubles the relative error: at most ``1.4e-13`` in all, see :func:`exp_f64_eval`)."""
    u = y * 0.00390625 - _EXP_C
    u2 = u * u
    u4 = u2 * u2
    u8 = u4 * u4
    a0 = 1.0 + u
    a1 = 0.5 + u * (1.0 / 6.0)
    a2 = 1.0 / 24.0 + u * (1.0 / 120.0)
    a3 = 1.0 / 720.0 + u * (1.0 / 5040.0)
    a4 = 1.0 / 40320.0 + u * (1.0 / 362880.0)
    a5 = 1.0 / 3628800.0 + u * (1.0 / 39916800.0)
    a6 = 1.0 / 479001600.0 + u * (1.0 / 6227020800.0)
    b0 = a0 + u2 * a1
    b1 = a2 + u2 * a3
    b2 = a4 + u2 * a5
    c0 = b0 + u4 * b1
    c1 = b2 + u4 * a6
    p = (c0 + u8 * c1) * _E_EXP_C
    p *= p
    p *= p
    p *= p
    p *= p
    p *= p
    p *= p
    p *= p
    p *= p
    return p


@njit(cache=True, fastmath=FMA)
def exp_f64_eval(x):
    """``exp`` of float64 ``x`` by the vectorisable formulas, ``x`` clamped to
    ``[EXP_MIN, EXP_MAX]`` (exact once rounded to float32; NaN propagates). Relative error at
    most ``1.4e-13`` on 400k points (``tests/test_vecmath.py`` bounds it by ``3e-13``). The
    float32 :func:`exp` rounds this."""
    r = _exp_core(min(max(x, EXP_MIN), EXP_MAX))
    return r if x == x else x


@njit(cache=True, fastmath=FMA, error_model="numpy")
def sigmoid_f64_eval(x):
    """The logistic function ``1 / (1 + e^{-x})`` of float64 ``x`` by the vectorisable
    formulas: ``e = exp(-|x|)`` (:func:`exp_f64_eval`'s core, ``|x|`` clamped to 104), then
    ``1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` below (no overflow, no cancellation).
    Relative error at most ``1.1e-13`` on 400k points (tests bound it by ``3e-13``). The
    float32 :func:`sigmoid` rounds this; callers that subtract a target from it (the loss
    gradient ``s - y``) use it unrounded.

    ``error_model="numpy"``: the divisor ``1 + e`` lies in ``[1, 2]``, so Numba's zero-divisor
    test (which would stop vectorisation) is not needed.
    """
    e = _exp_core(-min(abs(x), -EXP_MIN))
    r = 1.0 / (1.0 + e)
    r = r if x >= 0.0 else e * r
    return r if x == x else x


# float32 log1p is split into small functions: as one, it is too large for LLVM's inliner, and a
# call left in a loop stops vectorisation. The float32 overload is inlined into the caller by
# Numba (it holds no arithmetic, so the caller's fast-math flags change nothing) and calls the
# pieces, each small enough for LLVM to inline. Their multiplies by powers of two are exact.


@njit(cache=True, fastmath=FMA)
def _log1p_down_a(x):
    """``t = 1 + x`` and ``k``: ``t 2^{-k}`` below ``2^8`` (steps of 64, 32, 16, 8)."""
    t = 1.0 + x
    c = t >= 18446744073709551616.0  # 2^64
    t = t * 5.421010862427522e-20 if c else t
    k = 64.0 if c else 0.0
    c = t >= 4294967296.0  # 2^32
    t = t * 2.3283064365386963e-10 if c else t
    k = k + 32.0 if c else k
    c = t >= 65536.0  # 2^16
    t = t * 1.52587890625e-05 if c else t
    k = k + 16.0 if c else k
    c = t >= 256.0
    t = t * 0.00390625 if c else t
    k = k + 8.0 if c else k
    return t, k


@njit(cache=True, fastmath=FMA)
def _log1p_down_b(tk):
    """Steps of 4, 2, 1 down (``t`` below 2), then 16 up (``t`` at least ``2^-16``)."""
    t, k = tk
    c = t >= 16.0
    t = t * 0.0625 if c else t
    k = k + 4.0 if c else k
    c = t >= 4.0
    t = t * 0.25 if c else t
    k = k + 2.0 if c else k
    c = t >= 2.0
    t = t * 0.5 if c else t
    k = k + 1.0 if c else k
    c = t < 1.52587890625e-05  # 2^-16
    t = t * 65536.0 if c else t
    k = k - 16.0 if c else k
    return t, k


@njit(cache=True, fastmath=FMA)
def _log1p_up(tk):
    """Steps of 8, 4, 2, 1 up: ``t`` in ``[1/2, 2)``."""
    t, k = tk
    c = t < 0.00390625
    t = t * 256.0 if c else t
    k = k - 8.0 if c else k
    c = t < 0.0625
    t = t * 16.0 if c else t
    k = k - 4.0 if c else k
    c = t < 0.25
    t = t * 4.0 if c else t
    k = k - 2.0 if c else k
    c = t < 0.5
    t = t * 2.0 if c else t
    k = k - 1.0 if c else k
    return t, k


@njit(cache=True, fastmath=FMA, error_model="numpy")
def _log1p_finish(x, tk):
    r"""From ``t`` in ``[1/2, 2)`` to :math:`[\sqrt{1/2}, \sqrt 2]`, then
    ``k ln 2 + 2 atanh(s)`` and the special values.

    ``error_model="numpy"``: the divisor lies in ``[1.7, 2.5]``, so Numba's zero-divisor test
    (which would stop vectorisation) is not needed.
    """
    t, k = tk
    c = t > _SQRT2
    t = t * 0.5 if c else t
    k = k + 1.0 if c else k
    c = t < _SQRT1_2
    t = t * 2.0 if c else t
    k = k - 1.0 if c else k
    direct = k == 0.0
    num = x if direct else t - 1.0  # t - 1 is exact (Sterbenz)
    den = 2.0 + x if direct else t + 1.0
    s = num / den
    s2 = s * s
    p = 2.0 / 19.0
    p = p * s2 + 2.0 / 17.0
    p = p * s2 + 2.0 / 15.0
    p = p * s2 + 2.0 / 13.0
    p = p * s2 + 2.0 / 11.0
    p = p * s2 + 2.0 / 9.0
    p = p * s2 + 2.0 / 7.0
    p = p * s2 + 2.0 / 5.0
    p = p * s2 + 2.0 / 3.0
    q = 2.0 * s + s * (s2 * p)
    r = q if direct else k * _LN2 + q  # q alone keeps log1p(-0.0) = -0.0
    r = r if x > -1.0 else (-math.inf if x == -1.0 else math.nan)
    return x if x == math.inf else r


@njit(cache=True)
def log1p_f64_eval(x):
    r"""``log(1 + x)`` of float64 ``x`` (a float32 value) by the vectorisable formulas.

    ``t = 1 + x`` is scaled by powers of two, chosen by comparisons and selects (no exponent
    bits are read), to ``t 2^{-k}`` in :math:`[\sqrt{1/2}, \sqrt 2]`; then
    :math:`\log(1 + x) = k \ln 2 + 2\,\mathrm{atanh}\, s` with :math:`s = (t' - 1)/(t' + 1)`,
    :math:`|s| \le 0.1716`, or :math:`s = x / (2 + x)` when :math:`k = 0` (exact for small
    :math:`x`, where ``1 + x`` would round). The series
    :math:`2 (s + s^3/3 + \dots + s^{19}/19)` is truncated below :math:`3 \cdot 10^{-17}`
    relative. Valid for ``x`` in ``(-1, 2^128)`` with ``1 + x >= 2^-24`` (every float32
    above -1); ``-1`` gives ``-inf``, below -1 and NaN give NaN, ``inf`` gives ``inf``.
    Relative error at most ``2.5e-16`` on 500k points (tests bound it by ``1e-15``). The
    float32 :func:`log1p` rounds this.
    """
    return _log1p_finish(x, _log1p_up(_log1p_down_b(_log1p_down_a(x))))


def exp(x):
    """Exponential for compiled code: vectorisable and correctly rounded (but for rare
    near-ties) in float32, ``math.exp`` in float64. Called from Python it is ``math.exp``."""
    return math.exp(x)


def log1p(x):
    """``log(1 + x)`` for compiled code: vectorisable and correctly rounded (but for rare
    near-ties) in float32, ``math.log1p`` in float64. Called from Python it is ``math.log1p``."""
    return math.log1p(x)


def sigmoid(x):
    """Logistic function ``1 / (1 + e^{-x})`` for compiled code: vectorisable and correctly
    rounded (but for rare near-ties) in float32; in float64 the stable libm form
    (``1 / (1 + exp(-x))`` for ``x >= 0``, ``e / (1 + e)`` with ``e = exp(x)`` below). Called
    from Python it is that float64 form."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _is_f32(x):
    return isinstance(x, types.Float) and x.bitwidth == 32


@overload(exp)
def _exp_overload(x):
    if _is_f32(x):
        return lambda x: np.float32(exp_f64_eval(np.float64(x)))
    if isinstance(x, types.Float):
        return lambda x: math.exp(x)
    return None


def _log1p_f32(x):
    y = np.float64(x)
    return np.float32(_log1p_finish(y, _log1p_up(_log1p_down_b(_log1p_down_a(y)))))


@overload(log1p, inline="always")
def _log1p_overload(x):
    # inlined by Numba (see _log1p_down_a): the pieces it calls are then inlined by LLVM
    if _is_f32(x):
        return _log1p_f32
    if isinstance(x, types.Float):
        return lambda x: math.log1p(x)
    return None


def _sigmoid_libm(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@overload(sigmoid)
def _sigmoid_overload(x):
    if _is_f32(x):
        return lambda x: np.float32(sigmoid_f64_eval(np.float64(x)))
    if isinstance(x, types.Float):
        return _sigmoid_libm
    return None


# ---------------------------------------------------------------------------------------------
# binary cross-entropy from a logit: log1p(exp(-|x|)) and the sigmoid with one exponential
# ---------------------------------------------------------------------------------------------


@njit(cache=True, fastmath=FMA, error_model="numpy")
def _exp_neg_abs_and_sigmoid(x):
    """``(e, s)`` for float64 ``x``: ``e = exp(-|x|)`` as :func:`exp_f64_eval` gives it (``-|x|``
    clamped to ``EXP_MIN``: ``exp_f64_eval``'s clamp of a non-positive argument), and ``s`` as
    :func:`sigmoid_f64_eval` gives it, from that same ``e`` (its arithmetic copied: the tests
    compare the two, bit for bit); ``(x, x)`` for NaN."""
    e = _exp_core(-min(abs(x), -EXP_MIN))
    r = 1.0 / (1.0 + e)
    s = r if x >= 0.0 else e * r
    return (e, s) if x == x else (x, x)


@njit(cache=True, fastmath=FMA)
def _log1p_unit(x):
    """:func:`log1p_f64_eval` for ``x`` in ``[0, 1]`` (and NaN), the same bits: there ``t = 1 +
    x`` lies in ``[1, 2]``, so of the scaling steps only the one by 1/2 at ``t = 2`` can apply
    (the others' selects keep ``t`` and ``k``)."""
    t = 1.0 + x
    c = t >= 2.0
    return _log1p_finish(x, (t * 0.5 if c else t, 1.0 if c else 0.0))


def bce_terms(x):
    """The two transcendental terms of binary cross-entropy from a logit ``x``.

    In compiled code, for float32 ``x``: exactly the bits of ``log1p(exp(-abs(x)))`` (this
    module's float32 :func:`exp` and :func:`log1p`) and of
    :func:`dlbasics.kernels.activations.sigmoid_vec` (the float64 sigmoid, not rounded), NaNs
    included, with one exponential instead of two and a ``log1p`` that skips the scaling steps
    no argument in ``[0, 1]`` takes. ``scripts/bce_terms_bits.py`` compares every float32
    argument (0 differences) and times the lane layout's loss loop both ways (``--time``: 4.1
    against 7.2 ns a value, 4,096 values, one core of the 2-core benchmark machine);
    ``tests/test_vecmath.py`` checks a sample. For float64 ``x``: ``math.log1p(math.exp(-abs(x)))``
    and the libm sigmoid, the bits of those calls. Called from Python it is the float64 form.

    Parameters
    ----------
    x : float32 or float64
        The logit.

    Returns
    -------
    soft : same type as ``x``
        ``log1p(exp(-|x|))``, the soft-plus part of the loss ``max(x, 0) - x y + soft``.
    sig : float64
        The sigmoid of ``x`` (float64 also for a float32 ``x``, so that the gradient ``sig - y``
        keeps the small differences a float32 value near 1 would lose).
    """
    return math.log1p(math.exp(-abs(x))), _sigmoid_libm(x)


def _bce_terms_f32(x):
    e, s = _exp_neg_abs_and_sigmoid(np.float64(x))
    return np.float32(_log1p_unit(np.float64(np.float32(e)))), s


def _bce_terms_f64(x):
    return math.log1p(math.exp(-abs(x))), sigmoid(x)  # sigmoid: the libm form for float64


@overload(bce_terms, inline="always")
def _bce_terms_overload(x):
    # inlined by Numba, as log1p's overload (see _log1p_down_a): the pieces it calls are small
    # enough for LLVM to inline, so a loop over it vectorises
    if _is_f32(x):
        return _bce_terms_f32
    if isinstance(x, types.Float):
        return _bce_terms_f64
    return None
