"""The results store under abuse: corrupt/truncated/foreign files, SIGKILL at random moments,
two processes writing at once."""

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from dlbasics.studies.cli import main
from dlbasics.studies.store import Store, StoreError

from .conftest import REPO, cli_env, stored
from .slow_study import gate_env


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _small_store(path):
    assert main(["run", "gd_demo", "--profile", "quick", "--jobs", "0", "--store", str(path),
                 "--no-report", "--quiet", "--seeds", "1"]) == 0


def test_corrupt_truncated_and_foreign_files_are_refused_untouched(tmp_path, capsys):
    rng = np.random.default_rng(0)
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(rng.integers(0, 256, 8192, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.txt"
    text.write_text("my thesis, do not overwrite\n")
    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE measurements (t REAL, value REAL)")
    con.execute("INSERT INTO measurements VALUES (1.0, 2.0)")
    con.commit()
    con.close()
    good = tmp_path / "good.sqlite"
    _small_store(good)
    truncated = tmp_path / "truncated.sqlite"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    for path in (corrupt, text, foreign, truncated):
        before = _digest(path)
        with pytest.raises(StoreError, match="refusing to touch it"):
            Store(path)
        capsys.readouterr()
        argv = ["run", "gd_demo", "--profile", "quick", "--jobs", "0", "--store", str(path),
                "--no-report", "--quiet"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("dlbasics: error:") and str(path) in err and err.count("\n") == 1
        assert _digest(path) == before, path
        assert not os.path.exists(f"{path}-wal")
    with Store(good) as s:  # a healthy store still opens
        assert len(s.rows("gd_demo")) > 0


def _cli(store, *extra):
    return [sys.executable, "-m", "dlbasics.studies", "run", "slow_demo", "--profile", "quick",
            "--jobs", "0", "--store", str(store), "--no-report", "--quiet", *extra]


def _integrity(path):
    con = sqlite3.connect(path)
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        dupes = con.execute("SELECT COUNT(*) FROM (SELECT study, config_hash, seed, COUNT(*) c "
                            "FROM runs GROUP BY 1, 2, 3 HAVING c > 1)").fetchone()[0]
    finally:
        con.close()
    return ok, dupes


@pytest.mark.slow
def test_sigkill_at_ten_random_moments_then_resume(tmp_path):
    """Kill the study at 10 random moments, restart each time: the final store holds exactly
    the rows of an uninterrupted run and passes PRAGMA integrity_check.

    The killed processes are held at a gate before their last row (``slow_study``), so no kill
    can come after the study has ended, however fast the machine: every kill hits a running
    study, at a random moment of its compiling, training or writing, or waiting at the gate.
    """
    env = cli_env(DLBASICS_SLOW_EPOCHS="4000")  # about 20 s of training here
    reference = tmp_path / "reference.sqlite"
    subprocess.run(_cli(reference), cwd=REPO, env=env, check=True, timeout=900,
                   stdout=subprocess.DEVNULL)
    total = len(stored(reference, "slow_demo"))
    gate, _ = gate_env(tmp_path, total - 1)  # nobody reads the pipe: a held study waits
    store = tmp_path / "killed.sqlite"
    rng = np.random.default_rng(2024)  # the moments are random but reproducible
    for delay in rng.uniform(0.5, 3.0, size=10):
        proc = subprocess.Popen(_cli(store), cwd=REPO, env={**env, **gate},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)  # the random moment (not a synchronisation: the gate holds the end)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if store.exists():
            assert _integrity(store) == ("ok", 0)
            assert len(stored(store, "slow_demo")) < total
    subprocess.run(_cli(store), cwd=REPO, env=env, check=True, timeout=900,
                   stdout=subprocess.DEVNULL)
    assert _integrity(store) == ("ok", 0)
    assert stored(store, "slow_demo") == stored(reference, "slow_demo")


def test_two_processes_into_one_store(tmp_path, slow_reference, gd_reference):
    """Two studies and a duplicate of one, at once, into the same store: nothing corrupt, no
    duplicate rows, every result equal to a run alone."""
    store = tmp_path / "shared.sqlite"
    env = cli_env()
    gd = [sys.executable, "-m", "dlbasics.studies", "run", "gd_demo", "--profile", "quick",
          "--jobs", "0", "--store", str(store), "--no-report", "--quiet"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for cmd in (_cli(store), _cli(store), gd)]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err.decode()[-2000:]
    assert _integrity(store) == ("ok", 0)
    assert stored(store, "slow_demo") == slow_reference
    assert stored(store, "gd_demo") == gd_reference
