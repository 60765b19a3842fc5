"""One training loop for batch, stochastic and mini-batch gradient descent."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..kernels import _checks
from ..kernels.config import BLAS_MIN_ROWS, BLAS_MIN_WORK, BLAS_THREADED_MIN_ROWS
from . import _core
from .optimizers import Optimizer

METRICS = ("running", "full")


@dataclass
class History:
    """What a training run recorded, epoch by epoch.

    Attributes
    ----------
    train_loss : list of float
        Per epoch 1..E: the running mean of the epoch's mini-batch losses, weighted by batch
        size (free: computed during the updates, with the weights changing along the epoch).
    full_loss, full_accuracy : list of float
        With ``metrics="full"``: loss and accuracy of the whole training set evaluated at test
        time, at epochs 0 (before any update) to E.
    val_loss, val_accuracy : list of float
        With validation data: the same on it, epochs 0 to E.
    updates, grad_evals : list of int
        Cumulative number of parameter updates and of per-sample gradient evaluations at the
        end of each epoch 1..E.
    time : list of float
        Cumulative wall time in seconds at the end of each epoch 1..E (evaluation excluded).
    lr : list of float
        Learning rate used in each epoch.
    diverged : bool
        True when a mini-batch loss became non-finite; training stopped there.
    diverged_epoch : int or None
        The (1-based) epoch in which that happened.
    stopped_by : str or None
        Name of the callback that stopped training early, if any.
    path : str
        ``"fused"`` (whole epochs in one compiled call) or ``"general"``.
    """

    train_loss: list = field(default_factory=list)
    full_loss: list = field(default_factory=list)
    full_accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    updates: list = field(default_factory=list)
    grad_evals: list = field(default_factory=list)
    time: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    diverged: bool = False
    diverged_epoch: int | None = None
    stopped_by: str | None = None
    path: str = "general"
    state: object = field(default=None, repr=False, compare=False)

    @property
    def epochs(self):
        """Number of epochs run (a diverged epoch counts)."""
        return len(self.train_loss)

    @property
    def loss(self):
        """``full_loss`` when recorded (epochs 0..E), else ``train_loss`` (epochs 1..E)."""
        return self.full_loss if self.full_loss else self.train_loss

    def to_dict(self):
        """Plain dict of the recorded lists (JSON-serialisable; NaN/inf kept as floats)."""
        d = asdict(self)
        d.pop("state")
        return d


def _batch_size(batch_size, n):
    if batch_size is None:
        return n
    b = _checks.integer("batch_size", batch_size, low=1)
    if b > n:
        raise ValueError(f"batch_size must be <= the number of samples ({n}), got {b}")
    return b


def _validate(model, X, y, X_val, y_val):
    X = model.check_X(X)
    Y, labels, dense = model.check_y(y, X.shape[0])
    val = None
    if (X_val is None) != (y_val is None):
        raise ValueError("X_val and y_val must be given together")
    if X_val is not None:
        Xv = model.check_X(X_val, "X_val")
        val = (Xv, *model.check_y(y_val, Xv.shape[0], "y_val"))
    return X, Y, labels, dense, val


def train(model, X, y, optimizer, batch_size=None, epochs=10, shuffle=True, seed=0, X_val=None,
          y_val=None, callbacks=(), progress=False, metrics="running", schedule=None, state=None,
          fast=True, alpha=0.0):
    """Train ``model`` in place by gradient descent and return its :class:`History`.

    Parameters
    ----------
    model : MLP
    X : ndarray of shape (n_samples, n_features)
    y : ndarray
        Targets as accepted by :meth:`MLP.gradient`.
    optimizer : Optimizer
        From :mod:`dlbasics.models.optimizers`.
    batch_size : int or None, default=None
        ``None``: batch gradient descent (one update per epoch on all samples); ``1``:
        stochastic gradient descent; ``k``: mini-batches of ``k`` (the last one smaller when
        ``k`` does not divide ``n``; epoch losses are weighted by batch size).
    epochs : int, default=10
    shuffle : bool or callable, default=True
        Visit samples in a new random order each epoch (indices are shuffled, not the data).
        A callable is called as ``shuffle(order)`` on the int64 visiting order of the previous
        epoch (``arange(n)`` at first) and returns the next one (a permutation of it): e.g.
        scikit-learn's ``sample_idx = shuffle(sample_idx, random_state=rs)``.
    seed : int, default=0
        Seed of the shuffling. Same seed, same history, bitwise.
    X_val, y_val : ndarray, optional
        Validation data, evaluated at epochs 0..E.
    callbacks : sequence of callables
        Called as ``cb(epoch, history, model)`` after each epoch; a true return value stops
        training (``history.stopped_by`` names it).
    progress : bool, default=False
        Show a tqdm progress bar over epochs.
    metrics : {"running", "full"}, default="running"
        ``"full"`` adds a test-mode evaluation pass over the training set at epochs 0..E.
    schedule : callable, optional
        ``schedule(epoch) -> lr`` (see :mod:`dlbasics.models.schedules`); default the optimizer's
        ``lr``.
    state : NamedTuple, optional
        Optimizer state to continue from (``history.state`` of an earlier run).
    fast : bool, default=True
        Use the fused path (a whole epoch in one compiled call) where it applies (backend
        ``"cpu"``). It gives bitwise the same results as the general path. The ``"cuda"``
        backend always runs whole epochs on the device.
    alpha : float >= 0, default=0.0
        L2 penalty of the weights (not the biases) in every mini-batch of ``n`` rows:
        ``alpha / (2 n) * sum ||W||^2`` added to the batch loss (and so to ``train_loss``) and
        ``alpha / n * W`` to its gradient, as scikit-learn's MLPs define ``alpha``. ``0`` gives
        bitwise the results of training without it.

    Returns
    -------
    History
        ``history.state`` holds the final optimizer state.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError("optimizer must be a dlbasics.models.optimizers.Optimizer, "
                        f"got {optimizer!r}")
    epochs = _checks.integer("epochs", epochs, low=0)
    seed = _checks.integer("seed", seed, low=0)
    _checks.choice("metrics", metrics, METRICS)
    alpha = _checks.real("alpha", alpha, low=0.0)
    if not (callable(shuffle) or isinstance(shuffle, (bool, np.bool_))):
        raise TypeError(f"shuffle must be a bool or a callable, got {type(shuffle).__name__}")
    X, Y, labels, dense, val = _validate(model, X, y, X_val, y_val)
    n = X.shape[0]
    batch = _batch_size(batch_size, n)
    if state is None:
        state = optimizer.init(model.params)
    rng = np.random.default_rng(seed)
    order = np.arange(n, dtype=np.int64)
    hist = History()
    fused = bool(fast) and model.backend == "cpu"
    hist.path = "fused" if fused else ("device" if model.backend == "cuda" else "general")
    if model.backend == "cuda":
        state = model._device.adopt_state(optimizer, state)

    def record_eval():
        if metrics == "full":
            v, acc = model.evaluate(X, Y, labels, dense)
            hist.full_loss.append(v)
            hist.full_accuracy.append(acc)
        if val is not None:
            v, acc = model.evaluate(*val)
            hist.val_loss.append(v)
            hist.val_accuracy.append(acc)

    record_eval()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="train", unit="epoch")
    elapsed = 0.0
    updates = 0
    evals = 0
    out = np.zeros(4)
    with contextlib.ExitStack() as stack:
        if model.backend == "cpu" and BLAS_MIN_ROWS <= batch < BLAS_THREADED_MIN_ROWS:
            stack.enter_context(blas_single_thread())  # small products: BLAS on one thread
        if bar is not None:
            stack.callback(bar.close)
        for epoch in range(epochs):
            lr = optimizer.lr if schedule is None else float(schedule(epoch))
            _checks.real("lr", lr, low=0.0, low_open=True)
            if callable(shuffle):
                order = _checked_order(shuffle(order), n)
            elif shuffle:
                order = rng.permutation(n).astype(np.int64)
            t0 = time.perf_counter()
            if model.backend == "cuda":
                state, total, done, rows, bad = model._device.epoch(
                    X, Y, labels, dense, order, batch, optimizer, state, lr, alpha)
            elif fused:
                state, total, done, rows, bad = _fused_epoch(model, X, Y, labels, dense, order,
                                                             batch, optimizer, state, lr, out,
                                                             alpha)
            else:
                state, total, done, rows, bad = _general_epoch(model, X, Y, labels, dense, order,
                                                               batch, optimizer, state, lr, alpha)
            elapsed += time.perf_counter() - t0
            updates += done
            evals += rows
            hist.lr.append(lr)
            hist.updates.append(updates)
            hist.grad_evals.append(evals)
            hist.time.append(elapsed)
            hist.train_loss.append(float(total) / rows if not bad else math.nan)
            if bad:
                hist.diverged = True
                hist.diverged_epoch = epoch + 1
                break
            record_eval()
            if metrics == "full" and not math.isfinite(hist.full_loss[-1]):
                hist.diverged = True
                hist.diverged_epoch = epoch + 1
                break
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{hist.train_loss[-1]:.4g}")
            stop = False
            for cb in callbacks:
                if cb(epoch + 1, hist, model):
                    hist.stopped_by = getattr(cb, "__name__", type(cb).__name__)
                    stop = True
                    break
            if stop:
                break
    if model.backend == "cuda":
        state = model._device.release_state(optimizer, state)
    hist.state = state
    return hist


