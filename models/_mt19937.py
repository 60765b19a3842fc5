"""``numpy.random.RandomState.shuffle`` of a 1-D array, in compiled code, with the same draws.

scikit-learn's stochastic solvers shuffle the sample indices at the start of every epoch with
their ``RandomState`` (``sklearn.utils.shuffle``: ``RandomState.shuffle`` of ``arange(n)``);
the drop-in estimators make the same permutations, so that their batches hold the same rows as
scikit-learn's. ``RandomState.shuffle`` took 24 us for digits' 1,797 indices and 1.29 ms for
100,000 on the 2-core benchmark machine (AMD EPYC, Zen 4): about 4% of our ``fit`` of digits (100
epochs, 56 ms) and 7% of the 100,000 rows' (5 epochs, 85-90 ms;
:mod:`dlbasics.studies.speed.sklearn_fit`); here 3.8 us and 0.21 ms (:func:`mt_shuffle`).
Reading and writing the generator's state costs another 35 us each, so
:class:`LegacyShuffler` takes the state once per ``fit``, shuffles every epoch in
:func:`mt_shuffle` and puts the state back when the ``fit`` ends.

The generator is the legacy ``RandomState``'s: MT19937 (Matsumoto and Nishimura 1998) as NumPy
implements it (``mt19937_gen``, ``mt19937_next32``), and the shuffle is NumPy's Fisher-Yates
from the last element down, each index drawn by ``random_interval``: 32-bit words masked to the
smallest all-ones mask covering the bound, rejected while above it (the 64-bit branch, for
arrays of more than 2**32 elements, is not needed here: :class:`LegacyShuffler` leaves those to
NumPy).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_N = 624
_M = 397
_MATRIX_A = np.uint64(0x9908B0DF)
_UPPER = np.uint64(0x80000000)
_LOWER = np.uint64(0x7FFFFFFF)
_ONE = np.uint64(1)


@njit(inline="always", cache=True)
def _twist(key, i, j, k):
    """``key[i]`` of the next block from ``key[i]``, ``key[j]`` (its neighbour) and ``key[k]``
    (``M`` further on)."""
    y = (np.uint64(key[i]) & _UPPER) | (np.uint64(key[j]) & _LOWER)
    mag = _MATRIX_A if (y & _ONE) else np.uint64(0)
    key[i] = np.uint32(np.uint64(key[k]) ^ (y >> _ONE) ^ mag)


@njit(cache=True)
def _generate(key):
    """The next 624 words of the state ``key`` in place (NumPy's ``mt19937_gen``)."""
    for i in range(_N - _M):
        _twist(key, i, i + 1, i + _M)
    for i in range(_N - _M, _N - 1):
        _twist(key, i, i + 1, i + _M - _N)
    _twist(key, _N - 1, 0, _M - 1)


@njit(inline="always", cache=True)
def _temper(y):
    y ^= y >> np.uint64(11)
    y ^= (y << np.uint64(7)) & np.uint64(0x9D2C5680)
    y ^= (y << np.uint64(15)) & np.uint64(0xEFC60000)
    y ^= y >> np.uint64(18)
    return y


@njit(inline="always", cache=True)
def _tempered(key, words):
    """The outputs of the block ``key``: each word tempered (NumPy's ``mt19937_next32``)."""
    for i in range(_N):
        words[i] = np.uint32(_temper(np.uint64(key[i])))


@njit(cache=True)
def mt_shuffle(key, pos, x, words):
    """Shuffle the 1-D array ``x`` in place as ``RandomState.shuffle`` does with the MT19937
    state ``key`` (624 ``uint32`` words) at position ``pos[0]``; both advance as NumPy's would.
    ``words``: 624 ``uint32`` of scratch (the block's outputs, tempered a block at a time;
    with the earlier loop below, 7.4 against 8.5 ns an element of 100,000 tempered a draw at a
    time). ``x`` must have fewer than 2**32 elements (the caller checks).

    One pass over the words, without a branch on the draws: each word is taken (the swap of
    ``x[i]`` with ``x[v]``, and ``i`` moves down) or rejected (``x[i]`` swapped with itself),
    by a select, and the mask is a constant while ``i`` stays above half of it. The earlier
    compiled port of NumPy's loop (a rejection loop per element, its branch taken or not by
    each draw, which accepts with a probability between one half and one: presumably
    mispredicted often; not measured) took 10.8 against 3.8 us for digits' 1,797 elements and
    613 against 208 us for 100,000, side by side in one process on the 2-core benchmark
    machine (the same permutations and state, ``tests/test_mt19937.py``)."""
    p = pos[0]
    if p < _N:
        _tempered(key, words)
    n = x.shape[0]
    if n < 2:
        pos[0] = p
        return
    i = np.uint64(n - 1)
    mask = i
    mask |= mask >> np.uint64(1)
    mask |= mask >> np.uint64(2)
    mask |= mask >> np.uint64(4)
    mask |= mask >> np.uint64(8)
    mask |= mask >> np.uint64(16)
    while i > np.uint64(0):
        low = mask >> np.uint64(1)  # mask covers the bounds i in (low, mask]
        while i > low:
            if p == _N:
                _generate(key)
                _tempered(key, words)
                p = 0
            v = np.uint64(words[p]) & mask
            p += 1
            taken = v <= i
            j = v if taken else i
            t = x[i]
            x[i] = x[j]
            x[j] = t
            i -= np.uint64(taken)
        mask = low
    pos[0] = p


class LegacyShuffler:
    """``shuffle(order)`` with the draws of ``rs.shuffle(order)``, for the epochs of one ``fit``.

    Takes ``rs``'s MT19937 state when made; :meth:`close` writes it back (call it when the
    epochs end, also when they raise: ``rs`` is then where ``rs.shuffle`` would have left it).
    A ``RandomState`` on another bit generator, or an array of 2**32 elements or more, is
    shuffled by ``rs.shuffle`` itself.

    Parameters
    ----------
    rs : numpy.random.RandomState
    """

    def __init__(self, rs):
        self._rs = rs
        self._state = rs.get_state(legacy=False)
        self._compiled = self._state.get("bit_generator") == "MT19937"
        self._dirty = False
        if self._compiled:
            self._key = np.array(self._state["state"]["key"], dtype=np.uint32)
            self._pos = np.array([self._state["state"]["pos"]], dtype=np.int64)
            self._words = np.empty(_N, dtype=np.uint32)

    def __call__(self, order):
        if self._compiled and order.ndim == 1 and order.shape[0] < 2**32:
            mt_shuffle(self._key, self._pos, order, self._words)
            self._dirty = True
            return order
        self.close()
        self._rs.shuffle(order)
        if self._compiled:  # go on from where rs.shuffle left the generator
            inner = self._rs.get_state(legacy=False)["state"]
            self._key[:] = inner["key"]
            self._pos[0] = inner["pos"]
        return order

    def compiled_state(self, n):
        """``(key, pos, words)``, this shuffler's generator state for
        :func:`mt_shuffle` in compiled code that shuffles arrays of ``n`` elements (the state
        advances there; :meth:`close` puts it back into ``rs``), or ``None`` where ``rs.shuffle``
        itself must shuffle them (another bit generator, or ``n >= 2**32``)."""
        if not self._compiled or n >= 2**32:
            return None
        self._dirty = True
        return self._key, self._pos, self._words

    def close(self):
        """Put the generator's state back into ``rs`` (idempotent)."""
        if self._dirty:
            state = dict(self._state)
            state["state"] = {"key": self._key.copy(), "pos": int(self._pos[0])}
            self._rs.set_state(state)
            self._dirty = False
