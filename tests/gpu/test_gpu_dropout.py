"""GPU dropout: masks equal to the CPU's bit for bit, and the masked arithmetic."""

import numpy as np
import pytest

from dlbasics.kernels import dropout as dk
from dlbasics.kernels.gpu_dropout import (
    gpu_dropout_apply,
    gpu_dropout_backward,
    gpu_dropout_forward,
    gpu_dropout_mask,
    gpu_scale_weights,
    launch_layer_dropout,
)
from tests import naive
from tests.gpu.conftest import assert_close, host

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, p, counters",
    [
        ((1, 1), 0.5, (0, 0, 0, 0)),
        ((7, 13), 0.8, (3, 5, 1, 0)),
        ((13,), 0.3, (1, 2, 3, 4)),
        ((5, 9), 1.0, (9, 9, 9, 9)),
        ((6, 11), 0.5, (2**63 - 1, 2**62, 7, 2**63 - 10)),
    ],
)
def test_mask_equals_cpu_exactly(shape, p, counters, dtype):
    seed, step, layer, row_offset = counters
    got = gpu_dropout_mask(shape, p, seed, step, layer, row_offset, dtype=dtype)
    want = dk.dropout_mask(shape, p, seed, step, layer, row_offset, dtype=dtype)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    if max(counters) < 1000:
        np.testing.assert_array_equal(
            got, naive.dropout_mask(shape, p, seed, step, layer, row_offset, dtype)
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inverted", [False, True])
def test_forward_apply_backward_match_cpu(inverted, dtype, rng):
    a = rng.normal(size=(6, 10)).astype(dtype)
    out, mask = gpu_dropout_forward(a, 0.7, 11, step=4, layer=2, row_offset=3, inverted=inverted)
    cout, cmask = dk.dropout_forward(a, 0.7, 11, step=4, layer=2, row_offset=3,
                                     inverted=inverted)
    np.testing.assert_array_equal(mask, cmask)
    np.testing.assert_array_equal(out, cout)
    s = 1 / 0.7 if inverted else 1.0
    np.testing.assert_array_equal(gpu_dropout_apply(a, mask, 0.7, inverted=inverted),
                                  dk.dropout_apply(a, mask, 0.7, inverted=inverted))
    np.testing.assert_array_equal(gpu_dropout_apply(a, mask, 0.7, inverted=inverted),
                                  naive.dropout_apply(a, mask, s))
    np.testing.assert_array_equal(gpu_dropout_backward(a, mask, 0.7, inverted=inverted),
                                  naive.dropout_backward(a, mask, s))


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_weights(dtype, rng):
    W = rng.normal(size=(5, 3)).astype(dtype)
    p = rng.uniform(0.1, 1.0, size=5)
    assert_close(gpu_scale_weights(W, p), naive.scale_weights(W, p))
    np.testing.assert_array_equal(gpu_scale_weights(W, 0.5), dk.scale_weights(W, 0.5))


@pytest.mark.parametrize("inverted", [False, True])
def test_layer_variant_matches_the_mlp_core(inverted, rng):
    """The MLP's dropout (mask holds the scale, rows counted within the batch) equals what
    dlbasics.models._core computes: mask from dlbasics.kernels.dropout with row_offset 0, times the
    scale."""
    from numba import cuda

    h = rng.normal(size=(5, 8)).astype(np.float32)
    p = 0.6
    scale = 1 / p if inverted else 1.0
    hd, m = cuda.device_array_like(h), cuda.device_array_like(h)
    launch_layer_dropout(cuda.to_device(h), hd, m, 21, 3, 1, p, scale, True)
    keep = dk.dropout_mask(h.shape, p, 21, 3, 1, 0, dtype=np.float64)
    want_m = (keep * scale).astype(np.float32)
    np.testing.assert_array_equal(host(m), want_m)
    np.testing.assert_array_equal(host(hd), h * want_m)
    launch_layer_dropout(cuda.to_device(h), hd, m, 21, 3, 1, p, scale, False)
    np.testing.assert_array_equal(host(hd), (h * np.float64(p)).astype(np.float32))


def test_device_mode(rng):
    from numba import cuda

    a = rng.normal(size=(4, 6)).astype(np.float32)
    out, mask = gpu_dropout_forward(cuda.to_device(a), 0.5, 1)
    assert not isinstance(mask, np.ndarray)
    np.testing.assert_array_equal(host(mask), dk.dropout_mask(a.shape, 0.5, 1))
    d = gpu_dropout_mask((4, 6), 0.5, 1, device=True)
    np.testing.assert_array_equal(host(d), host(mask))


def test_errors_before_launch(rng):
    a = rng.normal(size=(4, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="p"):
        gpu_dropout_forward(a, 0.0, 1)
    with pytest.raises(ValueError, match="seed"):
        gpu_dropout_mask((2, 2), 0.5, -1)
    with pytest.raises(ValueError, match="overlap"):
        gpu_dropout_forward(a, 0.5, 1, mask=a)
    with pytest.raises(TypeError, match="inverted"):
        gpu_dropout_apply(a, a, 0.5, inverted="yes")
    with pytest.raises(ValueError, match="shape"):
        gpu_scale_weights(a, np.full(3, 0.5))
