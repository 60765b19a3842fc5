r"""GPU twin of :mod:`dlbasics.kernels.dense`: shared-memory tiled products, bias and activation
fused.

Forward ``z = x W + b``, ``a = f(z)``; backward ``dW = x^T \delta``, ``db = \sum_{rows} \delta``,
``dx = \delta W^T``. Each product is a tiled kernel: a block of ``TILE x TILE`` threads owns a
``TILE x TILE`` tile of the result, loads matching tiles of the two factors into shared memory
and accumulates in a register, tile after tile along the reduction axis; blocks take output
tiles in a grid-stride loop (at most ``MAX_BLOCKS`` blocks). ``TILE`` and ``MAX_BLOCKS`` are read
from :mod:`dlbasics.kernels.config` at launch time (a kernel is compiled once per tile size and
dtype).

Each output element is accumulated in index order along the reduction axis, in the arrays'
dtype, starting from ``b`` (forward) or zero, exactly like the CPU's hand-written loops; a real
GPU contracts multiply-adds into FMAs, so results agree with the CPU to rounding, not bitwise.
``db`` is fused into the ``dW`` kernel (the blocks of the first row of tiles sum the ``delta``
tiles they load). The activation is applied from :func:`dlbasics.kernels.activations.act_scalar` as
the ``z`` tile is stored; softmax outputs get a row-wise pass afterwards. The ``dx`` kernel can also
apply, as it stores, a dropout mask and the derivative of the previous layer's activation (the
MLP backward pass, :mod:`dlbasics.models._cuda`).

Products of :data:`~dlbasics.kernels.config.BLAS_MIN_ROWS` rows or more go to cuBLAS through
CuPy where :func:`dlbasics.kernels.gpu_blas.available` (a real GPU with CuPy), on our device
arrays without copies: ``z = x W`` then an epilogue kernel ``z += b``, ``a = f(z)``; ``dW = x^T
\delta`` and ``db = \delta^T 1``; ``dx = \delta W^T`` then, where the MLP asks, an epilogue
applying the mask and the derivative. cuBLAS sums in its own order, so these agree with the CPU
to rounding. Smaller products, and all of them under the simulator, use the tiled kernels.

float32 arrays: the products accumulate in float32. The activation (forward epilogue) and its
derivative (``dx`` epilogue) are the CPU's :func:`~dlbasics.kernels.activations.act_scalar` and
:func:`~dlbasics.kernels.activations.dact_scalar`, whose branches Numba unifies to float64: the
formulas (sigmoid, softplus, the leaky slope; tanh itself is float32) run in float64 and are
rounded to float32 once, on the store. That is exactly the CPU's arithmetic, kept on purpose so
that the backends agree bit for bit where the summation order does (the price is float64
throughput on consumer GPUs; an H100 has it at half the float32 rate).

Host arrays in, host arrays out; device arrays in, device arrays out (see
:mod:`dlbasics.kernels._gpu_arrays`).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import from_dtype

from . import _checks, gpu_blas
from . import gpu_config as g
from ._gpu_arrays import Call, dummy, float_array
from .activations import SOFTMAX, act_scalar, activation_code, dact_scalar
from .config import BLAS_MIN_ROWS, LEAKY_SLOPE
from .gpu_activations import launch_activate

__all__ = ["gpu_dense_forward", "gpu_dense_backward"]

cuda = None  # numba.cuda, bound by _kernels() on first use (import-safe without numba-cuda)


@functools.cache
def _kernels(tile, dtype):
    """The three tiled kernels for ``tile x tile`` blocks and arrays of ``dtype``."""
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()
    nbt = from_dtype(np.dtype(dtype))
    padded = tile + 1  # shared-memory shapes must be compile-time constants

    @cuda.jit
    def forward(x, W, b, z, a, code, slope):
        """``z = x W + b``; ``a = f(z)`` unless ``code`` is softmax."""
        x = A(x)
        W = A(W)
        b = A(b)
        z = A(z)
        a = A(a)
        n, n_in = x.shape
        n_out = W.shape[1]
        xs = cuda.shared.array((tile, tile), nbt)
        ws = cuda.shared.array((tile, tile), nbt)
        ty = cuda.threadIdx.y
        tx = cuda.threadIdx.x
        n_tc = (n_out + tile - 1) // tile
        n_tiles = ((n + tile - 1) // tile) * n_tc
        for t in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
            i = (t // n_tc) * tile + ty
            j = (t % n_tc) * tile + tx
            acc = b[min(j, n_out - 1)]
            for k0 in range(0, n_in, tile):
                if i < n and k0 + tx < n_in:
                    xs[ty, tx] = x[i, k0 + tx]
                else:
                    xs[ty, tx] = 0
                if k0 + ty < n_in and j < n_out:
                    ws[ty, tx] = W[k0 + ty, j]
                else:
                    ws[ty, tx] = 0
                cuda.syncthreads()
                for kk in range(min(tile, n_in - k0)):
                    acc += xs[ty, kk] * ws[kk, tx]
                cuda.syncthreads()
            if i < n and j < n_out:
                z[i, j] = acc
                if code != SOFTMAX:
                    a[i, j] = act_scalar(code, acc, slope)

    @cuda.jit
    def grad_weights(x, delta, dW, db):
        """``dW = x^T delta``; the first row of tiles also writes ``db = sum_rows delta``."""
        x = A(x)
        delta = A(delta)
        dW = A(dW)
        db = A(db)
        n, n_in = x.shape
        n_out = delta.shape[1]
        xs = cuda.shared.array((tile, tile), nbt)
        ds = cuda.shared.array((tile, tile), nbt)
        ty = cuda.threadIdx.y
        tx = cuda.threadIdx.x
        n_tc = (n_out + tile - 1) // tile
        n_tiles = ((n_in + tile - 1) // tile) * n_tc
        for t in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
            k0 = (t // n_tc) * tile
            j0 = (t % n_tc) * tile
            k = k0 + ty
            j = j0 + tx
            acc = dW.dtype.type(0)
            acc_b = dW.dtype.type(0)
            for i0 in range(0, n, tile):
                if i0 + ty < n and k0 + tx < n_in:
                    xs[ty, tx] = x[i0 + ty, k0 + tx]
                else:
                    xs[ty, tx] = 0
                if i0 + ty < n and j < n_out:
                    ds[ty, tx] = delta[i0 + ty, j]
                else:
                    ds[ty, tx] = 0
                cuda.syncthreads()
                rows = min(tile, n - i0)
                for ii in range(rows):
                    acc += xs[ii, ty] * ds[ii, tx]
                if k0 == 0 and ty == 0:
                    for ii in range(rows):
                        acc_b += ds[ii, tx]
                cuda.syncthreads()
            if k < n_in and j < n_out:
                dW[k, j] = acc
            if k0 == 0 and ty == 0 and j < n_out:
                db[j] = acc_b

    @cuda.jit
    def grad_input(delta, W, dx, mask, has_mask, code, zp, ap, slope, has_act):
        """``dx = delta W^T``, then ``*= mask`` (``has_mask``) and ``*= f'(zp)`` (``has_act``)."""
        delta = A(delta)
        W = A(W)
        dx = A(dx)
        mask = A(mask)
        zp = A(zp)
        ap = A(ap)
        n, n_out = delta.shape
        n_in = W.shape[0]
        ds = cuda.shared.array((tile, tile), nbt)
        wt = cuda.shared.array((tile, padded), nbt)  # W tile transposed, padded
        ty = cuda.threadIdx.y
        tx = cuda.threadIdx.x
        n_tc = (n_in + tile - 1) // tile
        n_tiles = ((n + tile - 1) // tile) * n_tc
        for t in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
            i = (t // n_tc) * tile + ty
            k0 = (t % n_tc) * tile
            k = k0 + tx
            acc = dx.dtype.type(0)
            for j0 in range(0, n_out, tile):
                if i < n and j0 + tx < n_out:
                    ds[ty, tx] = delta[i, j0 + tx]
                else:
                    ds[ty, tx] = 0
                if k0 + ty < n_in and j0 + tx < n_out:
                    wt[tx, ty] = W[k0 + ty, j0 + tx]
                else:
                    wt[tx, ty] = 0
                cuda.syncthreads()
                for jj in range(min(tile, n_out - j0)):
                    acc += ds[ty, jj] * wt[jj, tx]
                cuda.syncthreads()
            if i < n and k < n_in:
                v = acc
                if has_mask:
                    v = v * mask[i, k]
                if has_act:
                    dx[i, k] = v * np.float64(dact_scalar(code, zp[i, k], ap[i, k], slope))
                else:
                    dx[i, k] = v

    return forward, grad_weights, grad_input


@functools.cache
def _epilogues():
    """The elementwise kernels that follow a cuBLAS product (see :mod:`.gpu_blas`)."""
    global cuda
    cuda = g.require_cuda()
    A = g.array_access()

    @cuda.jit
    def bias_act(z, b, a, code, slope):
        """``z += b`` (row-wise), then ``a = f(z)`` unless ``code`` is softmax."""
        z = A(z)
        b = A(b)
        a = A(a)
        n, n_out = z.shape
        for e in range(cuda.grid(1), n * n_out, cuda.gridsize(1)):
            i = e // n_out
            j = e - i * n_out
            v = z[i, j] + b[j]
            z[i, j] = v
            if code != SOFTMAX:
                a[i, j] = act_scalar(code, v, slope)

    @cuda.jit
    def mask_dact(dx, mask, has_mask, code, zp, ap, slope, has_act):
        """``dx *= mask`` (``has_mask``), then ``dx *= f'(zp)`` (``has_act``), as the epilogue
        of the tiled ``dx`` kernel does."""
        dx = A(dx)
        mask = A(mask)
        zp = A(zp)
        ap = A(ap)
        n, n_in = dx.shape
        for e in range(cuda.grid(1), n * n_in, cuda.gridsize(1)):
            i = e // n_in
            k = e - i * n_in
            v = dx[i, k]
            if has_mask:
                v = v * mask[i, k]
            if has_act:
                dx[i, k] = v * np.float64(dact_scalar(code, zp[i, k], ap[i, k], slope))
            else:
                dx[i, k] = v

    return bias_act, mask_dact


def _use_blas(rows):
    return rows >= BLAS_MIN_ROWS and gpu_blas.available()


def launch_bias_act(z, b, a, code, slope):
    """Epilogue of a cuBLAS forward product: ``z += b``, ``a = f(z)`` (not for softmax)."""
    n, n_out = z.shape
    g.launch(_epilogues()[0], *g.grid_1d(n * n_out), z, b, a, int(code), slope)


def launch_mask_dact(dx, mask, code, zp, ap, slope):
    """Epilogue of a cuBLAS ``dx`` product: ``dx *= mask`` and ``dx *= f'(zp)`` where given."""
    dt = np.dtype(dx.dtype)
    d2 = dummy(dt, 2)
    n, n_in = dx.shape
    g.launch(_epilogues()[1], *g.grid_1d(n * n_in), dx, mask if mask is not None else d2,
             mask is not None, int(code), zp if zp is not None else d2,
             ap if zp is not None else d2, dt.type(slope), zp is not None)


def _tiled(n_rows, n_cols):
    t = g.tile()
    n_tiles = ((n_rows + t - 1) // t) * ((n_cols + t - 1) // t)
    return t, max(1, min(n_tiles, g.max_blocks())), (t, t)


# ---------------------------------------------------------------------------------------------
# drivers on device arrays (no validation; used by the public wrappers and dlbasics.models._cuda)
# ---------------------------------------------------------------------------------------------


def launch_forward(x, W, b, code, slope, z, a, softmax=True):
    """``z = x W + b``, ``a = f(z)`` for 2-D device arrays (``slope`` in their dtype).

    A softmax output takes a second, row-wise launch; ``softmax=False`` skips it (``a`` is then
    left unwritten: the training pass of a softmax + cross-entropy network needs only ``z``).
    """
    if _use_blas(x.shape[0]):
        gpu_blas.matmul(x, W, z)
        launch_bias_act(z, b, a, code, slope)
    else:
        t, grid, block = _tiled(x.shape[0], W.shape[1])
        forward = _kernels(t, np.dtype(x.dtype).str)[0]
        g.launch(forward, grid, block, x, W, b, z, a, code, slope)
    if code == SOFTMAX and softmax:
        launch_activate(SOFTMAX, z, a, slope)


def launch_grad_weights(x, delta, dW, db):
    """``dW = x^T delta`` and ``db = sum_rows delta`` (overwritten) for device arrays."""
    if _use_blas(x.shape[0]):
        gpu_blas.matmul(x, delta, dW, trans_a=True)
        gpu_blas.column_sums(delta, db)
        return
    t, grid, block = _tiled(x.shape[1], delta.shape[1])
    grad_weights = _kernels(t, np.dtype(x.dtype).str)[1]
    g.launch(grad_weights, grid, block, x, delta, dW, db)


def launch_grad_input(delta, W, dx, mask=None, code=-1, zp=None, ap=None, slope=0.0):
    """``dx = delta W^T`` for device arrays, then optionally ``dx *= mask`` and
    ``dx *= f'(zp)`` for activation ``code`` of the previous layer (``ap = f(zp)``)."""
    if _use_blas(delta.shape[0]):
        gpu_blas.matmul(delta, W, dx, trans_b=True)
        if mask is not None or zp is not None:
            launch_mask_dact(dx, mask, code, zp, ap, slope)
        return
    dt = np.dtype(delta.dtype)
    t, grid, block = _tiled(delta.shape[0], W.shape[0])
    grad_input = _kernels(t, dt.str)[2]
    has_mask = mask is not None
    has_act = zp is not None
    d2 = dummy(dt, 2)
    g.launch(grad_input, grid, block, delta, W, dx, mask if has_mask else d2, has_mask,
             int(code), zp if has_act else d2, ap if has_act else d2, dt.type(slope), has_act)


# ---------------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------------


def _layer_args(x, W, b):
    x = float_array("x", x, ndim=2, finite=True)
    _checks.nonempty("x", x)
    W = float_array("W", W, ndim=2, dtype=x.dtype)
    _checks.nonempty("W", W)
    if W.shape[0] != x.shape[1]:
        raise ValueError(
            f"W must have shape (n_in, n_out) with n_in = x.shape[1] = {x.shape[1]}, "
            f"got {tuple(W.shape)}"
        )
    if b is not None:
        b = float_array("b", b, ndim=1, dtype=x.dtype)
        _checks.shape("b", b, (W.shape[1],))
    return x, W, b


def gpu_dense_forward(x, W, b, activation="identity", z=None, a=None, slope=LEAKY_SLOPE):
    """GPU :func:`dlbasics.kernels.dense.dense_forward`: ``z = x W + b``, ``a = f(z)``, fused.

    Parameters
    ----------
    x : ndarray or device array of shape (n_samples, n_in)
        Inputs, float32 or float64 (host inputs must be finite).
    W : array of shape (n_in, n_out)
    b : array of shape (n_out,)
    activation : str, default="identity"
        Name from :data:`dlbasics.kernels.activations.ACTIVATIONS`.
    z, a : arrays of shape (n_samples, n_out), optional
        Output buffers (device arrays in device mode).
    slope : float, default=0.01

    Returns
    -------
    z, a : arrays of shape (n_samples, n_out)
        Device arrays when any input is a device array, else NumPy arrays.
    """
    x, W, b = _layer_args(x, W, b)
    code = activation_code(activation)
    slope = _checks.real("slope", slope)
    call = Call(x, W, b, z, a)
    g.require_cuda()
    shape = (x.shape[0], W.shape[1])
    dx_, dW_, db_ = call.input(x), call.input(W), call.input(b)
    dz = call.output("z", z, shape, x.dtype)
    da = call.output("a", a, shape, x.dtype)
    launch_forward(dx_, dW_, db_, code, x.dtype.type(slope), dz, da)
    call.finish()
    return call.result(dz), call.result(da)


def gpu_dense_backward(x, W, delta, dW=None, db=None, dx=None, need_dx=True):
    """GPU :func:`dlbasics.kernels.dense.dense_backward` from ``delta = dL/dz``.

    Parameters
    ----------
    x : array of shape (n_samples, n_in)
    W : array of shape (n_in, n_out)
    delta : array of shape (n_samples, n_out)
    dW, db, dx : arrays, optional
        Output buffers of shapes (n_in, n_out), (n_out,), (n_samples, n_in).
    need_dx : bool, default=True

    Returns
    -------
    dW : array of shape (n_in, n_out)
    db : array of shape (n_out,)
    dx : array of shape (n_samples, n_in) or None
    """
    x, W, _ = _layer_args(x, W, None)
    delta = float_array("delta", delta, ndim=2, dtype=x.dtype, finite=True)
    _checks.shape("delta", delta, (x.shape[0], W.shape[1]))
    call = Call(x, W, delta, dW, db, dx)
    g.require_cuda()
    d_x, d_W, d_delta = call.input(x), call.input(W), call.input(delta)
    d_dW = call.output("dW", dW, W.shape, x.dtype)
    d_db = call.output("db", db, (W.shape[1],), x.dtype)
    launch_grad_weights(d_x, d_delta, d_dW, d_db)
    d_dx = None
    if need_dx:
        d_dx = call.output("dx", dx, x.shape, x.dtype)
        launch_grad_input(d_delta, d_W, d_dx)
    call.finish()
    return call.result(d_dW), call.result(d_db), (call.result(d_dx) if need_dx else None)
