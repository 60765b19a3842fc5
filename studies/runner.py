"""Execute a study's runs and write each one to the store as it finishes.

A run is: build the data (:func:`dlbasics.studies.datasets.load`, with the run's seed unless
the setting fixes ``data_seed``), build the MLP, train it (:func:`dlbasics.models.train`) keeping
a copy of the parameters of its best-validation epoch, evaluate the final network *and* that
early-stopped one on the test split, record. Exceptions become ``status="failed"`` with the error
text, a non-finite loss ``status="diverged"``; nothing stops the sweep.

Runs are packed into *tasks* (plain dicts, picklable) before they are handed to an executor:

* runs of small networks (every layer below :data:`POPULATION_MAX_WORK` multiply-adds per
  row) on the CPU backend without a schedule, sharing problem, architecture, batch size,
  epochs and metrics, form *population* tasks trained by
  :func:`dlbasics.models.population.train_population` (they may differ in optimizer and
  hyper-parameters, and in seed when the data is fixed); such runs always go through the
  population kernel, whatever the task
  size, so which tasks a run lands in never changes its result. A network in a population has
  the history it has when trained alone up to float rounding (bitwise for batches under 8
  rows on the per-network kernel; see :mod:`dlbasics.models.population`);
* every other run is a task of its own (:func:`dlbasics.models.train`).

Executors (all yield ``(task, rows or exception)`` in completion order; the caller writes):

* :class:`InProcess` - one after another in this process, each on one Numba and one BLAS thread;
* :class:`LocalPool` - a ``spawn`` process pool of ``jobs`` workers, each limited to one Numba
  and one BLAS thread (set before it imports Numba) so workers do not oversubscribe the cores;
  a worker that dies is replaced, and the task that killed it found and yielded as failed
  (:class:`WorkerDied`);
* :class:`DaskExecutor` - a Dask cluster (``tcp://host:port``, or ``"local"`` for a
  ``LocalCluster`` on 127.0.0.1); the client writes results as futures complete, so a killed
  worker only makes Dask run its task again.

The same seeds give the same histories on every executor (the wall-clock ``time`` entries
aside).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import sys
import time
import traceback

import numpy as np

from . import datasets
from .spec import SCHEDULES, canonical_json

#: Runs of networks whose every layer has fewer multiply-adds per row than this train in
#: population tasks (where the per-network loops of small layers are as fast as BLAS).
POPULATION_MAX_WORK = 4096

#: Most networks in one population task.
MAX_POPULATION = 64
#: Environment variables that limit a worker to ``threads`` compute threads.
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS")


def _now():
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _load():
    """The machine's 1-minute load average (``nan`` where the OS has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return math.nan


# ----------------------------------------------------------------------------------------------
# one run
# ----------------------------------------------------------------------------------------------


def resolve_model(model, n_features, n_outputs, task):
    """MLP keyword arguments from a setting's ``model`` dict and the problem's dimensions."""
    kw = dict(model)
    hidden = kw.pop("hidden", None)
    if "sizes" not in kw:
        kw["sizes"] = [n_features, *hidden, n_outputs]
    if task == "binary":
        kw.setdefault("output", "sigmoid")
        kw.setdefault("loss", "binary_cross_entropy" if kw["output"] == "sigmoid" else "squared")
    elif task == "multiclass":
        kw.setdefault("output", "softmax")
        kw.setdefault("loss", "cross_entropy" if kw["output"] == "softmax" else "squared")
    else:
        kw.setdefault("output", "identity")
        kw.setdefault("loss", "squared")
    if "dtype" in kw:
        kw["dtype"] = np.dtype(kw["dtype"])
    return kw


def _targets(y, ds, kw):
    """Targets in the form the model's loss takes (labels, 0/1 floats or one-hot)."""
    if ds.task == "regression":
        return y
    k = kw["sizes"][-1]
    if kw["loss"] == "cross_entropy":
        return y.astype(np.int64)
    if ds.task == "multiclass" or k > 1:
        return np.eye(k, dtype=np.float32)[y.astype(np.int64)]
    return y


