"""Depth against width at a fixed parameter budget, on MNIST-1D, trained for a fixed number of
epochs per budget (the report flags the cells whose curves have not flattened).

The notes build up from a single hidden layer to two hidden layers and show what each layer adds
geometrically. With the number of parameters held fixed, is it better to spend them on one wide
hidden layer or on several narrower ones? For each budget (1.5k to 100k weights and biases) and
depth (1 to 4 hidden layers) the width is the integer that brings the parameter count closest to
the budget; each (budget, depth) cell is a condition of the two-stage protocol with Adam's
learning rate as its tuned axis (five rates, extended at the edges), selected on the final
validation accuracy of the tuning seeds and reported on fresh seeds with fresh data.

What theory says, and what it does not: depth-separation theorems (Telgarsky 2016; Eldan and
Shamir 2016) construct *particular* functions that a deep network represents with few units and
a shallow one only with exponentially many (Telgarsky: depth ``k**3`` against depth ``k``;
Eldan and Shamir: two hidden layers against one, width exponential in the input dimension).
They are existence results about those functions;
they do not promise that on a given task, at a fixed parameter budget and with finite data and
training, a deeper network generalises better. Which one does is an empirical question about
the task, and that is what this study measures.
"""

from __future__ import annotations

import math

import numpy as np

from .. import datasets, stats
from ..analysis import errorbar_ci, log_axis
from ..protocol import Axis, Tuning
from ..registry import register
from ..report import FRACTION, POSITIVE, band, fmt, fmt_ci
from ..spec import Setting, Study

BUDGETS = (1500, 6000, 25000, 100000)
DEPTHS = (1, 2, 3, 4)
#: Epochs per budget, from a pilot at lr 1e-3..1e-2 (one seed, depths 1 and 4): the 100k
#: networks fit the 4000 training examples (training accuracy 1) by epoch 20-40 at lr >= 2e-3
#: (0.96 at epoch 40 with lr 1e-3), the 25k ones by epoch 40-60; the 1.5k ones keep gaining
#: training accuracy slowly (about +0.01 per 100 epochs after epoch 200).
#: The 6000-100000 budgets were doubled after a full run at 150/80/40 epochs left 7 of their
#: 12 cells' accuracy curves rising (more than 0.01 over the last 20% of epochs).
EPOCHS = {1500: 250, 6000: 300, 25000: 160, 100000: 80}
#: Learning-rate grids (factor 2; extended at the edges): small networks take larger rates.
#: (A mid-size run with 2 tuning seeds selected 0.02 at 1.5k/depth 1 and 0.04 at 25k/depth 1.)
LRS = {1500: (0.0025, 0.005, 0.01, 0.02, 0.04),
       6000: (0.00125, 0.0025, 0.005, 0.01, 0.02),
       25000: (0.00125, 0.0025, 0.005, 0.01, 0.02),
       100000: (0.000625, 0.00125, 0.0025, 0.005, 0.01)}
QUICK = {"budgets": (500, 2000), "depths": (1, 2), "epochs": 8, "lrs": (0.003, 0.01),
         "problem": {"n_train": 300, "n_val": 100}}
PROBLEM = {"n_train": 4000, "n_val": 1000}
N_INPUTS = 40
#: Equivalence margin of the depth comparisons (test accuracy).
MARGIN = 0.01
TUNE_SEEDS = (1000, 1001, 1002)
REPORT_SEEDS = tuple(range(10))
COLORS = {1: "#1f77b4", 2: "#ff7f0e", 3: "#2ca02c", 4: "#d62728"}
BUDGET_COLORS = ("#9467bd", "#8c564b", "#17becf", "#7f7f7f")


