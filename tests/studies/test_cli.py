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


def _exit_worker(task):
    """A task that kills its pool worker (as a crash or the OOM killer would)."""
    import os

    os._exit(3)


def _exit_in_report_stage(task):
    """:func:`~dlbasics.studies.runner.execute_task`, but a worker given a run of a report seed
    of gd_demo (10 and up at the quick profile; its tuning seeds are 0 and 1) dies."""
    import os

    from dlbasics.studies import runner

    if any(p["seed"] >= 10 for p in task["runs"]):
        os._exit(3)
    return runner.execute_task(task)


def _errors(err):
    return [ln for ln in err.splitlines() if ln.startswith("dlbasics: error:")]


def test_a_worker_that_dies_stops_the_run_with_one_line(tmp_path, monkeypatch, capsys,
                                                       gd_reference):
    """A worker that dies breaks the pool: ``run`` stops with one line naming the study (not a
    traceback), stores the runs that finished and none that did not, runs no further study,
    writes the reports here, exits 1; run again, it does the rest."""
    from concurrent.futures.process import BrokenProcessPool

    from dlbasics.studies import runner

    from .conftest import stored

    store, out = tmp_path / "s.sqlite", tmp_path / "reports"
    argv = ["run", "gd_demo", "perceptron", "--store", str(store), "--out", str(out)]
    # a worker dies in gd_demo's report stage, after its tuning runs
    monkeypatch.setattr(runner, "execute_task", _exit_in_report_stage)
    assert main(argv + ["--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert len(_errors(err)) == 1 and _errors(err)[0].startswith(
        "dlbasics: error: a worker process died while running gd_demo (")
    assert f"stored in {store}, none that did not" in err
    assert "perceptron: " not in err.replace(f"perceptron: no runs in {store}", "")
    assert "could not write its report" not in err  # the reports: here, not in the dead pool
    runs = stored(store, "gd_demo")
    assert runs and all(status == "ok" for status, _ in runs.values())  # the tuning runs
    assert runs.items() <= gd_reference.items()
    monkeypatch.undo()
    assert main(argv[:2] + argv[3:] + ["--jobs", "2", "-q"]) == 0  # gd_demo again: the rest
    assert stored(store, "gd_demo") == gd_reference
    # a pool broken before: the first submit refuses; nothing runs, nothing is stored
    pool = runner.LocalPool(1)
    with pytest.raises(BrokenProcessPool):
        list(pool.imap(_exit_worker, ["die"]))
    monkeypatch.setattr(runner, "make_executor", lambda jobs=None, scheduler=None: pool)
    store2 = tmp_path / "s2.sqlite"
    assert main(["run", "gd_demo", "--store", str(store2), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert _errors(err) == err.strip().splitlines() and len(_errors(err)) == 1
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