def _accuracy(out, y, task):
    """Fraction of correct predictions from network outputs (0/1 targets: threshold 0.5)."""
    if task == "regression" or not np.isfinite(out).all():
        return math.nan
    pred = (out[:, 0] > 0.5).astype(np.int64) if out.shape[1] == 1 else out.argmax(axis=1)
    return float(np.mean(pred == y.astype(np.int64)))


def _last(values):
    return float(values[-1]) if values else math.nan


class BestEpoch:
    """Training callback keeping the parameters of the epoch with the lowest validation loss.

    A copy of the parameters is taken at every strict improvement over every earlier epoch
    (epoch 0, evaluated before training, included), so ``epoch`` is the first epoch reaching the
    minimum, as the summary's ``best_val_epoch``; ``params`` stays ``None`` while epoch 0 is the
    best (the initial parameters are rebuilt from the seed).
    """

    def __init__(self):
        self.params = None
        self.epoch = 0
        self.best = None

    def __call__(self, epoch, history, model):
        if self.best is None:  # the epoch-0 evaluation, made before training
            v0 = history.val_loss[0] if history.val_loss else math.nan
            self.best = v0 if math.isfinite(v0) else math.inf
        v = history.val_loss[-1] if history.val_loss else math.nan
        if math.isfinite(v) and v < self.best:
            self.best, self.epoch = v, epoch
            self.params = np.array(model.params, copy=True)
        return False


def _test_metrics(model, data):
    """``(loss, accuracy)`` of ``model`` on the test split (accuracy NaN for regression)."""
    ds = data["ds"]
    Xte = model.check_X(ds.X_test, "X_test")
    loss = float(model.evaluate(Xte, *model.check_y(data["y_test"], Xte.shape[0], "y_test"))[0])
    acc = _accuracy(model.forward(ds.X_test), ds.y_test, ds.task) \
        if ds.task != "regression" else math.nan
    return loss, acc


def _summary(hist, model, data, best=None, initial=None):
    """Final and best metrics of a run; test metrics of its final network and, with ``best``
    (a :class:`BestEpoch`) and ``initial()`` (the initial parameters), of the network of its
    best-validation epoch (``es_*``: the early-stopped network)."""
    h = hist.to_dict()
    ds, kw = data["ds"], data["kw"]
    s = {
        "epochs": len(h["train_loss"]),
        "updates": h["updates"][-1] if h["updates"] else 0,
        "grad_evals": h["grad_evals"][-1] if h["grad_evals"] else 0,
        "train_seconds": h["time"][-1] if h["time"] else 0.0,
    }
    for k in ("train_loss", "full_loss", "full_accuracy", "val_loss", "val_accuracy"):
        s["final_" + k] = _last(h[k])
    vl = np.asarray(h["val_loss"], dtype=np.float64)
    if vl.size and np.isfinite(vl).any():
        e = int(np.nanargmin(np.where(np.isfinite(vl), vl, np.nan)))
        s["best_val_loss"], s["best_val_epoch"] = float(vl[e]), e
    else:
        s["best_val_loss"], s["best_val_epoch"] = math.nan, None
    va = np.asarray(h["val_accuracy"], dtype=np.float64)
    e = s["best_val_epoch"]
    s["es_val_accuracy"] = float(va[e]) if e is not None and e < va.size else math.nan
    s["es_epoch"] = e
    s["es_test_loss"] = s["es_test_accuracy"] = math.nan
    if best is not None and e is not None and best.epoch == e:
        final = np.array(model.params, copy=True)
        model.set_params_vector(best.params if e > 0 else initial())
        s["es_test_loss"], s["es_test_accuracy"] = _test_metrics(model, data)
        model.set_params_vector(final)
    if hist.diverged:
        for k in ("train_loss", "full_loss", "full_accuracy", "val_loss", "val_accuracy"):
            s["final_" + k] = math.nan
        s["test_loss"] = s["test_accuracy"] = math.nan
        return s
    s["test_loss"], s["test_accuracy"] = _test_metrics(model, data)
    classify = ds.task != "regression"
    if classify and kw["loss"] == "squared":
        # The history has no accuracy for squared-loss classifiers: compute the final ones.
        s["final_val_accuracy"] = _accuracy(model.forward(ds.X_val), ds.y_val, ds.task)
        s["final_full_accuracy"] = _accuracy(model.forward(ds.X_train), ds.y_train, ds.task)
    return s