def n_params(n_in, n_out, depth, width):
    """Weights and biases of ``n_in -> width x depth -> n_out``."""
    return (n_in + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * n_out


def width_for(n_in, n_out, depth, budget):
    """The width whose parameter count is closest to ``budget`` (the smaller on a tie)."""
    if depth < 1 or budget < 1:
        raise ValueError(f"depth and budget must be positive, got {depth} and {budget}")
    return min(range(1, 4096), key=lambda w: (abs(n_params(n_in, n_out, depth, w) - budget), w))


def _build(quick):
    problem = QUICK["problem"] if quick else PROBLEM

    def build(f):
        n_in, n_out, _ = datasets.dims("mnist1d", **problem)
        w = width_for(n_in, n_out, f["depth"], f["budget"])
        return Setting(
            problem="mnist1d", problem_args=problem,
            model={"hidden": [w] * f["depth"], "activation": "relu", "init": "he"},
            optimizer="adam", hyper={"lr": f["lr"]}, batch_size=100,
            epochs=QUICK["epochs"] if quick else EPOCHS[f["budget"]],
            factors={**f, "width": w, "params": n_params(n_in, n_out, f["depth"], w)})
    return build


@register("depth_width")
def make(profile):
    quick = profile == "quick"
    budgets = QUICK["budgets"] if quick else BUDGETS
    depths = QUICK["depths"] if quick else DEPTHS

    def axes(cond):
        return {"lr": Axis(QUICK["lrs"] if quick else LRS[cond["budget"]], scale="log")}

    problem = QUICK["problem"] if quick else PROBLEM
    conditions = [{"budget": b, "depth": d} for b in budgets for d in depths]
    return Study(
        name="depth_width",
        title="Depth against width at a fixed parameter budget",
        question=f"With the number of parameters fixed ({budgets[0]} to {budgets[-1]}), how do "
                 "the training and test accuracy of a ReLU MLP trained on MNIST-1D depend on "
                 f"its depth ({depths[0]} to {depths[-1]} hidden layers) and hence its width?",
        settings=(),
        seeds=REPORT_SEEDS[:2] if quick else REPORT_SEEDS,
        tuning=Tuning(_build(quick), conditions, axes,
                      tune_seeds=TUNE_SEEDS[:2] if quick else TUNE_SEEDS,
                      metric="final_val_accuracy", maximize=True),
        analysis=analyse,
        notes=f"MNIST-1D (Greydanus 2020) with {problem['n_train']} training and "
              f"{problem['n_val']} validation examples and the package's held-out "
              f"{(problem['n_train'] + problem['n_val']) // 4} as the test set, generated per "
              "seed. ReLU hidden "
              "layers of equal width (He initialisation), softmax + cross-entropy, Adam on "
              "mini-batches of 100 (as in the MNIST-1D reference) for "
              + (f"{QUICK['epochs']} epochs" if quick else ", ".join(
                  f"{e} epochs at {b}" for b, e in EPOCHS.items()) + " parameters")
              + " (chosen from a pilot so that the training curves flatten: the "
              "report flags any that did not). The width of a (budget, depth) cell is the "
              "integer that brings the count of weights and biases closest to the budget. "
              "The learning rate is tuned per cell on the *final* validation accuracy (the "
              "networks are compared at the end of training, not early-stopped: their "
              "validation loss rises "
              "once they fit the training set while their accuracy does not fall); test "
              "metrics of the final network (`test_*`) lead, those of the best-validation-loss "
              "epoch (`es_test_*`) are shown beside them.",
    )


# ----------------------------------------------------------------------------------------------
# analysis
# ----------------------------------------------------------------------------------------------


def _mean(results, s, key):
    return stats.mean_ci(results.values(s, key)).mean


def cells(results):
    """``{(budget, depth): setting}`` of the selected settings."""
    return {(s.factors["budget"], s.factors["depth"]): s for s in results.settings}


def narrow_cells(cells_, n_inputs=N_INPUTS):
    """``[(budget, depth, width)]`` of the cells whose hidden width is below the input width."""
    return sorted((b, d, s.factors["width"]) for (b, d), s in cells_.items()
                  if s.factors["width"] < n_inputs)


def still_rising(curve, frac=0.2):
    """Per-seed gain of an accuracy ``curve`` (``(n_seeds, n_points)``) over its last ``frac``
    of epochs: the mean of the last point minus that at ``1 - frac`` of the run."""
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] < 2:
        return math.nan
    i = int(round((1 - frac) * (c.shape[1] - 1)))
    d = c[:, -1] - c[:, i]
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else math.nan


