"""Fixed learning rate, momentum and adaptive learning rates: seven optimizers on MNIST-1D.

The notes list the types of update: a fixed learning rate, with momentum, an adaptive learning
rate, and adaptive + momentum. This study compares one or more of each (SGD; momentum and
Nesterov; AdaGrad and RMSProp; Adam and AdamW) on MNIST-1D (Greydanus 2020) with the network
and budget of that paper's MLP (40-100-100-10, ReLU, batch 100, 150 epochs = 6000 updates on
4000 training examples), after first reproducing its reference number (Adam at lr 0.01: about
0.68 test accuracy).

Protocol (:mod:`dlbasics.studies.protocol`): following Choi et al. (2019), each optimizer's
learning rate *and* one more key hyper-parameter are tuned (the momentum of the momentum
methods, the epsilon of the adaptive ones) on 3 tuning seeds, selecting the lowest mean
best-epoch validation loss, grids extended at their edges; the selected setting of each
optimizer then runs on 10 fresh seeds (fresh MNIST-1D draws), and alone 3 times for its
measured time per epoch. All optimizers run the same epochs with the same batch size, so equal
epochs are equal updates; the comparison at equal seconds uses the measured times.
"""

from __future__ import annotations

import math

import numpy as np

from .. import stats
from ..analysis import log_axis, loss_ylim
from ..protocol import Axis, Tuning
from ..registry import register
from ..report import FRACTION, POSITIVE, band, fmt, fmt_ci
from ..spec import Setting, Study

#: name -> (display name, family in the notes' terms)
NAMES = {
    "sgd": ("SGD", "fixed learning rate"),
    "momentum": ("Momentum", "momentum"),
    "nesterov": ("Nesterov", "momentum"),
    "adagrad": ("AdaGrad", "adaptive"),
    "rmsprop": ("RMSProp", "adaptive"),
    "adam": ("Adam", "adaptive + momentum"),
    "adamw": ("AdamW", "adaptive + momentum"),
}
#: The reference configuration of Greydanus (2020), run untuned on the report seeds.
REFERENCE = "adam-reference"
PAPER_ACCURACY = 0.68
#: log10 of each optimizer's smallest grid learning rate (5 values, half a decade apart),
#: centred by a pilot; the protocol extends a grid whose best value lands on an edge.
LR_LOW = {"sgd": -2.0, "momentum": -3.0, "nesterov": -3.0, "adagrad": -3.0, "rmsprop": -4.0,
          "adam": -4.0, "adamw": -4.0}
#: The second tuned hyper-parameter (Choi et al. 2019): momentum, or the adaptive epsilon.
SECOND = {
    "momentum": ("momentum", Axis([0.5, 0.9, 0.99], scale="log1m")),
    "nesterov": ("momentum", Axis([0.5, 0.9, 0.99], scale="log1m")),
    "adagrad": ("eps", Axis([1e-10, 1e-7, 1e-4, 1e-1])),
    "rmsprop": ("eps", Axis([1e-8, 1e-6, 1e-4, 1e-2])),
    "adam": ("eps", Axis([1e-8, 1e-6, 1e-4, 1e-2])),
    "adamw": ("eps", Axis([1e-8, 1e-6, 1e-4, 1e-2])),
}
COLORS = dict(zip([*NAMES, REFERENCE], ("#7f7f7f", "#1f77b4", "#17becf", "#2ca02c", "#bcbd22",
                                        "#d62728", "#9467bd", "#000000"), strict=True))
STYLES = dict(zip([*NAMES, REFERENCE], ("-", "-", "--", "-", "--", "-", "--", ":"),
                  strict=True))
HIDDEN = [100, 100]
BATCH = 100
EPOCHS = 150
#: Equivalence margin of the accuracy comparisons (one point of test accuracy).
MARGIN = 0.01


def _lr_axis(name, quick):
    vals = [float(f"{10 ** (LR_LOW[name] + 0.5 * k):.3g}") for k in range(5)]
    return Axis(vals[1:3] if quick else vals)


def _axes(quick):
    def axes(cond):
        name = cond["optimizer"]
        if name == REFERENCE:
            return {}
        out = {"lr": _lr_axis(name, quick)}
        if name in SECOND:
            key, ax = SECOND[name]
            out[key] = Axis(ax.values[1:2], ax.scale) if quick else ax
        return out

    return axes


