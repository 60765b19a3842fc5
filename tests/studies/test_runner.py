import math
import os

import numpy as np
import pytest

from dlbasics.studies import runner
from dlbasics.studies.runner import execute_task, make_tasks, run_study
from dlbasics.studies.spec import Run, Setting, Study
from dlbasics.studies.store import Store


def _payloads(settings, seeds=(0, 1)):
    return [Run("t", s, seed).payload("quick") for s in settings for seed in seeds]


def _without_time(rows):
    out = []
    for r in rows:
        h = dict(r["history"])
        h.pop("time")
        h.pop("path")
        out.append((r["config_hash"], r["seed"], r["status"], h, r["summary"]["test_loss"]))
    return out


XOR = dict(problem="xor", problem_args={"n": 100}, model={"hidden": [6]}, epochs=5)


def test_population_gives_the_histories_of_runs_alone():
    settings = [Setting(**XOR, optimizer="sgd", hyper={"lr": 0.5}, batch_size=8),
                Setting(**XOR, optimizer="adam", hyper={"lr": 0.05}, batch_size=8)]
    p = _payloads(settings)
    pop = execute_task({"runs": p, "population": True})
    alone = execute_task({"runs": p, "population": False})
    assert {r["path"] for r in pop} == {"population"} and {r["path"] for r in alone} == {"fused"}
    # Equal up to float32 rounding: from 8 rows on, training alone calls BLAS, which sums in
    # another order than the population's loops (models/population.py).
    got, want = _without_time(pop), _without_time(alone)
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[3].keys() == w[3].keys()
        for key, values in w[3].items():
            if isinstance(values, list) and values and isinstance(values[0], float):
                np.testing.assert_allclose(g[3][key], values, rtol=1e-5, err_msg=key)
            else:
                assert g[3][key] == values, key
        assert g[4] == pytest.approx(w[4], rel=1e-5)
    assert all(r["status"] == "ok" for r in pop)
    s = pop[0]["summary"]
    # 100 points: 75 train, 25 validation, and a separate test draw
    assert s["epochs"] == 5 and s["updates"] == 5 * math.ceil(75 / 8) and 0 <= s["test_accuracy"]
    assert s["final_val_loss"] == pop[0]["history"]["val_loss"][-1]


def test_failures_and_divergence_are_recorded_not_raised():
    bad = Setting(**{**XOR, "model": {"hidden": [4], "activation": "nope"}}, label="bad")
    huge = Setting(problem="sine", problem_args={"n": 60}, model={"hidden": [8]}, epochs=20,
                   hyper={"lr": 1e6}, batch_size=4, label="huge")
    for population in (True, False):
        rows = execute_task({"runs": _payloads([bad, huge], seeds=(0,)),
                             "population": population})
        failed, diverged = rows
        assert failed["status"] == "failed" and "activation" in failed["error"]
        assert failed["history"] is None
        assert diverged["status"] == "diverged" and diverged["history"]["diverged"]
        assert math.isnan(diverged["summary"]["final_val_loss"])


def test_squared_loss_classifiers_get_accuracies_from_outputs():
    s = Setting(problem="digits", problem_args={"n": 200}, epochs=3, batch_size=16,
                model={"hidden": [8], "output": "identity", "loss": "squared"},
                hyper={"lr": 0.05})
    (row,) = execute_task({"runs": _payloads([s], seeds=(0,)), "population": False})
    assert row["status"] == "ok"
    assert 0 <= row["summary"]["test_accuracy"] <= 1
    assert 0 <= row["summary"]["final_val_accuracy"] <= 1


