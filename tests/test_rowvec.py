"""One-row products over packed blocks (kernels/rowvec.py) against NumPy in float64."""

import numpy as np
import pytest
from numba import njit

from dlbasics.kernels import rowvec
from dlbasics.kernels.rowvec import FORWARD, UPDATE, UPDATE_FORWARD

# column counts: below one vector, one, several, a chunk, chunks and tails
NCS = [1, 5, 10, 16, 37, 128, 130, 300]


@njit(cache=True)
def _forward(mode, P, wo, bo, nc, n_in, ws, ho, zo, hp, dp, lr):
    rowvec.row_forward(mode, P, wo, bo, nc, n_in, ws, ho, ws, zo, hp, dp, lr)


@njit(cache=True)
def _grad_x_update(P, wo, bo, nc, n_in, ws, do, ho, xo, lr):
    rowvec.row_grad_x_update(P, wo, bo, nc, n_in, ws, do, ho, xo, lr)


def _setup(nc, n_in, dtype, seed=0):
    """A packed block at offset 3 (W, then b, then a pending row and delta) and a workspace
    with h at 1, z after it, d and dx after that: offsets that are no multiple of a vector."""
    rng = np.random.default_rng(seed)
    wo = 3
    bo = wo + n_in * nc
    hp = bo + nc + 1
    dp = hp + n_in + 2
    P = rng.normal(size=dp + nc + 5).astype(dtype)
    ho, zo = 1, 1 + n_in + 3
    do = zo + nc + 1
    xo = do + nc + 2
    ws = rng.normal(size=xo + n_in + 4).astype(dtype)
    return P, ws, dict(wo=wo, bo=bo, hp=hp, dp=dp, ho=ho, zo=zo, do=do, xo=xo)


def _block(P, o, nc, n_in):
    return P[o["wo"]:o["wo"] + n_in * nc].reshape(n_in, nc), P[o["bo"]:o["bo"] + nc]


def _tol(dtype):
    return 1e-13 if dtype == np.float64 else 2e-5


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nc", NCS)
@pytest.mark.parametrize("n_in", [1, 3, 64])
def test_row_forward_modes(dtype, nc, n_in):
    """FORWARD is h W + b; UPDATE applies lr h'^T d to W and lr d to b exactly as one FMA each
    (checked in float64 against a float64 evaluation of the same single rounding: equal to the
    last bit for float32, where the product of two float32 values is exact); UPDATE_FORWARD
    gives the bits of UPDATE then FORWARD; nothing outside the block, ``z`` and the pending
    row is written."""
    lr = 0.125 if dtype == np.float32 else 0.01
    P, ws, o = _setup(nc, n_in, dtype)
    W0, b0 = (a.copy() for a in _block(P, o, nc, n_in))
    h = ws[o["ho"]:o["ho"] + n_in].astype(np.float64)
    hq = P[o["hp"]:o["hp"] + n_in].copy()
    d = P[o["dp"]:o["dp"] + nc].copy()

    fwd_P, fwd_ws = P.copy(), ws.copy()
    _forward(FORWARD, fwd_P, o["wo"], o["bo"], nc, n_in, fwd_ws, o["ho"], o["zo"], o["hp"],
             o["dp"], lr)
    z = fwd_ws[o["zo"]:o["zo"] + nc]
    np.testing.assert_allclose(z, h @ W0 + b0, rtol=_tol(dtype), atol=_tol(dtype) * n_in)
    np.testing.assert_array_equal(fwd_P, P)
    rest = np.ones(ws.size, bool)
    rest[o["zo"]:o["zo"] + nc] = False
    np.testing.assert_array_equal(fwd_ws[rest], ws[rest])

    upd_P = P.copy()
    _forward(UPDATE, upd_P, o["wo"], o["bo"], nc, n_in, ws.copy(), o["ho"], o["zo"], o["hp"],
             o["dp"], lr)
    W1, b1 = _block(upd_P, o, nc, n_in)
    lr_t = dtype(lr)
    ck = (lr_t * hq).astype(dtype)  # rounded to the dtype, as the kernel rounds lr * h'[k]
    if dtype == np.float32:  # float64 holds the exact product: one rounding, to float32
        want_W = (W0.astype(np.float64) - np.outer(ck.astype(np.float64), d)).astype(dtype)
        want_b = (b0.astype(np.float64) - np.float64(lr_t) * d).astype(dtype)
        np.testing.assert_array_equal(W1, want_W)
        np.testing.assert_array_equal(b1, want_b)
    else:
        np.testing.assert_allclose(W1, W0 - np.outer(ck, d), rtol=1e-15, atol=1e-16)
        np.testing.assert_allclose(b1, b0 - lr * d, rtol=1e-15, atol=1e-16)
    untouched = np.ones(P.size, bool)
    untouched[o["wo"]:o["bo"] + nc] = False
    np.testing.assert_array_equal(upd_P[untouched], P[untouched])

    both_P, both_ws = P.copy(), ws.copy()
    _forward(UPDATE_FORWARD, both_P, o["wo"], o["bo"], nc, n_in, both_ws, o["ho"], o["zo"],
             o["hp"], o["dp"], lr)
    np.testing.assert_array_equal(both_P, upd_P)
    then_ws = ws.copy()
    _forward(FORWARD, upd_P.copy(), o["wo"], o["bo"], nc, n_in, then_ws, o["ho"], o["zo"],
             o["hp"], o["dp"], lr)
    np.testing.assert_array_equal(both_ws, then_ws)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nc", NCS)
