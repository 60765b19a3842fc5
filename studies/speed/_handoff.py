"""The compiled loop of :func:`dlbasics.studies.speed.limits.core_latency_ns` (a module of its
own, imported when measured: :mod:`.limits` imports Numba only inside its functions)."""

from __future__ import annotations

from numba import njit

from ...kernels.atomics import fetch_add, load_acquire


@njit(nogil=True, cache=True)
def handoff(start, stop, counter, rounds):
    """Thread ``start`` (0 or 1) of the ping-pong: in round ``r`` it waits until ``counter[0]``
    reads ``2 r + start``, then adds one (the other thread's turn). ``stop`` is unused (the
    block interface of :func:`dlbasics.models._threads.run_blocks`)."""
    for r in range(rounds):
        target = 2 * r + start
        while load_acquire(counter, 0) != target:
            pass
        fetch_add(counter, 0, 1)
