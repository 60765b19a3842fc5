"""``vecmath.bce_terms`` against the three calls it replaces, over every float32 bit pattern.

``dlbasics.kernels.vecmath.bce_terms(x)`` gives, for a float32 logit ``x``, the float32
``log1p(exp(-|x|))`` and the float64 sigmoid with one exponential; it must return exactly the
bits of ``vecmath.log1p(vecmath.exp(-abs(x)))`` and ``activations.sigmoid_vec(x)``. This script
runs both forms in compiled (vectorised) loops over all 2**32 float32 bit patterns, NaNs and
infinities included, in chunks, and prints the number of arguments where either result's bits
differ (a NaN result counts as equal to a NaN result, whatever its payload). About a minute on
one core of the 2-core benchmark machine; ``tests/test_vecmath.py`` checks a sample.

Run: ``.venv/bin/python scripts/bce_terms_bits.py [--chunks N]`` (``N`` of the 256 chunks of
2**24 patterns, spread over the whole range; default all).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from numba import njit

from dlbasics.kernels import vecmath as vm
from dlbasics.kernels.activations import sigmoid_vec

CHUNK = 1 << 24


@njit(cache=True)
def _new(x, soft, sig):
    for i in range(x.shape[0]):
        soft[i], sig[i] = vm.bce_terms(x[i])


@njit(cache=True)
def _old(x, soft, sig):
    for i in range(x.shape[0]):
        soft[i] = vm.log1p(vm.exp(-abs(x[i])))
        sig[i] = sigmoid_vec(x[i])


def _differ(a, b, view):
    """Arguments where ``a`` and ``b`` differ in their bits (both NaN: equal)."""
    both_nan = np.isnan(a) & np.isnan(b)
    return int(np.count_nonzero((a.view(view) != b.view(view)) & ~both_nan))


def compare(chunks=None):
    """``(arguments compared, soft-plus term mismatches, sigmoid mismatches)``."""
    n_all = (1 << 32) // CHUNK
    picks = range(n_all) if chunks is None else np.linspace(0, n_all - 1, chunks).astype(int)
    soft_a, soft_b = np.empty(CHUNK, np.float32), np.empty(CHUNK, np.float32)
    sig_a, sig_b = np.empty(CHUNK), np.empty(CHUNK)
    n = bad_soft = bad_sig = 0
    for q in picks:
        x = np.arange(q * CHUNK, (q + 1) * CHUNK, dtype=np.uint64).astype(np.uint32)
        x = x.view(np.float32)
        _new(x, soft_a, sig_a)
        _old(x, soft_b, sig_b)
        n += x.size
        bad_soft += _differ(soft_a, soft_b, np.uint32)
        bad_sig += _differ(sig_a, sig_b, np.uint64)
    return n, bad_soft, bad_sig


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=None, help="chunks of 2**24 patterns (of 256)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    n, bad_soft, bad_sig = compare(args.chunks)
    print(f"{n:,} float32 arguments: log1p(exp(-|x|)) differs at {bad_soft}, the sigmoid at "
          f"{bad_sig} ({time.perf_counter() - t0:.0f} s)")
    return 0 if bad_soft == bad_sig == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
