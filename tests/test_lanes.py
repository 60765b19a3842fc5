"""Register-blocked lane products (dlbasics.kernels.lanes) against plain loops, bit for bit."""

import numpy as np
import pytest
from numba import njit

from dlbasics.kernels import lanes


@njit
def _run(bias, out, o_off, o_ms, o_ns, a, a_off, a_ts, a_ms, b, b_off, b_ts, b_ns, init, i_off,
         M, N, T, C):
    lanes.block_product(bias, out, o_off, o_ms, o_ns, a, a_off, a_ts, a_ms, b, b_off, b_ts, b_ns,
                        init, i_off, M, N, T, C)


def _naive(bias, out, o_off, o_ms, o_ns, a, a_off, a_ts, a_ms, b, b_off, b_ts, b_ns, init,
           i_off, M, N, T, C):
    """The plain loops: every lane summed term by term, ``t`` ascending, each product and sum
    rounded to the dtype (NumPy's float32 arithmetic rounds every operation)."""

    def vec(arr, e):
        return arr[e * C:(e + 1) * C]

    for m in range(M):
        for n in range(N):
            if bias:
                acc, t0 = vec(init, i_off + n).copy(), 0
            else:
                acc, t0 = vec(a, a_off + m * a_ms) * vec(b, b_off + n * b_ns), 1
            for t in range(t0, T):
                acc = acc + vec(a, a_off + t * a_ts + m * a_ms) * vec(b, b_off + t * b_ts
                                                                        + n * b_ns)
            out[(o_off + m * o_ms + n * o_ns) * C:(o_off + m * o_ms + n * o_ns + 1) * C] = acc


# (M, N, T, C): full blocks, every kind of leftover row and column, lanes past the last full
# vector (C not a multiple of 16 or 8), one term, and the shapes of 2-16-16-1 at batch 32
SHAPES = [(32, 16, 16, 128), (7, 5, 3, 19), (1, 1, 1, 4), (5, 9, 1, 16), (3, 2, 2, 33),
          (32, 1, 16, 32), (16, 16, 32, 32), (2, 16, 32, 8), (4, 4, 4, 3)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_block_product_equals_plain_loops(shape, bias, dtype):
    M, N, T, C = shape
    rng = np.random.default_rng(M * 1000 + N * 100 + T * 10 + C)
    # A[t, m] at 2 + t * M + m, B[t, n] at 1 + n * T + t (rows and columns both strided),
    # out[m, n] at 3 + m * N + n, init[n] at 1 + n; margins around every region
    a = rng.standard_normal((M * T + 4) * C).astype(dtype)
    b = rng.standard_normal((N * T + 3) * C).astype(dtype)
    init = rng.standard_normal((N + 2) * C).astype(dtype)
    out = rng.standard_normal((M * N + 5) * C).astype(dtype)
    ref = out.copy()
    args = (3, N, 1, a, 2, M, 1, b, 1, 1, T, init, 1, M, N, T, C)
    _run(bias, out, *args)
    _naive(bias, ref, *args)
    np.testing.assert_array_equal(out, ref)  # including the margins, left untouched


def test_block_shape_fits_the_registers():
    assert lanes.VEC_BYTES in (32, 64)
    assert lanes.MR * lanes.NR + lanes.MR + lanes.NR <= (32 if lanes.VEC_BYTES == 64 else 16)


def test_lane_block_rejects_non_contiguous_arrays():
    from numba.core.errors import TypingError

    @njit
    def bad(x):
        lanes.lane_block(x, 0, 1, 1, x, 0, 1, 1, x, 0, 1, 1, x, 0, 1, 4)

    with pytest.raises(TypingError, match="contiguous"):
        bad(np.zeros((8, 8), np.float32)[:, 0])