def test_make_tasks_groups_small_networks_only():
    base = dict(problem="xor", model={"hidden": [4]}, epochs=2)
    settings = [
        Setting(**base, hyper={"lr": 0.1}, batch_size=4),
        Setting(**base, hyper={"lr": 0.2}, optimizer="adam", batch_size=4),   # same group
        Setting(**base, hyper={"lr": 0.1}, batch_size=8),                     # other batch
        Setting(**base, hyper={"lr": 0.1}, batch_size=4, schedule={"name": "constant"}),
        Setting(problem="digits", model={"hidden": [128]}, hyper={"lr": 0.1}),  # large
    ]
    runs = Study("t", "t", "q", settings, seeds=range(4)).runs()
    tasks = make_tasks(runs, workers=1, max_population=64)
    pops = [t for t in tasks if t["population"]]
    # 12 runs; each seed draws its own data, so a group is one batch size and one seed: four
    # groups of 2 (batch 4: sgd and adam) and four of 1 (batch 8); chunks of at most 3
    assert sorted(len(t["runs"]) for t in pops) == [1, 1, 1, 1, 2, 2, 2, 2]
    for t in pops:
        assert len({r["config"]["batch_size"] for r in t["runs"]}) == 1
        assert len({r["seed"] for r in t["runs"]}) == 1
    fixed = [s.replace(data_seed=0) for s in settings]
    pops = [t for t in make_tasks(Study("t", "t", "q", fixed, seeds=range(4)).runs(), workers=1)
            if t["population"]]
    # one data draw for every seed: two groups (8 and 4 runs) in chunks of at most 3
    assert sorted(len(t["runs"]) for t in pops) == [2, 2, 2, 3, 3]
    assert sum(len(t["runs"]) for t in tasks if not t["population"]) == 8
    assert all(len(t["runs"]) == 1 for t in tasks if not t["population"])
    mixed = [t for t in pops if len({r["config"]["optimizer"] for r in t["runs"]}) > 1]
    assert mixed, "runs that differ in optimizer and lr share population tasks"
    many = make_tasks(runs, workers=2, max_population=1)
    assert all(len(t["runs"]) == 1 for t in many)


def _worker_threads(_task=None):
    import numba

    try:
        from threadpoolctl import threadpool_info

        blas = sorted({p["num_threads"] for p in threadpool_info()})
    except ImportError:
        blas = [1]
    return os.environ.get("NUMBA_NUM_THREADS"), numba.get_num_threads(), blas


def test_pool_workers_use_one_thread_and_the_parent_keeps_its_environment():
    before = {v: os.environ.get(v) for v in runner.THREAD_VARS}
    pool = runner.LocalPool(2)
    try:
        got = [r for _, r in pool.imap(_worker_threads, [None, None])]
    finally:
        pool.close()
    assert got == [("1", 1, [1])] * 2
    assert {v: os.environ.get(v) for v in runner.THREAD_VARS} == before


class _DieOnSend:
    """A result whose pickling kills the worker (as running out of memory there would)."""

    def __reduce__(self):
        os._exit(5)


def _die_on_bad(task):
    """A task's runs back, unless one of them is ``"bad"`` (the worker dies, as under the OOM
    killer), ``"send"`` (it dies sending its result) or ``"raise"``."""
    if "bad" in task["runs"]:
        os._exit(3)
    if "raise" in task["runs"]:
        raise KeyError("raised")
    if "send" in task["runs"]:
        return _DieOnSend()
    return list(task["runs"])


def _die_in_initializer(threads):
    os._exit(4)


