"""Fixed learning rate, momentum and adaptive learning rates: seven optimizers, DeepOBS style.

The notes list the types of update: a fixed learning rate, with momentum, an adaptive learning
rate, and adaptive + momentum. This study runs one representative or more of each (SGD;
momentum and Nesterov; AdaGrad and RMSProp; Adam and AdamW) on the problems of
:mod:`dlbasics.studies.study_gd_variants`, following the DeepOBS protocol: a log-spaced
learning-rate grid per optimizer, the best rate chosen on validation with the tuning seeds, and the
chosen setting judged on held-out seeds (see
:func:`dlbasics.studies.study_gd_variants.split_seeds`).
"""

from __future__ import annotations

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
)
from ..registry import register
from ..report import FRACTION, POSITIVE, band, fmt, fmt_ci
from ..spec import Setting, Study

#: name -> (display name, family in the notes' terms, log10 of the smallest grid rate, hyper)
OPTIMIZERS = {
    "sgd": ("SGD", "fixed learning rate", -1.5, {}),
    "momentum": ("Momentum", "momentum", -2.5, {"momentum": 0.9}),
    "nesterov": ("Nesterov", "momentum", -2.5, {"momentum": 0.9}),
    "adagrad": ("AdaGrad", "adaptive", -2.0, {}),
    "rmsprop": ("RMSProp", "adaptive", -3.5, {"alpha": 0.99}),
    "adam": ("Adam", "adaptive + momentum", -3.5, {"b1": 0.9, "b2": 0.999}),
    "adamw": ("AdamW", "adaptive + momentum", -3.5, {"b1": 0.9, "b2": 0.999,
                                                     "weight_decay": 0.01}),
}
N_LR = 6
BATCH = 32
COLORS = dict(zip(OPTIMIZERS, ("#7f7f7f", "#1f77b4", "#17becf", "#2ca02c", "#bcbd22",
                               "#d62728", "#9467bd"), strict=True))
STYLES = dict(zip(OPTIMIZERS, ("-", "-", "--", "-", "--", "-", "--"), strict=True))
#: Time-to-target: this fraction of the best optimizer's mean final validation accuracy.
TARGET_FRACTION = 0.95
#: An optimizer "tolerates" a grid rate whose mean final validation loss is within this
#: fraction of its best.
TOLERANCE = 0.10


def lr_grid(name, quick):
    grid = log_grid(OPTIMIZERS[name][2], N_LR)
    return grid[2:4] if quick else grid


#: problem -> (problem_args full, problem_args quick, hidden widths, epochs full)
PROBLEMS = {
    "digits": ({}, {"n": 300}, [32], 30),
    "mnist1d": ({"n": 5000}, {"n": 500}, [32], 20),
    "spirals": ({"n": 1000, "turns": 1.0}, {"n": 300, "turns": 1.0}, [32, 32], 60),
}


@register("optimizers")
def make(profile):
    quick = profile == "quick"
    settings = []
    for problem, (args, qargs, hidden, epochs) in PROBLEMS.items():
        for name, (_, _, _, hyper) in OPTIMIZERS.items():
            for lr in lr_grid(name, quick):
                settings.append(Setting(
                    problem=problem, problem_args=qargs if quick else args,
                    model={"hidden": hidden, "activation": "tanh"},
                    optimizer=name, hyper={"lr": lr, **hyper}, batch_size=BATCH,
                    epochs=5 if quick else epochs, metrics="running",
                    factors={"problem": problem, "optimizer": name, "lr": lr}))
    return Study(
        name="optimizers",
        title="Optimizers: fixed rate, momentum, adaptive, adaptive + momentum",
        question="With the learning rate of each tuned on validation data (DeepOBS protocol), "
                 "how do SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam and AdamW rank on "
                 "digits, MNIST-1D and two spirals, how sensitive is each to its learning rate, "
                 "and how long does each take to reach a target accuracy?",
        settings=settings,
        seeds=range(3 if quick else TUNE_SEEDS + 5),
        analysis=analyse,
        notes=f"The networks and problems of the `gd_variants` study, mini-batches of {BATCH}, "
              "the same number of epochs for every optimizer. Hyper-parameters other than the "
              "learning rate are the usual defaults (momentum 0.9; RMSProp alpha 0.99; Adam "
              "betas 0.9/0.999; AdamW weight decay 0.01; eps 1e-8, AdaGrad 1e-10). Each "
              "optimizer has a log-spaced grid of six learning rates half a decade apart, "
              "placed where a one-seed pilot found its optimum (adaptive methods need rates "
              "~100x smaller than SGD); a choice at the edge of its grid is flagged. Metrics "
              "are recorded in the cheap `running` mode: the training loss is the mean "
              "mini-batch loss over each epoch, the validation loss and accuracy are evaluated "
              "after every epoch.\n\n"
              "Seconds: the networks of a problem are trained together in populations and each "
              "is charged its population's epoch time divided by the number of networks in it "
              "(measured on a shared, loaded 2-core machine); optimizers differ in seconds per "
              "epoch only by the cost of their update rule.",
    )


