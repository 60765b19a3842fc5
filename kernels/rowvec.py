r"""One row through a packed block of weights, emitted as LLVM vector code (CPU).

The column split (:mod:`dlbasics.kernels.colsplit`) trains one row at a time through each part's
columns of a layer, packed as an ``n_in x nc`` row-major block ``W`` (rows ``nc`` apart) with
its ``nc`` biases ``b``. Per row and layer that is a product ``z = h W + b``, plain SGD's update
``W -= lr h^T d``, ``b -= lr d``, and for a hidden layer the partial product ``d W^T``. Written
as Numba loops, the compiler vectorises each only over the columns of one row of ``W`` at a time:
a loop that updates several rows, or updates a row and adds it into ``z``, writes through
pointers whose distance (``nc`` elements) it does not know, and with more than a few of them it
gives up on the run-time overlap checks and runs the loop one element at a time (784 x 128:
43 us against 8 us for the same work vectorised). Here the loops are emitted directly: for each
chunk of columns (:data:`NV` vector registers of ``VL`` lanes), ``z``'s accumulators and ``d``
stay in registers over all the rows, and each weight is loaded once, updated by one FMA, stored,
and multiplied into ``z`` by another (:func:`row_forward`); :func:`row_grad_x_update` loads
each weight once for the partial product and its update. Columns past the last full chunk run
the same code one vector at a time, the last one masked (``llvm.masked.load``/``store``: the
10 units of an output layer are one masked vector of 16 float32 lanes on AVX-512).

Rounding: every multiply-add is one FMA (one rounding), not the shared step's multiply and add:
the column split equals the shared step to rounding, not bitwise. The weights' update is ``W[k,
j] = fma(-(lr * h[k]), d[j], W[k, j])`` and ``b[j] = fma(-lr, d[j], b[j])`` in every function
here, so an update gives the same bits whichever function applies it. The sums of ``z`` run over
the rows in order, ``k`` ascending, from ``b``; the partial products' sums over the columns are
in a fixed order of this code (two accumulators per chunk, halved in a tree), so the same inputs
give the same bits. Nothing is bounds-checked: the callers pass offsets of validated layouts.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from .lanes import VEC_BYTES, check_float_arrays

__all__ = ["NV", "FORWARD", "UPDATE_FORWARD", "UPDATE", "row_forward", "row_grad_x_update"]

#: Vector registers of columns per chunk: the accumulators of ``z`` and the deltas ``d`` (16 of
#: the 32 registers with AVX-512, 8 of 16 otherwise).
NV = 8 if VEC_BYTES == 64 else 4

#: Modes of :func:`row_forward`: the product alone; the pending update of the weights first,
#: then the product with the updated weights; the update alone.
FORWARD, UPDATE_FORWARD, UPDATE = 0, 1, 2


def _check_ints(name, *values):
    for v in values:
        if not isinstance(v, types.Integer):
            raise TypingError(f"{name}: expected integer offsets and sizes, got {v}")


class _Gen:
    """The state of one intrinsic's code generation: integer arguments as ``intp``, array data
    pointers, real arguments in the arrays' float type, and its vector width."""

    def __init__(self, context, builder, sig, args):
        self.context, self.builder = context, builder
        self.tys, self.args = sig.args, args
        self.intp = context.get_value_type(types.intp)

    def int(self, k):
        return self.context.cast(self.builder, self.args[k], self.tys[k], types.intp)

    def data(self, k):
        return make_array(self.tys[k])(self.context, self.builder, self.args[k]).data

    def real(self, k):
        return self.context.cast(self.builder, self.args[k], self.tys[k], self.dtype)

    def const(self, v):
        return ir.Constant(self.intp, v)

    def setup(self, k):
        """Float type, lanes of a vector, from the array argument ``k``."""
        self.dtype = self.tys[k].dtype
        self.fty = self.context.get_value_type(self.dtype)
        self.vl = VEC_BYTES // self.context.get_abi_sizeof(self.fty)

    def emitter(self, mask):
        return _Emitter(self.context, self.builder, self.fty, self.vl, mask)


