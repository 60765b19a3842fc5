"""Where the first call's compile time goes, function by function.

:func:`profile_call` runs a callable under a listener of Numba's ``numba:compile`` events (like
``numba.core.event.install_recorder``, but stamping each event with ``time.perf_counter``, the
clock of the wall time; Numba's recorder uses ``time.time``, and on two clocks a compile could
seem to outlast the call that holds it) and turns the nested start/end events into one record
per compiled function: its inclusive time (its own compilation and everything compiled while
typing it), its exclusive time (inclusive minus that of the functions compiled inside it) and
its nesting depth. A function that Numba loads from its cache, or that was compiled before, does
not appear, so the profile of a first call is taken in a fresh process with an empty cache:
:func:`main` starts itself in a subprocess with ``NUMBA_CACHE_DIR`` set to a new temporary
directory (the user's cache is neither read nor written) and profiles the first ``train`` epoch
of a speed-study network there.

Run: ``python -m dlbasics.studies.speed.compile_profile [--net 784-256-256-10] [--batch 32]
[--top 25] [--json OUT]``. It prints the wall time of the first epoch and the functions with
the most exclusive compile time; :func:`section` renders a profile as the speed report's table
(the speed study runs it after its other measurements). Inlined functions (``inline="always"``)
have no record of their own: their cost lands in every caller, once per call site.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

__all__ = ["compile_records", "profile_call", "section", "main"]


def _name(data):
    disp = data.get("dispatcher") if isinstance(data, dict) else None
    func = getattr(disp, "py_func", None)
    if func is not None:
        return f"{func.__module__}.{func.__qualname__}"
    return str(data)[:80]


def compile_records(events):
    """One record per compile from ``(timestamp, event)`` pairs of the ``numba:compile`` kind.

    Parameters
    ----------
    events : iterable of (float, numba.core.event.Event)
        The recorder's buffer, in order. Each compile is a start event and a matching end event;
        compiles nest (a function is typed while its caller is).

    Returns
    -------
    list of dict
        ``name``, ``inclusive_s``, ``exclusive_s``, ``depth`` (0 for a compile that no other
        encloses), in the order the compiles ended.

    Raises
    ------
    ValueError
        The events do not nest (an end without its start, or starts left open).
    """
    stack = []  # [name, start, time of the compiles nested in it]
    out = []
    for ts, ev in events:
        if ev.is_start:
            stack.append([_name(ev.data), ts, 0.0])
            continue
        if not ev.is_end or not stack:
            raise ValueError("compile events do not nest: an end without its start")
        name, start, nested = stack.pop()
        total = ts - start
        out.append({"name": name, "inclusive_s": total, "exclusive_s": total - nested,
                    "depth": len(stack)})
        if stack:
            stack[-1][2] += total
    if stack:
        raise ValueError(f"compile events do not nest: {len(stack)} starts left open")
    return out


def _perf_recorder():
    """A Numba event listener that keeps ``(time.perf_counter(), event)`` in ``.buffer``."""
    from numba.core import event

    class PerfCounterRecorder(event.Listener):
        def __init__(self):
            self.buffer = []

        def on_start(self, ev):
            self.buffer.append((time.perf_counter(), ev))

        def on_end(self, ev):
            self.buffer.append((time.perf_counter(), ev))

    return PerfCounterRecorder()


def profile_call(fn, *args, **kwargs):
    """``(result, wall_s, records)``: ``fn(*args, **kwargs)`` under the compile recorder, its
    wall time and :func:`compile_records` of what it compiled.

    Events and wall time are read from the one clock (``time.perf_counter``), so every record's
    ``inclusive_s`` is at most ``wall_s``.
    """
    from numba.core import event

    with event.install_listener("numba:compile", _perf_recorder()) as rec:
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        wall = time.perf_counter() - t0
    return result, wall, compile_records(rec.buffer)


def _first_epoch(net, batch, n):
    """Profile of the first one-epoch ``train`` call of ``net`` (this process)."""
    from ...models import SGD, train
    from .common import make_data, net_config
    from .ours import _mlp

    X, y = make_data(net, n)
    model = _mlp(net, "cpu", 0)
    _, wall, records = profile_call(train, model, X, y, SGD(net_config(net)["lr"]),
                                    batch_size=batch, epochs=1, seed=0)
    return {"net": net, "batch": batch, "n": n, "dtype": "float32",
            "first_epoch_s": wall, "records": records}


def _table(prof, top):
    recs = prof["records"]
    lines = [f"{prof['net']}, batch {prof['batch']}, float32: first epoch "
             f"{prof['first_epoch_s']:.2f} s, {len(recs)} compiles, "
             f"{sum(r['exclusive_s'] for r in recs):.2f} s compiling",
             f"{'exclusive s':>12} {'inclusive s':>12} {'depth':>5}  function"]
    for r in sorted(recs, key=lambda r: -r["exclusive_s"])[:top]:
        lines.append(f"{r['exclusive_s']:12.2f} {r['inclusive_s']:12.2f} {r['depth']:5d}  "
                     f"{r['name']}")
    return "\n".join(lines)


#: The first call of the start-up table in earlier runs, for the section's "before": (what,
#: first epoch in s, peak RSS of the one-epoch process in MiB or None).
EARLIER = (("when issue #17 was filed (its text; same machine type)", 20.0, None),
           ("the committed report of commit fad64e5", 17.07, 301.0),
           ("the committed report of commit 934cb62", 13.43, 284.0),
           ("the committed report of commit 2126586", 17.46, 285.0),
           ("the committed report of commit bffb934", 14.69, 290.0),
           ("the committed report of commit 4063168", 13.54, 285.0),
           ("the committed report of commit ae70cc8 (the last before this one, the same code on "
            "this path)", 11.81, 284.0))

#: Functions shown in the report's table.
REPORT_TOP = 10


def section(prof, top=REPORT_TOP):
    """The speed report's Markdown for a profile of :func:`main` (``None``: not measured)."""
    if not prof or not prof.get("records"):
        return ("Where the first call's compile time goes: not measured in this run "
                "(`dlbasics.studies.speed.compile_profile` failed or was skipped).")
    recs = prof["records"]
    total = sum(r["exclusive_s"] for r in recs)
    shown = sorted(recs, key=lambda r: -r["exclusive_s"])[:top]
    rows = [f"| {r['name'].removeprefix('dlbasics.kernels.')} | {r['exclusive_s']:.2f} | "
            f"{r['inclusive_s']:.2f} | {r['depth']} |" for r in shown]
    rest = total - sum(r["exclusive_s"] for r in shown)
    before = "; ".join(f"{what}: {t:.2f} s" + (f", {rss:.0f} MiB" if rss else "")
                       for what, t, rss in EARLIER)
    return (
        "Where the first call's compile time goes "
        "(`python -m dlbasics.studies.speed.compile_profile`, a process of its own with an "
        f"empty Numba cache, after the runs above): the first `train` epoch of {prof['net']} "
        f"at batch {prof['batch']} ({prof['n']:,} rows, {prof['dtype']}) took "
        f"{prof['first_epoch_s']:.2f} s, {total:.2f} s of it compiling {len(recs)} "
        f"specialisations (not the start-up table's process: first calls of the same code "
        "differed by up to 17% between processes on this 2-core machine, 15.5 to 18.2 s "
        "in five alternating runs of one commit, and by 25% between the start-up tables of "
        "two reports of the same code on this path, bffb934 and the next: 14.69 and "
        "18.39 s). "
        f"The {top} with the most exclusive time (inclusive: with what was "
        "compiled while typing it; functions inlined by Numba are part of their callers' "
        "time):\n\n| function | exclusive s | inclusive s | depth |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n| all others ({len(recs) - len(rows)}) | {rest:.2f} | | |\n\n"
        "Before (the first epoch of the start-up table's empty-cache row, in other runs): "
        f"{before}. Cut between fad64e5 and 934cb62: `act_scalar`, which Numba inlined with "
        "all eleven activations into each loop of `act_flat` (its loops for one activation "
        "then inlined a five-branch form, and so did the derivative's), and the derivative's "
        "loops into a separate output, which the step does not use; before that, functions "
        "compiled twice (for int64 and uint64 indices) and code the first call did not need. "
        "Since 934cb62: `forward` compiled once for training, evaluation and prediction "
        "instead of once per set of constants that call sites passed (Numba compiles a "
        "function called with a constant for its literal type), and `backward` once instead "
        "of twice (one caller passed a float64 zero rate, the others the parameters' dtype): "
        "the first epoch of a population with a validation set 1.5-1.7 s shorter, of a "
        "single network with one 0.3-1.7 s (two alternating runs each against 934cb62's "
        "code), nothing on the "
        "path measured here, which calls neither (its code is that of 934cb62: a difference "
        "from 934cb62's figure is the machine's). Since 4063168: each loop of `act_flat` and "
        "of the derivative's `dact_mul_inplace` inlines one small formula (`_relu`, `_drelu`, "
        "...) instead of the five-branch form with a constant code, whose copies Numba made "
        "at each of the ten loops (IR inlining 3.6 against 0.9 s; the first epoch 11.4-11.6 "
        "against 13.1-13.4 s, alternating runs). What remains is mostly Numba's own typing "
        "and lowering, above all for the column-split epoch (`colsplit.cols_worker` and the "
        "phases it calls; Numba optimises each callee's code again in every caller it is "
        "linked into): without any LLVM optimisation (`NUMBA_OPT=0`, in a separate run of the "
        "start-up table's process) the first epoch still took 9.55 s against 13.80 s, so no "
        "tuning of LLVM reaches 5 s; the lever left is compiling ahead of time. Tried since "
        "bffb934 and not kept (first epochs of this profile, fresh caches, two runs each "
        "alternating with the code as it is; time differences within the spread above, and "
        "the two trials' baselines, one code, 25% apart): the four phase functions inlined "
        "into the worker by Numba, 17.1 and 18.3 s against 15.8 and 16.8 s, dropped for "
        "its peak RSS, 399 against 285 MiB; the one-row path left out of the worker (what "
        "a worker compiled for batches alone would save), 17.6 and 20.5 s against 20.4 and "
        "20.8 s, at most 3 s of the 13 that then separated this path from the goal, for a "
        "second "
        "worker that batch 1 would compile. The empty-cache run's extra memory stays after "
        "compiling (288 MiB resident after the first epoch, 190 MiB with the cache warm; "
        "Python objects about 11 MiB of the difference by `tracemalloc`): the rest is "
        "outside Python's allocator, presumably Numba's LLVM modules and JIT code (not "
        "measured).")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="784-256-256-10")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n", type=int, default=2048, help="rows of the benchmark data")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json", default=None, help="write the records here")
    ap.add_argument("--here", action="store_true",
                    help="profile in this process with its cache (normally a subprocess with "
                         "an empty one)")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.n < args.batch:
        raise SystemExit("compile_profile: need 1 <= batch <= n")
    if args.here:
        prof = _first_epoch(args.net, args.batch, args.n)
    else:
        with tempfile.TemporaryDirectory(prefix="dlbasics-compile-") as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            out = os.path.join(cache, "profile.json")
            cmd = [sys.executable, "-m", "dlbasics.studies.speed.compile_profile", "--here",
                   "--net", args.net, "--batch", str(args.batch), "--n", str(args.n),
                   "--top", "0", "--json", out]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                return done.returncode
            with open(out) as f:
                prof = json.load(f)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(prof, f, indent=1)
    if args.top > 0:
        print(_table(prof, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
