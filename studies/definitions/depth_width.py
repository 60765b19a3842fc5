"""Depth against width at a fixed number of parameters.

The notes build up from a single hidden layer to two hidden layers and show what each layer adds
geometrically. With the number of parameters held fixed, is it better to spend them on one wide
hidden layer or on several narrower ones? For each depth the width is chosen so that the
network has (as nearly as integers allow) the budgeted number of weights and biases; the
learning rate of each architecture is tuned on validation data with the two-stage protocol of
:mod:`dlbasics.studies.study_gd_variants`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import datasets, stats
from ..analysis import (
    ALPHA,
    SIGNIFICANCE_HEADERS,
    TUNE_SEEDS,
    errorbar_ci,
    log_axis,
    paired,
    protocol_text,
    seed_subset,
    select,
    sig_phrase,
    significance_rows,
    split_seeds,
    untested_note,
)
from ..registry import register
from ..report import FRACTION, POSITIVE, band, fmt, fmt_ci
from ..spec import Setting, Study

#: problem -> (problem_args full, problem_args quick, epochs full)
PROBLEMS = {
    "mnist1d": ({"n": 5000}, {"n": 500}, 20),
    "digits": ({}, {"n": 300}, 30),
}
BUDGETS = (1500, 6000)
DEPTHS = (1, 2, 3, 4, 6)
LRS = (0.001, 0.00316, 0.01)
COLORS = {1500: "#1f77b4", 6000: "#d62728", 1000: "#2ca02c"}


def n_params(n_in, n_out, depth, width):
    """Weights and biases of ``n_in -> width x depth -> n_out``."""
    return (n_in + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * n_out


def width_for(n_in, n_out, depth, budget):
    """The width whose parameter count is closest to ``budget`` (the smaller on a tie)."""
    return min(range(1, 4096), key=lambda w: (abs(n_params(n_in, n_out, depth, w) - budget), w))


@register("depth_width")
def make(profile):
    quick = profile == "quick"
    budgets = (1000,) if quick else BUDGETS
    depths = (1, 2, 3) if quick else DEPTHS
    lrs = (0.00316,) if quick else LRS
    settings = []
    for problem, (args, qargs, epochs) in PROBLEMS.items():
        n_in, n_out, _ = datasets.dims(problem, **(qargs if quick else args))
        for budget, depth, lr in itertools.product(budgets, depths, lrs):
            w = width_for(n_in, n_out, depth, budget)
            settings.append(Setting(
                problem=problem, problem_args=qargs if quick else args,
                model={"hidden": [w] * depth, "activation": "relu", "init": "he"},
                optimizer="adam", hyper={"lr": lr}, batch_size=32,
                epochs=5 if quick else epochs,
                factors={"problem": problem, "budget": budget, "depth": depth, "width": w,
                         "params": n_params(n_in, n_out, depth, w), "lr": lr}))
    return Study(
        name="depth_width",
        title="Depth against width at a fixed parameter budget",
        question="With the number of parameters fixed, how does test accuracy on MNIST-1D and "
                 "digits depend on the depth of an MLP and hence on its width: one wide hidden "
                 "layer, or several narrow ones?",
        settings=settings,
        seeds=range(3 if quick else TUNE_SEEDS + 5),
        analysis=analyse,
        notes="ReLU hidden layers of equal width (He initialisation), softmax + "
              "cross-entropy, Adam on mini-batches of 32 for a fixed number of epochs. For "
              "each budget (weights + biases) and depth the width is the integer that brings "
              "the count closest to the budget (exact counts in the tables). Adam's learning "
              "rate is tuned per architecture on a grid of three rates.",
    )


def analyse(results, report):
    tune_seeds, final_seeds = split_seeds(results.seeds)
    tune, final = seed_subset(results, tune_seeds), seed_subset(results, final_seeds)
    report.text(protocol_text(tune_seeds, final_seeds))
    if untested_note(final_seeds):
        report.conclusion(untested_note(final_seeds))
    problems = results.factor_values("problem")
    budgets = results.factor_values("budget")
    best = {}
    for p, b, d in itertools.product(problems, budgets, results.factor_values("depth")):
        cands = results.select(problem=p, budget=b, depth=d)
        if cands:
            s, _ = select(tune, cands)
            if s is not None:
                best[p, b, d] = s
    if not best:
        report.conclusion("No architecture completed a run without diverging.")
        return
    _accuracy_figure(final, report, problems, budgets, best)
    _curves(final, report, problems, budgets, best)
    findings = _tables(final, report, problems, budgets, best)
    _conclude(report, findings)


def _arch(best, p, b):
    return [best[k] for k in sorted((k for k in best if k[:2] == (p, b)), key=lambda k: k[2])]


def _accuracy_figure(final, report, problems, budgets, best):
    n = len(problems)
    cap = (f"Test accuracy (solid, mean and 95% CI over the {len(final.seeds)} final seeds) and "
           "training accuracy (dashed) at a fixed parameter budget, against depth (left, each "
           "point labelled with its width) and against width (right, labelled with its depth); "
           "each architecture at its tuned learning rate.")
    with report.figure("accuracy", cap, nrows=n, ncols=2, figsize=(13, 4.6 * n)) as (fig, axes):
        axes = np.asarray(axes).reshape(n, 2)
        for i, p in enumerate(problems):
            for b in budgets:
                ss = _arch(best, p, b)
                if not ss:
                    continue
                depth = [s.factors["depth"] for s in ss]
                width = [s.factors["width"] for s in ss]
                test = [stats.mean_ci(final.values(s, "test_accuracy"), bounds=FRACTION)
                        for s in ss]
                train = [stats.mean_ci(final.values(s, "final_full_accuracy"), bounds=FRACTION)
                         for s in ss]
                color = COLORS.get(b)
                for ax, x, other, tag in ((axes[i, 0], depth, width, "w"),
                                          (axes[i, 1], width, depth, "d")):
                    errorbar_ci(ax, x, test, fmt="-o", color=color,
                                label=f"{b} parameters, test")
                    ax.plot(x, [c.mean for c in train], "--", color=color, alpha=0.7,
                            label=f"{b} parameters, training")
                    for xi, c, o in zip(x, test, other, strict=True):
                        ax.annotate(f"{tag}={o}", (xi, c.mean), textcoords="offset points",
                                    xytext=(5, 4), ha="left", fontsize=8, color=color)
            axes[i, 0].set_xlabel("depth (hidden layers)")
            axes[i, 0].set_xticks(sorted({k[2] for k in best if k[0] == p}))
            axes[i, 1].set_xlabel("width (units per hidden layer, log)")
            widths = sorted({s.factors["width"] for k, s in best.items() if k[0] == p})
            log_axis(axes[i, 1])
            axes[i, 1].set_xticks(widths)
            axes[i, 1].set_xticklabels([str(w) for w in widths], fontsize=8)
            for ax in axes[i]:
                ax.set_ylabel("accuracy")
                ax.set_title(p)
            axes[i, 0].legend(fontsize=8)


def _curves(final, report, problems, budgets, best):
    b = max(budgets)
    n = len(problems)
    cap = (f"Validation loss during training for each depth at the {b}-parameter budget (mean "
           f"and 95% CI over the final seeds; log scale).")
    cmap = report_colors(len({k[2] for k in best}))
    with report.figure("curves", cap, ncols=n, figsize=(6.4 * n, 4.4)) as (fig, axes):
        axes = np.atleast_1d(axes)
        for ax, p in zip(axes, problems, strict=True):
            for j, s in enumerate(_arch(best, p, b)):
                f = s.factors
                band(ax, final.epochs(s), final.curves(s, "val_loss"),
                     f"depth {f['depth']}, width {f['width']} (lr={fmt(f['lr'])})",
                     color=cmap[j], bounds=POSITIVE)
            ax.set_xlabel("epoch")
            ax.set_ylabel("validation loss (log)")
            log_axis(ax, "y")
            ax.set_title(p)
            ax.legend(fontsize=8)


def report_colors(n):
    from ..report import pyplot

    cm = pyplot().get_cmap("viridis")
    return [cm(0.9 * i / max(n - 1, 1)) for i in range(n)]


def _tables(final, report, problems, budgets, best):
    rows = []
    findings = []
    sig_tables = []
    for p, b in itertools.product(problems, budgets):
        ss = _arch(best, p, b)
        if not ss:
            continue
        for s in ss:
            f = s.factors
            rows.append([p, b, f["depth"], f["width"], f["params"], fmt(f["lr"]),
                         fmt_ci(final.values(s, "final_full_accuracy"), bounds=FRACTION),
                         fmt_ci(final.values(s, "final_val_loss"), bounds=POSITIVE),
                         fmt_ci(final.values(s, "test_loss"), bounds=POSITIVE),
                         fmt_ci(final.values(s, "test_accuracy"), bounds=FRACTION)])
        val = {s.factors["depth"]: stats.mean_ci(final.values(s, "final_val_loss")).mean
               for s in ss}
        val = {d: v for d, v in val.items() if math.isfinite(v)}
        if not val:
            continue
        top_d = min(val, key=val.get)
        top = next(s for s in ss if s.factors["depth"] == top_d)
        pairs = [(f"depth {top_d} - depth {s.factors['depth']}",
                  paired(final.values(top, "test_accuracy"),
                               final.values(s, "test_accuracy")))
                 for s in ss if s is not top]
        r, adj = significance_rows(pairs)
        sig_tables.append((p, b, top_d, r))
        acc = {s.factors["depth"]: stats.mean_ci(final.values(s, "test_accuracy")).mean
               for s in ss}
        train = {s.factors["depth"]: stats.mean_ci(final.values(s, "final_full_accuracy")).mean
                 for s in ss}
        findings.append({"problem": p, "budget": b, "top": top_d, "width": top.factors["width"],
                         "acc": acc, "train": train,
                         "tests": {s.factors["depth"]: (pp, a) for s, (_, pp), a in
                                   zip([s for s in ss if s is not top], pairs, adj,
                                       strict=True)}})
    report.section("Numbers")
    report.table(["problem", "budget", "depth", "width", "parameters", "lr (tuned)",
                  "train acc", "final val loss", "test loss", "test acc"], rows,
                 caption="Each architecture at its tuned learning rate, mean [95% CI] over the "
                         "final seeds.")
    for p, b, top_d, r in sig_tables:
        report.table(SIGNIFICANCE_HEADERS, r,
                     caption=f"{p}, {b} parameters: paired differences in test accuracy between "
                             f"the depth with the lowest validation loss ({top_d}) and each other "
                             f"depth, same final seeds (positive: depth {top_d} is more "
                             f"accurate), Holm-corrected.")
    return findings


def _conclude(report, findings):
    heads = []
    for f in findings:
        heads.append(f"{f['problem']}/{f['budget']}: depth {f['top']} (width {f['width']})")
    report.conclusion("Best depth on validation loss at a fixed parameter budget - "
                      + "; ".join(heads) + ".")
    shallow = 0
    underfit = []
    for f in findings:
        acc, tests = f["acc"], f["tests"]
        top = f["top"]
        worse = [d for d, (p, a) in tests.items()
                 if math.isfinite(a) and a < ALPHA and p["diff"] > 0]
        tied = [d for d in tests if d not in worse]
        text = (f"**{f['problem']}, {f['budget']} parameters**: depth {top} had test accuracy "
                f"{fmt(acc[top], 3)}; ")
        text += (f"significantly more accurate (Holm, {ALPHA:.0%}) than depth "
                 f"{', '.join(map(str, sorted(worse)))}" if worse else
                 "no other depth is significantly less accurate")
        if worse and tied:
            text += f", not significantly different from depth {', '.join(map(str, tied))}"
        deepest = max(acc)
        text += (". Accuracy by depth: " + ", ".join(f"{d}: {fmt(a, 3)}" for d, a in
                                                      sorted(acc.items()))
                 + f"; training accuracy of the deepest ({deepest}) "
                 f"{fmt(f['train'][deepest], 3)} vs depth 1 {fmt(f['train'].get(1), 3)}.")
        finite = {d: a for d, a in acc.items() if math.isfinite(a)}
        best_test = max(finite, key=finite.get) if finite else top
        if best_test != top:
            _, padj = tests[best_test]
            text += (f" On test accuracy depth {best_test} was nominally higher "
                     f"({fmt(acc[best_test], 3)}; against depth {top} {sig_phrase(padj)}).")
        report.conclusion(text)
        if top <= 2:
            shallow += 1
        if 1 in f["train"] and f["train"][deepest] < f["train"][1] - 0.01:
            underfit.append(f"{f['problem']}/{f['budget']}")
    text = ("Textbook expectation: depth buys expressiveness per parameter (a deep network can "
            "represent some functions with far fewer units than a shallow one), so at a fixed "
            "budget a deeper network should do at least as well. ")
    tops = sorted({f["top"] for f in findings})
    if shallow == len(findings):
        text += (f"**Not observed here**: in every problem and budget the best depth on "
                 f"validation was {' or '.join(map(str, tops))}; on these small problems width "
                 f"paid more than depth.")
        if underfit:
            text += (f" The deepest, narrowest networks also fit their training set less well "
                     f"({', '.join(underfit)}): at this budget and number of epochs they are "
                     f"harder to train, not only worse at generalising.")
    elif shallow == 0:
        text += "Observed here: the best depth was 3 or more in every problem and budget."
    else:
        text += (f"Mixed here: the best depth was 1 or 2 in {shallow} of {len(findings)} "
                 "problem/budget pairs and deeper in the others.")
    report.conclusion(text)
