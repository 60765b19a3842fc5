"""Borrowed views (dlbasics.kernels.views): same elements as the slices they replace, and stores
through
them survive Numba's dead-code elimination in every calling pattern the kernels use."""

from collections import namedtuple

import numpy as np
import pytest
from numba import njit, prange
from numba.core.errors import TypingError

from dlbasics.kernels.views import borrow, grid, lent, row, span


@njit(cache=True)
def _span_sum(a, off, n):
    v = span(a, off, n)
    return v.sum(), v.shape[0]


@njit(cache=True)
def _grid_copy(a, off, r, c):
    return grid(a, off, r, c).copy()


@njit(cache=True)
def _row_copy(a, i):
    return row(a, i).copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_views_hold_the_slices_elements(dtype):
    a = np.arange(30).astype(dtype)
    s, n = _span_sum(a, 7, 5)
    assert n == 5 and s == a[7:12].sum()
    np.testing.assert_array_equal(_grid_copy(a, 3, 4, 6), a[3:27].reshape(4, 6))
    m = a.reshape(5, 6)
    for i in range(5):
        np.testing.assert_array_equal(_row_copy(m, i), m[i])
    assert _grid_copy(a, 0, 2, 3).dtype == dtype


def test_row_and_span_fall_back_to_ordinary_views_for_other_layouts():
    f = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(_row_copy(f, 2), f[2])
    strided = np.arange(20.0)[::2]
    s, n = _span_sum(strided, 2, 3)
    assert n == 3 and s == strided[2:5].sum()


@njit(inline="always")
def _put_inline(c, out, value):
    out[c] = value


@njit
def _put_call(c, out, value):
    out[c] = value


@njit(cache=True)
def _stores_through_views(m, flat, labels):
    # Run-time indices through a view handed to an IR-inlined function, to a called function,
    # and directly: each store must land (Numba's dead-code elimination once dropped the first).
    for i in range(m.shape[0]):
        _put_inline(labels[i], row(m, i), 1.0)
        _put_call(labels[i], span(flat, i * 4, 4), 2.0)
        g = grid(flat, 0, 3, 4)
        g[i, labels[i]] += 10.0


@njit(cache=True, parallel=True)
def _stores_in_prange(a):
    b = borrow(a)
    for i in prange(b.shape[0] // 4):
        s = span(b, 4 * i, 4)
        s[i % 4] = i + 1.0


def test_stores_through_views_are_kept():
    labels = np.array([2, 0, 3])
    m = np.zeros((3, 4))
    flat = np.zeros(12)
    _stores_through_views(m, flat, labels)
    expect = np.zeros((3, 4))
    expect[np.arange(3), labels] = 1.0
    np.testing.assert_array_equal(m, expect)
    np.testing.assert_array_equal(flat.reshape(3, 4), 12.0 * expect)
    a = np.zeros(32)
    _stores_in_prange(a)
    want = np.zeros(32)
    for i in range(8):
        want[4 * i + i % 4] = i + 1.0
    np.testing.assert_array_equal(a, want)


@njit(cache=True)
def _borrow_then_call(a):
    b = borrow(a)
    for i in range(b.shape[0]):
        _put_call(i, b, 3.0)
    b[1:3][0] = 9.0
    return b.sum()


def test_borrow_is_the_same_array():
    a = np.zeros(5)
    assert _borrow_then_call(a) == 21.0
    np.testing.assert_array_equal(a, [3.0, 9.0, 3.0, 3.0, 3.0])


def test_views_reject_what_they_cannot_view():
    @njit
    def grid_of_2d(a):
        return grid(a, 0, 1, 1)

    @njit
    def span_with_float_offset(a):
        return span(a, 1.5, 2)

    with pytest.raises(TypingError, match="1-D C-contiguous"):
        grid_of_2d(np.zeros((2, 2)))
    with pytest.raises(TypingError, match="integer"):
        span_with_float_offset(np.zeros(4))


Rec = namedtuple("Rec", ["a", "scale", "m"])


@njit(cache=True)
def _lent_then_store(r):
    a = lent(r, "a")  # a borrowed view of the field: stores reach the caller's array
    m = lent(r, "m")
    for i in range(a.shape[0]):
        a[i] = a[i] * r.scale + m[0, i]
    return lent(r, "scale"), a.sum()


def test_lent_gives_the_field_itself():
    a = np.arange(4.0)
    m = np.ones((2, 4))
    scale, total = _lent_then_store(Rec(a, 2.0, m))
    assert scale == 2.0 and total == 16.0
    np.testing.assert_array_equal(a, [1.0, 3.0, 5.0, 7.0])


def test_lent_rejects_what_it_cannot_take():
    @njit
    def from_a_plain_tuple(t):
        return lent(t, "a")

    @njit
    def unknown_field(r):
        return lent(r, "b")

    with pytest.raises(TypingError, match="named tuple"):
        from_a_plain_tuple((np.zeros(2), 1.0))
    with pytest.raises(TypingError, match="no field 'b'"):
        unknown_field(Rec(np.zeros(2), 1.0, np.zeros((1, 2))))


def test_prefetch_hints_change_nothing_and_check_their_arguments():
    """``prefetch`` and ``prefetch_write`` compile for rows of 2-D arrays and elements of 1-D
    ones (an address past the end is taken as a hint too) and leave every value as it was;
    other arguments fail at typing. (Whether the CPU acts on the hint is not observable
    here.)"""
    from dlbasics.kernels.views import prefetch, prefetch_write

    @njit
    def touch(X, v, n):
        s = 0.0
        for i in range(n):
            prefetch(X, i % X.shape[0], 4 * (i % 7))
            prefetch_write(v, i, 0)  # i runs past the end of v
            s += X[i % X.shape[0], 0]
        return s

    X = np.arange(40.0, dtype=np.float32).reshape(10, 4)
    v = np.arange(5, dtype=np.int64)
    X0, v0 = X.copy(), v.copy()
    assert touch(X, v, 25) == sum(float(X0[i % 10, 0]) for i in range(25))
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(v, v0)

    @njit
    def bad_array(a):
        prefetch(a, 0, 0)

    @njit
    def bad_index(a):
        prefetch(a, 0.5, 0)

    with pytest.raises(TypingError, match="1-D or 2-D array"):
        bad_array(np.zeros((2, 2, 2)))
    with pytest.raises(TypingError, match="integer"):
        bad_index(np.zeros(3))
