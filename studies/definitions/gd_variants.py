"""Batch, mini-batch and stochastic gradient descent on MNIST-1D, each trained past its minimum.

The notes define three ways to estimate the gradient: from the whole training set (batch), from
one sample (stochastic) or from a small random subset (mini-batch). This study trains the same
network (the MNIST-1D reference MLP, 40-100-100-10 ReLU) with plain SGD at batch sizes 1, 8, 32,
128 and the whole training set, each with its own learning rate tuned and its own epoch
budget, long enough for its validation loss to pass its minimum. It then compares them at equal
epochs (equal gradient evaluations), at equal updates and at equal measured seconds, and in the
test accuracy each finally reaches.

Protocol (:mod:`dlbasics.studies.protocol`): learning rate tuned per batch size on 5 tuning
seeds (lowest mean best-epoch validation loss, grids extended at their edges; an earlier
version with 3 tuning seeds picked mini-batch 128's rate 10x below mini-batch 32's on per-seed
differences of both signs, and the analysis still reports such inversions); the selected rate
of each method on 10 fresh seeds (fresh MNIST-1D draws); each selected setting timed alone 3
times.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .. import stats
from ..analysis import load_note, log_axis, loss_ylim, paired
from ..protocol import Axis, Tuning
from ..registry import register
from ..report import FRACTION, POSITIVE, band, fmt, fmt_ci
from ..spec import Setting, Study

#: method -> (batch size, epoch budget, log10 of the smallest grid learning rate). Budgets
#: from a pilot: each is several times the epoch of the lowest validation loss at good rates.
METHODS = {
    "stochastic": (1, 40, -3.0),
    "mini-batch 8": (8, 60, -2.5),
    "mini-batch 32": (32, 120, -2.0),
    "mini-batch 128": (128, 300, -1.5),
    "batch": (None, 2000, -1.0),
}
COLORS = dict(zip(METHODS, ("#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd"),
                  strict=True))
HIDDEN = [100, 100]
N_TRAIN = 4000
#: Time-to-target: this fraction of the best method's mean early-stopped validation accuracy.
TARGET_FRACTION = 0.95
#: Equivalence margin of the accuracy comparisons (one point of accuracy).
MARGIN = 0.01
#: A run whose best validation epoch lies in the last tenth of its budget may not have
#: reached its minimum.
LATE = 0.9
#: Tuning seeds of the full profile.
TUNE_SEEDS = (0, 1, 2, 3, 4)


def _build(quick):
    def build(f):
        batch, epochs, _ = METHODS[f["method"]]
        return Setting(problem="mnist1d",
                       problem_args={"n_train": 400, "n_val": 100} if quick else {},
                       model={"hidden": HIDDEN, "activation": "relu"}, optimizer="sgd",
                       hyper={"lr": f["lr"]}, batch_size=batch,
                       epochs=max(2, epochs // 20) if quick else epochs, metrics="running",
                       factors=f)

    return build


def _axes(quick):
    def axes(cond):
        low = METHODS[cond["method"]][2]
        vals = [float(f"{10 ** (low + 0.5 * k):.3g}") for k in range(5)]
        return {"lr": Axis(vals[1:3] if quick else vals)}

    return axes


@register("gd_variants")
def make(profile):
    quick = profile == "quick"
    return Study(
        "gd_variants",
        title="Batch, mini-batch and stochastic gradient descent (MNIST-1D)",
        question="Each trained past its validation-loss minimum with a learning rate tuned for "
                 "it, how do stochastic, "
                 "mini-batch and batch gradient descent compare at equal epochs, at equal "
                 "updates, at equal measured seconds, and in the test accuracy they reach?",
        settings=(),
        seeds=range(100, 102) if quick else range(100, 110),
        tuning=Tuning(_build(quick), [{"method": m} for m in METHODS], _axes(quick),
                      tune_seeds=TUNE_SEEDS[:1] if quick else TUNE_SEEDS, metric="best_val_loss",
                      max_extensions=0 if quick else 3),
        timing_repeats=1 if quick else 3,
        analysis=analyse,
        notes="**Network and data.** MNIST-1D generated with each run seed (4000 training, 1000 "
              "validation and 1250 test examples), 40-100-100-10 with ReLU and softmax "
              "cross-entropy, Glorot-uniform initialisation, plain SGD (no momentum), a new "
              "shuffle every epoch. Epoch budgets differ by method (40 epochs for batch size 1 "
              "up to 2000 for the full batch): each method trains until its validation loss "
              "has passed its minimum, and the early-stopped network (lowest validation loss) "
              "is what is compared in the end. An epoch is one pass over the training set, so "
              "equal epochs are equal gradient evaluations (4000 per epoch) but not equal "
              "updates (4000, 500, 125, 32 or 1 per epoch).",
    )


# ----------------------------------------------------------------------------------------------
# analysis
# ----------------------------------------------------------------------------------------------


def _pm(x):
    return "-" if not math.isfinite(x) else f"{x:+.3f}"


def _diff(c):
    return f"{_pm(c['diff'])} [{_pm(c['lo'])}, {_pm(c['hi'])}]"


def _lead(c):
    """``b - a`` of a comparison ``a - b``: how far the leader ``b`` is ahead."""
    return f"{_pm(-c['diff'])} [{_pm(-c['hi'])}, {_pm(-c['lo'])}]"


def _best_before(vl, va, last):
    """Validation accuracy of the lowest-validation-loss epoch among epochs 0..``last``."""
    out = np.full(vl.shape[0], np.nan)
    for i in range(vl.shape[0]):
        v = vl[i, : last + 1]
        if np.isfinite(v).any():
            out[i] = va[i, int(np.nanargmin(v))]
    return out


def _at(results, chosen, order, last_epoch):
    """Per method: per-seed early-stopped validation accuracy using epochs up to
    ``last_epoch[method]`` only."""
    return {m: _best_before(results.curves(chosen[m], "val_loss"),
                            results.curves(chosen[m], "val_accuracy"), last_epoch[m])
            for m in order}


def _compare_table(report, vals, order, caption, what):
    best = max(order, key=lambda m: np.nanmean(vals[m]))
    cmp = stats.compare([(f"{m} - {best}", vals[m], vals[best]) for m in order if m != best],
                        margin=MARGIN, lower_is_better=False)
    by = {c["name"].split(" - ")[0]: c for c in cmp}
    report.table(["method", what, f"vs {best}: diff [95% CI]", "Holm p", "verdict"],
                 [[m, fmt_ci(vals[m], bounds=FRACTION),
                   "-" if m == best else _diff(by[m]),
                   "-" if m == best else fmt(by[m]["p_holm"], 3),
                   "-" if m == best else by[m]["verdict"]] for m in order],
                 caption=caption)
    return best, cmp


def _curves_figure(results, report, chosen, order, spe, upe):
    with report.figure(
        "curves",
        "Validation loss of the selected setting of each method, mean and 95% CI over the "
        "report seeds, against epochs (equal gradient evaluations), against updates, and "
        "against measured seconds (seconds per epoch from the timing pass). Log axes: the "
        "three scales span decades.",
        ncols=3, figsize=(17.5, 4.4),
    ) as (_, axes):
        means = []
        for m in order:
            s = chosen[m]
            c = results.curves(s, "val_loss")
            means.append(np.nanmean(c, axis=0))
            e = results.epochs(s)
            for ax, x in zip(axes, (e, e * upe[m], e * spe[m]["median"]), strict=True):
                keep = x > 0
                band(ax, x[keep], c[:, keep], m, color=COLORS[m], bounds=POSITIVE)
        for ax, label in zip(axes, ("epoch", "update", "measured training seconds"),
                             strict=True):
            ax.set_xlabel(label)
            ax.set_ylabel("validation loss")
            loss_ylim(ax, means)
            log_axis(ax, "x")
            log_axis(ax, "y")
        axes[0].legend()


def _rate_order(chosen, order):
    """A sentence on whether the selected rate grows with the batch size (computed)."""
    lrs = [chosen[m].hyper["lr"] for m in order]
    drops = [f"{b} ({fmt(chosen[b].hyper['lr'], 3)}) below {a} ({fmt(chosen[a].hyper['lr'], 3)})"
             for a, b in zip(order, order[1:], strict=False)
             if chosen[b].hyper["lr"] < chosen[a].hyper["lr"]]
    if not drops:
        return ("The selected rate does not decrease as the batch grows ("
                + ", ".join(fmt(v, 3) for v in lrs) + ").")
    return ("The selected rate does not grow monotonically with the batch size: "
            + "; ".join(drops) + ".")


def _sensitivity_figure(results, report, chosen, order):
    tun = results.tuning
    with report.figure(
        "lr_sensitivity",
        "Learning-rate sensitivity on the tuning seeds: mean best-epoch validation loss "
        "against the learning rate for each method (circles: selected; a missing point "
        "diverged on a tuning seed). " + _rate_order(chosen, order) + " Log axes.",
    ) as (_, ax):
        ys = []
        for m in order:
            pts = sorted(tun.select(method=m), key=lambda t: t.factors["lr"])
            x = np.array([t.factors["lr"] for t in pts])
            y = np.array([np.mean(tun.values(t, "best_val_loss")) for t in pts])
            ys.append(y)
            ax.plot(x, y, marker=".", color=COLORS[m], label=m)
            s = chosen[m]
            ax.plot([s.factors["lr"]], [np.mean(tun.values(s, "best_val_loss"))], "o",
                    mfc="none", ms=9, color=COLORS[m])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("best-epoch validation loss (tuning seeds)")
        loss_ylim(ax, ys, below=1.3, above=3.0)
        log_axis(ax, "x")
        log_axis(ax, "y")
        ax.legend()


def _selection_notes(results, chosen, order):
    """Sentences on selections that rest on small tuning differences or sit next to a rate
    that diverged (computed from the tuning runs)."""
    tun = results.tuning
    if tun is None:
        return []
    out = []
    for a, b in zip(order, order[1:], strict=False):
        la, lb = chosen[a].hyper["lr"], chosen[b].hyper["lr"]
        if lb >= la:
            continue
        pts = {t.factors["lr"]: tun.values(t, "best_val_loss") for t in tun.select(method=b)}
        sel = pts.get(lb)
        alt = min((x for x in pts if x >= la and np.isfinite(pts[x]).all()), default=None)
        if sel is None or alt is None:
            continue
        nxt = min((x for x in pts if x > lb and np.isfinite(pts[x]).all()), default=alt)

        def _d(x, pts=pts, sel=sel):
            d = pts[x] - sel
            return (f"at lr {fmt(x, 3)} higher by {float(np.mean(d)):+.3f} (per seed: "
                    + ", ".join(f"{v:+.3f}" for v in d) + ")")

        dn = pts[nxt] - sel
        n_tr = chosen[b].problem_args.get("n_train", N_TRAIN)
        gb = _noise(lb, _bs(results, chosen[b]), n_tr)
        ratio = _noise(la, _bs(results, chosen[a]), n_tr) / gb if gb > 0 else math.inf
        mixed = bool((dn < 0).any() and (dn > 0).any())
        out.append(
            f"{b}'s selected rate ({fmt(lb, 3)}) is {fmt(la / lb, 2)}x below {a}'s "
            f"({fmt(la, 3)}), the opposite of the linear scaling rule (Goyal et al. 2017: the "
            f"rate grows in proportion to the batch). On its {len(sel)} tuning seeds the mean "
            f"best-epoch validation loss is " + _d(nxt)
            + ("" if nxt == alt else "; " + _d(alt))
            + (f": the tuning seeds do not separate {fmt(lb, 3)} from {fmt(nxt, 3)} "
               "(per-seed differences of both signs)" if mixed else "")
            + f". At the selected rate its best validation epoch is "
            f"{fmt(float(np.nanmean(results.values(chosen[b], 'best_val_epoch'))), 3)} of "
            f"{chosen[b].epochs}, and its SGD noise scale (Smith & Le 2018: g = lr (N / B - 1), "
            f"about lr N / B, with N = {n_tr} training examples) is {fmt(ratio, 2)}"
            f"x smaller than {a}'s: its place in the accuracy ranking may be that of its rate "
            f"rather than of its batch size; separating the two needs a finer rate grid or "
            "more tuning seeds.")
    for m in order:
        lr = chosen[m].hyper["lr"]
        above = sorted((t for t in tun.select(method=m) if t.factors["lr"] > lr),
                       key=lambda t: t.factors["lr"])
        if above:
            c = tun.counts(above[0])
            if c["diverged"]:
                out.append(f"{m}'s selected rate ({fmt(lr, 3)}) is the one just below a rate "
                           f"that diverged ({fmt(above[0].factors['lr'], 3)}: {c['diverged']} of "
                           f"{sum(c.values())} tuning seeds), so it trains near its stability "
                           "limit (the spikes of its validation loss in the curves).")
    return out


def _stopping_note(results, chosen, order, es, fin):
    """A sentence on how the early-stopped and final test accuracies of each method differ
    (computed): stopping at the lowest validation *loss* is not stopping at the highest
    accuracy, and the ranking of early-stopped networks carries that criterion."""
    up, down, same = [], [], []
    for m in order:
        r = paired(fin[m], es[m])
        if not math.isfinite(r["t_p"]):
            continue
        txt = f"{m} {_pm(r['diff'])} [{_pm(r['lo'])}, {_pm(r['hi'])}]"
        (same if r["t_p"] >= stats.ALPHA else up if r["diff"] > 0 else down).append(txt)
    if not (up or down or same):
        return ""
    parts = []
    if up:
        parts.append("higher after the last epoch than at the lowest validation loss for "
                     + ", ".join(up))
    if down:
        parts.append("lower for " + ", ".join(down))
    if same:
        parts.append("not significantly different for " + ", ".join(same))
    return ("Final minus early-stopped test accuracy (paired t, unadjusted): "
            + "; ".join(parts) + ". The early-stopped networks stop on validation *loss*; "
            "where the accuracy keeps rising past that point, the early-stopped comparison "
            "holds those methods back by the stopping rule, not by their final networks.")


def _literature_note(results, chosen, order, best_es, best_fin, cmp_es):
    """Where the result stands against the literature on batch size (the wording follows the
    computed winners)."""
    big = order[-1]
    who = "the full batch" if chosen[big].batch_size is None else f"the largest batch ({big})"
    if best_es == big:
        es_txt = (f"here {who} has the highest early-stopped test accuracy, the opposite "
                  "direction")
    else:
        es_txt = f"here {best_es}, not the largest batch, has the highest early-stopped accuracy"
    fin = stats.mean_ci(results.values(chosen[big], "test_accuracy"), bounds=FRACTION)
    fin_txt = (f"after the last epoch {best_fin} leads"
               + (f" and {big}'s final accuracy varies widely over seeds ({fin.fmt()})"
                  if best_fin != big and math.isfinite(fin.hi) and fin.hi - fin.lo > 0.1
                  else ""))
    lr = chosen[big].hyper["lr"]
    above = sorted((t for t in results.tuning.select(method=big) if t.factors["lr"] > lr),
                   key=lambda t: t.factors["lr"]) if results.tuning is not None else []
    edge = bool(above) and results.tuning.counts(above[0])["diverged"] > 0
    vl = results.curves(chosen[big], "val_loss")
    with np.errstate(divide="ignore", invalid="ignore"):
        jumps = np.nanmax(vl[:, 1:] / vl[:, :-1], axis=1) if vl.shape[1] > 1 else np.array([])
    spiky = int(np.sum(jumps > 2))
    how = (["the next rate on the grid diverged on a tuning seed" if edge else ""]
           + [f"its validation loss more than doubles from one epoch to the next on {spiky} of "
              f"{vl.shape[0]} report seeds" if spiky else ""])
    how = "; ".join(h for h in how if h)
    return (
        "Literature: Keskar et al. (2017) found a generalisation gap for large batches (about "
        "10% of the data, networks trained to a similar training accuracy, compared at the end "
        "of training) and related it to sharper minima; Smith & Le (2018) trace the effect of "
        "the batch size to the noise scale g = lr (N / B - 1), which is 0 for the full batch, "
        f"so a rate tuned per batch size changes what is compared. {es_txt[0].upper()}"
        f"{es_txt[1:]}; {fin_txt}. This is not a test of their claim: the rate is tuned per "
        f"batch size ({big}: {fmt(lr, 3)}" + (f"; {how}" if how else "") + "), the "
        "networks are early-stopped on validation loss, and the problem and network are small. "
        "Full-batch gradient descent with a well-tuned rate matching small-batch SGD has also "
        "been reported on CIFAR-10 (Geiping et al. 2022, with gradient clipping and explicit "
        "regularisation).")


def _bs(results, s):
    return s.problem_args.get("n_train", N_TRAIN) if s.batch_size is None else s.batch_size


def _noise(lr, batch, n=N_TRAIN):
    """Smith & Le's (2018) SGD noise scale ``lr (N / B - 1)`` (0 for the full batch)."""
    return lr * (n / batch - 1)


