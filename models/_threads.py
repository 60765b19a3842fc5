"""Blocks of work on Python threads, for compiled functions that release the GIL.

Why not a ``prange``: Numba optimises and generates the code of a compiled function again in every
compiled function that calls it, and a ``prange`` puts two such callers around its body (the
parallel loop's own function and the kernel that holds the loop). The lane layout's population
epoch under a ``prange`` was thus built three times over; called from Python threads it is built
once (first epoch with an empty cache, 2-16-16-1, K = 64, 2 cores: 42-47 s against 16.6 s), with
the same epoch times. The price is the start and join of the threads, once per call: 70-90 us on
that machine (two threads, trivial work, calls 0.5 ms apart) against about 5 us for a ``prange``
region measured the same way (1.2-2.6 us back to back, :mod:`dlbasics.kernels.atomics`): 7-9% of
an epoch of one millisecond, nothing against the epochs of the speed study (tens of milliseconds
and more). Two paths keep their ``prange``: the single-network split epoch
(:func:`dlbasics.kernels.network.split_epoch` for ``train``'s loop, one epoch a call, of under a
millisecond on small data), and
the per-network population epoch (:func:`dlbasics.models._core.population_epoch_kernel`), whose
code came out faster where Numba built it again (8-15% on two threads; on threads it compiled in
17.9 s instead of 26.7 s). The split epoch's many epochs a call, the drop-in estimators'
``fit`` (:func:`dlbasics.models._core.split_epochs_kernel`), run here: their threads start once
for calls of about a quarter of a second of epochs (after a first call of one epoch). The
functions called here must be compiled with ``nogil=True``. Callers in several Python threads
at once share a pool: where the blocks of a call wait for each other (a team), a caller's
first block may spin, yielding its core, until another caller's blocks ahead of its own in the
pool are done (slower, never stuck).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

__all__ = ["run_blocks"]

#: The pools by size, never shut down (a caller may still be submitting to one): a size is
#: Numba's thread count less one, so there are few.
_POOLS = {}
_POOLS_LOCK = threading.Lock()


def _after_fork_in_child():
    """A forked child has none of the parent's threads: forget the pools (and a lock that
    another thread may have held at the fork)."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _thread_pool(size):
    """The process-wide pool of ``size`` threads."""
    with _POOLS_LOCK:
        pool = _POOLS.get(size)
        if pool is None:
            pool = _POOLS[size] = ThreadPoolExecutor(max_workers=size,
                                                     thread_name_prefix="dlbasics-worker")
        return pool


def _wait_one(future):
    """Block until ``future`` is done (its error, if any, is read later)."""
    future.exception()


def _join(futures):
    """Wait until every future is done, also through interrupts (no thread may write the
    caller's arrays after :func:`run_blocks` returns); an interrupt is raised again once all
    are done."""
    interrupt = None
    for f in futures:
        while True:
            try:
                _wait_one(f)
                break
            except BaseException as exc:  # KeyboardInterrupt and the like: keep waiting
                interrupt = exc
    if interrupt is not None:
        raise interrupt


def run_blocks(fn, n, *args, threads=None, abort=None):
    """``fn(start, stop, *args)`` on ``T`` contiguous blocks of ``range(n)``, side by side.

    ``T`` is ``threads`` (default :func:`numba.get_num_threads`) but at most ``n``; block ``t``
    is ``[t * n // T, (t + 1) * n // T)`` (as a static ``prange`` splits a loop: contiguous, so
    that neighbouring items of different cost, e.g. alternating optimizers, are shared out
    evenly). Block ``0`` runs in the calling thread, the others on a process-wide thread pool.
    Returns when all have finished, also when interrupted; an error of any block is raised here
    (the calling thread's first).

    Parameters
    ----------
    fn : callable
        ``fn(start, stop, *args)``; to run in parallel it must release the GIL (a Numba
        function compiled with ``nogil=True``, or Python code calling such functions). It must
        not call :func:`run_blocks` itself: the pool's threads would wait for work queued
        behind them.
    n : int
        Number of items.
    *args
        Passed on to ``fn``.
    threads : int, optional
        Threads to use; 1 (or ``n <= 1``) runs ``fn(0, n, *args)`` in the calling thread.
    abort : callable, optional
        Called with no arguments when the calling thread's block ends in an error or an
        interrupt (Ctrl-C can arrive before its compiled code starts, while Numba compiles
        it), before waiting for the other blocks: where the blocks wait for each other's work
        (a team of :func:`~dlbasics.kernels.network.wait_until`), it must make them return,
        or they would wait for ever for the work of the block that never ran.
    """
    T = min(numba.get_num_threads() if threads is None else int(threads), n)
    if T <= 1:
        fn(0, n, *args)
        return
    futures = []
    try:
        pool = _thread_pool(T - 1)
        for t in range(1, T):
            futures.append(pool.submit(fn, t * n // T, (t + 1) * n // T, *args))
        fn(0, n // T, *args)
    except BaseException:
        if abort is not None:
            abort()
        raise
    finally:
        _join(futures)
    for f in futures:
        f.result()  # raises that thread's error, if any
