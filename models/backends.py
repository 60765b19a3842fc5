"""The backends of :class:`dlbasics.models.mlp.MLP`: one class each, one small interface.

``MLP(..., backend=name)`` builds ``BACKENDS[name](model)`` and keeps it as ``model.engine``;
:class:`~dlbasics.models.mlp.MLP`, :func:`~dlbasics.models.training.train` and
:func:`~dlbasics.models.population.train_population` call only the methods of :class:`Backend`
and never test a backend's name. A new backend is one subclass here and one entry in
:data:`BACKENDS`.

========================  =====================================================================
method                    what it does
========================  =====================================================================
``forward``               test-mode outputs of checked inputs
``forward_mc``            Monte-Carlo dropout: the mean output of sampled thinned networks
``evaluate``              test-mode ``(mean loss, accuracy)``
``batch_gradient``        training-mode loss of ``order[start:stop]``, gradient kept by the
                          backend (``grad_host`` gives it on the host)
``epoch``                 a whole epoch of updates: ``(state, loss sum, updates, rows,
                          diverged)``; ``path(fast)`` names how it runs
``start`` / ``finish``    begin and end a training run (optimizer state on the device, ...)
``training(batch)``,      context managers around a run or a solver (thread limits)
``blas_single_thread()``
``push_params`` /         keep a device copy of ``model.params`` in step (no-ops on the host)
``pull_params``
``population_kernel``     the compiled epoch of :func:`train_population` for K networks; the
                          class attribute ``lanes`` allows the CPU's lane layout
========================  =====================================================================

* :class:`CpuBackend` (``"cpu"``): the compiled kernels of :mod:`dlbasics.models._core`; an
  epoch is one compiled call (``fast=True``) or the general Python loop over mini-batches, with
  bitwise the same results.
* :class:`NumpyBackend` (``"numpy"``): plain NumPy (:mod:`dlbasics.models._numpy`), the baseline
  that shows what compilation buys.
* :class:`CudaBackend` (``"cuda"``): numba.cuda (:mod:`dlbasics.models._cuda`); parameters,
  optimizer state and data live on the device during a run.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import math

import numba
import numpy as np

from ..kernels.colsplit import COL_PARTS, cols_extra, packed_layout, part_columns
from ..kernels.config import (
    BLAS_MIN_ROWS,
    BLAS_MIN_WORK,
    BLAS_THREADED_MIN_ROWS,
    COL_SPLIT_MAX_ROWS,
    COL_SPLIT_MIN_PARAMS,
    COL_SPLIT_MIN_PARAMS_ONE_ROW,
    COL_SPLIT_MIN_WORK,
    OWN_PRODUCTS_MIN_WORK,
    PREDICT_BLAS_MIN_WORK,
    SPLIT_CHUNKS,
    SPLIT_MIN_ROWS,
    SPLIT_MIN_WORK,
)
from ..kernels.optimizers import SGD_CODE
from ..kernels.views import PAGE, aligned_zeros
from . import _core, _numpy

#: Rows per chunk when predicting: bounds the workspace of large prediction sets.
PREDICT_CHUNK = 1024


@functools.cache
def fast_parallel_regions():
    """Whether Numba's threading layer is OpenMP or TBB (a parallel region starts in about a
    microsecond), not the workqueue fallback (about 70 us a region, measured): the layer
    ``NUMBA_THREADING_LAYER`` names, else the first of TBB and OpenMP that loads."""
    import importlib

    layer = numba.config.THREADING_LAYER
    if layer == "workqueue":
        return False
    candidates = {"tbb": ["tbbpool"], "omp": ["omppool"]}.get(layer, ["tbbpool", "omppool"])
    for name in candidates:
        try:
            importlib.import_module(f"numba.np.ufunc.{name}")
        except ImportError:
            continue
        return True
    return False


class Backend(abc.ABC):
    """The interface every backend implements (see the module docstring); a subclass defines
    at least :meth:`forward`, :meth:`evaluate` and :meth:`batch_gradient`.

    Parameters
    ----------
    model : MLP
        The model whose arithmetic this backend does; it reads the model's description
        (``layout``, ``codes``, ``keep``, ``dropout``, ``loss_code``, ...) and its ``params``.

    Attributes
    ----------
    lanes : bool
        Whether :func:`dlbasics.models.population.train_population` may use the lane layout of
        :mod:`dlbasics.models._lanes` for this backend.
    """

    name = None
    lanes = False

    def __init__(self, model):
        self.model = model

    # -- parameters ----------------------------------------------------------------------------
    def push_params(self):  # noqa: B027 (a no-op on the host backends, not abstract)
        """Copy ``model.params`` to where the backend computes (nothing on the host)."""

    def pull_params(self):  # noqa: B027 (a no-op on the host backends, not abstract)
        """Copy the backend's parameters into ``model.params`` (nothing on the host)."""

    def grad_host(self):
        """The gradient of the last :meth:`batch_gradient` on the host: ``model.grad`` itself
        on the host backends (read it before the next call, or copy it), a fresh copy from the
        device on the others."""
        return self.model.grad

    # -- passes --------------------------------------------------------------------------------
    @abc.abstractmethod
    def forward(self, X):
        """Test-mode outputs ``(n, n_outputs)`` of checked inputs ``X``."""

    def forward_mc(self, X, n_nets, seed):
        """Mean output of ``n_nets`` thinned networks, masks of steps ``0..n_nets-1`` under
        ``seed`` (see :meth:`dlbasics.models.mlp.MLP.forward_mc`)."""
        self.pull_params()
        m = self.model
        out = np.empty((X.shape[0], m.n_outputs), dtype=m.dtype)
        chunk = min(X.shape[0], PREDICT_CHUNK)
        _core.mc_forward_kernel(m.params, _core.net_record(m, BLAS_MIN_ROWS, PREDICT_BLAS_MIN_WORK),
                                X, _core.buffers_record(m.workspace(chunk)), chunk, n_nets, seed,
                                out)
        return out

    @abc.abstractmethod
    def evaluate(self, X, Y, labels, dense):
        """Test-mode ``(mean loss, accuracy)`` on checked data (accuracy NaN for regressors)."""

    @abc.abstractmethod
    def batch_gradient(self, X, Y, labels, dense, order, start, stop, step, alpha=0.0):
        """Training-mode mean loss of rows ``order[start:stop]`` (dropout masks of update
        ``step``, L2 penalty ``alpha``); the gradient stays with the backend."""

    # -- training ------------------------------------------------------------------------------
    def path(self, fast):
        """How :meth:`epoch` runs, as :attr:`dlbasics.models.training.History.path` names it."""
        return "general"

    def start(self, optimizer, state):
        """Begin a training run from optimizer state ``state``; returns the state
        :meth:`epoch` takes."""
        return state

    def finish(self, optimizer, state):
        """End a training run; returns the host optimizer state."""
        return state

    def training(self, batch):
        """Context manager around a training run with mini-batches of ``batch`` rows."""
        return contextlib.nullcontext()

    def blas_single_thread(self):
        """Context manager keeping the host BLAS on one thread where the backend calls it."""
        return contextlib.nullcontext()

    def epoch(self, X, Y, labels, dense, order, batch, optimizer, state, lr, alpha=0.0,
              fast=True):
        """One epoch over ``order`` in batches of ``batch`` rows, an update after each.

        Returns
        -------
        state : NamedTuple
            The optimizer state after the epoch.
        total : float
            Sum over batches of the batch loss times its rows (the non-finite loss on
            divergence).
        done : int
            Updates made.
        rows : int
            Rows visited.
        diverged : bool
            Whether a batch loss was non-finite (the epoch stopped there).
        """
        m = self.model
        n = order.shape[0]
        total = 0.0
        done = 0
        rows = 0
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            value = self.batch_gradient(X, Y, labels, dense, order, start, stop, state.count,
                                        alpha)
            rows += stop - start
            if not math.isfinite(value):
                return state, value, done, rows, True
            state = optimizer.update(m.grad, state, m.params, lr)
            done += 1
            total += value * (stop - start)
        return state, total, done, rows, False

    def runs_epochs(self, batch, code, alpha):
        """Whether :meth:`epochs` runs batches of ``batch`` rows with optimizer rule ``code``
        and L2 penalty ``alpha``."""
        return False

    def epochs(self, X, Y, labels, dense, order, batch, optimizer, state, lr, alpha, shuffle,
               rule, losses):
        """Up to ``rule[RULE_EPOCHS]`` epochs in one compiled call, as
        :func:`dlbasics.models._core.split_epochs_kernel` runs them (its ``shuffle``, ``rule``
        and ``losses``: the running loss of each epoch run to its end, ``rule[RULE_RUN]`` of
        them), where :meth:`runs_epochs` says so. The parameters and the optimizer state's
        arrays change in place; ``state.count`` plus ``rule[RULE_DONE]`` is the count after."""
        raise ValueError(f"backend {self.name!r} runs no epochs in one call")

    def population_kernel(self, K, threads):
        """The compiled epoch of ``K`` networks for
        :func:`dlbasics.models.population.train_population` (per-network layout), called as
        ``kernel(net, data, batch, offs, pop)`` with the records of :mod:`dlbasics.models._core`
        (see :func:`dlbasics.models._core.population_epoch_kernel`)."""
        raise ValueError(f"population training runs on backend 'cpu' or 'cuda', model has "
                         f"{self.name!r}")


