"""Error in ulps of the vectorisable float32 functions of ``dlbasics.kernels.vecmath``.

For ``exp``, ``log1p``, ``sigmoid``, ``tanh`` and ``tanh_fast`` it compares the float32 result with
libm's float64 function of the same argument rounded once to float32 (the correctly rounded value,
up to libm's own last-bit error in float64) over every float32 in the function's range where the
result is not a constant (``--exhaustive``, a few minutes per function on one core) or over a dense
sample (default, seconds). It prints per function the number of arguments, how many are not
correctly rounded (and the fraction) and the largest distance in ulps; and the same for the float32
function that compiled code called before (libm's ``expf``/``log1pf``/``tanhf``, and the sigmoid
``1 / (1 + expf(-z))`` computed in float64 and rounded; for ``tanh_fast``, ``vecmath.tanh``,
which the lane layout of population training called before). The docstrings of ``vecmath`` and
``tests/test_vecmath.py`` state these numbers.

Run: ``.venv/bin/python scripts/vecmath_ulps.py [--exhaustive] [--only exp,log1p]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from numba import njit

from dlbasics.kernels.vecmath import exp, log1p, sigmoid, tanh, tanh_fast

#: Argument ranges (float32 bounds) where the float32 result is not a constant: beyond them
#: exp is 0 or inf, sigmoid 0 or 1 and tanh -1 or 1 in both implementations (tested apart).
RANGES = {
    "exp": (-104.0, 89.0),
    "log1p": (-1.0, float(np.finfo(np.float32).max)),
    "sigmoid": (-104.0, 18.0),
    "tanh": (-9.1, 9.1),
    "tanh_fast": (-9.1, 9.1),
}
CHUNK = 1 << 22


@njit(cache=True)
def _key(b):
    """Position on the ordered line of float32 values of the float32 with bits ``b`` (int32)."""
    b = np.int64(b)
    return b if b >= 0 else -(b & 0x7FFFFFFF)


@njit(cache=True)
def _sig64(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True)
def _old_sig(z):
    if z >= 0:
        return np.float32(1.0 / (1.0 + math.exp(-z)))
    e = math.exp(z)
    return np.float32(e / (1.0 + e))


@njit(cache=True)
def _eval(which, x, ours, ref, old):
    for i in range(x.shape[0]):
        v = x[i]
        w = np.float64(v)
        if which == 0:
            ours[i] = exp(v)
            ref[i] = np.float32(math.exp(w))
            old[i] = math.exp(v)
        elif which == 1:
            ours[i] = log1p(v)
            ref[i] = np.float32(math.log1p(w))
            old[i] = math.log1p(v)
        elif which == 2:
            ours[i] = sigmoid(v)
            ref[i] = np.float32(_sig64(w))
            old[i] = _old_sig(v)
        elif which == 3:
            ours[i] = tanh(v)
            ref[i] = np.float32(math.tanh(w))
            old[i] = math.tanh(v)
        else:
            ours[i] = tanh_fast(v)
            ref[i] = np.float32(math.tanh(w))
            old[i] = tanh(v)


@njit(cache=True)
def _tally(got, ref, out):
    """``out += [values, not equal, max ulps]`` (NaN equals NaN; NaN against a number counts
    as ``2**40`` ulps)."""
    gb = got.view(np.int32)
    rb = ref.view(np.int32)
    for i in range(got.shape[0]):
        a = got[i]
        b = ref[i]
        out[0] += 1
        if a == b or (a != a and b != b):
            continue
        out[1] += 1
        d = abs(_key(gb[i]) - _key(rb[i])) if (a == a and b == b) else 1 << 40
        if d > out[2]:
            out[2] = d


def _bit_ranges(lo, hi):
    """Ranges of float32 bit patterns (uint32) covering every float32 in ``[lo, hi]`` (``lo``
    excluded for log1p's -1, where the result is -inf in both)."""
    f = np.float32
    parts = []
    if hi >= 0:
        parts.append((0, int(np.array([f(hi)]).view(np.uint32)[0]) + 1))
    if lo < 0:
        top = int(np.array([f(-lo)]).view(np.uint32)[0])
        parts.append((0x80000000, 0x80000000 + top + (0 if lo == -1.0 else 1)))
    return parts


def measure(name, exhaustive, n_sample=2_000_000, seed=0):
    """``(values, wrong, max_ulp)`` for ``vecmath.<name>`` and for the function it replaced."""
    which = list(RANGES).index(name)
    lo, hi = RANGES[name]
    ours_t = np.zeros(3, np.int64)
    old_t = np.zeros(3, np.int64)
    buf = [np.empty(CHUNK, np.float32) for _ in range(3)]

    def run(x):
        n = x.shape[0]
        o, r, d = (b[:n] for b in buf)
        _eval(which, x, o, r, d)
        _tally(o, r, ours_t)
        _tally(d, r, old_t)

    if exhaustive:
        for start, stop in _bit_ranges(lo, hi):
            for s in range(start, stop, CHUNK):
                run(np.arange(s, min(s + CHUNK, stop), dtype=np.uint32).view(np.float32))
    else:
        rng = np.random.default_rng(seed)
        bits = _bit_ranges(lo, hi)
        sizes = [b - a for a, b in bits]
        for (a, b), size in zip(bits, sizes, strict=True):
            k = int(n_sample * size / sum(sizes))
            for s in range(0, k, CHUNK):  # uniform over bit patterns: every binade alike
                run(rng.integers(a, b, min(CHUNK, k - s), dtype=np.uint32).view(np.float32))
    return tuple(int(v) for v in ours_t), tuple(int(v) for v in old_t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exhaustive", action="store_true", help="every float32 in each range")
    ap.add_argument("--only", default=",".join(RANGES), help="comma-separated names")
    args = ap.parse_args(argv)
    print("function  range                 values          ours: wrong (fraction) max ulp"
          "     replaced: wrong (fraction) max ulp")
    for name in args.only.split(","):
        t = time.perf_counter()
        ours, old = measure(name, args.exhaustive)
        lo, hi = RANGES[name]
        row = f"{name:8s}  [{lo:g}, {hi:.3g}]".ljust(32) + f"{ours[0]:>14,d}"
        for v in (ours, old):
            row += f"   {v[1]:>10,d} ({v[1] / v[0]:.2e}) {v[2]:>3d}"
        print(row + f"   {time.perf_counter() - t:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
