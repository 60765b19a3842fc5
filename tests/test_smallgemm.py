"""Register-blocked small products (kernels/smallgemm.py) against NumPy in float64."""

import numpy as np
import pytest
from numba import njit

from dlbasics.kernels import smallgemm as sg

#: No row index: the rows of ``H`` in place.
NOIDX, INPLACE = np.zeros(1, np.int64), -1


@njit(cache=True)
def _forward(B, n_in, nc, H, ho, ldh, P, wo, bo, Z, zo, ldz, hidx=NOIDX, hio=INPLACE):
    sg.block_forward(B, n_in, nc, H, ho, ldh, hidx, hio, P, wo, bo, Z, zo, ldz)


@njit(cache=True)
def _update(B, n_in, nc, H, ho, ldh, D, do, ldd, P, wo, lr, hidx=NOIDX, hio=INPLACE):
    sg.block_update(B, n_in, nc, H, ho, ldh, hidx, hio, D, do, ldd, P, wo, lr)


@njit(cache=True)
def _forward_grouped(B, n_in, nc, H, ho, ldh, P, wo, bo, Z, zo, ldz, hidx=NOIDX, hio=INPLACE):
    sg.block_forward_grouped(B, n_in, nc, H, ho, ldh, hidx, hio, P, wo, bo, Z, zo, ldz)


@njit(cache=True)
def _grad_w(B, n_in, nc, H, ho, ldh, D, do, ldd, G, go, hidx=NOIDX, hio=INPLACE):
    sg.block_grad_w(B, n_in, nc, H, ho, ldh, hidx, hio, D, do, ldd, G, go)


@njit(cache=True)
def _grad_x(B, n_in, nc, D, do, ldd, P, wo, X, xo, ldx):
    sg.block_grad_x(B, n_in, nc, D, do, ldd, P, wo, X, xo, ldx)


# rows (blocks of MR and single rows), inputs, columns (chunks, single vectors, masked tails);
# the last two cross panels: 600 inputs are three of the forward product's 256, and 300 inputs
# of 300 columns several of back-propagation's
SHAPES = [(1, 1, 1), (3, 5, 10), (4, 7, 16), (8, 33, 37), (9, 64, 128), (32, 20, 130),
          (5, 6, 300), (6, 600, 20), (5, 300, 300)]


def _tol(dtype):
    return (1e-13, 1e-13) if dtype == np.float64 else (3e-5, 3e-5)


def _strided(rng, rows, cols, ld, off, dtype):
    """A flat array holding a ``rows x cols`` matrix from ``off``, rows ``ld`` apart, with
    other values around it; the matrix in float64."""
    flat = rng.normal(size=off + rows * ld + 7).astype(dtype)
    M = flat[off:off + rows * ld].reshape(rows, ld)[:, :cols].astype(np.float64)
    return flat, M


def _packed(rng, n_in, nc, dtype):
    wo, bo = 5, 5 + n_in * nc + 3
    P = rng.normal(size=bo + nc + 4).astype(dtype)
    W = P[wo:wo + n_in * nc].reshape(n_in, nc).astype(np.float64)
    return P, wo, bo, W, P[bo:bo + nc].astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_block_forward(dtype, shape):
    """``Z = b + H W`` within rounding; nothing else of ``Z``'s array written."""
    B, n_in, nc = shape
    rng = np.random.default_rng(sum(shape))
    H, Hm = _strided(rng, B, n_in, n_in + 3, 2, dtype)
    P, wo, bo, W, b = _packed(rng, n_in, nc, dtype)
    Z0 = rng.normal(size=1 + B * (nc + 5) + 3).astype(dtype)
    Z = Z0.copy()
    _forward(B, n_in, nc, H, 2, n_in + 3, P, wo, bo, Z, 1, nc + 5)
    got = Z[1:1 + B * (nc + 5)].reshape(B, nc + 5)[:, :nc]
    rtol, atol = _tol(dtype)
    np.testing.assert_allclose(got, b + Hm @ W, rtol=rtol, atol=atol * n_in)
    inside = np.zeros(Z.size, bool)
    inside[1:1 + B * (nc + 5)].reshape(B, nc + 5)[:, :nc] = True
    np.testing.assert_array_equal(Z[~inside], Z0[~inside])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES + [(6, 300, 600), (9, 5, 1100)])
