"""Example study: batch, mini-batch and stochastic gradient descent on XOR.

The notes distinguish the three by how often they update: after all training examples (batch),
after a subset (mini-batch) or after every example (stochastic). With the learning rate tuned on
validation data for each (its own tuning seeds), which reaches the lower validation loss at an
equal number of epochs (equal gradient evaluations), which at an equal number of parameter
updates, and how many epochs, updates and measured seconds does each need to reach a target
validation accuracy?

It is also the small, complete example of a tuned study (:mod:`dlbasics.studies.spec`,
:mod:`dlbasics.studies.protocol`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import stats
from ..protocol import Axis, Tuning
from ..registry import register
from ..report import FRACTION, POSITIVE, fmt, fmt_ci
from ..spec import Setting, Study

METHODS = {"batch": None, "mini-batch": 16, "stochastic": 1}
#: One colour per method, in every figure.
COLORS = {"batch": "C0", "mini-batch": "C1", "stochastic": "C2"}
#: Validation accuracy whose first epoch the time-to-target comparisons use.
TARGET_ACCURACY = 0.9
#: A final validation loss above this counts as not settled (the networks fit XOR far better).
UNSETTLED = 0.1
#: Equivalence margin of the loss and cost comparisons, which are made on the logarithms (the
#: losses span decades): a ratio within (1/r, r).
COST_RATIO = 1.5


def _sizes(quick):
    if quick:
        return {"n": 200, "epochs": 30, "lrs": [0.1, 1.0]}
    return {"n": 1000, "epochs": 200, "lrs": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]}


def _build(quick):
    z = _sizes(quick)

    def build(f):
        return Setting(
            problem="xor", problem_args={"n": z["n"], "noise": 0.25},
            model={"hidden": [8], "activation": "tanh"},
            optimizer="sgd", hyper={"lr": f["lr"]},
            batch_size=METHODS[f["method"]], epochs=z["epochs"], factors=f,
        )
    return build


@register("gd_demo")
def make(profile):
    quick = profile == "quick"
    z = _sizes(quick)
    return Study(
        name="gd_demo",
        title="Batch, mini-batch and stochastic gradient descent on XOR",
        question="With the learning rate tuned on validation data for each, how do batch, "
                 "mini-batch (16) and stochastic gradient descent compare on XOR in validation "
                 "loss at equal epochs and at equal parameter updates, and in epochs, updates "
                 f"and measured seconds to reach {TARGET_ACCURACY:.0%} validation accuracy?",
        settings=(),
        seeds=range(10, 13) if quick else range(10, 20),
        tuning=Tuning(_build(quick), [{"method": m} for m in METHODS],
                      {"lr": Axis(z["lrs"], scale="log", high=30.0)},
                      tune_seeds=[0, 1] if quick else [0, 1, 2], metric="final_val_loss"),
        timing_repeats=2 if quick else 3,
        analysis=analyse,
        notes="A 2-8-1 tanh network with a sigmoid output and binary cross-entropy, plain SGD "
              "with a fixed learning rate, tuned per method (lowest mean final validation loss "
              "on the tuning seeds: the comparison is at the final epoch); every method sees "
              "each training example once per epoch, so an epoch costs the same number of "
              "gradient evaluations for all three, but "
              "batch makes 1 update per epoch, mini-batch ceil(n_train / 16) and stochastic "
              "n_train.",
    )


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def updates_per_epoch(results, setting):
    """Parameter updates per epoch of ``setting`` (from its stored histories)."""
    for h in results.histories(setting).values():
        if h.get("updates"):
            return int(h["updates"][0])
    return 0


def value_at_updates(results, setting, budget, metric="val_loss"):
    """Per-seed ``metric`` at the last evaluation made within ``budget`` updates.

    Evaluations happen at the end of each epoch (epoch 0 before any update); returns
    ``(values, updates)``: the per-seed values (NaN where missing) and the updates made at the
    evaluation used (``-1``, values NaN, when even one epoch exceeds the budget or the budget
    lies beyond the run).
    """
    u = updates_per_epoch(results, setting)
    out = np.full(len(results.seeds), np.nan)
    if u <= 0:
        return out, -1
    e = int(budget // u)
    curves = results.curves(setting, metric)
    if e < 1 or e >= curves.shape[1]:   # before the first evaluation or beyond the run
        return out, -1
    return curves[:, e], u * e


def equal_update_pairs(results, best):
    """Pairs ``(name, a, b, budget, used_a, used_b)`` at equal updates.

    Each pair is compared at the smaller of the two total budgets (the method with fewer
    updates per epoch, at its final epoch); a method whose first epoch already exceeds that
    budget has no comparable point (``used_b == -1``).
    """
    order = sorted(best, key=lambda m: updates_per_epoch(results, best[m]))
    pairs = []
    for a, b in itertools.combinations(order, 2):
        sa, sb = best[a], best[b]
        budget = updates_per_epoch(results, sa) * sa.epochs
        va, ua = value_at_updates(results, sa, budget)
        vb, ub = value_at_updates(results, sb, budget)
        pairs.append((f"{a} / {b}", va, vb, budget, ua, ub))
    return pairs


def log_band(ax, x, curves, label, color):
    """Geometric mean of positive ``(n_seeds, n_points)`` curves with the 95% interval of the
    mean of their logarithms, for a log axis (one seed's outlier does not dominate it)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(np.asarray(curves) > 0, curves, np.nan))
    mean, lo, hi, _ = stats.curve_ci(logs)
    (line,) = ax.plot(x, np.exp(mean), label=label, color=color, linewidth=1.6)
    ax.fill_between(x, np.exp(lo), np.exp(hi), color=color, alpha=0.2, linewidth=0)
    return line


def _ratio(r):
    """A comparison on the logarithms as a ratio with its interval."""
    return (f"{fmt(math.exp(r['diff']), 3)} [{fmt(math.exp(r['lo']), 3)}, "
            f"{fmt(math.exp(r['hi']), 3)}]")


def _words(r, a, b):
    v = r["verdict"]
    return {"a better": f"{a} lower", "b better": f"{b} lower"}.get(v, v)


# ----------------------------------------------------------------------------------------------
# the analysis
# ----------------------------------------------------------------------------------------------


def analyse(results, report):
    best = {s.factors["method"]: s for s in results.settings}
    best = {m: best[m] for m in METHODS if m in best}
    if not best:
        report.conclusion("No method has a selected setting.")
        return
    n = len(results.seeds)

    # -- curves of each method at its tuned learning rate ---------------------------------------
    late = {m: int(np.sum(results.values(s, "best_val_epoch") > 0.9 * s.epochs))
            for m, s in best.items()}
    falling = [f"{m} ({k}/{n} seeds)" for m, k in late.items() if k > n // 2]
    flat = (" Still falling at the end (lowest validation loss in the last 10% of the epochs "
            "for most seeds): " + ", ".join(falling) + "." if falling else
            " Every method's lowest validation loss came before the last 10% of the epochs "
            "for most seeds.")
    with report.figure(
        "curves",
        f"Validation loss of each method at its tuned learning rate (geometric mean and 95% CI "
        f"of the mean log over {n} report seeds, each with its own data), per epoch (equal "
        f"gradient evaluations) and per parameter update; both loss axes are logarithmic "
        f"because the losses span decades." + flat, ncols=2,
    ) as (_, (ax1, ax2)):
        for m, s in best.items():
            label = f"{m} (lr={fmt(s.factors['lr'], 3)})"
            log_band(ax1, results.epochs(s), results.curves(s, "val_loss"), label, COLORS[m])
            upd = np.nanmean(results.curves(s, "updates"), axis=0)
            log_band(ax2, np.r_[0.5, upd], results.curves(s, "val_loss"), label, COLORS[m])
        ax1.set_xlabel("epoch")
        ax2.set_xlabel("parameter updates (log scale; epoch 0 drawn at 0.5)")
        ax2.set_xscale("log")
        for ax in (ax1, ax2):
            ax.set_yscale("log")
            ax.set_ylabel("validation loss (binary cross-entropy, log scale)")
            ax.legend()

    # -- sensitivity to the learning rate (tuning seeds) ----------------------------------------
    tune = results.tuning
    metric = results.study.tuning.metric if results.study.tuning else "final_val_loss"
    if tune is not None and tune.settings:
        with report.figure(
            "lr",
            f"The selection metric ({metric}) against the learning rate on the tuning seeds "
            f"(line: the arithmetic mean over the tuning seeds, which the selection uses; "
            f"dots: the individual tuning seeds ({len(results.study.tuning.tune_seeds)}; an "
            f"interval from so few seeds would span decades on a log axis); diverged runs "
            f"left out; ringed: the selected value), log-log.",
        ) as (_, ax):
            for m in best:
                ss = sorted(tune.select(method=m), key=lambda s: s.factors["lr"])
                lrs = np.array([s.factors["lr"] for s in ss])
                vals = [tune.values(s, metric) for s in ss]
                mean = np.array([float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
                                 for v in vals])
                ax.plot(lrs, mean, marker="o", label=m, color=COLORS[m])
                for x, v in zip(lrs, vals, strict=True):
                    v = v[np.isfinite(v) & (v > 0)]
                    ax.plot(np.full(v.size, x), v, ".", ms=4, alpha=0.6, color=COLORS[m])
                sel = best[m].factors["lr"]
                if sel in lrs:
                    ax.plot([sel], [mean[list(lrs).index(sel)]], "o", ms=12, mfc="none",
                            color=COLORS[m])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("learning rate (log scale)")
            ax.set_ylabel(f"{metric} (log scale)")
            ax.legend()

    # -- costs to the target ----------------------------------------------------------------------
    ttt, secs, rows = {}, {}, []
    for m, s in best.items():
        t = stats.times_to_target(results, s, TARGET_ACCURACY, "val_accuracy", "above")
        ttt[m] = t
        secs[m] = (stats.measured_seconds_to_target(results, s, TARGET_ACCURACY,
                                                    "val_accuracy", "above")
                   if results.timing is not None else np.full(n, np.nan))
        rows.append([m, fmt(s.factors["lr"]), updates_per_epoch(results, s),
                     fmt_ci(results.values(s, "final_val_loss"), bounds=POSITIVE),
                     fmt_ci(results.values(s, "es_test_accuracy"), bounds=FRACTION),
                     f"{t['reached']}/{n}", fmt_ci(t["epochs"], bounds=POSITIVE),
                     fmt_ci(t["updates"], bounds=POSITIVE), fmt_ci(secs[m], bounds=POSITIVE)])
    report.table(["method", "tuned lr", "updates per epoch", "final val loss",
                  "test acc (early-stopped)", "reached target", "epochs to target",
                  "updates to target", "measured seconds to target"], rows,
                 caption=f"Each method at its tuned learning rate on {n} report seeds (mean "
                         f"[95% CI]); costs of the first epoch with validation accuracy >= "
                         f"{TARGET_ACCURACY:.0%}, over the seeds that reached it; seconds = "
                         f"that epoch count x the median seconds per epoch measured in the "
                         f"timing pass (each setting trained alone).")

    # -- paired comparisons -----------------------------------------------------------------------
    names = list(best)
    margin = math.log(COST_RATIO)
    at_epochs = stats.compare(
        [(f"{a} / {b}", np.log(results.values(best[a], "final_val_loss")),
          np.log(results.values(best[b], "final_val_loss")))
         for a, b in itertools.combinations(names, 2)], margin=margin)
    up_pairs = equal_update_pairs(results, best)
    comparable = [p for p in up_pairs if p[4] >= 0 and p[5] >= 0]
    at_updates = stats.compare([(nm, np.log(a), np.log(b)) for nm, a, b, *_ in comparable],
                               margin=margin)
    cost = {}
    for key, vals in (("updates", {m: ttt[m]["updates"] for m in names}),
                      ("measured seconds", secs), ("epochs", {m: ttt[m]["epochs"] for m in names})):
        with np.errstate(divide="ignore", invalid="ignore"):
            cost[key] = stats.compare(
                [(f"{a} / {b}", np.log(np.maximum(vals[a], 1e-300)),
                  np.log(np.maximum(vals[b], 1e-300)))
                 for a, b in itertools.combinations(names, 2)], margin=math.log(COST_RATIO))
    prow = []
    for r in at_epochs:
        a, b = r["name"].split(" / ")
        prow.append([f"equal epochs ({best[a].epochs}), final", r["name"], r["n"], _ratio(r),
                     fmt(r["p_holm"], 3), fmt(r["tost_p_holm"], 3), _words(r, a, b)])
    for r, (_, _, _, budget, ua, ub) in zip(at_updates, comparable, strict=True):
        a, b = r["name"].split(" / ")
        ea = ua // max(1, updates_per_epoch(results, best[a]))
        eb = ub // max(1, updates_per_epoch(results, best[b]))
        prow.append([f"equal updates (<= {budget}: epochs {ea} and {eb})", r["name"],
                     r["n"], _ratio(r), fmt(r["p_holm"], 3), fmt(r["tost_p_holm"], 3),
                     _words(r, a, b)])
    report.table(["compared at", "ratio of validation losses", "pairs", "ratio [95% CI]",
                  "Holm p", f"Holm p (TOST, within x{COST_RATIO:g})", "verdict"], prow,
                 caption="Paired comparisons over the report seeds (same seed: same data, "
                         "initialisation and visiting order) on the logarithms of the "
                         "validation losses, which span decades: ratio = geometric mean of the "
                         "per-seed ratios (below 1: the first is lower). "
                         "Equal updates: both at the last evaluation within the total updates "
                         "of the method with fewer updates per epoch. Holm-corrected within "
                         "each row group; equivalence only through the TOST with the margin.")
    crow = []
    for key, rs in cost.items():
        for r in rs:
            a, b = r["name"].split(" / ")
            crow.append([key, r["name"], r["n"], _ratio(r), fmt(r["p_holm"], 3),
                         fmt(r["tost_p_holm"], 3),
                         {"a better": f"{a} fewer", "b better": f"{b} fewer"}.get(
                             r["verdict"], f"equivalent within x{COST_RATIO:g}"
                             if r["verdict"].startswith("equivalent") else r["verdict"])])
    report.table(["cost to target", "ratio", "pairs", "ratio [95% CI]", "Holm p",
                  f"Holm p (TOST, within x{COST_RATIO:g})", "verdict"], crow,
                 caption=f"Cost to reach {TARGET_ACCURACY:.0%} validation accuracy, as ratios "
                         f"(geometric mean of the per-seed ratios; paired t-test on the "
                         f"logarithms over the seeds where both reached it; Holm within each "
                         f"cost).")

    # -- conclusions from the numbers -------------------------------------------------------------
    means = {}
    for m, s in best.items():
        v = results.values(s, "final_val_loss")
        v = v[np.isfinite(v) & (v > 0)]
        means[m] = float(np.exp(np.mean(np.log(v)))) if v.size else math.nan
    order = sorted(means, key=lambda m: (not np.isfinite(means[m]), means[m]))
    winner = order[0]
    text = (f"**Equal epochs.** After {best[winner].epochs} epochs (the same gradient "
            f"evaluations for all), the geometric mean final validation loss was lowest for "
            f"**{winner}** ({fmt(means[winner], 3)}; " + ", ".join(
                f"{m} {fmt(means[m], 3)}" for m in order[1:]) + ").")
    for r in at_epochs:
        a, b = r["name"].split(" / ")
        text += (f" {a} / {b}: {_ratio(r)} ({_words(r, a, b)}, Holm p = "
                 f"{fmt(r['p_holm'], 3)}).")
    high = {m: int(np.sum(results.values(s, "final_val_loss") > UNSETTLED))
            for m, s in best.items()}
    if any(high.values()):
        text += (f" Report seeds that ended with a validation loss above {UNSETTLED:g}: "
                 + ", ".join(f"{m} {k}/{n}" for m, k in high.items())
                 + " (at the learning rate chosen on the tuning seeds).")
    report.conclusion(text)
    text = "**Equal updates.**"
    for r, (_, _, _, budget, _ua, _ub) in zip(at_updates, comparable, strict=True):
        a, b = r["name"].split(" / ")
        text += (f" Within {budget} updates, validation loss {a} / {b}: {_ratio(r)} "
                 f"({_words(r, a, b)}, Holm p = {fmt(r['p_holm'], 3)}).")
    for nm, _, _, budget, _, ub in up_pairs:
        if ub < 0:
            a, b = nm.split(" / ")
            text += (f" {b} cannot be compared with {a} at equal updates: a single epoch of "
                     f"{b} ({updates_per_epoch(results, best[b])} updates) exceeds all "
                     f"{budget} updates of {a}.")
    report.conclusion(text)
    reached = {m: t for m, t in ttt.items() if t["reached"]}
    if reached:
        med = {k: {m: float(np.nanmedian(t[k])) for m, t in reached.items()}
               for k in ("epochs", "updates")}
        msec = {m: float(np.nanmedian(secs[m])) for m in reached}
        fu = min(med["updates"], key=med["updates"].get)
        fe = " and ".join(m for m, v in med["epochs"].items()
                          if v == min(med["epochs"].values()))
        text = (f"**Cost to {TARGET_ACCURACY:.0%} validation accuracy** (medians over the seeds "
                f"that reached it): updates " + ", ".join(
                    f"{m} {fmt(v, 3)}" for m, v in med["updates"].items())
                + "; epochs " + ", ".join(f"{m} {fmt(v, 3)}" for m, v in med["epochs"].items())
                + "; measured seconds " + ", ".join(f"{m} {fmt(v, 3)}" for m, v in msec.items())
                + f". Fewest updates: **{fu}**; fewest epochs: **{fe}**.")
        for key in ("updates", "measured seconds"):
            sig = [r for r in cost[key] if r["verdict"] in ("a better", "b better")]
            if sig:
                text += f" Significant {key} ratios (Holm): " + "; ".join(
                    f"{r['name']} = {_ratio(r)}" for r in sig) + "."
        never = sorted(set(ttt) - set(reached))
        if never:
            text += f" Never reached by any report seed: {', '.join(never)}."
        report.conclusion(text)
    # the headline claim
    head = (f"On XOR with tuned learning rates ({n} report seeds), **{winner}** gradient descent "
            f"reached the lowest (geometric) mean final validation loss at equal epochs")
    parts = []
    for other in order[1:]:
        r = next(r for r in at_epochs if set(r["name"].split(" / ")) == {winner, other})
        a, b = r["name"].split(" / ")
        sign = 1 if a == winner else -1
        lo, hi = sorted((math.exp(sign * r["lo"]), math.exp(sign * r["hi"])))
        verdict = (f"significant, Holm p = {fmt(r['p_holm'], 3)}"
                   if r["verdict"] in ("a better", "b better") else r["verdict"])
        parts.append(f"{winner} / {other}: ratio {fmt(math.exp(sign * r['diff']), 3)}, 95% CI "
                     f"[{fmt(lo, 3)}, {fmt(hi, 3)}], {verdict}")
    if parts:
        head += " (" + "; ".join(parts) + ")"
    if reached:
        head += (f", while **{fu}** needed the fewest parameter updates to reach "
                 f"{TARGET_ACCURACY:.0%} validation accuracy (median {fmt(med['updates'][fu], 3)}"
                 f" against " + ", ".join(f"{m} {fmt(v, 3)}" for m, v in med["updates"].items()
                                         if m != fu) + ")")
    report.claim(head + ".")
    # what the headline rests on: a budget some methods had not finished, and selections that
    # were unstable on some report seeds
    caveats = []
    if falling:
        caveats.append(f"after {max(s.epochs for s in best.values())} epochs the validation "
                       f"loss of " + ", ".join(falling) + " was still falling (lowest in the "
                       "last 10% of the epochs), so the equal-epoch ranking is that of this "
                       "budget, not of converged networks")
    for m, k in high.items():
        if not k:
            continue
        fin = results.values(best[m], "test_accuracy")
        caveats.append(f"{m} at its selected rate ({fmt(best[m].factors['lr'], 3)}) ended "
                       f"with a validation loss above {UNSETTLED:g} on {k}/{n} report seeds "
                       f"(final test accuracy {fmt_ci(fin, bounds=FRACTION)}): the rate chosen "
                       f"on {len(results.study.tuning.tune_seeds) if results.study.tuning else 0}"
                       f" tuning seeds is unstable on others, which widens its intervals")
    if caveats:
        report.claim("Qualifications: " + "; ".join(caveats) + ".")
