"""Import safety and error messages without numba-cuda or without a GPU (subprocesses), and the
compile-only check that every kernel compiles to PTX as for a real GPU."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dlbasics.kernels import gpu_config
from tests.gpu.conftest import SIMULATOR

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "dlbasics.kernels.gpu_config",
    "dlbasics.kernels.gpu_activations",
    "dlbasics.kernels.gpu_dense",
    "dlbasics.kernels.gpu_losses",
    "dlbasics.kernels.gpu_dropout",
    "dlbasics.kernels.gpu_optimizers",
    "dlbasics.kernels.gpu_perceptron",
    "dlbasics.kernels.gpu_population",
    "dlbasics.models._cuda",
]

PROBE = textwrap.dedent(
    """
    import importlib, sys
    BLOCK
    for name in MODULES:
        importlib.import_module(name)
    print("IMPORTED", flush=True)
    import numpy as np
    from dlbasics.kernels.gpu_config import cuda_available
    from dlbasics.kernels.gpu_dense import gpu_dense_forward
    from dlbasics.models import MLP
    print("AVAILABLE", cuda_available())
    x = np.ones((2, 2), np.float32)
    for call in (lambda: gpu_dense_forward(x, x, x[0]), lambda: MLP([2, 2], backend="cuda")):
        try:
            call()
            print("NO ERROR")
        except RuntimeError as exc:
            print("RuntimeError:", exc)
    """
)


def _run(block, extra_env):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(extra_env)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    code = PROBE.replace("BLOCK", block).replace("MODULES", repr(MODULES))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.nocuda
def test_without_numba_cuda():
    out = _run('sys.modules["numba_cuda"] = None\nsys.modules["numba.cuda"] = None', {})
    assert "IMPORTED" in out
    assert "AVAILABLE False" in out
    assert out.count(f"RuntimeError: {gpu_config.MISSING_NUMBA_CUDA}") == 2, out
    assert "numba-cuda is not installed: pip install dlbasics[cuda]" in out


@pytest.mark.nocuda
def test_without_a_gpu():
    out = _run("", {"CUDA_VISIBLE_DEVICES": ""})
    assert "IMPORTED" in out
    assert "AVAILABLE False" in out
    assert out.count(f"RuntimeError: {gpu_config.NO_GPU}") == 2, out
    assert "no CUDA GPU found (set NUMBA_ENABLE_CUDASIM=1 to use the simulator)" in out


@pytest.mark.slow
@pytest.mark.skipif(not SIMULATOR, reason="for simulator runs (NUMBA_ENABLE_CUDASIM=1); on a "
                    "real GPU the other tests compile every kernel")
def test_every_kernel_compiles_to_ptx():
    """Without a GPU the simulator runs Python; this compiles the real kernels (numba-cuda and
    libNVVM, no driver) for the argument types the drivers pass, in both dtypes and both launch
    geometries, and checks that no ``@cuda.jit`` kernel was left out. libNVVM comes as a wheel
    with the ``cuda`` extra (``numba-cuda[cu13]``): a machine without it fails here, it does not
    skip."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    res = subprocess.run([sys.executable, "-m", "tests.gpu.compile_all"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    out = res.stdout + res.stderr
    if "NvvmSupportError" in out or "libNVVM cannot be found" in out:
        pytest.fail('libNVVM not found: pip install "numba-cuda[cu13]" (the cuda extra)\n'
                    + out[-2000:])
    assert res.returncode == 0, out[-5000:]
    assert "; 0 failed" in out, out[-5000:]
    assert "FAIL" not in out, out[-5000:]