class _Emitter:
    """Helpers shared by the two intrinsics: loads and stores of ``width`` lanes at element
    indices, broadcasts, FMAs. With ``mask`` (a vector of ``i1``) the loads and stores touch
    only the lanes it sets (the others load as zero): the columns past the last full vector."""

    def __init__(self, context, builder, fty, width, mask=None):
        self.builder = builder
        self.fty = fty
        self.width = width
        self.vty = ir.VectorType(fty, width)
        self.itemsize = context.get_abi_sizeof(fty)
        self.intp = context.get_value_type(types.intp)
        self.mask = mask
        self.bits = "f32" if self.itemsize == 4 else "f64"

    def const(self, v):
        return ir.Constant(self.intp, v)

    def addr(self, ptr, idx):
        return self.builder.bitcast(self.builder.gep(ptr, [idx]), self.vty.as_pointer())

    def _masked(self, op):
        vt = f"v{self.width}{self.bits}"
        i32, i1v = ir.IntType(32), ir.VectorType(ir.IntType(1), self.width)
        ptr = self.vty.as_pointer()
        if op == "load":
            fnty = ir.FunctionType(self.vty, [ptr, i32, i1v, self.vty])
        else:
            fnty = ir.FunctionType(ir.VoidType(), [self.vty, ptr, i32, i1v])
        return cgutils.get_or_insert_function(self.builder.module, fnty,
                                              f"llvm.masked.{op}.{vt}.p0")

    def load(self, ptr, idx):
        if self.mask is None:
            return self.builder.load(self.addr(ptr, idx), align=self.itemsize)
        zero = ir.Constant(self.vty, [ir.Constant(self.fty, 0.0)] * self.width)
        return self.builder.call(self._masked("load"), [
            self.addr(ptr, idx), ir.Constant(ir.IntType(32), self.itemsize), self.mask, zero])

    def store(self, val, ptr, idx):
        if self.mask is None:
            self.builder.store(val, self.addr(ptr, idx), align=self.itemsize)
        else:
            self.builder.call(self._masked("store"), [
                val, self.addr(ptr, idx), ir.Constant(ir.IntType(32), self.itemsize),
                self.mask])

    def splat(self, scalar):
        return _splat(self.builder, scalar, self.width)

    def fma(self, a, b, c):
        """``a * b + c`` rounded once (``llvm.fma``: one instruction where the CPU has FMA)."""
        name = f"llvm.fma.v{self.width}{self.bits}"
        fnty = ir.FunctionType(self.vty, [self.vty] * 3)
        fn = cgutils.get_or_insert_function(self.builder.module, fnty, name)
        return self.builder.call(fn, [a, b, c])

    def hsum(self, v):
        """The lanes of ``v`` added in a fixed tree (halves, then halves of those)."""
        b = self.builder
        n = self.width
        while n > 1:
            h = n // 2
            i32 = ir.IntType(32)
            lo = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, h), list(range(h))))
            hi = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, h), list(range(h, n))))
            v = b.fadd(lo, hi)
            n = h
        return b.extract_element(v, self.const(0))


def column_chunks(builder, intp, nc, vl, nv, emit):
    """Call ``emit(c, nvec, mask)`` inside loops over the column chunks of ``[0, nc)``: chunks
    of ``nv`` vectors of ``vl`` lanes (``mask`` ``None``), then single vectors, each with the
    ``mask`` of its columns below ``nc`` (all of them but in the last: one code for the columns
    left, which compiles faster than a loop of full vectors and a masked one)."""
    big = nv * vl
    n_big = builder.mul(builder.udiv(nc, ir.Constant(intp, big)), ir.Constant(intp, big))
    with cgutils.for_range_slice(builder, ir.Constant(intp, 0), n_big, ir.Constant(intp, big),
                                 intp=intp) as (c, _):
        emit(c, nv, None)
    with cgutils.for_range_slice(builder, n_big, nc, ir.Constant(intp, vl), intp=intp) as (c, _):
        emit(c, 1, column_mask(builder, intp, c, nc, vl))