def _build(quick):
    def build(f):
        name = f["optimizer"]
        if name == REFERENCE:
            opt, hyper = "adam", {"lr": 0.01}
        else:
            opt = name
            hyper = {k: v for k, v in f.items() if k != "optimizer"}
        return Setting(problem="mnist1d",
                       problem_args={"n_train": 400, "n_val": 100} if quick else {},
                       model={"hidden": HIDDEN, "activation": "relu"}, optimizer=opt,
                       hyper=hyper, batch_size=BATCH, epochs=8 if quick else EPOCHS,
                       metrics="full", factors=f)

    return build


@register("optimizers")
def make(profile):
    quick = profile == "quick"
    conditions = [{"optimizer": n} for n in NAMES] + [{"optimizer": REFERENCE}]
    return Study(
        "optimizers",
        title="Optimizers: fixed rate, momentum, adaptive, adaptive + momentum (MNIST-1D)",
        question="With the learning rate and one more key hyper-parameter tuned for each, how do "
                 "SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam and AdamW compare on MNIST-1D "
                 "in test accuracy, at equal epochs and updates and at equal measured seconds?",
        settings=(),
        seeds=range(100, 102) if quick else range(100, 110),
        tuning=Tuning(_build(quick), conditions, _axes(quick),
                      tune_seeds=[0] if quick else [0, 1, 2], metric="best_val_loss",
                      max_extensions=0 if quick else 3),
        timing_repeats=1 if quick else 3,
        references=[{"name": "MNIST-1D MLP test accuracy (Adam, lr 0.01, batch 100, 6000 "
                             "steps, 4000 training examples)",
                     "source": "Greydanus 2020, 'Scaling down deep learning' (MNIST-1D), "
                               "README benchmark table",
                     "paper_value": PAPER_ACCURACY, "setting": {"optimizer": REFERENCE},
                     "key": "test_accuracy"}],
        analysis=analyse,
        notes="**Network and budget.** MNIST-1D as generated by the `mnist1d` package with each "
              "run seed (4000 training, 1000 validation and 1250 test examples), 40-100-100-10 "
              "with ReLU and softmax cross-entropy, Glorot-uniform initialisation, batch 100, "
              "150 epochs (6000 updates): the reference MLP's budget. The reference network "
              "adds a skip connection around its second layer, which ours does not have. "
              "Test metrics: `test_*` of the network after the last epoch, `es_test_*` of the "
              "network of the epoch with the lowest validation loss (early stopping).",
    )


# ----------------------------------------------------------------------------------------------
# analysis
# ----------------------------------------------------------------------------------------------


def _label(name):
    return "Adam, reference (lr 0.01)" if name == REFERENCE else NAMES[name][0]


def _selected(results):
    return {c.condition["optimizer"]: c.setting for c in results.plan.choices
            if c.setting is not None}


def _pm(x):
    """An accuracy difference: ``+0.012``."""
    return "-" if not math.isfinite(x) else f"{x:+.3f}"


def _diff(c):
    return f"{_pm(c['diff'])} [{_pm(c['lo'])}, {_pm(c['hi'])}]"


def _hyper_text(s):
    return ", ".join(f"{k} {fmt(v, 3)}" for k, v in s.hyper.items())


def _span(results, chosen):
    """`` (the plotted means span a factor of 1.8)``: how wide the loss axis really is."""
    vals = []
    for n in NAMES:
        if n in chosen:
            second = {k: v for k, v in chosen[n].factors.items() if k not in ("optimizer", "lr")}
            vals += [float(np.mean(results.tuning.values(t, "best_val_loss")))
                     for t in results.tuning.select(optimizer=n, **second)]
    vals = [v for v in vals if math.isfinite(v) and v > 0]
    return f" (the plotted means span a factor of {max(vals) / min(vals):.2g})" if vals else ""


