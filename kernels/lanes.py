r"""Register-blocked products over lane-major arrays (CPU).

In the lane layout of population training (:mod:`dlbasics.models._lanes`) every value is a
*lane vector*: element ``p`` of a flat array holds the ``C`` values ``x[p * C : p * C + C]``, one
per network. The three products of a network step are then, per lane ``c``,

.. math:: \mathrm{out}[m, n] = \mathrm{init}[n] + \sum_{t} A[t, m]\, B[t, n]

over small index ranges (forward: ``m`` the batch rows, ``n`` the units, ``t`` the inputs;
back-propagation to the inputs and the weight gradient likewise). Written as a loop over the lanes
for each ``(m, n, t)``, every multiply-add loads its two lane vectors and the accumulator goes to
memory and back every few terms, and the compiler cannot block the loop further: it vectorises only
the innermost loop, and with more than a few distinct arrays in it gives up on the run-time checks
that the arrays do not overlap. :func:`lane_block` emits the blocked loop directly as LLVM vector
code: for each group of ``VL`` lanes (one 512-bit register on AVX-512, 256-bit otherwise) it keeps
an ``MR x NR`` block of accumulators in registers over the whole sum and loads each ``A[t, m]`` and
``B[t, n]`` once per block, ``MR + NR`` loads for ``MR * NR`` multiply-adds (4 x 4 with AVX-512's 32
registers, 2 x 4 otherwise), against nine loads and a store per four multiply-adds in the plain
loops (four terms per pass over an accumulator). Lanes past the last full group run the same code
one lane at a time.

Every accumulator is summed in the order of the loops it replaces, ``t`` ascending, each term
rounded (a multiply then an add, never fused: the emitted operations carry no fast-math flags, and
the callers are compiled without them, which would add them on inlining), so the results are bitwise
those of the plain loops (``tests/test_lanes.py``). Back-propagation through a ``tanh`` layer can
multiply by the derivative ``1 - a^2`` before the store (:data:`FIRST_DTANH`), rounded as the
activations' own kernel rounds it, which saves a pass over the deltas.

Offsets and strides are in lane vectors (element units), as the lane layout's offset tables
give them; nothing is bounds-checked (the callers pass offsets of validated layouts).
"""

from __future__ import annotations

import llvmlite.binding as llvm_binding
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

__all__ = ["VEC_BYTES", "MR", "NR", "INIT_BIAS", "INIT_FIRST", "FIRST_DTANH", "lane_block",
           "block_product"]


def _has_avx512():
    try:
        feats = llvm_binding.get_host_cpu_features()
        return bool(feats.get("avx512f", False))
    except RuntimeError:  # pragma: no cover - llvmlite cannot read the features
        return False


#: Bytes per vector register the blocks are built for: 64 (AVX-512: 16 float32 or 8 float64
#: lanes) where the host has AVX-512, else 32.
VEC_BYTES = 64 if _has_avx512() else 32
#: Block shape: rows ``m`` x columns ``n`` of accumulators. ``MR * NR`` accumulators plus
#: ``MR + NR`` operands fit the register file (32 vector registers with AVX-512, 16 without).
MR = 4 if VEC_BYTES == 64 else 2
NR = 4

#: Modes of a block: add the sum to ``init[n]`` (a bias); start from the first term; start from
#: the first term and multiply the result by the ``tanh`` derivative ``1 - e^2`` of the
#: activations ``e`` stored where ``out`` is (back-propagation through a ``tanh`` layer).
INIT_BIAS, INIT_FIRST, FIRST_DTANH = 0, 1, 2


def check_float_arrays(name, *arrays):
    """``TypingError`` naming ``name`` unless the arrays are 1-D contiguous float32 or float64
    arrays of one dtype (the operands of the intrinsics that emit vector code)."""
    for arr in arrays:
        if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
                and isinstance(arr.dtype, types.Float) and arr.dtype.bitwidth in (32, 64)):
            raise TypingError(f"{name}: expected 1-D contiguous float32 or float64 arrays, "
                              f"got {arr}")
    if len({arr.dtype for arr in arrays}) != 1:
        raise TypingError(f"{name}: the arrays must share one dtype")


