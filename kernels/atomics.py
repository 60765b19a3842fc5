"""Atomic counters and a polite spin for the CPU kernels whose threads meet without leaving
their parallel region (:func:`dlbasics.kernels.network.split_epoch`).

A Numba ``prange`` region costs its threads a start and a join: about 1.2 to 2.6 us on this
project's 2-core machines, twice per training batch in the split epoch: 8-16% of the
32 us a batch of 20-100-4 at 200 rows took. Threads that stay in one region for a whole epoch and
meet through a shared counter pay about 0.15 us a meeting instead. Numba has no atomic
operations for CPU code, so this module adds the three such a meeting needs, as LLVM
instructions:

* :func:`fetch_add`: ``a[i] += v`` as one indivisible step (sequentially consistent), returning
  the old value: a thread claims the next task, or says one is done.
* :func:`load_acquire`: ``a[i]`` read with acquire order: once a thread sees the count it
  waits for, it also sees everything the other threads wrote before they counted.
* :func:`spin_pause`: the CPU's spin-wait hint (``pause`` on x86, nothing elsewhere), and
  :func:`yield_cpu`, the operating system's ``sched_yield``: a thread that has waited long
  gives its core to a thread that may be the one it waits for.

CPU only: the GPU kernels have ``numba.cuda.atomic``. No bounds are checked.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

__all__ = ["fetch_add", "load_acquire", "spin_pause", "yield_cpu"]


def _int64_array(a, i):
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.dtype == types.int64):
        raise TypingError(f"expected a 1-D int64 array, got {a}")
    if not isinstance(i, types.Integer):
        raise TypingError(f"expected an integer index, got {i}")


def _pointer(context, builder, aty, a, ity, i):
    ary = make_array(aty)(context, builder, a)
    index = context.cast(builder, i, ity, types.intp)
    return cgutils.get_item_pointer(context, builder, aty, ary, [index], wraparound=False)


@intrinsic
def fetch_add(typingctx, a, i, v):
    """``a[i] += v`` atomically (sequentially consistent) on a 1-D int64 array; returns the
    value ``a[i]`` held before."""
    _int64_array(a, i)
    if not isinstance(v, types.Integer):
        raise TypingError(f"expected an integer increment, got {v}")
    sig = types.int64(a, i, v)

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        inc = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, inc, "seq_cst")

    return sig, codegen


@intrinsic
def load_acquire(typingctx, a, i):
    """``a[i]`` of a 1-D int64 array, read atomically with acquire order (never hoisted out
    of a loop: a spin on it sees the other threads' writes)."""
    _int64_array(a, i)
    sig = types.int64(a, i)

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def spin_pause(typingctx):
    """The spin-wait hint of the CPU: ``pause`` on x86 (the spinning thread yields execution
    resources to its core's other hardware thread and leaves the loop without a pipeline flush
    when the awaited write lands); nothing on other CPUs."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        if builder.module.triple.startswith(("x86_64", "i686", "i386")):
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def yield_cpu(typingctx):
    """``sched_yield()`` (POSIX; the C library's, found by name when the code is loaded): the
    operating system runs another ready thread on this core, if any, before this one."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen
