"""Faults of the machine, not of the code: a full disk, unwritable paths, a locked store.

Each fault ends the ``dlbasics`` command with one line on stderr naming the path, what went
wrong and what to do, exit status 1 and no traceback (``--debug`` shows it), and loses no
finished run: the test then runs again without the fault and finds every run, the stored ones
untouched, and ``PRAGMA integrity_check`` ok.

How the faults are made (also as root, which ignores file permissions):

* a full disk: ``RLIMIT_FSIZE`` in the child process (a write past the limit fails with
  ``EFBIG``, the same error path in SQLite and Python as ``ENOSPC``);
* an unwritable directory: a directory of mode 0555, and a child that obeys permissions: as
  root, the child runs under ``setpriv`` without the capabilities that let root ignore them
  (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``; a plain user ``nobody`` could not run this
  test environment's interpreter, which lives under ``/root``); as any other user, as it is.
  Skipped, with the reason, where ``setpriv`` is missing or may not drop them;
* a locked store: another process holds an exclusive SQLite transaction, longer than the
  command's lock timeout (``DLBASICS_STORE_TIMEOUT``);
* a store path that is a directory.
"""

import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlbasics.models import MLP
from dlbasics.studies.cli import main
from dlbasics.studies.store import Store, StoreUnavailable

REPO = Path(__file__).resolve().parents[2]
#: Prefix of a command that obeys file permissions even as root.
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
STUDY = "gd_demo"


# --- helpers ---------------------------------------------------------------------------------

def _limit_file_size(nbytes):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return preexec


