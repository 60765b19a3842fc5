"""``fit`` time of our drop-in estimators against scikit-learn's, at the same settings.

:func:`measure` fits ``dlbasics.models.MLPClassifier`` and ``sklearn.neural_network.
MLPClassifier`` with the same parameters (scikit-learn's defaults: one hidden layer of 100 ReLU
units, ``alpha=1e-4``, ``batch_size="auto"``; the same ``random_state``) on standardised digits
(1,797 x 64, 10 classes) and on a synthetic set of 100,000 x 20 (4 classes,
``make_classification``), for each solver, and times each ``fit`` in the same process, in
rounds: one fit of each estimator per round, in an order that changes from round to round, so
that each estimator's fits are spread over the same minutes (the 2-core machines of this
project change speed for seconds at a time; fits timed in blocks, one estimator after the
other, put a whole block in a slow spell). Every fit runs exactly ``max_iter`` epochs
(``n_iter_no_change=max_iter``, so the stopping rule never fires) or, for ``lbfgs``,
``max_iter`` iterations, so both do the same work. Ours trains in float32 (its default
``dtype``) and, in a second column, in float64 as scikit-learn does. Our compile time is
excluded by a short untimed fit first. Each timed fit starts after a pause (:data:`PAUSE_S`),
and the cross-core handoff (:func:`.limits.core_latency_ns`) is probed before and after each
case, as a marker of the machine's state.

Run: ``python -m dlbasics.studies.speed.sklearn_fit [OUT.json] [--quick]``; :func:`section`
renders the records as the speed report's Markdown section.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from datetime import datetime, timezone

#: (data set, solver, max_iter) measured by the full profile.
CASES = (("digits", "adam", 100), ("digits", "sgd", 100), ("digits", "lbfgs", 100),
         ("synthetic-100k", "adam", 5), ("synthetic-100k", "sgd", 5),
         ("synthetic-100k", "lbfgs", 10))
#: The quick profile's cases (a few seconds).
QUICK_CASES = (("digits", "adam", 10), ("digits", "lbfgs", 10), ("synthetic-100k", "sgd", 1))


def data(name):
    """``(X, y)`` of a data set of :data:`CASES`, standardised."""
    from sklearn.datasets import load_digits, make_classification
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        X, y = load_digits(return_X_y=True)
    else:
        X, y = make_classification(n_samples=100_000, n_features=20, n_informative=12,
                                   n_classes=4, random_state=0)
    return StandardScaler().fit_transform(X), y


def _fit_seconds(est, X, y, repeats=1):
    """The fastest of ``repeats`` fits: ``(wall seconds, CPU seconds of this process, the
    estimator)``."""
    best = (float("inf"), float("inf"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            est.fit(X, y)
            best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    return best[0], best[1], est


#: Rounds per case in the full profile (one fit of each estimator a round); each estimator's
#: fastest fit counts.
REPEATS = 5

#: Seconds of sleep before each timed fit. On the 2-core benchmark machine a default digits
#: ``fit`` of ours (adam, 100 epochs, float32) took 106-149 ms right after a fit of
#: scikit-learn's with BLAS on its default threads, 81-112 ms after 0.05 s of sleep, 53-84
#: after 0.1 s, 52-61 after 0.2 s and 52-54 after 0.4 s (2.0-2.9x down to 1x; five fits each,
#: one process), and 53-59 ms right after scikit-learn's fit with one BLAS thread, with or
#: without a pause: presumably OpenBLAS's threads keep spinning on the second core for 0.1-0.2
#: s after their last work before they sleep, and a fit of ours on both cores shares one with
#: them. Every timed fit, of every estimator, starts after the same pause, so that none starts
#: while the last fit's BLAS threads spin. In the rounds' orders (:func:`round_order`) ours
#: follows scikit-learn's default fit directly in one round of four, so the fastest of five
#: fits mostly left those out before the pause too.
PAUSE_S = 0.3

#: The estimators of a round.
ROUND = ("sklearn", "sklearn_1thread", "ours", "ours64")
#: The orders of rounds 0-3 (then again), as indices into :data:`ROUND`: a Williams square,
#: in which each estimator comes first once and follows each other estimator once.
ORDERS = ((0, 1, 3, 2), (1, 2, 0, 3), (2, 3, 1, 0), (3, 0, 2, 1))


def round_order(k):
    """The estimators of round ``k`` (:data:`ORDERS`): over four rounds each estimator comes
    first once and follows each of the others once (a fit may leave BLAS threads spinning, or
    the caches full of its data, for the next)."""
    return tuple(ROUND[i] for i in ORDERS[k % len(ORDERS)])


def measure(cases=CASES, random_state=0, repeats=REPEATS, pause=PAUSE_S):
    """Time ``fit`` of ours (float32, float64) and scikit-learn's per case (``repeats``
    rounds of one fit of each, in the orders of :func:`round_order`, each timed fit after
    ``pause`` seconds of sleep (:data:`PAUSE_S`); the fastest fit of each counts: on a shared
    machine the others' load only ever slows a fit down, and the 2-core machines of this
    project change speed for a few seconds at a time, two threads more than one).

    Returns
    -------
    list of dict
        ``data, rows, solver, max_iter, sklearn_s, ours_s, ours64_s, ratio, ratio64``,
        ``sklearn_1thread_s`` (its BLAS limited to one thread), ``ratio_1thread``, CPU times and
        ``cpu_ratio`` (ratios are scikit-learn's time over ours) and each estimator's training
        accuracy.
    """
    from sklearn.neural_network import MLPClassifier as Theirs
    from threadpoolctl import threadpool_limits

    from ...models import MLPClassifier as Ours

    records = []
    for name, solver, max_iter in cases:
        handoff0 = _handoff_ns()
        load0 = os.getloadavg()[0]
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        X, y = data(name)
        params = dict(solver=solver, max_iter=max_iter, n_iter_no_change=max_iter + 1,
                      random_state=random_state)
        for dtype in ("float32", "float64"):  # compile (or load from the cache) untimed
            _fit_seconds(Ours(dtype=dtype, **dict(params, max_iter=1)), X[:500], y[:500])
        ests = {"sklearn": Theirs(**params), "sklearn_1thread": Theirs(**params),
                "ours": Ours(**params), "ours64": Ours(dtype="float64", **params)}
        best = dict.fromkeys(ests, (float("inf"), float("inf")))
        for k in range(repeats):
            for which in round_order(k):
                time.sleep(pause)  # the last fit's BLAS threads stop spinning (PAUSE_S)
                if which == "sklearn_1thread":
                    with threadpool_limits(limits=1, user_api="blas"):
                        wall, cpu, _ = _fit_seconds(ests[which], X, y)
                else:
                    wall, cpu, _ = _fit_seconds(ests[which], X, y)
                best[which] = min(best[which], (wall, cpu))
        (t_sk, c_sk), (t_sk1, _), (t32, c32), (t64, _) = (best[w] for w in ROUND)
        sk, o32, o64 = ests["sklearn"], ests["ours"], ests["ours64"]
        records.append({
            "data": name, "rows": int(X.shape[0]), "solver": solver, "max_iter": max_iter,
            "sklearn_s": t_sk, "ours_s": t32, "ours64_s": t64, "ratio": t_sk / t32,
            "ratio64": t_sk / t64, "sklearn_1thread_s": t_sk1, "ratio_1thread": t_sk1 / t32,
            "sklearn_cpu_s": c_sk, "ours_cpu_s": c32,
            "cpu_ratio": c_sk / c32, "sklearn_acc": float(sk.score(X, y)),
            "ours_acc": float(o32.score(X, y)), "ours64_acc": float(o64.score(X, y)),
            "n_iter": [int(sk.n_iter_), int(o32.n_iter_), int(o64.n_iter_)],
            "started": started, "load_before": load0, "load_after": os.getloadavg()[0],
            "cpus": os.cpu_count(), "repeats": repeats, "rounds": True, "pause_s": pause,
            "core_latency_ns": [handoff0, _handoff_ns()],
        })
    return records


def _handoff_ns():
    """The cross-core handoff now (:func:`.limits.core_latency_ns`, ns: a marker of the
    machine's state, taken before and after each case), ``None`` where it cannot be measured
    or the probe fails (a marker, not a measurement of the study: nothing stops for it)."""
    from .limits import core_latency_ns

    try:
        return core_latency_ns()
    except Exception:  # any failure: see the docstring
        return None


def _fits(n, rounds=False, pause=None):
    """How the fits were timed: in ``n`` rounds (``rounds``; the records of this module; each
    timed fit after ``pause`` seconds of sleep, where the record says so) or, in records made
    before the rounds, one estimator after the other."""
    words = {2: "two", 3: "three", 4: "four", 5: "five"}
    if rounds:
        slept = ""
        if pause:
            slept = (f", each timed fit after {pause:g} s of sleep (in a separate measurement "
                     "on the 2-core benchmark machine, a digits fit of ours that started right "
                     "after scikit-learn's fit with BLAS on its default threads took 2.0-2.9x "
                     "as long as one after 0.4 s, presumably while OpenBLAS's threads spun on "
                     "the second core; the fastest of the rounds mostly left such fits out "
                     "before the pause too)")
        if n == 1:
            return f"in one process, one fit each, one estimator after the other{slept}"
        return (f"in one process, in {words.get(n, str(n))} rounds of one fit of each "
                "estimator (in orders where each comes first once and follows each other once "
                "in four rounds, so that each estimator's fits are spread over the same "
                f"minutes){slept}, the fastest fit of each")
    if n == 1:
        return "one after the other in one process, one fit each"
    return f"one after the other in one process, the fastest of {words.get(n, str(n))} fits each"


def section(records):
    """The speed report's Markdown section for :func:`measure`'s records."""
    if not records:
        return ("## Drop-in estimators against scikit-learn\n\nNot measured in this run "
                "(scikit-learn missing or the measurement failed).")
    rows = ["| data | solver | max_iter (ran: sklearn / ours / ours64) | scikit-learn "
            "| ours float32 | ratio | ours float64 | ratio | CPU-time ratio "
            "| scikit-learn, BLAS on 1 thread | ratio | conservative ratio | goal "
            "| train accuracy (sklearn / ours / ours64) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
            "| --- |"]
    for r in records:
        ran = " / ".join(str(n) for n in r["n_iter"]) if r.get("n_iter") else "-"
        low = min(r["ratio"], r["ratio_1thread"])
        if r["solver"] == "lbfgs":
            goal = "faster: " + ("met" if low > 1.0 else "missed")
        else:
            goal = ">= 10x: " + ("met" if low >= 10.0 else "missed")
        rows.append(
            f"| {r['data']} ({r['rows']:,} rows) | {r['solver']} | {r['max_iter']} ({ran}) "
            f"| {r['sklearn_s']:.2f} s | {r['ours_s']:.3f} s | {r['ratio']:.1f}x "
            f"| {r['ours64_s']:.3f} s | {r['ratio64']:.1f}x "
            f"| {r['cpu_ratio']:.1f}x "
            f"| {r['sklearn_1thread_s']:.2f} s | {r['ratio_1thread']:.1f}x "
            f"| **{low:.1f}x** | {goal} "
            f"| {r['sklearn_acc']:.3f} / {r['ours_acc']:.3f} / {r['ours64_acc']:.3f} |")
    first, last = records[0], records[-1]
    when = ""
    if "started" in first:
        loads = [r[k] for r in records for k in ("load_before", "load_after")]
        when = (f"\n\nMeasured from {first['started']} ({last['started']} for the last case) on "
                f"{first['cpus']} CPUs; the 1-minute load average (other programs included) "
                f"was {min(loads):.1f} to {max(loads):.1f} during the fits.")
        when += _handoffs(records)
    return ("## Drop-in estimators against scikit-learn\n\n"
            "`fit` of `dlbasics.models.MLPClassifier` against `sklearn.neural_network."
            "MLPClassifier` with the same parameters (defaults: 100 ReLU units, alpha 1e-4, "
            "batch 'auto' = 200, random_state 0; adam and sgd run the full `max_iter`, lbfgs "
            "stops where it converges: the iterations each ran are in the table), "
            f"{_fits(first.get('repeats', 2), first.get('rounds', False), first.get('pause_s'))} "
            "(`dlbasics.studies.speed.sklearn_fit`). "
            "Ratio: scikit-learn's time over ours; "
            "ours in float32 (its default) and float64 (scikit-learn's precision). Ours splits "
            "every training batch of 64 rows or more (batch 'auto' = 200, and the chunks of "
            "lbfgs's passes) into two row chunks, one thread and one BLAS thread each, so "
            "it uses both cores, and runs adam's and sgd's epochs in compiled calls of about a "
            "quarter of a second, on threads that stay together for the call (the visiting "
            "orders' shuffles and the stopping rule compiled too: "
            "`dlbasics.models.training.train_epochs`); scikit-learn's BLAS threads only "
            "products large enough for "
            "it (where its CPU time equals its wall time it ran on one core). The CPU-time "
            "ratio (float32, all threads of the process) compares the work done: where ours "
            "used both cores and scikit-learn one, it is about half the wall-time ratio; where "
            "scikit-learn's CPU time exceeds its wall time (its BLAS threads ran), their "
            "waiting for work may count as work too. "
            "scikit-learn is also timed with BLAS on one thread, often its faster setting on "
            "small products; the conservative ratio is the smaller of the two wall-time "
            "ratios, and the goal is judged on it: "
            "at least 10x with adam and sgd, faster with lbfgs.\n\n" + "\n".join(rows) + when)


#: A cross-core handoff above this many ns (and up to ``report.FAR_NS``) is named apart: the
#: report's cross-core paragraph describes 25-33 ns and 156-175 ns, nothing between.
NEAR_NS = 40.0


def _handoffs(records):
    """The sentence on the cross-core handoff before and after each case (records with the
    probe; empty for those before it)."""
    from .report import FAR_NS

    probed = [r for r in records if r.get("core_latency_ns")]
    if not probed:
        return ""

    def ns(x):
        return "?" if x is None else f"{x:.0f}"

    cases = "; ".join(f"{r['data']} {r['solver']} {ns(r['core_latency_ns'][0])}/"
                      f"{ns(r['core_latency_ns'][1])}" for r in probed)

    def named(low, high):
        return [f"{r['data']} {r['solver']}" for r in probed
                if low < max((x for x in r["core_latency_ns"] if x is not None), default=0.0)
                <= high]

    far, between = named(FAR_NS, math.inf), named(NEAR_NS, FAR_NS)
    return (" The cross-core handoff before/after each case "
            "(`dlbasics.studies.speed.limits.core_latency_ns`, ns; above "
            f"{FAR_NS:.0f} ns the machine was in the state in which default digits fits of "
            "ours ran slower, see the cross-core paragraph under \"Goals on this machine\"; "
            "the probes bracket a case and do not follow it): " + cases + ". "
            + (f"Above {FAR_NS:.0f} ns: " + "; ".join(far) + "." if far
               else f"None above {FAR_NS:.0f} ns.")
            + (f" From {NEAR_NS:.0f} to {FAR_NS:.0f} ns, a state that paragraph does not "
               "describe: " + "; ".join(between) + "." if between else ""))


def main(argv=None):
    """``[OUT.json] [--quick]``: measure (:data:`QUICK_CASES` with ``--quick``), print the
    section, and write the records to ``OUT.json`` if given."""
    argv = list(sys.argv[1:] if argv is None else argv)
    quick = "--quick" in argv
    argv = [a for a in argv if a != "--quick"]
    records = measure(QUICK_CASES, repeats=1) if quick else measure(CASES)
    if argv:
        with open(argv[0], "w") as f:
            json.dump(records, f, indent=1)
    print(section(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