def _sensitivity_figure(results, report, chosen):
    tun = results.tuning
    names = [n for n in NAMES if n in chosen]
    with report.figure(
        "lr_sensitivity",
        "Learning-rate sensitivity on the tuning seeds: mean best-epoch validation loss "
        "against the learning rate, at each optimizer's selected second hyper-parameter "
        "(momentum or epsilon). Circles: the selected rate; a missing point diverged on a "
        "tuning seed. Log learning-rate axis; log loss axis" + _span(results, chosen) + ".",
    ) as (_, ax):
        means = []
        for n in names:
            s = chosen[n]
            second = {k: v for k, v in s.factors.items() if k not in ("optimizer", "lr")}
            pts = [t for t in tun.select(optimizer=n, **second)]
            pts.sort(key=lambda t: t.factors["lr"])
            x = np.array([t.factors["lr"] for t in pts])
            y = np.array([np.mean(tun.values(t, "best_val_loss")) for t in pts])
            ax.plot(x, y, marker=".", color=COLORS[n], linestyle=STYLES[n], label=_label(n))
            sel = np.mean(tun.values(s, "best_val_loss"))
            ax.plot([s.factors["lr"]], [sel], "o", mfc="none", color=COLORS[n], ms=9)
            means.append(y)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("best-epoch validation loss (tuning seeds)")
        loss_ylim(ax, means, below=1.3, above=3.0)
        log_axis(ax, "x")
        log_axis(ax, "y")
        ax.legend(ncol=2)


def _curves_figure(results, report, chosen, spe):
    with report.figure(
        "curves",
        "Selected settings on the report seeds: validation loss against epochs (left; equal "
        "epochs are equal updates here) and validation accuracy against measured training "
        "seconds (right; seconds per epoch from the timing pass). Mean and 95% CI over seeds.",
        ncols=2,
    ) as (_, (ax1, ax2)):
        means = []
        for n, s in chosen.items():
            c = results.curves(s, "val_loss")
            means.append(np.nanmean(c, axis=0))
            band(ax1, results.epochs(s), c, _label(n), color=COLORS[n],
                 linestyle=STYLES[n], bounds=POSITIVE)
            sec = spe[n]["median"]
            if math.isfinite(sec):
                band(ax2, results.epochs(s, "val_accuracy") * sec,
                     results.curves(s, "val_accuracy"), _label(n), color=COLORS[n],
                     linestyle=STYLES[n], bounds=FRACTION)
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("validation loss")
        loss_ylim(ax1, means)
        log_axis(ax1, "y")
        ax1.legend(ncol=2)
        ax2.set_xlabel("measured training seconds")
        ax2.set_ylabel("validation accuracy")


def _accuracy_figure(report, rows):
    names = [r[0] for r in rows]
    with report.figure(
        "test_accuracy",
        "Test accuracy of each selected setting, early-stopped (filled) and after the last "
        "epoch (open), mean and 95% CI over the report seeds; dashed: the paper's reference "
        "MLP (0.68). Linear axis, points rather than bars (the differences are small against "
        "the distance from zero).",
    ) as (_, ax):
        y = np.arange(len(rows))[::-1]
        for yi, (n, es, fin) in zip(y, rows, strict=True):
            for ci, mk, dy in ((es, "o", 0.12), (fin, "s", -0.12)):
                if ci.n:
                    err = [[ci.mean - ci.lo if math.isfinite(ci.lo) else 0],
                           [ci.hi - ci.mean if math.isfinite(ci.hi) else 0]]
                    ax.errorbar([ci.mean], [yi + dy], xerr=err, fmt=mk, color=COLORS[n],
                                mfc=COLORS[n] if mk == "o" else "white", capsize=3)
        ax.axvline(PAPER_ACCURACY, color="k", linestyle="--", linewidth=1)
        ax.set_yticks(y, [_label(n) for n in names])
        ax.set_xlabel("test accuracy")


def _eps_note(results, n, s):
    """What the tuning runs say about the selected (large) epsilon against the grid's smallest
    (the libraries' default order of magnitude)."""
    tun, eps = results.tuning, s.hyper["eps"]
    grid = sorted({t.factors["eps"] for t in tun.select(optimizer=n)})

    def best_at(e):
        m = [float(np.mean(tun.values(t, "best_val_loss"))) for t in tun.select(optimizer=n, eps=e)]
        m = [v for v in m if math.isfinite(v)]
        return min(m) if m else math.nan

    lo = grid[0]
    a, b = best_at(eps), best_at(lo)
    eff = s.hyper["lr"] / eps
    return (f"{_label(n)}'s selected epsilon is {fmt(eps, 3)}, far above the usual default: on "
            f"the tuning seeds its best mean best-epoch validation loss is {a:.3f}, against "
            f"{b:.3f} at eps {fmt(lo, 3)} (each at its best rate). With an epsilon this large "
            f"the step lr g / (sqrt(G) + eps) is close to SGD with rate lr / eps = "
            f"{fmt(eff, 3)} wherever sqrt(G) is well below {fmt(eps, 3)} (the rate shrinking "
            "only as G accumulates), so this row may measure SGD with a slowly decaying rate "
            "more than adaptivity. Choi et al. (2019) tuned epsilon over wide ranges for the "
            "adaptive methods because it matters there.")