def analyse(results, report):
    tune_seeds, final_seeds = split_seeds(results.seeds)
    tune, final = seed_subset(results, tune_seeds), seed_subset(results, final_seeds)
    report.text(protocol_text(tune_seeds, final_seeds))
    if untested_note(final_seeds):
        report.conclusion(untested_note(final_seeds))
    problems = results.factor_values("problem")
    names = [o for o in OPTIMIZERS if o in results.factor_values("optimizer")]
    best, edge = {}, {}
    for p in problems:
        for o in names:
            cands = results.select(problem=p, optimizer=o)
            b, _ = select(tune, cands)
            if b is not None:
                best[p, o] = b
                lrs = [c.factors["lr"] for c in cands]
                edge[p, o] = len(lrs) > 2 and b.factors["lr"] in (min(lrs), max(lrs))
    if not best:
        report.conclusion("No optimizer completed a run without diverging.")
        return
    _curves(final, report, problems, names, best)
    tolerance = _sensitivity(results, report, problems, names, best)
    ranks, per_problem = {}, {}
    for p in problems:
        opts = [o for o in names if (p, o) in best]
        if opts:
            all_best = {o: stats.best_of_grid(results, results.select(problem=p, optimizer=o))[0]
                        for o in opts}
            per_problem[p] = _ranking(final, report, p, opts, best, edge, tolerance, all_best)
            for i, o in enumerate(per_problem[p]["order"]):
                ranks.setdefault(o, []).append(i + 1)
    _overall(report, ranks, tolerance, per_problem, names)


def _label(o):
    return OPTIMIZERS[o][0]


def _curves(final, report, problems, names, best):
    cap = ("Learning curves of each optimizer at its tuned learning rate: training loss (mean "
           "mini-batch loss over the epoch), validation loss (log scales) and validation "
           f"accuracy; mean and 95% CI over the {len(final.seeds)} final seeds.")
    n = len(problems)
    with report.figure("curves", cap, nrows=n, ncols=3, figsize=(17, 4.3 * n)) as (fig, axes):
        axes = np.asarray(axes).reshape(n, 3)
        for i, p in enumerate(problems):
            means = {0: [], 1: []}
            for o in names:
                if (p, o) not in best:
                    continue
                s = best[p, o]
                lab = f"{_label(o)} (lr={fmt(s.factors['lr'])})"
                for j, metric, bounds in ((0, "train_loss", POSITIVE), (1, "val_loss", POSITIVE),
                                          (2, "val_accuracy", FRACTION)):
                    Y = final.curves(s, metric)
                    if j < 2:
                        means[j].append(np.nanmean(Y, axis=0))
                    band(axes[i, j], final.epochs(s, metric), Y, lab, color=COLORS[o],
                         linestyle=STYLES[o], bounds=bounds, alpha=0.12)
            for j, ylab in enumerate(("training loss (log)", "validation loss (log)",
                                      "validation accuracy")):
                ax = axes[i, j]
                ax.set_xlabel("epoch")
                ax.set_ylabel(ylab)
                ax.set_title(p)
                if j < 2:
                    loss_ylim(ax, means[j], below=1.5)
                    log_axis(ax, "y")
            axes[i, 2].legend(loc="lower right", fontsize=8)


def _sensitivity(results, report, problems, names, best):
    """Learning-rate sensitivity figure; returns ``{(problem, opt): (tolerated, of)}``."""
    tolerance = {}
    cap = ("Learning-rate sensitivity: final validation loss against the learning rate (mean "
           "and 95% CI over all seeds; log scales). Stars: the rate chosen on the tuning seeds. "
           "A missing point: some seed diverged.")
    n = len(problems)
    with report.figure("lr_sensitivity", cap, ncols=n, figsize=(5.8 * n, 4.6)) as (fig, axes):
        axes = np.atleast_1d(axes)
        for ax, p in zip(axes, problems, strict=True):
            for o in names:
                ss = results.select(problem=p, optimizer=o)
                if not ss:
                    continue
                lrs = [s.factors["lr"] for s in ss]
                cis = [stats.mean_ci(results.values(s, "final_val_loss"), bounds=POSITIVE)
                       for s in ss]
                div = [results.counts(s)["diverged"] for s in ss]
                means = np.array([c.mean if d == 0 else np.nan
                                  for c, d in zip(cis, div, strict=True)])
                if np.isfinite(means).any():
                    good = means <= np.nanmin(means) * (1 + TOLERANCE)
                    tolerance[p, o] = (int(good.sum()), len(ss))
                errorbar_ci(ax, lrs, cis, marker="o", ms=4, color=COLORS[o],
                            linestyle=STYLES[o], label=_label(o))
                if (p, o) in best:
                    b = best[p, o]
                    ax.plot([b.factors["lr"]],
                            [stats.mean_ci(results.values(b, "final_val_loss")).mean], "*",
                            ms=14, color=COLORS[o], markeredgecolor="k")
            log_axis(ax)
            log_axis(ax, "y")
            ax.set_xlabel("learning rate")
            ax.set_ylabel("final validation loss (log)")
            ax.set_title(p)
        axes[0].legend(fontsize=8)
    return tolerance


