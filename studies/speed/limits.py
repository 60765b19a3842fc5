"""The machine's limits, each measured in its own worker process.

FMA peak: a compiled Numba loop of independent float32 fused multiply-add chains on every core
(``prange`` over one chunk per thread). Each chunk keeps ``n_acc`` rows of ``m`` floats (L1
resident) and applies ``v = v * a + b`` ``depth`` times per load, so LLVM vectorises along the
row and the ``n_acc`` independent chains hide the FMA latency. The generated source is unrolled
by hand (exec) so every chain is a plain local variable. ``vector_bits=512`` turns off LLVM's
``prefer-256-bit`` tuning for this process (``NUMBA_CPU_FEATURES``, set before Numba is
imported) so the loop uses 512-bit registers: the true peak. ``vector_bits=256`` is what
Numba emits by default on this CPU, hence the ceiling of our own compiled loops.

Memory bandwidth: STREAM-style triad and read loops (Numba ``prange``, all threads) over
arrays far larger than the last-level cache (:func:`memory_bandwidth`).

GEMM: the best rate of a large square float32 matrix product through NumPy's ``matmul``
(NumPy's bundled OpenBLAS) or SciPy's ``blas.sgemm`` (SciPy's OpenBLAS, the one Numba's
``np.dot`` calls), each alone in its process.

Cross-core latency (:func:`core_latency_ns`): how long one thread takes to see another's write
to a shared cache line, by two threads handing a counter back and forth. On the 2-core
benchmark machine it took 25-33 ns most of the time (1,399 of 1,508 probes) and 156-175 ns in
runs of 2 to 22 consecutive probes (several seconds), which suggests that the virtual machine's
two CPUs then sat further apart (presumably cores that do not share a last-level cache, or two
hyperthreads of one core: the probe cannot tell). Default ``MLPClassifier`` fits of digits on
two threads took a median 53.6 ms after a probe of at most 100 ns (1,399 fits) and 80.8 ms
after one above (109 fits), same code, same process (``scripts/core_latency_fits.py``, 150 s of
fits with a probe before each, 2026-12-07; output in
``reports/benchmarks/core_latency_fits.txt``). The handoffs themselves cannot explain that: a
fit is 900 steps, and even ten meetings of its two threads a step at 150 ns more each would be
1.4 ms of the 27; the probe marks the slow state, whose cost lies elsewhere (not measured). The
speed study measures it before and after each worker (:func:`dlbasics.studies.speed.bench.run`):
a ratio of two workers measured in different states may compare the states as well as the
code.
"""

from __future__ import annotations

import os
import time


def set_vector_width(bits):
    """Before Numba is imported: ask LLVM for 512-bit vectors (``bits=512``) or leave defaults."""
    if bits == 512 and "NUMBA_CPU_FEATURES" not in os.environ:
        import llvmlite.binding as ll

        features = ll.get_host_cpu_features().flatten()
        if "+avx512f" in features:
            os.environ["NUMBA_CPU_FEATURES"] = features + ",-prefer-256-bit"


def _make_kernel(n_acc, depth):
    from numba import njit, prange

    lines = ["def chunk(x, reps, a, b):", "    m = x.shape[1]", "    for _ in range(reps):",
             "        for j in range(m):"]
    lines += [f"            v{i} = x[{i}, j]" for i in range(n_acc)]
    for _ in range(depth):
        lines += [f"            v{i} = v{i} * a + b" for i in range(n_acc)]
    lines += [f"            x[{i}, j] = v{i}" for i in range(n_acc)]
    namespace = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - generated unrolled loop, no user input
    chunk = njit(fastmath=True, inline="always")(namespace["chunk"])

    @njit(parallel=True, fastmath=True)
    def run(X, reps, a, b):
        for c in prange(X.shape[0]):
            chunk(X[c], reps, a, b)

    return run


