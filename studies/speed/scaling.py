"""The speed study's scaling curves: training throughput against width, with the machine's
ceilings.

Networks ``784-W-W-10`` (two hidden ReLU layers of ``W`` units, softmax cross-entropy, float32,
plain SGD: 784-256-256-10 with another width, :func:`dlbasics.studies.speed.common.net_config`)
for ``W`` in 16, 32, ..., 4096, at batch 32 and 1024, for ours (the ``cpu`` backend's fused
epoch) and the peers the study has for single networks here: PyTorch eager, the JAX jit step and
(beside them, not a peer) JAX's ``lax.scan`` epoch. Every framework runs in its own worker
(``kind: scaling``, the ``train`` job over these networks), with the protocol of
:func:`dlbasics.studies.speed.common.measure`, so the first epoch's loss checks that every
framework computes the same thing, and the driver reruns disturbed workers as for the rest.

Ceilings, in GFLOP/s and as samples per second at each width (``rate / FLOPs per sample``):
the FMA peak and the best sgemm (horizontal in GFLOP/s), and the memory-bandwidth bound:
measured bandwidth times the step's arithmetic intensity under the study's traffic model
(:func:`dlbasics.studies.speed.common.train_step_bytes`). The roofline is the lower of the FMA
peak (or the sgemm, where it ran faster than the FMA loop) and the bandwidth bound. The
bandwidth bound assumes every access of the model goes to
memory; a network whose parameters fit in the caches can run above it.

The driver imports this module for its jobs and analysis (NumPy only); the figure imports
matplotlib when drawn.
"""

from __future__ import annotations

import math

from .common import n_params, net_config, train_flops_per_sample, train_step_bytes

#: The widths of the full sweep (16 to 4096 units, powers of two) and its batch sizes.
WIDTHS = tuple(2**k for k in range(4, 13))
BATCHES = (32, 1024)
#: The frameworks of the sweep and the variants each worker measures.
VARIANTS = {"cpu": ["cpu"], "torch": ["torch"], "jax": ["jax", "jax_scan"]}
#: The variants in table order; the peers among which the best peer is chosen (as in the study,
#: the ``lax.scan`` epoch is shown beside them, not one of them).
ORDER = ("cpu", "torch", "jax", "jax_scan")
PEERS = ("torch", "jax")
LABELS = {"cpu": "ours (cpu, Numba)", "torch": "PyTorch eager", "jax": "JAX jit step",
          "jax_scan": "JAX lax.scan epoch *"}
STYLE = {"cpu": ("C0", "o", "-"), "torch": ("C3", "^", "-"), "jax": ("C2", "v", "-"),
         "jax_scan": ("C2", "D", ":")}
#: A worker that lost more than this share of the CPUs is called disturbed (as in the driver).
CONTENDED = 0.05
CEILING_STYLE = {"fma": ("k", "-", "FMA peak"), "gemm": ("0.35", "-.", "best sgemm"),
                 "bandwidth": ("C4", "--", "memory bandwidth x intensity")}


def net_name(width):
    """The network of the sweep at ``width``: ``"784-W-W-10"``."""
    return f"784-{int(width)}-{int(width)}-10"


def sweep_sizes(width):
    """Layer widths of the sweep's network at ``width``: ``[784, W, W, 10]``."""
    return [784, int(width), int(width), 10]


def jobs(settings, frameworks):
    """The sweep's worker jobs ``(name, spec, env_kind)``, one per installed framework asked for.

    ``settings``: ``widths``, ``batches``, ``n_max`` (rows of data), and the protocol's
    ``target_s``, ``repeats``, ``first_steps``.
    """
    nets = {net_name(w): {"batches": [int(b) for b in settings["batches"]],
                          "n_max": int(settings["n_max"])} for w in settings["widths"]}
    common = {k: settings[k] for k in ("target_s", "repeats", "first_steps")}
    out = []
    for fw, variants in VARIANTS.items():
        if fw in frameworks:
            spec = {"kind": "scaling", "framework": fw, "nets": nets, "variants": variants,
                    **common}
            out.append((f"scaling_{fw}", spec, "ours" if fw == "cpu" else fw))
    return out


