"""The compiled loop of :func:`dlbasics.studies.speed.limits.core_latency_ns` (a module of its
own, imported when measured: :mod:`.limits` imports Numba only inside its functions)."""

from __future__ import annotations

from numba import njit

from ...kernels.atomics import fetch_add, load_acquire

#: Slots of the probe's int64 array: whose turn it is, and a stop flag (set by the caller's
#: watchdog when a repeat outlasts its deadline, or when the caller is interrupted).
TURN, STOP = 0, 1


@njit(nogil=True, cache=True)
def handoff(start, stop, counter, rounds):
    """Thread ``start`` (0 or 1) of the ping-pong.

    Parameters
    ----------
    start : int
        The thread's number: in round ``r`` it waits until ``counter[TURN]`` reads
        ``2 r + start``, then adds one (the other thread's turn).
    stop : int
        Unused (the block interface of :func:`dlbasics.models._threads.run_blocks`).
    counter : ndarray of int64, shape (2,)
        ``[TURN, STOP]``: a thread that sees ``STOP`` set while it waits returns.
    rounds : int
        Rounds of the thread.
    """
    for r in range(rounds):
        target = 2 * r + start
        while load_acquire(counter, TURN) != target:
            if load_acquire(counter, STOP) != 0:
                return
        fetch_add(counter, TURN, 1)
