r"""Register-blocked products of a few rows with a packed block of weights (CPU).

The column split (:mod:`dlbasics.kernels.colsplit`) trains batches of 8 to 128 rows (and an
epoch's last, shorter batch) through each part's columns of a layer, packed as an ``n_in x nc``
row-major block ``W`` (rows ``nc`` apart). Its three products per layer are

* forward, :func:`block_forward`: ``Z = b + H W`` (``B x nc``; ``H`` the layer's input, ``B x
  n_in``);
* back-propagation, :func:`block_grad_x`: ``X = D W^T`` (``B x n_in``; ``D`` the part's columns
  of ``delta``, ``B x nc``);
* plain SGD's update, :func:`block_update`: ``W = W - lr H^T D``.

The network step (:mod:`dlbasics.kernels.network`) takes back-propagation, the forward
product in another loop order (:func:`block_forward_grouped`, the same bits) and the weight
gradient :func:`block_grad_w` (``G = H^T D``, the update's sum stored) for the products BLAS
would run on one thread through layers of 16,384 weights or more (a whole layer is the block,
``nc = n_out``; :func:`dlbasics.kernels.network.own_products`). With many rows (a row chunk of
512) ``H`` does not stay in the L2 cache: those two run each block of rows through a group of
columns (:data:`GROUP_VECS`) before the next, so that ``H`` is read once a group, not once a
chunk of :data:`NRV` vectors (784-256-256-10 at batch 1024: the step 1.06x faster on the best
epochs of four alternating runs, 1.02x on their medians; the column split's few rows keep the
order it was measured fastest with).

BLAS (``sgemm``) copies ("packs") its operands into blocks of its own on every call: with 32 rows
the copy of a 784 x 128 block of weights is paid for 32 rows of work, and OpenBLAS ran the
forward product at 63% of the FMA peak. Here the weights are read where they lie and the blocks
are kept in vector registers, emitted as LLVM vector code as :mod:`dlbasics.kernels.rowvec`
does: for the forward product ``MR`` rows x ``NRV`` vectors of columns of accumulators over the
whole sum (``MR + NRV`` loads for ``MR * NRV`` FMAs); for the update ``MR`` rows of ``W`` x
``NRV`` vectors, summing ``H^T D`` over the batch's rows in registers and adding it to ``W``
once; for back-propagation ``MR`` rows of ``D`` x ``MR`` rows of ``W`` of vector partial sums
over the columns, added across their lanes in one tree for all of them. Rows left over run the
same code one row at a time; columns past the last full vector in a masked vector. The forward
product and back-propagation run in panels of ``W`` (:data:`FWD_PANEL`,
:data:`GRAD_X_PANEL_BYTES`), each through every block of rows before the next, so that the
weights of a wide layer come from memory once.

Rounding: one FMA per multiply-add. ``Z``'s sums run over ``k`` ascending from ``b``; the
update is ``W = fma(-lr, S, W)`` with ``S = sum_i H[i, k] D[i, j]`` over ``i`` ascending (one
rounding of ``W`` per batch), the weight gradient ``S`` itself, summed from 0; the sums of
``X`` run over the vectors of columns in order, then across the lanes in a fixed tree.
Deterministic, equal to BLAS's products to rounding. Nothing is bounds-checked: the callers
pass offsets of validated layouts.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

from .lanes import VEC_BYTES, check_float_arrays
from .rowvec import _check_ints, column_chunks, column_mask
from .rowvec import _Gen as _GenBase

__all__ = ["MR", "NRV", "block_forward", "block_forward_grouped", "block_grad_w", "block_grad_x",
           "block_update"]

#: Rows of a register block (of ``H`` or ``D`` forward and back, of ``W`` in the update).
MR = 4 if VEC_BYTES == 64 else 2
#: Vectors of columns of a register block: ``MR * NRV`` accumulators, 16 of the 32 registers
#: with AVX-512, 8 of 16 otherwise.
NRV = 4
#: Rows of ``W`` a panel of the forward product (its ``NRV`` vectors of columns: 64 KiB of
#: float32 with AVX-512) and bytes of ``W`` a panel of back-propagation: every block of rows of
#: ``H`` or ``D`` runs through one panel before the next, so that a block too large for the L2
#: cache is read from memory once, not once per block of rows.
FWD_PANEL = 256
#: Vectors of columns a group of :func:`block_forward_grouped` and :func:`block_grad_w`: a
#: group's panel of ``W`` (256 rows of 16 vectors, 256 KiB with AVX-512) stays in the L2 cache
#: while every block of rows of ``H`` runs through all its columns.
GROUP_VECS = 16
GRAD_X_PANEL_BYTES = 128 * 1024


def _check(name, arrays, ints):
    check_float_arrays(name, *arrays)
    _check_ints(name, *ints)


def _check_index(name, idx):
    if not (isinstance(idx, types.Array) and idx.ndim == 1 and idx.layout == "C"
            and idx.dtype == types.int64):
        raise TypingError(f"{name}: expected a 1-D contiguous int64 row index, got {idx}")


class _Gen(_GenBase):
    """:class:`dlbasics.kernels.rowvec._Gen` with the loops of the blocked products."""

    def mul(self, a, b):
        return self.builder.mul(a, b)

    def add(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = self.builder.add(out, x)
        return out

    def round_down(self, n, m):
        return self.mul(self.builder.udiv(n, self.const(m)), self.const(m))

    def loop(self, start, stop, step):
        return cgutils.for_range_slice(self.builder, start, stop, self.const(step),
                                       intp=self.intp)

    def col_chunks(self, n, emit):
        """``emit(c, nvec, mask)`` over the columns ``[0, n)``: chunks of :data:`NRV` vectors,
        then single masked vectors (:func:`~dlbasics.kernels.rowvec.column_chunks`)."""
        column_chunks(self.builder, self.intp, n, self.vl, NRV, emit)

    def mask(self, start, n):
        """Lanes ``start + l < n`` of a vector from column ``start``."""
        return column_mask(self.builder, self.intp, start, n, self.vl)

    def col_chunks_from(self, start, n, emit):
        """:meth:`col_chunks` over the columns ``[start, n)``."""
        big = NRV * self.vl
        n_big = self.add(start, self.round_down(self.builder.sub(n, start), big))
        with self.loop(start, n_big, big) as (c, _):
            emit(c, NRV, None)
        with self.loop(n_big, n, self.vl) as (c, _):
            emit(c, 1, self.mask(c, n))

    def groups(self, n, emit):
        """``emit(c0, c1)`` over the columns ``[0, n)`` in groups ``[c0, c1)`` of
        :data:`GROUP_VECS` vectors (the last one shorter)."""
        b = self.builder
        size = GROUP_VECS * self.vl
        with self.loop(self.const(0), n, size) as (c0, _):
            c1 = b.add(c0, self.const(size))
            emit(c0, b.select(b.icmp_signed("<", c1, n), c1, n))

    def row_blocks(self, n, emit, start=None):
        """``emit(r0, mr)`` over the rows ``[start, n)`` (``start`` 0 by default): blocks of
        :data:`MR`, then single rows."""
        start = self.const(0) if start is None else start
        n_mr = self.add(start, self.round_down(self.builder.sub(n, start), MR))
        with self.loop(start, n_mr, MR) as (r0, _):
            emit(r0, MR)
        with self.loop(n_mr, n, 1) as (r0, _):
            emit(r0, 1)

    def panels(self, n, size, emit):
        """``emit(k0, k1)`` over ``[0, n)`` in panels ``[k0, k1)`` of ``size`` (an ``intp``
        value; the last one shorter)."""
        b = self.builder
        with cgutils.for_range_slice(b, self.const(0), n, size, intp=self.intp) as (k0, _):
            k1 = b.add(k0, size)
            emit(k0, b.select(b.icmp_signed("<", k1, n), k1, n))

    def row_start(self, base, ld, idx, io, r):
        """Element offset of row ``r`` of a matrix at ``base`` with rows ``ld`` apart, its rows
        in place (``io < 0``) or taken in the order ``idx[io + r]`` (rows of a data set)."""
        b = self.builder
        slot = cgutils.alloca_once(b, self.intp)
        with b.if_else(b.icmp_signed("<", io, self.const(0))) as (inplace, indexed):
            with inplace:
                b.store(r, slot)
            with indexed:
                b.store(b.load(b.gep(idx, [b.add(io, r)])), slot)
        return self.add(base, self.mul(b.load(slot), ld))

    def slots(self, vty, *shape):
        """Accumulators (``alloca``s, promoted to registers), nested lists of ``shape``."""
        if len(shape) == 1:
            return [cgutils.alloca_once(self.builder, vty) for _ in range(shape[0])]
        return [self.slots(vty, *shape[1:]) for _ in range(shape[0])]

    def zero(self, vty):
        return ir.Constant(vty, [ir.Constant(self.fty, 0.0)] * vty.count)


def _forward_codegen(grouped):
    """The code of :func:`block_forward` (``grouped`` false: each chunk of columns through
    every panel and block of rows) and of :func:`block_forward_grouped` (true: each block of
    rows through a group's columns, :data:`GROUP_VECS`)."""

    def codegen(context, builder, sig, args):
        g = _Gen(context, builder, sig, args)
        g.setup(3)
        B_, n_in_, nc_ = g.int(0), g.int(1), g.int(2)
        ho_, ldh_, hio_, wo_, bo_, zo_, ldz_ = (g.int(k) for k in (4, 5, 7, 9, 10, 12, 13))
        pH, pidx, pP, pZ = g.data(3), g.data(6), g.data(8), g.data(11)

        def block(c, nvec, mask, r0, mr, k0, k1):
            """Rows ``[r0, r0 + mr)`` x ``nvec`` vectors from column ``c``, over ``[k0, k1)``."""
            e = g.emitter(mask)
            offs = [g.add(c, g.const(v * g.vl)) for v in range(nvec)]
            first = builder.icmp_signed("==", k0, g.const(0))
            accs = g.slots(e.vty, mr, nvec)
            zrows = [g.add(zo_, g.mul(g.add(r0, g.const(m)), ldz_)) for m in range(mr)]
            for v, o in enumerate(offs):
                b = e.load(pP, g.add(bo_, o))
                for m in range(mr):  # the first panel from b, the others go on
                    z = e.load(pZ, g.add(zrows[m], o))
                    builder.store(builder.select(first, b, z), accs[m][v])
            hrow = [g.row_start(ho_, ldh_, pidx, hio_, g.add(r0, g.const(m))) for m in range(mr)]
            with g.loop(k0, k1, 1) as (k, _):
                wrow = g.add(wo_, g.mul(k, nc_))
                w = [e.load(pP, g.add(wrow, o)) for o in offs]
                for m in range(mr):
                    h = e.splat(builder.load(builder.gep(pH, [g.add(hrow[m], k)])))
                    for v in range(nvec):
                        builder.store(e.fma(h, w[v], builder.load(accs[m][v])), accs[m][v])
            for m in range(mr):
                for v, o in enumerate(offs):
                    e.store(builder.load(accs[m][v]), pZ, g.add(zrows[m], o))

        panel = g.const(FWD_PANEL)
        if grouped:
            def group(c0, c1):
                def rows(k0, k1, r0, mr):
                    g.col_chunks_from(c0, c1, lambda c, nvec, mask: block(c, nvec, mask, r0, mr,
                                                                          k0, k1))

                g.panels(n_in_, panel, lambda k0, k1: g.row_blocks(
                    B_, lambda r0, mr: rows(k0, k1, r0, mr)))

            g.groups(nc_, group)
        else:
            g.col_chunks(nc_, lambda c, nvec, mask: g.panels(n_in_, panel, lambda k0, k1: (
                g.row_blocks(B_, lambda r0, mr: block(c, nvec, mask, r0, mr, k0, k1)))))
        return context.get_dummy_value()

    return codegen


def _forward_sig(name, B, n_in, nc, H, ho, ldh, hidx, hio, P, wo, bo, Z, zo, ldz):
    _check(name, (H, P, Z), (B, n_in, nc, ho, ldh, hio, wo, bo, zo, ldz))
    _check_index(name, hidx)
    return types.none(B, n_in, nc, H, ho, ldh, hidx, hio, P, wo, bo, Z, zo, ldz)


@intrinsic
def block_forward(typingctx, B, n_in, nc, H, ho, ldh, hidx, hio, P, wo, bo, Z, zo, ldz):
    """``Z[i, j] = b[j] + sum_k H[i, k] W[k, j]`` for ``i < B``, ``j < nc``, ``k < n_in``
    ascending, one FMA a term: ``H[i, k] = H[ho + i * ldh + k]``, or with ``hio >= 0``
    ``H[ho + hidx[hio + i] * ldh + k]`` (the rows of a data set in a batch's order, read where
    they lie); ``W[k, j] = P[wo + k * nc + j]`` (a packed block), ``b[j] = P[bo + j]``,
    ``Z[i, j] = Z[zo + i * ldz + j]``. ``hidx`` a 1-D int64 array."""
    sig = _forward_sig("block_forward", B, n_in, nc, H, ho, ldh, hidx, hio, P, wo, bo, Z, zo,
                       ldz)
    return sig, _forward_codegen(False)


@intrinsic
def block_forward_grouped(typingctx, B, n_in, nc, H, ho, ldh, hidx, hio, P, wo, bo, Z, zo,
                          ldz):
    """:func:`block_forward`, its loops in another order, the bits the same: every block of
    rows of ``H`` runs through all columns of a group (:data:`GROUP_VECS` vectors) before the
    next, so that ``H`` is read once a group, not once a chunk of :data:`NRV` vectors (for
    many rows, where ``H`` does not stay in the L2 cache)."""
    sig = _forward_sig("block_forward_grouped", B, n_in, nc, H, ho, ldh, hidx, hio, P, wo, bo,
                       Z, zo, ldz)
    return sig, _forward_codegen(True)


def _products_codegen(store):
    """The code of :func:`block_update` (``store`` false) and of :func:`block_grad_w` (true):
    ``S = H^T D`` summed in registers, then added to ``W`` or stored in ``G``. The update runs
    each chunk of columns through every block of rows of ``W``; the gradient, for the network
    step's many rows, each block of rows of ``W`` through a group's columns
    (:data:`GROUP_VECS`), so that the rows of ``H`` are read once a group."""

    def codegen(context, builder, sig, args):
        g = _Gen(context, builder, sig, args)
        g.setup(3)
        B_, n_in_, nc_ = g.int(0), g.int(1), g.int(2)
        ho_, ldh_, hio_, do_, ldd_, wo_ = (g.int(k) for k in (4, 5, 7, 9, 10, 12))
        pH, pidx, pD, pP = g.data(3), g.data(6), g.data(8), g.data(11)
        lr_ = None if store else g.real(13)

        def block(c, nvec, mask, k0, mr):
            """Rows ``[k0, k0 + mr)`` of ``W`` x ``nvec`` vectors from column ``c``."""
            e = g.emitter(mask)
            offs = [g.add(c, g.const(v * g.vl)) for v in range(nvec)]
            accs = g.slots(e.vty, mr, nvec)
            for m in range(mr):
                for v in range(nvec):
                    builder.store(g.zero(e.vty), accs[m][v])
            with cgutils.for_range(builder, B_, intp=g.intp) as loop:
                i = loop.index
                drow = g.add(do_, g.mul(i, ldd_))
                d = [e.load(pD, g.add(drow, o)) for o in offs]
                hrow = g.add(g.row_start(ho_, ldh_, pidx, hio_, i), k0)
                for m in range(mr):
                    h = e.splat(builder.load(builder.gep(pH, [g.add(hrow, g.const(m))])))
                    for v in range(nvec):
                        builder.store(e.fma(h, d[v], builder.load(accs[m][v])), accs[m][v])
            nlr = None if store else e.splat(builder.fneg(lr_))
            for m in range(mr):
                wrow = g.add(wo_, g.mul(g.add(k0, g.const(m)), nc_))
                for v, o in enumerate(offs):
                    at = g.add(wrow, o)
                    s = builder.load(accs[m][v])
                    e.store(s if store else e.fma(nlr, s, e.load(pP, at)), pP, at)

        if store:
            g.groups(nc_, lambda c0, c1: g.row_blocks(n_in_, lambda k0, mr: g.col_chunks_from(
                c0, c1, lambda c, nvec, mask: block(c, nvec, mask, k0, mr))))
        else:
            g.col_chunks(nc_, lambda c, nvec, mask: g.row_blocks(
                n_in_, lambda k0, mr: block(c, nvec, mask, k0, mr)))
        return context.get_dummy_value()

    return codegen


@intrinsic
def block_update(typingctx, B, n_in, nc, H, ho, ldh, hidx, hio, D, do, ldd, P, wo, lr):
    """``W[k, j] = fma(-lr, S[k, j], W[k, j])`` with ``S[k, j] = sum_i H[i, k] D[i, j]`` over
    ``i < B`` ascending (one FMA a term): plain SGD's update of a packed block by a batch's
    summed gradient ``H^T D`` (``H``, ``hidx``, ``hio`` as :func:`block_forward` takes them,
    ``D[i, j] = D[do + i * ldd + j]``, ``W[k, j] = P[wo + k * nc + j]``); ``lr`` is cast to
    the arrays' dtype. The biases are the caller's."""
    _check("block_update", (H, D, P), (B, n_in, nc, ho, ldh, hio, do, ldd, wo))
    _check_index("block_update", hidx)
    if not isinstance(lr, (types.Float, types.Integer)):
        raise TypingError(f"block_update: expected a real lr, got {lr}")
    sig = types.none(B, n_in, nc, H, ho, ldh, hidx, hio, D, do, ldd, P, wo, lr)
    return sig, _products_codegen(False)


@intrinsic
def block_grad_w(typingctx, B, n_in, nc, H, ho, ldh, hidx, hio, D, do, ldd, G, go):
    """``G[k, j] = S[k, j] = sum_i H[i, k] D[i, j]`` over ``i < B`` ascending (one FMA a term,
    the sum from 0; ``H``, ``hidx``, ``hio``, ``D`` as :func:`block_update` takes them,
    ``G[k, j] = G[go + k * nc + j]``): a layer's weight gradient ``H^T D``, overwritten. The
    biases are the caller's."""
    _check("block_grad_w", (H, D, G), (B, n_in, nc, ho, ldh, hio, do, ldd, go))
    _check_index("block_grad_w", hidx)
    sig = types.none(B, n_in, nc, H, ho, ldh, hidx, hio, D, do, ldd, G, go)
    return sig, _products_codegen(True)


def _lane_sums(builder, vectors, vl, zero):
    """``[sum of the lanes of v for v in vectors]`` as LLVM scalars, by one tree for all of
    them: pairs of vectors exchange halves of their lane groups and add (so that each vector
    holds twice as many groups of half the lanes), until every lane is one vector's sum. The
    order of the additions depends on the count of vectors only."""
    i32 = ir.IntType(32)
    items = [(v, [t]) for t, v in enumerate(vectors)]  # (vector, the inputs of its groups)
    size = vl  # lanes a group
    while size > 1:
        if len(items) % 2:
            items.append((zero, [None] * (vl // size)))
        half = size // 2
        nxt = []
        for (a, ia), (b, ib) in zip(items[0::2], items[1::2], strict=True):
            groups = vl // size
            lo = [g * size + x for g in range(groups) for x in range(half)]
            hi = [g * size + half + x for g in range(groups) for x in range(half)]
            lo += [vl + j for j in lo]
            hi += [vl + j for j in hi]
            sl = builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, vl), lo))
            sh = builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, vl), hi))
            nxt.append((builder.fadd(sl, sh), ia + ib))
        items = nxt
        size = half
    out = [None] * len(vectors)
    for v, ids in items:
        for lane, t in enumerate(ids):
            if t is not None:
                out[t] = builder.extract_element(v, ir.Constant(i32, lane))
    return out