def fma_peak(bits, configs, seconds, repeats):
    """Best GFLOP/s over ``configs`` (``(n_acc, depth, m)``) of the FMA loop on all threads."""
    import numba
    import numpy as np

    threads = numba.get_num_threads()
    a, b = np.float32(0.999999), np.float32(1e-7)
    rows = []
    for n_acc, depth, m in configs:
        run = _make_kernel(n_acc, depth)
        X = np.ones((threads, n_acc, m), dtype=np.float32)
        t0 = time.perf_counter()
        run(X, 1, a, b)
        compile_s = time.perf_counter() - t0
        flops_per_rep = 2.0 * threads * n_acc * depth * m
        reps = 64
        while True:  # size the call to about `seconds`
            t0 = time.perf_counter()
            run(X, reps, a, b)
            dt = time.perf_counter() - t0
            if dt >= seconds / 4 or reps > 1 << 30:
                break
            reps *= 4
        reps = max(1, int(reps * seconds / max(dt, 1e-9)))
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            run(X, reps, a, b)
            dt = time.perf_counter() - t0
            best = max(best, flops_per_rep * reps / dt / 1e9)
        if not np.isfinite(X).all():
            raise AssertionError("FMA loop produced non-finite values")
        rows.append({"n_acc": n_acc, "depth": depth, "m": m, "gflops": best,
                     "compile_s": compile_s})
    return {"threads": threads, "bits": bits, "gflops": max(r["gflops"] for r in rows),
            "configs": rows,
            "cpu_features": os.environ.get("NUMBA_CPU_FEATURES", "default")[-40:]}


