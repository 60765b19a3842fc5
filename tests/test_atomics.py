"""The atomic counters of ``dlbasics.kernels.atomics`` (the split epoch's threads meet through
them): every claim under contention is a distinct number and none is lost, an acquire load
reads the stored value, the spin hints run, and wrong arguments fail at typing."""

import numba
import numpy as np
import pytest
from numba import njit, prange

from dlbasics.kernels.atomics import fetch_add, load_acquire, spin_pause, yield_cpu


@njit
def _claim_all(counter, claimed, n):
    """Claim numbers until ``n`` are out; mark each claimed number (a number claimed twice
    is counted twice)."""
    while True:
        k = fetch_add(counter, 0, 1)
        if k >= n:
            return
        claimed[k] += 1


@njit(parallel=True)
def _claim_in_parallel(counter, claimed, n, workers):
    for _w in prange(workers):
        _claim_all(counter, claimed, n)


@njit
def _add_many(counter, times, step):
    for _ in range(times):
        fetch_add(counter, 1, step)


@njit(parallel=True)
def _add_in_parallel(counter, times, step, workers):
    for _w in prange(workers):
        _add_many(counter, times, step)


@njit
def _read(counter, i):
    spin_pause()
    yield_cpu()
    return load_acquire(counter, i)


needs_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                   reason="contention needs two Numba threads")


@needs_threads
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_every_claim_is_distinct_and_none_is_lost(workers):
    n = 200_000
    counter = np.zeros(1, np.int64)
    claimed = np.zeros(n, np.int64)
    _claim_in_parallel(counter, claimed, n, workers)
    np.testing.assert_array_equal(claimed, np.ones(n, np.int64))
    # each worker's last claim is one past the end: n + workers claims in all
    assert counter[0] == n + workers


@needs_threads
def test_concurrent_adds_sum_exactly():
    counter = np.zeros(3, np.int64)
    threads = max(2, numba.get_num_threads())
    _add_in_parallel(counter, 100_000, 3, threads)
    assert counter[1] == 3 * 100_000 * threads and counter[0] == 0 and counter[2] == 0


def test_fetch_add_returns_the_old_value_and_loads_read_it():
    @njit
    def steps(a):
        return fetch_add(a, 2, 5), fetch_add(a, 2, -2), load_acquire(a, 2), _read(a, 2)

    a = np.array([0, 0, 7], np.int64)
    assert steps(a) == (7, 12, 10, 10)
    assert a[2] == 10


@pytest.mark.parametrize("bad", [np.zeros(2, np.int32), np.zeros(2), np.zeros((2, 2), np.int64)])
def test_only_1d_int64_arrays_are_counters(bad):
    @njit
    def claim(a):
        return fetch_add(a, 0, 1)

    @njit
    def read(a):
        return load_acquire(a, 0)

    with pytest.raises(numba.core.errors.TypingError, match="1-D int64 array"):
        claim(bad)
    with pytest.raises(numba.core.errors.TypingError, match="1-D int64 array"):
        read(bad)
