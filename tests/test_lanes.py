"""Register-blocked lane products (dlbasics.kernels.lanes) against plain loops, bit for bit."""

import numpy as np
import pytest
from numba import njit

from dlbasics.kernels import lanes
from dlbasics.kernels.activations import TANH, dact_mul_flat


@njit
def _run(mode, out, o_off, o_ms, o_ns, a, a_off, a_ts, a_ms, b, b_off, b_ts, b_ns, init, i_off,
         e, e_off, M, N, T, C):
    lanes.block_product(mode, out, o_off, o_ms, o_ns, a, a_off, a_ts, a_ms, b, b_off, b_ts, b_ns,
                        init, i_off, e, e_off, M, N, T, C)


@njit
def _dact_tanh(z, a, d):
    dact_mul_flat(TANH, z, a, d, d, 0.0)


def _naive(mode, out, o_off, o_ms, o_ns, a, a_off, a_ts, a_ms, b, b_off, b_ts, b_ns, init,
           i_off, e, e_off, M, N, T, C):
    """The plain loops: every lane summed term by term, ``t`` ascending, each product and sum
    rounded to the dtype (NumPy's float32 arithmetic rounds every operation); the ``tanh``
    derivative by the activations' own kernel, ``dact_mul_flat``."""

    def vec(arr, k):
        return arr[k * C:(k + 1) * C]

    for m in range(M):
        for n in range(N):
            if mode == lanes.INIT_BIAS:
                acc, t0 = vec(init, i_off + n).copy(), 0
            else:
                acc, t0 = vec(a, a_off + m * a_ms) * vec(b, b_off + n * b_ns), 1
            for t in range(t0, T):
                acc = acc + vec(a, a_off + t * a_ts + m * a_ms) * vec(b, b_off + t * b_ts
                                                                        + n * b_ns)
            if mode == lanes.FIRST_DTANH:
                act = vec(e, e_off + m * o_ms + n * o_ns)
                _dact_tanh(act.copy(), act.copy(), acc)
            out[(o_off + m * o_ms + n * o_ns) * C:(o_off + m * o_ms + n * o_ns + 1) * C] = acc


# (M, N, T, C): full blocks, every kind of leftover row and column, lanes past the last full
# vector (C not a multiple of 16 or 8), one term, and the shapes of 2-16-16-1 at batch 32
SHAPES = [(32, 16, 16, 128), (7, 5, 3, 19), (1, 1, 1, 4), (5, 9, 1, 16), (3, 2, 2, 33),
          (32, 1, 16, 32), (16, 16, 32, 32), (2, 16, 32, 8), (4, 4, 4, 3)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", [lanes.INIT_BIAS, lanes.INIT_FIRST, lanes.FIRST_DTANH])
@pytest.mark.parametrize("shape", SHAPES)
def test_block_product_equals_plain_loops(shape, mode, dtype):
    M, N, T, C = shape
    rng = np.random.default_rng(M * 1000 + N * 100 + T * 10 + C)
    # A[t, m] at 2 + t * M + m, B[t, n] at 1 + n * T + t (rows and columns both strided),
    # out[m, n] at 3 + m * N + n, init[n] at 1 + n, activations e[m, n] at 2 + m * N + n; margins
    # around every region
    a = rng.standard_normal((M * T + 4) * C).astype(dtype)
    b = rng.standard_normal((N * T + 3) * C).astype(dtype)
    init = rng.standard_normal((N + 2) * C).astype(dtype)
    e = np.tanh(rng.standard_normal((M * N + 4) * C)).astype(dtype)
    out = rng.standard_normal((M * N + 5) * C).astype(dtype)
    ref = out.copy()
    args = (3, N, 1, a, 2, M, 1, b, 1, 1, T, init, 1, e, 2, M, N, T, C)
    _run(mode, out, *args)
    _naive(mode, ref, *args)
    np.testing.assert_array_equal(out, ref)  # including the margins, left untouched


def test_block_shape_fits_the_registers():
    assert lanes.VEC_BYTES in (32, 64)
    assert lanes.MR * lanes.NR + lanes.MR + lanes.NR <= (32 if lanes.VEC_BYTES == 64 else 16)


def test_lane_block_rejects_non_contiguous_arrays():
    from numba.core.errors import TypingError

    @njit
    def bad(x):
        lanes.lane_block(0, x, 0, 1, 1, x, 0, 1, 1, x, 0, 1, 1, x, 0, x, 0, 1, 4)

    with pytest.raises(TypingError, match="contiguous"):
        bad(np.zeros((8, 8), np.float32)[:, 0])
