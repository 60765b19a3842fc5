"""The ``"cuda"`` backend of :class:`dlbasics.models.mlp.MLP`: parameters, state and data on the
device.

:class:`DeviceMLP` is created by ``MLP(..., backend="cuda")`` and holds, for the model's whole
life, a device copy of the flat parameter vector and of the gradient (per-layer ``W``, ``b``,
``dW``, ``db`` are views into them, the host layout), workspaces per batch size, and small
device records of losses. :func:`dlbasics.models.training.train` drives it through
:meth:`DeviceMLP.adopt_state`, :meth:`DeviceMLP.epoch` and :meth:`DeviceMLP.release_state`:

* during a training run the data (``X``, targets, validation sets) are uploaded once and cached
  by identity, the optimizer slots live on the device, and an epoch launches its kernels back to
  back with no host round trip per step: each mini-batch loss is added to a device record
  (:data:`dlbasics.kernels.gpu_losses.MODE_EPOCH`), a non-finite loss marks the record diverged and
  turns the remaining updates of the epoch into no-ops, and the record is copied back once per epoch
  (with the parameters, so ``model.params`` is current after every epoch);
* outside a run every call uploads its data afresh (an array changed in place is never stale).

Each step runs the same operations in the same order as :mod:`dlbasics.models._core` (gather,
forward with the counter-hash dropout masks of ``(seed, step, layer, row, unit)``, loss from the
logits or outputs, backward, one update by :func:`dlbasics.kernels.gpu_optimizers.apply_update`),
with the GPU kernels of :mod:`dlbasics.kernels.gpu_dense`, :mod:`dlbasics.kernels.gpu_dropout`,
:mod:`dlbasics.kernels.gpu_losses` and :mod:`dlbasics.kernels.gpu_activations`; results match the
CPU backend up to rounding (summation order of the tiled products and reductions, fused
multiply-adds), and the dropout masks exactly. Without an L2 penalty an epoch is one launch
(:mod:`dlbasics.kernels.gpu_small`: one block for small networks, a cooperative grid for larger
ones up to batch ``GRID_MAX_BATCH``; :func:`dlbasics.kernels.gpu_small.path` decides); otherwise
the step launches per layer (with cuBLAS for batches of ``BLAS_MIN_ROWS`` rows or more,
:mod:`dlbasics.kernels.gpu_blas`). Launches per step of the
per-layer path without dropout or L2: gather, one forward per layer, loss, one ``dW``/``db`` per
layer, one ``dx`` per hidden layer, the update (``3 L + 2``; with cuBLAS each forward, ``dW``/``db``
and ``dx`` is a cuBLAS call or two plus an epilogue kernel). The evaluation kernel sums losses and
hits in float64 (as the CPU does), also for float32 networks.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import float64

from ..kernels import gpu_config as g
from ..kernels._gpu_arrays import dummy
from ..kernels.gpu_activations import launch_backward
from ..kernels.gpu_dense import launch_forward, launch_grad_input, launch_grad_weights
from ..kernels.gpu_dropout import launch_layer_dropout
from ..kernels.gpu_losses import MODE_EPOCH, MODE_STORE, launch_loss
from ..kernels.gpu_optimizers import launch_update
from ..kernels.gpu_small import launch_small_epoch, phase_work
from ..kernels.gpu_small import path as epoch_path
from ..kernels.losses import dense_row, label_row
from ..kernels.network import NO_BLAS, gather_part, row_hits

cuda = None  # numba.cuda, bound by _kernels() on first use (import-safe without numba-cuda)

#: Rows per chunk when predicting or evaluating (as :data:`dlbasics.models.mlp.PREDICT_CHUNK`).
CHUNK = 1024


@functools.cache
def _kernels(threads):
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()

    @cuda.jit
    def gather(X, Y, labels, order, start, B, xb, yb, lb, dense):
        """Rows ``order[start:start + B]`` of ``X`` and of the targets into the workspace."""
        X = A(X)
        Y = A(Y)
        labels = A(labels)
        order = A(order)
        xb = A(xb)
        yb = A(yb)
        lb = A(lb)
        gather_part((X, Y, labels, dense), order, start, B, xb, yb, lb, cuda.grid(1),
                    cuda.gridsize(1))

    @cuda.jit
    def evaluate(code, Y, labels, P, aL, dense, eps, classify, softmax_out, ev):
        """Test-mode loss and correct count of a chunk, added to ``ev[0]`` (loss times rows)
        and ``ev[1]``, as :func:`dlbasics.models._core.evaluate_kernel` counts them; one block."""
        Y = A(Y)
        labels = A(labels)
        P = A(P)
        aL = A(aL)
        ev = A(ev)
        n, k = P.shape
        inv_n = 1.0 / n
        tid = cuda.threadIdx.x
        part = cuda.shared.array(threads, float64)
        hits = cuda.shared.array(threads, float64)
        total = 0.0
        correct = 0.0
        for i in range(tid, n, threads):
            if dense:
                total = dense_row(code, Y[i], P[i], P[i], False, eps, inv_n, total)
            else:
                total = label_row(code, labels[i], P[i], P[i], False, eps, inv_n, total)
            if classify:
                if dense:
                    correct = row_hits(correct, aL[i], Y[i], 0, True, softmax_out)
                else:
                    correct = row_hits(correct, aL[i], aL[i], labels[i], False, True)
        part[tid] = total
        hits[tid] = correct
        cuda.syncthreads()
        s = threads // 2
        while s > 0:
            if tid < s:
                part[tid] += part[tid + s]
                hits[tid] += hits[tid + s]
            cuda.syncthreads()
            s //= 2
        if tid == 0:
            ev[0] += part[0] * inv_n * n
            ev[1] += hits[0]

    return gather, evaluate


@functools.cache
def _l2_kernel(threads):
    """The L2 penalty step on the device (one block), twin of
    :func:`dlbasics.kernels.network.l2_penalty`."""
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()

    @cuda.jit
    def l2(params, grad, segs, scale, B, res, mode):
        """``grad[w] += scale * params[w]`` over the weight ranges ``segs`` (rows ``start,
        stop``); the penalty ``scale / 2 * sum w^2`` is added to the loss record ``res`` as the
        loss kernel records a batch loss (``MODE_STORE``: to ``res[0]``; ``MODE_EPOCH``: times
        ``B`` to ``res[0]`` unless the record is marked diverged)."""
        params = A(params)
        grad = A(grad)
        segs = A(segs)
        res = A(res)
        tid = cuda.threadIdx.x
        part = cuda.shared.array(threads, float64)
        total = 0.0
        for s in range(segs.shape[0]):
            for i in range(segs[s, 0] + tid, segs[s, 1], threads):
                w = params[i]
                total += float64(w) * float64(w)
                grad[i] += scale * w
        part[tid] = total
        cuda.syncthreads()
        half = threads // 2
        while half > 0:
            if tid < half:
                part[tid] += part[tid + half]
            cuda.syncthreads()
            half //= 2
        if tid == 0:
            pen = 0.5 * scale * part[0]
            if mode == MODE_STORE:
                res[0] += pen
            elif res[3] == 0.0:
                res[0] += pen * B

    return l2


class _Workspace:
    """Device buffers for batches of up to ``batch`` rows (2-D views of the right width)."""

    def __init__(self, sizes, keep, batch, dtype):
        L = len(sizes) - 1
        self.batch = batch
        self.z = [g.device_array((batch, sizes[l + 1]), dtype) for l in range(L)]
        self.a = [g.device_array((batch, sizes[l + 1]), dtype) for l in range(L)]
        self.hd = [g.device_array((batch, sizes[l]), dtype) if keep[l] < 1.0 else None
                   for l in range(L)]
        self.m = [g.device_array((batch, sizes[l]), dtype) if keep[l] < 1.0 else None
                  for l in range(L)]
        self.x = g.device_array((batch, sizes[0]), dtype)
        self.y = g.device_array((batch, sizes[-1]), dtype)
        self.lb = g.device_zeros(batch, np.int64)
        widest = max(sizes)
        self._delta = [g.device_array(batch * widest, dtype) for _ in range(2)]
        self._sizes = list(sizes)
        self._views = {}

    def delta(self, idx, B, width):
        """Delta buffer ``idx`` (0 or 1) viewed as ``(B, width)``."""
        return self._delta[idx][: B * width].reshape(B, width)

    def views(self, B):
        """The ``B``-row views of every buffer, made once per ``B`` (a device-array slice is a
        new host object with its own checks: building some 30 of them per step cost more than
        launching the step's kernels)."""
        v = self._views.get(B)
        if v is None:
            v = _Views(self, B)
            self._views[B] = v
        return v


class _Views:
    """``B``-row views of a :class:`_Workspace` (lists indexed by layer; ``delta[idx][w]`` is
    delta buffer ``idx`` as ``(B, w)`` for every layer width ``w``)."""

    def __init__(self, ws, B):
        def rows(a):
            return None if a is None else a[:B]

        self.z = [rows(a) for a in ws.z]
        self.a = [rows(a) for a in ws.a]
        self.hd = [rows(a) for a in ws.hd]
        self.m = [rows(a) for a in ws.m]
        self.x, self.y, self.lb = ws.x[:B], ws.y[:B], ws.lb[:B]
        self.delta = [{w: ws.delta(idx, B, w) for w in set(ws._sizes)} for idx in range(2)]


class DeviceState:
    """Optimizer state while it lives on the device (see :meth:`DeviceMLP.adopt_state`).

    Attributes
    ----------
    host : NamedTuple
        The host state it came from (its slot arrays receive the final values).
    count : int
        Update count.
    slots : list of 3 device arrays
        The slot arrays of :func:`dlbasics.kernels.gpu_optimizers.apply_update` (empty where
        unused).
    """

    def __init__(self, host, count, slots):
        self.host = host
        self.count = count
        self.slots = slots

    def __repr__(self):
        return f"DeviceState({type(self.host).__name__}, count={self.count})"


class DeviceMLP:
    """Device side of an :class:`dlbasics.models.mlp.MLP` with ``backend="cuda"`` (see the module
    doc).

    Parameters
    ----------
    model : MLP
        The model; its ``params`` are uploaded now.

    Raises
    ------
    RuntimeError
        When numba-cuda is missing or there is no GPU (and no simulator).
    """

    def __init__(self, model):
        g.require_cuda()
        self.model = model
        self.dtype = np.dtype(model.dtype)
        self.d_params = g.to_device(model.params)
        self.d_grad = g.device_zeros(model.n_params, self.dtype)
        self.layers = []
        for n_in, n_out, w_off, b_off in model.layout:
            n_in, n_out, w_off, b_off = int(n_in), int(n_out), int(w_off), int(b_off)
            w, b = slice(w_off, w_off + n_in * n_out), slice(b_off, b_off + n_out)
            self.layers.append((
                n_in, n_out,
                self.d_params[w].reshape(n_in, n_out), self.d_params[b],
                self.d_grad[w].reshape(n_in, n_out), self.d_grad[b],
            ))
        self._workspaces = {}
        self._cache = None  # {id(host array): (host array, device array)} during a run
        self._small = {}  # batch -> device Workspace arrays of the one-launch epoch
        self.record = g.device_zeros(4, np.float64)
        self.result = g.device_zeros(1, np.float64)
        self.evaluation = g.device_zeros(2, np.float64)

    # -- parameters and data --------------------------------------------------------------------
    def push_params(self):
        """Copy ``model.params`` to the device."""
        g.copy_to_device(self.d_params, self.model.params)

    def pull_params(self):
        """Copy the device parameters into ``model.params`` (in place: views stay valid)."""
        g.copy_to_host(self.d_params, self.model.params)

    def grad_host(self):
        """Host copy of the gradient of the last :meth:`batch_gradient`."""
        return g.copy_to_host(self.d_grad)

    def _dev(self, a):
        """Device copy of host array ``a`` (cached by identity during a training run)."""
        if self._cache is None:
            return g.to_device(a)
        hit = self._cache.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        d = g.to_device(a)
        self._cache[id(a)] = (a, d)
        return d

    def _targets(self, Y, labels, dense):
        if dense:
            return self._dev(Y), dummy(np.int64)
        return dummy(self.dtype, 2), self._dev(labels)

    def _workspace(self, batch):
        ws = self._workspaces.get(batch)
        if ws is None:
            if len(self._workspaces) >= 4:
                self._workspaces.pop(next(iter(self._workspaces)))
            ws = _Workspace(self.model.sizes, self.model.keep, batch, self.dtype)
            self._workspaces[batch] = ws
        return ws

    # -- passes ---------------------------------------------------------------------------------
    def _forward(self, h, B, ws, train, step, out=None):
        """Forward pass of the ``(B, n0)`` device input ``h``; the output activations go to
        ``out`` when given (else to the workspace). Returns them."""
        m = self.model
        v = ws.views(B)
        inverted = m.dropout == "inverted"
        last = len(self.layers) - 1
        for l, (_, _, W, b, _, _) in enumerate(self.layers):
            p = float(m.keep[l])
            if p < 1.0 and (train or not inverted):
                hd = v.hd[l]
                launch_layer_dropout(h, hd, v.m[l], m.seed, step, l, p,
                                     1.0 / p if inverted else 1.0, train)
                h = hd
            a = out if (out is not None and l == last) else v.a[l]
            # training with a fused loss reads only the output logits z
            launch_forward(h, W, b, int(m.codes[l]), m.slope, v.z[l], a,
                           softmax=not (train and m.fused and l == last))
            h = a
        return h

    def _backward(self, x, B, ws, Y, labels, dense, record, mode):
        """Loss (into ``record`` per ``mode``) and gradient of the batch in the workspace."""
        m = self.model
        v = ws.views(B)
        L = len(self.layers)
        n_last = self.layers[-1][1]
        zL, aL = v.z[L - 1], v.a[L - 1]
        delta = v.delta[0][n_last]
        launch_loss(m.loss_code, Y, labels, zL if m.fused else aL, delta, True, dense, m.eps,
                    record, mode)
        if not m.fused:
            launch_backward(int(m.codes[L - 1]), zL, aL, delta, delta, m.slope)
        cur = 0
        for l in range(L - 1, -1, -1):
            n_in, n_out, W, _, dW, db = self.layers[l]
            delta = v.delta[cur][n_out]
            if m.keep[l] < 1.0:
                h = v.hd[l]
            elif l == 0:
                h = x
            else:
                h = v.a[l - 1]
            launch_grad_weights(h, delta, dW, db)
            if l == 0:
                break
            nxt = 1 - cur
            launch_grad_input(delta, W, v.delta[nxt][n_in],
                              mask=v.m[l] if m.keep[l] < 1.0 else None,
                              code=int(m.codes[l - 1]), zp=v.z[l - 1],
                              ap=v.a[l - 1], slope=m.slope)
            cur = nxt

    def _step(self, dX, dY, dlab, dense, d_order, start, stop, step, record, mode):
        """Gather rows ``order[start:stop]``, forward in training mode, loss and gradient."""
        B = stop - start
        ws = self._workspace(B) if mode == MODE_STORE else self._epoch_ws
        gather = _kernels(g.reduce_threads())[0]
        n_in = self.model.sizes[0]
        n_out = self.model.sizes[-1]
        v = ws.views(B)
        xb, yb, lb = v.x, v.y, v.lb
        g.launch(gather, *g.grid_1d(B * max(n_in, n_out)), dX, dY, dlab, d_order, int(start),
                 int(B), xb, yb, lb, bool(dense))
        self._forward(xb, B, ws, True, step)
        self._backward(xb, B, ws, yb if dense else dY, lb if not dense else dlab, dense, record,
                       mode)

    # -- the hooks of MLP and train -------------------------------------------------------------
    def forward(self, X):
        """Test-mode outputs of checked host inputs ``X``, as a host array ``(n, n_out)``."""
        n = X.shape[0]
        dX = self._dev(X)
        out = g.device_array((n, self.model.n_outputs), self.dtype)
        chunk = min(n, CHUNK)
        ws = self._workspace(chunk)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            self._forward(dX[start:stop], stop - start, ws, False, 0, out=out[start:stop])
        return g.copy_to_host(out)

    def evaluate(self, X, Y, labels, dense):
        """``(mean loss, accuracy or NaN)`` of the test-mode network on checked data."""
        m = self.model
        n = X.shape[0]
        dX = self._dev(X)
        dY, dlab = self._targets(Y, labels, dense)
        chunk = min(n, CHUNK)
        ws = self._workspace(chunk)
        g.copy_to_device(self.evaluation, np.zeros(2))
        threads = g.reduce_threads()
        evaluate = _kernels(threads)[1]
        L = len(self.layers)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            B = stop - start
            self._forward(dX[start:stop], B, ws, False, 0)
            zL, aL = ws.views(B).z[L - 1], ws.views(B).a[L - 1]
            g.launch(evaluate, 1, threads, int(m.loss_code), dY[start:stop] if dense else dY,
                     dlab if dense else dlab[start:stop], zL if m.fused else aL, aL,
                     bool(dense), float(m.eps), bool(m.is_classifier),
                     m.output == "softmax", self.evaluation)
        ev = g.copy_to_host(self.evaluation)
        return float(ev[0] / n), (float(ev[1] / n) if m.is_classifier else math.nan)

    def _penalty(self, alpha, B, record, mode):
        """Add the L2 penalty ``alpha`` of the weights for a batch of ``B`` rows to the
        gradient and to ``record`` (see :func:`_l2_kernel`)."""
        segs = getattr(self, "_l2_segs", None)
        if segs is None:
            lay = self.model.layout
            segs = np.stack([lay[:, 2], lay[:, 2] + lay[:, 0] * lay[:, 1]], axis=1)
            segs = self._l2_segs = g.to_device(np.ascontiguousarray(segs, dtype=np.int64))
        threads = g.reduce_threads()
        scale = self.dtype.type(alpha / B)
        g.launch(_l2_kernel(threads), 1, threads, self.d_params, self.d_grad, segs, scale,
                 float(B), record, int(mode))

    def batch_gradient(self, X, Y, labels, dense, order, start, stop, step, alpha=0.0):
        """Loss of rows ``order[start:stop]`` (training mode, L2 penalty ``alpha``); the
        gradient stays on the device (:meth:`grad_host` copies it)."""
        dX = self._dev(X)
        dY, dlab = self._targets(Y, labels, dense)
        self._step(dX, dY, dlab, dense, g.to_device(np.ascontiguousarray(order)), start, stop,
                   step, self.result, MODE_STORE)
        if alpha > 0.0:
            self._penalty(alpha, stop - start, self.result, MODE_STORE)
        return float(g.copy_to_host(self.result)[0])

    def adopt_state(self, optimizer, state):
        """Start a training run: move ``state``'s slots to the device, start caching data.

        Returns
        -------
        DeviceState
        """
        slots = optimizer.slots(state, self.model.params)
        empty = g.device_array((0,), self.dtype)
        dslots = [g.to_device(a) if a.size else empty for a in slots]
        self._cache = {}
        return DeviceState(state, int(state.count), dslots)

    def epoch(self, X, Y, labels, dense, order, batch, optimizer, state, lr, alpha=0.0):
        """One epoch on the device (L2 penalty ``alpha`` per batch); returns ``(state, loss
        sum weighted by rows, updates, rows, diverged)`` as the CPU's fused epoch does."""
        dX = self._dev(X)
        dY, dlab = self._targets(Y, labels, dense)
        d_order = g.to_device(np.ascontiguousarray(order, dtype=np.int64))
        hp_host = optimizer.hyper_vector(self.dtype, lr)
        hp = g.to_device(hp_host)
        g.copy_to_device(self.record, np.zeros(4))
        kind = epoch_path(self.model.sizes, batch) if alpha == 0.0 else None
        if kind is not None:
            self._small_epoch(dX, dY, dlab, dense, d_order, batch, optimizer, state, hp,
                              kind == "grid")
            return self._finish_epoch(state)
        self._epoch_ws = self._workspace(batch)
        s1, s2, s3 = state.slots
        stop_flag = self.record[3:4]
        n = order.shape[0]
        t = state.count
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            self._step(dX, dY, dlab, dense, d_order, start, stop, t, self.record, MODE_EPOCH)
            if alpha > 0.0:
                self._penalty(alpha, stop - start, self.record, MODE_EPOCH)
            t += 1
            launch_update(optimizer.code, self.d_params, self.d_grad, s1, s2, s3, hp, t,
                          stop=stop_flag, hp_host=hp_host)
        return self._finish_epoch(state)

    def _finish_epoch(self, state):
        total, done, rows, bad = (float(v) for v in g.copy_to_host(self.record))
        self.pull_params()
        state.count += int(done)
        return state, total, int(done), int(rows), bad != 0.0

    def _small_epoch(self, dX, dY, dlab, dense, d_order, batch, optimizer, state, hp, grid):
        """The whole epoch in one launch (:mod:`dlbasics.kernels.gpu_small`; one block, or a
        cooperative grid); its record goes to ``self.record``."""
        from .mlp import Workspace

        m = self.model
        bufs = self._small.get(batch)
        if bufs is None:
            if len(self._small) >= 4:
                self._small.pop(next(iter(self._small)))
            w = Workspace(m.sizes, m.keep, batch, self.dtype)
            bufs = tuple(g.to_device(np.ascontiguousarray(a)) for a in (
                w.ws, w.offs, w.lbuf, m.layout, m.codes, m.keep))
            self._small[batch] = bufs
        ws, offs, lb, layout, codes, keep = bufs
        s1, s2, s3 = state.slots
        net = (layout, codes, keep, m.dropout == "inverted", self.dtype.type(m.slope),
               int(m.loss_code), bool(m.fused), float(m.eps), int(m.seed), NO_BLAS, NO_BLAS, 0,
               NO_BLAS)
        launch_small_epoch(self.d_params, self.d_grad, net, (dX, dY, dlab, bool(dense)),
                           d_order, batch, (ws, offs, lb),
                           (int(optimizer.code), hp, s1, s2, s3, int(state.count)),
                           self.record, grid=grid, work=phase_work(m.sizes, batch))

    def release_state(self, optimizer, state):
        """End a training run: slots back into the host state's arrays, parameters to
        ``model.params``, data cache dropped. Returns the host state."""
        self._cache = None
        self.pull_params()
        if not isinstance(state, DeviceState):
            return state
        host = state.host
        for d, a in zip(state.slots, host[1:], strict=False):
            if isinstance(a, np.ndarray) and a.size:
                g.copy_to_host(d, a)
        return host._replace(count=state.count)
