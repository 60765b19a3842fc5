"""Population training: K independent networks of one architecture trained side by side.

The networks may differ in initialisation seed, shuffling seed, learning rate, optimizer and
hyper-parameters; they share the architecture, the data and the batch size. Each epoch runs on
one of two CPU paths (or as one GPU launch for ``backend="cuda"``):

* **Lane layout** (:mod:`dlbasics.models._lanes`), used when the ``"cpu"`` backend trains at least
  :data:`LANES_MIN_NETWORKS` networks without dropout, all with the same optimizer rule and
  hyper-parameters, and the activations are elementwise (a softmax only as the output of the
  cross-entropy). The networks are the innermost axis of every array, in chunks of up to
  :data:`LANES` networks (fewer where a chunk would exceed :data:`LANE_BYTES`, half a core's L2, or
  a thread would have none): each operation of a training step is one vector loop across the
  networks of a chunk (the products as register-blocked vector code), and the chunks run on threads,
  one compiled call each (:func:`dlbasics.models._threads.run_blocks`). Per network the arithmetic
  is that of the single-network loops, in the same order, except the back-propagated ``delta W^T``
  products, which the single-network loops sum in a reassociated order, and, in float32, ``tanh``
  and the binary cross-entropy's ``exp`` and ``log1p``, each within one ulp of the single-network
  step's (the module docstring of :mod:`dlbasics.models._lanes`); so a network agrees with the same
  network trained alone (:func:`dlbasics.models.train`) up to float rounding, not bitwise. The lane
  width changes no bit: the lanes of a chunk are independent.
* **Per network** (:func:`dlbasics.models._core.population_epoch_kernel`), for everything else: one
  compiled call, a ``prange`` over networks in which every network runs the serial code of the fused
  single-network epoch with hand-written loops and no BLAS. A network then gives bitwise the history
  of the same network trained alone wherever training alone uses the same loops, i.e. batches under
  ``dlbasics.kernels.config.BLAS_MIN_ROWS`` (8) rows; from 8 rows on, training alone calls BLAS and
  the two agree up to rounding.

On the speed benchmark's 2-16-16-1 network (float32, shared SGD, K = 64 and 512, on the
shared 2-core machine) the lane layout measured about 2.5-3.5x the per-network kernel's
network-samples per second at batch 1 and 1.5-1.9x at batch 32 before its products were
register-blocked and its ``tanh`` became ``tanh_fast``, which doubled its speed at batch 32
(K = 64: 9.7M to 19-25M network-samples/s; the speed report has the current figures): the
per-network loops run over 16 units at a time, too few to fill the vector units.
"""

from __future__ import annotations

import functools
import time

import numba
import numpy as np

from ..kernels import _checks
from ..kernels.activations import SOFTMAX
from . import _core, _lanes
from .mlp import MLP, Workspace
from .optimizers import HP_SIZE, Optimizer
from .training import History, _batch_size, _validate, close_epoch, evaluation_recorder

_BIG = 1 << 62

#: Most networks per chunk of the lane layout (lanes of :mod:`dlbasics.models._lanes`); fewer
#: where a chunk's working set would exceed :data:`LANE_BYTES` or that leaves a thread without a
#: chunk (:func:`_lane_width`). Longer lane loops cost less loop overhead per value: at K = 512
#: and batch 1 (2-16-16-1, float32, SGD, 2 cores) 128 lanes measured 14.1M network-samples/s
#: against 12.8M with 64 (medians of 3 alternating epochs).
LANES = 128
#: Bytes a chunk's working set (its workspace, parameters and gradient) may take before the lane
#: width is halved, down to 16 lanes: half the 1 MiB L2 cache of a core of the 2-core benchmark
#: machine, so that a chunk's arrays stay in its core's L2 from one step to the next. Measured there
#: (2-16-16-1, float32, SGD, network-samples/s, medians of 12 alternating epochs in one process):
#: batch 32 (15.6 kB a lane), K = 512 on 2 threads, 21.6M with 128 lanes (2.0 MB a chunk), 22.5M
#: with 64, 24.4M with 32 (the width this picks; in three earlier runs of 6 to 12 epochs +7%, +7%
#: and -1% against 128); K = 128 on one thread 11.9M, 12.8M, 13.6M; batch 8 (5.9 kB a lane), K =
#: 512, 15.7M with 128, 18.2M with 64 (the width this picks), 17.9M with 32 (21.9M and 22.4M with
#: 128 and 64 in a later run); batch 1 (3.1 kB a lane) keeps 128. One register-blocked product of a
#: 16 x 16 layer over 32 rows alone: 87 GFLOP/s with 64 lanes (its operands 328 kB), 47 with 128
#: (655 kB).
LANE_BYTES = 512 * 1024
#: Fewest networks for which the lane layout is used (below, the per-network kernel). Measured
#: on the 2-core machine (2-16-16-1, float32): chunks narrower than 16 lanes lose to the
#: per-network kernel (K = 8: 0.7M vs 0.9M network-samples/s at batch 1, 0.9M vs 1.8M at batch
#: 32); at K = 32 batch 32 breaks even and batch 1 already wins (from K = 16).
LANES_MIN_NETWORKS = 32


