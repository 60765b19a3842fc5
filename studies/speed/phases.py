"""Where the time of our training step goes, phase by phase.

The CPU step carries phase probes (:mod:`dlbasics.kernels.probes`): compiled in, each phase's
end reads the CPU's cycle counter and adds the cycles since the previous mark to its phase
(gather, products, elementwise, loss, update, waiting), summed over the threads. They are
compiled in only in a process started with ``DLBASICS_PHASE_PROFILE=1`` and a Numba cache of
its own (:func:`probe_env`); everywhere else they compile to nothing.

:func:`main` times each case of :data:`CASES` (784-256-256-10, float32, plain SGD, at the
speed study's batch sizes) three times, one case after another: in this process without the
probes, in a child process with them (:func:`measure`, the same epochs), and here again
without. A phase's time per step is its cycles over the counter's rate (calibrated against
``time.perf_counter`` in the child), the steps and the threads the path keeps busy (two for the
row and column splits, one for the batch taken whole), so the phases of a thread add up to its
step; *other* is the step's wall time minus them (calls between the compiled functions, the
epoch loop, the marks themselves). The step's time with and without the probes says how much
the probes disturb it.

Run: ``python -m dlbasics.studies.speed.phases [OUT.json] [--quick]``; :func:`section` renders
the records as the speed report's "Where the time goes" section.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time

from .common import make_data, net_config

#: ``(network, batch, rows of the data)`` of the full profile.
CASES = (("784-256-256-10", 1, 512), ("784-256-256-10", 8, 2048),
         ("784-256-256-10", 32, 2048), ("784-256-256-10", 128, 4096),
         ("784-256-256-10", 1024, 8192))
#: The quick profile's cases.
QUICK_CASES = (("784-256-256-10", 32, 1024),)

#: Seconds of training (at least) each case is timed for, by profile.
TARGET_S = {"full": 1.5, "quick": 0.2}


def probe_env(cache_dir, base=None):
    """The environment of a process with the probes on: ``DLBASICS_PHASE_PROFILE=1`` and
    ``NUMBA_CACHE_DIR`` = ``cache_dir``, which gets the marker file that
    :mod:`dlbasics.kernels.probes` asks for (``base``: the environment to start from, this
    process's by default)."""
    from ...kernels import probes

    os.makedirs(cache_dir, exist_ok=True)
    open(os.path.join(cache_dir, probes.MARKER), "w").close()
    env = dict(os.environ if base is None else base)
    env[probes.ENV] = "1"
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    return env


def path_of(model, batch):
    """``(path, threads)``: how the CPU backend trains ``model`` on batches of ``batch`` rows
    of plain SGD (``"column split"``, ``"row split"`` or ``"whole"``) and the threads that
    path keeps busy."""
    from ...kernels.optimizers import SGD_CODE

    be = model.engine
    if be.col_splits(batch, SGD_CODE):
        return "column split", 2
    if be.splits(batch):
        return "row split", 2
    return "whole", 1


def _model(net):
    from ...models import MLP

    cfg = net_config(net)
    return MLP(cfg["sizes"], activation=cfg["activation"], output=cfg["output"],
               loss=cfg["loss"], dtype="float32", backend="cpu", seed=0)


def time_case(net, batch, rows, target_s, epochs=None):
    """Train ``net`` on ``rows`` rows of the speed study's data in batches of ``batch`` (plain
    SGD at its rate): one untimed epoch (compiling), then epochs until ``target_s`` seconds of
    training (or exactly ``epochs``). Returns ``(epochs, steps, seconds in the epochs,
    path, threads)``; with the probes on, their totals cover exactly the timed epochs."""
    from ...kernels import probes
    from ...models import SGD, train

    X, y = make_data(net, rows)
    model = _model(net)
    opt = SGD(net_config(net)["lr"])
    train(model, X, y, opt, batch_size=batch, epochs=1, seed=0)
    probes.reset()
    done, seconds = 0, 0.0
    while (epochs is None and (seconds < target_s or done < 3)) or (epochs and done < epochs):
        hist = train(model, X, y, opt, batch_size=batch, epochs=1, seed=done + 1)
        seconds += hist.time[-1]
        done += 1
    path, threads = path_of(model, batch)
    return done, done * math.ceil(rows / batch), seconds, path, threads


def counter_hz(seconds=0.2):
    """Ticks per second of the cycle counter the probes read, against ``time.perf_counter``
    over ``seconds`` of busy waiting (``ValueError`` where the CPU has no counter)."""
    from numba import njit

    from ...kernels.probes import cycles_now

    @njit
    def read():
        return cycles_now()

    read()
    c0, t0 = read(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass
    c1, t1 = read(), time.perf_counter()
    if c1 <= c0:
        raise ValueError("phases: this CPU has no cycle counter that LLVM can read")
    return (c1 - c0) / (t1 - t0)


def measure(cases, target_s, epochs=None):
    """Cases timed in this process (whose probes must be on): a record per case with the
    epochs, steps, step time and each phase's time per step and thread, in microseconds."""
    from ...kernels import probes

    if not probes.ENABLED:
        raise RuntimeError("phases.measure needs the probes on (a process started with "
                           "probe_env())")
    hz = counter_hz()
    out = []
    for i, (net, batch, rows) in enumerate(cases):
        n_ep, steps, seconds, path, threads = time_case(
            net, batch, rows, target_s, None if epochs is None else epochs[i])
        cyc = probes.totals()
        per = {k: 1e6 * c / hz / steps / threads for k, c in cyc.items()}
        step_us = 1e6 * seconds / steps
        out.append({"net": net, "batch": batch, "rows": rows, "path": path, "threads": threads,
                    "epochs": n_ep, "steps": steps, "step_us": step_us, "phases_us": per,
                    "other_us": step_us - sum(per.values()), "counter_hz": hz})
    return out


def run(cases=CASES, target_s=TARGET_S["full"]):
    """Time each case without the probes here, then with them in a child process (the same
    epochs), then here again, case after case (the machine's speed drifts over minutes: the
    three runs of a case are close in time); returns the children's records with
    ``plain_step_us`` (the faster of the two runs here) and ``plain_runs_us`` (both). The
    children share one probe cache, so the probes are compiled once."""
    records = []
    with tempfile.TemporaryDirectory(prefix="dlbasics-phases-") as tmp:
        env = probe_env(os.path.join(tmp, "numba_cache"))
        spec = os.path.join(tmp, "spec.json")
        result = os.path.join(tmp, "out.json")
        for net, batch, rows in cases:
            first = time_case(net, batch, rows, target_s)
            with open(spec, "w") as f:
                json.dump({"cases": [[net, batch, rows]], "epochs": [first[0]],
                           "target_s": target_s}, f)
            done = subprocess.run([sys.executable, "-m", f"{__package__}.phases", "--child",
                                   spec, result], env=env, capture_output=True, text=True,
                                  timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(f"phases: the probe process failed:\n{done.stderr[-2000:]}")
            with open(result) as f:
                (rec,) = json.load(f)
            second = time_case(net, batch, rows, target_s, epochs=first[0])
            rec["plain_runs_us"] = [1e6 * r[2] / r[1] for r in (first, second)]
            rec["plain_step_us"] = min(rec["plain_runs_us"])
            records.append(rec)
    return records


def _us(x):
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def section(records):
    """The speed report's "Where the time goes" section from :func:`run`'s records."""
    if not records:
        return ("## Where the time goes\n\nNot measured in this run "
                "(`python -m dlbasics.studies.speed.phases`).\n")
    head = ["phase"] + [f"batch {r['batch']}" for r in records]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.append("| path (threads) | " + " | ".join(f"{r['path']} ({r['threads']})"
                                                  for r in records) + " |")
    for ph in records[0]["phases_us"]:  # the probes' phases, in their order
        cells = []
        for r in records:
            v = r["phases_us"][ph]
            cells.append(f"{_us(v)} ({100 * v / r['step_us']:.0f}%)")
        lines.append(f"| {ph} | " + " | ".join(cells) + " |")
    lines.append("| other | " + " | ".join(
        f"{_us(r['other_us'])} ({100 * r['other_us'] / r['step_us']:.0f}%)" for r in records)
        + " |")
    lines.append("| **step, probes on** | " + " | ".join(f"**{_us(r['step_us'])}**"
                                                        for r in records) + " |")
    lines.append("| step, probes off | " + " | ".join(
        _us(r["plain_step_us"]) for r in records) + " |")
    nets = sorted({r["net"] for r in records})
    runs = [r.get("plain_runs_us") or [r["plain_step_us"]] for r in records]
    spread = max(max(x) / min(x) for x in runs)
    lo, hi = min(r["rows"] for r in records), max(r["rows"] for r in records)
    rows_text = f"{lo:,} rows" if lo == hi else f"{lo:,} to {hi:,} rows"
    fewest = min(({"steps_per_epoch": -(-r["rows"] // r["batch"]), "batch": r["batch"]}
                  for r in records), key=lambda d: d["steps_per_epoch"])
    return (
        "## Where the time goes\n\n"
        f"Our step of {', '.join(nets)} (float32, plain SGD) phase by phase, in microseconds "
        "per step and thread (the share of the step in brackets), measured inside the compiled "
        "step by the phase probes of `dlbasics.kernels.probes` "
        "(`dlbasics.studies.speed.phases`): each phase's end reads the CPU's cycle counter "
        "and charges the cycles since the previous mark to the phase, summed over the "
        "threads and divided by the threads the path keeps busy, so that a thread's phases "
        "add up to its step. *products*: the products with the weights (in the column split "
        "our own register-blocked products, `dlbasics.kernels.smallgemm`, and one-row "
        "products, `dlbasics.kernels.rowvec`; in the row split the same register-blocked "
        "products for the first two layers and BLAS for the output layer; our loops below 8 "
        "rows; the "
        "bias, and plain SGD's weight update where it is fused into the product, included); "
        "*elementwise*: activations and their derivatives, bias added after a BLAS product, "
        "the column split's sums of the parts' partial products; "
        "*loss*: loss rows and the output layer's gradient; *update*: the optimizer (and in "
        "the row split the sum of the chunks' gradients, in the column split the biases' "
        "gradient and update; below 8 rows the update is fused into the products); *waiting*: "
        "threads claiming tasks and idle until the others are done (one part computes the "
        "loss alone, in the column split with the output layer where one part holds all its "
        "units), while the splits' own extra work is counted under elementwise (the column "
        "split's sums of partial products) and update (the row split's sum of the chunks' "
        "gradients); *other*: the step's wall time minus the phases (calls between compiled "
        "functions, the epoch loop, the marks). The probes are compiled only into a process "
        "of their own; the last row is the step timed without them, the faster of a run just "
        "before and one just after theirs. Each step is the mean over a case's timed epochs "
        f"({rows_text}, down to {fewest['steps_per_epoch']} steps an epoch at batch "
        f"{fewest['batch']}), measured after the "
        "throughput runs in processes of their own whose load was not recorded: the step "
        "differs from the throughput table's, and the two runs without probes of one case "
        f"differed by up to {spread:.2f}x in this run, so where the rows with and without "
        "probes differ by less than that, the table does not measure what the probes "
        "cost.\n\n" + "\n".join(lines) + "\n")


def main(argv=None):
    """``[OUT.json] [--quick]``, or ``--child SPEC OUT`` (the probe process)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        with open(argv[1]) as f:
            spec = json.load(f)
        records = measure([tuple(c) for c in spec["cases"]], spec["target_s"], spec["epochs"])
        with open(argv[2], "w") as f:
            json.dump(records, f, indent=1)
        return 0
    quick = "--quick" in argv
    argv = [a for a in argv if a != "--quick"]
    records = (run(QUICK_CASES, TARGET_S["quick"]) if quick else run())
    if argv:
        with open(argv[0], "w") as f:
            json.dump(records, f, indent=1)
    print(section(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
