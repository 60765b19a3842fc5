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


def test_a_worker_that_dies_stops_the_run_with_one_line(tmp_path, monkeypatch, capsys):
    """A pool whose worker died takes no more tasks: ``run`` stops with one line (not a
    traceback), stores nothing it did not run, still writes the reports here, exits 1."""
    from concurrent.futures.process import BrokenProcessPool

    from dlbasics.studies import runner

    pool = runner.LocalPool(1)
    (_, died), = pool.imap(_exit_worker, ["die"])
    assert isinstance(died, BrokenProcessPool)
    monkeypatch.setattr(runner, "make_executor", lambda jobs=None, scheduler=None: pool)
    store, out = tmp_path / "s.sqlite", tmp_path / "reports"
    assert main(["run", "gd_demo", "--store", str(store), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "dlbasics: error: a worker process died while running gd_demo (")
    assert f"stored in {store}: run the command again" in err[0]
    from dlbasics.studies.store import Store

    with Store(store) as s:
        assert s.rows() == []  # nothing stored as failed that never ran
    assert (out / "README.md").exists()  # the reports' step ran (here; no runs: no report)