def _load_caveat(results, loads, chosen, spe):
    cores = min((m.get("cores") or 0 for m in results.machines()), default=0)
    if not loads or not cores or max(loads) <= cores:
        return ""
    out = (f" The load exceeded the machine's {cores} cores during the timing pass, so the "
           "times carry contention from other work and the equal-seconds verdicts inherit it.")
    zero = [n for n, s in chosen.items() if s.hyper.get("momentum") == 0.0]
    if zero and "sgd" in spe and math.isfinite(spe["sgd"]["median"]):
        n = zero[0]
        r = spe[n]["median"] / spe["sgd"]["median"]
        out += (f" For scale: {_label(n)} at momentum 0 does SGD's work plus one buffer, yet "
                f"its measured time per epoch is {r:.2f}x SGD's.")
    return out


def _at_seconds(results, s, sec, budget):
    """Per-seed validation accuracy of the best-validation-loss epoch among the epochs that
    ended within ``budget`` measured seconds."""
    vl = results.curves(s, "val_loss")
    va = results.curves(s, "val_accuracy")
    last = int(min(vl.shape[1] - 1, math.floor(budget / sec + 1e-9))) if sec > 0 else 0
    out = np.full(vl.shape[0], np.nan)
    for i in range(vl.shape[0]):
        v = vl[i, : last + 1]
        if np.isfinite(v).any():
            out[i] = va[i, int(np.nanargmin(v))]
    return out