def ceilings(sizes, batch, lim):
    """The ceilings of one network and batch size, in GFLOP/s and in samples per second.

    Parameters
    ----------
    sizes : list of int
        Layer widths.
    batch : int
        Samples per SGD step.
    lim : dict
        The study's limits: ``fma_peak_gflops``, ``gemm_best_gflops``, ``bandwidth_gbs``
        (1e9 bytes per second); a missing one gives ``None`` ceilings.

    Returns
    -------
    dict
        ``flops_per_sample``, ``bytes_per_sample`` (traffic model), ``intensity``
        (FLOP/byte), and for each of ``fma``, ``gemm``, ``bandwidth``, ``roofline`` the keys
        ``{name}_gflops`` and ``{name}_samples_per_s``. The roofline is the lower of the
        compute ceiling (the higher of the FMA peak and the sgemm: a measured sgemm rate is a
        rate the machine reaches, so the peak is at least that) and the bandwidth bound;
        ``roofline_side`` says which (``"compute"`` or ``"memory"``).
    """
    fps = train_flops_per_sample(sizes, batch)
    bps = train_step_bytes(sizes, batch) / batch
    out = {"flops_per_sample": fps, "bytes_per_sample": bps, "intensity": fps / bps}
    bw = lim.get("bandwidth_gbs")
    g = {"fma": lim.get("fma_peak_gflops"), "gemm": lim.get("gemm_best_gflops"),
         "bandwidth": bw * fps / bps if bw else None}
    compute = max((v for v in (g["fma"], g["gemm"]) if v), default=None)
    g["roofline"] = min(compute, g["bandwidth"]) if compute and g["bandwidth"] else None
    out["roofline_side"] = (None if g["roofline"] is None else
                            "memory" if g["bandwidth"] < compute else "compute")
    for name, v in g.items():
        out[f"{name}_gflops"] = v
        out[f"{name}_samples_per_s"] = v * 1e9 / fps if v else None
    return out


def analyse(raw, lim):
    """The sweep's rows from the workers' records in ``raw`` (``None`` when none ran).

    Returns
    -------
    dict or None
        ``widths``, ``batches``, ``rows`` (one per width and batch: ceilings, and per variant
        samples/s, GFLOP/s and fractions of the FMA peak, the sgemm and the roofline; the best
        peer and ours over each), ``bandwidth`` (the measured limit) and ``workers`` (each
        scaling worker's wall time and the CPU share others took while it ran).
    """
    procs = [p for p in raw.get("processes", []) if p.get("kind") == "scaling"]
    if not procs:
        return None
    per = {}
    for p in procs:
        for variant, nets in (p.get("results") or {}).items():
            for net, per_batch in nets.items():
                width = net_config(net)["sizes"][1]
                for m in per_batch.values():
                    per.setdefault((width, int(m["batch"])), {})[variant] = m
    rows = []
    for width, batch in sorted(per):
        sizes = sweep_sizes(width)
        c = ceilings(sizes, batch, lim)
        rates = {}
        for v in [v for v in ORDER if v in per[(width, batch)]] + \
                 sorted(set(per[(width, batch)]) - set(ORDER)):
            m = per[(width, batch)][v]
            gf = m["samples_per_s"] * c["flops_per_sample"] / 1e9
            rates[v] = {
                "samples_per_s": m["samples_per_s"], "gflops": gf,
                "frac_fma_peak": gf / c["fma_gflops"] if c["fma_gflops"] else None,
                "frac_gemm": gf / c["gemm_gflops"] if c["gemm_gflops"] else None,
                "frac_roofline": gf / c["roofline_gflops"] if c["roofline_gflops"] else None,
                "median_s": m["median_s"], "iqr_s": m["iqr_s"], "n": m["n"],
                "epochs": m["epochs"], "first_loss": m.get("first_loss"),
                "first_wall_s": m.get("first_wall_s"),
            }
        peers = {v: rates[v]["samples_per_s"] for v in PEERS if v in rates}
        best = max(peers, key=peers.get) if peers else None
        ours = rates.get("cpu", {}).get("samples_per_s")
        base = rates.get("cpu", {}).get("first_loss")
        diffs = {v: abs(r["first_loss"] - base) / max(abs(base), 1e-12)
                 for v, r in rates.items()
                 if v != "cpu" and base is not None and r["first_loss"] is not None}
        rows.append({
            "width": width, "batch": batch, "net": net_name(width), "sizes": sizes,
            "n_params": n_params(sizes), **c, "rates": rates, "best_peer": best,
            "vs_best_peer": ours / peers[best] if ours and best else None,
            "vs": {v: ours / r["samples_per_s"] for v, r in rates.items()
                   if v != "cpu" and ours},
            "first_loss_rel_diff": diffs,
        })
    workers = [{k: p.get(k) for k in ("name", "wall_s", "other_cpu_share", "steal_share",
                                      "error", "skipped")} for p in procs]
    return {"widths": sorted({r["width"] for r in rows}),
            "batches": sorted({r["batch"] for r in rows}), "rows": rows,
            "bandwidth": lim.get("bandwidth"), "workers": workers}


