r"""Dropout: counter-based masks, the masked forward/backward pass and test-time weight scaling.

Training
--------
Each unit :math:`j` of sample (row) :math:`i` is kept with probability :math:`p`:

.. math::

    m_{ij} \sim \mathrm{Bernoulli}(p), \qquad
    \tilde a_{ij} = m_{ij} \, a_{ij} \, s, \qquad
    \frac{\partial L}{\partial a_{ij}} = m_{ij} \, s \, \frac{\partial L}{\partial \tilde a_{ij}}

with :math:`s = 1` in the lecture notes' convention and :math:`s = 1/p` for *inverted* dropout.
A dropped unit contributes zero to the gradient of the parameters behind it, as in the notes.

Testing: two conventions
------------------------
* **Weight scaling at test time** (the notes' rule, the default ``inverted=False``): train with
  :math:`s = 1`; at test time run the full network with the *outgoing* weights of every unit
  that was kept with probability :math:`p` multiplied by :math:`p` (:func:`scale_weights`). Then
  the actual test-time input of the next layer,
  :math:`\sum_j a_j (p_j W_{jk})`, equals its expected value under the training masks,
  :math:`\mathbb{E}\left[\sum_j m_j a_j W_{jk}\right]`.
* **Inverted dropout** (``inverted=True``): scale by :math:`1/p` during training so the
  expectation is already right; at test time do nothing (no weight scaling).

Do not combine the two: inverted training followed by :func:`scale_weights` scales twice.

The mask is a pure function of integers
---------------------------------------
:math:`m_{ij}` is *not* drawn from a stateful generator. It is a hash of the five counters
``(seed, step, layer, row, unit)``, so a mask is reproducible from those integers alone: the
same bits for any number of threads, any chunking into mini-batches (``row_offset``) and on a
GPU (the hash uses only ``uint64`` integer arithmetic and one exact integer-to-float
conversion). The hash chains the splitmix64 generator (Steele, Lea & Flood, 2014):

.. math::

    h_0 = \mathrm{mix}(\text{seed} + \gamma), \qquad
    h_k = \mathrm{mix}\big(h_{k-1} + (c_k + 1)\,\gamma\big) \bmod 2^{64}
    \quad (c_1..c_4 = \text{step}, \text{layer}, \text{row}, \text{unit})

where :math:`\gamma = \texttt{0x9E3779B97F4A7C15}` and :math:`\mathrm{mix}` is splitmix64's
finaliser (Stafford's variant 13). Each stage is exactly the :math:`(c_k+1)`-th output of a
splitmix64 stream seeded with :math:`h_{k-1}`, and is a bijection of :math:`c_k` for a fixed
prefix, so distinct units of one row never share an input. The uniform is
:math:`u = \lfloor h_4 / 2^{40} \rfloor \cdot 2^{-24} \in [0, 1)` (the top 24 bits, converted
exactly in float32 or float64), and the unit is kept iff :math:`u < p` (compared in float64),
so :math:`P(\text{keep}) = \lceil p\,2^{24} \rceil / 2^{24}`, within :math:`2^{-24}` of
:math:`p`, and exactly 1 for ``p == 1``.

GPU twins call :func:`keep_scalar` (or :func:`row_key` once per row and :func:`unit_keep` per
unit, which gives the same bits with one mix per element) and must pass ``p`` as float64.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit, prange

from . import _checks

#: splitmix64 increment (the golden-ratio Weyl constant) and finaliser multipliers.
GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S40 = np.uint64(40)
_ONE = np.uint64(1)
#: 2**-24: the top 24 hash bits times this is an exact float in [0, 1).
INV_2_24 = 1.0 / 16777216.0

#: Largest accepted counter (seed, step, layer, row): they travel as int64 to compiled code.
MAX_COUNTER = 2**63 - 1

#: Masks with at least this many elements are filled with rows in parallel (``prange``); below
#: it the thread launch (~2.5 us) costs more than it saves. Measured on 2 cores: the parallel
#: fill is slower up to 32x128 and 1.4-1.8x faster from 64x256 on. The default of the
#: ``parallel_min`` argument.
PARALLEL_MIN_ELEMENTS = 16384


@njit(inline="always", cache=True)
def mix64(z):
    """splitmix64 finaliser: a bijection of ``uint64`` with full avalanche."""
    z = (z ^ (z >> _S30)) * MIX1
    z = (z ^ (z >> _S27)) * MIX2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def hash_step(h, c):
    """One chain stage: the ``(c + 1)``-th splitmix64 output of the stream seeded with ``h``."""
    return mix64(h + (np.uint64(c) + _ONE) * GAMMA)


@njit(inline="always", cache=True)
def row_key(seed, step, layer, row):
    """``uint64`` hash of ``(seed, step, layer, row)``: the part of the chain shared by a row."""
    h = mix64(np.uint64(seed) + GAMMA)
    h = hash_step(h, step)
    h = hash_step(h, layer)
    return hash_step(h, row)


@njit(inline="always", cache=True)
def unit_uniform(key, unit):
    """Uniform in ``[0, 1)`` (float64, a multiple of 2**-24) of unit ``unit`` of row ``key``."""
    h = hash_step(key, unit)
    return np.float64(h >> _S40) * INV_2_24


@njit(inline="always", cache=True)
def unit_keep(key, unit, p):
    """True iff unit ``unit`` of the row with key ``key`` is kept (``u < p``)."""
    return unit_uniform(key, unit) < p


@njit(inline="always", cache=True)
def hash_uniform(seed, step, layer, row, unit):
    """Uniform in ``[0, 1)`` determined by the five counters (see the module docstring)."""
    return unit_uniform(row_key(seed, step, layer, row), unit)


@njit(inline="always", cache=True)
def keep_scalar(seed, step, layer, row, unit, p):
    """True iff the unit at these counters is kept with keep probability ``p`` (float64)."""
    return hash_uniform(seed, step, layer, row, unit) < p


@njit(inline="always", cache=True)
def _fill_row(key, p, a, mask, out, i, s, with_out):
    k = mask.shape[1]
    for j in range(k):
        m = 1.0 if unit_keep(key, j, p) else 0.0
        mask[i, j] = m
        if with_out:
            out[i, j] = a[i, j] * m * s


@njit(cache=True)
def _rows_serial(a, seed, step, layer, row_offset, p, s, mask, out, with_out):
    for i in range(mask.shape[0]):
        key = row_key(seed, step, layer, np.uint64(row_offset) + np.uint64(i))
        _fill_row(key, p, a, mask, out, i, s, with_out)


@njit(parallel=True, cache=True)
def _rows_parallel(a, seed, step, layer, row_offset, p, s, mask, out, with_out):
    for i in prange(mask.shape[0]):
        key = row_key(seed, step, layer, np.uint64(row_offset) + np.uint64(i))
        _fill_row(key, p, a, mask, out, i, s, with_out)


def mask_kernel(seed, step, layer, row_offset, p, mask, parallel_min=PARALLEL_MIN_ELEMENTS):
    """Fill 2-D ``mask`` (n_rows, n_units) with 1.0 (kept) / 0.0 (dropped).

    Row ``i`` is hashed as row ``row_offset + i``. Masks of at least ``parallel_min`` elements
    are filled with rows in parallel (``prange``); every element is a pure function of its
    counters, so the result does not depend on that choice or on the number of threads.

    A Python function choosing between two compiled ones: a parallel function called from a
    cached non-parallel one can crash once loaded from the cache by another process (Numba
    issue 8578), so the choice is not made in compiled code.
    """
    pf = np.float64(p)
    rows = _rows_parallel if mask.size >= parallel_min else _rows_serial
    rows(mask, seed, step, layer, row_offset, pf, 1.0, mask, mask, False)


@njit(cache=True)
def apply_kernel(a, mask, scale, out):
    """``out = a * mask * scale`` elementwise (2-D; ``out`` may alias ``a``).

    The product ``a * mask`` is exact; the multiplication by ``scale`` (float64) is rounded
    once into ``out``'s dtype.
    """
    n, k = a.shape
    s = np.float64(scale)
    for i in range(n):
        for j in range(k):
            out[i, j] = a[i, j] * mask[i, j] * s


def forward_kernel(a, seed, step, layer, row_offset, p, inverted, mask, out,
                   parallel_min=PARALLEL_MIN_ELEMENTS):
    """Fused dropout forward: fill ``mask`` as :func:`mask_kernel`, then
    ``out = a * mask`` (``inverted`` False) or ``out = a * mask * (1/p)`` (``inverted`` True).

    ``out`` may alias ``a``; ``mask`` must not overlap ``a`` or ``out``. A Python function, as
    :func:`mask_kernel` is.
    """
    pf = np.float64(p)
    s = 1.0 / pf if inverted else np.float64(1.0)
    rows = _rows_parallel if mask.size >= parallel_min else _rows_serial
    rows(a, seed, step, layer, row_offset, pf, s, mask, out, True)


@njit(cache=True)
def backward_kernel(delta, mask, scale, out):
    """``out = delta * mask * scale`` elementwise: gradient through the dropout layer
    (``out`` may alias ``delta``)."""
    n, k = delta.shape
    s = np.float64(scale)
    for i in range(n):
        for j in range(k):
            out[i, j] = delta[i, j] * mask[i, j] * s


@njit(cache=True)
def scale_weights_kernel(W, p, out):
    """``out[i, j] = W[i, j] * p[i]`` (``p`` float64 per row; ``out`` may alias ``W``)."""
    n, k = W.shape
    for i in range(n):
        pi = p[i]
        for j in range(k):
            out[i, j] = W[i, j] * pi


# ---------------------------------------------------------------------------------------------
# public wrappers
# ---------------------------------------------------------------------------------------------


def _keep_prob(p):
    return _checks.real("p", p, low=0.0, high=1.0, low_open=True)


def _counters(seed, step, layer, row_offset, n_rows):
    seed = _checks.integer("seed", seed, low=0, high=MAX_COUNTER)
    step = _checks.integer("step", step, low=0, high=MAX_COUNTER)
    layer = _checks.integer("layer", layer, low=0, high=MAX_COUNTER)
    row_offset = _checks.integer(
        "row_offset", row_offset, low=0, high=MAX_COUNTER - max(n_rows - 1, 0)
    )
    return seed, step, layer, row_offset


def _as_2d(a):
    return a.reshape(1, -1) if a.ndim == 1 else a


def _scale(p, inverted):
    if not isinstance(inverted, (bool, np.bool_)):
        raise TypeError(f"inverted must be a bool, got {type(inverted).__name__}")
    return 1.0 / p if inverted else 1.0


def dropout_mask(shape, p, seed, step=0, layer=0, row_offset=0, dtype=np.float32):
    r"""Dropout mask of 1.0 (kept, probability ``p``) and 0.0 (dropped).

    Parameters
    ----------
    shape : int or tuple of 1 or 2 ints
        ``(n_rows, n_units)``, or ``(n_units,)`` / ``n_units`` for a single row.
    p : float in (0, 1]
        Keep probability; ``p == 1`` gives all ones (no dropout).
    seed, step, layer : int >= 0
        Counters hashed into the mask: a run's seed, the training step (mini-batch counter) and
        the layer index.
    row_offset : int >= 0
        Row ``i`` of the mask is hashed as row ``row_offset + i`` (the sample's position in the
        epoch, so a batch split into chunks gives the same mask as the whole batch).
    dtype : float32 or float64

    Returns
    -------
    mask : ndarray of ``shape``
        :math:`m_{ij} = [u(\text{seed}, \text{step}, \text{layer}, \text{row\_offset}+i, j)
        < p]`, bit-for-bit the same for any thread count or device.
    """
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, tuple) or len(shape) not in (1, 2):
        raise ValueError(f"shape must be an int or a tuple of 1 or 2 ints, got {shape!r}")
    dims = tuple(_checks.integer("shape", d, low=0) for d in shape)
    dt = np.dtype(dtype)
    if dt not in _checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    p = _keep_prob(p)
    n_rows = dims[0] if len(dims) == 2 else 1
    seed, step, layer, row_offset = _counters(seed, step, layer, row_offset, n_rows)
    mask = np.empty(dims, dtype=dt)
    mask_kernel(seed, step, layer, row_offset, p, _as_2d(mask))
    return mask


def dropout_forward(a, p, seed, step=0, layer=0, row_offset=0, inverted=False, out=None,
                    mask=None):
    """Dropout forward pass: draw the mask and apply it.

    Parameters
    ----------
    a : ndarray of shape (n_samples, n_units) or (n_units,)
        Activations of the dropout layer, float32 or float64, C-contiguous. (A dropped NaN or
        inf stays NaN, since ``inf * 0`` is NaN.)
    p : float in (0, 1]
        Keep probability.
    seed, step, layer, row_offset : int >= 0
        Mask counters, see :func:`dropout_mask`.
    inverted : bool, default=False
        False: the notes' convention ``out = a * mask`` (scale the weights at test time with
        :func:`scale_weights`). True: inverted dropout ``out = a * mask / p`` (nothing to do at
        test time).
    out : ndarray, optional
        Output buffer of ``a``'s shape and dtype; may be ``a`` itself.
    mask : ndarray, optional
        Buffer for the mask, same shape and dtype; must not overlap ``a`` or ``out``.

    Returns
    -------
    out : ndarray
        The dropped-out activations.
    mask : ndarray
        The mask, needed by :func:`dropout_backward`.
    """
    _checks.float_array("a", a, ndim=(1, 2))
    p = _keep_prob(p)
    _scale(p, inverted)  # validates ``inverted``
    n_rows = a.shape[0] if a.ndim == 2 else 1
    seed, step, layer, row_offset = _counters(seed, step, layer, row_offset, n_rows)
    out = _checks.out_array("out", out, a.shape, a.dtype)
    mask = _checks.out_array("mask", mask, a.shape, a.dtype)
    if np.shares_memory(mask, a):
        raise ValueError("mask must not overlap a")
    if np.shares_memory(mask, out):
        raise ValueError("mask must not overlap out")
    forward_kernel(
        _as_2d(a), seed, step, layer, row_offset, p, bool(inverted), _as_2d(mask), _as_2d(out)
    )
    return out, mask


def dropout_apply(a, mask, p, inverted=False, out=None):
    """Apply an existing mask: ``out = a * mask`` (or ``a * mask / p`` if ``inverted``).

    Parameters
    ----------
    a : ndarray of shape (n_samples, n_units) or (n_units,)
    mask : ndarray of the same shape and dtype
        A mask from :func:`dropout_mask` / :func:`dropout_forward`.
    p : float in (0, 1]
    inverted : bool, default=False
    out : ndarray, optional
        May be ``a`` itself.

    Returns
    -------
    out : ndarray
    """
    _checks.float_array("a", a, ndim=(1, 2))
    _checks.float_array("mask", mask, dtype=a.dtype)
    _checks.shape("mask", mask, a.shape)
    scale = _scale(_keep_prob(p), inverted)
    out = _checks.out_array("out", out, a.shape, a.dtype)
    apply_kernel(_as_2d(a), _as_2d(mask), scale, _as_2d(out))
    return out


def dropout_backward(delta, mask, p, inverted=False, out=None):
    """Back-propagate through dropout: ``dL/da = delta * mask`` (``* 1/p`` if ``inverted``).

    Parameters
    ----------
    delta : ndarray of shape (n_samples, n_units) or (n_units,)
        Gradient of the loss with respect to the dropout layer's output.
    mask : ndarray of the same shape and dtype
        The mask returned by :func:`dropout_forward`.
    p : float in (0, 1]
        Keep probability used in the forward pass.
    inverted : bool, default=False
        Must match the forward pass.
    out : ndarray, optional
        Output buffer; may be ``delta`` itself.

    Returns
    -------
    out : ndarray
        ``delta * mask * s`` with ``s = 1`` or ``1/p``; dropped units get zero gradient.
    """
    _checks.float_array("delta", delta, ndim=(1, 2))
    _checks.float_array("mask", mask, dtype=delta.dtype)
    _checks.shape("mask", mask, delta.shape)
    scale = _scale(_keep_prob(p), inverted)
    out = _checks.out_array("out", out, delta.shape, delta.dtype)
    backward_kernel(_as_2d(delta), _as_2d(mask), scale, _as_2d(out))
    return out


def scale_weights(W, p, out=None):
    r"""Test-time weight scaling of the lecture notes.

    "If a unit is kept with probability p during training, then during test the outgoing
    weights of that unit are multiplied by p." ``W`` is stored ``(n_in, n_out)`` (``z = x W +
    b``), so row ``i`` holds the outgoing weights of unit ``i`` of the dropout layer:

    .. math::  W^{\text{test}}_{ij} = p_i \, W_{ij}

    The bias ``b`` belongs to no dropout unit and is not scaled. Use this only with the default
    (non-inverted) training convention.

    Parameters
    ----------
    W : ndarray of shape (n_in, n_out)
        Trained weights of the layer *after* the dropout layer.
    p : float in (0, 1], or ndarray of shape (n_in,)
        Keep probability of the dropout layer's units (one for all, or one per unit).
    out : ndarray, optional
        Output buffer; may be ``W`` itself (scale in place).

    Returns
    -------
    out : ndarray of shape (n_in, n_out)
    """
    _checks.float_array("W", W, ndim=2)
    n_in = W.shape[0]
    if isinstance(p, np.ndarray):
        _checks.float_array("p", p, ndim=1)
        _checks.shape("p", p, (n_in,))
        pv = p.astype(np.float64)
        if pv.size and not (np.all(pv > 0.0) and np.all(pv <= 1.0)):
            raise ValueError("p must lie in (0, 1] for every unit (NaN is rejected)")
    else:
        pv = np.full(n_in, _keep_prob(p), dtype=np.float64)
    out = _checks.out_array("out", out, W.shape, W.dtype)
    scale_weights_kernel(W, pv, out)
    return out
