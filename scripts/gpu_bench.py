"""GPU benchmark: dlbasics' numba.cuda kernels beside PyTorch CUDA on the same shapes.

Cases (``--smoke`` shrinks every size so the logic runs in seconds, e.g. under the simulator):

* dense: forward + backward (``dW``, ``db``, ``dx``) of a 784-256-256-10 ReLU network at batch
  1024 and 4096, device arrays in and out; the GPU result is also checked against float64 NumPy;
* training: one epoch of ``MLP(784-256-256-10, backend="cuda")`` with plain SGD at batch 1, 32
  and 1024 (samples/s), and the same loop in PyTorch; the same for 2-16-16-1 (sigmoid output,
  binary cross-entropy) at batch 1, 8 and 32 (the one-launch epoch of kernels/gpu_small.py);
* population: one epoch of 4096 independent 2-16-16-1 networks (one GPU thread per network),
  beside the CPU population kernel and a batched (``torch.bmm``) PyTorch version.

The report also gives the kernel launches per training step of both networks (counted, cuBLAS
calls apart), the route of the dense products (:func:`dlbasics.kernels.gpu_blas.status`), the
goals of issue 18 with their ratios from this run (the population goal is against the 2-core
CPU figure in ``reports/benchmarks/results.json``), and the ptxas register table of
``reports/benchmarks/gpu/ptxas_sm90.md``.

Each case runs once to compile (reported as ``compile_s``) and is then timed. PyTorch runs with
``torch.backends.cuda.matmul.allow_tf32 = False`` (float32 products in float32, as ours).
Results go to ``gpu_bench.json`` and ``gpu_bench.md`` in ``--out`` (default ``$OUT`` when set,
else ``reports/benchmarks/gpu/``). A case that fails is recorded with its error and the run goes
on; cases still waiting when ``--budget`` seconds have passed are skipped.

Run with dlbasics installed, or from a checkout: ``source scripts/checkout_env.sh; python
scripts/gpu_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
cuda = None  # numba.cuda as a module global, bound by launch_overhead (the simulator swaps it)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FULL = {
    "dense_sizes": [784, 256, 256, 10],
    "dense_batches": [1024, 4096],
    "train_sizes": [784, 256, 256, 10],
    "train_cases": [(1, 2048), (32, 16384), (1024, 65536)],  # (batch, samples in the epoch)
    "small_sizes": [2, 16, 16, 1],
    "small_cases": [(1, 2048), (8, 8192), (32, 16384)],
    "pop_sizes": [2, 16, 16, 1],
    "pop_networks": 4096,
    "pop_samples": 512,
    "pop_batch": 32,
    "repeat": 5,
}
SMOKE = {
    "dense_sizes": [6, 5, 4, 3],
    "dense_batches": [4, 9],
    "train_sizes": [70, 5, 4, 3],  # wider than gpu_small.SMALL_MAX_WIDTH: per-layer kernels
    "train_cases": [(1, 6), (4, 12)],
    "small_sizes": [2, 3, 1],
    "small_cases": [(1, 6), (4, 12)],
    "pop_sizes": [2, 3, 1],
    "pop_networks": 5,
    "pop_samples": 12,
    "pop_batch": 4,
    "repeat": 1,
}


class Bench:
    """Collects results, enforces the time budget and rewrites the report after every case
    (so a run stopped from outside still leaves the cases it finished)."""

    def __init__(self, budget, on_result=None):
        self.t0 = time.perf_counter()
        self.budget = budget
        self.results = []
        self.on_result = on_result

    def left(self):
        return self.budget - (time.perf_counter() - self.t0)

    def run(self, section, case, impl, fn, need_s=0.0):
        """Run ``fn() -> dict`` and record its metrics (or its error, or a skip when fewer
        than ``need_s`` seconds of the budget are left)."""
        row = {"section": section, "case": case, "impl": impl}
        if self.left() <= need_s:
            row["status"] = "skipped (time budget spent)"
        else:
            t = time.perf_counter()
            try:
                row.update(fn())
                row.setdefault("status", "ok")
            except Exception as exc:  # noqa: BLE001 - a benchmark records failures and goes on
                row["status"] = f"error: {type(exc).__name__}: {exc}"
                row["traceback"] = traceback.format_exc(limit=4)
            row["wall_s"] = round(time.perf_counter() - t, 3)
        self.results.append(row)
        if self.on_result is not None:
            self.on_result(self.results)
        print(f"[{time.perf_counter() - self.t0:7.1f}s] {section:10s} {case:22s} {impl:18s} "
              f"{_summary(row)}", flush=True)
        return row


def _summary(row):
    if row.get("status") != "ok":
        return row.get("status", "")
    parts = []
    for key in ("ms", "gflops", "samples_per_s", "compile_s", "max_rel_err"):
        if key in row:
            parts.append(f"{key}={row[key]:.4g}")
    return " ".join(parts)


def _best(fn, repeat, sync):
    """Best wall time of ``repeat`` calls of ``fn`` (``sync`` waits for the device)."""
    best = float("inf")
    for _ in range(repeat):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def _torch_cuda():
    """``torch`` with CUDA, or None (with the reason printed)."""
    try:
        import torch
    except ImportError:
        print("PyTorch not installed: PyTorch cases skipped", flush=True)
        return None
    if not torch.cuda.is_available():
        print("PyTorch has no CUDA device: PyTorch cases skipped", flush=True)
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def _layers(rng, sizes, dtype=np.float32):
    Ws = [(rng.normal(size=(a, b)) * np.sqrt(2.0 / a)).astype(dtype)
          for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    bs = [np.zeros(b, dtype) for b in sizes[1:]]
    return Ws, bs


def _dense_flops(sizes, n):
    """Multiply-adds x 2 of a forward (1x) and backward (dW and dx: 2x) pass."""
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return 2.0 * n * macs * 3


# ---------------------------------------------------------------------------------------------
# dense
# ---------------------------------------------------------------------------------------------


def bench_dense(bench, cfg, torch):
    from dlbasics.kernels import gpu_config as g
    from dlbasics.kernels.activations import IDENTITY, RELU
    from dlbasics.kernels.gpu_dense import launch_forward, launch_grad_input, launch_grad_weights

    rng = np.random.default_rng(0)
    sizes = cfg["dense_sizes"]
    Ws, bs = _layers(rng, sizes)
    L = len(Ws)
    for n in cfg["dense_batches"]:
        x = rng.normal(size=(n, sizes[0])).astype(np.float32)
        delta_out = rng.normal(size=(n, sizes[-1])).astype(np.float32)
        case = f"{'-'.join(map(str, sizes))} b={n}"

        def ours(x=x, delta_out=delta_out, n=n):
            dW = [g.to_device(W) for W in Ws]
            db = [g.to_device(b) for b in bs]
            z = [g.device_array((n, s), np.float32) for s in sizes[1:]]
            a = [g.device_array((n, s), np.float32) for s in sizes[1:]]
            gW = [g.device_array(W.shape, np.float32) for W in Ws]
            gb = [g.device_array(b.shape, np.float32) for b in bs]
            deltas = [g.device_array((n, s), np.float32) for s in sizes[1:]]
            dx0 = g.to_device(x)
            g.copy_to_device(deltas[-1], delta_out)
            slope = np.float32(0.01)

            def step():
                h = dx0
                for l in range(L):
                    launch_forward(h, dW[l], db[l], RELU if l < L - 1 else IDENTITY, slope, z[l],
                                   a[l])
                    h = a[l]
                for l in range(L - 1, -1, -1):
                    h = dx0 if l == 0 else a[l - 1]
                    launch_grad_weights(h, deltas[l], gW[l], gb[l])
                    if l > 0:
                        launch_grad_input(deltas[l], dW[l], deltas[l - 1], code=RELU,
                                          zp=z[l - 1], ap=a[l - 1], slope=slope)

            t = time.perf_counter()
            step()
            g.synchronize()
            compile_s = time.perf_counter() - t
            best = _best(step, cfg["repeat"], g.synchronize)
            # correctness at full size: the forward output against float64 NumPy
            ref = x.astype(np.float64)
            for l in range(L):
                ref = ref @ Ws[l].astype(np.float64) + bs[l]
                if l < L - 1:
                    ref = np.maximum(ref, 0.0)
            out = g.copy_to_host(a[-1])
            err = float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30))
            return {"ms": best * 1e3, "gflops": _dense_flops(sizes, n) / best / 1e9,
                    "compile_s": compile_s, "max_rel_err": err}

        bench.run("dense", case, "dlbasics numba.cuda", ours)
        if torch is not None:
            def peer(x=x, delta_out=delta_out, n=n):
                dev = torch.device("cuda")
                tW = [torch.from_numpy(W).to(dev) for W in Ws]
                tb = [torch.from_numpy(b).to(dev) for b in bs]
                tx = torch.from_numpy(x).to(dev)
                td = torch.from_numpy(delta_out).to(dev)

                def step():
                    hs, zs = [tx], []
                    for l in range(L):
                        zl = torch.addmm(tb[l], hs[-1], tW[l])
                        zs.append(zl)
                        hs.append(torch.relu(zl) if l < L - 1 else zl)
                    d = td
                    for l in range(L - 1, -1, -1):
                        hs[l].T.mm(d)
                        d.sum(0)
                        if l > 0:
                            d = d.mm(tW[l].T) * (zs[l - 1] > 0)

                step()
                best = _best(step, cfg["repeat"], torch.cuda.synchronize)
                return {"ms": best * 1e3, "gflops": _dense_flops(sizes, n) / best / 1e9}

            bench.run("dense", case, "torch cuda", peer)


# ---------------------------------------------------------------------------------------------
# training epochs
# ---------------------------------------------------------------------------------------------


def bench_training(bench, cfg, torch):
    from dlbasics.models import MLP, SGD, train

    rng = np.random.default_rng(1)
    sizes = cfg["train_sizes"]
    n_max = max(n for _, n in cfg["train_cases"])
    X = rng.normal(size=(n_max, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=n_max)
    for batch, n in cfg["train_cases"]:
        Xn, yn = X[:n], y[:n]
        case = f"{'-'.join(map(str, sizes))} b={batch} n={n}"

        def ours(Xn=Xn, yn=yn, batch=batch, n=n, grid=True):
            from dlbasics.kernels import gpu_small

            gpu_small.GRID_ENABLED = grid
            try:
                m = MLP(sizes, activation="relu", output="softmax", loss="cross_entropy",
                        backend="cuda", seed=0)
                warm = min(n, 2 * batch)
                t = time.perf_counter()
                train(m, Xn[:warm], yn[:warm], SGD(0.01), batch_size=batch, epochs=1)
                compile_s = time.perf_counter() - t
                h = train(m, Xn, yn, SGD(0.01), batch_size=batch, epochs=1)
            finally:
                gpu_small.GRID_ENABLED = True
            return {"samples_per_s": n / h.time[-1], "ms": h.time[-1] * 1e3,
                    "compile_s": compile_s, "final_loss": h.train_loss[-1],
                    "path": str(gpu_small.path(sizes, batch) if grid else None)}

        # the one-launch epoch (a cooperative grid up to GRID_MAX_BATCH) and the per-layer
        # kernels (cuBLAS from BLAS_MIN_ROWS rows): each recorded, the goal takes the faster
        bench.run("training", case, "dlbasics MLP cuda", ours)
        bench.run("training", case, "dlbasics MLP cuda per-layer",
                  lambda ours=ours: ours(grid=False))
        if torch is not None:
            def peer(Xn=Xn, yn=yn, batch=batch, n=n):
                dev = torch.device("cuda")
                torch.manual_seed(0)
                layers = []
                for a, b in zip(sizes[:-1], sizes[1:], strict=True):
                    layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
                net = torch.nn.Sequential(*layers[:-1]).to(dev)
                opt = torch.optim.SGD(net.parameters(), lr=0.01)
                loss_fn = torch.nn.CrossEntropyLoss()
                tX = torch.from_numpy(Xn).to(dev)
                ty = torch.from_numpy(yn).to(dev)

                def epoch(count):
                    perm = torch.randperm(count, device=dev)
                    for s in range(0, count, batch):
                        idx = perm[s : s + batch]
                        opt.zero_grad(set_to_none=True)
                        loss = loss_fn(net(tX[idx]), ty[idx])
                        loss.backward()
                        opt.step()

                epoch(min(n, 2 * batch))
                torch.cuda.synchronize()
                t = time.perf_counter()
                epoch(n)
                torch.cuda.synchronize()
                dt = time.perf_counter() - t
                return {"samples_per_s": n / dt, "ms": dt * 1e3}

            bench.run("training", case, "torch cuda", peer)


def bench_small(bench, cfg, torch):
    """2-16-16-1 training (the one-launch epoch) beside PyTorch."""
    from dlbasics.models import MLP, SGD, train

    rng = np.random.default_rng(3)
    sizes = cfg["small_sizes"]
    n_max = max(n for _, n in cfg["small_cases"])
    X = rng.normal(size=(n_max, sizes[0])).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    for batch, n in cfg["small_cases"]:
        Xn, yn = X[:n], y[:n]
        case = f"{'-'.join(map(str, sizes))} b={batch} n={n}"

        def ours(Xn=Xn, yn=yn, batch=batch, n=n):
            m = MLP(sizes, activation="tanh", output="sigmoid", loss="binary_cross_entropy",
                    backend="cuda", seed=0)
            warm = min(n, 2 * batch)
            t = time.perf_counter()
            train(m, Xn[:warm], yn[:warm], SGD(0.1), batch_size=batch, epochs=1)
            compile_s = time.perf_counter() - t
            h = train(m, Xn, yn, SGD(0.1), batch_size=batch, epochs=1)
            return {"samples_per_s": n / h.time[-1], "ms": h.time[-1] * 1e3,
                    "compile_s": compile_s, "final_loss": h.train_loss[-1]}

        bench.run("small", case, "dlbasics MLP cuda", ours)
        if torch is not None:
            def peer(Xn=Xn, yn=yn, batch=batch, n=n):
                dev = torch.device("cuda")
                torch.manual_seed(0)
                net = torch.nn.Sequential(
                    torch.nn.Linear(sizes[0], sizes[1]), torch.nn.Tanh(),
                    torch.nn.Linear(sizes[1], sizes[2]), torch.nn.Tanh(),
                    torch.nn.Linear(sizes[2], sizes[3])).to(dev)
                opt = torch.optim.SGD(net.parameters(), lr=0.1)
                loss_fn = torch.nn.BCEWithLogitsLoss()
                tX = torch.from_numpy(Xn).to(dev)
                ty = torch.from_numpy(yn).to(dev).view(-1, 1)

                def epoch(count):
                    perm = torch.randperm(count, device=dev)
                    for s in range(0, count, batch):
                        idx = perm[s : s + batch]
                        opt.zero_grad(set_to_none=True)
                        loss = loss_fn(net(tX[idx]), ty[idx])
                        loss.backward()
                        opt.step()

                epoch(min(n, 2 * batch))
                torch.cuda.synchronize()
                t = time.perf_counter()
                epoch(n)
                torch.cuda.synchronize()
                dt = time.perf_counter() - t
                return {"samples_per_s": n / dt, "ms": dt * 1e3}

            bench.run("small", case, "torch cuda", peer)


def launches_per_step(cfg):
    """Kernel launches and cuBLAS calls per training step of both benchmark networks (batch 32,
    or the smoke batch), counted over one epoch after a warm-up."""
    from dlbasics.kernels import gpu_blas, gpu_small
    from dlbasics.kernels import gpu_config as g
    from dlbasics.models import MLP, SGD, train

    rows = []
    batch = 32 if cfg is FULL else 4
    big = dict(activation="relu", output="softmax", loss="cross_entropy")
    small = dict(activation="tanh", output="sigmoid", loss="binary_cross_entropy")
    for sizes, kw, grid in ((cfg["train_sizes"], big, True), (cfg["train_sizes"], big, False),
                            (cfg["small_sizes"], small, True)):
        gpu_small.GRID_ENABLED = grid
        rng = np.random.default_rng(4)
        n = 8 * batch
        X = rng.normal(size=(n, sizes[0])).astype(np.float32)
        y = (rng.integers(0, sizes[-1], size=n) if kw["output"] == "softmax"
             else (X[:, 0] > 0).astype(np.float32))
        m = MLP(sizes, backend="cuda", seed=0, **kw)
        train(m, X, y, SGD(0.01), batch_size=batch, epochs=1)
        counts = {"kernels": 0, "cublas": 0}
        saved = (g.launch, gpu_blas.matmul, gpu_blas.column_sums)

        def counted(fn, key, counts=counts):
            def wrapper(*args, **kwargs):
                counts[key] += 1
                return fn(*args, **kwargs)
            return wrapper

        g.launch = counted(saved[0], "kernels")
        gpu_blas.matmul = counted(saved[1], "cublas")
        gpu_blas.column_sums = counted(saved[2], "cublas")
        try:
            train(m, X, y, SGD(0.01), batch_size=batch, epochs=1)
        finally:
            g.launch, gpu_blas.matmul, gpu_blas.column_sums = saved
            gpu_small.GRID_ENABLED = True
        steps = n // batch
        rows.append({"network": "-".join(map(str, sizes)), "batch": batch,
                     "path": {"block": "one launch, one block", "grid": "one launch, grid",
                              None: "per layer"}[gpu_small.path(sizes, batch) if grid
                                                 else None],
                     "kernels_per_step": counts["kernels"] / steps,
                     "cublas_per_step": counts["cublas"] / steps})
    return rows


def launch_overhead(cfg):
    """Host microseconds per launch of an empty numba-cuda kernel with 1 and 8 device-array
    arguments, and per tiny cuBLAS product through CuPy (what a launch-bound step pays)."""
    global cuda
    from dlbasics.kernels import gpu_blas
    from dlbasics.kernels import gpu_config as g

    cuda = g.require_cuda()
    A = g.array_access()

    @cuda.jit
    def one(a):
        a = A(a)
        if cuda.grid(1) == 0:
            a[0] += 1.0

    @cuda.jit
    def eight(a, b, c, d, e, f, h, k):
        a = A(a)
        if cuda.grid(1) == 0:
            a[0] += 1.0

    arrays = [g.device_zeros(8, np.float32) for _ in range(8)]
    reps = 200 if cfg is FULL else 3
    out = {}
    for name, kernel, args in (("numba_1_array", one, arrays[:1]),
                               ("numba_8_arrays", eight, arrays)):
        kernel[1, 32](*args)
        g.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            kernel[1, 32](*args)
        g.synchronize()
        out[name + "_us"] = (time.perf_counter() - t) / reps * 1e6
    if gpu_blas.available():
        x, y, z = (g.device_zeros((8, 8), np.float32) for _ in range(3))
        gpu_blas.matmul(x, y, z)
        g.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            gpu_blas.matmul(x, y, z)
        g.synchronize()
        out["cupy_matmul_us"] = (time.perf_counter() - t) / reps * 1e6
    return out


def cpu_population_reference():
    """The best 2-core CPU population figure of the speed study (network-samples/s), or None."""
    path = ROOT / "reports" / "benchmarks" / "results.json"
    try:
        data = json.loads(path.read_text())
        best = None
        for per_k in data["population"]["ours_population"].values():
            for row in per_k.values():
                v = float(row["network_samples_per_s"])
                best = v if best is None else max(best, v)
        return best
    except Exception:  # noqa: BLE001 - a missing or reshaped file: no reference
        return None


# ---------------------------------------------------------------------------------------------
# population
# ---------------------------------------------------------------------------------------------


def _population_arrays(cfg, rng):
    from dlbasics.models import MLP, SGD
    from dlbasics.models.mlp import Workspace

    sizes = cfg["pop_sizes"]
    K, n, batch = cfg["pop_networks"], cfg["pop_samples"], cfg["pop_batch"]
    X = rng.normal(size=(n, sizes[0])).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    template = MLP(sizes, activation="tanh", output="sigmoid", loss="binary_cross_entropy")
    Xc = template.check_X(X)
    Y, labels, dense = template.check_y(y, n)
    P = np.stack([MLP(**{**template.config(), "seed": k}).params for k in range(K)])
    w = Workspace(template.sizes, template.keep, batch, template.dtype)
    lrs = np.geomspace(0.01, 1.0, K)
    HP = np.stack([SGD(float(lr)).hyper_vector(np.float32) for lr in lrs])
    arrays = {
        "P": P, "G": np.zeros_like(P), "WS": np.zeros((K, w.ws.size), np.float32),
        "LB": np.zeros((K, batch), np.int64), "HP": HP,
        "S1": np.zeros((K, 0), np.float32), "S2": np.zeros((K, 0), np.float32),
        "S3": np.zeros((K, 0), np.float32), "OUT": np.zeros((K, 4)),
        "orders": np.stack([rng.permutation(n) for _ in range(K)]).astype(np.int64),
    }
    shared = {
        "X": Xc, "Y": Y, "labels": labels, "seeds": np.arange(K, dtype=np.int64),
        "opt_codes": np.zeros(K, np.int64), "T0": np.zeros(K, np.int64),
        "active": np.ones(K, np.bool_),
    }
    return template, w, arrays, shared, dense, lrs


def _population_args(template, w, a, s, dense, batch):
    return (a["P"], a["G"], template.layout, template.codes, template.keep, False,
            template.slope, s["X"], s["Y"], s["labels"], a["orders"], batch, a["WS"], w.offs,
            a["LB"], template.loss_code, template.fused, dense, template.eps, s["seeds"],
            s["opt_codes"], a["HP"], a["S1"], a["S2"], a["S3"], s["T0"], s["active"], a["OUT"])


def bench_population(bench, cfg, torch):
    from dlbasics.kernels import gpu_config as g
    from dlbasics.kernels.gpu_population import gpu_population_epoch
    from dlbasics.models import _core

    rng = np.random.default_rng(2)
    K, n, batch = cfg["pop_networks"], cfg["pop_samples"], cfg["pop_batch"]
    sizes = cfg["pop_sizes"]
    template, w, arrays, shared, dense, lrs = _population_arrays(cfg, rng)
    case = f"{K} x {'-'.join(map(str, sizes))} n={n} b={batch}"
    work = K * n  # network-samples per epoch

    def ours():
        dev = {k: g.to_device(np.ascontiguousarray(v.T)) for k, v in arrays.items()}
        sh = {k: g.to_device(v) for k, v in shared.items()}
        args = _population_args(template, w, dev, sh, dense, batch)

        def epoch():
            gpu_population_epoch(*args, interleaved=True)

        t = time.perf_counter()
        epoch()
        g.synchronize()
        compile_s = time.perf_counter() - t
        best = _best(epoch, cfg["repeat"], g.synchronize)
        out = g.copy_to_host(dev["OUT"]).T
        return {"samples_per_s": work / best, "ms": best * 1e3, "compile_s": compile_s,
                "diverged": int(out[:, 3].sum())}

    bench.run("population", case, "dlbasics numba.cuda", ours)

    if torch is not None:
        def peer():
            dev = torch.device("cuda")
            tX = torch.from_numpy(shared["X"]).to(dev)
            tY = torch.from_numpy(shared["Y"]).to(dev)
            params = []
            for a, b in zip(sizes[:-1], sizes[1:], strict=True):
                params.append((torch.randn(K, a, b, device=dev) * (1 / a) ** 0.5)
                              .requires_grad_())
                params.append(torch.zeros(K, 1, b, device=dev, requires_grad=True))
            lr = torch.from_numpy(lrs.astype(np.float32)).to(dev).view(K, 1, 1)

            def epoch():
                perm = torch.argsort(torch.rand(K, n, device=dev), dim=1)
                for s in range(0, n, batch):
                    idx = perm[:, s : s + batch]
                    h = tX[idx]
                    for li in range(0, len(params), 2):
                        h = torch.baddbmm(params[li + 1], h, params[li])
                        if li < len(params) - 2:
                            h = torch.tanh(h)
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        h, tY[idx], reduction="none").mean(dim=(1, 2)).sum()
                    grads = torch.autograd.grad(loss, params)
                    with torch.no_grad():
                        for p_, g_ in zip(params, grads, strict=True):
                            p_.sub_(lr * g_)

            epoch()
            best = _best(epoch, cfg["repeat"], torch.cuda.synchronize)
            return {"samples_per_s": work / best, "ms": best * 1e3}

        bench.run("population", case, "torch cuda (bmm)", peer)

    def cpu():
        if cfg is SMOKE:  # compiling the parallel CPU kernel for new types takes ~30 s
            return {"status": "skipped (smoke)"}
        a = {k: v.copy() for k, v in arrays.items()}
        args = (_core.net_record(template, _core.NO_BLAS, _core.NO_BLAS, 0, _core.NO_BLAS),
                _core.data_record(shared["X"], shared["Y"], shared["labels"], dense), batch,
                w.offs, (a["P"], a["G"], a["WS"], a["LB"], a["orders"], shared["seeds"],
                         shared["opt_codes"], a["HP"], a["S1"], a["S2"], a["S3"], shared["T0"],
                         shared["active"], a["OUT"]))  # the fields of _core.Population
        _core.population_epoch_kernel(*args)
        best = _best(lambda: _core.population_epoch_kernel(*args), cfg["repeat"], lambda: None)
        import numba

        return {"samples_per_s": work / best, "ms": best * 1e3,
                "threads": numba.get_num_threads()}

    # compiling the parallel CPU kernel can take ~30 s on a fresh machine: last, with a margin
    bench.run("population", case, "dlbasics cpu prange", cpu, need_s=60.0)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def _environment(smoke):
    from dlbasics.kernels import gpu_config as g

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "smoke": smoke,
        "simulator": g.simulator_enabled(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    try:
        env["device"] = g.device_name()
    except RuntimeError as exc:
        env["device"] = f"unavailable: {exc}"
    for mod in ("numpy", "numba", "numba_cuda", "torch"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional packages
            env[mod] = None
    return env


def write_report(out_dir, env, results):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_bench.json").write_text(
        json.dumps({"environment": env, "results": results}, indent=2, default=float) + "\n"
    )
    lines = [
        "# GPU benchmark",
        "",
        f"Device: {env.get('device')}; numba {env.get('numba')}, numba-cuda "
        f"{env.get('numba_cuda')}, torch {env.get('torch')}; "
        f"{'smoke sizes' if env['smoke'] else 'full sizes'}"
        f"{', CUDA simulator (timings meaningless)' if env['simulator'] else ''}.",
        "",
        f"Command: `{env['command']}` ({env['time']})",
        "",
        "| section | case | implementation | ms | samples/s | GFLOP/s | compile s | status |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]

    def fmt(row, key, spec):
        return format(row[key], spec) if key in row else ""

    for r in results:
        lines.append(
            f"| {r['section']} | {r['case']} | {r['impl']} | {fmt(r, 'ms', '.3f')} | "
            f"{fmt(r, 'samples_per_s', ',.0f')} | {fmt(r, 'gflops', '.1f')} | "
            f"{fmt(r, 'compile_s', '.1f')} | {r['status'].replace('|', '/')} |"
        )
    if env.get("dense_route"):
        lines += ["", f"Dense products: {env['dense_route']}."]
    overhead = env.get("launch_overhead")
    if overhead:
        lines += ["", "Host time per launch (empty kernel, mean of a loop): " + ", ".join(
            f"{k.removesuffix('_us').replace('_', ' ')} {v:.1f} us" for k, v in overhead.items())]
    launches = env.get("launches_per_step")
    if launches:
        lines += ["", "Launches per training step (one epoch counted, plain SGD):", "",
                  "| network | batch | path | kernel launches | cuBLAS calls |",
                  "| --- | ---: | --- | ---: | ---: |"]
        for r in launches:
            lines.append(f"| {r['network']} | {r['batch']} | {r.get('path', '')} | "
                         f"{r['kernels_per_step']:.3g} | {r['cublas_per_step']:.3g} |")
    goals = goal_rows(results, env.get("cpu_population_reference"))
    if goals:
        lines += ["", "Goals (issue 18; float32, PyTorch CUDA with TF32 off, ratios from this "
                  "run):", "", "| goal | ratio | target | met |", "| --- | ---: | ---: | --- |"]
        for gname, ratio, target in goals:
            shown = "n/a" if ratio is None else f"{ratio:.2f}x"
            met = "n/a" if ratio is None else ("**met**" if ratio >= target else "missed")
            lines.append(f"| {gname} | {shown} | {target}x | {met} |")
    errs = [r for r in results if "max_rel_err" in r]
    if errs:
        lines += ["", "Dense forward output against float64 NumPy (max error relative to the "
                  "largest output): " + ", ".join(f"{r['case']}: {r['max_rel_err']:.2e}"
                                                  for r in errs)]
    table = ROOT / "reports" / "benchmarks" / "gpu" / "ptxas_sm90.md"
    if table.is_file():
        body = table.read_text().split("\n", 2)[-1]
        lines += ["", "## Registers and spills per kernel (ptxas, sm_90; from "
                  "`python -m tests.gpu.compile_all --out reports/benchmarks/gpu`)", "", body]
    (out_dir / "gpu_bench.md").write_text("\n".join(lines) + "\n")


def _rate(results, section, case_prefix, impl_prefix, key):
    """The best ``key`` (largest rate, smallest ``ms``) of the matching rows, or None."""
    found = [float(r[key]) for r in results
             if r["section"] == section and r["case"].startswith(case_prefix)
             and r["impl"].startswith(impl_prefix) and r.get("status") == "ok" and key in r]
    if not found:
        return None
    return min(found) if key == "ms" else max(found)


def goal_rows(results, cpu_reference):
    """``(goal, ratio or None, target)`` of the issue-18 goals found in ``results``."""
    goals = []

    def ratio(num, den):
        return None if num is None or den is None or den == 0 else num / den

    dense = [r["case"] for r in results if r["section"] == "dense" and "b=4096" in r["case"]]
    if dense:
        case = dense[0]
        goals.append(("dense forward+backward, batch 4096 (PyTorch ms / ours ms)",
                      ratio(_rate(results, "dense", case, "torch", "ms"),
                            _rate(results, "dense", case, "dlbasics", "ms")), 0.8))
    for section, prefix, batches, target in (("training", "784-256-256-10", (32, 1024), 1.0),
                                              ("small", "2-16-16-1", (1, 8, 32), 3.0)):
        for b in batches:
            case = f"{prefix} b={b} "
            if any(r["case"].startswith(case) for r in results):
                goals.append((f"{prefix} training, batch {b} (samples/s vs PyTorch)",
                              ratio(_rate(results, section, case, "dlbasics", "samples_per_s"),
                                    _rate(results, section, case, "torch", "samples_per_s")),
                              target))
    pop = [r for r in results if r["section"] == "population" and r["case"].startswith("4096 ")]
    if pop:
        goals.append(("population of 4096 2-16-16-1 (vs our best 2-core CPU population)",
                      ratio(_rate(results, "population", "4096 ", "dlbasics numba",
                                  "samples_per_s"), cpu_reference), 20.0))
    return goals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (logic check)")
    parser.add_argument("--out", default=None, help="output folder (default $OUT or "
                        "reports/benchmarks/gpu)")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds after which remaining cases are skipped (default 300)")
    parser.add_argument("--sections", default="dense,small,training,population",
                        help="comma-separated subset of dense,training,small,population")
    args = parser.parse_args(argv)
    out_dir = Path(args.out or os.environ.get("OUT") or ROOT / "reports" / "benchmarks" / "gpu")
    cfg = SMOKE if args.smoke else FULL

    from dlbasics.kernels import gpu_config as g

    g.require_cuda()  # a clear error now rather than one per case
    env = _environment(args.smoke)
    print(f"device: {env['device']}; output: {out_dir}", flush=True)
    torch = _torch_cuda()
    bench = Bench(args.budget, on_result=lambda rows: write_report(out_dir, env, rows))
    from dlbasics.kernels import gpu_blas

    env["dense_route"] = gpu_blas.status()
    env["cpu_population_reference"] = cpu_population_reference()
    print(env["dense_route"], flush=True)
    try:
        env["launch_overhead"] = launch_overhead(cfg)
        print("launch overhead:", env["launch_overhead"], flush=True)
    except Exception as exc:  # noqa: BLE001 - a benchmark records failures and goes on
        env["launch_overhead"] = {}
        print(f"launch overhead failed: {type(exc).__name__}: {exc}", flush=True)
    try:
        env["launches_per_step"] = launches_per_step(cfg)
        print("launches per step:", env["launches_per_step"], flush=True)
    except Exception as exc:  # noqa: BLE001 - a benchmark records failures and goes on
        env["launches_per_step"] = []
        print(f"launch count failed: {type(exc).__name__}: {exc}", flush=True)
    sections = {"dense": bench_dense, "training": bench_training, "small": bench_small,
                "population": bench_population}
    for name in args.sections.split(","):
        sections[name.strip()](bench, cfg, torch)
    env["total_s"] = round(time.perf_counter() - bench.t0, 1)
    write_report(out_dir, env, bench.results)
    print(f"wrote {out_dir / 'gpu_bench.json'} and {out_dir / 'gpu_bench.md'}", flush=True)
    failed = [r for r in bench.results if r["status"].startswith("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
