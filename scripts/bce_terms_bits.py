"""``vecmath.bce_terms`` against the three calls it replaces, over every float32 bit pattern.

``dlbasics.kernels.vecmath.bce_terms(x)`` gives, for a float32 logit ``x``, the float32
``log1p(exp(-|x|))`` and the float64 sigmoid with one exponential; it must return exactly the
bits of ``vecmath.log1p(vecmath.exp(-abs(x)))`` and ``activations.sigmoid_vec(x)``. This script
runs both forms in compiled loops over all 2**32 float32 bit patterns, NaNs (signalling ones
too) and infinities included, in chunks of 2**24 minus 3 (so that the loops' scalar remainder
runs as well as their vector body: the 3 left over of each chunk go through it alone), and
prints the number of arguments where either result's bits differ, NaNs compared bit for bit.
About a minute and a half on one core of the 2-core benchmark machine; ``tests/test_vecmath.py``
checks a sample.

``--time`` instead times the lane layout's loss loop for binary cross-entropy
(``dlbasics.models._lanes._loss_elementwise``: both terms, the loss sum and the gradient) against
the same loop with the three calls, on 4,096 float32 logits (32 rows x 128 lanes), the fastest of
5 x 200 calls each, alternating.

Run: ``.venv/bin/python scripts/bce_terms_bits.py [--chunks N] [--time]`` (``N`` of the 256
chunks, spread over the whole range; default all).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from numba import njit

from dlbasics.kernels import vecmath as vm
from dlbasics.kernels.activations import sigmoid_vec
from dlbasics.kernels.losses import BCE_LOGITS
from dlbasics.models._lanes import _lane_slice, _loss_elementwise

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


@njit(cache=True, error_model="numpy")
def _loss_new(ws, B, C, btot, inv_n):
    _loss_elementwise(BCE_LOGITS, ws, 0, B * C, 2 * B * C, B, 1, C, btot, inv_n)


@njit(cache=True, error_model="numpy")
def _loss_old(ws, B, C, btot, inv_n):
    # _loss_elementwise's binary cross-entropy loop as it was, with the three calls
    for e in range(B):
        p = _lane_slice(ws, e, C)
        y = _lane_slice(ws, B + e, C)
        g = _lane_slice(ws, 2 * B + e, C)
        for c in range(C):
            pj = p[c]
            yj = y[c]
            btot[c] += max(pj, 0.0) - pj * yj + vm.log1p(vm.exp(-abs(pj)))
            g[c] = (sigmoid_vec(pj) - yj) * inv_n


def _differ(a, b, view):
    """Arguments where ``a`` and ``b`` differ in their bits (NaNs too)."""
    return int(np.count_nonzero(a.view(view) != b.view(view)))


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
        for part in (slice(0, CHUNK - 3), slice(CHUNK - 3, CHUNK)):
            xs = x[part]
            m = xs.size
            _new(xs, soft_a[:m], sig_a[:m])
            _old(xs, soft_b[:m], sig_b[:m])
            n += m
            bad_soft += _differ(soft_a[:m], soft_b[:m], np.uint32)
            bad_sig += _differ(sig_a[:m], sig_b[:m], np.uint64)
    return n, bad_soft, bad_sig


def time_loss(reps=5, calls=200):
    """``(ns a value with bce_terms, ns a value with the three calls)``."""
    B, C = 32, 128
    rng = np.random.default_rng(0)
    ws = np.zeros(3 * B * C, np.float32)
    ws[:B * C] = rng.standard_normal(B * C).astype(np.float32) * 3
    ws[B * C:2 * B * C] = (rng.random(B * C) < 0.5).astype(np.float32)
    btot = np.zeros(C)
    best = {}
    for _ in range(reps):
        for name, fn in (("new", _loss_new), ("old", _loss_old)):
            fn(ws, B, C, btot, 1.0 / B)
            t0 = time.perf_counter()
            for _ in range(calls):
                fn(ws, B, C, btot, 1.0 / B)
            dt = (time.perf_counter() - t0) / calls / (B * C) * 1e9
            best[name] = min(best.get(name, np.inf), dt)
    return best["new"], best["old"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=None, help="chunks of 2**24 patterns (of 256)")
    ap.add_argument("--time", action="store_true", help="time the loss loop both ways instead")
    args = ap.parse_args(argv)
    if args.time:
        new, old = time_loss()
        print(f"loss loop, 4,096 float32 logits: {new:.2f} ns a value with bce_terms, "
              f"{old:.2f} with the three calls ({old / new:.2f}x)")
        return 0
    t0 = time.perf_counter()
    n, bad_soft, bad_sig = compare(args.chunks)
    print(f"{n:,} float32 arguments: log1p(exp(-|x|)) differs at {bad_soft}, the sigmoid at "
          f"{bad_sig} ({time.perf_counter() - t0:.0f} s)")
    return 0 if bad_soft == bad_sig == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
