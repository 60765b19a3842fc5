"""One worker process of the speed benchmark: ``python -m dlbasics.studies.speed.worker SPEC OUT``.

``SPEC`` is a JSON file naming the job (``kind``: ``train``, ``scaling`` (the width sweep: a
``train`` job over the networks of :mod:`.scaling`), ``population``, ``coldstart``, ``fma``,
``gemm`` or ``bandwidth``) and its settings; the worker writes its results to the JSON file ``OUT``
after every configuration, so a worker stopped by a timeout still leaves what it measured.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

T_START = time.perf_counter()


class Sink:
    """The worker's result document, rewritten to ``path`` on every change."""

    def __init__(self, path, spec):
        self.path = path
        self.doc = {"spec": spec, "ok": False, "error": None, "info": {}, "results": {},
                    "pid": os.getpid()}
        self.flush()

    def put(self, keys, value):
        d = self.doc["results"]
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = value
        self.flush()

    def flush(self):
        from .common import peak_rss_mb

        self.doc["peak_rss_mb"] = peak_rss_mb()
        self.doc["worker_s"] = time.perf_counter() - T_START
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=1)
        os.replace(tmp, self.path)


def _batch_label(b):
    return str(b)


def _single_runner(framework, net, X, y, variant=None):
    if framework in ("cpu", "numpy", "cuda"):
        from . import ours

        return ours.Single(net, framework, X, y)
    if framework == "torch":
        from . import peer_torch

        return peer_torch.Single(net, X, y)
    if framework == "jax":
        from . import peer_jax

        return peer_jax.Single(net, X, y, scan=variant == "jax_scan")
    if framework == "sklearn":
        from . import peer_sklearn

        return peer_sklearn.Single(net, X, y)
    raise ValueError(f"unknown framework {framework!r}")


def _framework_info(framework):
    """Import the framework (timed) and describe it; raises ``ImportError`` if absent."""
    t0 = time.perf_counter()
    if framework in ("cpu", "numpy", "cuda", "ours"):
        import numba

        from ... import models  # noqa: F401

        info = {"version": numba.__version__, "numba_threads": numba.get_num_threads(),
                "threading_layer_env": os.environ.get("NUMBA_THREADING_LAYER", "default")}
        if framework == "cuda":
            from .ours import cuda_available

            ok, what = cuda_available()
            info["cuda"] = what
            if not ok:
                info["import_s"] = time.perf_counter() - t0
                info["skipped"] = what
                return info
    elif framework == "torch":
        from .peer_torch import setup_threads

        info = setup_threads()
    elif framework == "jax":
        from .peer_jax import version

        info = version()
    elif framework == "sklearn":
        from .peer_sklearn import version

        info = version()
    else:
        raise ValueError(f"unknown framework {framework!r}")
    info["import_s"] = time.perf_counter() - t0
    return info


def run_train(spec, sink):
    from .common import FULL, make_data, measure, sync_print

    framework = spec["framework"]
    info = _framework_info(framework)
    sink.doc["info"] = info
    if info.get("skipped"):
        sink.doc["skipped"] = info["skipped"]
        return
    variants = spec.get("variants") or [framework]
    for net, cfg in spec["nets"].items():
        pool = max(cfg["n_max"], cfg.get("full_n") or 0)
        X, y = make_data(net, pool)
        for variant in variants:
            for b in cfg["batches"]:
                if b == FULL:
                    batch, n_max, label = cfg["full_n"], cfg["full_n"], FULL
                else:
                    batch, n_max, label = int(b), cfg["n_max"], _batch_label(b)
                runner = _single_runner(framework, net, X, y, variant)
                runner.reset()
                m = measure(lambda n, seed, wl, r=runner, bt=batch: r.epoch(bt, n, seed, wl),
                            batch, n_max, spec["target_s"], spec["repeats"],
                            first_steps=1 if label == FULL else spec["first_steps"],
                            compiles_per_size=variant == "jax_scan")
                if hasattr(runner, "walls"):
                    m["call_wall_s_last"] = runner.walls[-1]
                m["full_batch"] = label == FULL
                sink.put([variant, net, label], m)
                sync_print(f"{variant:9s} {net:15s} batch {label:>6s}: "
                           f"{m['samples_per_s']:12.0f} samples/s (n={m['n']})")
                del runner


