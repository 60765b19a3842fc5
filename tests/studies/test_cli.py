import sys
import types

import pytest

from dlbasics.studies.cli import main


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("dlbasics: error: ")
    return err[0]


@pytest.mark.parametrize("argv, match", [
    (["run", "nope"], "unknown study 'nope'"),
    (["run", "gd_demo", "--jobs", "x"], "--jobs"),
    (["run", "gd_demo", "--jobs", "-1"], "--jobs"),
    (["run", "gd_demo", "--profile", "huge"], "--profile"),
    (["run", "gd_demo", "--backend", "tpu"], "--backend"),
    (["run", "gd_demo", "--scheduler", "somewhere"], "--scheduler"),
    (["run"], "STUDY"),
    (["frobnicate"], "frobnicate"),
    (["report", "nope"], "unknown study"),
    (["export", "--store", "/nonexistent/x.sqlite"], "no results store"),
])
def test_bad_command_lines_are_one_line_errors_with_status_2(argv, match, capsys):
    assert main(argv) == 2
    assert match in _error_line(capsys)


def test_cuda_backend_without_a_gpu_is_a_clear_error(capsys):
    try:
        from numba import cuda

        if cuda.is_available():
            pytest.skip("a GPU is present")
    except ImportError:
        pass
    assert main(["run", "gd_demo", "--backend", "cuda"]) == 2
    assert "no CUDA GPU" in _error_line(capsys)


