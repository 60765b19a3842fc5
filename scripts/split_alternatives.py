"""Two other ways of sharing a default digits fit between two threads, against the row split
that the estimators use (``scripts/split_scaling.py`` measures how far that one is from perfect).

Run: ``python scripts/split_alternatives.py [PROCESSES] [FITS]`` (defaults 6 and 10; about 6 s a
process). Each configuration runs in processes of its own, ``PROCESSES`` of each, in alternations of
one process of every configuration, in an order rotated every alternation, each process timing
``FITS`` fits of ``dlbasics.models.MLPClassifier`` on standardised digits (float32, ``max_iter=100``
epochs, ``n_iter_no_change=101`` so that every fit runs them all, ``random_state=0``) after a
compiling fit, every fit after the speed report's pause
(:data:`dlbasics.studies.speed.sklearn_fit.PAUSE_S`); each process prints its fastest and median
fit, the final loss (the bits differ where the sums' order does) and the cross-core handoff
(:func:`dlbasics.studies.speed.limits.core_latency_ns`) before and after its fits (the 2-vCPU
benchmark machine has a fast state, about 25-40 ns, and a slow one, 150-175 ns, in which two-thread
fits are slower). At the end, per configuration, the range and median of its processes' fastest
fits, and for each alternative the alternations in which its process's fastest fit was slower than
that of the configuration it replaces. Configurations:

* ``adam-2``, ``sgd-2``: the default fit (each batch of 200 rows in
  :data:`~dlbasics.kernels.config.SPLIT_CHUNKS` = 2 row chunks, one thread each);
* ``adam-4``, ``sgd-4``: the same with four row chunks of at most 50 rows, two a thread (other
  bits);
* ``plain-rows``, ``plain-cols``: plain SGD (``momentum=0``, ``alpha=0``: what the column split
  trains), one epoch a call through the ``train`` loop (the column split has no many-epoch
  call), each batch in two row chunks, or with each layer's units split between the threads
  (:mod:`dlbasics.kernels.colsplit`, forced here: the backend takes it for batches of at most
  :data:`~dlbasics.kernels.config.COL_SPLIT_MAX_ROWS` rows through networks of at least
  :data:`~dlbasics.kernels.config.COL_SPLIT_MIN_PARAMS` = 32,768 parameters and of at least
  :data:`~dlbasics.kernels.config.COL_SPLIT_MIN_WORK` = 1,572,864 rows x parameters, and
  digits' 64-100-10 has 7,510, 1,502,000 at 200 rows).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings

import numpy as np

CONFIGS = ("adam-2", "adam-4", "sgd-2", "sgd-4", "plain-rows", "plain-cols")
#: Each alternative and the configuration it replaces.
AGAINST = {"adam-4": "adam-2", "sgd-4": "sgd-2", "plain-cols": "plain-rows"}


def child(config, fits):
    """Time ``fits`` fits of ``config`` in this process; print one JSON line."""
    from sklearn.exceptions import ConvergenceWarning

    from dlbasics.models import MLPClassifier, backends
    from dlbasics.studies.speed.limits import core_latency_ns
    from dlbasics.studies.speed.sklearn_fit import PAUSE_S, data

    kind, _, variant = config.partition("-")
    params = dict(max_iter=100, n_iter_no_change=101, random_state=0)
    if kind == "plain":
        params.update(solver="sgd", momentum=0.0, alpha=0.0)
        backends.CpuBackend.runs_epochs = lambda self, batch, code, alpha: False
        if variant == "cols":
            backends.COL_SPLIT_MAX_ROWS = 256
            backends.COL_SPLIT_MIN_PARAMS = 0
            backends.COL_SPLIT_MIN_WORK = 0
    else:
        params.update(solver=kind)
        backends.SPLIT_CHUNKS = int(variant)
    X, y = data("digits")
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(**params).fit(X, y)  # compile or load, untimed
        before = core_latency_ns()
        for _ in range(fits):
            est = MLPClassifier(**params)
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            est.fit(X, y)
            times.append(time.perf_counter() - t0)
        after = core_latency_ns()
    print(json.dumps(dict(config=config, fastest_ms=1e3 * min(times),
                          median_ms=1e3 * float(np.median(times)), loss=repr(est.loss_),
                          handoff_ns=[before, after])))


def main(processes=6, fits=10):
    """Run ``processes`` processes of every configuration, alternating; print each process's
    line and the summary (the module's docstring)."""
    fastest = {c: [] for c in CONFIGS}
    for k in range(processes):
        for config in CONFIGS[k % len(CONFIGS):] + CONFIGS[:k % len(CONFIGS)]:
            run = subprocess.run([sys.executable, __file__, "--child", config, str(fits)],
                                 capture_output=True, text=True, check=True)
            rec = json.loads(run.stdout.strip().splitlines()[-1])
            shown = "/".join("-" if ns is None else f"{ns:.0f}" for ns in rec["handoff_ns"])
            print(f"{config}: fastest {rec['fastest_ms']:.1f} ms, median {rec['median_ms']:.1f} "
                  f"ms, loss {rec['loss']}, handoff {shown} ns", flush=True)
            fastest[config].append(rec["fastest_ms"])
    for config in CONFIGS:
        ms = fastest[config]
        print(f"{config}: fastest fits of its {processes} processes {min(ms):.1f}-{max(ms):.1f} "
              f"ms, median {np.median(ms):.2f} ms")
    for config, base in AGAINST.items():
        ratios = np.array(fastest[config]) / np.array(fastest[base])
        print(f"{config} against {base}: slower in {int(np.sum(ratios > 1))} of {processes} "
              f"alternations, ratios of the fastest fits {ratios.min():.2f}-{ratios.max():.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main(*(int(a) for a in sys.argv[1:3]))