def _make_block(mr, nr):
    """The intrinsic for an ``mr x nr`` block (see :func:`lane_block`)."""

    @intrinsic
    def block(typingctx, mode, out, o_off, o_ms, o_ns, a, a_off, a_ts, a_ms, b, b_off, b_ts,
              b_ns, init, i_off, e, e_off, T, C):
        check_float_arrays("lane_block", out, a, b, init, e)
        args = (mode, out, o_off, o_ms, o_ns, a, a_off, a_ts, a_ms, b, b_off, b_ts, b_ns, init,
                i_off, e, e_off, T, C)
        for k, v in enumerate(args):
            if k not in (1, 5, 9, 13, 15) and not isinstance(v, types.Integer):
                raise TypingError(f"lane_block: expected an integer mode, offsets and sizes, "
                                  f"got {v}")
        sig = types.none(*args)

        def codegen(context, builder, sig, args):
            intp = context.get_value_type(types.intp)
            tys = sig.args

            def i64(k):
                return context.cast(builder, args[k], tys[k], types.intp)

            def data(k):
                return make_array(tys[k])(context, builder, args[k]).data

            mode_ = i64(0)
            o_off_, o_ms_, o_ns_ = i64(2), i64(3), i64(4)
            a_off_, a_ts_, a_ms_ = i64(6), i64(7), i64(8)
            b_off_, b_ts_, b_ns_ = i64(10), i64(11), i64(12)
            i_off_, e_off_, T_, C_ = i64(14), i64(16), i64(17), i64(18)
            pout, pa, pb, pinit, pe = data(1), data(5), data(9), data(13), data(15)
            fty = context.get_value_type(tys[1].dtype)
            single = tys[1].dtype.bitwidth == 32
            itemsize = context.get_abi_sizeof(fty)
            vl = VEC_BYTES // itemsize

            def mul(x, y):
                return builder.mul(x, y)

            def add(x, y):
                return builder.add(x, y)

            def const(v):
                return ir.Constant(intp, v)

            # element offsets times C: addresses are (element * C + lane)
            o_msC, o_nsC = mul(o_ms_, C_), mul(o_ns_, C_)
            a_tsC, a_msC = mul(a_ts_, C_), mul(a_ms_, C_)
            b_tsC, b_nsC = mul(b_ts_, C_), mul(b_ns_, C_)
            o_base, a_base = mul(o_off_, C_), mul(a_off_, C_)
            b_base, i_base = mul(b_off_, C_), mul(i_off_, C_)
            e_base = mul(e_off_, C_)
            nvec = mul(builder.udiv(C_, const(vl)), const(vl))

            def emit(width, start, stop, mode):
                vty = fty if width == 1 else ir.VectorType(fty, width)
                accs = [[cgutils.alloca_once(builder, vty) for _ in range(nr)]
                        for _ in range(mr)]

                def addr(ptr, idx):
                    p = builder.gep(ptr, [idx])
                    return p if width == 1 else builder.bitcast(p, vty.as_pointer())

                def load(ptr, idx):
                    return builder.load(addr(ptr, idx), align=itemsize)

                def operands(c, t):
                    at = add(add(a_base, mul(t, a_tsC)), c)
                    bt = add(add(b_base, mul(t, b_tsC)), c)
                    av = [load(pa, add(at, mul(const(m), a_msC))) for m in range(mr)]
                    bv = [load(pb, add(bt, mul(const(n), b_nsC))) for n in range(nr)]
                    return av, bv

                def dtanh(val, act):
                    """``val * (1 - act * act)`` as the plain loops round it: in float32 the
                    square rounded to float32, the rest in float64, one rounding at the end."""
                    sq = builder.fmul(act, act)
                    if not single:
                        return builder.fmul(val, builder.fsub(_one(vty), sq))
                    dty = ir.DoubleType() if width == 1 else ir.VectorType(ir.DoubleType(), width)
                    factor = builder.fsub(_one(dty), builder.fpext(sq, dty))
                    return builder.fptrunc(builder.fmul(builder.fpext(val, dty), factor), vty)

                with cgutils.for_range_slice(builder, start, stop, const(width),
                                             intp=intp) as (c, _):
                    if mode == INIT_BIAS:
                        t0 = const(0)
                        for n in range(nr):
                            v = load(pinit, add(add(i_base, mul(const(n), C_)), c))
                            for m in range(mr):
                                builder.store(v, accs[m][n])
                    else:
                        t0 = const(1)
                        av, bv = operands(c, const(0))
                        for m in range(mr):
                            for n in range(nr):
                                builder.store(builder.fmul(av[m], bv[n]), accs[m][n])
                    with cgutils.for_range_slice(builder, t0, T_, const(1), intp=intp) as (t, _):
                        av, bv = operands(c, t)
                        for m in range(mr):
                            for n in range(nr):
                                acc = builder.load(accs[m][n])
                                builder.store(builder.fadd(acc, builder.fmul(av[m], bv[n])),
                                              accs[m][n])
                    for m in range(mr):
                        for n in range(nr):
                            rel = add(mul(const(m), o_msC), mul(const(n), o_nsC))
                            val = builder.load(accs[m][n])
                            if mode == FIRST_DTANH:
                                val = dtanh(val, load(pe, add(add(e_base, rel), c)))
                            builder.store(val, addr(pout, add(add(o_base, rel), c)),
                                          align=itemsize)

            for mode in (INIT_BIAS, INIT_FIRST, FIRST_DTANH):
                with builder.if_then(builder.icmp_signed("==", mode_, const(mode))):
                    emit(vl, const(0), nvec, mode)
                    emit(1, nvec, C_, mode)
            return context.get_dummy_value()

        return sig, codegen

    block.__name__ = f"lane_block_{mr}x{nr}"
    return block