@pytest.mark.parametrize("n_in", [1, 3, 64])
def test_row_grad_x_update(dtype, nc, n_in):
    """``dx = d W^T`` with the weights before the update, then the update of W (with ``h``) and
    b, as ``row_forward``'s UPDATE applies it (the same bits); only ``dx``, W and b change."""
    lr = 0.125 if dtype == np.float32 else 0.01
    P, ws, o = _setup(nc, n_in, dtype, seed=1)
    W0, b0 = (a.copy() for a in _block(P, o, nc, n_in))
    d = ws[o["do"]:o["do"] + nc].astype(np.float64)
    got_P, got_ws = P.copy(), ws.copy()
    _grad_x_update(got_P, o["wo"], o["bo"], nc, n_in, got_ws, o["do"], o["ho"], o["xo"], lr)
    dx = got_ws[o["xo"]:o["xo"] + n_in]
    np.testing.assert_allclose(dx, W0.astype(np.float64) @ d, rtol=_tol(dtype),
                               atol=_tol(dtype) * nc)
    rest = np.ones(ws.size, bool)
    rest[o["xo"]:o["xo"] + n_in] = False
    np.testing.assert_array_equal(got_ws[rest], ws[rest])
    # the same update through row_forward's UPDATE, with h and d copied to a pending row
    ref_P = P.copy()
    ref_P[o["hp"]:o["hp"] + n_in] = ws[o["ho"]:o["ho"] + n_in]
    ref_P[o["dp"]:o["dp"] + nc] = ws[o["do"]:o["do"] + nc]
    _forward(UPDATE, ref_P, o["wo"], o["bo"], nc, n_in, ws.copy(), o["ho"], o["zo"], o["hp"],
             o["dp"], lr)
    block = slice(o["wo"], o["bo"] + nc)
    np.testing.assert_array_equal(got_P[block], ref_P[block])
    outside = np.ones(P.size, bool)
    outside[block] = False
    np.testing.assert_array_equal(got_P[outside], P[outside])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nc", NCS)
def test_apply_pending_gives_the_bits_of_the_update(dtype, nc):
    """The column split's end-of-epoch update (plain loops, contracted FMAs) gives the bits of
    ``row_forward``'s UPDATE, which the next row's forward pass would have applied."""
    from dlbasics.kernels.colsplit import apply_pending

    n_in, lr = 37, (0.125 if dtype == np.float32 else 0.01)
    P, ws, o = _setup(nc, n_in, dtype, seed=2)
    P[o["dp"]:o["dp"] + nc] *= 1e3  # updates of the weights' size: the last bit matters
    ref = P.copy()
    _forward(UPDATE, ref, o["wo"], o["bo"], nc, n_in, ws.copy(), o["ho"], o["zo"], o["hp"],
             o["dp"], lr)
    got = P.copy()
    apply_pending(got, o["wo"], o["bo"], nc, n_in, o["hp"], o["dp"], lr)
    np.testing.assert_array_equal(got, ref)
    assert not np.array_equal(got, P)


def test_bad_arguments_are_typing_errors():
    """Mixed dtypes and non-integer offsets fail at compile time, naming the kernel."""
    from numba.core.errors import TypingError

    P = np.zeros(64)
    with pytest.raises(TypingError, match="row_forward"):
        _forward(FORWARD, P, 0, 0, 2, 2, np.zeros(64, np.float32), 0, 0, 0, 0, 0.1)
    with pytest.raises(TypingError, match="row_grad_x_update"):
        _grad_x_update(P, 0.5, 0, 2, 2, P, 0, 0, 0, 0.1)
