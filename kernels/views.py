"""Borrowed arrays and views for the compiled hot loops: no reference counting.

A Numba slice ``buf[a:b]`` is a new array that shares ``buf``'s memory and holds a reference to
it: creating it is an atomic increment of the reference count, dropping it an atomic decrement.
Passing an array to a compiled function costs the same pair. In the per-row and per-batch code
of a small network these atomic operations cost more than the arithmetic: 45% of a 2-16-16-1
training step at batch 1, before this module.

:func:`span`, :func:`grid` and :func:`row` build views without a reference (``meminfo`` null,
the way Numba's own ``nditer`` builds its element views), and :func:`borrow` turns any array
into such a reference-free one; every view of a borrowed array is borrowed too. Reference
counting then returns at once. The price: a borrowed array keeps nothing alive, so it must not
outlive the array it came from, nor be returned to Python or stored. Every use in this package
is a local of a compiled function whose caller holds the original.

Numba's dead-code elimination drops stores into an array that it does not know to alias a live
one. Each function here is registered as returning an alias of its first argument (as
``reshape`` is), and :func:`span`/:func:`row` are not IR-inlined overloads: with
``inline="always"`` their stores inside an IR-inlined callee were dropped all the same
(``tests/test_views.py`` covers both patterns).

No function here checks bounds (a slice would clip): the kernels pass offsets from the workspace
and parameter layouts, which the Python side validates before any kernel runs.
"""

from __future__ import annotations

from numba import types
from numba.core import ir_utils
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload
from numba.np.arrayobj import make_array, populate_array

__all__ = ["borrow", "span", "grid", "row"]


def _check(buf, *ints):
    if not (isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C"):
        raise TypingError(f"expected a 1-D C-contiguous array, got {buf}")
    for t in ints:
        if not isinstance(t, types.Integer):
            raise TypingError(f"expected integer offsets and lengths, got {t}")


def _borrowed(context, builder, buf_ty, buf, off, off_ty, out_ty, shape):
    off = context.cast(builder, off, off_ty, types.intp)
    return _borrowed_from(context, builder, buf_ty, buf, off, out_ty, shape)


def _borrowed_from(context, builder, buf_ty, buf, off, out_ty, shape):
    """An array of type ``out_ty`` and ``shape`` (C order) starting ``off`` (intp) elements
    into the data of ``buf`` (any C-contiguous array), with no reference."""
    ary = make_array(buf_ty)(context, builder, buf)
    itemsize = context.get_constant(types.intp, context.get_abi_sizeof(
        context.get_data_type(buf_ty.dtype)))
    strides = []
    stride = itemsize
    for extent in reversed(shape[1:]):
        strides.append(stride)
        stride = builder.mul(stride, extent)
    strides.append(stride)
    out = make_array(out_ty)(context, builder)
    populate_array(out, data=builder.gep(ary.data, [off]), shape=list(shape),
                   strides=list(reversed(strides)), itemsize=itemsize, meminfo=None)
    return out._getvalue()


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
def _span_c(typingctx, buf, off, n):
    _check(buf, off, n)
    sig = buf(buf, off, n)

    def codegen(context, builder, sig, args):
        n = context.cast(builder, args[2], sig.args[2], types.intp)
        return _borrowed(context, builder, sig.args[0], args[0], args[1], sig.args[1],
                         sig.return_type, [n])

    return sig, codegen


def span(buf, off, n):
    """``buf[off : off + n]`` of a 1-D array, borrowed when ``buf`` is C-contiguous (see the
    module docstring); any other layout gets the ordinary slice."""
    return buf[off : off + n]


@overload(span)
def _span_overload(buf, off, n):
    if isinstance(buf, types.Array) and buf.ndim == 1 and buf.layout == "C":
        return lambda buf, off, n: _span_c(buf, off, n)
    return lambda buf, off, n: buf[off : off + n]


@intrinsic
def grid(typingctx, buf, off, rows, cols):
    """``buf[off : off + rows * cols].reshape((rows, cols))``, borrowed (see the module
    docstring)."""
    _check(buf, off, rows, cols)
    out_ty = buf.copy(ndim=2, layout="C")
    sig = out_ty(buf, off, rows, cols)

    def codegen(context, builder, sig, args):
        r = context.cast(builder, args[2], sig.args[2], types.intp)
        c = context.cast(builder, args[3], sig.args[3], types.intp)
        return _borrowed(context, builder, sig.args[0], args[0], args[1], sig.args[1],
                         sig.return_type, [r, c])

    return sig, codegen


@intrinsic
def _row_c(typingctx, a, i):
    if not (isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C"):
        raise TypingError(f"expected a 2-D C-contiguous array, got {a}")
    if not isinstance(i, types.Integer):
        raise TypingError(f"expected an integer row index, got {i}")
    out_ty = a.copy(ndim=1, layout="C")
    sig = out_ty(a, i)

    def codegen(context, builder, sig, args):
        ary = make_array(sig.args[0])(context, builder, args[0])
        ncols = builder.extract_value(ary.shape, 1)
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        flat = ary._getvalue()
        return _borrowed_from(context, builder, sig.args[0], flat, builder.mul(i, ncols),
                              sig.return_type, [ncols])

    return sig, codegen


def row(a, i):
    """Row ``i`` of a 2-D array: ``a[i]``, borrowed when ``a`` is C-contiguous (see the module
    docstring); any other layout gets the ordinary view."""
    return a[i]


@overload(row)
def _row_overload(a, i):
    if isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C":
        return lambda a, i: _row_c(a, i)
    return lambda a, i: a[i]


def _alias_of_first_argument(lhs, args, alias_map, arg_aliases):
    ir_utils._add_alias(lhs, args[0].name, alias_map, arg_aliases)


for _name in ("borrow", "span", "grid", "row", "_span_c", "_row_c"):
    ir_utils.alias_func_extensions[(_name, __name__)] = _alias_of_first_argument
