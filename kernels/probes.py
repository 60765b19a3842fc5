"""Phase probes: where the time of a training step goes, measured inside the compiled step.

The CPU step (:mod:`dlbasics.kernels.network`, :mod:`dlbasics.kernels.colsplit`) marks the end
of each of its phases with :func:`lap`: ``t = lap(t, PRODUCTS)`` charges the time since ``t``
(the previous mark, or :func:`stamp` at the start of a function) to the products and returns the
new mark. The phases (:data:`PHASES`):

* ``gather``: copying the batch's rows (and targets) into the workspace;
* ``products``: the products with the weights (BLAS or the step's own loops; the bias and, where
  it is fused into the product, plain SGD's weight update included);
* ``elementwise``: activations and their derivatives, dropout masks, bias added after a BLAS
  product, the column split's sums of partial products;
* ``loss``: the loss rows and the output layer's gradient;
* ``update``: the optimizer's update and the L2 penalty, and in the row split the sum of the
  chunks' gradients before it; in the column split the biases' gradient and update;
* ``waiting``: threads waiting for one another (claiming a task and spinning on the count of
  finished ones): the cost of threading beyond the work itself.

Off by default (and always in GPU code): :func:`stamp` and :func:`lap` then compile to nothing
(the constant 0 and their argument), so the step's code is the same as without them. On when
the environment variable ``DLBASICS_PHASE_PROFILE`` is ``1`` as this module is imported: each
lap then reads the CPU's cycle counter (``llvm.readcyclecounter``, the TSC on x86) and adds
the cycles atomically to :data:`CYCLES`, one total per phase summed over all threads, which
the compiled code finds by name (the symbol ``dlbasics_phase_cycles``, registered with LLVM at
import). A lap costs tens of cycles; the speed study (``dlbasics.studies.speed.phases``)
times the step with and without them.

Numba's cache does not know whether the probes were on when a function was compiled, so with
them on this module insists on a cache of its own: ``NUMBA_CACHE_DIR`` must name a directory
holding the file :data:`MARKER` (:func:`dlbasics.studies.speed.phases.probe_env` makes one);
otherwise importing it raises ``RuntimeError``, before anything compiles.
"""

from __future__ import annotations

import os

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core.errors import TypingError
from numba.extending import intrinsic

__all__ = ["ENABLED", "PHASES", "GATHER", "PRODUCTS", "ELEMENTWISE", "LOSS", "UPDATE",
           "WAITING", "CYCLES", "MARKER", "stamp", "lap", "cycles_now", "reset", "totals"]

#: The phases, in the order of :data:`CYCLES`.
PHASES = ("gather", "products", "elementwise", "loss", "update", "waiting")
GATHER, PRODUCTS, ELEMENTWISE, LOSS, UPDATE, WAITING = range(len(PHASES))

#: File that marks a Numba cache directory as the probes' own.
MARKER = "dlbasics-phase-profile"

#: Environment variable that turns the probes on.
ENV = "DLBASICS_PHASE_PROFILE"

#: Whether the probes are compiled in (read once, at import).
ENABLED = os.environ.get(ENV, "") == "1"

_SYMBOL = "dlbasics_phase_cycles"
_STRIDE = 8  # int64 slots between two phases' totals: one 64-byte line each

#: Cycles per phase, summed over threads, since the last :func:`reset` (``_STRIDE`` apart in
#: the underlying buffer, so that two phases never share a cache line).
_BUFFER = np.zeros(len(PHASES) * _STRIDE + _STRIDE, np.int64)
_BASE = (-_BUFFER.ctypes.data // 8) % _STRIDE  # first slot on a 64-byte boundary
CYCLES = _BUFFER[_BASE:_BASE + len(PHASES) * _STRIDE:_STRIDE]

if ENABLED:
    _cache = os.environ.get("NUMBA_CACHE_DIR", "")
    if not (_cache and os.path.isfile(os.path.join(_cache, MARKER))):
        raise RuntimeError(
            f"{ENV}=1 compiles the phase probes into the step, and Numba's cache cannot tell "
            f"such code from the normal step: set NUMBA_CACHE_DIR to a directory of its own "
            f"holding a file named {MARKER!r} (dlbasics.studies.speed.phases.probe_env makes "
            f"one); NUMBA_CACHE_DIR is {_cache or 'unset'}")
    llvm.add_symbol(_SYMBOL, CYCLES.ctypes.data)


def _live(builder):
    """Whether a probe compiles to code here: on, and not on a GPU (the device step is timed
    as a whole)."""
    return ENABLED and not builder.module.triple.startswith("nvptx")


def _counter(builder):
    fn = builder.module.globals.get("llvm.readcyclecounter")
    if fn is None:
        fn = ir.Function(builder.module, ir.FunctionType(ir.IntType(64), []),
                         "llvm.readcyclecounter")
    return builder.call(fn, [])


@intrinsic
def cycles_now(typingctx):
    """The CPU's cycle counter (``llvm.readcyclecounter``; 0 where the CPU has none), whether
    or not the probes are on (for calibrating it against wall time)."""
    sig = types.int64()

    def codegen(context, builder, sig, args):
        return _counter(builder)

    return sig, codegen


@intrinsic
def stamp(typingctx):
    """The mark a function's first :func:`lap` counts from: the cycle counter, or the constant
    0 with the probes off."""
    sig = types.int64()

    def codegen(context, builder, sig, args):
        if _live(builder):
            return _counter(builder)
        return ir.Constant(ir.IntType(64), 0)

    return sig, codegen


@intrinsic
def lap(typingctx, t, phase):
    """Charge the cycles since mark ``t`` to ``phase`` (one of :data:`PHASES`' indices;
    atomically, threads may lap at once) and return the new mark; with the probes off, return
    ``t`` and do nothing."""
    if not (isinstance(t, types.Integer) and isinstance(phase, types.Integer)):
        raise TypingError(f"lap: expected integer mark and phase, got {t} and {phase}")
    sig = types.int64(t, phase)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        mark = context.cast(builder, args[0], sig.args[0], types.int64)
        if not _live(builder):
            return mark
        now = _counter(builder)
        gv = builder.module.globals.get(_SYMBOL)
        if gv is None:
            gv = ir.GlobalVariable(builder.module, i64, _SYMBOL)
            gv.linkage = "external"
        slot = builder.mul(context.cast(builder, args[1], sig.args[1], types.int64),
                           ir.Constant(i64, _STRIDE))
        builder.atomic_rmw("add", builder.gep(gv, [slot]), builder.sub(now, mark), "monotonic")
        return now

    return sig, codegen


def reset():
    """Set every phase's total to 0."""
    CYCLES[:] = 0


def totals():
    """``{phase: cycles}`` since the last :func:`reset` (all threads together)."""
    return {name: int(c) for name, c in zip(PHASES, CYCLES, strict=True)}