def _ranking(final, report, p, opts, best, edge, tolerance, all_best):
    S = {o: best[p, o] for o in opts}
    means = {o: stats.mean_ci(final.values(S[o], "final_val_loss")).mean for o in opts}
    order = sorted(opts, key=lambda o: (not math.isfinite(means[o]), means[o]))
    acc = {o: stats.mean_ci(final.values(S[o], "final_val_accuracy")).mean for o in opts}
    finite = [a for a in acc.values() if math.isfinite(a)]
    target = TARGET_FRACTION * max(finite) if finite else math.nan
    ttt = {o: stats.times_to_target(final, S[o], target, "val_accuracy", "above") for o in opts}
    top = order[0]
    pairs = [(f"{_label(top)} - {_label(o)}",
              paired(final.values(S[top], "final_val_loss"),
                           final.values(S[o], "final_val_loss"))) for o in order[1:]]
    sig_rows, adjusted = significance_rows(pairs)
    verdict = {o: padj for o, padj in zip(order[1:], adjusted, strict=True)}
    rows = []
    for rank, o in enumerate(order, 1):
        s, t = S[o], ttt[o]
        tol = tolerance.get((p, o))
        rows.append([rank, _label(o), OPTIMIZERS[o][1],
                     fmt(s.factors["lr"]) + (" (edge)" if edge[p, o] else ""),
                     fmt(all_best[o].factors["lr"]) if all_best[o] is not None else "-",
                     fmt_ci(final.values(s, "final_val_loss"), bounds=POSITIVE),
                     fmt_ci(final.values(s, "test_loss"), bounds=POSITIVE),
                     fmt_ci(final.values(s, "test_accuracy"), bounds=FRACTION),
                     "-" if o == top else fmt(verdict[o], 3),
                     f"{t['reached']}/{len(final.seeds)}",
                     fmt_ci(t["epochs"], bounds=POSITIVE), fmt_ci(t["seconds"], bounds=POSITIVE),
                     f"{tol[0]}/{tol[1]}" if tol else "-"])
    report.section(f"{p}: ranking")
    report.table(
        ["rank", "optimizer", "type (notes)", "lr (tuned)", "lr best on all seeds",
         "final val loss", "test loss",
         "test acc", f"Holm p vs {_label(top)}", "reached target", "epochs to target",
         "seconds to target", f"lrs within {TOLERANCE:.0%}"],
        rows,
        caption=f"{p}: optimizers ranked by mean final validation loss on the final seeds "
                f"(mean [95% CI]). Target: validation accuracy >= {fmt(target, 3)} "
                f"({TARGET_FRACTION:.0%} of the best optimizer's mean); epochs and seconds over "
                f"the seeds that reached it. Last column: grid rates whose mean final "
                f"validation loss (all seeds) is within {TOLERANCE:.0%} of the optimizer's best, "
                f"a measure of how forgiving its learning rate is. 'lr best on all seeds' checks "
                f"the choice made on the tuning seeds (it is not used for anything else).")
    report.table(SIGNIFICANCE_HEADERS, sig_rows,
                 caption=f"{p}: paired differences in final validation loss between the "
                         f"top-ranked optimizer and each other one on the same final seeds "
                         f"(negative: the top one is better), Holm-corrected over "
                         f"{len(pairs)} comparisons.")
    return {"order": order, "means": means, "verdict": verdict, "ttt": ttt, "target": target,
            "S": S}