@intrinsic
def block_grad_x(typingctx, B, n_in, nc, D, do, ldd, P, wo, X, xo, ldx):
    """``X[i, k] = sum_j D[i, j] W[k, j]`` for ``i < B``, ``k < n_in``, ``j < nc`` (``D`` and
    ``W`` as :func:`block_update` takes them, ``X[i, k] = X[xo + i * ldx + k]``): each sum in
    vectors of columns, in order, then across the lanes (:func:`_lane_sums`)."""
    _check("block_grad_x", (D, P, X), (B, n_in, nc, do, ldd, wo, xo, ldx))
    sig = types.none(B, n_in, nc, D, do, ldd, P, wo, X, xo, ldx)

    def codegen(context, builder, sig, args):
        g = _Gen(context, builder, sig, args)
        g.setup(3)
        B_, n_in_, nc_ = g.int(0), g.int(1), g.int(2)
        do_, ldd_, wo_, xo_, ldx_ = (g.int(k) for k in (4, 5, 7, 9, 10))
        pD, pP, pX = g.data(3), g.data(6), g.data(8)
        vl = g.vl
        n_vec = g.round_down(nc_, vl)

        def rows(i0, mi):
            drows = [g.add(do_, g.mul(g.add(i0, g.const(m)), ldd_)) for m in range(mi)]

            def cols(k0, mk):
                e = g.emitter(None)
                accs = g.slots(e.vty, mi, mk)
                for m in range(mi):
                    for r in range(mk):
                        builder.store(g.zero(e.vty), accs[m][r])
                wrows = [g.add(wo_, g.mul(g.add(k0, g.const(r)), nc_)) for r in range(mk)]

                def terms(ee, j):
                    d = [ee.load(pD, g.add(drows[m], j)) for m in range(mi)]
                    w = [ee.load(pP, g.add(wrows[r], j)) for r in range(mk)]
                    for m in range(mi):
                        for r in range(mk):
                            builder.store(ee.fma(d[m], w[r], builder.load(accs[m][r])),
                                          accs[m][r])

                with g.loop(g.const(0), n_vec, vl) as (j, _):
                    terms(e, j)
                with builder.if_then(builder.icmp_signed("<", n_vec, nc_)):
                    terms(g.emitter(g.mask(n_vec, nc_)), n_vec)
                sums = _lane_sums(builder, [builder.load(accs[m][r]) for m in range(mi)
                                            for r in range(mk)], vl, g.zero(e.vty))
                for m in range(mi):
                    xrow = g.add(xo_, g.mul(g.add(i0, g.const(m)), ldx_), k0)
                    for r in range(mk):
                        builder.store(sums[m * mk + r],
                                      builder.gep(pX, [g.add(xrow, g.const(r))]))

            g.row_blocks(kend, cols, kstart)

        def panel(k0, k1):
            nonlocal kstart, kend
            kstart, kend = k0, k1
            g.row_blocks(B_, rows)

        kstart = kend = None
        size = builder.udiv(g.const(GRAD_X_PANEL_BYTES // context.get_abi_sizeof(g.fty)),
                            builder.add(nc_, g.const(1)))
        size = g.round_down(size, MR)
        size = builder.select(builder.icmp_signed("<", size, g.const(MR)), g.const(MR), size)
        g.panels(n_in_, size, panel)
        return context.get_dummy_value()

    return sig, codegen
