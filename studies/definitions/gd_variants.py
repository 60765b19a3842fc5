"""Batch, stochastic and mini-batch gradient descent on three problems.

The notes distinguish the variants by how often they update: after the gradient of every
training example (batch), after a subset (mini-batch) or after each example (stochastic). This
study trains the same network with each, the learning rate tuned per variant on validation data,
and compares them per epoch (equivalently per gradient evaluation: every variant evaluates the
gradient of each training example once per epoch), per parameter update and per second of wall
time.

Selection protocol (shared with :mod:`dlbasics.studies.study_optimizers` and
:mod:`dlbasics.studies.study_depth_width`; the DeepOBS two-stage protocol inside one declared
study): every grid point runs with every seed; the learning rate is chosen on the mean final
validation loss of the first *tuning* seeds only, and everything reported about the chosen setting
comes from the remaining, held-out *final* seeds. The final numbers are then those of a rerun of the
chosen setting with fresh seeds, as in DeepOBS, and are not biased by the selection. The helpers
:func:`split_seeds`, :func:`seed_subset`, :func:`select`, :func:`holm` and
:func:`value_at_time` are imported by the other training studies.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import stats
from ..analysis import (
    ALPHA,
    SIGNIFICANCE_HEADERS,
    TUNE_SEEDS,
    errorbar_ci,
    log_axis,
    log_grid,
    loss_ylim,
    median_cost,
    paired,
    protocol_text,
    seed_subset,
    select,
    significance_rows,
    split_seeds,
    untested_note,
    value_at_time,
)
from ..registry import register
from ..report import FRACTION, POSITIVE, band, fmt, fmt_ci
from ..spec import Setting, Study

# ----------------------------------------------------------------------------------------------
# the two-stage protocol and other helpers shared by the training studies
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------------------------

#: problem -> (problem_args full, problem_args quick, hidden widths, epochs full)
PROBLEMS = {
    "digits": ({}, {"n": 300}, [32], 30),
    "mnist1d": ({"n": 5000}, {"n": 500}, [32], 20),
    "spirals": ({"n": 1000, "turns": 1.0}, {"n": 300, "turns": 1.0}, [32, 32], 60),
}
#: method -> batch size (None: the whole training set)
METHODS = {"stochastic": 1, "mini-batch 8": 8, "mini-batch 32": 32, "mini-batch 128": 128,
           "batch": None}
#: log10 of the smallest learning rate of each method's grid (5 values, half a decade apart);
#: the windows were centred by a one-seed pilot (larger batches tolerate larger rates).
LR_LOW = {"stochastic": -3.0, "mini-batch 8": -2.0, "mini-batch 32": -1.5,
          "mini-batch 128": -1.0, "batch": -0.5}
N_LR = 5
COLORS = dict(zip(METHODS, ("#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd"),
                  strict=True))
#: Time-to-target: this fraction of the best method's mean final validation accuracy.
TARGET_FRACTION = 0.95


def lr_grid(method, quick):
    grid = log_grid(LR_LOW[method], N_LR)
    return grid[2:4] if quick else grid


@register("gd_variants")
def make(profile):
    quick = profile == "quick"
    settings = []
    for problem, (args, qargs, hidden, epochs) in PROBLEMS.items():
        for method, batch in METHODS.items():
            for lr in lr_grid(method, quick):
                settings.append(Setting(
                    problem=problem, problem_args=qargs if quick else args,
                    model={"hidden": hidden, "activation": "tanh"},
                    optimizer="sgd", hyper={"lr": lr}, batch_size=batch,
                    epochs=5 if quick else epochs,
                    factors={"problem": problem, "method": method, "lr": lr}))
    return Study(
        name="gd_variants",
        title="Batch, stochastic and mini-batch gradient descent",
        question="With the learning rate tuned on validation data for each, how do batch, "
                 "stochastic and mini-batch (8, 32, 128) gradient descent compare on digits, "
                 "MNIST-1D and two spirals, per epoch (= per gradient evaluation), per update "
                 "and per second of wall time, and which differences are significant?",
        settings=settings,
        seeds=range(3 if quick else TUNE_SEEDS + 5),
        analysis=analyse,
        notes="Plain gradient descent `w <- w - lr * grad` with a fixed learning rate (the "
              "notes' rule; the gradient is the mean over the batch), tanh hidden units, "
              "softmax + cross-entropy (digits, MNIST-1D) or sigmoid + binary cross-entropy "
              "(spirals). Every variant evaluates each training example's gradient once per "
              "epoch, so epochs and gradient evaluations are the same budget; variants differ "
              "in how many updates they make from it. Each method has its own learning-rate "
              "grid of five values half a decade apart, centred by a one-seed pilot (larger "
              "batches tolerate larger rates); a choice at the edge of its grid is flagged.\n\n"
              "Wall time: the networks of one problem and batch size are trained together in "
              "one population (one compiled call, a loop over networks) and each is charged "
              "the population's epoch time divided by the number of networks in it, so a "
              "network's seconds are its share of its task, measured on a shared, loaded "
              "2-core machine with one thread per worker. Per-example costs of the population "
              "kernel (hand-written loops, no BLAS) favour neither small nor large batches the "
              "way a GPU would; an update costs one pass over the parameters. Because every "
              "network of a population is charged the same share, the seconds of one method "
              "are identical across its seeds: confidence intervals and paired tests on time "
              "axes reflect the variation of the losses over seeds, not timing noise, and a "
              "second run on a differently loaded machine would move all times together.",
    )


def analyse(results, report):
    tune_seeds, final_seeds = split_seeds(results.seeds)
    tune, final = seed_subset(results, tune_seeds), seed_subset(results, final_seeds)
    report.text(protocol_text(tune_seeds, final_seeds))
    if untested_note(final_seeds):
        report.conclusion(untested_note(final_seeds))
    problems = results.factor_values("problem")
    best, edge = {}, {}
    for p in problems:
        for m in results.factor_values("method"):
            cands = results.select(problem=p, method=m)
            if not cands:
                continue
            b, _ = select(tune, cands)
            if b is not None:
                best[p, m] = b
                lrs = [c.factors["lr"] for c in cands]
                edge[p, m] = len(lrs) > 2 and b.factors["lr"] in (min(lrs), max(lrs))
    if not best:
        report.conclusion("No method completed a run without diverging: nothing to compare.")
        return

    summaries = {}
    for p in problems:
        methods = [m for m in METHODS if (p, m) in best]
        if methods:
            summaries[p] = _problem(results, final, report, p, methods, best, edge)
    _sensitivity(results, report, problems, best)
    _summary_figure(final, report, summaries)
    _conclude(report, summaries, best, edge)


def _problem(results, final, report, p, methods, best, edge):
    """Curves, table and paired tests of one problem; returns what the conclusion needs."""
    report.section(f"{p}")
    S = {m: best[p, m] for m in methods}
    n_train = np.nanmax(final.curves(S[methods[0]], "grad_evals")[:, 0])
    # -- learning curves against epochs / gradient evaluations, updates, wall time ------------
    cap = (f"{p}: training loss (full training set, test-mode network; log scale) and "
           f"validation accuracy of each method at its chosen learning rate, mean and 95% CI "
           f"over the {len(final.seeds)} final seeds, against gradient evaluations (= epochs x "
           f"{fmt(n_train)} training examples; epochs on the top axis), parameter updates and "
           f"wall time (log scales; x is the mean over seeds). Wall time is each network's "
           f"share of its population task.")
    with report.figure(f"curves_{p}", cap, nrows=2, ncols=3, figsize=(17, 9)) as (fig, axes):
        loss_means = []
        for m in methods:
            s = S[m]
            lab = f"{m} (lr={fmt(s.factors['lr'])})"
            ge = np.r_[0.0, np.nanmean(final.curves(s, "grad_evals"), axis=0)]
            up = np.nanmean(final.curves(s, "updates"), axis=0)
            tm = np.nanmean(final.curves(s, "time"), axis=0)
            for row, metric, bounds in ((0, "full_loss", POSITIVE),
                                        (1, "val_accuracy", FRACTION)):
                Y = final.curves(s, metric)
                if row == 0:
                    loss_means.append(np.nanmean(Y, axis=0))
                band(axes[row, 0], ge, Y, lab, color=COLORS[m], bounds=bounds)
                band(axes[row, 1], up, Y[:, 1:], lab, color=COLORS[m], bounds=bounds)
                band(axes[row, 2], tm, Y[:, 1:], lab, color=COLORS[m], bounds=bounds)
        for row, ylab in ((0, "training loss (log)"), (1, "validation accuracy")):
            axes[row, 0].set_xlabel("gradient evaluations (per-example)")
            axes[row, 1].set_xlabel("parameter updates (log)")
            axes[row, 2].set_xlabel("wall time, s (log)")
            for col in range(3):
                axes[row, col].set_ylabel(ylab)
                if row == 0:
                    loss_ylim(axes[row, col], loss_means)
                    log_axis(axes[row, col], "y")
            log_axis(axes[row, 1])
            log_axis(axes[row, 2])
            sec = axes[row, 0].secondary_xaxis(
                "top", functions=(lambda g: g / n_train, lambda e: e * n_train))
            sec.set_xlabel("epochs")
        axes[0, 0].legend(loc="upper right")
        axes[1, 2].legend(loc="lower right")
        fig.suptitle(f"{p}: gradient-descent variants at their tuned learning rates",
                     fontsize=13)

    # -- numbers: equal epochs, equal wall time, time to target -------------------------------
    tot_time = {m: stats.mean_ci(final.values(S[m], "train_seconds")).mean for m in methods}
    budget = min(t for t in tot_time.values() if math.isfinite(t)) if any(
        math.isfinite(t) for t in tot_time.values()) else math.nan
    at_t = {m: value_at_time(final, S[m], "full_loss", budget) for m in methods}
    acc_t = {m: value_at_time(final, S[m], "val_accuracy", budget) for m in methods}
    val_acc = {m: stats.mean_ci(final.values(S[m], "final_val_accuracy")).mean for m in methods}
    finite = [v for v in val_acc.values() if math.isfinite(v)]
    target = TARGET_FRACTION * max(finite) if finite else math.nan
    ttt = {m: stats.times_to_target(final, S[m], target, "val_accuracy", "above")
           for m in methods}
    all_best = {m: stats.best_of_grid(results, results.select(problem=p, method=m))[0]
                for m in methods}
    rows = []
    for m in methods:
        s = S[m]
        per_epoch = final.values(s, "train_seconds") / s.epochs
        t = ttt[m]
        rows.append([m, fmt(s.factors["lr"]) + (" (edge)" if edge[p, m] else ""),
                     fmt(all_best[m].factors["lr"]) if all_best[m] is not None else "-",
                     fmt(stats.mean_ci(final.values(s, "updates")).mean),
                     fmt_ci(final.values(s, "final_full_loss"), bounds=POSITIVE),
                     fmt_ci(final.values(s, "final_val_loss"), bounds=POSITIVE),
                     fmt_ci(final.values(s, "test_accuracy"), bounds=FRACTION),
                     fmt_ci(per_epoch * 1e3, bounds=POSITIVE),
                     fmt_ci(at_t[m], bounds=POSITIVE), fmt_ci(acc_t[m], bounds=FRACTION),
                     f"{t['reached']}/{len(final.seeds)}",
                     fmt_ci(t["epochs"], bounds=POSITIVE), fmt_ci(t["seconds"], bounds=POSITIVE)])
    report.table(
        ["method", "lr (tuned)", "lr best on all seeds", "updates", "final train loss",
         "final val loss", "test acc",
         "ms per epoch", f"train loss at {fmt(budget, 3)} s", f"val acc at {fmt(budget, 3)} s",
         "reached target", "epochs to target", "seconds to target"],
        rows,
        caption=f"{p}: each method at its tuned learning rate, mean [95% CI] over the final "
                f"seeds after {S[methods[0]].epochs} epochs. 'at T s': the last epoch finished "
                f"within T = {fmt(budget, 3)} s, the total training time of the fastest method "
                f"(equal wall-time budget). Target: validation accuracy >= {fmt(target, 3)} "
                f"({TARGET_FRACTION:.0%} of the best method's mean); epochs and seconds over the "
                f"seeds that reached it. 'lr best on all seeds': the rate with the lowest mean "
                f"final validation loss over every seed, a check of the choice made on the "
                f"tuning seeds (not used for anything else).")

    # -- paired tests on the same seeds ---------------------------------------------------------
    pairs_e, pairs_t = [], []
    for a, b in itertools.combinations(methods, 2):
        pairs_e.append((f"{a} - {b}", paired(final.values(S[a], "final_val_loss"),
                                              final.values(S[b], "final_val_loss"))))
        pairs_t.append((f"{a} - {b}", paired(at_t[a], at_t[b])))
    rows_e, adj_e = significance_rows(pairs_e)
    rows_t, adj_t = significance_rows(pairs_t)
    report.table(SIGNIFICANCE_HEADERS, rows_e,
                 caption=f"{p}, equal epochs: paired differences in final validation loss on "
                         f"the same final seeds (negative: a is better); Holm-corrected over "
                         f"the {len(pairs_e)} pairs of this problem.")
    report.table(SIGNIFICANCE_HEADERS, rows_t,
                 caption=f"{p}, equal wall time: paired differences in training loss after "
                         f"{fmt(budget, 3)} s (negative: a is better).")
    return {"S": S, "methods": methods, "budget": budget, "at_t": at_t, "ttt": ttt,
            "target": target, "pairs_e": list(zip(pairs_e, adj_e, strict=True)),
            "pairs_t": list(zip(pairs_t, adj_t, strict=True)), "final": final,
            "tot_time": tot_time}


def _sensitivity(results, report, problems, best):
    cap = ("Final validation loss against the learning rate for every method (mean and 95% CI "
           "over all seeds, log scales); the star marks the rate chosen on the tuning seeds. "
           "Missing points: a seed diverged (non-finite loss).")
    with report.figure("lr_sensitivity", cap, ncols=len(problems),
                       figsize=(5.6 * len(problems), 4.4)) as (fig, axes):
        axes = np.atleast_1d(axes)
        for ax, p in zip(axes, problems, strict=True):
            for m in results.factor_values("method"):
                ss = results.select(problem=p, method=m)
                if not ss:
                    continue
                lrs = [s.factors["lr"] for s in ss]
                cis = [stats.mean_ci(results.values(s, "final_val_loss"), bounds=POSITIVE)
                       for s in ss]
                errorbar_ci(ax, lrs, cis, marker="o", ms=4, color=COLORS[m], label=m)
                if (p, m) in best:
                    b = best[p, m]
                    ax.plot([b.factors["lr"]],
                            [stats.mean_ci(results.values(b, "final_val_loss")).mean], "*",
                            ms=14, color=COLORS[m], markeredgecolor="k")
            log_axis(ax)
            log_axis(ax, "y")
            ax.set_xlabel("learning rate")
            ax.set_ylabel("final validation loss (log)")
            ax.set_title(p)
        axes[0].legend()


def _summary_figure(final, report, summaries):
    if not summaries:
        return
    cap = ("Summary on the final seeds (mean and 95% CI): final validation loss after the same "
           "number of epochs (= gradient evaluations), and training loss after the same wall "
           "time (the total time of the fastest method). Lower is better.")
    n = len(summaries)
    with report.figure("summary", cap, nrows=2, ncols=n, figsize=(5.2 * n, 7.6)) as (fig, axes):
        axes = np.asarray(axes).reshape(2, n)
        for j, (p, d) in enumerate(summaries.items()):
            ms = d["methods"]
            x = np.arange(len(ms))
            for row, vals, ylab in (
                    (0, [final.values(d["S"][m], "final_val_loss") for m in ms],
                     "final val loss (equal epochs)"),
                    (1, [d["at_t"][m] for m in ms],
                     f"train loss at {fmt(d['budget'], 3)} s (equal time)")):
                ax = axes[row, j]
                cis = [stats.mean_ci(v, bounds=POSITIVE) for v in vals]
                for i, (m, c) in enumerate(zip(ms, cis, strict=True)):
                    err = np.nan_to_num([[c.mean - c.lo], [c.hi - c.mean]])
                    ax.bar(i, c.mean, color=COLORS[m], alpha=0.85)
                    ax.errorbar(i, c.mean, yerr=err, color="k", capsize=4)
                ax.set_xticks(x)
                ax.set_xticklabels([m.replace("mini-batch ", "mb ") for m in ms], rotation=20)
                ax.set_ylabel(ylab)
                means = [c.mean for c in cis if math.isfinite(c.mean) and c.mean > 0]
                if means and max(means) > 20 * min(means):  # one bar would hide the others
                    ax.set_ylabel(ylab + " (log)")
                    log_axis(ax, "y")
                ax.grid(axis="x", visible=False)
                if row == 0:
                    ax.set_title(p)


def _best_of(vals):
    """Key with the lowest mean of per-seed arrays (NaN-safe)."""
    means = {k: stats.mean_ci(v).mean for k, v in vals.items()}
    ok = {k: v for k, v in means.items() if math.isfinite(v)}
    return (min(ok, key=ok.get), means) if ok else (None, means)


def _sig_against(winner, pairs):
    """(significantly worse, not significantly different) methods against the winner."""
    worse, tied = [], []
    for (name, p), padj in pairs:
        a, b = name.split(" - ")
        if winner not in (a, b):
            continue
        other = b if a == winner else a
        winner_better = (p["diff"] < 0) == (a == winner)
        if math.isfinite(padj) and padj < ALPHA and winner_better:
            worse.append(other)
        else:
            tied.append(other)
    return worse, tied


def _batch(method):
    """Batch size of a method for ordering (the full batch counts as infinite)."""
    b = METHODS.get(method)
    return math.inf if b is None else b


def _conclude(report, summaries, best, edge):
    epoch_winners, time_winners = {}, {}
    lines = []
    for p, d in summaries.items():
        final, S = d["final"], d["S"]
        we, me = _best_of({m: final.values(S[m], "final_val_loss") for m in d["methods"]})
        wt, mt = _best_of(d["at_t"])
        epoch_winners[p], time_winners[p] = we, wt
        if we is None:
            continue
        worse, tied = _sig_against(we, d["pairs_e"])
        text = (f"**{p}**: per epoch (equal gradient evaluations) **{we}** reached the lowest "
                f"final validation loss ({fmt(me[we])}); ")
        text += (f"significantly lower than {', '.join(worse)}" if worse else
                 "no difference is significant after Holm correction")
        if worse and tied:
            text += f"; not significantly different from {', '.join(tied)}"
        text += "."
        if wt is not None:
            worse_t, tied_t = _sig_against(wt, d["pairs_t"])
            text += (f" With the same wall time ({fmt(d['budget'], 3)} s) **{wt}** had the "
                     f"lowest training loss ({fmt(mt[wt])})")
            text += (f", significantly below {', '.join(worse_t)}." if worse_t else
                     ", no difference significant after Holm correction.")
        secs = {m: median_cost(d["ttt"][m]["seconds"]) for m in d["methods"]}
        reached = {m: v for m, v in secs.items() if math.isfinite(v)}
        if reached:
            fast = min(reached, key=reached.get)
            never = [m for m in d["methods"] if not d["ttt"][m]["reached"]]
            text += (f" Fastest to {fmt(d['target'], 3)} validation accuracy (median over the "
                     f"final seeds, a seed that never reached it counting as infinite): "
                     f"**{fast}** ({fmt(reached[fast], 3)} s)")
            text += f"; never reached by {', '.join(never)}." if never else "."
        lines.append(text)
    # the headline, first: it is what the index of all studies quotes
    head = "Per epoch, " + ", ".join(f"{p}: {w}" for p, w in epoch_winners.items()) + \
        " had the lowest final validation loss; per second of wall time, " + \
        ", ".join(f"{p}: {w}" for p, w in time_winners.items()) + " had the lowest training " \
        "loss."
    report.conclusion(head)
    for t in lines:
        report.conclusion(t)
    # textbook check, judged by the paired tests rather than by the ranking alone
    batch_worse, batch_tested, stoch_better, stoch_tested = [], [], [], 0
    for p, d in summaries.items():
        tests = {}
        for (name, pr), padj in d["pairs_e"]:
            a, b = name.split(" - ")
            tests[a, b] = (pr["diff"], padj)
            tests[b, a] = (-pr["diff"], padj)
        w = epoch_winners[p]
        if "batch" in d["methods"] and w not in (None, "batch"):
            batch_tested.append(p)
            diff, padj = tests[w, "batch"]
            if math.isfinite(padj) and padj < ALPHA and diff < 0:
                batch_worse.append(p)
        for m in ("mini-batch 8", "mini-batch 32", "mini-batch 128"):
            if ("stochastic", m) in tests:
                stoch_tested += 1
                diff, padj = tests["stochastic", m]
                if math.isfinite(padj) and padj < ALPHA and diff < 0:
                    stoch_better.append(f"{p}: vs {m}")
    text = ("Textbook expectation: with the same number of epochs (gradient evaluations), "
            "methods that update more often make more progress, so stochastic gradient descent "
            "should lead and full-batch gradient descent trail. ")
    text += (f"Full batch was significantly worse than the per-epoch winner on "
             f"{len(batch_worse)} of {len(batch_tested)} problems"
             + (f" ({', '.join(batch_worse)})" if batch_worse else "") + ". ")
    if stoch_tested:
        text += (f"Stochastic was significantly better than a mini-batch of 8 to 128 in "
                 f"{len(stoch_better)} of {stoch_tested} comparisons"
                 + (f" ({'; '.join(stoch_better)})" if stoch_better else "") + ".")
        if 2 * len(stoch_better) <= stoch_tested:
            text += (" **Contrary to the simple reading** that more frequent updates mean more "
                     "progress per epoch, in most comparisons a mini-batch with its own tuned "
                     "(larger) learning rate made as much progress per gradient evaluation as "
                     "single-example updates; the full batch, with one update per epoch, is "
                     "where the number of updates clearly limited progress.")
    diff_time = [p for p in summaries if time_winners[p] != epoch_winners[p]]
    if diff_time:
        text += " Per wall time the winner changes on " + ", ".join(
            f"{p} ({epoch_winners[p]} -> {time_winners[p]})" for p in diff_time) + "."
        larger = [p for p in diff_time if _batch(time_winners[p]) > _batch(epoch_winners[p])]
        if larger:
            text += (" Where it moves to a larger batch (" + ", ".join(larger) + "), this is "
                     "consistent with the per-update cost (a pass over all parameters) that "
                     "small batches pay once per example or few examples.")
    text += (" Times are each network's share of its population's time on a shared 2-core "
             "machine (identical across the seeds of a method), so the wall-time comparison "
             "is one measurement of speed per method, tested only over the seeds' losses.")
    report.conclusion(text)
    edges = [f"{p}/{m}" for (p, m), e in edge.items() if e and (p, m) in best]
    if edges:
        report.conclusion("The tuned learning rate sits at the edge of its grid for "
                          + ", ".join(edges) + ": the optimum may lie outside the grid, so "
                          "these methods may be slightly under-tuned.")