def data_seed(config, seed):
    """The seed of a run's data: its own ``seed`` unless the configuration fixes one."""
    return int(seed) if config.get("data_seed") is None else int(config["data_seed"])


def _data(config, seed):
    ds = datasets.load(config["problem"], data_seed(config, seed), **config["problem_args"])
    kw = resolve_model(config["model"], ds.n_features, ds.n_outputs, ds.task)
    return {
        "ds": ds, "kw": kw,
        "y_train": _targets(ds.y_train, ds, kw),
        "y_val": _targets(ds.y_val, ds, kw),
        "y_test": _targets(ds.y_test, ds, kw),
    }


def _schedule(config):
    sch = config.get("schedule")
    if sch is None:
        return None
    from ..models import schedules

    args = {k: v for k, v in sch.items() if k != "name"}
    args.setdefault("lr", config["hyper"].get("lr", 0.01))
    return getattr(schedules, SCHEDULES[sch["name"]])(**args)


def _row(payload, status, error=None, history=None, summary=None, path=None, started=None,
         wall=None):
    from .provenance import machine, versions

    train_s = None
    if history is not None and history.get("time"):
        train_s = float(history["time"][-1])
    return {
        "study": payload["study"],
        "config_hash": payload["config_hash"],
        "seed": payload["seed"],
        "label": payload["label"],
        "profile": payload.get("profile", ""),
        "status": status,
        "error": error,
        "config": payload["config"],
        "factors": payload.get("factors", {}),
        "history": history,
        "summary": summary,
        "backend": payload["config"]["backend"],
        "path": path,
        "started_at": started or _now(),
        "finished_at": _now(),
        "wall_s": wall,
        "train_s": train_s,
        "versions": versions(),
        "machine": machine(),
    }


def _failed(payload, exc, started=None, wall=None):
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return _row(payload, "failed", error=text, started=started, wall=wall)


#: Keys of the (kind, configuration) pairs this process has already compiled and run.
_WARM = set()


def _warm_up(kind, cfg, fn):
    """Call ``fn()`` (one short epoch) the first time this process meets ``(kind, cfg)``.

    Numba compiles (or loads from its cache) a kernel at its first call; without a warm-up that
    time would be counted in the first run's timings.
    """
    key = (kind, canonical_json({k: cfg[k] for k in ("problem", "problem_args", "data_seed",
                                                      "model", "metrics", "backend")}))
    if key not in _WARM:
        fn()
        _WARM.add(key)


def run_single(payload):
    """Execute one run alone; return its row (never raises)."""
    started, t0 = _now(), time.perf_counter()
    try:
        from ..models import MLP, train
        from ..models.optimizers import make_optimizer

        cfg = payload["config"]
        data = _data(cfg, payload["seed"])
        ds = data["ds"]
        opt = make_optimizer(cfg["optimizer"], **cfg["hyper"])

        def fit(model, epochs, callbacks=()):
            return train(model, ds.X_train, data["y_train"], opt, batch_size=cfg["batch_size"],
                         epochs=epochs, shuffle=True, seed=payload["seed"], X_val=ds.X_val,
                         y_val=data["y_val"], metrics=cfg["metrics"], schedule=_schedule(cfg),
                         callbacks=callbacks)

        def new_model():
            return MLP(**data["kw"], seed=payload["seed"], backend=cfg["backend"])

        _warm_up("single", cfg, lambda: fit(new_model(), 1))
        load_before = _load()
        t0 = time.perf_counter()
        model = new_model()
        best = BestEpoch()
        hist = fit(model, cfg["epochs"], [best])
        summary = _summary(hist, model, data, best, lambda: new_model().params)
        if payload.get("timing"):
            summary["load_before"], summary["load_after"] = load_before, _load()
        status = "diverged" if hist.diverged else "ok"
        return _row(payload, status, history=hist.to_dict(), summary=summary, path=hist.path,
                    started=started, wall=time.perf_counter() - t0)
    except Exception as exc:
        return _failed(payload, exc, started, time.perf_counter() - t0)