@pytest.mark.timeout(300)
def test_a_worker_that_dies_is_replaced_and_its_task_found(capsys):
    """A task that kills its worker breaks the pool: the pool is replaced, the tasks running
    then run again alone, a population's runs halved until the run that kills its worker is
    alone; it yields ``WorkerDied``, every other task its result (or its own error), and the
    pool takes tasks afterwards. A pool whose workers cannot start raises the broken pool's
    error."""
    import glob
    import tempfile
    from concurrent.futures import BrokenExecutor

    tasks = [{"runs": [f"r{k}"], "population": False} for k in range(6)]
    tasks.insert(2, {"runs": ["p0", "p1", "bad", "p3"], "population": True})
    tasks.insert(4, {"runs": ["single", "bad"], "population": False})
    tasks.insert(6, {"runs": ["send"], "population": False})
    tasks.append({"runs": ["raise"], "population": False})
    marks_before = set(glob.glob(os.path.join(tempfile.gettempdir(), "dlbasics-running-*")))
    pool = runner.LocalPool(2)
    try:
        out = list(pool.imap(_die_on_bad, tasks))
        runs = sorted(r for _, res in out if isinstance(res, list) for r in res)
        assert runs == ["p0", "p1", "p3"] + [f"r{k}" for k in range(6)]
        died = sorted(tuple(t["runs"]) for t, res in out if isinstance(res, runner.WorkerDied))
        assert died == [("bad",), ("send",), ("single", "bad")]  # not a population: whole
        raised = [res for _, res in out if isinstance(res, KeyError)]
        assert len(raised) == 1 and len(out) == 6 + 3 + 2 + 1  # p0..p3 in three parts
        # every run yielded exactly once, across the pools that broke
        assert sorted(r for t, _ in out for r in t["runs"]) == sorted(
            r for t in tasks for r in t["runs"])
        assert [res for _, res in pool.imap(_die_on_bad, [{"runs": ["ok"]}])] == [["ok"]]
    finally:
        pool.close()
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "dlbasics-running-*"))) \
        == marks_before
    err = capsys.readouterr().err
    assert "a worker process died" in err and "killed its worker again" in err
    pool = runner.LocalPool(1)
    pool._new_pool = lambda workers: __import__("concurrent.futures").futures \
        .ProcessPoolExecutor(max_workers=workers, initializer=_die_in_initializer,
                             initargs=(1,), mp_context=__import__("multiprocessing")
                             .get_context("spawn"))
    pool.pool.shutdown()
    pool.pool = pool._new_pool(1)
    try:
        with pytest.raises(BrokenExecutor):
            list(pool.imap(_die_on_bad, [{"runs": ["ok"]}]))
    finally:
        pool.close()
    pool = runner.LocalPool(1)  # a closed pool refuses tasks: an error, not a task's failure
    pool.close()
    with pytest.raises(RuntimeError, match="shutdown"):
        list(pool.imap(_die_on_bad, [{"runs": ["ok"]}]))


def test_run_study_retries_failed_runs_only(tmp_path):
    good = Setting(**XOR, hyper={"lr": 0.5}, batch_size=10, label="good")
    study = Study("t", "t", "q", [good], seeds=[0, 1])
    with Store(tmp_path / "s.sqlite") as st:
        c = run_study(study, st, runner.InProcess(), progress=False)
        assert (c["ok"], c["skipped"]) == (2, 0)
        row = st.rows("t")[0]
        st.put({**row, "status": "failed", "error": "x"})
        c = run_study(study, st, runner.InProcess(), progress=False)
        assert (c["ok"], c["skipped"]) == (1, 1)
        c = run_study(study, st, runner.InProcess(), progress=False, fresh=True)
        assert (c["ok"], c["skipped"]) == (2, 0)
        assert len(st.rows("t")) == 2


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_resolve_model_defaults(kind):
    kw = runner.resolve_model({"hidden": [3]}, 2, 1 if kind != "multiclass" else 4, kind)
    assert kw["sizes"][0] == 2 and kw["sizes"][1] == 3
    assert (kw["output"], kw["loss"]) == {
        "binary": ("sigmoid", "binary_cross_entropy"),
        "multiclass": ("softmax", "cross_entropy"),
        "regression": ("identity", "squared")}[kind]
    assert runner.resolve_model({"sizes": [2, 5, 1], "dtype": "float64"}, 2, 1,
                                kind)["dtype"] == np.float64


def test_in_process_tasks_run_on_one_compute_thread():
    """In this process a task runs on one Numba thread and one BLAS thread, as in a pool
    worker (so the CPU backend trains its batches whole, with the workers' bits), and the
    caller's thread counts come back afterwards."""
    import numba
    from threadpoolctl import threadpool_info

    def seen(_task):
        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        return numba.get_num_threads(), blas

    before = numba.get_num_threads()
    [(task, (threads, blas))] = list(runner.InProcess().imap(seen, ["t"]))
    assert task == "t" and threads == 1 and blas and set(blas) == {1}
    assert numba.get_num_threads() == before