def _one(ty):
    """The constant 1.0 of a float type or a vector of floats."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(ty.element, 1.0)] * ty.count)
    return ir.Constant(ty, 1.0)


_b_full = _make_block(MR, NR)
_b_row = _make_block(1, NR)
_b_col = _make_block(MR, 1)
_b_one = _make_block(1, 1)

lane_block = _b_full
lane_block.__doc__ = r"""``out[m, n] = init[n] + sum_t A[t, m] B[t, n]`` on an ``MR x NR`` block.

Element ``(t, m)`` of ``A`` is lane vector ``a_off + t * a_ts + m * a_ms`` of ``a`` (values ``a[e *
C : e * C + C]``); likewise ``B`` (``b_off``, ``b_ts``, ``b_ns``), ``out`` (``o_off``, ``o_ms``,
``o_ns``) and ``init`` (``i_off + n``). ``T`` terms, ``t`` ascending. ``mode`` :data:`INIT_BIAS`
adds the sum to ``init`` (``T >= 0``); :data:`INIT_FIRST` starts from the first term (``T >= 1``,
not checked: with ``T = 0`` it still reads that term; ``init`` unused); :data:`FIRST_DTANH` does the
same and multiplies each result by ``1 - e[k]^2``, ``e[k]`` the lane vector of ``e`` at ``e_off + m
* o_ms + n * o_ns`` (the ``tanh`` activations, laid out as ``out``), rounded as
:func:`dlbasics.kernels.activations.dact_mul_flat` rounds it. The same intrinsic for ``1 x NR``,
``MR x 1`` and ``1 x 1`` blocks serves the rows and columns left over (:func:`block_product`)."""


@njit(inline="always", cache=True)
def block_product(mode, out, o_off, o_ms, o_ns, a, a_off, a_ts, a_ms, b, b_off, b_ts, b_ns,
                  init, i_off, e, e_off, M, N, T, C):
    """:func:`lane_block` for ``m < M``, ``n < N``: ``MR x NR`` blocks, then the rows and
    columns left over in ``1 x NR``, ``MR x 1`` and ``1 x 1`` blocks. Arguments as for
    :func:`lane_block`; ``mode`` is one of :data:`INIT_BIAS`, :data:`INIT_FIRST`,
    :data:`FIRST_DTANH`."""
    m4 = M - M % MR
    n4 = N - N % NR
    for m in range(M):
        if m < m4 and m % MR != 0:
            continue
        om = o_off + m * o_ms
        em = e_off + m * o_ms
        am = a_off + m * a_ms
        for n in range(0, n4, NR):
            if m < m4:
                _b_full(mode, out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                        b_off + n * b_ns, b_ts, b_ns, init, i_off + n, e, em + n * o_ns, T, C)
            else:
                _b_row(mode, out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                       b_off + n * b_ns, b_ts, b_ns, init, i_off + n, e, em + n * o_ns, T, C)
        for n in range(n4, N):
            if m < m4:
                _b_col(mode, out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                       b_off + n * b_ns, b_ts, b_ns, init, i_off + n, e, em + n * o_ns, T, C)
            else:
                _b_one(mode, out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                       b_off + n * b_ns, b_ts, b_ns, init, i_off + n, e, em + n * o_ns, T, C)