def test_block_forward_grouped(dtype, shape):
    """The grouped loop order gives block_forward's bits, with a row index too, across
    groups of columns (600 and 1100 columns: several groups, the last one short)."""
    B, n_in, nc = shape
    rng = np.random.default_rng(sum(shape) + 9)
    H, _ = _strided(rng, B + 3, n_in, n_in + 3, 2, dtype)
    P, wo, bo, _, _ = _packed(rng, n_in, nc, dtype)
    order = rng.permutation(B + 3).astype(np.int64)
    for hidx, hio in ((NOIDX, INPLACE), (order, 2)):
        Z0 = rng.normal(size=1 + B * (nc + 5) + 3).astype(dtype)
        Z1, Z2 = Z0.copy(), Z0.copy()
        _forward(B, n_in, nc, H, 2, n_in + 3, P, wo, bo, Z1, 1, nc + 5, hidx, hio)
        _forward_grouped(B, n_in, nc, H, 2, n_in + 3, P, wo, bo, Z2, 1, nc + 5, hidx, hio)
        np.testing.assert_array_equal(Z2, Z1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_block_update(dtype, shape):
    """``W - lr H^T D`` within rounding; the biases and everything around W untouched."""
    B, n_in, nc = shape
    rng = np.random.default_rng(sum(shape) + 1)
    H, Hm = _strided(rng, B, n_in, n_in + 1, 3, dtype)
    D, Dm = _strided(rng, B, nc, nc + 9, 4, dtype)
    P, wo, bo, W, _ = _packed(rng, n_in, nc, dtype)
    P0 = P.copy()
    _update(B, n_in, nc, H, 3, n_in + 1, D, 4, nc + 9, P, wo, 0.25)
    got = P[wo:wo + n_in * nc].reshape(n_in, nc)
    rtol, atol = _tol(dtype)
    np.testing.assert_allclose(got, W - 0.25 * (Hm.T @ Dm), rtol=rtol, atol=atol * B)
    outside = np.ones(P.size, bool)
    outside[wo:wo + n_in * nc] = False
    np.testing.assert_array_equal(P[outside], P0[outside])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES + [(6, 30, 600), (9, 5, 1100)])
