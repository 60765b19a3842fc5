"""Compiled kernels (Numba) of dlbasics; every model and study imports this package first.

Where Numba caches compiled code
--------------------------------
Compiled functions are cached on disk (``cache=True``). When the package's own directories are
writable (a checkout, an editable install, a user's virtual environment), Numba caches beside
the sources, in ``__pycache__``. When they are not (a read-only install: a system or shared
``site-packages``), this module sets ``NUMBA_CACHE_DIR`` before anything compiles, unless the
user has set it, to the first usable of

* ``$XDG_CACHE_HOME/dlbasics/numba`` (``~/.cache/dlbasics/numba`` by default),
* ``<temporary directory>/dlbasics-numba-<uid>`` (for an unwritable home directory),

so nothing tries to write next to the package. A directory is usable when it can be created
with mode 0700, belongs to this user and is writable by no one else (Numba's cache holds
pickled data, which must not come from another user). :data:`NUMBA_CACHE_DIR` records the
choice (``None``: the default, beside the sources, or the user's own ``NUMBA_CACHE_DIR``).
"""

import os
import stat
import sys
import tempfile

#: The cache directory chosen here for a read-only install, or ``None``.
NUMBA_CACHE_DIR = None


def _in_tree_writable():
    """Whether Numba could cache beside the sources of ``kernels`` and ``models``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for pkg in ("kernels", "models"):
        cache = os.path.join(root, pkg, "__pycache__")
        target = cache if os.path.isdir(cache) else os.path.join(root, pkg)
        if not os.access(target, os.W_OK | os.X_OK):
            return False
    return True


def _private_dir(path):
    """Create ``path`` (mode 0700); True if it is this user's and writable by no one else."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            and os.access(path, os.W_OK | os.X_OK))


def _user_cache_dirs():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    yield os.path.join(base, "dlbasics", "numba")
    # one level under the shared temporary directory, so no one else owns a directory above it
    yield os.path.join(tempfile.gettempdir(), f"dlbasics-numba-{os.getuid()}")


def _configure_numba_cache():
    global NUMBA_CACHE_DIR
    if os.environ.get("NUMBA_CACHE_DIR") or _in_tree_writable():
        return
    for path in _user_cache_dirs():
        if _private_dir(path):
            NUMBA_CACHE_DIR = path
            os.environ["NUMBA_CACHE_DIR"] = path  # pool workers inherit it
            if "numba" in sys.modules:  # already imported: its config read the environment
                from numba.core import config

                config.CACHE_DIR = path
            return


_configure_numba_cache()