def run_population(spec, sink):
    from .common import make_data, measure, sync_print

    framework = spec["framework"]
    info = _framework_info(framework)
    sink.doc["info"] = info
    net = spec["net"]
    X, y = make_data(net, spec["n_max"])
    for variant in spec["variants"]:
        for K in spec["Ks"]:
            for batch in spec["batches"]:
                if variant == "ours_population":
                    from .ours import Population as runner_cls
                elif variant == "ours_sequential":
                    from .ours import Sequential as runner_cls
                elif variant == "jax_vmap":
                    from .peer_jax import Population as runner_cls
                elif variant == "torch_vmap":
                    from .peer_torch import Population as runner_cls
                else:
                    raise ValueError(f"unknown population variant {variant!r}")
                runner = runner_cls(net, K, X, y)
                m = measure(lambda n, seed, wl, r=runner, bt=batch: r.epoch(bt, n, seed, wl),
                            batch, spec["n_max"], spec["target_s"], spec["repeats"],
                            first_steps=spec["first_steps"])
                m["K"] = K
                m["network_samples_per_s"] = m["samples_per_s"] * K
                sink.put([variant, str(K), str(batch)], m)
                sync_print(f"{variant:16s} K={K:4d} batch {batch:4d}: "
                           f"{m['network_samples_per_s']:12.0f} network-samples/s (n={m['n']})")
                del runner


def run_coldstart(spec, sink):
    from .common import make_data, sync_print

    framework = spec["framework"]
    info = _framework_info(framework)
    sink.doc["info"] = info
    net, batch, n = spec["net"], spec["batch"], spec["n"]
    t0 = time.perf_counter()
    X, y = make_data(net, n)
    t1 = time.perf_counter()
    runner = _single_runner(framework, net, X, y)
    runner.reset()
    t2 = time.perf_counter()
    runner.epoch(batch, n, 0, False)
    t3 = time.perf_counter()
    runner.epoch(batch, n, 1, False)
    t4 = time.perf_counter()
    res = {"net": net, "batch": batch, "n": n, "import_s": info["import_s"], "data_s": t1 - t0,
           "build_s": t2 - t1, "first_epoch_s": t3 - t2, "second_epoch_s": t4 - t3,
           "to_first_epoch_end_s": t3 - T_START}
    sink.put(["coldstart"], res)
    sync_print(f"coldstart {framework}: first epoch {res['first_epoch_s']:.3f} s, "
               f"second {res['second_epoch_s']:.3f} s")


def run_fma(spec, sink):
    from .limits import fma_peak, set_vector_width

    set_vector_width(spec["bits"])
    sink.put(["fma"], fma_peak(spec["bits"], [tuple(c) for c in spec["configs"]],
                               spec["seconds"], spec["repeats"]))


def run_gemm(spec, sink):
    from .limits import gemm_rate

    sink.put(["gemm"], gemm_rate(spec["lib"], spec["sizes"], spec["repeats"]))


def run_bandwidth(spec, sink):
    from .limits import memory_bandwidth

    sink.put(["bandwidth"], memory_bandwidth(spec["mib"], spec["repeats"]))


JOBS = {"train": run_train, "scaling": run_train, "population": run_population,
        "coldstart": run_coldstart, "fma": run_fma, "gemm": run_gemm,
        "bandwidth": run_bandwidth}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m dlbasics.studies.speed.worker SPEC.json OUT.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        spec = json.load(f)
    sink = Sink(argv[1], spec)
    try:
        JOBS[spec["kind"]](spec, sink)
        sink.doc["ok"] = True
    except ImportError as exc:
        sink.doc["skipped"] = f"not installed: {exc}"
        sink.doc["ok"] = True
    except Exception:  # noqa: BLE001 - reported to the parent, which records it
        sink.doc["error"] = traceback.format_exc()
    sink.flush()
    return 0 if sink.doc["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