class CpuBackend(Backend):
    """Numba kernels on the CPU (:mod:`dlbasics.models._core`)."""

    name = "cpu"
    lanes = True

    def __init__(self, model):
        super().__init__(model)
        self._record = np.zeros(4)  # what the compiled epoch reports
        self._splits = {}  # Split buffers by the largest batch they serve
        self._cols = {}  # column-split workspaces by the largest batch they serve
        self._packed = None  # the column split's packed parameters and their offsets

    def splits(self, rows):
        """Whether a training batch of ``rows`` rows is split into :data:`SPLIT_CHUNKS` row
        chunks, one thread each (:func:`dlbasics.kernels.network.split_epoch`, and
        :func:`~dlbasics.kernels.network.split_gradient` in the general loop): from
        :meth:`split_min_rows` rows on, without dropout, with two or more Numba threads, and
        where Numba's threading layer starts a parallel region in about a microsecond (OpenMP
        or TBB; its fallback, the workqueue, takes about 70 us).

        With one thread (the studies' workers and their timing pass limit themselves to one)
        the batch runs whole: split chunks run one after the other would only add the cost of
        combining them (measured 13% at 200 rows of 20-100-4), and two busy processes, each
        waiting in a parallel region for a thread that the other holds, ran 3-4x slower. Any
        two or more threads give the same bits (the chunk count is fixed); one thread gives
        those of the batch summed in one pass."""
        return (SPLIT_CHUNKS > 1 and rows >= self.split_min_rows()
                and bool(np.all(self.model.keep == 1.0)) and numba.get_num_threads() >= 2
                and fast_parallel_regions())

    def col_splits(self, rows, code, alpha=0.0):
        """Whether a training batch of ``rows`` rows runs with each layer's units split between
        threads (:mod:`dlbasics.kernels.colsplit`; checked before :meth:`splits`): plain SGD
        (optimizer rule ``code``; the update is fused into the products), no L2 penalty
        (``alpha``), no dropout, two or more Numba threads, from :data:`BLAS_MIN_ROWS` to
        :data:`COL_SPLIT_MAX_ROWS` rows, a network of at least :data:`COL_SPLIT_MIN_PARAMS`
        parameters and a batch of at least :data:`COL_SPLIT_MIN_WORK` rows x parameters, or a
        single row through a network of at least :data:`COL_SPLIT_MIN_PARAMS_ONE_ROW`
        parameters (the measurements are in :mod:`dlbasics.kernels.config`; a single row
        gained nothing before each part kept its columns packed, 784-256-256-10: 42 against
        40 us a step, took 22 against 35 us once they were, and 14-16.6 us through
        :mod:`dlbasics.kernels.rowvec`)."""
        return self.col_split_fits(rows, code, alpha) and numba.get_num_threads() >= 2

    def col_split_fits(self, rows, code, alpha=0.0):
        """:meth:`col_splits` but for the thread count (what the speed report states), and each
        part holding at least a quarter of the weights (a network whose layers are narrower
        than 16 units but one, say 4096-10, would leave a part with nothing to do)."""
        m = self.model
        if rows == 1:
            size = m.n_params >= COL_SPLIT_MIN_PARAMS_ONE_ROW
        else:
            size = (BLAS_MIN_ROWS <= rows <= COL_SPLIT_MAX_ROWS
                    and m.n_params >= COL_SPLIT_MIN_PARAMS
                    and rows * m.n_params >= COL_SPLIT_MIN_WORK)
        return (COL_PARTS > 1 and code == SGD_CODE and alpha == 0.0 and size
                and bool(np.all(m.keep == 1.0)) and self._col_balance() >= 0.25)

    def _col_balance(self):
        """The smallest part's share of the weights under :func:`~dlbasics.kernels.colsplit.\
part_columns`."""
        sizes = self.model.sizes
        shares = []
        for p in range(COL_PARTS):
            w = 0
            for l in range(len(sizes) - 1):
                c0, c1 = part_columns(sizes[l + 1], p)
                w += sizes[l] * (c1 - c0)
            shares.append(w)
        return min(shares) / max(1, sum(shares))

    def _cols_buffers(self, batch):
        """``(buf, cols)``, the workspace record and the column split's own buffers
        ``(base, n_max, packed, poffs)`` of :func:`~dlbasics.models._core.cols_epoch_kernel`
        for batches of up to ``batch`` rows (the packed parameters, one buffer for every
        batch size)."""
        rec = self._cols.get(batch)
        if rec is None:
            from .mlp import Workspace

            m = self.model
            if self._packed is None:
                poffs, size = packed_layout(m.sizes)
                self._packed = (aligned_zeros(size, m.dtype, PAGE), poffs)
            w = Workspace(m.sizes, m.keep, batch, m.dtype)
            n_max = max(m.sizes[1:-1], default=0)
            ws = aligned_zeros(w.ws.shape[0] + cols_extra(n_max, batch), m.dtype)
            if len(self._cols) >= 4:
                self._cols.pop(next(iter(self._cols)))
            rec = self._cols[batch] = ((ws, w.offs, w.lbuf),
                                       (w.ws.shape[0], n_max, *self._packed))
        return rec

    def split_min_rows(self):
        """The fewest rows of a batch worth splitting: :data:`SPLIT_MIN_ROWS`, and at least
        :data:`SPLIT_MIN_WORK` row-parameters (below, meeting between the threads and
        exchanging the gradients cost more than half the batch's work saves)."""
        return max(SPLIT_MIN_ROWS, -(-SPLIT_MIN_WORK // self.model.n_params))

    def _split(self, batch):
        """The :class:`~dlbasics.kernels.network.Split` record (a plain tuple) for batches of up
        to ``batch`` rows: a chunk holds at most ``ceil(batch / C)`` rows, and a batch under
        :meth:`split_min_rows` rows (an epoch's last one) runs whole on workspace 0."""
        rec = self._splits.get(batch)
        if rec is None:
            from .mlp import Workspace

            m = self.model
            C = SPLIT_CHUNKS
            min_rows = self.split_min_rows()
            rows = max(-(-batch // C), min(batch, min_rows - 1))
            w = Workspace(m.sizes, m.keep, rows, m.dtype)
            if len(self._splits) >= 4:
                self._splits.pop(next(iter(self._splits)))
            rec = (np.zeros((C, m.n_params), dtype=m.dtype), np.zeros((C, w.ws.shape[0]),
                   dtype=m.dtype), w.offs, np.zeros((C, rows), dtype=np.int64), np.zeros(C),
                   min_rows)
            self._splits[batch] = rec
        return rec

    def forward(self, X):
        m = self.model
        out = np.empty((X.shape[0], m.n_outputs), dtype=m.dtype)
        chunk = min(X.shape[0], PREDICT_CHUNK)
        _core.predict_kernel(m.params, _core.net_record(m, BLAS_MIN_ROWS, PREDICT_BLAS_MIN_WORK),
                             X, _core.buffers_record(m.workspace(chunk)), chunk, out)
        return out

    def evaluate(self, X, Y, labels, dense):
        m = self.model
        chunk = min(X.shape[0], PREDICT_CHUNK)
        out = np.zeros(2)
        _core.evaluate_kernel(m.params, _core.net_record(m, BLAS_MIN_ROWS, PREDICT_BLAS_MIN_WORK),
                              _core.data_record(X, Y, labels, dense), chunk,
                              _core.buffers_record(m.workspace(chunk)), m.is_classifier,
                              m.output == "softmax", out)
        return float(out[0]), (float(out[1]) if m.is_classifier else math.nan)

    def train_net(self, split):
        """The :class:`~dlbasics.models._core.Net` record of a training step: BLAS from
        :data:`BLAS_MIN_ROWS` rows, our register-blocked products instead for layers of at
        least :data:`OWN_PRODUCTS_MIN_WORK` weights wherever BLAS would run on one thread (in
        the row chunks of a ``split`` batch, one thread each, and below
        :data:`BLAS_THREADED_MIN_ROWS` rows). A network without such a layer gets the record
        whose compiled step holds BLAS alone (``own_rows`` ``None``): compiling our products
        into the step of the row split added about a quarter to its first call
        (784-256-256-10 at batch 1024, empty cache, two pairs of runs: 49.8 against 39.7 s and
        58.3 against 47.4 s)."""
        m = self.model
        if max(n_in * n_out for n_in, n_out in zip(m.sizes[:-1], m.sizes[1:],
                                                   strict=True)) < OWN_PRODUCTS_MIN_WORK:
            return _core.net_record(m, BLAS_MIN_ROWS, BLAS_MIN_WORK)
        own_rows = _core.NO_BLAS if split else BLAS_THREADED_MIN_ROWS
        return _core.net_record(m, BLAS_MIN_ROWS, BLAS_MIN_WORK, own_rows,
                                OWN_PRODUCTS_MIN_WORK)

    def batch_gradient(self, X, Y, labels, dense, order, start, stop, step, alpha=0.0):
        m = self.model
        if self.splits(stop - start):
            return _core.split_gradient_kernel(
                m.params, m.grad, self.train_net(True),
                _core.data_record(X, Y, labels, dense), order, start, stop,
                self._split(stop - start), step, alpha)
        return _core.batch_gradient_kernel(
            m.params, m.grad, self.train_net(False),
            _core.data_record(X, Y, labels, dense), order, start, stop,
            _core.buffers_record(m.workspace(stop - start)), step, 0.0, alpha)

    def path(self, fast):
        return "fused" if fast else "general"

    def training(self, batch):
        if self.splits(batch) or BLAS_MIN_ROWS <= batch < BLAS_THREADED_MIN_ROWS:
            # small products, or one chunk of rows per thread: BLAS on one thread
            return self.blas_single_thread()
        return contextlib.nullcontext()

    def blas_single_thread(self):
        from .training import blas_single_thread

        return blas_single_thread()

    def epoch(self, X, Y, labels, dense, order, batch, optimizer, state, lr, alpha=0.0,
              fast=True):
        if not fast:
            return super().epoch(X, Y, labels, dense, order, batch, optimizer, state, lr, alpha)
        m = self.model
        out = self._record
        split = self.splits(batch)
        net = self.train_net(split)
        data = _core.data_record(X, Y, labels, dense)
        opt = _core.opt_record(optimizer, state, m.params, lr)
        if self.col_splits(batch, optimizer.code, alpha):
            buf, cols = self._cols_buffers(batch)
            _core.cols_epoch_kernel(m.params, m.grad, net, data, order, batch, buf, opt, out,
                                    cols)
        elif split:
            _core.split_epoch_kernel(m.params, m.grad, net, data, order, batch,
                                     self._split(batch), opt, out, alpha)
        else:
            _core.epoch_kernel(m.params, m.grad, net, data, order, batch,
                               _core.buffers_record(m.workspace(batch)), opt, out, alpha)
        done = int(out[1])
        return state._replace(count=state.count + done), out[0], done, int(out[2]), out[3] != 0

    def runs_epochs(self, batch, code, alpha):
        # the row split's epochs, on Python threads (split_epochs_kernel)
        return not self.col_splits(batch, code, alpha) and self.splits(batch)

    def epochs(self, X, Y, labels, dense, order, batch, optimizer, state, lr, alpha, shuffle,
               rule, losses):
        if not self.runs_epochs(batch, optimizer.code, alpha):
            raise ValueError(f"backend 'cpu' runs no epochs of {batch} rows in one call here")
        m = self.model
        net = self.train_net(True)
        data = _core.data_record(X, Y, labels, dense)
        opt = _core.opt_record(optimizer, state, m.params, lr)
        if losses.shape[0] < rule[_core.RULE_EPOCHS]:
            raise ValueError(f"losses holds {losses.shape[0]} epochs, the rule asks for "
                             f"{int(rule[_core.RULE_EPOCHS])}")
        _core.split_epochs_kernel(m.params, m.grad, net, data, order, batch, self._split(batch),
                                  opt, self._record, alpha, shuffle, rule, losses)

    def population_kernel(self, K, threads):
        # prange pays only with several networks per thread; with one thread (or one network)
        # the serial loop avoids the parallel launch, which stalls badly on a busy machine.
        if K >= 2 and threads >= 2:
            return _core.population_epoch_kernel
        return _core.population_epoch_serial


class NumpyBackend(Backend):
    """Plain NumPy array expressions (:mod:`dlbasics.models._numpy`), the baseline."""

    name = "numpy"

    def forward(self, X):
        return _numpy.forward(self.model, X, train=False)[-1][2]

    def forward_mc(self, X, n_nets, seed):
        m = self.model
        out = np.zeros((X.shape[0], m.n_outputs), dtype=m.dtype)
        saved = m.seed  # the masks are drawn under the model's seed
        try:
            m.seed = seed
            for s in range(n_nets):
                out += _numpy.forward(m, X, train=True, step=s)[-1][2] / n_nets
        finally:
            m.seed = saved
        return out

    def evaluate(self, X, Y, labels, dense):
        return _numpy.evaluate(self.model, X, Y, labels, dense)

    def batch_gradient(self, X, Y, labels, dense, order, start, stop, step, alpha=0.0):
        return _numpy.batch_gradient(self.model, X, Y, labels, dense, order[start:stop], step,
                                     alpha)


class CudaBackend(Backend):
    """numba.cuda (:class:`dlbasics.models._cuda.DeviceMLP`): the parameters live on the device
    for the model's whole life, the data and optimizer state during a training run."""

    name = "cuda"

    def __init__(self, model):
        super().__init__(model)
        from ._cuda import DeviceMLP

        self.device = DeviceMLP(model)

    def push_params(self):
        self.device.push_params()

    def pull_params(self):
        self.device.pull_params()

    def grad_host(self):
        return self.device.grad_host()

    def forward(self, X):
        return self.device.forward(X)

    def evaluate(self, X, Y, labels, dense):
        return self.device.evaluate(X, Y, labels, dense)

    def batch_gradient(self, X, Y, labels, dense, order, start, stop, step, alpha=0.0):
        return self.device.batch_gradient(X, Y, labels, dense, order, start, stop, step, alpha)

    def path(self, fast):
        return "device"

    def start(self, optimizer, state):
        _known_rule(optimizer.code)
        return self.device.adopt_state(optimizer, state)

    def finish(self, optimizer, state):
        return self.device.release_state(optimizer, state)

    def epoch(self, X, Y, labels, dense, order, batch, optimizer, state, lr, alpha=0.0,
              fast=True):
        return self.device.epoch(X, Y, labels, dense, order, batch, optimizer, state, lr, alpha)

    def population_kernel(self, K, threads):
        from ..kernels.gpu_population import gpu_population_epoch

        def epoch(net, data, batch, offs, pop):
            """The records of the CPU kernel, spelled out for the GPU kernel's launch."""
            net, data, pop = _core.Net(*net), _core.Data(*data), _core.Population(*pop)
            for code in np.unique(pop.codes):
                _known_rule(code)
            gpu_population_epoch(pop.P, pop.G, net.layout, net.codes, net.keep, net.inverted,
                                 net.slope, data.X, data.Y, data.labels, pop.orders, batch,
                                 pop.WS, offs, pop.LB, net.loss_code, net.fused, data.dense,
                                 net.eps, pop.seeds, pop.codes, pop.HP, pop.S1, pop.S2, pop.S3,
                                 pop.T0, pop.active, pop.OUT)

        return epoch


def _known_rule(code):
    """Raise for an optimizer rule code the kernels do not know: a compiled GPU kernel cannot
    raise (numba.cuda checks a kernel's ``raise`` only in debug builds), so an unknown code
    would leave the parameters silently untouched."""
    from ..kernels.optimizers import N_CODES

    if not 0 <= int(code) < N_CODES:
        raise ValueError(f"unknown optimizer rule code {int(code)}")


#: Backend classes by the name ``MLP(backend=...)`` takes.
BACKENDS = {cls.name: cls for cls in (CpuBackend, NumpyBackend, CudaBackend)}