# -- figure -----------------------------------------------------------------------------------
def _cpu_line(res):
    m = res.get("machine", {})
    line = (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores; profile {res.get('profile')}, "
            f"run {res.get('started', '?')}")
    lost = _lost_share(res.get("scaling") or {})
    if lost is not None and lost > CONTENDED:
        line += f"; other programs and steal took up to {100 * lost:.0f}% of the CPUs"
    return line


def _lost_share(sc):
    """The largest share of the CPUs that other programs plus steal took from a sweep worker."""
    shares = [(w.get("other_cpu_share") or 0.0) + (w.get("steal_share") or 0.0)
              for w in sc.get("workers", []) if w.get("other_cpu_share") is not None]
    return max(shares) if shares else None


def figure(res, out):
    """``scaling.png``/``.svg``: samples/s (top) and GFLOP/s (bottom) against width, one column
    per batch size, log-log, with the ceilings; returns the file names (none if not run)."""
    sc = res.get("scaling")
    if not sc or not sc["rows"]:
        return []
    from .report import _plt, _save

    plt = _plt()
    batches = sc["batches"]
    fig, axes = plt.subplots(2, len(batches), figsize=(5.2 * len(batches), 8.0),
                             layout="constrained", squeeze=False, sharex=True)
    for j, batch in enumerate(batches):
        rows = [r for r in sc["rows"] if r["batch"] == batch]
        widths = [r["width"] for r in rows]
        for i, unit in enumerate(("samples_per_s", "gflops")):
            ax = axes[i][j]
            roof = [(r["width"], r[f"roofline_{unit}"]) for r in rows if r.get(f"roofline_{unit}")]
            if roof:
                ax.plot(*zip(*roof, strict=True), color="0.8", lw=7, solid_capstyle="round",
                        label="roofline (lower of compute and bandwidth)", zorder=0)
            for name, (color, ls, label) in CEILING_STYLE.items():
                key = f"{name}_{unit}"
                pts = [(r["width"], r[key]) for r in rows if r.get(key)]
                if pts:
                    ref = pts[-1][1]
                    text = (f" ({ref:.0f} GFLOP/s)" if unit == "gflops" and name != "bandwidth"
                            else "")
                    ax.plot(*zip(*pts, strict=True), color=color, ls=ls, lw=1.2,
                            label=label + text)
            variants = [v for v in ORDER if any(v in r["rates"] for r in rows)]
            for v in variants:
                pts = [(r["width"], r["rates"][v][unit if unit == "gflops" else
                                                  "samples_per_s"])
                       for r in rows if v in r["rates"]]
                color, marker, ls = STYLE.get(v, ("k", ".", "-"))
                ax.plot(*zip(*pts, strict=True), color=color, marker=marker, ls=ls, ms=4,
                        label=LABELS.get(v, v))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            tops = [r[f"{k}_{unit}"] for r in rows for k in ("fma", "gemm") if r.get(f"{k}_{unit}")]
            tops += [m[unit] for r in rows for m in r["rates"].values()]
            if tops:  # the bandwidth bound may run far above: keep the measured range readable
                ax.set_ylim(top=3 * max(tops))
            ax.set_xticks(widths, [str(w) for w in widths])
            ax.grid(True, which="both", alpha=0.3)
            if i == 0:
                ax.set_title(f"batch {batch}")
                ax.set_ylabel("training throughput (samples / s)")
            else:
                ax.set_xlabel("hidden width W (network 784-W-W-10)")
                ax.set_ylabel("achieved GFLOP/s")
    axes[1][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("784-W-W-10, float32, plain SGD: median epoch against width, with the "
                 f"machine's ceilings\n{_cpu_line(res)}", fontsize=10)
    files = _save(fig, out, "scaling")
    plt.close(fig)
    return files


# -- report section ---------------------------------------------------------------------------
def _rate(x):
    from .report import fmt_rate

    return fmt_rate(x)


def _ratio(x):
    from .report import fmt_ratio

    return fmt_ratio(x)


def _pct(x):
    if x is None or not math.isfinite(x):
        return "-"
    return f"{100 * x:.0f}%" if 100 * x >= 10 else f"{100 * x:.2g}%"


def _gf(r, v):
    m = r["rates"].get(v)
    if not m:
        return "-"
    return f"{m['gflops']:.3g} ({_pct(m['frac_roofline'])})"


def _table(res, batch):
    from .report import _table as md_table

    sc = res["scaling"]
    rows = [r for r in sc["rows"] if r["batch"] == batch]
    variants = [v for v in ORDER if any(v in r["rates"] for r in rows)]
    head = (["width (parameters, MiB)", "MFLOP / sample"] + [LABELS[v] for v in variants]
            + ["ours / best peer", "GFLOP/s ours (% of roofline)",
               "GFLOP/s best peer (% of roofline)", "roofline GFLOP/s"])
    body = []
    for r in rows:
        best = r["best_peer"]
        roof = ("-" if r["roofline_gflops"] is None else
                f"{r['roofline_gflops']:.3g} ({r['roofline_side']})")
        body.append([f"{r['width']} ({4 * r['n_params'] / 2**20:.2g})",
                     f"{r['flops_per_sample'] / 1e6:.3g}"]
                    + [_rate(r["rates"].get(v, {}).get("samples_per_s")) for v in variants]
                    + [f"**{_ratio(r['vs_best_peer'])}**"
                       + (f" ({LABELS[best]})" if best else ""),
                       _gf(r, "cpu"), _gf(r, best) if best else "-", roof])
    return md_table(head, body)


def findings(sc):
    """Short statements that the numbers of ``sc`` (the analysed sweep) support, one per line."""
    lines = []
    for batch in sc["batches"]:
        rows = [r for r in sc["rows"] if r["batch"] == batch and r["vs_best_peer"]]
        if not rows:
            continue
        lo = min(rows, key=lambda r: r["vs_best_peer"])
        hi = max(rows, key=lambda r: r["vs_best_peer"])
        ahead = [r["width"] for r in rows if r["vs_best_peer"] > 1.05]
        level = [r["width"] for r in rows if 0.95 <= r["vs_best_peer"] <= 1.05]
        behind = [r["width"] for r in rows if r["vs_best_peer"] < 0.95]
        lines.append(
            f"Batch {batch}: ours over the best peer ranges from {_ratio(lo['vs_best_peer'])} "
            f"(width {lo['width']}) to {_ratio(hi['vs_best_peer'])} (width {hi['width']}); "
            f"ahead (over 1.05x) at widths {_widths(ahead)}, level (0.95-1.05x) at "
            f"{_widths(level)}, behind (under 0.95x) at {_widths(behind)}.")
    for v in ORDER:
        pts = [r for r in sc["rows"] if r["rates"].get(v, {}).get("frac_fma_peak")]
        if pts:
            top = max(pts, key=lambda r: r["rates"][v]["frac_fma_peak"])
            m = top["rates"][v]
            lines.append(
                f"{LABELS[v]} reaches at most {_pct(m['frac_fma_peak'])} of the FMA peak "
                f"({m['gflops']:.3g} GFLOP/s, {_pct(m['frac_roofline'])} of the roofline; width "
                f"{top['width']}, batch {top['batch']}).")
    for batch in sc["batches"]:
        rows = sorted((r for r in sc["rows"] if r["batch"] == batch), key=lambda r: r["width"])
        pairs = [(rows[0], rows[1]), (rows[-2], rows[-1])] if len(rows) >= 3 else \
            [(rows[0], rows[1])] if len(rows) == 2 else []
        for a, b in pairs:
            grow = {v: a["rates"][v]["samples_per_s"] / b["rates"][v]["samples_per_s"]
                    for v in ORDER if v in a["rates"] and v in b["rates"]}
            if grow:
                lines.append(
                    f"Cost growth at batch {batch}, width {a['width']} to {b['width']}: FLOPs "
                    f"per sample x{b['flops_per_sample'] / a['flops_per_sample']:.3g}, time per "
                    "sample " + ", ".join(f"{LABELS[v]} x{g:.3g}" for v, g in grow.items())
                    + ".")
    mem = {b: [r["width"] for r in sc["rows"]
               if r["batch"] == b and r["roofline_side"] == "memory"] for b in sc["batches"]}
    if any(r["roofline_side"] for r in sc["rows"]):
        lines.append("The traffic model puts the bandwidth bound below the compute ceiling at "
                     + "; ".join(f"batch {b}: widths {_widths(w)}" for b, w in mem.items())
                     + " (elsewhere the roofline is the compute ceiling).")
    above = [f"{LABELS.get(v, v)} at width {r['width']}, batch {r['batch']} "
             f"({_pct(m['frac_roofline'])})" for r in sc["rows"] for v, m in r["rates"].items()
             if m.get("frac_roofline") and m["frac_roofline"] > 1.0]
    if above:
        lines.append("Above the roofline: " + "; ".join(above) + ". The ceilings are measured, "
                     "not theoretical: a limit measured while the machine was busier than "
                     "during the point, or a bandwidth bound for data that stayed in the caches, "
                     "sits below what the machine can do.")
    diffs = [(d, v, r["width"], r["batch"]) for r in sc["rows"]
             for v, d in r["first_loss_rel_diff"].items()]
    if diffs:
        d, v, w, b = max(diffs)
        lines.append(f"Same computation: the first epoch's mean loss of every framework is within "
                     f"{d:.1e} (relative) of ours; largest for {LABELS.get(v, v)} at width {w}, "
                     f"batch {b}.")
    return lines


def _widths(ws):
    return ", ".join(str(w) for w in ws) if ws else "none"


def section(res, figures):
    """The report's section on the sweep (empty string when it did not run)."""
    sc = res.get("scaling")
    if not sc or not sc["rows"]:
        return ""
    lim = res.get("limits", {})
    bw = sc.get("bandwidth") or {}
    workers = sc.get("workers", [])
    others = [w["other_cpu_share"] for w in workers if w.get("other_cpu_share") is not None]
    steals = [w["steal_share"] for w in workers if w.get("steal_share") is not None]
    load = ""
    if others:
        load = (f" While the sweep's workers ran, other programs used up to "
                f"{100 * max(others):.0f}% of the CPUs"
                + (f" and steal took up to {100 * max(steals):.0f}%" if steals else "")
                + (" (a shared machine: the figures are low and noisy, the multi-threaded "
                   "frameworks' most)." if max(others) + max(steals or [0]) > 0.05 else "."))
    ceil = []
    if lim.get("fma_peak_gflops"):
        ceil.append(f"the FMA peak ({lim['fma_peak_gflops']:.0f} GFLOP/s)")
    if lim.get("gemm_best_gflops"):
        ceil.append(f"the best sgemm ({lim['gemm_best_gflops']:.0f} GFLOP/s)")
    if bw:
        ceil.append(f"memory bandwidth ({bw['gbs']:.1f} GB/s, the better of a STREAM triad "
                    f"{bw['triad_gbs']:.1f} and a read {bw['read_gbs']:.1f} over "
                    f"{bw['mib_per_array']} MiB arrays, {bw['threads']} threads) times the "
                    "step's arithmetic intensity")
    pic = ("\n\n![throughput and GFLOP/s against width](scaling.png)"
           if "scaling.png" in figures else "")
    tables = "\n\n".join(f"Batch {b}. Samples per second (median epoch):\n\n{_table(res, b)}"
                         for b in sc["batches"])
    notes = "\n".join(f"- {s}" for s in findings(sc))
    return (
        "## Scaling with width\n\n"
        "Networks 784-W-W-10 (two hidden ReLU layers of W units, softmax cross-entropy, float32, "
        "plain SGD: the large network above at other widths) at widths "
        f"{_widths(sc['widths'])} and batches {_widths(sc['batches'])}, each framework in its own "
        "worker with the protocol above (the same initialisation, data and batch order; the "
        "first epoch's loss is compared). Ceilings: " + ", ".join(ceil) + ". The roofline is "
        "the lower of the compute ceiling (the FMA peak, or the sgemm where that ran faster) and "
        "the bandwidth bound; the bandwidth bound uses the traffic "
        "model under Method, as if every access went to memory, so a network whose parameters "
        "fit in the caches (the MiB column) can run above it. Best peer: the faster of PyTorch "
        "eager and the JAX jit step (not the `lax.scan` epoch of the goals). The sweep runs "
        "once (no second pass), so at width 256 its figures can differ from the throughput "
        "tables' for the same network, which keep the faster of their passes." + load + pic
        + "\n\n" + tables
        + ("\n\nWhat the numbers show:\n\n" + notes if notes else ""))