def best_fit(results, cl):
    """``{(budget, depth): (train acc, lr)}``: the highest mean final training accuracy of any
    learning rate of the cell's tuning grid (tuning seeds), and that rate."""
    tun = results.tuning
    out = {}
    for (b, d) in cl:
        cands = [] if tun is None else tun.select(budget=b, depth=d)
        vals = [(stats.mean_ci(tun.values(s, "final_full_accuracy")).mean, s.factors["lr"])
                for s in cands]
        vals = [v for v in vals if math.isfinite(v[0])]
        out[b, d] = max(vals) if vals else (math.nan, math.nan)
    return out


def analyse(results, report):
    cl = cells(results)
    if not cl:
        report.conclusion("No (budget, depth) cell completed its tuning stage.")
        return
    budgets = sorted({b for b, _ in cl})
    depths = sorted({d for _, d in cl})
    _accuracy_figure(results, report, cl, budgets, depths)
    _sensitivity(results, report, budgets, depths)
    rising = _curves(results, report, cl, budgets, depths)
    fit = best_fit(results, cl)
    comps, es = _tables(results, report, cl, budgets, depths, rising, fit)
    _conclude(results, report, cl, budgets, depths, comps, es, fit, rising)


def _accuracy_figure(results, report, cl, budgets, depths):
    cap = (f"Final test accuracy (solid), early-stopped test accuracy (dotted; the epoch of "
           f"lowest validation loss) and final training accuracy (dashed) against depth, one "
           f"colour per parameter budget, each cell at its tuned learning rate; mean and 95% CI "
           f"over {len(results.seeds)} report seeds, each with its own data draw. Right: the "
           f"same final test accuracy against the width of the hidden layers (log).")
    with report.figure("accuracy", cap, ncols=2, figsize=(13, 4.8)) as (fig, (ax1, ax2)):
        for i, b in enumerate(budgets):
            ss = [cl[b, d] for d in depths if (b, d) in cl]
            x = [s.factors["depth"] for s in ss]
            color = BUDGET_COLORS[i % len(BUDGET_COLORS)]
            test = [stats.mean_ci(results.values(s, "test_accuracy"), bounds=FRACTION)
                    for s in ss]
            errorbar_ci(ax1, x, test, fmt="-o", color=color, label=f"{b} parameters, test")
            ax1.plot(x, [_mean(results, s, "es_test_accuracy") for s in ss], ":", color=color)
            ax1.plot(x, [_mean(results, s, "final_full_accuracy") for s in ss], "--",
                     color=color, alpha=0.8)
            w = [s.factors["width"] for s in ss]
            errorbar_ci(ax2, w, test, fmt="-o", color=color, label=f"{b} parameters")
            for wi, c, d in zip(w, test, x, strict=True):
                ax2.annotate(f"d={d}", (wi, c.mean), textcoords="offset points", xytext=(4, 4),
                             fontsize=7, color=color)
        ax1.set_xticks(depths)
        ax1.set_xlabel("depth (hidden layers)")
        ax1.set_ylabel("accuracy (solid test, dotted early-stopped test, dashed training)")
        ax1.legend(fontsize=8)
        ax2.axvline(N_INPUTS, color="#999999", linewidth=0.8, linestyle="--")
        log_axis(ax2)
        ax2.set_xlabel(f"width (units per hidden layer, log; dashed line: {N_INPUTS} inputs)")
        ax2.set_ylabel("final test accuracy")


