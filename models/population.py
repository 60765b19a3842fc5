"""Population training: K independent networks of one architecture trained in one compiled call.

The networks may differ in initialisation seed, shuffling seed, learning rate, optimizer and
hyper-parameters; they share the architecture, the data and the batch size. Each epoch runs
:func:`models._core.population_epoch_kernel`, a ``prange`` over networks in which every network
runs the same serial code as the fused single-network epoch (hand-written loops, no BLAS), so a
network trained in a population gives the same history as the same network trained alone.
"""

from __future__ import annotations

import math
import time

import numba
import numpy as np

from kernels import _checks

from . import _core
from .mlp import MLP, Workspace
from .optimizers import HP_SIZE, Optimizer
from .training import History, _batch_size, _validate

_BIG = 1 << 62


def _per_network(name, value, K):
    if isinstance(value, (list, tuple)):
        if len(value) != K:
            raise ValueError(f"{name} must have one entry per network ({K}), got {len(value)}")
        return list(value)
    return [value] * K


def train_population(model, X, y, optimizers, seeds, batch_size=None, epochs=10, shuffle=True,
                     shuffle_seeds=None, X_val=None, y_val=None, metrics="running",
                     progress=False):
    """Train K networks shaped like ``model`` at once; return their histories and parameters.

    Parameters
    ----------
    model : MLP
        Template: architecture, activations, loss, dropout, dtype and backend (``"cpu"``, or
        ``"cuda"`` to run the epochs on the GPU, one thread per network). Its
        own parameters are not changed.
    X, y : ndarray
        Training data, as for :func:`models.train`.
    optimizers : Optimizer or sequence of Optimizer
        One per network, or one shared by all.
    seeds : sequence of int
        Initialisation (and dropout) seed of each network; ``K = len(seeds)``.
    batch_size : int or None
        As in :func:`models.train` (``None``: full batch).
    epochs : int
    shuffle : bool
    shuffle_seeds : sequence of int, optional
        Shuffling seed of each network (default: 0 for every network, as :func:`train`).
    X_val, y_val : ndarray, optional
        Validation data evaluated for every network at epochs 0..E.
    metrics : {"running", "full"}
        As in :func:`models.train`.
    progress : bool
        tqdm bar over epochs.

    Returns
    -------
    histories : list of History
        One per network, equal to what :func:`models.train` gives for that network alone.
    params : ndarray of shape (K, n_params)
        Final parameters.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be an MLP, got {type(model).__name__}")
    if model.backend not in ("cpu", "cuda"):
        raise ValueError(
            f"population training runs on backend 'cpu' or 'cuda', model has {model.backend!r}"
        )
    seeds = [_checks.integer("seeds", s, low=0) for s in seeds]
    K = len(seeds)
    if K == 0:
        raise ValueError("seeds must name at least one network")
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
    active = np.ones(K, dtype=np.bool_)
    OUT = np.zeros((K, 4))
    hists = [History(path="population") for _ in range(K)]
    totals = [[0, 0, 0.0] for _ in range(K)]  # updates, grad evals, time share

    def record_eval():
        for k in range(K):
            if not active[k]:
                continue
            net = nets[k]
            net.params[...] = P[k]
            if metrics == "full":
                v, acc = net.evaluate(X, Y, labels, dense)
                hists[k].full_loss.append(v)
                hists[k].full_accuracy.append(acc)
            if val is not None:
                v, acc = net.evaluate(*val)
                hists[k].val_loss.append(v)
                hists[k].val_accuracy.append(acc)

    # prange pays only with several networks per thread; with one thread (or one network) the
    # serial loop avoids the parallel launch, which stalls badly on a busy machine.
    threads = numba.get_num_threads()
    parallel = K >= 2 and threads >= 2
    if model.backend == "cuda":
        from kernels.gpu_population import gpu_population_epoch as kernel
    else:
        kernel = _core.population_epoch_kernel if parallel else _core.population_epoch_serial
    record_eval()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=f"population x{K}", unit="epoch")
    for _ in range(epochs):
        if not active.any():
            break
        if shuffle:
            for k in range(K):
                if active[k]:
                    orders[k] = rngs[k].permutation(n)
        t0 = time.perf_counter()
        kernel(
            P, G, model.layout, model.codes, model.keep, model.dropout == "inverted",
            model.slope, X, Y, labels, orders, batch, WS, w.offs, LB, model.loss_code,
            model.fused, dense, model.eps, seeds_arr, codes, HP, S[0], S[1], S[2], T0, active,
            OUT,
        )
        share = (time.perf_counter() - t0) / max(int(active.sum()), 1)
        for k in range(K):
            if not active[k]:
                continue
            h = hists[k]
            done, rows = int(OUT[k, 1]), int(OUT[k, 2])
            T0[k] += done
            tot = totals[k]
            tot[0] += done
            tot[1] += rows
            tot[2] += share
            h.lr.append(opts[k].lr)
            h.updates.append(tot[0])
            h.grad_evals.append(tot[1])
            h.time.append(tot[2])
            if OUT[k, 3] != 0:
                h.train_loss.append(math.nan)
                h.diverged = True
                h.diverged_epoch = len(h.train_loss)
                active[k] = False
            else:
                h.train_loss.append(float(OUT[k, 0]) / rows)
        record_eval()
        if metrics == "full":
            for k in range(K):
                h = hists[k]
                if active[k] and not math.isfinite(h.full_loss[-1]):
                    h.diverged = True
                    h.diverged_epoch = len(h.train_loss)
                    active[k] = False
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    for k in range(K):
        hists[k].state = _state_of(opts[k], S, k, int(T0[k]), P.shape[1])
    return hists, P


def _state_of(opt, S, k, count, n_params):
    """The optimizer state of network ``k`` as ``opt.init`` would shape it."""
    fresh = opt.init(np.zeros(n_params, dtype=S[0].dtype))
    slots = []
    for i, a in enumerate(fresh[1:]):
        slots.append(S[i][k].copy() if a.size else a)
    return type(fresh)(count, *slots)