def gemm_rate(lib, sizes, repeats):
    """Best GFLOP/s of ``C = A @ B`` (float32, square) over ``sizes`` via ``lib``."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), dtype=np.float32)
        B = rng.standard_normal((n, n), dtype=np.float32)
        if lib == "scipy":
            from scipy.linalg import blas

            def product(At=A.T, Bt=B.T, blas=blas):  # (A B)^T = B^T A^T, Fortran order
                return blas.sgemm(1.0, Bt, At)
        else:
            C = np.empty((n, n), dtype=np.float32)

            def product(A=A, B=B, C=C):
                return np.matmul(A, B, out=C)

        product()
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            product()
            dt = time.perf_counter() - t0
            best = max(best, 2.0 * n**3 / dt / 1e9)
        rows.append({"n": n, "gflops": best})
    info = []
    try:
        from threadpoolctl import threadpool_info

        for d in threadpool_info():
            if d.get("user_api") == "blas":
                info.append({k: d.get(k) for k in ("internal_api", "version", "num_threads",
                                                   "architecture", "filepath")})
    except Exception:  # noqa: BLE001 - the description is optional
        pass
    return {"lib": lib, "gflops": max(r["gflops"] for r in rows), "sizes": rows, "blas": info}


def _stream_kernels():
    """STREAM-style kernels on all threads (``prange``): triad ``a = b + s c`` and a read-only
    sum. Compiled on each use, not cached, like the FMA loop: Numba must not be imported when
    this module is (:func:`set_vector_width` has to run first in the FMA workers)."""
    import numpy as np
    from numba import njit, prange

    @njit(parallel=True, fastmath=True)
    def fill(a, v):
        for i in prange(a.size):
            a[i] = v

    @njit(parallel=True, fastmath=True)
    def triad(a, b, c, s):
        for i in prange(a.size):
            a[i] = b[i] + s * c[i]

    @njit(parallel=True, fastmath=True)
    def total(a):
        acc = np.float32(0.0)
        for i in prange(a.size):
            acc += a[i]
        return acc

    return fill, triad, total


def memory_bandwidth(mib, repeats):
    """Best memory bandwidth (GB/s, 1e9 bytes) of STREAM-style float32 loops on all threads.

    Three arrays of ``mib`` MiB each (far larger than the last-level cache, so every access
    goes to memory). *triad* ``a[i] = b[i] + s * c[i]`` counts 12 bytes per element, as STREAM
    does (two reads, one write; the write-allocate read is not counted); *read* sums ``a``
    (4 bytes per element). ``gbs``, the higher of the two, is the memory side of the roofline
    (an upper bound: a loop that streams from memory reaches at least that much).
    """
    import numba
    import numpy as np

    n = int(mib) * (1 << 20) // 4
    a, b, c = (np.empty(n, dtype=np.float32) for _ in range(3))
    fill, triad, total = _stream_kernels()
    for arr, v in ((a, 0.0), (b, 1.0), (c, 2.0)):  # first touch on the threads that use them
        fill(arr, np.float32(v))
    s = np.float32(0.5)
    rates = {}
    for name, call, nbytes in (("triad", lambda: triad(a, b, c, s), 12.0 * n),
                               ("read", lambda: total(b), 4.0 * n)):
        call()  # compile and warm up
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            best = max(best, nbytes / (time.perf_counter() - t0) / 1e9)
        rates[name] = best
    if not (a == np.float32(2.0)).all():  # 1 + 0.5 * 2
        raise AssertionError("STREAM triad computed a wrong value")
    return {"threads": numba.get_num_threads(), "mib_per_array": int(mib),
            "gbs": max(rates.values()), "triad_gbs": rates["triad"], "read_gbs": rates["read"]}


def core_latency_ns(rounds=100000, repeats=5, deadline_s=1.0):
    """Time of one handoff of a counter between two threads, in nanoseconds (fastest repeat).

    Two Python threads (:func:`dlbasics.models._threads.run_blocks`, each in a compiled loop
    that releases the GIL, :func:`dlbasics.studies.speed._handoff.handoff`) take turns to add
    one to a shared int64 counter, each spinning on an atomic load until the counter says it is
    its turn: ``2 * rounds - 1`` one-way handoffs per repeat (a cache line written by one core
    and then read by the other), timed with the start and join of the second thread (0.1 to a
    few ms; it and any preemption only add: the fastest repeat counts). A watchdog stops a
    repeat that outlasts ``deadline_s`` (the two threads then share a CPU, and each handoff
    waits for the scheduler) and the repeat runs again; after more stopped repeats than
    ``repeats`` the result is ``None``, as where this process may run on fewer than two CPUs.
    The threads are not pinned: on a machine of more than two CPUs it measures the pair the
    scheduler picked.

    Parameters
    ----------
    rounds : int
        Handoffs per thread per repeat (at least 1).
    repeats : int
        Timed repeats (at least 1), after one of 100 rounds, untimed (it compiles or loads
        the loop and starts the pool's thread; a watchdog stop there changes nothing).
    deadline_s : float
        Seconds a repeat may take (above 0; 200,000 handoffs took 5-40 ms on the benchmark
        machine).

    Returns
    -------
    float or None
        Nanoseconds per handoff in the fastest repeat.

    Raises
    ------
    ValueError
        ``rounds`` or ``repeats`` below 1, or ``deadline_s`` not above 0.
    AssertionError
        A repeat ended with the counter anywhere but ``2 * rounds`` (a broken handoff).
    """
    import threading

    from ...models._threads import run_blocks
    from ._handoff import STOP, TURN, handoff

    if rounds < 1 or repeats < 1:
        raise ValueError(f"rounds and repeats must be at least 1, got {rounds} and {repeats}")
    if not deadline_s > 0:
        raise ValueError(f"deadline_s must be above 0, got {deadline_s}")
    if len(_cpus()) < 2:
        return None
    import numpy as np

    counter = np.zeros(2, dtype=np.int64)

    def stop():  # the watchdog, or this thread interrupted: no thread may wait for ever
        counter[STOP] = 1

    def timed(n):
        counter[:] = 0
        watchdog = threading.Timer(deadline_s, stop)
        watchdog.start()
        try:
            t0 = time.perf_counter()
            run_blocks(handoff, 2, counter, n, threads=2, abort=stop)
            dt = time.perf_counter() - t0
        finally:
            watchdog.cancel()
        if counter[STOP] != 0:
            return None
        if counter[TURN] != 2 * n:
            raise AssertionError(f"handoff counter at {counter[TURN]}, expected {2 * n}")
        return dt

    timed(100)  # compile or load, start the pool's thread
    times, stopped = [], 0
    while len(times) < repeats:
        dt = timed(rounds)
        if dt is None:
            stopped += 1
            if stopped > repeats:
                return None
            continue
        times.append(dt / (2 * rounds - 1) * 1e9)
    return min(times)


def _cpus():
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return range(os.cpu_count() or 1)