def test_bench_without_and_with_the_speed_module(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dlbasics.studies.speed.bench", None)
    assert main(["bench"]) == 2
    assert "speed" in _error_line(capsys)
    seen = []
    fake = types.SimpleNamespace(main=lambda argv: seen.append(argv) or 0)
    monkeypatch.setitem(sys.modules, "dlbasics.studies.speed.bench", fake)
    assert main(["bench", "--quick", "x"]) == 0
    assert seen == [["--quick", "x"]]


def test_list(capsys):
    assert main(["list"]) == 0
    assert "gd_demo" in capsys.readouterr().out


def test_python_dash_m_studies_runs_the_cli():
    import subprocess

    out = subprocess.run([sys.executable, "-m", "dlbasics.studies", "run", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("dlbasics: error: unknown study 'nope'")


def _exit_on_one_run(task):
    """:func:`~dlbasics.studies.runner.execute_task`, but a worker given the run named by
    ``DLBASICS_TEST_KILL`` (``config_hash:seed``) dies."""
    import os

    from dlbasics.studies import runner

    if any(f"{p['config_hash']}:{p['seed']}" == os.environ.get("DLBASICS_TEST_KILL")
           for p in task["runs"]):
        os._exit(3)
    return runner.execute_task(task)


def _exit_at_start(threads):
    """A pool worker's initializer that dies: workers that cannot start."""
    import os

    os._exit(4)


def _errors(err):
    return [ln for ln in err.splitlines() if ln.startswith("dlbasics: error:")]


@pytest.mark.timeout(600)
def test_a_worker_that_dies_costs_its_run_not_the_run(tmp_path, monkeypatch, capsys,
                                                      gd_reference):
    """A worker that dies on one run (as under the OOM killer) breaks the pool: ``run`` says
    so, replaces the pool, finds the run by running the tasks that were running again alone,
    stores it as failed (``WorkerDied``) and every other run as it would have, runs the next
    study, writes the reports and exits 1; run again, it runs that run again. A pool whose
    workers cannot start stops ``run`` with one line, nothing stored."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from dlbasics.studies import runner
    from dlbasics.studies.store import Store

    from .conftest import stored

    store, out = tmp_path / "s.sqlite", tmp_path / "reports"
    argv = ["run", "gd_demo", "perceptron", "--store", str(store), "--out", str(out)]
    victim = sorted(k for k in gd_reference if k[1] >= 10)[0]  # a report run (tuning: 0, 1)
    monkeypatch.setenv("DLBASICS_TEST_KILL", f"{victim[0]}:{victim[1]}")
    monkeypatch.setattr(runner, "execute_task", _exit_on_one_run)
    assert main(argv + ["--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert _errors(err) == []
    assert "dlbasics: a worker process died (" in err
    assert "dlbasics: a task of 1 run(s) killed its worker again when run alone" in err
    assert "1 failed" in err and "perceptron: " in err
    assert (out / "gd_demo" / "README.md").exists()
    assert (out / "perceptron" / "README.md").exists()
    runs = stored(store, "gd_demo")
    assert runs[victim][0] == "failed"
    with Store(store) as st:
        errors = [r["error"] for r in st.rows("gd_demo") if r["status"] == "failed"]
    assert len(errors) == 1 and errors[0].startswith("dlbasics.studies.runner.WorkerDied: ")
    assert {k: v for k, v in runs.items() if k != victim} == \
        {k: v for k, v in gd_reference.items() if k != victim}
    # the timing pass (in this process) leaves out the setting and seed that killed a worker
    timed = stored(store, "gd_demo--timing")
    assert timed and victim not in timed
    monkeypatch.undo()
    assert main(argv[:2] + argv[3:] + ["--jobs", "2", "-q"]) == 0  # the failed run again
    assert stored(store, "gd_demo") == gd_reference
    assert victim in stored(store, "gd_demo--timing")

    # workers that cannot start: one line, exit 1, nothing stored
    def dying(workers):
        return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                   initializer=_exit_at_start, initargs=(1,))

    pool = runner.LocalPool(1)
    pool.pool.shutdown()
    pool._new_pool = dying
    pool.pool = dying(1)
    monkeypatch.setattr(runner, "make_executor", lambda jobs=None, scheduler=None: pool)
    store2 = tmp_path / "s2.sqlite"
    assert main(["run", "gd_demo", "--store", str(store2), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert _errors(err) == err.strip().splitlines() and len(_errors(err)) == 1
    assert _errors(err)[0].startswith("dlbasics: error: a worker process died while running "
                                      "gd_demo, and a new pool's workers died before "
                                      "starting a task (")
    assert stored(store2, "gd_demo") == {}


def test_failed_tuning_runs_are_run_again_by_the_next_run(tmp_path, monkeypatch, capsys,
                                                         gd_reference):
    """Tuning runs that failed are said (exit 1, the count, no selection, no report runs, no
    report and a line saying why; ``report`` too), and the next ``run`` runs them again, says
    so, and ends with exactly the uninterrupted study's runs."""
    from dlbasics.studies import runner

    from .conftest import failing_tasks, stored

    store, out = tmp_path / "s.sqlite", tmp_path / "reports"
    argv = ["run", "gd_demo", "--store", str(store), "--out", str(out), "--jobs", "0"]
    # every run of gd_demo's tuning seed 1 fails, as a full disk would make it
    monkeypatch.setattr(runner, "execute_task", failing_tasks(
        lambda r: r["seed"] == 1, "OSError: [Errno 28] No space left on device"))
    assert main(argv) == 1
    failed = {k for k, (status, _) in stored(store, "gd_demo").items() if status == "failed"}
    assert failed and {seed for _, seed in failed} == {1}
    assert all(seed < 10 for _, seed in stored(store, "gd_demo"))  # no report runs
    said = capsys.readouterr().err
    assert f", {len(failed)} failed, " in said
    assert (f"dlbasics: gd_demo: no report: no condition is selected yet, {len(failed)} of its "
            f"tuning runs in {store} failed (`dlbasics export` lists their errors)") in said
    assert not (out / "gd_demo").exists()
    # `report` says the same, and fails too; a report from before is named, not replaced
    (out / "gd_demo").mkdir(parents=True)
    (out / "gd_demo" / "README.md").write_text("old")
    assert main(["report", "gd_demo", "--store", str(store), "--out", str(out)]) == 1
    said = capsys.readouterr().err
    assert f"(the report in {out / 'gd_demo' / 'README.md'} is from before)" in said
    assert (out / "gd_demo" / "README.md").read_text() == "old"
    monkeypatch.undo()
    assert main(argv) == 0
    said = capsys.readouterr().err
    assert f"({len(failed)} of them had failed before: run again)" in said
    assert stored(store, "gd_demo") == gd_reference
