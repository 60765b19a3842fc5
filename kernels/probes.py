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
the cycles atomically to :data:`CYCLES`, to the totals of the CPU it runs on (the number that
``rdtscp`` reads along with the counter on x86; ``sched_getcpu`` elsewhere), which the compiled
code finds by name (the symbol ``dlbasics_phase_cycles``, registered with LLVM at import). Each
CPU's totals fill a cache line of their own. Measured on the 2-core benchmark machine, the
column split's step of 784-256-256-10 at one row, without and with the probes: 21 against 29
us with one line per phase shared by all threads (each lap moved a line between the cores),
19 against 27 us with a line per CPU found by ``sched_getcpu``, 19 against 20 us with
``rdtscp`` (at 8 rows: 76 against 113 with shared lines, 74 against 75 with ``rdtscp``; two
runs of the same step without probes have differed by up to 1.3x on that machine, so a
single pair says little below that). The speed study
(``dlbasics.studies.speed.phases``) times the step with and without them.

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
_LINE = 8  # int64 slots of a 64-byte cache line: a CPU's totals, one line
#: CPUs with totals of their own (a CPU numbered beyond shares those of its number modulo this).
TRACKS = 64

#: Cycles per CPU (row ``sched_getcpu() % TRACKS``) and phase (column) since the last
#: :func:`reset`: each CPU adds to its own cache line, so that the probes of two threads never
#: pass a line between their cores.
_BUFFER = np.zeros((TRACKS + 1) * _LINE, np.int64)
_BASE = (-_BUFFER.ctypes.data // 8) % _LINE  # first slot on a 64-byte boundary
CYCLES = _BUFFER[_BASE:_BASE + TRACKS * _LINE].reshape(TRACKS, _LINE)[:, :len(PHASES)]

if ENABLED:
    _cache = os.environ.get("NUMBA_CACHE_DIR", "")
    if not (_cache and os.path.isfile(os.path.join(_cache, MARKER))):
        raise RuntimeError(
            f"{ENV}=1 compiles the phase probes into the step, and Numba's cache cannot tell "
            f"such code from the normal step: set NUMBA_CACHE_DIR to a directory of its own "
            f"holding a file named {MARKER!r} (dlbasics.studies.speed.phases.probe_env makes "
            f"one); NUMBA_CACHE_DIR is {_cache or 'unset'}")
    llvm.add_symbol(_SYMBOL, _BUFFER[_BASE:].ctypes.data)


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


def _counter_and_cpu(builder):
    """The cycle counter and the number of the CPU that read it (as i64): ``rdtscp`` on x86
    (Linux keeps the CPU's number in the register it reads along), else the counter and
    ``sched_getcpu()`` (a call: slower, see the module's figures)."""
    i64 = ir.IntType(64)
    if builder.module.triple.startswith(("x86_64", "i686", "i386")):
        fnty = ir.FunctionType(ir.LiteralStructType([i64, ir.IntType(32)]), [])
        fn = builder.module.globals.get("llvm.x86.rdtscp")
        if fn is None:
            fn = ir.Function(builder.module, fnty, "llvm.x86.rdtscp")
        both = builder.call(fn, [])
        return builder.extract_value(both, 0), builder.zext(builder.extract_value(both, 1), i64)
    getcpu = builder.module.globals.get("sched_getcpu")
    if getcpu is None:
        getcpu = ir.Function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_getcpu")
    return _counter(builder), builder.zext(builder.call(getcpu, []), i64)


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
        now, cpu = _counter_and_cpu(builder)
        gv = builder.module.globals.get(_SYMBOL)
        if gv is None:
            gv = ir.GlobalVariable(builder.module, i64, _SYMBOL)
            gv.linkage = "external"
        track = builder.and_(cpu, ir.Constant(i64, TRACKS - 1))
        slot = builder.add(builder.mul(track, ir.Constant(i64, _LINE)),
                           context.cast(builder, args[1], sig.args[1], types.int64))
        builder.atomic_rmw("add", builder.gep(gv, [slot]), builder.sub(now, mark), "monotonic")
        return now

    return sig, codegen


def reset():
    """Set every phase's total to 0."""
    CYCLES[:] = 0


def totals():
    """``{phase: cycles}`` since the last :func:`reset` (all threads and CPUs together)."""
    return {name: int(c) for name, c in zip(PHASES, CYCLES.sum(axis=0), strict=True)}
