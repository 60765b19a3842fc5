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
