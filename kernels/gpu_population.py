"""GPU twin of :func:`dlbasics.models._core.population_epoch_kernel`: K small networks trained at
once.

One thread trains one network for a whole epoch: it runs
:func:`dlbasics.kernels.network.member_epoch`, the shared network step (gather a mini-batch,
forward with dropout masks, loss, backward, optimizer update; stop at a non-finite loss), the
same source that the CPU population runs per network, compiled by numba-cuda as device
functions. On a GPU the step takes its hand-written loops (there is no BLAS route), so a network
trained in a GPU population follows the CPU trajectory of the same network up to the rounding
differences of the GPU's math library and its fused multiply-adds.

float32 networks: the loss of a batch is summed in float64 (as the CPU does), the softmax row
sum is float64, and the activation formulas run in float64 and are rounded once (the branches of
``act_scalar``/``dact_scalar`` unify to float64); products and updates are float32. All of it is
the CPU's arithmetic, kept for bitwise CPU parity.

Memory layout. The arguments are those of the CPU kernel: row ``k`` of every per-network 2-D
array belongs to network ``k`` (``P``, ``G``, ``orders``, ``WS``, ``LB``, ``HP``, ``S1..S3``,
``OUT``). On a GPU, threads of a warp then read addresses ``n_params`` apart; with
``interleaved=True`` every per-network array is given transposed instead (column ``k`` is
network ``k``, e.g. ``P`` of shape ``(n_params, K)``), so neighbouring threads read neighbouring
addresses. Host inputs are always transposed for the launch (and back), device inputs are used
in the layout the caller states. The kernel takes the records of the CPU kernel
(:class:`~dlbasics.kernels.network.Net`, :class:`~dlbasics.kernels.network.Data` and the
per-network arrays in the field order of :class:`dlbasics.models._core.Population`) as tuples.

Blocks hold at most 32 threads (one warp; ``THREADS_PER_BLOCK`` if smaller), so that even a
population of a thousand networks spreads over many multiprocessors.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from . import _checks
from . import gpu_config as g
from ._gpu_arrays import Call, float_array, int_array
from .gpu_optimizers import HP_SIZE
from .network import NO_BLAS, member_epoch

__all__ = ["gpu_population_epoch"]

cuda = None  # numba.cuda, bound by _kernels() on first use (import-safe without numba-cuda)

#: Largest block of the population kernel (one warp).
POPULATION_BLOCK = 32


@njit(inline="always", cache=True)
def _row(a, k):
    return a[k]


@njit(inline="always", cache=True)
def _col(a, k):
    return a[:, k]


@functools.cache
def _kernels(interleaved):
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()
    net_of = _col if interleaved else _row

    @cuda.jit
    def population(net, data, batch, offs, pop):
        """One epoch of every active network ``k``, one thread per network (``pop``: the
        per-network arrays in the order of :class:`dlbasics.models._core.Population`)."""
        net = A(net)
        data = A(data)
        offs = A(offs)
        P, G, WS, LB, orders, seeds, codes, HP, S1, S2, S3, T0, active, OUT = A(pop)
        for k in range(cuda.grid(1), seeds.shape[0], cuda.gridsize(1)):
            if active[k]:
                member_epoch(net_of(P, k), net_of(G, k), net, data, net_of(orders, k), batch,
                             (net_of(WS, k), offs, net_of(LB, k)),
                             (codes[k], net_of(HP, k), net_of(S1, k), net_of(S2, k),
                              net_of(S3, k), T0[k]),
                             seeds[k], net_of(OUT, k))

    return population


# ---------------------------------------------------------------------------------------------
# driver and public function
# ---------------------------------------------------------------------------------------------


def launch_population(net, data, batch, offs, pop, interleaved):
    """Launch on device arrays: the records ``net`` (a :class:`~dlbasics.kernels.network.Net`)
    and ``data`` (a :class:`~dlbasics.kernels.network.Data`) and the per-network arrays ``pop``
    (in the field order of :class:`dlbasics.models._core.Population`) as tuples."""
    K = pop[5].shape[0]  # seeds
    tpb = max(1, min(g.threads_per_block(), POPULATION_BLOCK))
    g.launch(_kernels(bool(interleaved)), g.blocks_for(K, tpb), tpb, tuple(net), tuple(data),
             int(batch), offs, tuple(pop))


def _per_network(name, a, K, width, dtype, interleaved, integer=False):
    """Check a per-network 2-D array: ``(K, width)`` (or ``(width, K)`` interleaved)."""
    a = int_array(name, a, ndim=2) if integer else float_array(name, a, ndim=2, dtype=dtype)
    want = (width, K) if interleaved else (K, width)
    if width is None:
        got_k = a.shape[1] if interleaved else a.shape[0]
        if got_k != K:
            raise ValueError(f"{name} must have one {'column' if interleaved else 'row'} per "
                             f"network ({K}), got shape {tuple(a.shape)}")
    else:
        _checks.shape(name, a, want)
    return a


def _vector(name, a, n, integer=False, dtype=None):
    """A 1-D host or device array of length ``n`` (integer, or of ``dtype``)."""
    if integer:
        a = int_array(name, a, ndim=1)
    else:
        if g.is_device_array(a):
            a = g.as_device(a)
        elif not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
        if a.ndim != 1:
            raise ValueError(f"{name} must have 1 dimension, got shape {tuple(a.shape)}")
        if dtype is not None and np.dtype(a.dtype) != np.dtype(dtype):
            raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {a.dtype}")
    _checks.shape(name, a, (n,))
    return a


def _check(P, G, layout, codes, keep, X, Y, labels, orders, batch, WS, offs, LB, seeds,
           opt_codes, HP, S1, S2, S3, T0, active, OUT, dense, interleaved):
    """Validate every shape the kernel relies on (host arrays also for values)."""
    for name, a in (("layout", layout), ("offs", offs)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a host numpy.ndarray (it is read on the host)")
    layout = int_array("layout", layout, ndim=2)
    offs = int_array("offs", offs, ndim=2)
    L = layout.shape[0]
    if L < 1 or layout.shape != (L, 4):
        raise ValueError(f"layout must have shape (n_layers, 4), got {layout.shape}")
    _checks.shape("offs", offs, (L + 1, 4))
    n_params = int((layout[:, 0] * layout[:, 1] + layout[:, 1]).sum())
    if int(layout[-1, 3] + layout[-1, 1]) != n_params or np.any(layout[1:, 0] != layout[:-1, 1]):
        raise ValueError("layout does not describe one flat parameter vector of chained layers")
    seeds = int_array("seeds", seeds, ndim=1)
    K = seeds.shape[0]
    if K == 0:
        raise ValueError("seeds must name at least one network")
    P = _per_network("P", P, K, n_params, None, interleaved)
    dtype = P.dtype
    G = _per_network("G", G, K, n_params, dtype, interleaved)
    X = float_array("X", X, ndim=2, dtype=dtype, finite=True)
    _checks.nonempty("X", X)
    n = X.shape[0]
    if X.shape[1] != layout[0, 0]:
        raise ValueError(f"X must have {layout[0, 0]} features, got shape {tuple(X.shape)}")
    n_out = int(layout[-1, 1])
    if dense:
        Y = float_array("Y", Y, ndim=2, dtype=dtype, finite=True)
        _checks.shape("Y", Y, (n, n_out))
        labels = int_array("labels", labels, ndim=1)
    else:
        Y = float_array("Y", Y, ndim=2, dtype=dtype)
        labels = _vector("labels", labels, n, integer=True)
        if isinstance(labels, np.ndarray) and (labels.min() < 0 or labels.max() >= n_out):
            raise ValueError(f"labels must lie in [0, {n_out})")
    batch = _checks.integer("batch", batch, low=1, high=n)
    orders = _per_network("orders", orders, K, n, None, interleaved, integer=True)
    if isinstance(orders, np.ndarray) and (orders.min() < 0 or orders.max() >= n):
        raise ValueError(f"orders must index samples in [0, {n})")
    widest = int(max(layout[:, 0].max(), layout[:, 1].max()))
    ws_size = int(offs.max()) + batch * widest
    WS = _per_network("WS", WS, K, None, dtype, interleaved)
    if WS.shape[0 if interleaved else 1] < ws_size:
        raise ValueError(f"WS must hold at least {ws_size} values per network (the workspace "
                         f"of dlbasics.models.mlp.Workspace for batch {batch})")
    LB = _per_network("LB", LB, K, batch, None, interleaved, integer=True)
    HP = _per_network("HP", HP, K, HP_SIZE, dtype, interleaved)
    slots = []
    for name, s in (("S1", S1), ("S2", S2), ("S3", S3)):
        s = _per_network(name, s, K, None, dtype, interleaved)
        if s.shape[0 if interleaved else 1] not in (0, n_params):
            raise ValueError(f"{name} must hold 0 or {n_params} values per network")
        slots.append(s)
    OUT = _per_network("OUT", OUT, K, 4, np.float64, interleaved)
    codes = _vector("codes", codes, L, integer=True)
    keep = _vector("keep", keep, L, dtype=np.float64)
    opt_codes = _vector("opt_codes", opt_codes, K, integer=True)
    T0 = _vector("T0", T0, K, integer=True)
    active = _vector("active", active, K, dtype=np.bool_)
    return (P, G, layout, codes, keep, X, Y, labels, orders, batch, WS, offs, LB, seeds,
            opt_codes, HP, slots, T0, active, OUT)


def gpu_population_epoch(P, G, layout, codes, keep, inverted, slope, X, Y, labels, orders, batch,
                         WS, offs, LB, loss_code, fused, dense_targets, eps, seeds, opt_codes, HP,
                         S1, S2, S3, T0, active, OUT, interleaved=False):
    """GPU :func:`dlbasics.models._core.population_epoch_kernel`: one epoch of K networks.

    Arguments are those of the CPU kernel (see :func:`dlbasics.models.population.train_population`
    for how they are built from an :class:`dlbasics.models.MLP` template); ``layout`` and ``offs``
    must be host arrays. Arrays updated in place: ``P``, ``G``, ``WS``, ``LB``, ``S1..S3``, ``OUT``.

    Parameters
    ----------
    interleaved : bool, default=False
        Device inputs only: the per-network arrays are given transposed (column ``k`` is
        network ``k``), the layout the kernel reads fastest. Host inputs are transposed
        internally whatever this says.

    Returns
    -------
    OUT : array of shape (K, 4) (``(4, K)`` when ``interleaved``)
        Per network: loss sum weighted by batch rows, updates done, rows processed, diverged.
    """
    dense_targets = bool(dense_targets)
    arrays = (P, G, X, Y, labels, orders, WS, LB, seeds, opt_codes, HP, S1, S2, S3, T0, active,
              OUT)
    interleaved = bool(interleaved) and any(g.is_device_array(a) for a in arrays)
    (P, G, layout, codes, keep, X, Y, labels, orders, batch, WS, offs, LB, seeds, opt_codes, HP,
     slots, T0, active, OUT) = _check(P, G, layout, codes, keep, X, Y, labels, orders, batch, WS,
                                      offs, LB, seeds, opt_codes, HP, S1, S2, S3, T0, active,
                                      OUT, dense_targets, interleaved)
    per_net = [P, G, orders, WS, LB, HP, *slots, OUT]
    call = Call(P, G, X, Y, labels, orders, WS, LB, seeds, opt_codes, HP, *slots, T0, active,
                OUT)
    g.require_cuda()
    if call.device:
        inter = interleaved
        dev = [call.inplace("P", P), call.inplace("G", G), call.input(orders),
               call.inplace("WS", WS), call.inplace("LB", LB), call.input(HP)]
        dev += [call.inplace(f"S{i + 1}", s) for i, s in enumerate(slots)]
        dev.append(call.inplace("OUT", OUT))
    else:
        inter = True
        dev = [g.to_device(np.ascontiguousarray(a.T)) for a in per_net]
    dP, dG, dorders, dWS, dLB, dHP, dS1, dS2, dS3, dOUT = dev
    net = (call.input(layout), call.input(codes), call.input(keep), bool(inverted),
           P.dtype.type(slope), int(loss_code), bool(fused), float(eps), 0, NO_BLAS, NO_BLAS, 0,
           NO_BLAS)
    data = (call.input(X), call.input(Y), call.input(labels), dense_targets)
    pop = (dP, dG, dWS, dLB, dorders, call.input(seeds), call.input(opt_codes), dHP, dS1, dS2,
           dS3, call.input(T0), call.input(active), dOUT)
    launch_population(net, data, batch, call.input(offs), pop, inter)
    if call.device:
        call.finish()
        return OUT
    for host, d in zip(per_net, dev, strict=True):
        if host is orders or host is HP:
            continue
        host[...] = g.copy_to_host(d).T
    return OUT
