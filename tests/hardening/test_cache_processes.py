"""Numba's on-disk cache, shared by several processes, must not hand out broken machine code.

A parallel (``prange``) function called from a cached non-parallel one crashes once the outer
function is loaded from the cache in another process (Numba issue 8578): here a kernel compiled
as a callee in one process, compiled again as an entry point in a second and loaded in a third
jumped to an unrelocated address (segmentation fault). The package therefore calls parallel
functions only from Python or from other parallel functions. The first test checks that rule
on every compiled function (it lists 13 offenders on the code before the rule). The second
replays the three processes; it is a smoke test only, since the crash depends on the order in
which each process happens to number its compiled functions (it hit 1 run in 2 here).
"""

import importlib
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from numba.core.registry import CPUDispatcher

from dlbasics import kernels, models

ROOT = Path(__file__).resolve().parents[2]


def _dispatchers():
    """Every CPU-compiled function of ``kernels`` and ``models``, by qualified name."""
    found = {}
    for pkg in (kernels, models):
        for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
            if "gpu" in info.name:
                continue
            mod = importlib.import_module(info.name)
            for name, obj in vars(mod).items():
                if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod.__name__:
                    found[f"{mod.__name__}.{name}"] = obj
    return found


def _callees(disp):
    """Compiled functions that ``disp``'s source refers to by global name."""
    names = set()
    stack = [disp.py_func.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if hasattr(c, "co_names"))
    glb = disp.py_func.__globals__
    return [glb[n] for n in names if isinstance(glb.get(n), CPUDispatcher)]


def test_no_cached_serial_function_reaches_a_parallel_one():
    funcs = _dispatchers()
    assert len(funcs) > 50  # the walk found the package's kernels

    def parallel(d):
        return bool(d.targetoptions.get("parallel"))

    bad = []
    for name, disp in funcs.items():
        if parallel(disp):
            continue  # a parallel caller is fine (Numba issue 8578 is the other nesting)
        seen, stack = set(), list(_callees(disp))
        while stack:
            d = stack.pop()
            if id(d) in seen:
                continue
            seen.add(id(d))
            if parallel(d):
                bad.append(f"{name} -> {d.py_func.__module__}.{d.py_func.__name__}")
                break
            stack.extend(_callees(d))
    assert not bad, "cached serial functions calling parallel ones: " + ", ".join(bad)


STAGE = textwrap.dedent("""
    import sys
    import numpy as np
    from dlbasics.kernels.config import BLAS_MIN_ROWS, BLAS_MIN_WORK
    from dlbasics.kernels import network
    from dlbasics.models import MLP, SGD, _core, train
    m = MLP([2, 16, 16, 1], activation="tanh", output="sigmoid", loss="binary_cross_entropy",
            dtype=np.float32, seed=0)
    X = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    if sys.argv[1] == "train":
        train(m, X, y, SGD(0.1), batch_size=8, epochs=1, seed=0)
    else:  # the forward kernel as an entry point, on the same types
        # the records as the callee receives them: named tuples
        net = _core.Net(*_core.net_record(m, BLAS_MIN_ROWS, BLAS_MIN_WORK))
        network.forward(m.params, net, 4, _core.Buffers(*_core.buffers_record(m.workspace(4))),
                        True, 0, False)
    print("done", sys.argv[1])
""")


@pytest.mark.slow
def test_kernels_compiled_in_one_process_run_in_the_next(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    for stage in ("train", "forward", "forward"):
        res = subprocess.run([sys.executable, "-c", STAGE, stage], env=env, cwd=str(ROOT),
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, (stage, res.returncode, res.stderr[-2000:])
        assert f"done {stage}" in res.stdout
