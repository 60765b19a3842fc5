"""``numpy.random.RandomState.shuffle`` of a 1-D array, in compiled code, with the same draws.

scikit-learn's stochastic solvers shuffle the sample indices at the start of every epoch with
their ``RandomState`` (``sklearn.utils.shuffle``: ``RandomState.shuffle`` of ``arange(n)``);
the drop-in estimators make the same permutations, so that their batches hold the same rows as
scikit-learn's. ``RandomState.shuffle`` took 24 us for digits' 1,797 indices and 1.29 ms for
100,000 on the 2-core benchmark machine (AMD EPYC, Zen 4): about 4% of our ``fit`` of digits (100
epochs, 56 ms) and 7% of the 100,000 rows' (5 epochs, 85-90 ms;
:mod:`dlbasics.studies.speed.sklearn_fit`); here 12 us and 0.74 ms. Reading and writing the
generator's state costs another 35 us each, so :class:`LegacyShuffler` takes the state once per
``fit``, shuffles every epoch in :func:`mt_shuffle` and puts the state back when the ``fit``
ends.

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
    ``words``: 624 ``uint32`` of scratch (the block's outputs, tempered a block at a time: the
    draws that a rejection discards then wait on a load alone, 7.4 against 8.5 ns an element of
    100,000). ``x`` must have fewer than 2**32 elements (the caller checks)."""
    p = pos[0]
    if p < _N:
        _tempered(key, words)
    for i in range(x.shape[0] - 1, 0, -1):
        bound = np.uint32(i)
        mask = bound
        mask |= mask >> np.uint32(1)
        mask |= mask >> np.uint32(2)
        mask |= mask >> np.uint32(4)
        mask |= mask >> np.uint32(8)
        mask |= mask >> np.uint32(16)
        while True:
            if p == _N:
                _generate(key)
                _tempered(key, words)
                p = 0
            v = words[p] & mask
            p += 1
            if v <= bound:
                break
        j = np.uint64(v)
        t = x[i]
        x[i] = x[j]
        x[j] = t
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
