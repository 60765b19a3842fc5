"""Compile every GPU kernel to PTX as a real GPU would, without a GPU.

Run as ``python -m tests.gpu.compile_all [--out DIR]`` (without ``NUMBA_ENABLE_CUDASIM``): it
switches :mod:`dlbasics.kernels.gpu_config` to compile-only mode and drives every public GPU
function, the ``DeviceMLP`` hooks, the small-network kernel and the population kernel with small
host arrays, so each kernel is type-checked and compiled by numba-cuda and libNVVM for the
argument types it really gets (results are not computed): in float32 and float64, and under the
shipped launch geometry and the tests' small one (tile sizes and block sizes are compile-time
constants of some kernels). It then checks that every ``@cuda.jit`` kernel in the package's
sources was compiled at least once.

libNVVM comes with the ``cuda`` extra (``numba-cuda[cu13]``, NVVM as a wheel), so this runs on
any machine. Where ``ptxas`` is found (the ``cuda-toolkit[nvcc]`` wheel of the ``cuda`` extra, or
a CUDA install on ``PATH``), each PTX is also assembled for sm_90 and its registers per thread and
spill bytes are written to ``DIR/ptxas_sm90.md`` and ``.json`` when ``--out DIR`` is given
(``reports/benchmarks/gpu/`` keeps the table; the GPU report prints it). Prints one line per
case; exits non-zero if any case failed or a kernel was never compiled.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np


def cases(dtype):
    from dlbasics.kernels.gpu_activations import (
        gpu_activate,
        gpu_activation_backward,
        gpu_derivative,
    )
    from dlbasics.kernels.gpu_dense import gpu_dense_backward, gpu_dense_forward
    from dlbasics.kernels.gpu_dropout import (
        gpu_dropout_apply,
        gpu_dropout_forward,
        gpu_dropout_mask,
        gpu_scale_weights,
    )
    from dlbasics.kernels.gpu_losses import gpu_loss_and_gradient
    from dlbasics.kernels.gpu_optimizers import gpu_adam_update, gpu_rmsprop_update, gpu_sgd_update
    from dlbasics.kernels.gpu_perceptron import gpu_perceptron_epoch, gpu_perceptron_predict

    z = np.zeros((4, 5), dtype)
    W = np.zeros((5, 3), dtype)
    p = np.zeros(10, dtype)
    labels = np.array([0, 1, 2, 1])
    return {
        "activate": lambda: gpu_activate("tanh", z),
        "activate softmax": lambda: gpu_activate("softmax", z),
        "derivative": lambda: gpu_derivative("relu", z),
        "activation backward": lambda: gpu_activation_backward("sigmoid", z, z, z),
        "softmax backward": lambda: gpu_activation_backward("softmax", z, z, z),
        "dense forward": lambda: gpu_dense_forward(z, W, np.zeros(3, dtype), "relu"),
        "dense backward": lambda: gpu_dense_backward(z, W, np.zeros((4, 3), dtype)),
        "cublas epilogues": lambda: epilogues(dtype),
        "loss dense": lambda: gpu_loss_and_gradient("squared", z, z),
        "loss labels": lambda: gpu_loss_and_gradient("cross_entropy_logits", labels,
                                                     np.zeros((4, 3), dtype)),
        "dropout mask": lambda: gpu_dropout_mask((4, 5), 0.5, 1, dtype=dtype),
        "dropout forward": lambda: gpu_dropout_forward(z, 0.5, 1),
        "dropout apply": lambda: gpu_dropout_apply(z, z, 0.5),
        "scale weights": lambda: gpu_scale_weights(W, 0.5),
        "sgd": lambda: gpu_sgd_update(p, p.copy(), 0.1),
        "rmsprop": lambda: gpu_rmsprop_update(p, p.copy(), p.copy(), p.copy(), centered=True),
        "adam": lambda: gpu_adam_update(p, p.copy(), p.copy(), p.copy(), 1),
        "perceptron epoch": lambda: gpu_perceptron_epoch(z, np.array([1, -1, 1, -1]),
                                                         np.zeros(5, dtype),
                                                         np.zeros(1, dtype)),
        "perceptron predict": lambda: gpu_perceptron_predict(z, np.zeros(5, dtype),
                                                             np.zeros(1, dtype)),
        "mlp": lambda: mlp(dtype),
    }


def epilogues(dtype):
    """The kernels after a cuBLAS product (the cuBLAS route itself needs a GPU)."""
    from dlbasics.kernels.activations import RELU, TANH
    from dlbasics.kernels.gpu_dense import launch_bias_act, launch_mask_dact

    z = np.zeros((9, 3), dtype)
    launch_bias_act(z, np.zeros(3, dtype), z.copy(), RELU, np.dtype(dtype).type(0.01))
    launch_mask_dact(z, z.copy(), TANH, z.copy(), z.copy(), 0.01)
    launch_mask_dact(z, None, -1, None, None, 0.01)


def mlp(dtype):
    """Every DeviceMLP hook (train() itself would divide by the zeros of compile-only mode),
    with the one-launch epoch (one block and cooperative grid) and with the per-layer kernels."""
    from dlbasics.kernels import gpu_small

    widest = gpu_small.SMALL_MAX_WIDTH
    try:
        for width, grid in ((widest, True), (0, True), (0, False)):  # block, grid, per layer
            gpu_small.SMALL_MAX_WIDTH = width
            gpu_small.GRID_ENABLED = grid
            _mlp(dtype)
    finally:
        gpu_small.SMALL_MAX_WIDTH = widest
        gpu_small.GRID_ENABLED = True


def _mlp(dtype):
    from dlbasics.models import MLP, Adam, RMSProp

    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3)).astype(dtype)
    y = rng.integers(0, 2, size=12)
    for kw, targets, opt in [
        (dict(output="softmax", loss="cross_entropy", keep_prob=0.8), y, Adam(0.01)),
        (dict(output="tanh", loss="squared", keep_prob=0.9, dropout="inverted"),
         y.astype(dtype), RMSProp(0.01)),
    ]:
        m = MLP([3, 4, 2 if targets is y else 1], dtype=dtype, backend="cuda", **kw)
        Y, lab, dense = m.check_y(targets, 12)
        dev = m.engine.device
        state = dev.adopt_state(opt, opt.init(m.params))
        state = dev.epoch(X, Y, lab, dense, np.arange(12), 4, opt, state, 0.01)[0]
        dev.release_state(opt, state)
        dev.evaluate(X, Y, lab, dense)
        m.forward(X)
        m.gradient(X, targets)
        m.gradient(X, targets, alpha=1e-3)


def population(dtype):
    from dlbasics.kernels.gpu_population import HP_SIZE, gpu_population_epoch
    from dlbasics.models import MLP
    from dlbasics.models.mlp import Workspace

    model = MLP([3, 4, 1], output="sigmoid", loss="binary_cross_entropy", keep_prob=0.8,
                dtype=dtype)
    K, batch, n = 3, 4, 12
    w = Workspace(model.sizes, model.keep, batch, dtype)
    P = np.stack([model.params] * K)
    S = [np.zeros_like(P) for _ in range(3)]
    X = np.zeros((n, 3), dtype)
    Y = np.zeros((n, 1), dtype)
    gpu_population_epoch(
        P, np.zeros_like(P), model.layout, model.codes, model.keep, False, model.slope, X, Y,
        np.zeros(1, np.int64), np.tile(np.arange(n), (K, 1)), batch,
        np.zeros((K, w.ws.size), dtype), w.offs, np.zeros((K, batch), np.int64),
        model.loss_code, model.fused, True, model.eps, np.arange(K), np.array([0, 5, 4]),
        np.zeros((K, HP_SIZE), dtype), S[0], S[1], S[2], np.zeros(K, np.int64),
        np.ones(K, np.bool_), np.zeros((K, 4)))


ROOT = Path(__file__).resolve().parents[2]
#: The sources whose ``@cuda.jit`` kernels must all be compiled.
SOURCES = sorted((ROOT / "kernels").glob("gpu_*.py")) + [ROOT / "models" / "_cuda.py"]
#: Launch geometries: as shipped, and as tests/gpu/conftest.py patches it.
GEOMETRIES = {
    "shipped": {},
    "tests": {"THREADS_PER_BLOCK": 8, "TILE": 4, "MAX_BLOCKS": 3},
}


def kernel_names():
    """Names of the ``@cuda.jit`` kernels defined in :data:`SOURCES` (not the device
    functions, which are compiled into them)."""
    names = set()
    for path in SOURCES:
        names.update(re.findall(r"@cuda\.jit(?!\(device=True\))[^\n]*\n\s*def (\w+)\(",
                                path.read_text()))
    return names


def find_ptxas():
    """Path of a ``ptxas`` (the NVIDIA wheels first, then ``PATH``), or None."""
    for base in sys.path:
        for sub in ("nvidia/cu13/bin/ptxas", "nvidia/cuda_nvcc/bin/ptxas"):
            path = Path(base or ".") / sub
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return shutil.which("ptxas")


def ptxas_usage(ptxas, ptx, arch="sm_90"):
    """``(registers, spill store bytes, spill load bytes)`` of the entry function of ``ptx``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        cmd = [ptxas, f"-arch={arch}", "-v", "-o", str(Path(tmp) / "k.cubin"), str(src)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if res.returncode != 0 and "Unresolved extern" in res.stderr:
            # grid sync calls into cudadevrt, linked at load time: assemble as relocatable
            res = subprocess.run([*cmd[:2], "-c", *cmd[2:]], capture_output=True, text=True,
                                 timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"ptxas failed: {res.stderr.strip()[-2000:]}")
    text = res.stderr
    entry = text.split("Compiling entry function", 1)[-1]
    regs = re.search(r"Used (\d+) registers", entry)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", entry)
    return (int(regs.group(1)) if regs else 0,
            int(spill.group(1)) if spill else 0, int(spill.group(2)) if spill else 0)


def _describe(sig):
    kinds = []
    for t in sig:
        dt = getattr(t, "dtype", None)
        if dt is not None and str(dt).startswith("float"):
            kinds.append(str(dt))
    return "/".join(sorted(set(kinds))) or "-"


def ptxas_table(ptxas, compiled, geometry_of):
    """One row per compiled specialization: kernel, launch geometry that first compiled it,
    float dtypes of its arrays, PTX bytes, registers, spills (sorted by kernel)."""
    rows = []
    for key, ptx in compiled.items():
        regs, st, ld = ptxas_usage(ptxas, ptx)
        rows.append({"kernel": key[0].replace("<locals>.", "").replace("_kernels.", ""),
                     "geometry": geometry_of[key], "dtypes": _describe(key[2]),
                     "ptx_bytes": len(ptx), "registers": regs, "spill_store_bytes": st,
                     "spill_load_bytes": ld})
    rows.sort(key=lambda r: (r["kernel"], r["geometry"], r["dtypes"], r["registers"]))
    return rows


def write_table(out, rows, ptxas):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ptxas_sm90.json").write_text(json.dumps({"ptxas": ptxas, "arch": "sm_90",
                                                     "kernels": rows}, indent=1) + "\n")
    lines = ["# Registers and spills per GPU kernel (ptxas, sm_90)", "",
             "Written by `python -m tests.gpu.compile_all --out DIR` from the PTX that numba-cuda "
             "compiles for each specialization the drivers launch (both launch geometries).", "",
             "| kernel | geometry | float dtypes | PTX bytes | registers | spill stores (B) | "
             "spill loads (B) |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['kernel']} | {r['geometry']} | {r['dtypes']} | {r['ptx_bytes']} | "
                     f"{r['registers']} | {r['spill_store_bytes']} | {r['spill_load_bytes']} |")
    (out / "ptxas_sm90.md").write_text("\n".join(lines) + "\n")