def _overall(report, ranks, tolerance, per_problem, names):
    report.section("Overall")
    rows = []
    mean_rank = {o: float(np.mean(r)) for o, r in ranks.items()}
    order = sorted(mean_rank, key=mean_rank.get)
    for o in order:
        tol = [tolerance[p, o][0] for p in per_problem if (p, o) in tolerance]
        rows.append([_label(o), OPTIMIZERS[o][1], fmt(mean_rank[o], 3),
                     ", ".join(str(r) for r in ranks[o]),
                     fmt(float(np.mean(tol)), 3) if tol else "-"])
    report.table(["optimizer", "type (notes)", "mean rank", "ranks (" + ", ".join(per_problem)
                  + ")", f"mean number of lrs within {TOLERANCE:.0%}"], rows,
                 caption="Ranks by mean final validation loss on the final seeds, averaged "
                         "over the problems; the rank order alone ignores whether the "
                         "differences are significant (see the paired tests).")
    # -- conclusion ---------------------------------------------------------------------------
    top = order[0]
    n_sig = sum(1 for d in per_problem.values() for v in d["verdict"].values()
                if math.isfinite(v) and v < ALPHA)
    n_tests = sum(len(d["verdict"]) for d in per_problem.values())
    head = (f"**{_label(top)}** had the best mean rank over the {len(per_problem)} problems "
            f"({fmt(mean_rank[top], 3)}; ranks " + ", ".join(
                f"{p} {r}" for p, r in zip(per_problem, ranks[top], strict=True)) + ")")
    if n_sig == 0:
        head += (f", but no problem's top optimizer was significantly better than any other "
                 f"(0 of {n_tests} Holm-corrected paired tests)")
    else:
        head += (f"; {n_sig} of {n_tests} paired tests against a problem's top optimizer were "
                 f"significant")
    report.conclusion(head + ".")
    for p, d in per_problem.items():
        w = d["order"][0]
        sig = [_label(o) for o, v in d["verdict"].items() if math.isfinite(v) and v < ALPHA]
        same = [_label(o) for o, v in d["verdict"].items() if not (math.isfinite(v) and v < ALPHA)]
        text = (f"**{p}**: {_label(w)} had the lowest final validation loss "
                f"({fmt(d['means'][w])}); ")
        text += (f"significantly better (Holm, {ALPHA:.0%}) than {', '.join(sig)}" if sig
                 else "not significantly better than any other")
        if sig and same:
            text += f"; not significantly different from {', '.join(same)}"
        costs = {o: median_cost(d["ttt"][o]["epochs"]) for o in d["order"]}
        reached = {o: c for o, c in costs.items() if math.isfinite(c)}
        if reached:
            fast = min(reached.values())
            firsts = [_label(o) for o, c in reached.items() if c == fast]
            text += (f". First to {fmt(d['target'], 3)} validation accuracy (median epochs, a "
                     f"seed that never reached it counting as infinite): {', '.join(firsts)} "
                     f"({fmt(fast)} epochs)")
        never = [_label(o) for o in d["order"] if not d["ttt"][o]["reached"]]
        if never:
            text += f"; never reached by {', '.join(never)}"
        report.conclusion(text + ".")
    # textbook check: adaptive + momentum is expected to be best or at least not beaten
    adaptive_mom = [o for o in names if OPTIMIZERS[o][1] == "adaptive + momentum"]
    beaten = []
    for p, d in per_problem.items():
        w = d["order"][0]
        if w in adaptive_mom:
            continue
        for o in adaptive_mom:
            v = d["verdict"].get(o)
            if v is not None and math.isfinite(v) and v < ALPHA:
                beaten.append(f"{p} ({_label(w)} beat {_label(o)})")
    wins = [p for p, d in per_problem.items() if d["order"][0] in adaptive_mom]
    text = ("Textbook expectation: adaptive learning rates with momentum (Adam, AdamW) are the "
            "strongest defaults. Here an adaptive + momentum method ranked first on "
            f"{len(wins)} of {len(per_problem)} problems")
    text += f" ({', '.join(wins)})" if wins else ""
    if beaten:
        text += ("; **contrary to that expectation**, it was significantly beaten on "
                 + "; ".join(beaten))
    elif len(wins) < len(per_problem):
        winners = sorted({_label(d["order"][0]) for p, d in per_problem.items()
                          if p not in wins})
        text += (f"; where it did not rank first, the winner ({', '.join(winners)}) was not "
                 f"significantly better than it, so with the learning rate tuned for each, "
                 f"the simpler methods matched adaptive + momentum rather than lost to it - "
                 f"**not the clear advantage the textbook suggests**")
    report.conclusion(text + ".")
    tol = {o: np.mean([tolerance[p, o][0] for p in per_problem if (p, o) in tolerance])
           for o in names if any((p, o) in tolerance for p in per_problem)}
    if tol:
        grid_size = max(n for _, n in tolerance.values())
        hi = max(tol.values())
        lo = min(tol.values())
        most = [_label(o) for o, v in tol.items() if v == hi]
        least = [_label(o) for o, v in tol.items() if v == lo]
        report.conclusion(
            f"Learning-rate sensitivity: {', '.join(most)} had the most grid rates within "
            f"{TOLERANCE:.0%} of its best final validation loss (mean {fmt(hi, 3)} of "
            f"{grid_size} per problem), {', '.join(least)} the fewest ({fmt(lo, 3)}). The grids "
            "are "
            "half a decade apart, so one extra tolerated rate is a factor of ~3 in the rate.")
