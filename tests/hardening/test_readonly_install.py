"""A read-only install: dlbasics in a ``site-packages`` the user cannot write.

The wheel is installed into a fresh virtual environment (the helpers of
``tests/test_packaging.py``), the installed tree is made read-only (mode 0555/0444), and a
compiled function is run twice, in two processes, by a user who obeys permissions (see
``obey_permissions`` in ``test_machine_faults.py``). Numba must then cache in the user's cache
directory (``$XDG_CACHE_HOME/dlbasics/numba``, or ``<tmp>/dlbasics-numba-<uid>`` when the home
directory is not writable either), the second process must load what the first compiled, and
nothing may even try to write next to the package: an audit hook in the child records every
open for writing, mkdir, rename, replace and remove under the installed package.
"""

import json
import os
import textwrap
from pathlib import Path

import pytest

from tests.test_packaging import (
    CACHE_PROBE,
    _clean_env,
    _make_venv,
    _pip_install,
    _run,
    wheel,  # noqa: F401  (the fixture)
)

from .test_machine_faults import obey_permissions  # noqa: F401  (the fixture)

WATCH = textwrap.dedent("""
    import os, sys
    PKG = os.path.realpath(sys.argv[1])
    WRITES = []
    _W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def _under(p):
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        if not isinstance(p, (str, os.PathLike)):
            return False  # a file descriptor
        p = os.path.realpath(os.fspath(p))
        return p == PKG or p.startswith(PKG + os.sep)

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")
                       or isinstance(flags, int) and flags > 0 and bool(flags & _W))
            if writing and _under(path):
                WRITES.append([event, os.fspath(path)])
        elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir",
                       "os.truncate", "os.chmod", "os.utime"):
            if args and _under(args[0]):
                WRITES.append([event, os.fspath(args[0])])

    sys.addaudithook(_hook)
""")

PROBE = WATCH + CACHE_PROBE + textwrap.dedent("""
    import dlbasics.kernels, numba
    print(json.dumps({"writes": WRITES,
                      "chosen": getattr(dlbasics.kernels, "NUMBA_CACHE_DIR", None),
                      "numba_cache_dir": numba.config.CACHE_DIR}))
""")


def _read_only(tree):
    for d, _, files in os.walk(tree):
        for f in files:
            os.chmod(os.path.join(d, f), 0o444)
        os.chmod(d, 0o555)


def _writable(tree):
    for d, _, _ in os.walk(tree):
        os.chmod(d, 0o755)


def _listing(tree):
    return sorted(str(p.relative_to(tree)) for p in Path(tree).rglob("*"))


@pytest.fixture(scope="module")
def read_only_install(tmp_path_factory, wheel):  # noqa: F811
    """``(python, purelib, package dir)``: the wheel in a fresh venv, then made read-only."""
    base = tmp_path_factory.mktemp("ro-venv")
    py, purelib = _make_venv(base / "venv")
    _pip_install(py, str(wheel))
    pkg = purelib / "dlbasics"
    assert not list(pkg.rglob("*.nbi"))  # no Numba cache shipped
    _read_only(purelib)
    yield py, purelib, pkg
    _writable(purelib)


def _probe(py, pkg, prefix, cwd, env):
    out = _run([*prefix, str(py), "-c", PROBE, str(pkg)], cwd=cwd, env=env)
    cache, seen = out.strip().splitlines()[-2:]
    return {**json.loads(cache), **json.loads(seen)}


@pytest.mark.slow
@pytest.mark.parametrize("home", ["writable", "read-only"])
def test_read_only_install_caches_in_the_user_cache(read_only_install, obey_permissions,  # noqa: F811
                                                    tmp_path, home):
    py, purelib, pkg = read_only_install
    before = _listing(purelib)
    user_home, tmp = tmp_path / "home", tmp_path / "tmp"
    user_home.mkdir()
    tmp.mkdir()
    env = _clean_env(HOME=str(user_home), TMPDIR=str(tmp))
    env.pop("XDG_CACHE_HOME", None)
    if home == "writable":
        expected = user_home / ".cache" / "dlbasics" / "numba"
    else:
        user_home.chmod(0o555)
        expected = tmp / f"dlbasics-numba-{os.getuid()}"
    try:
        first = _probe(py, pkg, obey_permissions, tmp_path, env)
        second = _probe(py, pkg, obey_permissions, tmp_path, env)
    finally:
        user_home.chmod(0o755)
    for run in (first, second):
        assert run["writes"] == []  # nothing tried to write next to the package
        assert run["chosen"] == run["numba_cache_dir"] == str(expected)
    assert first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0  # loaded from the user cache
    assert second["mistakes"] == first["mistakes"] == 1
    assert list(expected.rglob("perceptron.epoch_kernel*.nbi"))
    assert oct(expected.stat().st_mode & 0o777) == oct(0o700)
    assert _listing(purelib) == before