def _sensitivity(results, report, budgets, depths):
    tun = results.tuning
    if tun is None or not tun.settings:
        return
    cap = (f"Learning-rate sensitivity on the {len(tun.seeds)} tuning seeds: final validation "
           f"accuracy (the selection metric) against Adam's learning rate, one panel per budget, "
           f"one colour per depth; mean and 95% CI. The selected rate is circled.")
    chosen = {(s.factors["budget"], s.factors["depth"]): s.factors["lr"]
              for s in results.settings}
    with report.figure("lr_sensitivity", cap, ncols=len(budgets),
                       figsize=(4.2 * len(budgets), 3.8)) as (fig, axes):
        axes = np.atleast_1d(axes)
        for ax, b in zip(axes, budgets, strict=True):
            for d in depths:
                ss = sorted(tun.select(budget=b, depth=d), key=lambda s: s.factors["lr"])
                if not ss:
                    continue
                lrs = [s.factors["lr"] for s in ss]
                cis = [stats.mean_ci(tun.values(s, "final_val_accuracy"), bounds=FRACTION)
                       for s in ss]
                errorbar_ci(ax, lrs, cis, fmt="-o", ms=3, color=COLORS.get(d),
                            label=f"depth {d}")
                if (b, d) in chosen:
                    c = cis[lrs.index(chosen[b, d])]
                    ax.plot([chosen[b, d]], [c.mean], "o", ms=10, mfc="none",
                            color=COLORS.get(d))
            log_axis(ax)
            ax.set_xlabel("learning rate (log)")
            ax.set_title(f"{b} parameters")
        axes[0].set_ylabel("final validation accuracy")
        axes[0].legend(fontsize=8)


def _curves(results, report, cl, budgets, depths):
    """Training and validation curves of every cell; returns the late gain of each."""
    rising = {}
    for (b, d), s in cl.items():
        rising[b, d] = {"train": still_rising(results.curves(s, "full_accuracy")),
                        "val": still_rising(results.curves(s, "val_accuracy"))}
    flagged = [f"{b}/depth {d}" for (b, d), r in sorted(rising.items())
               if r["train"] > 0.01 or r["val"] > 0.01]
    note = ("Every curve has flattened: no cell gained more than 0.01 of training or validation "
            "accuracy over its last 20% of epochs." if not flagged else
            "Not flattened (more than 0.01 of training or validation accuracy gained over the "
            "last 20% of epochs): " + ", ".join(flagged) + ".")
    cap = (f"Training accuracy (dashed) and validation accuracy (solid) during training, one "
           f"panel per budget, one colour per depth (mean and 95% CI over the report seeds). "
           f"{note}")
    with report.figure("curves", cap, ncols=len(budgets),
                       figsize=(4.2 * len(budgets), 3.8)) as (fig, axes):
        axes = np.atleast_1d(axes)
        for ax, b in zip(axes, budgets, strict=True):
            for d in depths:
                s = cl.get((b, d))
                if s is None:
                    continue
                x = results.epochs(s, "val_accuracy")
                band(ax, x, results.curves(s, "full_accuracy"), None, color=COLORS.get(d),
                     linestyle="--", bounds=FRACTION)
                band(ax, x, results.curves(s, "val_accuracy"),
                     f"depth {d}, width {s.factors['width']}", color=COLORS.get(d),
                     bounds=FRACTION)
            ax.set_xlabel("epoch")
            ax.set_title(f"{b} parameters")
            ax.legend(fontsize=7)
        axes[0].set_ylabel("accuracy")
    return rising