def _cli(args, cwd, env=None, prefix=(), fsize=None, timeout=300):
    """Run ``python -m dlbasics.studies ARGS`` in a child (under a file-size limit, or after
    ``prefix``: see :func:`obey_permissions`)."""
    kw = {}
    if fsize is not None:
        kw["preexec_fn"] = _limit_file_size(fsize)
    return subprocess.run([*prefix, sys.executable, "-m", "dlbasics.studies", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, **kw)


def _err_lines(text):
    """The lines of a child's stderr without matplotlib's font notices ("findfont: ...":
    printed when its font cache, shared by every virtual environment in ``~/.cache/matplotlib``,
    lacks a font; seen once with a cache of 31 of the 71 fonts and no STIX, rewritten while
    another checkout's CI run was being killed; nothing to do with the fault under test)."""
    return [ln for ln in text.strip().splitlines() if not ln.startswith("findfont: ")]


def _one_line(res, *words):
    """The command failed with status 1 and one line on stderr holding every word."""
    err = res.stderr
    assert res.returncode == 1, (res.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    lines = _err_lines(err)
    assert len(lines) == 1 and lines[0].startswith("dlbasics: error: "), err[-3000:]
    for w in words:
        assert str(w) in lines[0], (w, lines[0])
    return lines[0]


def _runs(path):
    """``{(config_hash, seed): finished_at}`` of the study's stored runs."""
    con = sqlite3.connect(path)
    try:
        return dict(((h, s), t) for h, s, t in con.execute(
            "SELECT config_hash, seed, finished_at FROM runs WHERE study = ?", (STUDY,)))
    finally:
        con.close()


def _integrity(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def _run_args(store, *extra):
    return ["run", STUDY, "--profile", "quick", "--jobs", "0", "--store", str(store),
            "--no-report", "--quiet", *extra]


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    """A store holding the whole quick study, made once in this process: ``(path, runs)``."""
    path = tmp_path_factory.mktemp("complete") / "complete.sqlite"
    assert main(_run_args(path)) == 0
    return path, _runs(path)


def _partial_store(path, complete):
    """A copy of the complete store without its later half of runs."""
    con = sqlite3.connect(complete[0])
    try:
        con.execute(f"VACUUM INTO '{path}'")
    finally:
        con.close()
    con = sqlite3.connect(path)
    with con:
        n = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        con.execute("DELETE FROM runs WHERE id IN (SELECT id FROM runs ORDER BY id DESC "
                    "LIMIT ?)", (n - n // 2,))
    con.close()
    runs = _runs(path)
    assert 0 < len(runs) < len(complete[1])
    return runs


def _resume_finds_everything(path, before, complete):
    """Run again without the fault: every run is there, the earlier ones untouched."""
    assert main(_run_args(path)) == 0
    after = _runs(path)
    assert set(after) == set(complete[1])
    assert {k: after[k] for k in before} == before  # stored runs were neither lost nor redone
    assert _integrity(path) == "ok"


@pytest.fixture(scope="module")
def obey_permissions(tmp_path_factory):
    """Command prefix under which a child cannot write a directory of mode 0555, even as root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("as root, needs setpriv (util-linux) to run a child that obeys permissions")
    probe = tmp_path_factory.mktemp("probe")
    probe.chmod(0o555)
    try:
        res = subprocess.run([*NO_OVERRIDE, sys.executable, "-c",
                              f"open({str(probe / 'x')!r}, 'w')"], capture_output=True,
                             text=True, timeout=60)
    finally:
        probe.chmod(0o755)
    if "PermissionError" not in res.stderr:
        pytest.skip(f"setpriv could not drop CAP_DAC_OVERRIDE here: {res.stderr[-300:]}")
    return NO_OVERRIDE


def _read_only(d):
    d.mkdir()
    d.chmod(0o555)
    return d


# --- 1. the results store --------------------------------------------------------------------

def test_full_disk_while_storing_runs(tmp_path, complete):
    store = tmp_path / "s.sqlite"
    before = _partial_store(store, complete)
    # room for a few more rows in the write-ahead log, not for all twelve
    res = _cli(_run_args(store), cwd=tmp_path, fsize=store.stat().st_size + 16 * 1024)
    _one_line(res, store, "full", "run again")
    during = _runs(store)
    assert len(before) <= len(during) < len(complete[1])
    assert {k: during[k] for k in before} == before
    assert _integrity(store) == "ok"
    _resume_finds_everything(store, during, complete)


def test_debug_shows_the_traceback(tmp_path, complete):
    store = tmp_path / "s.sqlite"
    _partial_store(store, complete)
    res = _cli([*_run_args(store), "--debug"], cwd=tmp_path, fsize=store.stat().st_size)
    assert res.returncode == 1
    assert "Traceback" in res.stderr and "StoreUnavailable" in res.stderr


def test_store_path_is_a_directory(tmp_path, capsys):
    d = tmp_path / "results"
    d.mkdir()
    assert main(_run_args(d)) == 1
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and "is a directory" in line and str(d) in line
    assert "--store" in line and list(d.iterdir()) == []
    with pytest.raises(StoreUnavailable, match="is a directory") as info:
        Store(d)
    assert isinstance(info.value, OSError) and info.value.filename == str(d)


def test_store_unavailable_pickles_whole():
    """A worker process's store fault reaches its parent as the same one-line error."""
    import pickle

    exc = StoreUnavailable("/x/s.sqlite", "/x/s.sqlite is locked by another process")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is StoreUnavailable and isinstance(back, OSError)
    assert str(back) == str(exc) and back.filename == exc.filename


def test_reader_reads_a_store_open_elsewhere_and_writes_nothing(tmp_path, complete):
    store = tmp_path / "s.sqlite"
    runs = _complete_store(store, complete)
    with Store(store), Store.reader(store) as reader:  # the parent's connection stays open
        assert len(reader.rows(STUDY)) == len(runs)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.conn.execute("DELETE FROM runs")
    assert _runs(store) == runs and _integrity(store) == "ok"
    with pytest.raises(StoreUnavailable, match="missing.sqlite"):
        Store.reader(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


def test_store_locked_by_another_process(tmp_path, complete):
    store = tmp_path / "s.sqlite"
    before = _partial_store(store, complete)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\n"
         f"c = sqlite3.connect({str(store)!r}, isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = _cli(_run_args(store), cwd=tmp_path, env={"DLBASICS_STORE_TIMEOUT": "0.5"})
        _one_line(res, store, "locked by another process", "waited for 0.5 s",
                  "DLBASICS_STORE_TIMEOUT")
    finally:
        holder.communicate("", timeout=60)  # commits nothing, ends the transaction
    assert _runs(store) == before
    _resume_finds_everything(store, before, complete)


def test_store_in_a_directory_the_user_cannot_write(tmp_path, obey_permissions, complete):
    locked = tmp_path / "readonly"
    locked.mkdir()
    store = locked / "s.sqlite"
    before = _partial_store(store, complete)
    locked.chmod(0o555)  # the store file stays writable; its -wal and -shm cannot be made
    try:
        res = _cli(_run_args(store), cwd=tmp_path, prefix=obey_permissions)
        _one_line(res, store, f"the directory {locked} is not writable", "--store")
        res = _cli(_run_args(locked / "new" / "s.sqlite"), cwd=tmp_path,
                   prefix=obey_permissions)
        _one_line(res, f"the directory {locked} is not writable")
        assert not (locked / "new").exists()
    finally:
        locked.chmod(0o755)
    assert _runs(store) == before and _integrity(store) == "ok"
    _resume_finds_everything(store, before, complete)  # the fault is gone


# --- 2. reports and figures ------------------------------------------------------------------

def _complete_store(path, complete):
    shutil.copyfile(complete[0], path)
    return _runs(path)


@pytest.mark.slow
def test_report_to_an_unwritable_out_is_written_later(tmp_path, capsys, complete):
    store = tmp_path / "s.sqlite"
    _partial_store(store, complete)  # `run` does the rest, then cannot write the report
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a file where a directory should be\n")
    out = not_a_dir / "reports"
    argv = ["run", STUDY, "--profile", "quick", "--jobs", "0", "--store", str(store),
            "--out", str(out), "--quiet"]
    assert main(argv) == 1  # the runs are done and stored; the report is not written
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(ln.startswith("dlbasics: error: could not write ") for ln in err)
    assert f"the report of {STUDY} to {out / STUDY}" in err[0]
    assert f"dlbasics report {STUDY} --profile quick --store {store} --out" in err[0]
    runs = _runs(store)
    assert set(runs) == set(complete[1]) and _integrity(store) == "ok"
    good = tmp_path / "reports"
    assert main(["report", STUDY, "--store", str(store), "--out", str(good), "-q"]) == 0
    assert (good / STUDY / "README.md").stat().st_size > 1000
    assert _runs(store) == runs


@pytest.mark.slow
def test_report_to_an_out_the_user_cannot_write(tmp_path, obey_permissions, complete):
    store = tmp_path / "s.sqlite"
    runs = _complete_store(store, complete)
    out = _read_only(tmp_path / "reports")
    try:
        res = _cli(["report", STUDY, "--store", str(store), "--out", str(out), "-q"],
                   cwd=tmp_path, prefix=obey_permissions)
        _one_line(res, f"the report of {STUDY} to {out / STUDY}", "not writable",
                  f"dlbasics report {STUDY}")
        assert not (out / STUDY).exists()
    finally:
        out.chmod(0o755)
    assert main(["report", STUDY, "--store", str(store), "--out", str(out), "-q"]) == 0
    assert (out / STUDY / "README.md").exists() and (out / STUDY / "curves.png").exists()
    assert _runs(store) == runs and _integrity(store) == "ok"


@pytest.mark.slow
def test_report_to_a_full_disk_is_written_later(tmp_path, complete):
    store = tmp_path / "s.sqlite"
    runs = _complete_store(store, complete)
    out = tmp_path / "reports"
    res = _cli(["report", STUDY, "--store", str(store), "--out", str(out), "-q"],
               cwd=tmp_path, fsize=48 * 1024)  # SQLite's -shm fits, the figures do not
    err = _err_lines(res.stderr)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert err[0].startswith(f"dlbasics: error: could not write the report of {STUDY} to "
                             f"{out / STUDY}"), err
    assert "full" in err[0] and f"dlbasics report {STUDY}" in err[0]
    assert _runs(store) == runs and _integrity(store) == "ok"
    res = _cli(["report", STUDY, "--store", str(store), "--out", str(out), "-q"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / STUDY / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Conclusion" in (out / STUDY / "README.md").read_text()


def test_export_to_an_unwritable_path(tmp_path, capsys, complete):
    store = tmp_path / "s.sqlite"
    runs = _partial_store(store, complete)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a file where a directory should be\n")
    target = not_a_dir / "runs.csv"
    assert main(["export", "--store", str(store), "--csv", str(target), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dlbasics: error: ") and str(not_a_dir) in err
    assert "writable path" in err
    assert _runs(store) == runs


# --- 4. model files --------------------------------------------------------------------------

def _model():
    return MLP([2, 4, 1], activation="tanh", output="sigmoid", loss="binary_cross_entropy",
               dtype=np.float64, seed=0, backend="numpy")


_SAVE = """
import sys
import numpy as np
from dlbasics.models import MLP
m = MLP([2, 64, 64, 1], activation="tanh", output="sigmoid", loss="binary_cross_entropy",
        dtype=np.float64, seed=1, backend="numpy")
try:
    m.save(sys.argv[1])
except OSError as exc:
    print(type(exc).__name__, exc.errno, exc.filename, exc, sep="|")
"""


def test_model_save_to_a_full_disk_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.npz"
    _model().save(path)
    old = path.read_bytes()
    assert len(old) < 8192  # the small model fits; the larger one (35 KiB) does not
    res = subprocess.run([sys.executable, "-c", _SAVE, str(path)], capture_output=True,
                         text=True, timeout=120, preexec_fn=_limit_file_size(8192))
    assert res.returncode == 0, res.stderr[-3000:]
    kind, code, filename, message = res.stdout.strip().split("|")
    assert kind == "OSError" and int(code) == 27  # EFBIG (ENOSPC on a really full disk)
    assert filename == str(path) and f"could not save the model to {path}" in message
    assert path.read_bytes() == old  # the earlier file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left
    assert np.array_equal(MLP.load(path).params, _model().params)


def test_model_save_to_an_unwritable_path(tmp_path, obey_permissions):
    d = _read_only(tmp_path / "models")
    try:
        res = subprocess.run([*obey_permissions, sys.executable, "-c", _SAVE,
                              str(d / "m.npz")], capture_output=True, text=True, timeout=120)
        assert list(d.iterdir()) == []
    finally:
        d.chmod(0o755)
    assert res.returncode == 0, res.stderr[-3000:]
    kind, code, filename, message = res.stdout.strip().split("|")
    assert kind == "PermissionError" and filename == str(d / "m.npz")
    assert f"could not save the model to {d / 'm.npz'}" in message
    # and where the directory is missing: the same clear error, as root too
    with pytest.raises(FileNotFoundError, match="could not save the model to") as info:
        _model().save(tmp_path / "missing" / "m.npz")
    assert info.value.filename == str(tmp_path / "missing" / "m.npz")


def test_model_save_appends_npz_and_replaces_whole_files(tmp_path):
    m = _model()
    m.save(tmp_path / "a")
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]
    m2 = MLP([2, 3, 1], activation="relu", output="sigmoid", loss="binary_cross_entropy",
             dtype=np.float64, seed=5, backend="numpy")
    m2.save(tmp_path / "a.npz")  # replaces the earlier file
    loaded = MLP.load(tmp_path / "a.npz")
    assert loaded.config() == m2.config() and np.array_equal(loaded.params, m2.params)


@pytest.mark.slow
def test_model_load_of_truncated_or_altered_files(tmp_path):
    m = _model()
    path = tmp_path / "m.npz"
    m.save(path)
    data = path.read_bytes()
    bad = tmp_path / "bad.npz"
    for n in (0, 1, 30, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:n])
        with pytest.raises(ValueError, match=f"{bad} is not a dlbasics model file, or not a "
                                             "whole one"):
            MLP.load(bad)
    # every single flipped byte: a clear error, or (a byte of ZIP metadata such as a time
    # stamp) the very same model
    loaded = 0
    for i in range(len(data)):
        b = bytearray(data)
        b[i] ^= 0x20
        bad.write_bytes(bytes(b))
        try:
            got = MLP.load(bad)
        except ValueError as exc:
            assert str(bad) in str(exc)
            continue
        loaded += 1
        assert got.config() == m.config() and np.array_equal(got.params, m.params), i
    assert loaded < len(data) // 4