def run_population(payloads):
    """Execute runs sharing an architecture as populations, one per data draw; return their
    rows in the order of ``payloads``.

    Raises on a problem common to a group (the caller then runs each alone).
    """
    groups = {}
    for i, p in enumerate(payloads):
        groups.setdefault(data_seed(p["config"], p["seed"]), []).append(i)
    rows = [None] * len(payloads)
    for idx in groups.values():
        for i, row in zip(idx, _run_population([payloads[i] for i in idx]), strict=True):
            rows[i] = row
    return rows


def _run_population(payloads):
    """:func:`run_population` of runs that share one data draw."""
    from ..models import MLP
    from ..models.optimizers import make_optimizer
    from ..models.population import train_population

    started = _now()
    cfg = payloads[0]["config"]
    data = _data(cfg, payloads[0]["seed"])  # one data draw: population_key groups by it
    ds = data["ds"]
    seeds = [p["seed"] for p in payloads]
    template = MLP(**data["kw"], seed=seeds[0], backend="cpu")
    opts = [make_optimizer(p["config"]["optimizer"], **p["config"]["hyper"]) for p in payloads]
    bests = {}  # id(history) -> BestEpoch

    def snapshot(epoch, history, model):
        return bests.setdefault(id(history), BestEpoch())(epoch, history, model)

    def fit(k, epochs, callbacks=()):
        return train_population(template, ds.X_train, data["y_train"], opts[:k], seeds[:k],
                                batch_size=cfg["batch_size"], epochs=epochs, shuffle=True,
                                shuffle_seeds=seeds[:k], X_val=ds.X_val, y_val=data["y_val"],
                                metrics=cfg["metrics"], lanes=False, callbacks=callbacks)

    _warm_up("population", cfg, lambda: fit(1, 1))
    t0 = time.perf_counter()
    hists, P = fit(len(payloads), cfg["epochs"], [snapshot])
    train_wall = time.perf_counter() - t0
    rows = []
    for p, hist, params in zip(payloads, hists, P, strict=True):
        t1 = time.perf_counter()
        try:
            model = MLP(**data["kw"], seed=p["seed"], backend="cpu")
            init = np.array(model.params, copy=True)
            model.set_params_vector(params)
            summary = _summary(hist, model, data, bests.get(id(hist), BestEpoch()),
                               lambda init=init: init)
            status = "diverged" if hist.diverged else "ok"
            rows.append(_row(p, status, history=hist.to_dict(), summary=summary, path=hist.path,
                             started=started,
                             wall=train_wall / len(payloads) + time.perf_counter() - t1))
        except Exception as exc:
            rows.append(_failed(p, exc, started))
    return rows