def analyse(results, report):
    chosen = {c.condition["method"]: c.setting for c in results.plan.choices
              if c.setting is not None}
    order = [m for m in METHODS if m in chosen]
    if not order:
        report.conclusion("The tuning stage is incomplete: nothing to report yet.")
        return
    spe = {m: stats.seconds_per_epoch(results.timing, chosen[m]) if results.timing is not None
           else {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0, "load": math.nan}
           for m in order}

    # 1. convergence and the final (early-stopped) generalisation
    report.section("Each method trained past its validation-loss minimum")
    _sensitivity_figure(results, report, chosen, order)
    rows, late = [], []
    for m in order:
        s = chosen[m]
        be = results.values(s, "best_val_epoch")
        n_late = int(np.sum(be >= LATE * s.epochs))
        if n_late:
            late.append(f"{m} ({n_late} of {int(np.isfinite(be).sum())} seeds)")
        sec = spe[m]
        rows.append([m, "all" if s.batch_size is None else s.batch_size, fmt(s.hyper["lr"], 3),
                     s.epochs, fmt_ci(be, bounds=POSITIVE),
                     fmt_ci(results.values(s, "es_test_accuracy"), bounds=FRACTION),
                     fmt_ci(results.values(s, "test_accuracy"), bounds=FRACTION),
                     f"{fmt(sec['median'] * 1e3, 3)} ({fmt(sec['min'] * 1e3, 3)}-"
                     f"{fmt(sec['max'] * 1e3, 3)})", fmt(sec["load"], 2)])
    report.table(["method", "batch", "selected lr", "epochs", "best val epoch",
                  "early-stopped test acc", "final test acc", "ms per epoch, median (range)",
                  "load during timing"],
                 rows, caption="Mean [95% CI] over the report seeds. Early-stopped: the network "
                               "of the epoch with the lowest validation loss. Load: the largest "
                               "1-minute load average of the machine seen at the start or end "
                               "of a timing repeat (the machine has "
                               f"{os.cpu_count()} cores; a load above that slows the repeats).")
    loads = {m: spe[m]["load"] for m in order if math.isfinite(spe[m]["load"])}
    uneven = load_note(loads, os.cpu_count() or 1)
    if uneven:
        report.text(uneven)
    report.text("Every method's validation loss reached its minimum well inside its budget."
                if not late else
                "The validation loss was still falling near the end of the budget for: "
                + ", ".join(late) + "; those methods' numbers are lower bounds of what longer "
                "training would reach.")
    es = {m: results.values(chosen[m], "es_test_accuracy") for m in order}
    best_es, cmp_es = _compare_table(
        report, es, order, f"Early-stopped test accuracy, paired over the report seeds; Holm "
        f"over {len(order) - 1} comparisons; equivalence only by TOST (margin {MARGIN}).",
        "early-stopped test acc")
    # updates per epoch, from the stored counts (the last mini-batch may be smaller)
    upe = {m: (1 if chosen[m].batch_size is None else
               round(float(np.nanmean(results.values(chosen[m], "updates"))) / chosen[m].epochs))
           for m in order}
    _curves_figure(results, report, chosen, order, spe, upe)

    # 2. equal epochs, equal updates, equal seconds (validation accuracy, early-stopped
    #    within each budget)
    report.section("At equal epochs, equal updates and equal measured seconds")
    e_min = min(chosen[m].epochs for m in order)
    u_min = min(upe[m] * chosen[m].epochs for m in order)
    at_e = _at(results, chosen, order, {m: e_min for m in order})
    best_e, cmp_e = _compare_table(report, at_e, order,
                   f"At {e_min} epochs ({e_min} x {N_TRAIN} gradient evaluations) for every "
                   "method: validation accuracy of the lowest-validation-loss epoch so far.",
                   f"val acc within {e_min} epochs")
    at_u = _at(results, chosen, order, {m: int(u_min // upe[m]) for m in order})
    best_u, cmp_u = _compare_table(report, at_u, order,
                   f"At {u_min} updates (the full batch's whole budget; the evaluation at the "
                   "last epoch end within it): validation accuracy of the lowest-validation-loss "
                   "epoch so far. A method with more updates per epoch than this has only its "
                   "initial network to show.", f"val acc within {u_min} updates")
    timed = [m for m in order if math.isfinite(spe[m]["median"])]
    if timed:
        t_min = min(chosen[m].epochs * spe[m]["median"] for m in timed)
        at_t = _at(results, chosen, timed,
                   {m: int(min(chosen[m].epochs, t_min / spe[m]["median"])) for m in timed})
        best_t, cmp_t = _compare_table(
            report, at_t, timed, f"Within {fmt(t_min, 3)} measured seconds (the shortest "
            "whole budget): validation accuracy of the lowest-validation-loss epoch finished "
            "within it.", f"val acc within {fmt(t_min, 3)} s")

        # time to a target validation accuracy
        target = TARGET_FRACTION * max(np.nanmean(results.values(chosen[m], "es_val_accuracy"))
                                       for m in order)
        rows = []
        for m in timed:
            tt = stats.times_to_target(results, chosen[m], target, "val_accuracy", "above")
            sec = tt["epochs"] * spe[m]["median"]
            rows.append([m, f"{tt['reached']}/{len(results.seeds)}",
                         fmt_ci(tt["epochs"], bounds=POSITIVE),
                         fmt_ci(tt["updates"], bounds=POSITIVE),
                         fmt_ci(sec, bounds=POSITIVE)])
        report.table(["method", "seeds reaching it", "epochs", "updates", "measured seconds"],
                     rows, caption=f"Cost to first reach a validation accuracy of "
                                   f"{fmt(target, 3)} ({TARGET_FRACTION:.0%} of the best "
                                   "method's mean early-stopped validation accuracy); mean "
                                   "[95% CI] over the seeds that reached it.")

    # 3. the claim
    c_best = stats.mean_ci(es[best_es], bounds=FRACTION)
    worse = [c["name"].split(" - ")[0] for c in cmp_es if c["verdict"] == "b better"]
    equiv = [c["name"].split(" - ")[0] for c in cmp_es if c["verdict"].startswith("equivalent")]
    unclear = [c["name"].split(" - ")[0] for c in cmp_es if c["verdict"] == "inconclusive"]
    trained = ("Each trained past its validation-loss minimum" if not late else
               "Trained for fixed budgets (not all past their validation-loss minimum: "
               + ", ".join(late) + ")")
    parts = [f"{trained}, with rates selected on the lowest best-epoch validation loss of "
             f"{len(results.study.tuning.tune_seeds)} tuning seeds, **{best_es}** reaches the "
             f"highest mean early-stopped MNIST-1D test accuracy, {c_best.fmt()}, each at its "
             f"own epoch budget ({best_es}: {chosen[best_es].epochs} epochs; the others "
             + ", ".join(str(chosen[m].epochs) for m in order if m != best_es) + ")"]
    if worse:
        parts.append("ahead of " + ", ".join(
            f"{m} by {_lead(next(c for c in cmp_es if c['name'].startswith(m + ' -')))}"
            for m in worse) + " (significant)")
    if equiv:
        parts.append(f"equivalent within {MARGIN} to " + ", ".join(equiv))
    if unclear:
        parts.append("neither different from nor shown equivalent to " + ", ".join(unclear))
    report.claim("; ".join(parts) + f" (paired differences over {len(results.seeds)} fresh "
                 "seeds, Holm-corrected).")
    fin = {m: results.values(chosen[m], "test_accuracy") for m in order}
    best_fin = max(order, key=lambda m: np.nanmean(fin[m]))
    fb = stats.mean_ci(fin[best_fin], bounds=FRACTION)
    if best_fin == best_es:
        report.claim(f"After the last epoch of its budget {best_es} is also the most accurate "
                     f"({fb.fmt()}).")
    else:
        c = stats.compare([("x", fin[best_es], fin[best_fin])], margin=MARGIN,
                          lower_is_better=False)[0]
        shown = c["verdict"] in ("a better", "b better")
        report.claim(f"Taken after the last epoch of each budget instead (`test_accuracy`), the "
                     f"highest mean is {best_fin}'s ({fb.fmt()}); {best_fin} - {best_es} = "
                     f"{_lead(c)} (paired t: p = {fmt(c['p'], 2)}, "
                     + ("a significant difference): the ranking depends on whether the network "
                        "is early-stopped." if shown else
                        f"{c['verdict']}): the final-epoch order is not established, and the "
                        "selection (on the best-epoch validation loss) was not made for it."))
    stop = _stopping_note(results, chosen, order, es, fin)
    if stop:
        report.claim(stop)
    wide = [m for m in order
            if (lambda ci: math.isfinite(ci.hi) and ci.hi - ci.lo > 0.1)(
                stats.mean_ci(fin[m], bounds=FRACTION))]
    if wide:
        report.conclusion(
            "The final test accuracy varies widely over seeds for " + ", ".join(wide)
            + " (95% intervals wider than 0.1): at the selected rate training is unstable late "
              "in the budget on some seeds, which early stopping hides.")
    def _lead_text(best, cmp):
        eq = [c["name"].split(" - ")[0] for c in cmp if c["verdict"].startswith("equivalent")]
        open_ = [c["name"].split(" - ")[0] for c in cmp
                 if c["verdict"] != "b better" and not c["verdict"].startswith("equivalent")]
        if not eq and not open_:
            return best + " (ahead of every other method, Holm-significant)"
        return best + " (" + "; ".join(
            ([f"equivalent within +-{MARGIN} to " + ", ".join(eq)] if eq else [])
            + (["not shown ahead of " + ", ".join(open_)] if open_ else [])) + ")"

    for note in _selection_notes(results, chosen, order):
        report.conclusion(note)
    report.conclusion(_literature_note(results, chosen, order, best_es, best_fin, cmp_es))
    ep = {m: chosen[m].epochs for m in order}
    hi, lo = max(ep, key=ep.get), min(ep, key=ep.get)
    if ep[hi] > ep[lo]:
        report.conclusion(
            f"The selection metric (best-epoch validation loss) is a minimum over each budget's "
            f"evaluations ({ep[hi] + 1} for {hi}, {ep[lo] + 1} for {lo}). Within a method, a "
            "noisy curve reaches a lower minimum by chance, which favours rates that train "
            "unstably; across methods, the tuning losses of the lr-sensitivity figure are not "
            "comparable, the long budgets having more chances. The early-stopped test accuracy "
            "is measured on a separate split and does not share this bias.")
    units = [f"at equal epochs ({e_min}) {_lead_text(best_e, cmp_e)}",
             f"at equal updates ({u_min}) {_lead_text(best_u, cmp_u)}"]
    if timed:
        units.append(f"at equal measured seconds ({fmt(t_min, 3)} s) "
                     f"{_lead_text(best_t, cmp_t)}"
                     + (" - but the timings were taken under unequal or high load (see the "
                        "note under the first table), so this comparison is not reliable"
                        if uneven else ""))
    same = len({best_e, best_u} | ({best_t} if timed else set())) == 1
    report.conclusion(
        "The method with the highest mean validation accuracy within the budget is "
        + "; ".join(units) + (" (the same method under every unit)." if same else
                              ": the leader depends on the unit of cost.")
        + " The tables above give each comparison with its paired interval and verdict. "
        "These tables pick the epoch and measure its accuracy on the same validation set, so a "
        "method with more evaluations within the budget has more chances of a lucky pick: at "
        f"equal updates ({u_min}) "
        + ", ".join(f"{m} {int(u_min // upe[m]) + 1}" for m in order)
        + " evaluations; the early-stopped *test* accuracies of the first table are free of "
          "this.")
