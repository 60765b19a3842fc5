r"""Register-blocked products over lane-major arrays (CPU).

In the lane layout of population training (:mod:`dlbasics.models._lanes`) every value is a
*lane vector*: element ``p`` of a flat array holds the ``C`` values ``x[p * C : p * C + C]``, one
per network. The three products of a network step are then, per lane ``c``,

.. math:: \mathrm{out}[m, n] = \mathrm{init}[n] + \sum_{t} A[t, m]\, B[t, n]

over small index ranges (forward: ``m`` the batch rows, ``n`` the units, ``t`` the inputs;
back-propagation to the inputs and the weight gradient likewise). Written as a loop over the
lanes for each ``(m, n, t)``, every multiply-add loads two lane vectors and the accumulator from
memory and stores it back, and the compiler cannot block the loop further: it vectorises only
the innermost loop, and with more than a few distinct arrays in it gives up on the run-time
checks that the arrays do not overlap. :func:`lane_block` emits the blocked loop directly as
LLVM vector code: for each group of ``VL`` lanes (one 512-bit register on AVX-512, 256-bit
otherwise) it keeps an ``MR x NR`` block of accumulators in registers over the whole sum and
loads each ``A[t, m]`` and ``B[t, n]`` once per block, ``MR + NR`` loads for ``MR * NR``
multiply-adds (4 x 4 with AVX-512's 32 registers, 2 x 4 otherwise), against three loads and a
store per multiply-add before. Lanes past the last full group run the same code one lane at a
time.

Every accumulator is summed in the order of the loops it replaces, ``t`` ascending, each term
rounded (a multiply then an add, never fused), so the results are bitwise those of the plain
loops (``tests/test_lanes.py``).

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

__all__ = ["VEC_BYTES", "MR", "NR", "lane_block", "block_product"]


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

#: ``init`` modes: add the sum to ``init[n]`` (a bias), or start from the first term.
INIT_BIAS, INIT_FIRST = 0, 1


def _make_block(mr, nr, mode):
    """The intrinsic for an ``mr x nr`` block with init ``mode`` (see :func:`lane_block`)."""

    @intrinsic
    def block(typingctx, out, o_off, o_ms, o_ns, a, a_off, a_ts, a_ms, b, b_off, b_ts, b_ns,
              init, i_off, T, C):
        arrays = (out, a, b, init)
        for arr in arrays:
            if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
                    and isinstance(arr.dtype, types.Float)):
                raise TypingError(f"lane_block: expected 1-D contiguous float arrays, got {arr}")
        if len({arr.dtype for arr in arrays}) != 1:
            raise TypingError("lane_block: the arrays must share one dtype")
        ints = (o_off, o_ms, o_ns, a_off, a_ts, a_ms, b_off, b_ts, b_ns, i_off, T, C)
        for v in ints:
            if not isinstance(v, types.Integer):
                raise TypingError(f"lane_block: expected integer offsets and sizes, got {v}")
        sig = types.none(*arrays[:1], *ints[:3], arrays[1], *ints[3:6], arrays[2], *ints[6:9],
                         arrays[3], *ints[9:])

        def codegen(context, builder, sig, args):
            intp = context.get_value_type(types.intp)
            (out_, o_off_, o_ms_, o_ns_, a_, a_off_, a_ts_, a_ms_, b_, b_off_, b_ts_, b_ns_,
             init_, i_off_, T_, C_) = args
            tys = sig.args

            def i64(k):
                return context.cast(builder, args[k], tys[k], types.intp)

            def data(k):
                return make_array(tys[k])(context, builder, args[k]).data

            o_off_, o_ms_, o_ns_ = i64(1), i64(2), i64(3)
            a_off_, a_ts_, a_ms_ = i64(5), i64(6), i64(7)
            b_off_, b_ts_, b_ns_ = i64(9), i64(10), i64(11)
            i_off_, T_, C_ = i64(13), i64(14), i64(15)
            pout, pa, pb, pinit = data(0), data(4), data(8), data(12)
            fty = context.get_value_type(tys[0].dtype)
            itemsize = context.get_abi_sizeof(fty)
            vl = VEC_BYTES // itemsize

            def mul(x, y):
                return builder.mul(x, y)

            def add(x, y):
                return builder.add(x, y)

            # element offsets times C: addresses are (element * C + lane)
            o_msC, o_nsC = mul(o_ms_, C_), mul(o_ns_, C_)
            a_tsC, a_msC = mul(a_ts_, C_), mul(a_ms_, C_)
            b_tsC, b_nsC = mul(b_ts_, C_), mul(b_ns_, C_)
            o_base, a_base = mul(o_off_, C_), mul(a_off_, C_)
            b_base, i_base = mul(b_off_, C_), mul(i_off_, C_)
            one = ir.Constant(intp, 1)
            nvec = mul(builder.udiv(C_, ir.Constant(intp, vl)), ir.Constant(intp, vl))

            def emit(width, start, stop):
                vty = fty if width == 1 else ir.VectorType(fty, width)
                accs = [[cgutils.alloca_once(builder, vty) for _ in range(nr)]
                        for _ in range(mr)]

                def load(ptr, idx):
                    p = builder.gep(ptr, [idx])
                    if width > 1:
                        p = builder.bitcast(p, vty.as_pointer())
                    return builder.load(p, align=itemsize)

                def store(val, ptr, idx):
                    p = builder.gep(ptr, [idx])
                    if width > 1:
                        p = builder.bitcast(p, vty.as_pointer())
                    builder.store(val, p, align=itemsize)

                def operands(c, t):
                    at = add(add(a_base, mul(t, a_tsC)), c)
                    bt = add(add(b_base, mul(t, b_tsC)), c)
                    av = [load(pa, add(at, mul(ir.Constant(intp, m), a_msC))) for m in range(mr)]
                    bv = [load(pb, add(bt, mul(ir.Constant(intp, n), b_nsC))) for n in range(nr)]
                    return av, bv

                with cgutils.for_range_slice(builder, start, stop, ir.Constant(intp, width),
                                             intp=intp) as (c, _):
                    if mode == INIT_BIAS:
                        t0 = ir.Constant(intp, 0)
                        for n in range(nr):
                            v = load(pinit, add(add(i_base, mul(ir.Constant(intp, n), C_)), c))
                            for m in range(mr):
                                builder.store(v, accs[m][n])
                    else:
                        t0 = one
                        av, bv = operands(c, ir.Constant(intp, 0))
                        for m in range(mr):
                            for n in range(nr):
                                builder.store(builder.fmul(av[m], bv[n]), accs[m][n])
                    with cgutils.for_range_slice(builder, t0, T_, one, intp=intp) as (t, _):
                        av, bv = operands(c, t)
                        for m in range(mr):
                            for n in range(nr):
                                acc = builder.load(accs[m][n])
                                builder.store(builder.fadd(acc, builder.fmul(av[m], bv[n])),
                                              accs[m][n])
                    for m in range(mr):
                        om = add(add(o_base, mul(ir.Constant(intp, m), o_msC)), c)
                        for n in range(nr):
                            store(builder.load(accs[m][n]), pout,
                                  add(om, mul(ir.Constant(intp, n), o_nsC)))

            emit(vl, ir.Constant(intp, 0), nvec)
            emit(1, nvec, C_)
            return context.get_dummy_value()

        return sig, codegen

    block.__name__ = f"lane_block_{mr}x{nr}_{'bias' if mode == INIT_BIAS else 'first'}"
    return block


_BLOCKS = {(mr, nr, mode): _make_block(mr, nr, mode)
           for mr in (1, MR) for nr in (1, NR) for mode in (INIT_BIAS, INIT_FIRST)}

lane_block = _BLOCKS[(MR, NR, INIT_BIAS)]
lane_block.__doc__ = r"""``out[m, n] = init[n] + sum_t A[t, m] B[t, n]`` on an ``MR x NR`` block.