def limit_threads(threads):
    """Limit this process to ``threads`` Numba/BLAS threads (env before Numba is imported)."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def execute_task(task):
    """Run a task (see :func:`make_tasks`) and return its rows; never raises for a run."""
    if task.get("threads"):
        limit_threads(task["threads"])
    payloads = task["runs"]
    if task.get("population"):
        try:
            return run_population(payloads)
        except Exception:
            pass  # a problem of the whole group: each run alone records its own error
    return [run_single(p) for p in payloads]


# ----------------------------------------------------------------------------------------------
# planning
# ----------------------------------------------------------------------------------------------


def population_key(run):
    """Group key of a run that may train in a population, or ``None``."""
    cfg = run.config
    if cfg["backend"] != "cpu" or cfg["schedule"] is not None:
        return None
    try:
        n_in, n_out, task = datasets.dims(cfg["problem"], **cfg["problem_args"])
    except (ValueError, TypeError):
        return None  # fails at run time, alone, with a clear error
    sizes = cfg["model"].get("sizes") or [n_in, *cfg["model"]["hidden"], n_out]
    if any(a * b >= POPULATION_MAX_WORK for a, b in zip(sizes[:-1], sizes[1:], strict=False)):
        return None
    shared = {k: v for k, v in cfg.items() if k not in ("optimizer", "hyper")}
    shared["data_seed"] = data_seed(cfg, run.seed)  # one population trains on one data draw
    return canonical_json(shared)


def make_tasks(runs, workers=1, profile="", threads=None, max_population=MAX_POPULATION):
    """Pack runs into tasks: population groups (chunked to spread over ``workers``) and singles.

    Returns a list of dicts ``{"runs": [payload...], "population": bool, "threads": int}``.
    """
    groups = {}
    singles = []
    for r in runs:
        key = population_key(r)
        if key is None:
            singles.append(r)
        else:
            groups.setdefault(key, []).append(r)
    n_pop = sum(len(g) for g in groups.values())
    # Enough tasks to keep every worker busy (about 4 per worker), none above max_population.
    chunk = max(1, min(max_population, math.ceil(n_pop / max(1, 4 * workers)))) if n_pop else 1
    tasks = []
    for g in groups.values():
        parts = math.ceil(len(g) / chunk)
        for i in range(parts):  # near-equal parts of at most `chunk` runs
            part = g[i * len(g) // parts : (i + 1) * len(g) // parts]
            tasks.append({"runs": [r.payload(profile) for r in part], "population": True,
                          "threads": threads})
    for r in singles:
        tasks.append({"runs": [r.payload(profile)], "population": False, "threads": threads})
    return tasks


# ----------------------------------------------------------------------------------------------
# executors
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def one_compute_thread():
    """Numba and BLAS on one thread inside the block (restored afterwards), as in a pool
    worker: the CPU backend then trains every batch whole (it splits a large batch into two
    row chunks only with two or more Numba threads), so a run gives the same bits in this
    process as in a worker, and does not fight other processes for the cores."""
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        numba.set_num_threads(before)


class InProcess:
    """Run tasks one after another in this process, each on one Numba and one BLAS thread
    (:func:`one_compute_thread`), as the pool workers run them."""

    workers = 1
    threads = None
    name = "in-process"

    def imap(self, fn, tasks):
        for t in tasks:
            try:
                with one_compute_thread():
                    result = fn(t)
            except Exception as exc:  # pragma: no cover - execute_task does not raise
                result = exc
            yield t, result

    def close(self):
        pass


def _init_worker(threads):
    limit_threads(threads)


@contextlib.contextmanager
def _child_env(threads):
    """Set the thread variables while pool processes are spawned (they copy the environment).

    A spawned worker imports NumPy, and so loads OpenBLAS, before its initializer runs: BLAS
    reads its thread count only then, so the variables must already be in the environment.
    """
    saved = {v: os.environ.get(v) for v in THREAD_VARS}
    os.environ.update({v: str(threads) for v in THREAD_VARS})
    try:
        yield
    finally:
        for v, old in saved.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old


def _broke(exc):
    """Whether ``exc`` says that a process pool broke (a worker died)."""
    from concurrent.futures import BrokenExecutor

    return isinstance(exc, BrokenExecutor)


class WorkerDied(RuntimeError):
    """The worker process running a task died (a crash, the OOM killer): the task's runs are
    stored as failed with this error."""


def _marked(fn, marks, i, task):
    """``fn(task)``, with the file ``marks/i`` written as it starts (and left there). After a
    worker died, the tasks started and not finished were running then, or died sending their
    result; a pool none of whose tasks started could not start its workers. (No file where it
    cannot be written: the task runs all the same.)"""
    if marks is not None:
        with contextlib.suppress(OSError), open(os.path.join(marks, str(i)), "w"):
            pass
    return fn(task)


class LocalPool:
    """A ``spawn`` process pool of ``jobs`` workers with one compute thread each.

    A worker that dies (a crash, the OOM killer) breaks a process pool; this one is replaced
    by a new one, and :meth:`imap` finds the task that killed its worker: it runs the tasks
    that were running then again, each alone in a pool of its own (a population task's runs
    halved while it still kills its worker alone), yields the one that kills it with a
    :class:`WorkerDied` error (its runs are stored as failed) and goes on with the others."""

    threads = 1

    def __init__(self, jobs):
        self.workers = int(jobs)
        self.name = f"process pool ({self.workers} workers)"
        self.pool = self._new_pool(self.workers)

    @staticmethod
    def log(msg):
        """Say what the pool does about a worker that died (one line on stderr)."""
        print(f"dlbasics: {msg}", file=sys.stderr, flush=True)

    def _new_pool(self, workers):
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                   initializer=_init_worker, initargs=(self.threads,))

    def imap(self, fn, tasks):
        """``fn(task)`` for each task in the workers; yields ``(task, result or the exception it
        raised)`` as tasks finish. A task that kills its worker (alone, again: see the class)
        yields a :class:`WorkerDied` error; one that did not when run alone its result.

        Raises
        ------
        concurrent.futures.BrokenExecutor
            A new pool broke before any of its tasks started (its workers cannot start).
        """
        import shutil
        import tempfile

        try:
            marks = tempfile.mkdtemp(prefix="dlbasics-running-")
        except OSError:  # then a dead worker's tasks cannot be told apart: none is run alone
            marks = None
        try:
            todo = list(tasks)
            fresh = False  # whether self.pool was made in this call
            while todo:
                finished, broken = [], None
                for i, out in self._round(fn, todo, marks):
                    if isinstance(out, BaseException) and _broke(out):
                        broken = out
                        continue
                    finished.append(i)
                    yield todo[i], out
                if broken is None:
                    return
                # the broken pool's workers are gone once it is shut down: the tasks that
                # started and did not finish were running when one died (or died sending
                # their results); without marks every unfinished task is a suspect
                self.pool.shutdown(wait=True, cancel_futures=True)
                if marks is None:
                    started = set(range(len(todo)))
                else:
                    started = {int(name) for name in os.listdir(marks)}
                    for name in os.listdir(marks):
                        os.remove(os.path.join(marks, name))
                suspects = sorted(started - set(finished))
                if not finished and not suspects and fresh:
                    raise broken  # no task started in a new pool: its workers cannot start
                self.pool, fresh = self._new_pool(self.workers), True
                if suspects:
                    self.log(f"a worker process died ({broken}; out of memory? fewer --jobs "
                             f"use less); running the {len(suspects)} task(s) that were "
                             "running then again, each alone, to find the one that kills its "
                             "worker")
                for i in suspects:
                    yield from self._alone(fn, todo[i])
                done = set(finished) | set(suspects)
                todo = [t for i, t in enumerate(todo) if i not in done]
        finally:
            if marks is not None:
                shutil.rmtree(marks, ignore_errors=True)

    def _round(self, fn, tasks, marks):
        """``(index, result or exception)`` of ``tasks`` in the pool as they finish (a broken
        pool's ``BrokenExecutor`` for those it did not finish)."""
        from concurrent.futures import as_completed

        futures, refused = {}, []
        with _child_env(self.threads):  # workers start at the first submissions
            for i, t in enumerate(tasks):
                try:
                    futures[self.pool.submit(_marked, fn, marks, i, t)] = i
                except Exception as exc:  # a pool broken before refuses new tasks
                    if not _broke(exc):
                        raise
                    refused.append((i, exc))
        yield from refused
        try:
            for f in as_completed(futures):
                try:
                    yield futures[f], f.result()
                except Exception as exc:
                    yield futures[f], exc
        finally:
            for f in futures:
                f.cancel()

    def _alone(self, fn, task):
        """Run ``task`` alone in a pool of one worker: yields ``(task, result)``, or, where it
        kills the worker, ``(task, WorkerDied)`` for a task of one run or a task that is not
        a population, else the same for each half of its runs."""
        pool = self._new_pool(1)
        try:
            with _child_env(self.threads):
                future = pool.submit(fn, task)
            try:
                yield task, future.result()
                return
            except Exception as exc:
                if not _broke(exc):
                    yield task, exc
                    return
                died = exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        runs = task.get("runs", []) if isinstance(task, dict) else []
        if isinstance(task, dict) and task.get("population") and len(runs) > 1:
            half = len(runs) // 2  # a population's runs do not depend on the task they are in
            for part in (runs[:half], runs[half:]):
                yield from self._alone(fn, {**task, "runs": part})
            return
        self.log(f"a task of {len(runs) or 1} run(s) killed its worker again when run alone: "
                 "stored as failed")
        yield task, WorkerDied(f"the worker process running this task died ({died}), again "
                               "when it ran alone: killed for its memory, or a crash")

    def map_ordered(self, fn, tasks):
        """Submit ``fn(*task)`` for every task to the workers now; return an iterator over the
        outcomes in the order of ``tasks``.

        Parameters
        ----------
        fn : callable
            A module-level function (it is pickled by name).
        tasks : sequence of tuple
            Its arguments, which must pickle.

        Returns
        -------
        iterator
            Each task's result, or the exception that its task raised or that kept it from
            running (``BrokenProcessPool`` where a worker died), waited for in turn; tasks not
            yet started are cancelled when it is closed.
        """
        futures = []
        with _child_env(self.threads):  # workers start at the first submissions
            for t in tasks:
                try:
                    futures.append(self.pool.submit(fn, *t))
                except Exception as exc:  # a broken pool refuses new tasks
                    futures.append(exc)
        return _outcomes(futures)

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


def _outcomes(futures):
    """:meth:`LocalPool.map_ordered`'s iterator over ``futures`` (or the exceptions that kept
    tasks from being submitted)."""
    try:
        for f in futures:
            if isinstance(f, Exception):
                yield f
                continue
            try:
                yield f.result()
            except Exception as exc:
                yield exc
    finally:
        for f in futures:
            if not isinstance(f, Exception):
                f.cancel()


class DaskExecutor:
    """Tasks on a Dask cluster; ``address="local"`` starts a LocalCluster on 127.0.0.1."""

    threads = 1

    def __init__(self, address, workers=2):
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ImportError(
                "--scheduler needs Dask: pip install dlbasics[distributed]") from exc
        self.cluster = None
        if address == "local":
            env = {v: "1" for v in THREAD_VARS}
            self.cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                        processes=True, host="127.0.0.1",
                                        dashboard_address=None, env=env)
            address = self.cluster.scheduler_address
        self.client = Client(address)
        self.address = address
        n = len(self.client.scheduler_info().get("workers", {}))
        self.workers = max(n, 1)
        self.name = f"Dask cluster {address} ({n} workers)"

    def imap(self, fn, tasks):
        from distributed import as_completed

        futures = {}
        for t in tasks:
            f = self.client.submit(fn, t, pure=False, retries=1)
            futures[f.key] = (f, t)
        try:
            for f in as_completed([f for f, _ in futures.values()]):
                task = futures[f.key][1]
                try:
                    yield task, f.result()
                except Exception as exc:
                    yield task, exc
        finally:
            for f, _ in futures.values():
                f.cancel()

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def usable_cores():
    """The number of cores this process may run on (its CPU affinity where the OS tells it,
    else the machine's CPU count).

    Returns
    -------
    int
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def make_executor(jobs=None, scheduler=None):
    """``scheduler`` given: Dask; ``jobs == 0``: in-process; else a pool of ``jobs`` (default:
    the usable cores)."""
    if scheduler:
        return DaskExecutor(scheduler, workers=jobs or 2)
    if jobs is None:
        jobs = usable_cores()
    if jobs == 0:
        return InProcess()
    return LocalPool(jobs)


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------


def run_runs(runs, store, executor, profile="", progress=True, desc="runs"):
    """Run ``runs`` (none of them stored yet, or stored as failed: their rows are replaced) on
    ``executor``, writing each row as it finishes.

    Returns ``{"ok", "diverged", "failed"}`` counts.
    """
    counts = {"ok": 0, "diverged": 0, "failed": 0}
    if not runs:
        return counts
    tasks = make_tasks(runs, executor.workers, profile, executor.threads)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(runs), desc=desc, unit="run", disable=not progress, leave=False)
    try:
        for task, result in executor.imap(execute_task, tasks):
            if isinstance(result, BaseException):
                result = [_failed(p, result) for p in task["runs"]]
            for row in result:
                store.put(row)
                counts[row["status"]] += 1
            bar.update(len(result))
    finally:
        bar.close()
    return counts


def _missing(runs, store, study_name):
    done = store.done_keys(study_name)
    return [r for r in runs if r.key not in done]


def timing_runs(study, backend="cpu"):
    """The timing pass's runs: each setting of ``study`` on its first ``timing_repeats`` report
    seeds, under the store name ``<study>--timing``."""
    from .protocol import timing_study_name
    from .spec import Run

    name = timing_study_name(study)
    seeds = study.seeds[: study.timing_repeats]
    return [Run(name, s, seed, backend) for s in study.settings for seed in seeds]


def run_timing(study, store, backend="cpu", fresh=False, progress=True):
    """The timing pass: each setting alone, in this process, on one thread, one after another
    (see :mod:`dlbasics.studies.protocol`). Returns the number of runs made."""
    from .protocol import timing_study_name

    runs = timing_runs(study, backend)
    if fresh:
        store.delete(r.key for r in runs)
    # not where the same setting and seed failed in the report stage: a run that killed its
    # pool worker (WorkerDied) would kill this process; the next call times it once it is done
    done = store.done_keys(study.name)
    todo = [r for r in _missing(runs, store, timing_study_name(study))
            if (study.name, r.config_hash, r.seed) in done]
    if not todo:
        return 0
    from tqdm.auto import tqdm

    with one_compute_thread():
        for r in tqdm(todo, desc=f"{study.name} timing", unit="run", disable=not progress,
                      leave=False):
            payload = r.payload(study.profile)
            payload["timing"] = True
            store.put(run_single(payload))
    return len(todo)


def run_study(study, store, executor, backend="cpu", fresh=False, progress=True):
    """Run what is missing of ``study`` on ``executor``, writing each run as it finishes.

    A study with a tuning grid runs the protocol of :mod:`dlbasics.studies.protocol`: the
    tuning stage (extending grids at their edges), the selected settings on the report seeds,
    then the timing pass in this process. Otherwise its settings x seeds (and the timing pass
    when ``study.timing_repeats`` asks for one). Runs stored as failed run again, each at most
    once a call: the failed tuning runs of the stored grid
    (:attr:`~dlbasics.studies.protocol.Plan.failed`, before each selection; while one fails,
    its condition has no selection and no report runs), failed report and timing runs like
    any missing run.

    Parameters
    ----------
    study : Study
    store : Store
    executor : InProcess, LocalPool or DaskExecutor
    backend : {"cpu", "cuda", "numpy"}
    fresh : bool
        Delete the study's stored runs first and redo them all (a tuned study: every stored
        run of its profile and backend on its tuning and report seeds).
    progress : bool
        tqdm bar over runs.

    Returns
    -------
    dict
        ``{"total", "skipped", "ok", "diverged", "failed", "tuning", "retried", "timing",
        "seconds"}`` (``total``/``skipped`` count the report stage; ``tuning``: tuning runs
        made, ``retried`` of them the failed ones run again).
    """
    from .protocol import stored_plan, timing_study_name

    t0 = time.perf_counter()
    counts = {"ok": 0, "diverged": 0, "failed": 0, "tuning": 0, "retried": 0, "timing": 0}

    def add(c):
        for k in ("ok", "diverged", "failed"):
            counts[k] += c[k]

    if fresh:
        if study.tuning is not None:
            # every grid point stored, wherever the runs that failed led the extensions, and
            # the timing pass (whose own deletion runs only once a setting is selected)
            store.delete_seeds(study.name, study.profile, backend,
                               [*study.tuning.tune_seeds, *study.seeds])
            store.delete_seeds(timing_study_name(study), study.profile, backend,
                               study.seeds[: study.timing_repeats])
        store.delete(r.key for r in study.runs(backend))
    report_study = study
    if study.tuning is not None:
        tried = set()  # the runs made in this call: each at most once, so a failure stands
        while True:
            plan = stored_plan(study, store, backend)
            again = [r for r in plan.failed if r.key not in tried]
            if not plan.pending and not again:
                break  # complete, or conditions left unselected by runs that failed again
            c = run_runs(plan.pending + again, store, executor, study.profile, progress,
                         f"{study.name} tuning")
            add(c)
            tried.update(r.key for r in plan.pending + again)
            counts["tuning"] += len(plan.pending) + len(again)
            counts["retried"] += len(again)
        report_study = study.resolved(plan)
    # a tuned study with no condition selected (its tuning runs failed) has no report stage
    # (resolved() would fall back to the declared settings)
    selected = study.tuning is None or bool(report_study.plan.selected)
    runs = report_study.runs(backend) if selected else []
    todo = _missing(runs, store, study.name)
    counts["total"], counts["skipped"] = len(runs), len(runs) - len(todo)
    add(run_runs(todo, store, executor, study.profile, progress, study.name))
    if report_study.timing_repeats and selected:
        counts["timing"] = run_timing(report_study, store, backend, fresh, progress)
    counts["seconds"] = time.perf_counter() - t0
    return counts
