"""The ``dlbasics`` command (also ``python -m dlbasics.studies``).

::

    dlbasics list [--profile quick|full]
    dlbasics run STUDY...|all [--profile quick|full] [--jobs N] [--scheduler ADDR|local]
                  [--backend cpu|cuda|numpy] [--seeds N] [--fresh] [--store PATH] [--out DIR]
                  [--no-report] [--quiet]
    dlbasics report [STUDY...|all] [--profile] [--backend] [--seeds N] [--store] [--out]
                    [--jobs N]
    dlbasics export [STUDY...|all] [--store PATH] [--csv PATH|-] [--no-history]
    dlbasics bench [ARGS...]          (the speed benchmark, dlbasics.studies.speed)

``--jobs 0`` runs in this process; the default is a process pool with one worker per core,
whose workers then write the reports, one study a worker (``dlbasics report`` starts such a pool
for two or more studies; after ``--scheduler`` runs the reports are written in this process).
Each report's analysis runs on one Numba and one BLAS thread wherever it runs: the same numbers
and figures either way.
Reports go to ``reports/<study>/`` (profile full) or ``reports/quick/<study>/`` (profile quick,
git-ignored); ``--out DIR`` overrides either. Errors are one line on stderr: a bad command line
or a file that is not a store exits with status 2; a fault of the machine (full disk, unwritable
path, locked store, a report that could not be written, a worker process that died) with status
1, naming the path, what went wrong and what to do (``--debug``, anywhere on the line, shows
the traceback instead).
This module imports nothing heavy at import time (process-pool workers re-import it).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

DEFAULT_STORE = os.path.join("results", "dlbasics.sqlite")
PROG = "dlbasics"


class UsageError(Exception):
    """A bad command line: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _profile_out(profile, out):
    if out:
        return out
    return os.path.join("reports", "quick") if profile == "quick" else "reports"


def _at_least(low):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {v}")
        return v

    return parse


def _add_common(p, backend=True, seeds=True, profile=True):
    if profile:
        p.add_argument("--profile", choices=("quick", "full"), default="quick",
                       help="quick: seconds, for tests (default); full: the committed reports")
    if backend:
        p.add_argument("--backend", choices=("cpu", "cuda", "numpy"), default="cpu")
    if seeds:
        p.add_argument("--seeds", type=_at_least(1), default=None, metavar="N",
                       help="use N seeds instead of the study's")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"results store (default "
                   f"{DEFAULT_STORE})")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or messages")


def build_parser():
    parser = _Parser(prog=PROG, description="Studies of the basics of deep learning: run grids "
                     "of small networks over seeds, store every run, write reports.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also accepted after COMMAND)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("list", help="list the studies")
    p.add_argument("--profile", choices=("quick", "full"), default="quick")

    p = sub.add_parser("run", help="run studies (what is missing), then write their reports")
    p.add_argument("studies", nargs="+", metavar="STUDY", help="study names, or 'all'")
    _add_common(p)
    p.add_argument("--jobs", "-j", type=_at_least(0), default=None, metavar="N",
                   help="worker processes (default: one per core; 0: in this process)")
    p.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="run on a Dask cluster at tcp://HOST:PORT, or 'local' for a "
                        "LocalCluster on 127.0.0.1")
    p.add_argument("--fresh", action="store_true", help="redo runs already in the store")
    p.add_argument("--out", default=None, metavar="DIR", help="reports directory")
    p.add_argument("--no-report", action="store_true", help="do not write reports")

    p = sub.add_parser("report", help="write reports from the store (runs nothing)")
    p.add_argument("studies", nargs="*", metavar="STUDY", help="study names or 'all' (default)")
    _add_common(p)
    p.add_argument("--out", default=None, metavar="DIR", help="reports directory")
    p.add_argument("--jobs", "-j", type=_at_least(0), default=None, metavar="N",
                   help="worker processes writing the reports of two or more studies "
                        "(default: one per core, at most one per study; 0 or 1: in this "
                        "process)")

    p = sub.add_parser("export", help="export stored runs to CSV")
    p.add_argument("studies", nargs="*", metavar="STUDY", help="study names or 'all' (default)")
    _add_common(p, backend=False, seeds=False, profile=False)
    p.add_argument("--csv", default=os.path.join("results", "dlbasics.csv"), metavar="PATH",
                   help="output file, '-' for stdout (default results/dlbasics.csv)")
    p.add_argument("--no-history", action="store_true", help="leave out the history column")

    sub.add_parser("bench", help="the speed benchmark (dlbasics.studies.speed)", add_help=False)
    return parser