def analyse(results, report):
    chosen = _selected(results)
    if not chosen:
        report.conclusion("The tuning stage is incomplete: nothing to report yet.")
        return
    spe = {n: stats.seconds_per_epoch(results.timing, s) if results.timing is not None
           else {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0,
                 "load": math.nan} for n, s in chosen.items()}

    # 1. the reference
    report.section("First: the published reference")
    ref = chosen.get(REFERENCE)
    if ref is not None:
        fin = stats.mean_ci(results.values(ref, "test_accuracy"), bounds=FRACTION)
        es = stats.mean_ci(results.values(ref, "es_test_accuracy"), bounds=FRACTION)
        inside = fin.lo <= PAPER_ACCURACY <= fin.hi
        report.text(
            f"Adam at lr 0.01 with the paper's batch, budget and network (less its skip "
            f"connection) reaches a final test accuracy of **{fin.fmt()}** over "
            f"{fin.n} fresh MNIST-1D draws, against about {PAPER_ACCURACY} in Greydanus (2020): "
            + ("the reference number lies inside our interval." if inside else
               f"our mean is {fmt(fin.mean - PAPER_ACCURACY, 2)} from it "
               f"({'above' if fin.mean > PAPER_ACCURACY else 'below'}), outside our interval.")
            + f" Early-stopped (at the lowest validation loss), the same runs score "
            f"{es.fmt()}: the validation loss is lowest at epoch "
            f"{fmt_ci(results.values(ref, 'best_val_epoch'), bounds=POSITIVE)} of "
            f"{ref.epochs} and rises after it, "
            + ("while the test accuracy keeps improving (the loss grows through confident "
               "errors, not through fewer correct answers), so stopping on the loss stops too "
               "early for accuracy." if fin.mean > es.mean else
               "and the early-stopped network is also the more accurate one."))

    # 2. the selected settings and their accuracies
    report.section("Tuned optimizers at equal epochs and updates")
    _sensitivity_figure(results, report, chosen)
    order = [n for n in NAMES if n in chosen]
    es_vals = {n: results.values(chosen[n], "es_test_accuracy") for n in order}
    fin_vals = {n: results.values(chosen[n], "test_accuracy") for n in order}
    best = max(order, key=lambda n: np.nanmean(es_vals[n]))
    rows, acc_rows = [], []
    for n in order + ([REFERENCE] if REFERENCE in chosen else []):
        s = chosen[n]
        es = stats.mean_ci(results.values(s, "es_test_accuracy"), bounds=FRACTION)
        fin = stats.mean_ci(results.values(s, "test_accuracy"), bounds=FRACTION)
        acc_rows.append((n, es, fin))
        sec = spe[n]
        rows.append([_label(n), NAMES.get(n, ("", "adaptive + momentum"))[1], _hyper_text(s),
                     es.fmt(4), fin.fmt(4),
                     fmt_ci(results.values(s, "best_val_epoch"), bounds=POSITIVE),
                     fmt_ci(results.values(s, "final_full_accuracy"), bounds=FRACTION),
                     f"{fmt(sec['median'] * 1e3, 3)} ({fmt(sec['min'] * 1e3, 3)}-"
                     f"{fmt(sec['max'] * 1e3, 3)})"])
    report.table(["optimizer", "type (notes)", "selected", "early-stopped test acc",
                  "final test acc", "best val epoch", "final training acc",
                  "ms per epoch, median (range)"], rows,
                 caption="Mean [95% CI] over the report seeds. Early-stopped: the network of "
                         "the epoch with the lowest validation loss.")
    _accuracy_figure(report, acc_rows)
    _curves_figure(results, report, chosen, spe)

    # 3. paired comparisons against the best, early-stopped and final
    pairs = [(f"{_label(n)} - {_label(best)}", es_vals[n], es_vals[best])
             for n in order if n != best]
    cmp_es = stats.compare(pairs, margin=MARGIN, lower_is_better=False)
    pairs_f = [(f"{_label(n)} - {_label(best)}", fin_vals[n], fin_vals[best])
               for n in order if n != best]
    cmp_fin = stats.compare(pairs_f, margin=MARGIN, lower_is_better=False)
    report.table(
        ["comparison (a - b)", "seeds", "early-stopped test acc: diff [95% CI]", "Holm p",
         "verdict", "final test acc: diff [95% CI]", "Holm p", "verdict"],
        [[a["name"], a["n"], _diff(a), fmt(a["p_holm"], 3), a["verdict"], _diff(b),
          fmt(b["p_holm"], 3), b["verdict"]] for a, b in zip(cmp_es, cmp_fin, strict=True)],
        caption=f"Paired over the report seeds (same data draw and initialisation seed). The "
                f"intervals are unadjusted 95% t-intervals; the verdicts use the Holm-adjusted "
                f"p over the {len(pairs)} comparisons of each column (so an interval that "
                f"excludes 0 can still be 'inconclusive'); 'equivalent' only through a TOST "
                f"with margin {MARGIN} (one point of accuracy), 'inconclusive' when neither a "
                "difference nor equivalence is shown.")

    # 4. equal measured seconds
    report.section("At equal measured seconds")
    timed = [n for n in order if math.isfinite(spe[n]["median"])]
    budget = min(chosen[n].epochs * spe[n]["median"] for n in timed) if timed else math.nan
    if math.isfinite(budget):
        at_t = {n: _at_seconds(results, chosen[n], spe[n]["median"], budget) for n in order}
        best_t = max(order, key=lambda n: np.nanmean(at_t[n]))
        cmp_t = stats.compare([(f"{_label(n)} - {_label(best_t)}", at_t[n], at_t[best_t])
                               for n in order if n != best_t], margin=MARGIN,
                              lower_is_better=False)
        loads = [spe[n]["load"] for n in order if math.isfinite(spe[n]["load"])]
        report.table(
            ["optimizer", "epochs within the budget", f"val acc within {fmt(budget, 3)} s",
             f"vs {_label(best_t)}: diff [95% CI]", "verdict"],
            [[_label(n), int(min(chosen[n].epochs, budget / spe[n]["median"])),
              fmt_ci(at_t[n], bounds=FRACTION),
              "-" if n == best_t else next(
                  _diff(c) for c in cmp_t if c["name"].startswith(_label(n) + " -")),
              "-" if n == best_t else next(c["verdict"] for c in cmp_t
                                           if c["name"].startswith(_label(n) + " -"))]
             for n in order],
            caption=f"The budget ({fmt(budget, 3)} s) is the shortest measured time in which "
                    "an optimizer completed its whole budget (intervals unadjusted, verdicts "
                    "Holm-adjusted as above); each optimizer's validation "
                    "accuracy is that of its best-validation-loss epoch among the epochs "
                    "finished within it (times: median of the timing pass, 1-minute load at "
                    f"most {fmt(max(loads), 2) if loads else '-'})."
                    + _load_caveat(results, loads, chosen, spe))

    # 5. the claim, from the numbers
    es_best = stats.mean_ci(es_vals[best], bounds=FRACTION)
    runner = max((n for n in order if n != best), key=lambda n: np.nanmean(es_vals[n]),
                 default=None)
    if runner is not None:
        c = next(c for c in cmp_es if c["name"].startswith(_label(runner) + " -"))
        differ = [x for x in cmp_es if x["verdict"] == "b better"]
        equal = [x for x in cmp_es if x["verdict"].startswith("equivalent")]
        unclear = [x for x in cmp_es if x["verdict"] == "inconclusive"]
        report.claim(
            f"Tuned on learning rate and one more hyper-parameter, **{_label(best)}** has the "
            f"highest early-stopped MNIST-1D test accuracy, {es_best.fmt()}; the runner-up "
            f"{_label(runner)} differs by {_diff(c)} ({c['verdict']}). Against the best, "
            f"{len(differ)} of the {len(cmp_es)} others are worse (Holm-corrected paired t), "
            f"{len(equal)} equivalent within {MARGIN} (TOST) and {len(unclear)} inconclusive.")
    best_fin = max(order, key=lambda n: np.nanmean(fin_vals[n]))
    if runner is not None:
        fb = stats.mean_ci(fin_vals[best_fin], bounds=FRACTION)
        if best_fin == best:
            report.claim(f"After the last epoch {_label(best)} is also the most accurate "
                         f"({fb.fmt()}).")
        else:
            c = stats.compare([("x", fin_vals[best], fin_vals[best_fin])], margin=MARGIN,
                              lower_is_better=False)[0]
            h = next(x for x in cmp_fin if x["name"].startswith(_label(best_fin) + " -"))
            e_best = float(np.nanmedian([np.nanmean(results.values(chosen[n], "best_val_epoch"))
                                         for n in order]))
            rises = sum(np.nanmean(fin_vals[n]) > np.nanmean(es_vals[n]) for n in order)
            report.claim(
                f"The ranking depends on when the network is taken: after the last epoch "
                f"({chosen[best_fin].epochs}; the validation loss is lowest near epoch "
                f"{e_best:.0f}, yet the final test accuracy is the higher of the two for "
                f"{rises} of {len(order)} optimizers) the highest mean final test accuracy "
                f"(`test_accuracy`) is {_label(best_fin)}'s ({fb.fmt()}), and {_label(best)} "
                f"differs from it by {_diff(c)} (unadjusted paired t: p = {fmt(c['p'], 2)}; "
                f"Holm over the {len(cmp_fin)} comparisons with {_label(best)}: p = "
                f"{fmt(h['p_holm'], 2)}, {h['verdict'].replace('a better', 'a difference')}"
                f"). The hyper-parameters were selected on the best-epoch validation loss, the "
                f"criterion of early stopping, so the final-epoch ranking is one of settings "
                f"not tuned for it.")
    notes = []
    for n in order:
        s = chosen[n]
        if s.hyper.get("momentum") == 0.0:
            notes.append(f"{_label(n)}'s tuning selected a momentum of 0: at this budget the "
                         f"best {_label(n)} is plain SGD (lr {fmt(s.hyper['lr'], 3)}), so its "
                         "row is not evidence about momentum itself. A tuned method that "
                         "contains SGD as a special case cannot do worse than SGD on the "
                         "tuning criterion (up to the grid and the tuning seeds' noise): "
                         "Choi et al. (2019)'s inclusion argument.")
        tr = np.nanmean(results.values(s, "final_full_accuracy"))
        if math.isfinite(tr) and tr < 0.99:
            tr_ci = fmt_ci(results.values(s, "final_full_accuracy"), bounds=FRACTION)
            notes.append(f"{_label(n)} ends at a training accuracy of {tr_ci} "
                         "while most others fit the training set: at its selected setting "
                         "training does not settle late in the budget (its validation loss "
                         "keeps rising in the curves), which the selection on the best-epoch "
                         "validation loss, reached near epoch "
                         f"{np.nanmean(results.values(s, 'best_val_epoch')):.0f}, cannot see; "
                         "its final-epoch numbers reflect that.")
        if s.hyper.get("eps", 0) >= 1e-3:
            notes.append(_eps_note(results, n, s))
    for note in notes:
        report.conclusion(note)
    report.conclusion(
        "The reference number is reproduced before anything is compared (first section). "
        "Rankings at this budget are those of tuned optimizers on one small problem and one "
        "network: Choi et al. (2019) and Schmidt et al. (2021) show that such rankings move "
        "with the tuned search space and the problem, so they are not a general ranking.")
