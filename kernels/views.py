"""Borrowed arrays and views for the compiled hot loops: no reference counting.

A Numba slice ``buf[a:b]`` is a new array that shares ``buf``'s memory and holds a reference to
it: creating it is an atomic increment of the reference count, dropping it an atomic decrement.
Passing an array to a compiled function costs the same pair. In the per-row and per-batch code
of a small network these atomic operations cost more than the arithmetic: 45% of a 2-16-16-1
training step at batch 1, before this module.

:func:`span`, :func:`grid` and :func:`row` build views without a reference (``meminfo`` null,
the way Numba's own ``nditer`` builds its element views), and :func:`borrow` turns any array
into such a reference-free one; every view of a borrowed array is borrowed too. :func:`lent`
takes a field out of a named tuple of arrays the same way (an attribute read would count a
reference again). Reference
counting then returns at once. The price: a borrowed array keeps nothing alive, so it must not
outlive the array it came from, nor be returned to Python or stored. Every use in this package
is a local of a compiled function whose caller holds the original.

Numba's dead-code elimination drops stores into an array that it does not know to alias a live
one, so each function here is registered as returning an alias of its first argument (as
``reshape`` is). They are plain intrinsics, not ``@overload`` wrappers: an ``inline="always"``
overload lost stores made inside an IR-inlined callee, and with a plain overload a cached
kernel compiled as a callee, loaded from the cache by another process and called directly,
jumped to an unrelocated address (``tests/test_views.py`` covers both).

No function here checks bounds (a slice would clip): the kernels pass offsets from the workspace
and parameter layouts, which the Python side validates before any kernel runs.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, ir_utils
from numba.core.errors import TypingError
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

__all__ = ["borrow", "span", "grid", "row", "lent", "prefetch", "prefetch_write", "CACHE_LINE",
           "PAGE", "aligned_zeros"]

#: Bytes of a cache line (x86-64 and most ARM cores).
CACHE_LINE = 64


#: Bytes of a memory page (the smallest, on x86-64 and most ARM systems).
PAGE = 4096


def aligned_zeros(n, dtype, align=CACHE_LINE):
    """A 1-D array of ``n`` zeros of ``dtype`` starting on a cache line (:data:`CACHE_LINE`),
    or on a multiple of ``align`` bytes (a power of two, e.g. :data:`PAGE`).

    NumPy aligns to 16 bytes. Threads that write neighbouring column ranges of the same rows
    (:mod:`dlbasics.kernels.colsplit`) then share the cache line at each boundary, which moves
    between their cores for every row written; on a cache-line boundary, column ranges of
    whole lines share none (for rows that start on lines: widths of a multiple of 64 bytes)."""
    if align < 1 or align & (align - 1):
        raise ValueError(f"align must be a power of two, got {align}")
    dtype = np.dtype(dtype)
    raw = np.zeros(n * dtype.itemsize + align, dtype=np.uint8)
    skip = (-raw.ctypes.data) % align
    return raw[skip : skip + n * dtype.itemsize].view(dtype)


def _ints(*ints):
    for t in ints:
        if not isinstance(t, types.Integer):
            raise TypingError(f"expected integer offsets, lengths and indices, got {t}")


def _view(context, builder, ary, offset, out_ty, shape, strides):
    """An array of type ``out_ty``, ``shape`` and ``strides`` (LLVM values, strides in bytes)
    whose data starts ``offset`` bytes into that of ``ary`` (an array structure), with no
    reference (null ``meminfo``)."""
    out = make_array(out_ty)(context, builder)
    populate_array(out, data=cgutils.pointer_add(builder, ary.data, offset), shape=list(shape),
                   strides=list(strides), itemsize=ary.itemsize, meminfo=None)
    return out._getvalue()


def _intp(context, builder, value, ty):
    return context.cast(builder, value, ty, types.intp)


@intrinsic
def borrow(typingctx, a):
    """``a`` itself (any array), borrowed: every view taken from the result, and every call it
    is passed to, skips reference counting too. A compiled entry point that calls small
    functions in a loop borrows its arrays once: each call otherwise pays an atomic increment
    and decrement per array argument (a quarter of a 2-16-16-1 step at batch 1)."""
    if not isinstance(a, types.Array):
        raise TypingError(f"expected an array, got {a}")
    sig = a(a)

    def codegen(context, builder, sig, args):
        ary = make_array(sig.args[0])(context, builder, args[0])
        ary.meminfo = ary.meminfo.type(None)
        ary.parent = ary.parent.type(None)
        return ary._getvalue()

    return sig, codegen


@intrinsic
def span(typingctx, buf, off, n):
    """``buf[off : off + n]`` of a 1-D array (any layout), borrowed (see the module
    docstring).

    For a contiguous array the offset is taken in units of the item size, a constant, not of
    the array's stride read at run time: LLVM then sees views of one array at offsets it can
    compare (``k * n`` items apart) and vectorises a loop that writes several of them. With the
    run-time stride, a loop updating four 128-column rows of one packed matrix and adding them
    into a row of another array needed too many run-time overlap checks and ran unvectorised,
    37 against 9 us over 784 rows (float32, on the 2-core benchmark machine)."""
    if not (isinstance(buf, types.Array) and buf.ndim == 1):
        raise TypingError(f"expected a 1-D array, got {buf}")
    _ints(off, n)
    sig = buf(buf, off, n)
    contiguous = buf.layout in ("C", "F")

    def codegen(context, builder, sig, args):
        ary = make_array(sig.args[0])(context, builder, args[0])
        if contiguous:
            stride = context.get_constant(types.intp, context.get_abi_sizeof(
                context.get_data_type(sig.args[0].dtype)))
        else:
            stride = builder.extract_value(ary.strides, 0)
        offset = builder.mul(_intp(context, builder, args[1], sig.args[1]), stride)
        n = _intp(context, builder, args[2], sig.args[2])
        return _view(context, builder, ary, offset, sig.return_type, [n], [stride])

    return sig, codegen


@intrinsic
def grid(typingctx, buf, off, rows, cols):
    """``buf[off : off + rows * cols].reshape((rows, cols))`` of a C-contiguous 1-D array,
    borrowed (see the module docstring)."""
    if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C"):
        raise TypingError(f"expected a 1-D C-contiguous array, got {buf}")
    _ints(off, rows, cols)
    sig = buf.copy(ndim=2, layout="C")(buf, off, rows, cols)

    def codegen(context, builder, sig, args):
        ary = make_array(sig.args[0])(context, builder, args[0])
        r = _intp(context, builder, args[2], sig.args[2])
        c = _intp(context, builder, args[3], sig.args[3])
        offset = builder.mul(_intp(context, builder, args[1], sig.args[1]), ary.itemsize)
        return _view(context, builder, ary, offset, sig.return_type, [r, c],
                     [builder.mul(c, ary.itemsize), ary.itemsize])

    return sig, codegen


@intrinsic
def row(typingctx, a, i):
    """Row ``i`` of a 2-D array, ``a[i]`` (any layout), borrowed (see the module docstring).
    The row of a C-contiguous array is typed C-contiguous, so loops over it vectorise."""
    if not (isinstance(a, types.Array) and a.ndim == 2):
        raise TypingError(f"expected a 2-D array, got {a}")
    _ints(i)
    sig = a.copy(ndim=1, layout="C" if a.layout == "C" else "A")(a, i)

    def codegen(context, builder, sig, args):
        ary = make_array(sig.args[0])(context, builder, args[0])
        offset = builder.mul(_intp(context, builder, args[1], sig.args[1]),
                             builder.extract_value(ary.strides, 0))
        return _view(context, builder, ary, offset, sig.return_type,
                     [builder.extract_value(ary.shape, 1)], [builder.extract_value(ary.strides, 1)])

    return sig, codegen


def _alias_of_first_argument(lhs, args, alias_map, arg_aliases):
    ir_utils._add_alias(lhs, args[0].name, alias_map, arg_aliases)


for _name in ("borrow", "span", "grid", "row", "lent"):
    ir_utils.alias_func_extensions[(_name, __name__)] = _alias_of_first_argument


@intrinsic(prefer_literal=True)
def lent(typingctx, rec, name):
    """Field ``name`` (a string literal) of the named tuple ``rec``; an array field comes
    borrowed (see the module docstring): ``rec.name`` would be reference-counted again."""
    if not isinstance(rec, types.BaseNamedTuple):
        raise TypingError(f"expected a named tuple, got {rec}")
    if not isinstance(name, types.StringLiteral):
        raise TypingError(f"expected a field name as a string literal, got {name}")
    if name.literal_value not in rec.fields:
        raise TypingError(f"{rec} has no field {name.literal_value!r}")
    idx = rec.fields.index(name.literal_value)
    ty = rec.types[idx]
    sig = ty(rec, name)

    def codegen(context, builder, sig, args):
        value = builder.extract_value(args[0], idx)
        if not isinstance(ty, types.Array):
            return value
        ary = make_array(ty)(context, builder, value)
        ary.meminfo = ary.meminfo.type(None)
        ary.parent = ary.parent.type(None)
        return ary._getvalue()

    return sig, codegen


def _prefetch_codegen(write):
    """The code of :func:`prefetch` (``write`` false) or :func:`prefetch_write`."""

    def codegen(context, builder, sig, args):
        if builder.module.triple.startswith("nvptx"):
            return context.get_dummy_value()
        ary = make_array(sig.args[0])(context, builder, args[0])
        offset = builder.add(builder.mul(_intp(context, builder, args[1], sig.args[1]),
                                         builder.extract_value(ary.strides, 0)),
                             _intp(context, builder, args[2], sig.args[2]))
        i8p = ir.IntType(8).as_pointer()
        ptr = builder.gep(builder.bitcast(ary.data, i8p), [offset])
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(int(write)), i32(3), i32(1)])
        return context.get_dummy_value()

    return codegen


def _prefetch_signature(a, i, byte):
    if not (isinstance(a, types.Array) and a.ndim in (1, 2)):
        raise TypingError(f"expected a 1-D or 2-D array, got {a}")
    _ints(i, byte)
    return types.void(a, i, byte)


@intrinsic
def prefetch(typingctx, a, i, byte):
    """Ask the CPU to bring the cache line holding byte ``byte`` of row ``i`` of the 2-D array
    ``a`` (or of element ``i`` of a 1-D one) towards its caches, without waiting for it (LLVM's
    ``llvm.prefetch``: a read, kept in all cache levels). A hint only: nothing is read into the
    program, no bounds are checked and an address outside the array cannot fault. On a GPU
    target it compiles to nothing."""
    return _prefetch_signature(a, i, byte), _prefetch_codegen(False)


@intrinsic
def prefetch_write(typingctx, a, i, byte):
    """:func:`prefetch` for a line about to be written (``PREFETCHW`` on x86): the line comes
    in exclusive, so a line another core holds stops the writes once, for all lines asked
    for together, rather than each write in turn."""
    return _prefetch_signature(a, i, byte), _prefetch_codegen(True)