def _command_line(args, name):
    """The command that regenerates a study's report (options that change results only)."""
    parts = [PROG, "run", name, "--profile", args.profile]
    if args.backend != "cpu":
        parts += ["--backend", args.backend]
    if args.seeds is not None:
        parts += ["--seeds", str(args.seeds)]
    if args.store != DEFAULT_STORE:
        parts += ["--store", args.store]
    if args.out:
        parts += ["--out", args.out]
    return shlex.join(parts)


def _say(args, msg):
    if not args.quiet:
        print(msg, file=sys.stderr)


def _load_studies(args):
    from . import registry

    try:
        names = registry.resolve(args.studies)
    except registry.UnknownStudy as exc:
        raise UsageError(str(exc)) from None
    studies = []
    for n in names:
        try:
            study = registry.get(n, args.profile).with_seeds(args.seeds)
            if args.command == "run":
                study.validate()
        except (ValueError, TypeError, ImportError) as exc:
            raise UsageError(f"study {n!r}: {exc}") from None
        studies.append(study)
    return studies


def _check_backend(backend):
    if backend != "cuda":
        return
    try:
        from numba import cuda

        ok = cuda.is_available()
    except Exception:  # numba-cuda missing, or a broken driver/toolkit: either way no GPU
        ok = False
    if not ok:
        raise UsageError("--backend cuda: no CUDA GPU is available here "
                         "(pip install dlbasics[cuda] on a machine with one)")


def _report_command(args, names):
    """The ``dlbasics report`` command that writes these studies' reports again."""
    parts = [PROG, "report", *names, "--profile", args.profile]
    if args.backend != "cpu":
        parts += ["--backend", args.backend]
    if args.seeds is not None:
        parts += ["--seeds", str(args.seeds)]
    if args.store != DEFAULT_STORE:
        parts += ["--store", args.store]
    if args.out:
        parts += ["--out", args.out]
    return shlex.join(parts)


def _unwritten(args, what, where, exc, names):
    """One line: a report could not be written (a fault of the machine, the runs are safe)."""
    if getattr(args, "debug", False):
        raise exc
    print(f"{PROG}: error: could not write {what} to {where} ({_fault_text(exc)}); the runs "
          f"are safe in {args.store}: fix that and run `{_report_command(args, names)}`",
          file=sys.stderr)