def _tables(results, report, cl, budgets, depths, rising, fit):
    rows = []
    for b in budgets:
        for d in depths:
            s = cl.get((b, d))
            if s is None:
                continue
            f = s.factors
            rows.append([b, d, f["width"] if f["width"] >= N_INPUTS else f"**{f['width']}**",
                         f["params"], fmt(f["lr"], 3),
                         fmt_ci(results.values(s, "final_full_accuracy"), bounds=FRACTION),
                         fmt(rising[b, d]["train"], 2),
                         f"{fmt(fit[b, d][0], 3)} (lr {fmt(fit[b, d][1], 3)})",
                         fmt_ci(results.values(s, "best_val_epoch"), bounds=POSITIVE),
                         fmt_ci(results.values(s, "test_accuracy"), bounds=FRACTION),
                         fmt_ci(results.values(s, "es_test_accuracy"), bounds=FRACTION),
                         fmt_ci(results.values(s, "test_loss"), bounds=POSITIVE)])
    report.section("Numbers")
    report.table(["budget", "depth", "width", "parameters", "lr (tuned)", "train acc",
                  "train acc gain, last 20%", "best train acc of the lr grid (tuning)",
                  "best val-loss epoch", "test acc (final)",
                  "test acc (early-stopped)", "test loss (final)"], rows,
                 caption=f"Every cell at its tuned learning rate, mean [95% CI] over "
                         f"{len(results.seeds)} report seeds. Widths in bold are below the "
                         f"{N_INPUTS} inputs (a layer narrower than the input cannot pass it on "
                         f"unchanged).")
    return (_depth_table(results, report, cl, budgets, depths, "test_accuracy"),
            _depth_table(results, report, cl, budgets, depths, "es_test_accuracy"))


def _depth_table(results, report, cl, budgets, depths, key):
    what = "Final" if key == "test_accuracy" else "Early-stopped (best validation loss epoch)"
    comps = {}
    pairs = []
    for b in budgets:
        if (b, 1) not in cl:
            continue
        for d in depths:
            if d != 1 and (b, d) in cl:
                pairs.append((f"{b}: depth {d} - depth 1",
                              results.values(cl[b, d], key), results.values(cl[b, 1], key)))
    if pairs:
        rows = stats.compare(pairs, margin=MARGIN, lower_is_better=False)
        report.table(["comparison (a - b)", "pairs", "mean diff [95% CI]", "a better / b better",
                      "paired t p", "Holm p", f"TOST (+-{MARGIN}) Holm p", "verdict"],
                     [[r["name"], r["n"], f"{fmt(r['diff'], 3)} [{fmt(r['lo'], 3)}, "
                       f"{fmt(r['hi'], 3)}]", f"{r['b_better']}/{r['a_better']}",
                       fmt(r["p"], 3), fmt(r["p_holm"], 3), fmt(r["tost_p_holm"], 3),
                       r["verdict"]] for r in rows],
                     caption=f"{what} test accuracy, each depth minus depth 1 at the same "
                             f"budget, "
                             f"paired on report seeds (same data draw); Holm over all "
                             f"{len(rows)} comparisons; equivalence by TOST with margin +-"
                             f"{MARGIN} (Holm too). 'a better' counts seeds where the deeper "
                             f"network is more accurate.")
        for (name, _, _), r in zip(pairs, rows, strict=True):
            b, d = name.split(":")[0], int(name.split("depth ")[1].split()[0])
            comps[int(b), d] = r
    return comps