def _per_network(name, value, K):
    if isinstance(value, (list, tuple)):
        if len(value) != K:
            raise ValueError(f"{name} must have one entry per network ({K}), got {len(value)}")
        return list(value)
    return [value] * K


def train_population(model, X, y, optimizers, seeds, batch_size=None, epochs=10, shuffle=True,
                     shuffle_seeds=None, X_val=None, y_val=None, metrics="running",
                     progress=False, lanes=None, callbacks=()):
    """Train K networks shaped like ``model`` at once; return their histories and parameters.

    Parameters
    ----------
    model : MLP
        Template: architecture, activations, loss, dropout, dtype and backend (``"cpu"``, or
        ``"cuda"`` to run the epochs on the GPU, one thread per network). Its
        own parameters are not changed.
    X, y : ndarray
        Training data, as for :func:`dlbasics.models.train`.
    optimizers : Optimizer or sequence of Optimizer
        One per network, or one shared by all.
    seeds : sequence of int
        Initialisation (and dropout) seed of each network; ``K = len(seeds)``.
    batch_size : int or None
        As in :func:`dlbasics.models.train` (``None``: full batch).
    epochs : int
    shuffle : bool
    shuffle_seeds : sequence of int, optional
        Shuffling seed of each network (default: 0 for every network, as :func:`train`).
    X_val, y_val : ndarray, optional
        Validation data evaluated for every network at epochs 0..E.
    metrics : {"running", "full"}
        As in :func:`dlbasics.models.train`.
    progress : bool
        tqdm bar over epochs.
    lanes : bool or None, default None
        ``None``: the lane layout whenever :func:`lanes_eligible`; ``False``: always the
        per-network kernel, whose result for a network does not depend on how many networks
        share the call (the studies runner uses it, so that the packing of runs into tasks
        cannot change a result).
    callbacks : sequence of callables
        As in :func:`dlbasics.models.train`, called for each network still training as
        ``cb(epoch, history, model)`` after each epoch, ``model`` an MLP holding that network's
        parameters (do not keep it: the same object is reused); a true return value stops that
        network (its ``history.stopped_by`` names the callback).

    Returns
    -------
    histories : list of History
        One per network, equal to what :func:`dlbasics.models.train` gives for that network alone
        (up to float rounding; see the module docstring for where it is bitwise).
    params : ndarray of shape (K, n_params)
        Final parameters.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be an MLP, got {type(model).__name__}")
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a sequence of int, got {type(seeds).__name__}")
    seeds = [_checks.integer("seeds", s, low=0) for s in seeds]
    K = len(seeds)
    if K == 0:
        raise ValueError("seeds must name at least one network")
    threads = numba.get_num_threads()
    kernel = model.engine.population_kernel(K, threads)  # raises where there is none
    opts = _per_network("optimizers", optimizers, K)
    for o in opts:
        if not isinstance(o, Optimizer):
            raise TypeError(f"optimizers must be Optimizer instances, got {o!r}")
    sh_seeds = _per_network("shuffle_seeds", 0 if shuffle_seeds is None else shuffle_seeds, K)
    sh_seeds = [_checks.integer("shuffle_seeds", s, low=0) for s in sh_seeds]
    epochs = _checks.integer("epochs", epochs, low=0)
    _checks.choice("metrics", metrics, ("running", "full"))
    X, Y, labels, dense, val = _validate(model, X, y, X_val, y_val)
    n = X.shape[0]
    batch = _batch_size(batch_size, n)

    cfg = model.config()
    cfg["backend"] = "cpu"  # per-network evaluation on the host; the epochs run on the device
    nets = []
    for s in seeds:
        cfg["seed"] = s
        nets.append(MLP(**cfg))
    P = np.stack([m.params for m in nets])
    G = np.zeros_like(P)
    w = Workspace(model.sizes, model.keep, batch, model.dtype)
    WS = np.zeros((K, w.ws.size), dtype=model.dtype)
    LB = np.zeros((K, batch), dtype=np.int64)
    S = [np.zeros_like(P) for _ in range(3)]
    T0 = np.zeros(K, dtype=np.int64)
    codes = np.array([o.code for o in opts], dtype=np.int64)
    HP = np.zeros((K, HP_SIZE), dtype=model.dtype)
    for k, o in enumerate(opts):
        HP[k] = o.hyper_vector(model.dtype)
    seeds_arr = np.array(seeds, dtype=np.int64)
    rngs = [np.random.default_rng(s) for s in sh_seeds]
    orders = np.tile(np.arange(n, dtype=np.int64), (K, 1))
    # One shuffle seed for all (or no shuffling): every network visits the rows in the same
    # order (each network's generator, advanced once per epoch while it trains, would give the
    # same permutations), so it is drawn once per epoch, and the lane layout gathers each row
    # once for all its lanes (an order array of one row).
    shared_order = not shuffle or len(set(sh_seeds)) == 1
    active = np.ones(K, dtype=np.bool_)
    OUT = np.zeros((K, 4))
    hists = [History(path="population") for _ in range(K)]
    # the records of the compiled epochs (see dlbasics.models._core)
    net = _core.net_record(model, _core.NO_BLAS, _core.NO_BLAS)
    data = _core.data_record(X, Y, labels, dense)
    pop = (P, G, WS, LB, orders, seeds_arr, codes, HP, S[0], S[1], S[2], T0, active, OUT)
    records = [evaluation_recorder(m.evaluate, (X, Y, labels, dense), val, metrics)
               for m in nets]
    if lanes not in (None, False):
        raise ValueError(f"lanes must be None or False, got {lanes!r}")
    lanes = lanes is None and lanes_eligible(model, opts, K)
    if lanes:
        C = _lane_width(K, threads, _lane_bytes(model, P.shape[1], batch))
        lane_args = _lane_buffers(model, P.shape[1], batch, K, C)
        n_chunks = lane_args[0].shape[0]
        parallel = n_chunks >= 2 and threads >= 2
        kernel = _lanes.lanes_epoch_kernel if parallel else _lanes.lanes_epoch_serial
        if parallel:  # the thread count read above, which chose the lane width
            kernel = functools.partial(kernel, threads=threads)
    for k in range(K):
        records[k](hists[k])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=f"population x{K}", unit="epoch")
    for _ in range(epochs):
        if not active.any():
            break
        if shuffle and shared_order:
            orders[active] = rngs[0].permutation(n)
        elif shuffle:
            for k in range(K):
                if active[k]:
                    orders[k] = rngs[k].permutation(n)
        t0 = time.perf_counter()
        if lanes:
            # every active network has done the same number of updates (they share the
            # optimizer and the batch count; a stopped network is no longer active)
            count = int(T0[active][0])
            lane_orders = orders[np.flatnonzero(active)[:1]] if shared_order else orders
            kernel(net, data, batch, (int(codes[0]), HP[0], S[0], S[1], S[2], count),
                   (P, lane_orders, active, OUT), (C, *lane_args))
        else:
            kernel(net, data, batch, w.offs, pop)
        share = (time.perf_counter() - t0) / max(int(active.sum()), 1)
        for k in np.flatnonzero(active):
            done = int(OUT[k, 1])
            T0[k] += done
            nets[k].params[...] = P[k]  # evaluated, and handed to the callbacks
            if close_epoch(hists[k], opts[k].lr, done, int(OUT[k, 2]), share, OUT[k, 0],
                           OUT[k, 3] != 0, records[k], metrics == "full", callbacks, nets[k]):
                active[k] = False
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    for k in range(K):
        hists[k].state = _state_of(opts[k], S, k, int(T0[k]), P.shape[1])
    return hists, P


def lanes_eligible(model, opts, K):
    """Whether :func:`train_population` runs ``model``'s networks in the lane layout.

    Parameters
    ----------
    model : MLP
        The template network.
    opts : list of Optimizer
        The optimizer of each network.
    K : int
        Number of networks.

    Returns
    -------
    bool
        True for the ``"cpu"`` backend without dropout, at least :data:`LANES_MIN_NETWORKS`
        networks, one optimizer rule with the same hyper-parameters for every network, and
        elementwise activations (a softmax only as the output of the fused cross-entropy).
    """
    if not model.engine.lanes or K < LANES_MIN_NETWORKS:
        return False
    if np.any(np.asarray(model.keep) < 1.0):
        return False
    first = opts[0]
    hp = first.hyper_vector(model.dtype)
    for o in opts[1:]:
        if o is not first and (o.code != first.code
                               or not np.array_equal(o.hyper_vector(model.dtype), hp)):
            return False
    codes = list(model.codes)
    if SOFTMAX in codes[:-1] or (codes[-1] == SOFTMAX and not model.fused):
        return False
    return True


def _lane_width(K, threads, lane_bytes=0):
    """Lanes per chunk: :data:`LANES`, halved (to a multiple of 4) while half would still hold
    all ``K`` networks (no chunk of padding lanes mostly) or while a thread is left without a
    chunk, and (down to 16 lanes) while a chunk of ``lane_bytes`` a lane would exceed
    :data:`LANE_BYTES`."""
    C = LANES
    while C > 4 and (C // 2 >= K or -(-K // C) < threads):
        C //= 2
    while C > 16 and C * lane_bytes > LANE_BYTES:
        C //= 2
    return C


def _lane_bytes(model, n_params, batch):
    """Bytes of one lane of a chunk's working set at batch ``batch``: its workspace
    (:func:`dlbasics.models._lanes.lane_offsets`), parameters and gradient (the optimizer's
    slots, which rules other than plain SGD read every step, are not counted)."""
    per_lane = _lanes.lane_offsets(model.sizes, batch, 1)[1]
    return (per_lane + 2 * n_params) * np.dtype(model.dtype).itemsize


def _lane_buffers(model, n_params, batch, K, C):
    """Per-chunk workspaces of :func:`dlbasics.models._lanes.lanes_epoch_kernel`, allocated once."""
    n_chunks = -(-K // C)
    loffs, size = _lanes.lane_offsets(model.sizes, batch, C)
    dt = model.dtype
    wsl = np.zeros((n_chunks, size), dtype=dt)
    wsl[:, loffs[-1, 4]:loffs[-1, 4] + C] = 1.0  # the lane vector of ones
    return (
        wsl,  # WSL
        loffs,
        np.zeros((n_chunks, n_params * C), dtype=dt),  # PL
        np.zeros((n_chunks, n_params * C), dtype=dt),  # GL
        np.zeros((n_chunks, 3, n_params * C), dtype=dt),  # SL
        np.zeros((n_chunks, 2, C)),  # ACC
        np.zeros((n_chunks, batch * C), dtype=np.int64),  # LBL
        np.zeros((n_chunks, C), dtype=np.bool_),  # LIVE
    )


def _state_of(opt, S, k, count, n_params):
    """The optimizer state of network ``k`` as ``opt.init`` would shape it."""
    fresh = opt.init(np.zeros(n_params, dtype=S[0].dtype))
    slots = []
    for i, a in enumerate(fresh[1:]):
        slots.append(S[i][k].copy() if a.size else a)
    return type(fresh)(count, *slots)