def _write_reports(args, studies, store, pool=None):
    """Write the studies' reports from the open ``store``
    (:func:`~dlbasics.studies.report.report_from_store`); say each in the studies' order.

    With a ``pool`` (a :class:`~dlbasics.studies.runner.LocalPool`), its workers write the
    reports of the studies that a new process registers too
    (:func:`~dlbasics.studies.registry.discoverable`), reading the store from its file; a
    report that a worker could not write for any reason but an unwritable ``--out`` (a worker
    that died, a study or store it could not open) is written here, with a line saying so
    (``--debug``: its error raised instead), as are all reports of an in-memory store; the
    workers' reports are all submitted first, so that they run while this process writes its
    own. Returns whether every report and the index were written and every analysis ran.
    """
    from . import registry
    from .report import NoReport, report_from_store, write_index

    out = _profile_out(args.profile, args.out)
    tasks = [(s.name, args.profile, args.seeds, args.backend, store, out,
              _command_line(args, s.name)) for s in studies]
    pooled, outcomes = set(), iter(())
    if pool is not None and store.path != ":memory:":
        pooled = {i for i, s in enumerate(studies) if registry.discoverable(s.name)}
        outcomes = pool.map_ordered(report_from_store, [(*tasks[i][:4], store.path,
                                                         *tasks[i][5:]) for i in sorted(pooled)])
    ok = True
    unwritten = False  # a report could not be written (a fault of the machine, said once)
    for i, study in enumerate(studies):
        outcome = next(outcomes) if i in pooled else None  # in the studies' order
        worker_failed = (i in pooled and isinstance(outcome, BaseException)
                         and not _unwritable(outcome))
        if worker_failed:
            if getattr(args, "debug", False):
                raise outcome
            _say(args, f"{study.name}: a worker process could not write its report "
                       f"({type(outcome).__name__}: {outcome}); writing it in this process")
        if i not in pooled or worker_failed:
            outcome = _outcome(report_from_store, tasks[i])
        if isinstance(outcome, OSError):  # full disk, unwritable --out: the store is untouched
            _unwritten(args, f"the report of {study.name}", os.path.join(out, study.name),
                       outcome, [study.name])
            ok, unwritten = False, True
            continue
        if isinstance(outcome, NoReport):
            text = f"{study.name}: {outcome}"
            stale = os.path.join(out, study.name, "README.md")
            if os.path.exists(stale):  # left as it was: say so
                text += f" (the report in {stale} is from before)"
            if outcome.failed:  # runs failed: the command fails too
                ok = False
                print(f"{PROG}: {text}", file=sys.stderr)
            else:
                _say(args, text)
            continue
        d, failed = outcome
        if failed:
            ok = False
            print(f"{PROG}: {study.name}: the analysis failed (see {d / 'ANALYSIS_FAILED'})",
                  file=sys.stderr)
        _say(args, f"{study.name}: report {d / 'README.md'}")
    try:
        write_index(out)
    except OSError as exc:
        if not unwritten:  # said once: the reports' own lines name the fault
            _unwritten(args, "the index of the reports", os.path.join(out, "README.md"), exc,
                       [s.name for s in studies])
        ok = False
    return ok


def _unwritable(exc):
    """Whether ``exc`` says that a report could not be written: an ``OSError`` that is not the
    store's (:class:`~dlbasics.studies.store.StoreUnavailable`)."""
    from .store import StoreUnavailable

    return isinstance(exc, OSError) and not isinstance(exc, StoreUnavailable)


def _outcome(fn, args):
    """``fn(*args)``, or the ``OSError`` that says it could not write (:func:`_unwritable`);
    any other error propagates (a store that cannot be read: one line from :func:`main`)."""
    try:
        return fn(*args)
    except OSError as exc:
        if not _unwritable(exc):
            raise
        return exc


def cmd_list(args):
    from . import registry

    for n in registry.names():
        s = registry.get(n, args.profile)
        if s.tuning is None:
            grid = f"{len(s.settings):4d} settings x {len(s.seeds):2d} seeds"
        else:
            grid = (f"{len(s.settings):4d} tuning settings x {len(s.tuning.tune_seeds)} seeds, "
                    f"{len(s.tuning.conditions)} selected x {len(s.seeds):2d} seeds")
        print(f"{n:20s} {grid}  {s.title}")
    return 0


def cmd_run(args):
    from concurrent.futures import BrokenExecutor

    studies = _load_studies(args)
    _check_backend(args.backend)
    if args.scheduler and args.scheduler != "local" and "://" not in args.scheduler:
        raise UsageError(f"--scheduler must be tcp://HOST:PORT or 'local', got "
                         f"{args.scheduler!r}")
    if args.backend == "cuda" and args.jobs is None and not args.scheduler:
        args.jobs = 0  # one GPU: runs one after another in this process by default
    from .runner import LocalPool, make_executor, run_study
    from .store import Store

    store = Store(args.store)
    try:
        executor = make_executor(args.jobs, args.scheduler)
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    failed = 0
    reported = True
    broken = False
    try:
        _say(args, f"running on {executor.name}; store {args.store}")
        for study in studies:
            try:
                c = run_study(study, store, executor, backend=args.backend, fresh=args.fresh,
                              progress=not args.quiet)
            except BrokenExecutor as exc:  # a new pool's workers died before any task ran
                if args.debug:
                    raise
                print(f"{PROG}: error: a worker process died while running {study.name}, "
                      f"and a new pool's workers died before starting a task ({exc}; out of "
                      f"memory? fewer --jobs use less); the runs that finished are stored in "
                      f"{args.store}, none that did not: run the same command again to do "
                      "the rest", file=sys.stderr)
                broken = True
                break
            failed += c["failed"]
            extra = f", {c['tuning']} tuning runs" if c["tuning"] else ""
            if c["retried"]:
                extra += f" ({c['retried']} of them had failed before: run again)"
            extra += f", {c['timing']} timing runs" if c["timing"] else ""
            _say(args, f"{study.name}: {c['total']} runs, {c['skipped']} already stored, "
                       f"{c['ok']} ok, {c['diverged']} diverged, {c['failed']} failed{extra} "
                       f"({c['seconds']:.1f} s)")
        # the reports in the pool's workers, which have the kernels loaded; after Dask or
        # in-process runs, here, the cluster closed first
        pool = executor if isinstance(executor, LocalPool) and not broken else None
        if pool is None:
            executor.close()
            executor = None
        if not args.no_report:
            reported = _write_reports(args, studies, store, pool)
    finally:
        if executor is not None:
            executor.close()
        store.close()
    return 1 if failed or broken or not reported else 0