def blas_single_thread():
    """Context manager limiting every loaded BLAS library to one thread.

    Numba's ``np.dot`` calls the OpenBLAS that scipy ships, loaded with
    ``scipy.linalg.cython_blas``: import it first so that the limit reaches it.
    """
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _checked_order(order, n):
    """The visiting order a ``shuffle`` callable returned, checked (a bad one would make the
    compiled epoch read out of bounds)."""
    order = np.ascontiguousarray(order, dtype=np.int64)
    if order.shape != (n,) or (n and (order.min() < 0 or order.max() >= n)):
        raise ValueError(f"shuffle must return a permutation of range({n}), got shape "
                         f"{order.shape}")
    return order


def _fused_epoch(model, X, Y, labels, dense, order, batch, optimizer, state, lr, out, alpha):
    w = model.workspace(batch)
    s1, s2, s3 = optimizer.slots(state, model.params)
    hp = optimizer.hyper_vector(model.dtype, lr)
    _core.epoch_kernel(
        model.params, model.grad, model.layout, model.codes, model.keep,
        model.dropout == "inverted", model.slope, X, Y, labels, order, batch, w.ws, w.offs,
        w.lbuf, model.loss_code, model.fused, dense, model.eps, model.seed, optimizer.code, hp,
        s1, s2, s3, state.count, BLAS_MIN_ROWS, BLAS_MIN_WORK, out, alpha,
    )
    done = int(out[1])
    return state._replace(count=state.count + done), out[0], done, int(out[2]), out[3] != 0


def _general_epoch(model, X, Y, labels, dense, order, batch, optimizer, state, lr, alpha):
    n = order.shape[0]
    total = 0.0
    done = 0
    rows = 0
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        value = model.batch_gradient(X, Y, labels, dense, order, start, stop, state.count,
                                     alpha)
        rows += stop - start
        if not math.isfinite(value):
            return state, value, done, rows, True
        state = optimizer.update(model.grad, state, model.params, lr)
        done += 1
        total += value * (stop - start)
    return state, total, done, rows, False