def _conclude(results, report, cl, budgets, depths, comps, es, fit, rising):
    acc = {k: _mean(results, s, "test_accuracy") for k, s in cl.items()}
    train = {k: _mean(results, s, "final_full_accuracy") for k, s in cl.items()}
    best = {}
    for b in budgets:
        row = {d: acc[b, d] for d in depths if (b, d) in acc and math.isfinite(acc[b, d])}
        if row:
            best[b] = max(row, key=row.get)
    # the headline: the largest budget's deepest vs depth 1, and the pattern over budgets
    parts = []
    for b in budgets:
        pieces = []
        for d in depths:
            r = comps.get((b, d))
            if r is None:
                continue
            pieces.append(f"depth {d} {'+' if r['diff'] >= 0 else ''}{fmt(r['diff'], 2)} "
                          f"[{fmt(r['lo'], 2)}, {fmt(r['hi'], 2)}] ({r['verdict']})")
        if pieces:
            parts.append(f"{b}: " + "; ".join(pieces))
    n_train = next(iter(cl.values())).problem_args["n_train"]
    unflat = [k for k, r in rising.items() if r["train"] > 0.01 or r["val"] > 0.01]
    fits = sorted(k for k, t in train.items() if math.isfinite(t) and t >= 0.99)
    if parts:
        es_better = sorted(k for k, r in es.items() if r["verdict"] == "a better")
        es_worse = sorted(k for k, r in es.items() if r["verdict"] == "b better")
        report.claim(
            f"At a fixed parameter budget on MNIST-1D ({n_train} training examples, a fixed "
            f"number of epochs per budget after which {len(unflat)} of {len(rising)} cells' "
            f"accuracy curves have not flattened and {len(fits)} of {len(train)} cells fit "
            "the training set (training accuracy >= 0.99), learning rate tuned per cell on "
            "final validation accuracy), final test accuracy of each depth minus that of one "
            f"hidden layer (deeper - depth 1; 'a better' = deeper more accurate), mean [95% "
            f"CI, unadjusted] over {len(results.seeds)} seeds with fresh data, verdicts "
            f"Holm-adjusted over the {len(comps)} comparisons: " + " | ".join(parts)
            + ". Early-stopped (`es_test_accuracy`), deeper is more accurate in "
            f"{len(es_better)} and less accurate in {len(es_worse)} of {len(es)} comparisons.")
    for b in budgets:
        if b not in best:
            continue
        d = best[b]
        text = (f"**{b} parameters**: the most accurate depth on the test set is {d} "
                f"(width {cl[b, d].factors['width']}, test accuracy {fmt(acc[b, d], 3)}); "
                "by depth: " + ", ".join(f"{dd}: {fmt(acc[b, dd], 3)}" for dd in depths
                                        if (b, dd) in acc)
                + "; training accuracy: " + ", ".join(f"{dd}: {fmt(train[b, dd], 3)}"
                                                      for dd in depths if (b, dd) in train)
                + ".")
        report.conclusion(text)
    narrow = narrow_cells(cl)
    if narrow:
        report.conclusion(
            f"Cells whose hidden layers are narrower than the {N_INPUTS} inputs (a possible "
            "bottleneck): " + ", ".join(f"{b}/depth {d} (width {w})" for b, d, w in narrow)
            + ". Their training accuracy: " + ", ".join(
                f"{fmt(train[b, d], 3)}" for b, d, _ in narrow) + ".")
    else:
        report.conclusion(f"No hidden layer is narrower than the {N_INPUTS} inputs.")
    can = sorted(k for k in train if k not in fits and fit[k][0] >= 0.99)
    cannot = sorted(k for k in train if k not in fits and k not in can)
    text = (f"Fit (training accuracy of the final network, mean over report seeds): "
            f"{len(fits)} of {len(train)} cells reach 0.99 or more at the selected rate"
            + (f" ({', '.join(f'{b}/depth {d}' for b, d in fits)})" if fits else "") + ".")
    if can:
        text += (" At " + ", ".join(f"{b}/depth {d} ({fmt(train[b, d], 3)}; "
                                    f"{fmt(fit[b, d][0], 3)} at lr {fmt(fit[b, d][1], 3)})"
                                    for b, d in can)
                 + " another rate of the tuning grid fits the training set, but the selected "
                 + ("(larger) " if all(cl[k].factors["lr"] > fit[k][1] for k in can) else "")
                 + "rate gives the higher validation accuracy: the size is not what limits the "
                 "fit there.")
    if cannot:
        text += (" No rate of the grid reaches 0.99 at " + ", ".join(
            f"{b}/depth {d} (best {fmt(fit[b, d][0], 3)})" for b, d in cannot)
                 + f": in {' or '.join(sorted({str(cl[k].epochs) for k in cannot}))} epochs "
                 "none of the "
                 f"grid's rates fits {n_train} examples with these networks, and the comparison "
                 "there is between networks that under-fit.")
    report.conclusion(text)
    better = sorted(k for k, r in comps.items() if r["verdict"] == "a better")
    worse = sorted(k for k, r in comps.items() if r["verdict"] == "b better")
    equiv = sorted(k for k, r in comps.items() if r["verdict"].startswith("equivalent"))
    text = ("What theory says: depth-separation theorems (Telgarsky 2016; Eldan and Shamir "
            "2016) construct particular functions that deep networks represent with far fewer "
            "units than shallow ones (Telgarsky: depth k^3 against depth k; Eldan and Shamir: "
            "two hidden layers against one, width exponential in the input dimension); they "
            "are existence results about approximating those functions, not a promise that a "
            "deeper network trains to a more accurate one on a given task at a fixed "
            "parameter budget. What this task shows (final test accuracy, Holm-corrected, "
            f"equivalence within +-{MARGIN} by TOST): ")

    def _cells(ks):
        return ", ".join(f"{b}/depth {d}" for b, d in ks)
    bits = []
    if better:
        bits.append(f"deeper than one layer is more accurate at {_cells(better)}")
    if worse:
        bits.append(f"less accurate at {_cells(worse)}")
    if equiv:
        bits.append(f"equivalent at {_cells(equiv)}")
    rest = sorted(set(comps) - set(better) - set(worse) - set(equiv))
    if rest:
        bits.append(f"inconclusive (neither a difference nor equivalence shown) at "
                    f"{_cells(rest)}")
    text += ("; ".join(bits) if bits else "no comparison completed") + "."
    decided = sorted(set(better) | set(worse))
    shaky = [k for k in decided if k in unflat or (k[0], 1) in unflat]
    if shaky:
        text += (" Of these decided comparisons, " + ", ".join(
            f"{b}/depth {d}" for b, d in shaky) + " involve a cell whose curves had not "
                 "flattened (" + ", ".join(f"{b}/depth {dd}" for b, dd in sorted(
                     {(b, dd) for b, d in shaky for dd in (1, d) if (b, dd) in unflat}))
                 + "): more epochs could change the difference.")
    weak = [b for b in budgets if all((b, d) in cannot or any(
        nb == b and nd == d for nb, nd, _ in narrow) for d in depths if (b, d) in cl)]
    if weak:
        text += (" At " + ", ".join(str(b) for b in weak) + " parameters every cell either "
                 "has hidden layers narrower than the inputs or fits the training set at no "
                 "rate of the grid, so the verdicts there compare bottlenecked, under-fitting "
                 "networks and say little about depth as such.")
    narrow_k = {(b, d) for b, d, _ in narrow}
    confounded = [k for k in decided if k[0] not in weak and (k in narrow_k
                                                            or (k[0], 1) in narrow_k)]
    if confounded:
        text += (" The decided comparison" + ("s " if len(confounded) > 1 else " ")
                 + ", ".join(f"{b}/depth {d}" for b, d in confounded)
                 + " involve" + ("" if len(confounded) > 1 else "s") + " a cell narrower "
                 f"than the {N_INPUTS} inputs, so the difference is confounded with that "
                 "bottleneck.")
    if es:
        flips = sorted(k for k in comps if k in es and es[k]["verdict"] != comps[k]["verdict"])
        text += (" Early-stopped (the network of the lowest validation loss), the verdicts "
                 + ("are the same." if not flips else "differ at " + ", ".join(
                     f"{b}/depth {d} ({_signed(es[b, d])}, {es[b, d]['verdict']})"
                     for b, d in flips) + "."))
    report.conclusion(text)


def _signed(r):
    return (f"{'+' if r['diff'] >= 0 else ''}{fmt(r['diff'], 2)} [{fmt(r['lo'], 2)}, "
            f"{fmt(r['hi'], 2)}]")
