"""Default ``MLPClassifier`` fits of digits, each after a cross-core probe: does the fit time
follow where the machine's two CPUs sit?

Run: ``python scripts/core_latency_fits.py [SECONDS]`` (default 120). Fits a default
``dlbasics.models.MLPClassifier`` (adam, 100 epochs, float32, two threads) on standardised
digits again and again for ``SECONDS``, calling
:func:`dlbasics.studies.speed.limits.core_latency_ns` before each fit, and prints every pair
and, for the fits after a probe at or below and above 100 ns, their count and the fastest,
median and slowest fit.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np


def main(seconds=120.0):
    """Fit for ``seconds``, a probe before each fit; print each pair and the summary."""
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler

    from dlbasics.models import MLPClassifier
    from dlbasics.studies.speed.limits import core_latency_ns

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(max_iter=100, random_state=0).fit(X, y)  # compile or load
        pairs = []
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            ns = core_latency_ns()
            t0 = time.perf_counter()
            MLPClassifier(max_iter=100, random_state=0).fit(X, y)
            pairs.append((ns, time.perf_counter() - t0))
            shown = "-" if ns is None else f"{ns:.0f}"
            print(f"{len(pairs):4d}  handoff {shown:>5} ns  fit {1e3 * pairs[-1][1]:6.1f} ms",
                  flush=True)
    for name, keep in (("<= 100 ns", lambda ns: ns is not None and ns <= 100),
                       ("> 100 ns", lambda ns: ns is not None and ns > 100),
                       ("not measured", lambda ns: ns is None)):
        fits = np.array([f for ns, f in pairs if keep(ns)]) * 1e3
        if fits.size:
            print(f"after a handoff {name}: {fits.size} fits, {fits.min():.1f} / "
                  f"{np.median(fits):.1f} / {fits.max():.1f} ms (fastest / median / slowest)")
        else:
            print(f"after a handoff {name}: no fits")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 120.0)