def main(argv):
    from dlbasics.kernels import config
    from dlbasics.kernels import gpu_config as g

    out = None
    if "--out" in argv:
        out = argv[argv.index("--out") + 1]
    g.enable_compile_only((9, 0))
    shipped = {name: getattr(config, name) for name in GEOMETRIES["tests"]}
    failed = 0
    t0 = time.perf_counter()
    geometry_of = {}
    for geometry, values in GEOMETRIES.items():
        for name, value in {**shipped, **values}.items():
            setattr(config, name, value)
        todo = []
        for dtype in (np.float32, np.float64):
            tag = f"{geometry} {np.dtype(dtype).name}"
            todo += [(f"{tag} {k}", f) for k, f in cases(dtype).items()]
            todo.append((f"{tag} population", lambda dtype=dtype: population(dtype)))
        for name, fn in todo:
            t = time.perf_counter()
            try:
                fn()
                print(f"ok   {name} ({time.perf_counter() - t:.1f}s)", flush=True)
            except Exception:  # noqa: BLE001 - report every failing case
                failed += 1
                print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        for key in g.compiled_kernels():
            geometry_of.setdefault(key, geometry)
    for name, value in shipped.items():
        setattr(config, name, value)
    compiled = g.compiled_kernels()
    seen = {q.rsplit(".", 1)[-1] for q, _, _ in compiled}
    missing = sorted(kernel_names() - seen)
    if missing:
        failed += 1
        print(f"FAIL never compiled: {', '.join(missing)} (add a case to tests/gpu/compile_all.py)",
              flush=True)
    print(f"{len(compiled)} kernel specializations of {len(seen)} kernels compiled to PTX in "
          f"{time.perf_counter() - t0:.1f}s; {failed} failed", flush=True)
    ptxas = find_ptxas() if out is not None else None
    if out is None:
        pass
    elif ptxas is None:
        print("ptxas not found: no register/spill table", flush=True)
    else:
        rows = ptxas_table(ptxas, compiled, geometry_of)
        worst = max(rows, key=lambda r: r["registers"])
        spills = [r for r in rows if r["spill_store_bytes"] or r["spill_load_bytes"]]
        print(f"ptxas sm_90: at most {worst['registers']} registers ({worst['kernel']}); "
              f"{len(spills)} specializations spill", flush=True)
        write_table(out, rows, ptxas)
        print(f"register table written to {out}/ptxas_sm90.md", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