Element ``(t, m)`` of ``A`` is lane vector ``a_off + t * a_ts + m * a_ms`` of ``a`` (values
``a[e * C : e * C + C]``); likewise ``B`` (``b_off``, ``b_ts``, ``b_ns``), ``out`` (``o_off``,
``o_ms``, ``o_ns``) and ``init`` (``i_off + n``). ``T >= 0`` terms, ``t`` ascending. The other
instances (``_BLOCKS``) take ``1 x NR``, ``MR x 1`` and ``1 x 1`` blocks and, with
``INIT_FIRST``, start from the first term (``T >= 1``) instead of ``init`` (then unused)."""

_b_bias = _BLOCKS[(MR, NR, INIT_BIAS)]
_b_bias_r = _BLOCKS[(1, NR, INIT_BIAS)]
_b_bias_c = _BLOCKS[(MR, 1, INIT_BIAS)]
_b_bias_1 = _BLOCKS[(1, 1, INIT_BIAS)]
_b_first = _BLOCKS[(MR, NR, INIT_FIRST)]
_b_first_r = _BLOCKS[(1, NR, INIT_FIRST)]
_b_first_c = _BLOCKS[(MR, 1, INIT_FIRST)]
_b_first_1 = _BLOCKS[(1, 1, INIT_FIRST)]


@njit(inline="always", cache=True)
def block_product(bias, out, o_off, o_ms, o_ns, a, a_off, a_ts, a_ms, b, b_off, b_ts, b_ns,
                  init, i_off, M, N, T, C):
    """``out[m, n] = (init[n] if bias else 0) + sum_t A[t, m] B[t, n]`` for ``m < M``,
    ``n < N``, every lane, in :func:`lane_block`'s blocks (``MR x NR``, then the rows and
    columns left over in ``1 x NR``, ``MR x 1`` and ``1 x 1`` blocks). Without ``bias`` the sum
    starts from its first term (``T >= 1``; the plain loops' ``out = a0 * b0`` then ``+=``), and
    ``init`` is not read. Arguments as for :func:`lane_block`."""
    m4 = M - M % MR
    n4 = N - N % NR
    for m in range(0, M):
        if m < m4 and m % MR != 0:
            continue
        om = o_off + m * o_ms
        am = a_off + m * a_ms
        full = m < m4
        for n in range(0, n4, NR):
            if bias:
                if full:
                    _b_bias(out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                            b_off + n * b_ns, b_ts, b_ns, init, i_off + n, T, C)
                else:
                    _b_bias_r(out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                              b_off + n * b_ns, b_ts, b_ns, init, i_off + n, T, C)
            else:
                if full:
                    _b_first(out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                             b_off + n * b_ns, b_ts, b_ns, init, i_off + n, T, C)
                else:
                    _b_first_r(out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                               b_off + n * b_ns, b_ts, b_ns, init, i_off + n, T, C)
        for n in range(n4, N):
            if bias:
                if full:
                    _b_bias_c(out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                              b_off + n * b_ns, b_ts, b_ns, init, i_off + n, T, C)
                else:
                    _b_bias_1(out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                              b_off + n * b_ns, b_ts, b_ns, init, i_off + n, T, C)
            else:
                if full:
                    _b_first_c(out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                               b_off + n * b_ns, b_ts, b_ns, init, i_off + n, T, C)
                else:
                    _b_first_1(out, om + n * o_ns, o_ms, o_ns, a, am, a_ts, a_ms, b,
                               b_off + n * b_ns, b_ts, b_ns, init, i_off + n, T, C)