def column_mask(builder, intp, start, n, vl):
    """The ``i1`` vector of the lanes ``start + l < n`` of a vector from column ``start``."""
    lanes = builder.add(_splat(builder, start, vl),
                        ir.Constant(ir.VectorType(intp, vl), [ir.Constant(intp, j)
                                                              for j in range(vl)]))
    return builder.icmp_signed("<", lanes, _splat(builder, n, vl))


def _splat(builder, scalar, width):
    """A vector of ``width`` copies of ``scalar``."""
    vty = ir.VectorType(scalar.type, width)
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), scalar,
                               ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width)
    return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined), zeros)


@intrinsic
def row_forward(typingctx, mode, P, wo, bo, nc, n_in, H, ho, Z, zo, hp, dp, lr):
    """One row through a packed block: ``Z[zo + j] = b[j] + sum_k h[k] W[k, j]`` for ``j <
    nc``, ``W[k, j] = P[wo + k * nc + j]``, ``b[j] = P[bo + j]``, ``h[k] = H[ho + k]`` (mode
    :data:`FORWARD`). :data:`UPDATE_FORWARD` first applies plain SGD's update of a previous row
    (input ``h'[k] = P[hp + k]``, delta ``d[j] = P[dp + j]``): ``b[j] = fma(-lr, d[j], b[j])``,
    ``W[k, j] = fma(-(lr h'[k]), d[j], W[k, j])``, stored, and the product uses the updated
    weights (one pass over them); :data:`UPDATE` applies the update alone (``H``, ``ho``,
    ``Z``, ``zo`` unused). A constant ``mode`` compiles its code alone (a smaller function
    that compiles faster), a variable one all three. ``z``'s sum runs over ``k`` ascending
    from ``b``, one FMA a term. ``P``, ``H`` and ``Z`` 1-D contiguous arrays of one float
    dtype; ``lr`` is cast to it."""
    check_float_arrays("row_forward", P, H, Z)
    _check_ints("row_forward", mode, wo, bo, nc, n_in, ho, zo, hp, dp)
    if not isinstance(lr, (types.Float, types.Integer)):
        raise TypingError(f"row_forward: expected a real lr, got {lr}")
    fixed = getattr(mode, "literal_value", None)
    if fixed is not None and fixed not in (FORWARD, UPDATE_FORWARD, UPDATE):
        raise TypingError(f"row_forward: unknown mode {fixed}")
    sig = types.none(mode, P, wo, bo, nc, n_in, H, ho, Z, zo, hp, dp, lr)

    def codegen(context, builder, sig, args):
        g = _Gen(context, builder, sig, args)
        g.setup(1)
        intp, vl = g.intp, g.vl
        mode_, wo_, bo_, nc_, n_in_ = (g.int(k) for k in (0, 2, 3, 4, 5))
        ho_, zo_, hp_, dp_ = (g.int(k) for k in (7, 9, 10, 11))
        pP, pH, pZ = g.data(1), g.data(6), g.data(8)
        lr_ = g.real(12)

        def variant(mode):
            update, forward = mode != FORWARD, mode != UPDATE

            def emit(c, nvec, mask):
                e = g.emitter(mask)
                offs = [builder.add(c, e.const(v * vl)) for v in range(nvec)]
                d = [e.load(pP, builder.add(dp_, o)) for o in offs] if update else None
                accs = []
                for v, o in enumerate(offs):
                    b = e.load(pP, builder.add(bo_, o))
                    if update:
                        b = e.fma(e.splat(builder.fneg(lr_)), d[v], b)
                        e.store(b, pP, builder.add(bo_, o))
                    if forward:
                        slot = cgutils.alloca_once(builder, e.vty)
                        builder.store(b, slot)
                        accs.append(slot)
                with cgutils.for_range(builder, n_in_, intp=intp) as loop:
                    k = loop.index
                    row = builder.add(wo_, builder.mul(k, nc_))
                    if update:
                        ck = builder.fmul(lr_, builder.load(builder.gep(pP, [builder.add(hp_, k)])))
                        nck = e.splat(builder.fneg(ck))
                    if forward:
                        hk = e.splat(builder.load(builder.gep(pH, [builder.add(ho_, k)])))
                    for v, o in enumerate(offs):
                        at = builder.add(row, o)
                        w = e.load(pP, at)
                        if update:
                            w = e.fma(nck, d[v], w)
                            e.store(w, pP, at)
                        if forward:
                            builder.store(e.fma(hk, w, builder.load(accs[v])), accs[v])
                if forward:
                    for v, o in enumerate(offs):
                        e.store(builder.load(accs[v]), pZ, builder.add(zo_, o))

            column_chunks(builder, intp, nc_, vl, NV, emit)

        if fixed is not None:  # a constant mode: its code alone
            variant(fixed)
            return context.get_dummy_value()
        for mode in (FORWARD, UPDATE_FORWARD, UPDATE):
            with builder.if_then(builder.icmp_signed("==", mode_, ir.Constant(intp, mode))):
                variant(mode)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def row_grad_x_update(typingctx, P, wo, bo, nc, n_in, ws, do, ho, xo, lr):
    """One row's partial product and plain SGD update of a packed block, one pass over the
    weights: ``ws[xo + k] = sum_j d[j] W[k, j]`` (the weights before the update; ``d[j] = ws[do
    + j]``, ``W`` and ``b`` as :func:`row_forward` takes them), then ``W[k, j] = fma(-(lr
    h[k]), d[j], W[k, j])``, ``h[k] = ws[ho + k]``, and ``b[j] = fma(-lr, d[j], b[j])``. Each
    sum over ``j`` runs chunk by chunk (:data:`NV` vectors) in a fixed order."""
    check_float_arrays("row_grad_x_update", P, ws)
    _check_ints("row_grad_x_update", wo, bo, nc, n_in, do, ho, xo)
    if not isinstance(lr, (types.Float, types.Integer)):
        raise TypingError(f"row_grad_x_update: expected a real lr, got {lr}")
    sig = types.none(P, wo, bo, nc, n_in, ws, do, ho, xo, lr)

    def codegen(context, builder, sig, args):
        g = _Gen(context, builder, sig, args)
        g.setup(0)
        intp, vl = g.intp, g.vl
        wo_, bo_, nc_, n_in_ = (g.int(k) for k in (1, 2, 3, 4))
        do_, ho_, xo_ = g.int(6), g.int(7), g.int(8)
        pP, pws = g.data(0), g.data(5)
        lr_ = g.real(9)
        zero = ir.Constant(g.fty, 0.0)

        def emit(c, nvec, mask):
            e = g.emitter(mask)
            offs = [builder.add(c, e.const(v * vl)) for v in range(nvec)]
            d = [e.load(pws, builder.add(do_, o)) for o in offs]
            for v, o in enumerate(offs):
                b = e.load(pP, builder.add(bo_, o))
                e.store(e.fma(e.splat(builder.fneg(lr_)), d[v], b), pP, builder.add(bo_, o))
            first = builder.icmp_signed("==", c, e.const(0))
            with cgutils.for_range(builder, n_in_, intp=intp) as loop:
                k = loop.index
                row = builder.add(wo_, builder.mul(k, nc_))
                ck = builder.fmul(lr_, builder.load(builder.gep(pws, [builder.add(ho_, k)])))
                nck = e.splat(builder.fneg(ck))
                sums = [None, None]
                for v, o in enumerate(offs):
                    at = builder.add(row, o)
                    w = e.load(pP, at)
                    s = sums[v % 2]
                    sums[v % 2] = builder.fmul(d[v], w) if s is None else e.fma(d[v], w, s)
                    e.store(e.fma(nck, d[v], w), pP, at)
                total = sums[0] if sums[1] is None else builder.fadd(sums[0], sums[1])
                part = e.hsum(total)
                xk = builder.gep(pws, [builder.add(xo_, k)])
                prev = builder.select(first, zero, builder.load(xk))
                builder.store(builder.fadd(prev, part), xk)

        column_chunks(builder, intp, nc_, vl, NV, emit)
        return context.get_dummy_value()

    return sig, codegen