def test_block_grad_w(dtype, shape):
    """``G = H^T D`` within rounding, overwritten whatever it held, bitwise the sum that the
    update subtracts (:func:`block_update` with ``lr = -1`` on zeros adds it once, exactly);
    nothing around ``G`` written."""
    B, n_in, nc = shape
    rng = np.random.default_rng(sum(shape) + 5)
    H, Hm = _strided(rng, B, n_in, n_in + 1, 3, dtype)
    D, Dm = _strided(rng, B, nc, nc + 9, 4, dtype)
    go = 6
    G0 = rng.normal(size=go + n_in * nc + 5).astype(dtype)
    G = G0.copy()
    _grad_w(B, n_in, nc, H, 3, n_in + 1, D, 4, nc + 9, G, go)
    got = G[go:go + n_in * nc].reshape(n_in, nc)
    rtol, atol = _tol(dtype)
    np.testing.assert_allclose(got, Hm.T @ Dm, rtol=rtol, atol=atol * B)
    zeros = np.zeros_like(G0)
    _update(B, n_in, nc, H, 3, n_in + 1, D, 4, nc + 9, zeros, go, -1.0)
    np.testing.assert_array_equal(got, zeros[go:go + n_in * nc].reshape(n_in, nc))
    outside = np.ones(G.size, bool)
    outside[go:go + n_in * nc] = False
    np.testing.assert_array_equal(G[outside], G0[outside])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_block_grad_x(dtype, shape):
    """``X = D W^T`` within rounding; nothing else of ``X``'s array written; the same inputs
    give the same bits."""
    B, n_in, nc = shape
    rng = np.random.default_rng(sum(shape) + 2)
    D, Dm = _strided(rng, B, nc, nc + 2, 1, dtype)
    P, wo, _, W, _ = _packed(rng, n_in, nc, dtype)
    X0 = rng.normal(size=2 + B * (n_in + 4) + 5).astype(dtype)
    X = X0.copy()
    _grad_x(B, n_in, nc, D, 1, nc + 2, P, wo, X, 2, n_in + 4)
    got = X[2:2 + B * (n_in + 4)].reshape(B, n_in + 4)[:, :n_in]
    rtol, atol = _tol(dtype)
    np.testing.assert_allclose(got, Dm @ W.T, rtol=rtol, atol=atol * nc)
    inside = np.zeros(X.size, bool)
    inside[2:2 + B * (n_in + 4)].reshape(B, n_in + 4)[:, :n_in] = True
    np.testing.assert_array_equal(X[~inside], X0[~inside])
    again = X0.copy()
    _grad_x(B, n_in, nc, D, 1, nc + 2, P, wo, again, 2, n_in + 4)
    np.testing.assert_array_equal(again, X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_by_index(dtype):
    """With a row index (``hidx[hio + i]``: a batch's rows of a data set, read where they lie)
    the forward product, the update and the weight gradient give the bits of the rows gathered
    first."""
    rng = np.random.default_rng(7)
    n_rows, n_in, nc, B = 40, 33, 37, 9
    X = rng.normal(size=n_rows * n_in).astype(dtype)
    order = rng.permutation(n_rows).astype(np.int64)
    start = 13
    G = X.reshape(n_rows, n_in)[order[start:start + B]].ravel().copy()
    P, wo, bo, _, _ = _packed(rng, n_in, nc, dtype)
    Z1, Z2 = np.zeros(B * nc, dtype), np.zeros(B * nc, dtype)
    _forward(B, n_in, nc, X, 0, n_in, P, wo, bo, Z1, 0, nc, order, start)
    _forward(B, n_in, nc, G, 0, n_in, P, wo, bo, Z2, 0, nc)
    np.testing.assert_array_equal(Z1, Z2)
    D = rng.normal(size=B * nc).astype(dtype)
    P1, P2 = P.copy(), P.copy()
    _update(B, n_in, nc, X, 0, n_in, D, 0, nc, P1, wo, 0.5, order, start)
    _update(B, n_in, nc, G, 0, n_in, D, 0, nc, P2, wo, 0.5)
    np.testing.assert_array_equal(P1, P2)
    assert not np.array_equal(P1, P)
    G1, G2 = np.zeros(n_in * nc, dtype), np.zeros(n_in * nc, dtype)
    _grad_w(B, n_in, nc, X, 0, n_in, D, 0, nc, G1, 0, order, start)
    _grad_w(B, n_in, nc, G, 0, n_in, D, 0, nc, G2, 0)
    np.testing.assert_array_equal(G1, G2)


def test_bad_arguments_are_typing_errors():
    from numba.core.errors import TypingError

    a = np.zeros(8)
    with pytest.raises(TypingError, match="block_forward"):
        _forward(1, 1, 1, a, 0, 1, a.astype(np.float32), 0, 0, a, 0, 1)
    with pytest.raises(TypingError, match="block_update"):
        _update(1, 1, 1, a, 0, 1, a, 0, 1, a, 0, "x")
    with pytest.raises(TypingError, match="block_grad_w"):
        _grad_w(1, 1, 1, a, 0, 1, a, 0, 1, a.astype(np.float32), 0)
    with pytest.raises(TypingError, match="block_grad_x"):
        _grad_x(1, 1, 1.5, a, 0, 1, a, 0, a, 0, 1)
    with pytest.raises(TypingError, match="row index"):
        _forward(1, 1, 1, a, 0, 1, a, 0, 0, a, 0, 1, np.zeros(2, np.int32), 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_256_bit_vectors(monkeypatch, dtype):
    """The code emitted for a CPU without AVX-512 (256-bit vectors: 2 x 4 register blocks, 4
    vectors a row chunk), compiled here with the module constants set as such a CPU sets them,
    against NumPy: the four products, the grouped forward product and the one-row kernels."""
    from dlbasics.kernels import rowvec

    monkeypatch.setattr(sg, "VEC_BYTES", 32)
    monkeypatch.setattr(sg, "MR", 2)
    monkeypatch.setattr(rowvec, "VEC_BYTES", 32)
    monkeypatch.setattr(rowvec, "NV", 4)

    @njit
    def products(B, n_in, nc, H, P, Z, D, X, G, Zg):
        sg.block_forward(B, n_in, nc, H, 0, n_in, NOIDX, INPLACE, P, 0, n_in * nc, Z, 0, nc)
        sg.block_grad_x(B, n_in, nc, D, 0, nc, P, 0, X, 0, n_in)
        sg.block_grad_w(B, n_in, nc, H, 0, n_in, NOIDX, INPLACE, D, 0, nc, G, 0)
        sg.block_forward_grouped(B, n_in, nc, H, 0, n_in, NOIDX, INPLACE, P, 0, n_in * nc, Zg, 0,
                                 nc)
        sg.block_update(B, n_in, nc, H, 0, n_in, NOIDX, INPLACE, D, 0, nc, P, 0, 0.5)

    @njit
    def one_row(n_in, nc, P, ws):
        rowvec.row_forward(0, P, 0, n_in * nc, nc, n_in, ws, 0, ws, n_in, 0, 0, 0.5)
        rowvec.row_grad_x_update(P, 0, n_in * nc, nc, n_in, ws, n_in, 0, n_in + nc, 0.5)

    rng = np.random.default_rng(3)
    for B, n_in, nc in [(5, 9, 37), (8, 300, 70)]:
        H = rng.normal(size=B * n_in).astype(dtype)
        P = rng.normal(size=n_in * nc + nc).astype(dtype)
        D = rng.normal(size=B * nc).astype(dtype)
        Z, X, G = np.zeros(B * nc, dtype), np.zeros(B * n_in, dtype), np.ones(n_in * nc, dtype)
        W, b = P[:n_in * nc].reshape(n_in, nc).astype(np.float64), P[n_in * nc:].copy()
        Hm, Dm = H.reshape(B, n_in).astype(np.float64), D.reshape(B, nc).astype(np.float64)
        Zg = np.zeros(B * nc, dtype)
        products(B, n_in, nc, H, P, Z, D, X, G, Zg)
        np.testing.assert_array_equal(Zg, Z)
        rtol, atol = _tol(dtype)
        np.testing.assert_allclose(G.reshape(n_in, nc), Hm.T @ Dm, rtol=rtol, atol=atol * B)
        np.testing.assert_allclose(Z.reshape(B, nc), b + Hm @ W, rtol=rtol, atol=atol * n_in)
        np.testing.assert_allclose(X.reshape(B, n_in), Dm @ W.T, rtol=rtol, atol=atol * nc)
        np.testing.assert_allclose(P[:n_in * nc].reshape(n_in, nc), W - 0.5 * (Hm.T @ Dm),
                                   rtol=rtol, atol=atol * B)
        Q = rng.normal(size=n_in * nc + nc).astype(dtype)
        ws = rng.normal(size=n_in + nc + n_in).astype(dtype)
        W, b = Q[:n_in * nc].reshape(n_in, nc).astype(np.float64), Q[n_in * nc:].astype(
            np.float64)
        h = ws[:n_in].astype(np.float64)
        one_row(n_in, nc, Q, ws)  # z, then z taken as the delta of the backward pass
        z = ws[n_in:n_in + nc].astype(np.float64)
        np.testing.assert_allclose(z, h @ W + b, rtol=rtol, atol=atol * n_in)
        np.testing.assert_allclose(ws[n_in + nc:], W @ z, rtol=rtol, atol=atol * nc * 10)
        np.testing.assert_allclose(Q[:n_in * nc].reshape(n_in, nc), W - 0.5 * np.outer(h, z),
                                   rtol=rtol, atol=atol * 10)
