"""Where and with what a run or a report was made: machine, package versions, git commit."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

_PACKAGES = ("dlbasics", "numpy", "numba", "scipy", "matplotlib", "scikit-learn", "mnist1d",
             "dask", "distributed")


@functools.lru_cache(maxsize=1)
def versions():
    """``{"python": ..., package: version}`` for the packages that matter (installed ones)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    commit = git_commit()
    if commit:
        out["commit"] = commit
    return out


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def machine():
    """``{"host", "os", "cpu", "cores", "arch"}`` of this process's machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cores": cores,
        "arch": platform.machine(),
    }


@functools.lru_cache(maxsize=1)
def git_commit():
    """``<sha>`` or ``<sha>+dirty`` of the source tree of this package, or ``None``."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "kernels", "models", "studies"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def describe_machine(m):
    """One line for a report: ``Intel Xeon ... (2 cores), Linux 6.1``."""
    return f"{m.get('cpu', '?')} ({m.get('cores', '?')} cores, {m.get('arch', '?')}), " \
           f"{m.get('os', '?')}"
