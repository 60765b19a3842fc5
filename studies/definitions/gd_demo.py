"""Example study: batch, mini-batch and stochastic gradient descent on XOR.

The notes distinguish the three by how often they update: after all training examples (batch),
after a subset (mini-batch) or after every example (stochastic). With the learning rate chosen
on validation data for each, which reaches the lower validation loss in a fixed number of
epochs, and how many epochs, updates and seconds does each need to reach a target accuracy?

It is also the small, complete example of the Study API (:mod:`dlbasics.studies.spec`).
"""

from __future__ import annotations

import itertools

import numpy as np

from .. import stats
from ..registry import register
from ..report import FRACTION, POSITIVE, band, fmt, fmt_ci
from ..spec import Setting, Study, grid

METHODS = {"batch": None, "mini-batch": 16, "stochastic": 1}
#: Validation accuracy whose first epoch the time-to-target table reports.
TARGET_ACCURACY = 0.9


@register("gd_demo")
def make(profile):
    quick = profile == "quick"
    lrs = [0.1, 1.0] if quick else [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    settings = [
        Setting(
            problem="xor",
            problem_args={"n": 200 if quick else 1000, "noise": 0.25},
            model={"hidden": [8], "activation": "tanh"},
            optimizer="sgd",
            hyper={"lr": f["lr"]},
            batch_size=METHODS[f["method"]],
            epochs=30 if quick else 100,
            factors=f,
        )
        for f in grid(method=list(METHODS), lr=lrs)
    ]
    return Study(
        name="gd_demo",
        title="Batch, mini-batch and stochastic gradient descent on XOR",
        question="With the learning rate tuned on validation data for each, how do batch, "
                 "mini-batch (16) and stochastic gradient descent compare on XOR in validation "
                 "loss after a fixed number of epochs, and in epochs, updates and seconds to "
                 f"reach {TARGET_ACCURACY:.0%} validation accuracy?",
        settings=settings,
        seeds=range(3 if quick else 10),
        analysis=analyse,
        notes="A 2-8-1 tanh network with a sigmoid output and binary cross-entropy, plain SGD "
              "with a fixed learning rate; every method sees each training example once per "
              "epoch, so an epoch costs the same number of gradient evaluations for all three.",
    )


def analyse(results, report):
    methods = results.factor_values("method")
    best = {}
    for m in methods:
        b, _ = stats.best_of_grid(results, results.select(method=m), key="final_val_loss")
        if b is not None:
            best[m] = b
    if not best:
        report.conclusion("No method completed a run without diverging.")
        return

    # -- curves of each method at its best learning rate --------------------------------------
    with report.figure("curves", "Validation loss of each method at its best learning rate "
                       "(mean and 95% CI over seeds), per epoch and per update",
                       ncols=2) as (_, (ax1, ax2)):
        for m, s in best.items():
            label = f"{m} (lr={s.factors['lr']:g})"
            band(ax1, results.epochs(s), results.curves(s, "val_loss"), label, bounds=POSITIVE)
            upd = np.nanmean(results.curves(s, "updates"), axis=0)
            band(ax2, np.r_[0.5, upd], results.curves(s, "val_loss"), label,
                 bounds=POSITIVE)
        ax1.set_xlabel("epoch")
        ax2.set_xlabel("parameter updates (log scale; epoch 0 drawn at 0.5)")
        ax2.set_xscale("log")
        for ax in (ax1, ax2):
            ax.set_ylabel("validation loss (binary cross-entropy)")
            ax.legend()

    # -- sensitivity to the learning rate -------------------------------------------------------
    with report.figure("lr", "Final validation loss against the learning rate (mean and 95% "
                       "CI over seeds; diverged runs left out)") as (_, ax):
        for m in methods:
            ss = results.select(method=m)
            lrs = np.array([s.factors["lr"] for s in ss])
            cis = [stats.mean_ci(results.values(s, "final_val_loss"), bounds=POSITIVE)
                   for s in ss]
            mean = np.array([c.mean for c in cis])
            err = np.array([[c.mean - c.lo, c.hi - c.mean] for c in cis]).T
            ax.errorbar(lrs, mean, yerr=np.nan_to_num(err), marker="o", capsize=3, label=m)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final validation loss")
        ax.legend()

    # -- table: best setting of each method, cost to reach the target -------------------------
    rows = []
    ttt = {}
    for m, s in best.items():
        t = stats.times_to_target(results, s, TARGET_ACCURACY, "val_accuracy", "above")
        ttt[m] = t
        rows.append([m, fmt(s.factors["lr"]),
                     fmt_ci(results.values(s, "final_val_loss"), bounds=POSITIVE),
                     fmt_ci(results.values(s, "test_accuracy"), bounds=FRACTION),
                     f"{t['reached']}/{len(results.seeds)}",
                     *(fmt_ci(t[k], bounds=POSITIVE) for k in ("epochs", "updates", "seconds"))])
    report.table(["method", "best lr (val)", "final val loss", "test acc", "reached target",
                  "epochs to target", "updates to target", "seconds to target"], rows,
                 caption=f"Each method at the learning rate with the lowest mean final "
                         f"validation loss; cost of the first epoch with validation accuracy "
                         f">= {TARGET_ACCURACY:.0%} (mean [95% CI] over the seeds that reached "
                         f"it). The test accuracy is reported, never used to choose.")

    # -- paired comparisons on the same seeds ---------------------------------------------------
    prow = []
    tests = {}
    for a, b in itertools.combinations(best, 2):
        p = stats.paired(results.values(best[a], "final_val_loss"),
                         results.values(best[b], "final_val_loss"))
        tests[(a, b)] = p
        prow.append([f"{a} - {b}", p["n"], fmt(p["diff"]), f"[{fmt(p['lo'])}, {fmt(p['hi'])}]",
                     fmt(p["t_p"], 3), fmt(p["wilcoxon_p"], 3)])
    if prow:
        report.table(["difference in final val loss", "pairs", "mean", "95% CI",
                      "paired t p", "Wilcoxon p"], prow,
                     caption="Paired comparisons on the same seeds (negative: the first is "
                             "better).")

    # -- conclusion from the numbers ------------------------------------------------------------
    means = {m: stats.mean_ci(results.values(s, "final_val_loss")).mean for m, s in best.items()}
    winner = min(means, key=lambda m: (np.isnan(means[m]), means[m]))
    text = (f"At its best learning rate, **{winner}** gradient descent reached the lowest mean "
            f"final validation loss ({fmt(means[winner])} after {best[winner].epochs} epochs).")
    for (a, b), p in tests.items():
        if winner not in (a, b) or p["n"] < 2:
            continue
        other = b if a == winner else a
        sig = "significant" if p["t_p"] < 0.05 else "not significant"
        text += (f" Against {other} ({fmt(means[other])}) the paired difference over "
                 f"{p['n']} seeds is {sig} at the 5% level (t-test p = {fmt(p['t_p'], 3)}).")
    report.conclusion(text)
    fast = {m: float(np.nanmedian(t["epochs"])) for m, t in ttt.items() if t["reached"]}
    if fast:
        low = min(fast.values())
        tied = [m for m, e in fast.items() if e == low]
        upd = {m: float(np.nanmedian(ttt[m]["updates"])) for m in tied}
        first = min(tied, key=upd.get)
        if len(tied) == 1:
            text = (f"**{first}** reached {TARGET_ACCURACY:.0%} validation accuracy in the "
                    f"fewest epochs (median {fmt(low)}, {fmt(upd[first])} updates)")
        else:
            text = (f"{' and '.join(tied)} reached {TARGET_ACCURACY:.0%} validation accuracy in "
                    f"the fewest epochs (median {fmt(low)}); of these **{first}** needed the "
                    f"fewest updates ({fmt(upd[first])})")
        others = [f"{m} {fmt(e)}" for m, e in fast.items() if m not in tied]
        if others:
            text += "; median epochs of the others: " + ", ".join(others)
        never = sorted(set(ttt) - set(fast))
        if never:
            text += f"; never reached by any seed: {', '.join(never)}"
        report.conclusion(text + ".")
