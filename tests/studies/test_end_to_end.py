"""The quick example study end to end, and resuming after SIGKILL."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys

import numpy as np
from scipy import stats as st

from dlbasics.studies import cli
from dlbasics.studies.cli import main

from .conftest import REPO, cli_env, stored
from .slow_study import gate_env, wait_for_gate

FILES = ("README.md", "summary.json", "curves.png", "curves.svg", "lr.png", "lr.svg")


def _table(readme, heading):
    """Rows (lists of cells) of the first Markdown table after ``## heading``."""
    part = readme.split(f"## {heading}\n", 1)[1]
    lines = [ln for ln in part.splitlines() if ln.startswith("|")]
    end = next((i for i, ln in enumerate(part.splitlines()) if ln.startswith("## ")), None)
    if end is not None:
        lines = [ln for ln in part.splitlines()[:end] if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def _expected_ci(values, low, high):
    """Mean [95% t-interval] clipped to (low, high), computed here from raw store values."""
    x = np.array(values, dtype=float)
    m = x.mean()
    if len(x) < 2:
        return f"{m:.4g}"
    h = st.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return f"{m:.4g} [{max(m - h, low):.4g}, {min(m + h, high):.4g}]"


def test_quick_study_end_to_end(tmp_path, gd_reference, capsys, monkeypatch):
    store, out = tmp_path / "r.sqlite", tmp_path / "reports"
    argv = ["run", "gd_demo", "--profile", "quick", "--store", str(store), "--out", str(out)]
    here = []  # reports written in this process, not by a worker of the pool
    monkeypatch.setattr(cli, "_outcome", lambda fn, a, real=cli._outcome: (
        here.append(a[0]), real(fn, a))[1])
    assert main(argv + ["--quiet"]) == 0          # default executor: the process pool
    assert here == []
    # the pool gives the in-process results (histories without their wall-clock times)
    assert stored(store, "gd_demo") == gd_reference

    d = out / "gd_demo"
    # written by a worker of the pool: the later in-process reports must equal these
    figures = {name: (d / name).read_bytes() for name in FILES if name != "summary.json"}
    for name in FILES:
        assert (d / name).stat().st_size > 200, name
    assert (d / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (d / "lr.svg").read_text().lstrip().startswith("<?xml")
    index = (out / "README.md").read_text()
    assert "(gd_demo/README.md)" in index
    readme = (d / "README.md").read_text()
    for heading in ("Setup", "Results", "All settings", "Conclusion", "Reproduce",
                    "Machine and versions"):
        assert f"## {heading}\n" in readme
    assert f"dlbasics run gd_demo --profile quick --store {store} --out {out}" in readme
    assert "gradient descent reached the lowest (geometric) mean early-stopped test loss" in readme
    assert "**Protocol.** Tuning:" in readme

    # every number of the all-settings table (the selected settings on the report seeds)
    # equals what the raw store rows give
    from dlbasics.studies import registry

    report_seeds = set(registry.get("gd_demo", "quick").seeds)
    con = sqlite3.connect(store)
    raw, n_stored = {}, 0
    for label, seed, status, summary in con.execute(
            "SELECT label, seed, status, summary FROM runs WHERE study = 'gd_demo'"):
        n_stored += 1
        if seed in report_seeds:
            raw.setdefault(label, []).append((status, json.loads(summary)))
    n_all = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    con.close()
    rows = _table(readme, "All settings")
    assert len(rows) == len(raw) == 3                 # one selected setting per method
    for label, status, val_loss, val_acc, test_loss, test_acc, _ in rows:
        runs = raw[label]
        ok = [s for stt, s in runs if stt == "ok"]
        assert status == f"{len(ok)}/0/0/0"
        assert val_loss == _expected_ci([s["final_val_loss"] for s in ok], 0, math.inf)
        assert val_acc == _expected_ci([s["final_val_accuracy"] for s in ok], 0, 1)
        assert test_loss == _expected_ci([s["test_loss"] for s in ok], 0, math.inf)
        assert test_acc == _expected_ci([s["test_accuracy"] for s in ok], 0, 1)

    # a second run finds everything stored and runs nothing
    before = sqlite3.connect(store).execute(
        "SELECT config_hash, seed, finished_at FROM runs ORDER BY 1, 2").fetchall()
    capsys.readouterr()
    assert main(argv + ["--jobs", "0"]) == 0
    assert f"{len(report_seeds) * 3} already stored, 0 ok" in capsys.readouterr().err
    after = sqlite3.connect(store).execute(
        "SELECT config_hash, seed, finished_at FROM runs ORDER BY 1, 2").fetchall()
    assert after == before

    # report rewrites the same page from the store, here, and the same figures as the pool's
    # worker wrote (each analysis on one thread either way); export writes one line per run
    (d / "README.md").unlink()
    assert main(["report", "gd_demo", "--store", str(store), "--out", str(out), "-q"]) == 0
    assert (d / "README.md").read_text() == readme
    assert {name: (d / name).read_bytes() for name in figures} == figures
    # several studies: one report a worker, said in the studies' order; a study without runs
    # gets none; an --out that cannot be written is one line, the store untouched
    capsys.readouterr()
    argv = ["report", "gd_demo", "perceptron", "--store", str(store), "--jobs", "2"]
    here.clear()
    assert main(argv + ["--out", str(out)]) == 0
    assert here == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gd_demo: report {d / 'README.md'}",
                   f"perceptron: no runs in {store}, no report (run it first)"]
    assert (d / "README.md").read_text() == readme
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a file where a directory should be\n")
    assert main(argv + ["--out", str(not_a_dir / "reports"), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"dlbasics: error: could not write the report of gd_demo to {not_a_dir / 'reports'}")
    # workers that cannot build the study (their registry fails to import a module here):
    # the report is written in this process instead, the same, and a line says so
    monkeypatch.setenv("DLBASICS_STUDIES", "tests.studies.no_such_module")
    (d / "README.md").unlink()
    here.clear()
    assert main(argv + ["--out", str(out)]) == 0
    assert here[0] == "gd_demo"  # (a worker's second task finds its registry half-loaded)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("gd_demo: a worker process could not write its report "
                             "(ModuleNotFoundError: ") and err[0].endswith("in this process")
    assert err[1] == f"gd_demo: report {d / 'README.md'}"
    assert (d / "README.md").read_text() == readme
    monkeypatch.delenv("DLBASICS_STUDIES")
    # the analysis runs on one Numba and one BLAS thread, whatever this process has
    import numba
    from threadpoolctl import threadpool_info

    from dlbasics.studies import report as report_module
    from dlbasics.studies.store import Store

    seen, write_report = [], report_module.write_report

    def spy(*a):
        seen.append((numba.get_num_threads(), {p["num_threads"] for p in threadpool_info()}))
        return write_report(*a)

    monkeypatch.setattr(report_module, "write_report", spy)
    threads = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        with Store(store) as opened:
            got = report_module.report_from_store("gd_demo", "quick", None, "cpu", opened, out,
                                                  "cmd")
    finally:
        numba.set_num_threads(threads)
    assert got == (d, False) and seen == [(1, {1})]
    assert (d / "README.md").read_text().replace("```\ncmd\n```", "") == readme.replace(
        f"```\n{_command(store, out)}\n```", "")
    csv_path = tmp_path / "runs.csv"
    assert main(["export", "--store", str(store), "--csv", str(csv_path), "-q"]) == 0
    assert len(csv_path.read_text().strip().splitlines()) == 1 + n_all
    assert n_all > n_stored > len(report_seeds) * 3   # tuning and timing runs stored too
    # each condition in turn unselected (a tuning run failed): the analysis still runs
    from .conftest import check_blocked_conditions

    assert len(check_blocked_conditions(store, "gd_demo", tmp_path / "blocked")) == 3


def _command(store, out):
    return f"dlbasics run gd_demo --profile quick --store {store} --out {out}"


def test_in_memory_store_reports_are_written_here(tmp_path, capsys):
    """A pool's workers cannot read an in-memory store: its reports are written in this
    process (the runs in the pool, as with a file)."""
    out = tmp_path / "reports"
    assert main(["run", "gd_demo", "--profile", "quick", "--store", ":memory:", "--jobs", "2",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"gd_demo: report {out / 'gd_demo' / 'README.md'}" in err
    assert "## Conclusion" in (out / "gd_demo" / "README.md").read_text()


def _count(path):
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def test_resume_after_sigkill(tmp_path, slow_reference):
    """Kill the command and its pool workers with 3 runs stored and the rest running or queued
    (held at a gate the test controls: no race with the study's speed), then resume."""
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "dlbasics.studies", "run", "slow_demo", "--store", str(store),
           "--no-report", "--quiet", "--jobs", "2"]
    gate, fifo = gate_env(tmp_path, 3)
    proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(**gate), start_new_session=True)
    try:
        assert wait_for_gate(fifo, proc) == "held at 3"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)       # the CLI and its pool workers
        proc.wait(timeout=30)
    total = len(slow_reference)
    assert _count(store) == 3 < total

    done = subprocess.run(cmd, cwd=REPO, env=cli_env(), timeout=300, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    # nothing lost, nothing duplicated, and the same numbers as an uninterrupted run
    con = sqlite3.connect(store)
    keys = con.execute("SELECT config_hash, seed FROM runs").fetchall()
    con.close()
    assert len(keys) == len(set(keys)) == total
    assert stored(store, "slow_demo") == slow_reference
