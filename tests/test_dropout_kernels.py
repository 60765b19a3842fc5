"""Dropout kernels against the naive references, statistics of the counter-based masks,
determinism across thread counts, and the notes' test-time weight scaling."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit

from dlbasics.kernels import dropout as dk
from dlbasics.kernels.dropout import (
    dropout_apply,
    dropout_backward,
    dropout_forward,
    dropout_mask,
    scale_weights,
)
from tests import naive

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (1, 13), (7, 1), (7, 13), (128, 300)]


@njit(cache=True)
def _uniforms(counters):
    """hash_uniform for each row (seed, step, layer, row, unit) of an int64 array."""
    out = np.empty(counters.shape[0])
    for i in range(counters.shape[0]):
        c = counters[i]
        out[i] = dk.hash_uniform(c[0], c[1], c[2], c[3], c[4])
    return out


@njit(cache=True)
def _keeps(counters, p):
    out = np.empty(counters.shape[0], dtype=np.bool_)
    for i in range(counters.shape[0]):
        c = counters[i]
        out[i] = dk.keep_scalar(c[0], c[1], c[2], c[3], c[4], p)
    return out


def _random_counters(rng, n, big=False):
    high = 2**63 - 1 if big else 1000
    return rng.integers(0, high, size=(n, 5), dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# the hash
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("big", [False, True])
def test_hash_matches_python_int_reference(big):
    rng = np.random.default_rng(1)
    c = _random_counters(rng, 300, big=big)
    c[:5] = 0  # all-zero counters (a fixed point of a bare finaliser) included
    c[5] = 2**63 - 1
    got = _uniforms(c)
    ref = np.array([naive.dropout_uniform(*map(int, row)) for row in c])
    np.testing.assert_array_equal(got, ref)
    for p in (0.3, 0.5, 1.0):
        np.testing.assert_array_equal(_keeps(c, p), ref < p)


def test_uniform_is_a_multiple_of_2_pow_minus_24_in_unit_interval():
    u = _uniforms(_random_counters(np.random.default_rng(2), 10_000, big=True))
    assert u.min() >= 0.0 and u.max() < 1.0
    np.testing.assert_array_equal(u * 2**24, np.floor(u * 2**24))


def test_uniform_mean_and_variance():
    # Sequential units of one row: the structured case the per-unit hash stage must spread.
    n = 2**16
    c = np.zeros((n, 5), dtype=np.int64)
    c[:, 0], c[:, 4] = 42, np.arange(n)
    u = _uniforms(c)
    # The top 24 bits are uniform on {k / 2**24}: mean 1/2 - 2**-25, variance ~ 1/12.
    # Standard error of the mean sqrt(1/12 / n) ~ 1.1e-3; of the sample variance
    # sqrt((1/80 - 1/144) / n) ~ 2.9e-4 (uniform fourth central moment 1/80). Allow 5 sigma.
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 5 * np.sqrt((1 / 80 - 1 / 144) / n)
    # Also roughly flat: each of 16 bins holds n/16 +- 5 sd (binomial sd ~ 62).
    counts = np.bincount((u * 16).astype(int), minlength=16)
    assert np.all(np.abs(counts - n / 16) < 5 * np.sqrt(n / 16 * 15 / 16))


@pytest.mark.parametrize("k", range(5), ids=["seed", "step", "layer", "row", "unit"])
def test_neighbouring_counters_decorrelate(k):
    # u(c) against u(c + e_k) and u(c + 2**40 e_k) (a high-bit change): for independent
    # uniforms the sample correlation is ~ N(0, 1/n); 5 sigma = 5 / sqrt(n) ~ 0.022.
    n = 50_000
    c = _random_counters(np.random.default_rng(3 + k), n)
    u = _uniforms(c)
    for delta in (1, 2**40):
        c2 = c.copy()
        c2[:, k] += delta
        r = np.corrcoef(u, _uniforms(c2))[0, 1]
        assert abs(r) < 5 / np.sqrt(n), (delta, r)
    # Swapping two counters must not give the same stream either.
    c3 = c.copy()
    c3[:, [k, (k + 1) % 5]] = c[:, [(k + 1) % 5, k]]
    same = c3[:, k] == c[:, k]
    r = np.corrcoef(u[~same], _uniforms(c3)[~same])[0, 1]
    assert abs(r) < 5 / np.sqrt(n)


# ---------------------------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_mask_matches_naive(shape, dtype):
    got = dropout_mask(shape, 0.6, seed=5, step=3, layer=2, row_offset=17, dtype=dtype)
    ref = naive.dropout_mask(shape, 0.6, 5, 3, 2, 17, dtype=dtype)
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_1d_shape_is_one_row(dtype):
    got = dropout_mask(13, 0.5, seed=1, row_offset=4, dtype=dtype)
    assert got.shape == (13,)
    np.testing.assert_array_equal(got, naive.dropout_mask((13,), 0.5, 1, 0, 0, 4, dtype=dtype))
    np.testing.assert_array_equal(got, dropout_mask((13,), 0.5, seed=1, row_offset=4, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 13), (7, 13), (128, 300)])
def test_serial_and_parallel_paths_agree(shape, dtype):
    m_ser = np.empty(shape, dtype)
    m_par = np.empty(shape, dtype)
    dk.mask_kernel(9, 1, 0, 3, 0.5, m_ser, 2**62)  # threshold never reached: serial
    dk.mask_kernel(9, 1, 0, 3, 0.5, m_par, 0)  # always prange
    np.testing.assert_array_equal(m_ser, m_par)
    m_def = np.empty(shape, dtype)
    dk.mask_kernel(9, 1, 0, 3, 0.5, m_def)
    np.testing.assert_array_equal(m_def, m_ser)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_mask_mean_is_p(p):
    # n = 262144 Bernoulli(p) units: sd of the mean sqrt(p(1-p)/n) <= 1e-3; allow 5 sd.
    # (The exact keep probability ceil(p 2**24) / 2**24 is within 6e-8 of p.)
    m = dropout_mask((512, 512), p, seed=11, step=4, layer=1, dtype=np.float64)
    n = m.size
    assert abs(m.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    # and per row: no row is far off (sd of a row mean <= 0.022; 6 sd over 512 rows)
    assert np.all(np.abs(m.mean(axis=1) - p) < 6 * np.sqrt(p * (1 - p) / 512))


def test_p_one_keeps_everything():
    m = dropout_mask((64, 100), 1.0, seed=3)
    assert np.all(m == 1.0)
    a = np.random.default_rng(0).normal(size=(64, 100))
    for inverted in (False, True):
        out, mask = dropout_forward(a, 1.0, seed=3, inverted=inverted)
        np.testing.assert_array_equal(out, a)
        assert np.all(mask == 1.0)


def test_equal_counters_give_equal_masks_and_different_ones_differ():
    shape, p = (40, 250), 0.5
    base = dict(seed=1, step=2, layer=3, row_offset=4)
    m0 = dropout_mask(shape, p, **base)
    np.testing.assert_array_equal(m0, dropout_mask(shape, p, **base))
    # Two independent Bernoulli(1/2) masks agree on half the units: sd sqrt(0.25 / 10000).
    for name in base:
        other = dict(base, **{name: base[name] + 1})
        agree = (dropout_mask(shape, p, **other) == m0).mean()
        assert abs(agree - 0.5) < 5 * np.sqrt(0.25 / m0.size), (name, agree)
    # Rows of one mask differ from each other too.
    agree_rows = (m0[1:] == m0[:-1]).mean()
    assert abs(agree_rows - 0.5) < 5 * np.sqrt(0.25 / m0[1:].size)


def test_row_offset_makes_chunks_consistent():
    whole = dropout_mask((10, 31), 0.7, seed=8, step=5, layer=1)
    for start, stop in ((0, 3), (3, 4), (4, 10)):
        chunk = dropout_mask((stop - start, 31), 0.7, seed=8, step=5, layer=1, row_offset=start)
        np.testing.assert_array_equal(chunk, whole[start:stop])


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------


def test_same_call_twice_is_bitwise_equal():
    a = np.random.default_rng(4).normal(size=(300, 200)).astype(np.float32)
    o1, m1 = dropout_forward(a, 0.5, seed=3, step=1, inverted=True)
    o2, m2 = dropout_forward(a, 0.5, seed=3, step=1, inverted=True)
    assert o1.tobytes() == o2.tobytes() and m1.tobytes() == m2.tobytes()


_SUBPROCESS = textwrap.dedent(
    """
    import sys
    import numba
    import numpy as np
    from dlbasics.kernels import dropout as dk
    assert numba.get_num_threads() == int(sys.argv[2]), numba.get_num_threads()
    big = dk.dropout_mask((256, 300), 0.5, seed=7, step=3, layer=2, row_offset=11)
    assert big.size >= dk.PARALLEL_MIN_ELEMENTS  # takes the prange path
    small = np.empty((7, 13), np.float64)
    dk.mask_kernel(7, 3, 2, 11, 0.3, small, 0)  # prange forced on a small mask
    a = np.linspace(-1.0, 1.0, 256 * 300).reshape(256, 300)
    out, mask = dk.dropout_forward(a, 0.8, seed=1, step=2, layer=0, inverted=True)
    np.save(sys.argv[1] + "_big.npy", big)
    np.save(sys.argv[1] + "_small.npy", small)
    np.save(sys.argv[1] + "_out.npy", out)
    np.save(sys.argv[1] + "_mask.npy", mask)
    """
)


def test_masks_bitwise_equal_for_one_and_two_threads(tmp_path):
    results = {}
    for threads in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
        prefix = str(tmp_path / f"t{threads}")
        subprocess.run(
            [sys.executable, "-c", _SUBPROCESS, prefix, str(threads)],
            env=env, check=True, cwd=os.path.dirname(os.path.dirname(__file__)),
        )
        results[threads] = {
            k: np.load(f"{prefix}_{k}.npy") for k in ("big", "small", "out", "mask")
        }
    for k in results[1]:
        assert results[1][k].tobytes() == results[2][k].tobytes(), k
    # and both equal what this process computes
    here = dropout_mask((256, 300), 0.5, seed=7, step=3, layer=2, row_offset=11)
    assert here.tobytes() == results[1]["big"].tobytes()
    np.testing.assert_array_equal(
        results[1]["small"], naive.dropout_mask((7, 13), 0.3, 7, 3, 2, 11, dtype=np.float64)
    )


# ---------------------------------------------------------------------------------------------
# forward / apply / backward against the references
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("inverted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_naive(shape, dtype, inverted):
    p = 0.7
    a = np.random.default_rng(5).normal(size=shape).astype(dtype)
    out, mask = dropout_forward(a, p, seed=2, step=9, layer=1, row_offset=6, inverted=inverted)
    ref_mask = naive.dropout_mask(shape, p, 2, 9, 1, 6, dtype=dtype)
    np.testing.assert_array_equal(mask, ref_mask)
    ref = naive.dropout_apply(a, ref_mask, 1 / p if inverted else 1.0)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, ref)
    # the fused kernel equals mask-then-apply
    np.testing.assert_array_equal(
        out, dropout_apply(a, mask, p, inverted=inverted)
    )
    # and the forced-parallel fused path gives the same bits
    out2, mask2 = np.empty_like(a), np.empty_like(a)
    dk.forward_kernel(a, 2, 9, 1, 6, p, inverted, mask2, out2, 0)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(mask2, mask)


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_in_place_and_buffers(dtype):
    a = np.random.default_rng(6).normal(size=(7, 13)).astype(dtype)
    expect, expect_mask = dropout_forward(a, 0.5, seed=1, inverted=True)
    mask = np.empty_like(a)
    out, m = dropout_forward(a, 0.5, seed=1, inverted=True, out=a, mask=mask)
    assert out is a and m is mask
    np.testing.assert_array_equal(a, expect)
    np.testing.assert_array_equal(mask, expect_mask)


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_1d(dtype):
    a = np.arange(1, 14, dtype=dtype)
    out, mask = dropout_forward(a, 0.5, seed=4, row_offset=2)
    assert out.shape == mask.shape == (13,)
    np.testing.assert_array_equal(mask, naive.dropout_mask((13,), 0.5, 4, 0, 0, 2, dtype=dtype))
    np.testing.assert_array_equal(out, a * mask)


@pytest.mark.parametrize("inverted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_naive(shape, dtype, inverted):
    p = 0.35
    rng = np.random.default_rng(7)
    delta = rng.normal(size=shape).astype(dtype)
    mask = dropout_mask(shape, p, seed=3, dtype=dtype)
    got = dropout_backward(delta, mask, p, inverted=inverted)
    ref = naive.dropout_backward(delta, mask, 1 / p if inverted else 1.0)
    np.testing.assert_array_equal(got, ref)
    # dropped units get exactly zero gradient
    assert np.all(got[mask == 0] == 0)
    # in place
    d2 = delta.copy()
    assert dropout_backward(d2, mask, p, inverted=inverted, out=d2) is d2
    np.testing.assert_array_equal(d2, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_is_the_gradient_of_forward(dtype):
    # forward is linear in a: <delta, forward(a)> == <backward(delta), a>
    rng = np.random.default_rng(8)
    a = rng.normal(size=(9, 17)).astype(dtype)
    delta = rng.normal(size=(9, 17)).astype(dtype)
    for inverted in (False, True):
        out, mask = dropout_forward(a, 0.6, seed=5, inverted=inverted)
        g = dropout_backward(delta, mask, 0.6, inverted=inverted)
        lhs = np.sum(delta.astype(np.float64) * out)
        rhs = np.sum(g.astype(np.float64) * a)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inverted_output_times_p_is_plain_output(dtype):
    p = 0.3
    a = np.random.default_rng(9).normal(size=(128, 300)).astype(dtype)
    plain, m_plain = dropout_forward(a, p, seed=6, step=1, layer=2)
    inv, m_inv = dropout_forward(a, p, seed=6, step=1, layer=2, inverted=True)
    np.testing.assert_array_equal(m_plain, m_inv)
    np.testing.assert_array_equal(plain, a * m_plain)  # the notes' convention: exact
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(inv * dtype(p), plain, rtol=2 * eps, atol=0)


# ---------------------------------------------------------------------------------------------
# test-time weight scaling
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 13), (7, 1), (7, 13), (128, 300)])
def test_scale_weights_matches_naive(shape, dtype):
    rng = np.random.default_rng(10)
    W = rng.normal(size=shape).astype(dtype)
    np.testing.assert_array_equal(scale_weights(W, 0.55), naive.scale_weights(W, 0.55))
    pv = rng.uniform(0.1, 1.0, size=shape[0]).astype(dtype)
    np.testing.assert_array_equal(scale_weights(W, pv), naive.scale_weights(W, pv))
    W2 = W.copy()
    assert scale_weights(W2, pv, out=W2) is W2
    np.testing.assert_array_equal(W2, naive.scale_weights(W, pv))
    # row i (unit i's outgoing weights) is scaled by p_i
    np.testing.assert_allclose(
        scale_weights(W, pv), W * pv[:, None].astype(np.float64), rtol=np.finfo(dtype).eps
    )


@pytest.mark.parametrize("per_unit", [False, True])
def test_weight_scaling_gives_expected_output(per_unit):
    # A small linear layer z = (x * m) W + b after a dropout layer of n_in = 5 units.
    # Over M masks the mean of the trained (masked) forward pass must match the single test
    # pass with scaled weights: E[sum_j m_j x_j W_jk] = sum_j p_j x_j W_jk.
    rng = np.random.default_rng(11)
    n_in, n_out, M = 5, 3, 40_000
    x = rng.normal(size=n_in)
    W = rng.normal(size=(n_in, n_out))
    b = rng.normal(size=n_out)
    p = rng.uniform(0.3, 0.9, size=n_in) if per_unit else 0.6
    pv = np.broadcast_to(p, (n_in,))
    xs = np.tile(x, (M, 1))  # one row per mask draw
    if per_unit:
        # per-unit keep probabilities: unit j uses its own p_j (one column at a time)
        masked = np.empty_like(xs)
        for j in range(n_in):
            col = np.ascontiguousarray(xs[:, j : j + 1])
            masked[:, j : j + 1] = dropout_forward(col, float(pv[j]), seed=12, layer=j)[0]
    else:
        masked, _ = dropout_forward(xs, p, seed=12, step=0, layer=0)
    train_mean = (masked @ W + b).mean(axis=0)
    test_out = x @ scale_weights(W, p) + b
    # sd of the Monte-Carlo mean: sqrt(sum_j x_j^2 W_jk^2 p_j (1 - p_j) / M); allow 5 sd.
    sd = np.sqrt((x[:, None] ** 2 * W**2 * (pv * (1 - pv))[:, None]).sum(axis=0) / M)
    assert np.all(np.abs(train_mean - test_out) < 5 * sd), (train_mean, test_out, sd)
    # without scaling the test output would be biased far beyond that tolerance
    assert np.any(np.abs(train_mean - (x @ W + b)) > 20 * sd)


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


A32 = np.ones((3, 4), np.float32)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(p=0.0), ValueError, "p must be >"),
        (dict(p=-0.5), ValueError, "p must be >"),
        (dict(p=1.5), ValueError, "p must be <="),
        (dict(p=float("nan")), ValueError, "p must be finite"),
        (dict(p="0.5"), TypeError, "p must be a real"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed=1.0), TypeError, "seed"),
        (dict(seed=True), TypeError, "seed"),
        (dict(seed=2**63), ValueError, "seed"),
        (dict(step=-1), ValueError, "step"),
        (dict(step=0.5), TypeError, "step"),
        (dict(layer=-2), ValueError, "layer"),
        (dict(layer=None), TypeError, "layer"),
        (dict(row_offset=-1), ValueError, "row_offset"),
        (dict(row_offset=2**63 - 2), ValueError, "row_offset"),  # last row would overflow
    ],
)
def test_counter_and_p_validation(kwargs, exc, match):
    args = dict(p=0.5, seed=0) | kwargs
    with pytest.raises(exc, match=match):
        dropout_mask((3, 4), **args)
    with pytest.raises(exc, match=match):
        dropout_forward(A32, **args)


@pytest.mark.parametrize(
    "a, exc, match",
    [
        ([[1.0, 2.0]], TypeError, "a must be a numpy.ndarray"),
        (np.ones((3, 4), np.int64), TypeError, "a must have dtype"),
        (np.ones((2, 3, 4)), ValueError, "a must have 1 or 2"),
        (np.ones((4, 3)).T, ValueError, "a must be C-contiguous"),
    ],
)
def test_forward_rejects_bad_a(a, exc, match):
    with pytest.raises(exc, match=match):
        dropout_forward(a, 0.5, seed=0)


def test_forward_rejects_bad_buffers_and_inverted():
    with pytest.raises(ValueError, match="out must have shape"):
        dropout_forward(A32, 0.5, seed=0, out=np.empty((4, 3), np.float32))
    with pytest.raises(TypeError, match="out has dtype"):
        dropout_forward(A32, 0.5, seed=0, out=np.empty((3, 4), np.float64))
    with pytest.raises(TypeError, match="mask has dtype"):
        dropout_forward(A32, 0.5, seed=0, mask=np.empty((3, 4), np.float64))
    with pytest.raises(ValueError, match="mask must have shape"):
        dropout_forward(A32, 0.5, seed=0, mask=np.empty((3, 5), np.float32))
    a = A32.copy()
    with pytest.raises(ValueError, match="mask must not overlap a"):
        dropout_forward(a, 0.5, seed=0, mask=a)
    buf = np.empty((3, 4), np.float32)
    with pytest.raises(ValueError, match="mask must not overlap out"):
        dropout_forward(A32, 0.5, seed=0, out=buf, mask=buf)
    ro = np.empty((3, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        dropout_forward(A32, 0.5, seed=0, out=ro)
    with pytest.raises(TypeError, match="inverted"):
        dropout_forward(A32, 0.5, seed=0, inverted="yes")


def test_mask_rejects_bad_shape_and_dtype():
    with pytest.raises(ValueError, match="shape"):
        dropout_mask((2, 3, 4), 0.5, seed=0)
    with pytest.raises(ValueError, match="shape"):
        dropout_mask([2, 3], 0.5, seed=0)
    with pytest.raises(ValueError, match="shape"):
        dropout_mask((2, -3), 0.5, seed=0)
    with pytest.raises(TypeError, match="shape"):
        dropout_mask((2, 3.0), 0.5, seed=0)
    with pytest.raises(TypeError, match="dtype"):
        dropout_mask((2, 3), 0.5, seed=0, dtype=np.int32)


def test_backward_and_apply_validation():
    mask = np.ones((3, 4), np.float32)
    for f, first in ((dropout_backward, "delta"), (dropout_apply, "a")):
        with pytest.raises(TypeError, match=first):
            f(A32.tolist(), mask, 0.5)
        with pytest.raises(TypeError, match="mask has dtype"):
            f(A32, mask.astype(np.float64), 0.5)
        with pytest.raises(ValueError, match="mask must have shape"):
            f(A32, np.ones((3, 5), np.float32), 0.5)
        with pytest.raises(ValueError, match="p must be >"):
            f(A32, mask, 0.0)
        with pytest.raises(TypeError, match="inverted"):
            f(A32, mask, 0.5, inverted=1)
        with pytest.raises(ValueError, match="out must have shape"):
            f(A32, mask, 0.5, out=np.empty((4, 3), np.float32))


def test_scale_weights_validation():
    W = np.ones((3, 2))
    with pytest.raises(TypeError, match="W must be a numpy"):
        scale_weights([[1.0]], 0.5)
    with pytest.raises(ValueError, match="W must have 2"):
        scale_weights(np.ones(3), 0.5)
    with pytest.raises(ValueError, match="p must be >"):
        scale_weights(W, 0.0)
    with pytest.raises(ValueError, match="p must be <="):
        scale_weights(W, 1.01)
    with pytest.raises(ValueError, match="p must have shape"):
        scale_weights(W, np.full(2, 0.5))
    with pytest.raises(TypeError, match="p must have dtype"):
        scale_weights(W, np.ones(3, np.int64))
    for bad in (0.0, 1.5, np.nan):
        with pytest.raises(ValueError, match="p must lie in"):
            scale_weights(W, np.array([0.5, bad, 0.5]))
    with pytest.raises(TypeError, match="out has dtype"):
        scale_weights(W, 0.5, out=np.empty((3, 2), np.float32))
