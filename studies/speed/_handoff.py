"""The compiled loop of :func:`dlbasics.studies.speed.limits.core_latency_ns` (a module of its
own, imported when measured: :mod:`.limits` imports Numba only inside its functions)."""

from __future__ import annotations

from numba import njit

from ...kernels.atomics import fetch_add, load_acquire

#: Slots of the probe's int64 array: whose turn it is, and a stop flag (set by a thread that
#: waited too long, or by the caller when it is interrupted).
TURN, STOP = 0, 1
#: Spins of one wait before a thread gives up (a few ms on the benchmark machine): far more
#: than a handoff between two running cores takes (tens to a few hundred), far fewer than a
#: wait for a thread that shares the CPU and waits for the scheduler.
MAX_SPINS = 1 << 22


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
        ``[TURN, STOP]``. A wait of more than :data:`MAX_SPINS` spins once both threads have
        moved (``TURN >= 2``: before, a wait includes the other thread's start) sets ``STOP``,
        and a thread that sees ``STOP`` set returns.
    rounds : int
        Rounds of the thread.
    """
    for r in range(rounds):
        target = 2 * r + start
        spins = 0
        while True:
            turn = load_acquire(counter, TURN)
            if turn == target:
                break
            spins += 1
            if spins > MAX_SPINS and turn >= 2:
                fetch_add(counter, STOP, 1)
            if load_acquire(counter, STOP) != 0:
                return
        fetch_add(counter, TURN, 1)