def cmd_report(args):
    studies = _load_studies(args)
    from .store import Store

    if not os.path.exists(args.store):
        raise UsageError(f"no results store at {args.store} (run a study first)")
    store = Store(args.store)
    pool = None
    from .runner import LocalPool, usable_cores

    jobs = args.jobs if args.jobs is not None else usable_cores()
    try:
        if jobs > 1 and len(studies) > 1:
            pool = LocalPool(min(jobs, len(studies)))
        ok = _write_reports(args, studies, store, pool)
    finally:
        if pool is not None:
            pool.close()
        store.close()
    return 0 if ok else 1


def cmd_export(args):
    from . import registry
    from .store import Store

    if not os.path.exists(args.store):
        raise UsageError(f"no results store at {args.store} (run a study first)")
    store = Store(args.store)
    if args.studies and args.studies != ["all"]:
        known = set(registry.names()) | set(store.studies())
        for n in args.studies:
            if n not in known:
                raise UsageError(f"unknown study {n!r}; known: {', '.join(sorted(known))}")
        names = args.studies
    else:
        names = None
    out = sys.stdout if args.csv == "-" else args.csv
    n = store.export_csv(out, names, history=not args.no_history)
    store.close()
    if args.csv != "-":
        _say(args, f"{n} runs written to {args.csv}")
    return 0


def cmd_bench(argv):
    import importlib

    try:
        speed = importlib.import_module("dlbasics.studies.speed.bench")
    except ModuleNotFoundError as exc:
        if exc.name not in ("dlbasics.studies.speed", "dlbasics.studies.speed.bench"):
            raise
        raise UsageError("bench: the speed benchmark (dlbasics.studies.speed) is not "
                         "available") from None
    return speed.main(argv) or 0


def _fault_text(exc):
    """What went wrong, in words, for an ``OSError`` (the path is said by the caller)."""
    import errno

    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what += ": the disk or quota is full, or a file-size limit was reached"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what += ": the directory is not writable by this user"
    if exc.filename and str(exc.filename) not in what:
        what = f"{exc.filename}: {what}"
    return what


def _fault_line(exc):
    """One line for a fault of the machine: the path, what went wrong, what to do."""
    from .store import StoreUnavailable

    if isinstance(exc, StoreUnavailable):
        return str(exc)
    return f"{_fault_text(exc)}; free space or choose a writable path, then run again"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv and (not argv or argv[0] != "bench")
    if debug:
        argv = [a for a in argv if a != "--debug"]
    try:
        if argv and argv[0] == "bench":
            return cmd_bench(argv[1:])
        args = build_parser().parse_args(argv)
        args.debug = debug
        if args.command is None:
            build_parser().print_help()
            return 2
        return {"list": cmd_list, "run": cmd_run, "report": cmd_report,
                "export": cmd_export}[args.command](args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        from .store import StoreError

        if not isinstance(exc, StoreError):
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `dlbasics export --csv - | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # a fault of the machine: full disk, unwritable path, locked store
        if debug:
            raise
        print(f"{PROG}: error: {_fault_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (finished runs are stored; run again to resume)",
              file=sys.stderr)
        return 130
