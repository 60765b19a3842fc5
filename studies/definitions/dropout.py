"""Dropout against early stopping as the training set grows: keep probability, test-time rules,
Monte-Carlo averaging.

The notes train a dropout network by sampling a thinned network for every training example, and
predict with a single network whose outgoing weights are multiplied by the keep probability
``p`` (weight scaling), instead of averaging the predictions of the exponentially many thinned
networks. This study trains a network wide enough to over-fit (two hidden layers of 128 ReLU
units, ~23k parameters) on MNIST-1D training sets of 250, 1000 and 4000 examples (from clearly
over-fitting to less so; the network without dropout still fits its training set and its
test loss still rises at 4000) and asks: does dropout beat the simplest alternative
regulariser, early stopping, at each size; which keep probability does validation pick; does
the "inverted" convention (kept units times ``1/p`` while training, nothing at test time) give
the same networks; and how close is weight scaling to the average of ``k`` sampled thinned networks?

Each (training-set size, keep probability, convention) is a condition of the two-stage protocol
with Adam's learning rate as its tuned axis, so every keep probability trains at its own best
rate. The baseline is the network without dropout (keep 1) *early-stopped*: its ``es_test_*``
metrics are those of the epoch of lowest validation loss.

Inverted vs weight-scaled dropout are the same family of networks: a weight-scaled network with
weights ``W`` is the inverted network with weights ``p W``. Adam is nearly invariant to the
scale of the gradients, so the two do not differ by gradient scale; they differ by that
reparametrisation: in the inverted network's coordinates a weight-scaled run takes steps ``p``
times smaller (``lr * p``) on the weights leaving dropped units and starts from an initialisation
of those weights ``p`` times smaller. The first layer's weights (inputs are not dropped) and all
biases are not reparametrised, so with one shared rate no ratio makes the two runs identical:
the prediction is a ratio between ``p`` and 1, nearer ``p`` if the later layers dominate. With the
learning rate tuned per convention, the analysis measures both the selected rates and the test
metrics.

The stored runs hold histories and summaries, not parameters: for the Monte-Carlo comparison the
analysis retrains the networks it needs, exactly as the runner did, and checks their
validation-loss history against the stored one.
"""

from __future__ import annotations

import math

import numpy as np

from .. import stats
from ..analysis import ALPHA, errorbar_ci, log_axis, paired
from ..protocol import Axis, Tuning
from ..registry import register
from ..report import FRACTION, POSITIVE, band, fmt, fmt_ci
from ..spec import Setting, Study

#: Training-set sizes (all from one MNIST-1D draw per seed: the same validation and test sets,
#: and each smaller training set a subset of the larger).
SIZES = (250, 1000, 4000)
#: Epochs per size of the network without dropout: it fits its training set (training accuracy
#: 0.99-1) within a few dozen epochs at every size and its validation loss is lowest by epoch
#: 4-7, so these budgets are long past both (its runs are those of the earlier design).
EPOCHS = {250: 300, 1000: 200, 4000: 100}
#: Epochs per size of the dropout networks (every p < 1), from a pilot (one or two seeds per
#: setting, run to 2000/1000/1200 epochs): under dropout the training accuracy of the test-mode
#: network keeps rising long after the validation loss is lowest (epoch 40-220), by about 0.03
#: per doubling of the epochs at p = 0.5 and 4000 examples. With these budgets the pilot's
#: gain over the last 20% of the epochs fell to about 0.01 or less for p = 0.25 at 250 (lr
#: 0.008-0.016: 0.98-1 reached by epoch 500-1000), p = 0.5 at 1000 (lr 0.008-0.016) and p = 0.75
#: at 4000; p = 0.5 at 4000 still gains about 0.01 per 20% up to 1200 epochs, and p = 0.25 at 1000
#: and 4000 far more (0.63-0.82 at 500-800 epochs). The analysis tests every selected setting.
DROPOUT_EPOCHS = {250: 1000, 1000: 800, 4000: 400}
#: Hidden keep probabilities of the weight-scaling ("scale") convention; 1.0 is no dropout.
#: 0.1 and 0.9 extend the grid beyond the keep probabilities validation picked from (0.25, 0.5,
#: 0.75) at 250 and 4000 examples, which sat on its edges.
HIDDEN_P = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
#: Keep probability at which the inverted convention is compared with weight scaling.
INVERTED_P = 0.5
LRS = (0.001, 0.002, 0.004, 0.008)
PROBLEM = {"n_val": 1000, "n_pool": 5000}
HIDDEN = [128, 128]
QUICK = {"sizes": (100, 300), "epochs": 10, "lrs": (0.01, 0.03), "hidden": [32, 32],
         "p": (0.5, 1.0), "problem": {"n_val": 100, "n_pool": 400}}
TUNE_SEEDS = (1000, 1001, 1002)
REPORT_SEEDS = tuple(range(10))
#: Numbers of thinned networks averaged in the Monte-Carlo comparison.
MC_K = (1, 2, 4, 8, 16, 32, 64, 128)
MC_K_QUICK = (1, 2, 4, 8, 16)
#: Seed offset of the Monte-Carlo masks (distinct from every training seed's masks).
MC_SEED = 10_000
EPS = 1e-7
#: Equivalence margins (TOST) of the comparisons with the early-stopped baseline.
MARGIN_ACC = 0.01
MARGIN_LOSS = 0.02
COLORS = {0.1: "#8c564b", 0.25: "#2ca02c", 0.5: "#d62728", 0.75: "#ff7f0e", 0.9: "#e377c2",
          1.0: "#1f77b4", "inverted": "#9467bd", "es": "#000000"}


def _build(quick):
    q = QUICK if quick else None

    def build(f):
        p = f["p_hidden"]
        return Setting(
            problem="mnist1d",
            problem_args={"n_train": f["n_train"], **(q["problem"] if quick else PROBLEM)},
            model={"hidden": q["hidden"] if quick else HIDDEN, "activation": "relu",
                   "init": "he", "keep_prob": [1.0, p, p], "dropout": f["convention"]},
            optimizer="adam", hyper={"lr": f["lr"]}, batch_size=50,
            epochs=q["epochs"] if quick else epochs(f["n_train"], p), factors=f)
    return build


def epochs(n_train, p_hidden):
    """The full profile's epoch budget of a network: :data:`EPOCHS` without dropout
    (``p_hidden == 1``), :data:`DROPOUT_EPOCHS` with it."""
    return (EPOCHS if p_hidden >= 1.0 else DROPOUT_EPOCHS)[n_train]


def conditions(sizes, hidden_p=HIDDEN_P, inverted_p=INVERTED_P):
    """The conditions: every size x (each weight-scaling keep probability, inverted at one)."""
    out = []
    for n in sizes:
        out += [{"n_train": n, "convention": "scale", "p_hidden": p} for p in hidden_p]
        out.append({"n_train": n, "convention": "inverted", "p_hidden": inverted_p})
    return out


@register("dropout")
def make(profile):
    quick = profile == "quick"
    sizes = QUICK["sizes"] if quick else SIZES
    lrs = QUICK["lrs"] if quick else LRS
    return Study(
        name="dropout",
        title="Dropout against early stopping as the training set grows",
        question=f"On a network wide enough to over-fit, trained on {sizes[0]} to {sizes[-1]} "
                 "MNIST-1D examples with its learning rate tuned per keep probability: does "
                 "dropout on the hidden units beat early stopping without dropout, at which keep "
                 "probability and how does that change with the size of the training set; does "
                 "the inverted convention match the notes' weight scaling; and how close is "
                 "weight scaling to averaging k sampled thinned networks?",
        settings=(),
        seeds=REPORT_SEEDS[:2] if quick else REPORT_SEEDS,
        tuning=Tuning(_build(quick), conditions(sizes, QUICK["p"] if quick else HIDDEN_P),
                      {"lr": Axis(lrs, scale="log")},
                      tune_seeds=TUNE_SEEDS[:2] if quick else TUNE_SEEDS),
        analysis=analyse,
        notes="MNIST-1D (Greydanus 2020): per seed one draw whose training part holds "
              f"{(QUICK if quick else {'problem': PROBLEM})['problem']['n_pool']} examples; "
              "the validation set (the first n_val of a seeded permutation) and the test set "
              "(the package's held-out 20% of the draw) are the same at every training-set "
              "size, and a smaller training set is a subset of a larger one. A "
              f"40-{'-'.join(map(str, QUICK['hidden'] if quick else HIDDEN))}-10 ReLU network "
              "(He initialisation), softmax + cross-entropy, Adam on mini-batches of 50 for "
              + (f"{QUICK['epochs']} epochs" if quick else
                 "; ".join(f"{n} training examples: {DROPOUT_EPOCHS[n]} epochs with dropout, "
                           f"{EPOCHS[n]} without" for n in SIZES)
                 + " (without dropout the network fits its training set and passes its "
                   "lowest validation loss within a few dozen epochs; with dropout its "
                   "training accuracy keeps rising for hundreds)")
              + ". `keep_prob` = [inputs, hidden layer 1, hidden layer 2]: only hidden units "
              "are dropped. Convention `scale` is the notes' rule (masks while training, "
              "outgoing weights times p at test time); `inverted` multiplies kept units by 1/p "
              "while training and uses the weights unchanged at test time. The learning rate "
              "is tuned per (size, keep probability, convention) on the tuning seeds' best "
              "validation loss; keep 1 is the no-dropout network, whose early-stopped test "
              "metrics (`es_test_*`) are the baseline.",
    )


# ----------------------------------------------------------------------------------------------
# analysis
# ----------------------------------------------------------------------------------------------


def _mean(results, s, key):
    return stats.mean_ci(results.values(s, key)).mean


def cells(results):
    """``{(n_train, convention, p_hidden): setting}`` of the selected settings."""
    return {(s.factors["n_train"], s.factors["convention"], s.factors["p_hidden"]): s
            for s in results.settings}


def tuning_scores(results):
    """``{(n_train, convention, p_hidden): mean selection metric}`` of each selected point on
    the tuning seeds (what chooses the keep probability, never a test metric)."""
    out = {}
    plan = results.plan
    for c in (plan.choices if plan is not None else []):
        if c.setting is not None:
            f = c.setting.factors
            out[f["n_train"], f["convention"], f["p_hidden"]] = c.scores.get(c.setting.label)
    return out


def analyse(results, report):
    cl = cells(results)
    sizes = sorted({k[0] for k in cl})
    if not sizes or not all((n, "scale", 1.0) in cl for n in sizes):
        report.conclusion("The no-dropout baseline has no selected setting: nothing to compare.")
        return
    scores = tuning_scores(results)
    chosen = {}
    for n in sizes:
        drop = {k: v for k, v in scores.items() if k[0] == n and k[1] == "scale"
                and k[2] < 1.0 and v is not None and math.isfinite(v)}
        chosen[n] = cl[min(drop, key=drop.get)] if drop else None
    comps = _size_figure(results, report, cl, sizes, chosen)
    _curves(results, report, cl, sizes)
    _sensitivity(results, report, sizes)
    _table(results, report, cl, sizes)
    conv = _conventions(results, report, cl, sizes)
    small = chosen[sizes[0]] or cl.get((sizes[0], "scale", 0.5))
    mc = _monte_carlo(results, report, small) if small is not None else None
    _conclude(results, report, cl, sizes, chosen, comps, conv, mc)


def _compare_to_es(results, cl, sizes):
    """Each dropout setting (final and early-stopped) minus the early-stopped baseline."""
    pairs_acc, pairs_loss, keys = [], [], []
    for n in sizes:
        base = cl[n, "scale", 1.0]
        for k, s in sorted(cl.items(), key=lambda kv: (kv[0][1] != "scale", -kv[0][2])):
            if k[0] != n:
                continue
            for which in ("final", "es"):
                if k[2] == 1.0 and k[1] == "scale" and which == "es":
                    continue   # the baseline itself
                key = "test" if which == "final" else "es_test"
                name = f"{n}: {_name(s)} ({which}) - no dropout (es)"
                pairs_acc.append((name, results.values(s, f"{key}_accuracy"),
                                  results.values(base, "es_test_accuracy")))
                pairs_loss.append((name, results.values(s, f"{key}_loss"),
                                   results.values(base, "es_test_loss")))
                keys.append((k, which))
    acc = stats.compare(pairs_acc, margin=MARGIN_ACC, lower_is_better=False)
    loss = stats.compare(pairs_loss, margin=MARGIN_LOSS, lower_is_better=True)
    return {key: {"acc": a, "loss": lo} for key, a, lo in zip(keys, acc, loss, strict=True)}


def _name(s):
    f = s.factors
    if f["p_hidden"] == 1.0:
        return "no dropout"
    return f"p={fmt(f['p_hidden'])}" + (" inverted" if f["convention"] == "inverted" else "")


def _size_figure(results, report, cl, sizes, chosen):
    comps = _compare_to_es(results, cl, sizes)
    cap = (f"Left: final test accuracy against the training-set size for each keep probability "
           f"p of the hidden units (weight scaling; each at its tuned learning rate) and the "
           f"early-stopped network without dropout (black, dashed); mean and 95% CI over "
           f"{len(results.seeds)} report seeds, each with its own data draw. Middle and right: "
           f"paired differences to that early-stopped baseline in test accuracy and test loss, "
           f"of the final (filled) and the early-stopped (open) dropout networks; 95% CI. "
           f"Epochs (dropout / no dropout): " + ", ".join(
               f"{n}: {'/'.join(str(e) for e in _budgets(cl, n))}" for n in sizes) + ".")
    with report.figure("sizes", cap, ncols=3, figsize=(18, 4.8)) as (fig, (ax1, ax2, ax3)):
        ps = sorted({k[2] for k in cl if k[1] == "scale"})
        for p in ps:
            ss = [cl[n, "scale", p] for n in sizes if (n, "scale", p) in cl]
            x = [s.factors["n_train"] for s in ss]
            errorbar_ci(ax1, x, [stats.mean_ci(results.values(s, "test_accuracy"),
                                               bounds=FRACTION) for s in ss], fmt="-o",
                        color=COLORS.get(p), label="no dropout (final)" if p == 1.0 else
                        f"p={fmt(p)} (final)")
        base = [cl[n, "scale", 1.0] for n in sizes]
        errorbar_ci(ax1, sizes, [stats.mean_ci(results.values(s, "es_test_accuracy"),
                                               bounds=FRACTION) for s in base], fmt="--s",
                    color=COLORS["es"], label="no dropout, early-stopped")
        inv = [cl[n, "inverted", INVERTED_P] for n in sizes if (n, "inverted", INVERTED_P) in cl]
        if inv:
            errorbar_ci(ax1, [s.factors["n_train"] for s in inv],
                        [stats.mean_ci(results.values(s, "test_accuracy"), bounds=FRACTION)
                         for s in inv], fmt=":^", color=COLORS["inverted"],
                        label=f"p={fmt(INVERTED_P)} inverted (final)")
        log_axis(ax1)
        ax1.set_xticks(sizes)
        ax1.set_xticklabels([str(n) for n in sizes])
        ax1.set_xlabel("training examples (log)")
        ax1.set_ylabel("test accuracy")
        ax1.legend(fontsize=8)
        width = 0.06
        labelled = set()
        for ax, what, ylab in ((ax2, "acc", "test accuracy - early-stopped no dropout"),
                               (ax3, "loss", "test loss - early-stopped no dropout")):
            ax.axhline(0.0, color="#999999", linewidth=0.8)
            for (k, which), r in comps.items():
                n, conv, p = k
                color = COLORS["inverted"] if conv == "inverted" else COLORS.get(p)
                j = ps.index(p) if conv == "scale" and p in ps else len(ps)
                x = n * 10 ** (width * (j - len(ps) / 2) + (0.02 if which == "es" else 0))
                rr = r[what]
                lab = (f"{_name(cl[k])} ({'final' if which == 'final' else 'early-stopped'})"
                       if (ax, k[1:], which) not in labelled else None)
                labelled.add((ax, k[1:], which))
                ax.errorbar([x], [rr["diff"]], yerr=[[rr["diff"] - rr["lo"]],
                                                     [rr["hi"] - rr["diff"]]],
                            fmt="o", color=color, mfc=color if which == "final" else "white",
                            capsize=3, label=lab)
            log_axis(ax)
            ax.set_xticks(sizes)
            ax.set_xticklabels([str(n) for n in sizes])
            ax.set_xlabel("training examples (log)")
            ax.set_ylabel(ylab)
        ax2.legend(fontsize=7)
    return comps


def _budgets(cl, n):
    """Distinct epoch budgets at size ``n``: the dropout networks' and then the baseline's."""
    drop = sorted({s.epochs for k, s in cl.items() if k[0] == n and k[2] < 1.0})
    return drop + [cl[n, "scale", 1.0].epochs] if (n, "scale", 1.0) in cl else drop


def _curves(results, report, cl, sizes):
    n = sizes[0]
    shown = [(cl.get((n, "scale", p)), p) for p in sorted({k[2] for k in cl})]
    shown = [(s, p) for s, p in shown if s is not None]
    cap = (f"Training curves at {n} training examples, each keep probability at its tuned "
           f"learning rate: cross-entropy of the test-mode network on the training set (dashed) "
           f"and on the validation set (solid), and accuracy (the same line styles); mean and "
           f"95% CI over the report seeds.")
    gains = [(p, _late_gain(results.curves(s, "full_accuracy"))) for s, p in shown]
    up = [f"{'no dropout' if p == 1.0 else f'p={fmt(p)}'} (+{fmt(g, 2)})" for p, g in gains
          if math.isfinite(g) and g > 0.01]
    cap += (" Training accuracy still rising (more than 0.01 over the last 20% of epochs): "
            + ", ".join(up) + "." if up else " Every training-accuracy curve has flattened "
            "(at most 0.01 gained over the last 20% of epochs).")
    vchg = [(p, _late_ratio(results.curves(s, "val_loss")),
             _late_ratio(results.curves(s, "full_loss"))) for s, p in shown]
    vchg = [(p, v, t) for p, v, t in vchg if math.isfinite(v) and math.isfinite(t)]
    if vchg:
        cap += (" The losses have not flattened: over the last 20% of each run the mean "
                "validation loss changed by " + ", ".join(
                    f"{'no dropout' if p == 1.0 else f'p={fmt(p)}'} {v:+.0%}" for p, v, _ in vchg)
                + " and the training loss by " + ", ".join(
                    f"{'no dropout' if p == 1.0 else f'p={fmt(p)}'} {t:+.0%}" for p, _, t in vchg)
                + " (rising validation loss: over-fitting in loss; the final test losses are "
                  "those of these budgets)." if any(abs(v) > 0.05 or abs(t) > 0.05
                                                   for _, v, t in vchg) else
                " The mean training and validation losses changed by at most 5% over the last "
                "20% of each run.")
    with report.figure("curves", cap, ncols=2, figsize=(13, 4.6)) as (fig, (ax1, ax2)):
        for s, p in shown:
            lab = "no dropout" if p == 1.0 else f"p={fmt(p)}"
            x = results.epochs(s)
            band(ax1, x, results.curves(s, "full_loss"), f"{lab}, training",
                 color=COLORS.get(p), linestyle="--", bounds=POSITIVE)
            band(ax1, x, results.curves(s, "val_loss"), f"{lab}, validation",
                 color=COLORS.get(p), bounds=POSITIVE)
            band(ax2, x, results.curves(s, "val_accuracy"), f"{lab}, validation",
                 color=COLORS.get(p), bounds=FRACTION)
            band(ax2, x, results.curves(s, "full_accuracy"), None, color=COLORS.get(p),
                 linestyle="--", bounds=FRACTION)
        ax1.set_ylabel("cross-entropy loss (log)")
        log_axis(ax1, "y")
        ax2.set_ylabel("accuracy (solid validation, dashed training)")
        for ax in (ax1, ax2):
            ax.set_xlabel("epoch")
        ax1.legend(fontsize=7.5)


def _sensitivity(results, report, sizes):
    tun = results.tuning
    if tun is None or not tun.settings:
        return
    cap = (f"Learning-rate sensitivity on the {len(tun.seeds)} tuning seeds: best validation "
           f"loss (the selection metric) against Adam's learning rate for each keep "
           f"probability and convention, one panel per training-set size; mean and 95% CI.")
    with report.figure("lr_sensitivity", cap, ncols=len(sizes),
                       figsize=(4.6 * len(sizes), 3.9)) as (fig, axes):
        axes = np.atleast_1d(axes)
        for ax, n in zip(axes, sizes, strict=True):
            groups = {}
            for s in tun.select(n_train=n):
                groups.setdefault((s.factors["convention"], s.factors["p_hidden"]), []).append(s)
            for (conv, p), ss in sorted(groups.items()):
                ss.sort(key=lambda s: s.factors["lr"])
                color = COLORS["inverted"] if conv == "inverted" else COLORS.get(p)
                errorbar_ci(ax, [s.factors["lr"] for s in ss],
                            [stats.mean_ci(tun.values(s, "best_val_loss"), bounds=POSITIVE)
                             for s in ss], fmt="-o", ms=3, color=color,
                            label=_name(ss[0]))
            log_axis(ax)
            ax.set_xlabel("learning rate (log)")
            ax.set_title(f"{n} training examples")
        axes[0].set_ylabel("best validation loss")
        axes[0].legend(fontsize=8)


def _table(results, report, cl, sizes):
    rows = []
    for k in sorted(cl, key=lambda k: (k[0], k[1] != "scale", -k[2])):
        s = cl[k]
        rows.append([k[0], _name(s), fmt(s.factors["lr"], 3),
                     fmt_ci(results.values(s, "final_full_accuracy"), bounds=FRACTION),
                     fmt_ci(results.values(s, "best_val_epoch"), bounds=POSITIVE),
                     fmt_ci(results.values(s, "test_accuracy"), bounds=FRACTION),
                     fmt_ci(results.values(s, "es_test_accuracy"), bounds=FRACTION),
                     fmt_ci(results.values(s, "test_loss"), bounds=POSITIVE),
                     fmt_ci(results.values(s, "es_test_loss"), bounds=POSITIVE)])
    report.section("Numbers")
    report.table(["training examples", "setting", "lr (tuned)", "train acc (final)",
                  "best val epoch", "test acc (final)", "test acc (early-stopped)",
                  "test loss (final)", "test loss (early-stopped)"], rows,
                 caption=f"Every selected setting, mean [95% CI] over {len(results.seeds)} "
                         f"report seeds; 'early-stopped': the network of the epoch of lowest "
                         f"validation loss.")


def _conventions(results, report, cl, sizes):
    """Inverted vs weight scaling at the same p and size, each at its own tuned rate."""
    pairs, lrs = [], []
    for n in sizes:
        a, b = cl.get((n, "inverted", INVERTED_P)), cl.get((n, "scale", INVERTED_P))
        if a is None or b is None:
            continue
        lrs.append((n, a.factors["lr"], b.factors["lr"]))
        for key in ("test_accuracy", "test_loss"):
            pairs.append((key, n, f"{n}: {key.replace('_', ' ')}, inverted - scale",
                          results.values(a, key), results.values(b, key)))
    if not pairs:
        return None
    out = {"lrs": lrs, "rows": []}
    for key, margin, lower in (("test_accuracy", MARGIN_ACC, False),
                               ("test_loss", MARGIN_LOSS, True)):
        sel = [(name, a, b) for k, _, name, a, b in pairs if k == key]
        rows = stats.compare(sel, margin=margin, lower_is_better=lower)
        out["rows"] += [(key, r) for r in rows]
    report.section("Weight scaling vs the inverted convention")
    report.table(["training examples", "lr inverted (tuned)", "lr scale (tuned)",
                  "ratio inverted / scale"],
                 [[n, fmt(li, 3), fmt(ls, 3), fmt(li / ls, 3)] for n, li, ls in lrs],
                 caption=f"Selected learning rates at p = {fmt(INVERTED_P)}. The "
                         f"reparametrisation (a weight-scaled network with weights W is the "
                         f"inverted one with p W) predicts that the inverted convention takes "
                         f"the same steps with a rate p = {fmt(INVERTED_P)} times the weight-"
                         f"scaled one, under Adam, whose steps hardly depend on the scale of "
                         f"the gradients - for the weights leaving dropped units only (the "
                         f"first layer and the biases are not reparametrised), so the expected "
                         f"ratio lies between p and 1.")
    report.table(["comparison (a - b)", "pairs", "mean diff [95% CI]", "Holm p",
                  "TOST Holm p", "verdict"],
                 [[r["name"], r["n"], f"{fmt(r['diff'], 3)} [{fmt(r['lo'], 3)}, "
                   f"{fmt(r['hi'], 3)}]", fmt(r["p_holm"], 3), fmt(r["tost_p_holm"], 3),
                   r["verdict"]] for _, r in out["rows"]],
                 caption=f"Final test metrics, inverted minus weight scaling at p = "
                         f"{fmt(INVERTED_P)}, paired on report seeds; Holm within each metric; "
                         f"equivalence margins +-{MARGIN_ACC} (accuracy), +-{MARGIN_LOSS} "
                         f"(loss).")
    return out


# -- Monte-Carlo averaging over thinned networks -----------------------------------------------


def retrain(setting, seed):
    """Train the network of ``setting`` and ``seed`` again, exactly as the runner did.

    The same data draw (the run's own, unless the setting fixes ``data_seed``), initialisation,
    dropout masks, optimizer and shuffling, on one Numba and one BLAS thread like a pool worker;
    alone like a single run, or as a population of one where the runner trains the setting in
    populations. Returns ``(model, history, dataset)``.
    """
    from threadpoolctl import threadpool_limits

    from ...models import MLP, train
    from ...models.optimizers import make_optimizer
    from ..analysis import one_thread
    from ..analysis import retrain as retrain_population
    from ..runner import _data, population_key
    from ..spec import Run

    if population_key(Run("dropout", setting, seed)) is not None:
        (model,), (hist,), (ds,) = retrain_population(setting, [seed])
        return model, hist, ds
    cfg = setting.config("cpu")
    data = _data(cfg, seed)
    ds = data["ds"]
    if data["kw"]["loss"] != "cross_entropy":
        raise ValueError("retrain expects a softmax + cross-entropy classifier")
    with one_thread(), threadpool_limits(limits=1):
        model = MLP(**data["kw"], seed=seed, backend="cpu")
        hist = train(model, ds.X_train, data["y_train"],
                     make_optimizer(cfg["optimizer"], **cfg["hyper"]),
                     batch_size=cfg["batch_size"], epochs=cfg["epochs"], shuffle=True,
                     seed=seed, X_val=ds.X_val, y_val=data["y_val"], metrics=cfg["metrics"])
    return model, hist, ds


def _xent(P, y):
    return float(-np.mean(np.log(np.clip(P[np.arange(y.size), y], EPS, 1.0))))


def _tv(P, Q):
    """Mean total-variation distance between two sets of predicted class distributions."""
    return float(0.5 * np.abs(P - Q).sum(axis=1).mean())


def mc_curves(model, X, y, ks, seed):
    """Weight-scaling vs Monte-Carlo averages of ``k`` thinned networks for each ``k``.

    Thinned network ``j`` uses mask seed ``seed + j`` (one network per call of
    :meth:`MLP.forward_mc`), so the average over ``k`` networks is that of networks
    ``0..k-1``, and networks ``k..2k-1`` give an independent second average.
    """
    K = max(ks) * 2
    outs = np.stack([model.forward_mc(X, 1, seed=seed + j) for j in range(K)]).astype(np.float64)
    cum = np.cumsum(outs, axis=0)
    ws = model.forward(X).astype(np.float64)
    res = {"ws_acc": float(np.mean(ws.argmax(1) == y)), "ws_loss": _xent(ws, y),
           "acc": [], "loss": [], "tv_ws": [], "tv_mc": [], "agree": []}
    for k in ks:
        mk = cum[k - 1] / k
        other = (cum[2 * k - 1] - cum[k - 1]) / k
        res["acc"].append(float(np.mean(mk.argmax(1) == y)))
        res["loss"].append(_xent(mk, y))
        res["tv_ws"].append(_tv(mk, ws))
        res["tv_mc"].append(_tv(mk, other))
        res["agree"].append(float(np.mean(mk.argmax(1) == ws.argmax(1))))
    return res


def _monte_carlo(results, report, s):
    quick = results.study.profile == "quick"
    ks = MC_K_QUICK if quick else MC_K
    per_seed, check = {}, []
    for seed in results.seeds:
        hist = results.histories(s).get(seed)
        if hist is None:
            continue
        model, h, ds = retrain(s, seed)
        stored = np.asarray(hist["val_loss"], dtype=np.float64)
        again = np.asarray(h.val_loss, dtype=np.float64)
        check.append(float(np.max(np.abs(stored - again))) if stored.shape == again.shape
                     else math.inf)
        per_seed[seed] = mc_curves(model, ds.X_test, ds.y_test, ks, MC_SEED)
    if not per_seed:
        return None
    seeds = list(per_seed)
    arr = {k: np.array([per_seed[sd][k] for sd in seeds]) for k in
           ("acc", "loss", "tv_ws", "tv_mc", "agree")}
    ws_acc = np.array([per_seed[sd]["ws_acc"] for sd in seeds])
    ws_loss = np.array([per_seed[sd]["ws_loss"] for sd in seeds])
    p = s.factors["p_hidden"]
    n = s.factors["n_train"]
    cap = (f"Monte-Carlo averaging vs weight scaling on the test set, for the networks with "
           f"hidden keep probability p = {fmt(p)} at {n} training examples (the keep "
           f"probability chosen on validation there), retrained here: test "
           f"accuracy and loss of the average of k thinned networks (line, mean and 95% CI over "
           f"{len(seeds)} seeds) against the single weight-scaled network (horizontal band); "
           f"right: mean total-variation distance between the k-network average and weight "
           f"scaling, and between two independent k-network averages (the Monte-Carlo noise).")
    with report.figure("monte_carlo", cap, ncols=3, figsize=(17, 4.6)) as (fig, axes):
        x = np.array(ks)
        for ax, key, ws, ylab, bounds in ((axes[0], "acc", ws_acc, "test accuracy", FRACTION),
                                          (axes[1], "loss", ws_loss, "test loss (cross-entropy)",
                                           POSITIVE)):
            band(ax, x, arr[key], "average of k thinned networks", color="#1f77b4",
                 bounds=bounds)
            c = stats.mean_ci(ws, bounds=bounds)
            ax.axhline(c.mean, color="#d62728", label="weight scaling (one network)")
            if math.isfinite(c.lo):
                ax.axhspan(c.lo, c.hi, color="#d62728", alpha=0.12, linewidth=0)
            ax.set_ylabel(ylab)
        band(axes[2], x, arr["tv_ws"], "k-average vs weight scaling", color="#d62728",
             bounds=POSITIVE)
        band(axes[2], x, arr["tv_mc"], "k-average vs another k-average", color="#7f7f7f",
             linestyle="--", bounds=POSITIVE)
        axes[2].set_ylabel("total-variation distance (log)")
        log_axis(axes[2], "y")
        for ax in axes:
            log_axis(ax)
            ax.set_xlabel("k, thinned networks averaged (log)")
            ax.legend()
    rows = []
    for i, k in enumerate(ks):
        rows.append([k, fmt_ci(arr["acc"][:, i], bounds=FRACTION),
                     fmt_ci(arr["loss"][:, i], bounds=POSITIVE),
                     fmt_ci(arr["agree"][:, i], bounds=FRACTION),
                     fmt_ci(arr["tv_ws"][:, i], bounds=POSITIVE),
                     fmt_ci(arr["tv_mc"][:, i], bounds=POSITIVE)])
    rows.append(["weight scaling", fmt_ci(ws_acc, bounds=FRACTION),
                 fmt_ci(ws_loss, bounds=POSITIVE), "1", "0", "-"])
    report.section("Monte-Carlo averaging vs weight scaling")
    report.text(
        f"The store keeps histories, not parameters, so the {len(seeds)} networks with hidden "
        f"p = {fmt(p)} ({n} training examples) were retrained here with the runner's data, seed, "
        f"optimizer, shuffling "
        f"and one thread; the largest difference between a retrained and the stored validation "
        f"loss history is {fmt(max(check), 3)} (0: bitwise the same run). Thinned network j "
        f"uses dropout-mask seed {MC_SEED} + j on every seed's network.")
    report.table(["k", "test acc", "test loss", "same class as weight scaling",
                  "TV to weight scaling", "TV to another k-average"], rows,
                 caption="Average of k thinned networks on the test set, mean [95% CI] over "
                         "seeds; TV: mean total-variation distance between predicted class "
                         "distributions.")
    return {"ks": ks, "arr": arr, "ws_acc": ws_acc, "ws_loss": ws_loss, "p": p, "n": n,
            "check": check, "stored_loss": _mean(results, s, "test_loss"),
            "paired_acc": paired(arr["acc"][:, -1], ws_acc),
            "paired_loss": paired(arr["loss"][:, -1], ws_loss)}


# -- conclusion ---------------------------------------------------------------------------------


def _late_gain(curve, frac=0.2):
    """Mean per-seed gain of an accuracy curve ``(n_seeds, n_points)`` over its last ``frac``."""
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] < 2:
        return math.nan
    d = c[:, -1] - c[:, int(round((1 - frac) * (c.shape[1] - 1)))]
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else math.nan


def _late_ratio(curve, frac=0.2):
    """Relative change of the mean over seeds of a positive curve ``(n_seeds, n_points)``
    over its last ``frac`` (``+0.5``: 50% higher at the end)."""
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] < 2:
        return math.nan
    m = np.nanmean(c, axis=0)
    a, b = m[int(round((1 - frac) * (c.shape[1] - 1)))], m[-1]
    return float(b / a - 1) if a > 0 and math.isfinite(a) and math.isfinite(b) else math.nan


def _more_accurate(results, cl, sizes):
    """Where the final no-dropout network is more / less accurate than its early-stopped one."""
    ahead, behind = [], []
    for n in sizes:
        base = cl[n, "scale", 1.0]
        r = paired(results.values(base, "test_accuracy"),
                   results.values(base, "es_test_accuracy"))
        if math.isfinite(r["t_p"]) and r["t_p"] < ALPHA:
            (ahead if r["diff"] > 0 else behind).append(str(n))
    text = []
    if ahead:
        text.append("significantly more accurate than the early-stopped one at "
                    + ", ".join(ahead) + " examples (the more accurate baseline there)")
    if behind:
        text.append("significantly less accurate at " + ", ".join(behind) + " examples")
    rest = [str(n) for n in sizes if str(n) not in ahead + behind]
    if rest:
        text.append("not significantly different at " + ", ".join(rest) + " examples")
    return "; ".join(text)


def _convergence(results, cl, sizes, chosen):
    """A sentence on whether the selected dropout networks and the no-dropout baselines have
    flattened (training accuracy gained over the last 20% of each one's epochs)."""
    flat, up = [], []
    for n in sizes:
        for s in (chosen[n], cl[n, "scale", 1.0]):
            if s is None:
                continue
            g = _late_gain(results.curves(s, "full_accuracy"))
            if not math.isfinite(g):
                continue
            (up if g > 0.01 else flat).append(f"{_name(s)} at {n} ({g:+.3f} in the last 20% "
                                              f"of {s.epochs} epochs)")
    text = []
    if flat:
        text.append("Training accuracy (test-mode network on the training set) has flattened "
                    "for " + ", ".join(flat))
    if up:
        text.append("still rising by more than 0.01 for " + ", ".join(up))
    return ("; ".join(text) + ".") if text else ""


def _verdict(r, a="dropout better", b="baseline better"):
    """A comparison's verdict with its sides named ("a better" is the first named setting)."""
    v = r["verdict"]
    return a if v == "a better" else b if v == "b better" else v


def _sig(r):
    """``significant, paired t p = ...`` of an unadjusted paired comparison."""
    if not math.isfinite(r["t_p"]):
        return "not tested"
    return f"{'' if r['t_p'] < ALPHA else 'not '}significant, paired t p = {fmt(r['t_p'], 3)}"


def _diff(r):
    return f"{'+' if r['diff'] >= 0 else ''}{fmt(r['diff'], 2)} [{fmt(r['lo'], 2)}, " \
           f"{fmt(r['hi'], 2)}]"


def _edge(cl, s):
    """`` (the smallest/largest keep probability tried)`` when the selected p lies on the edge
    of the keep probabilities with dropout (a p beyond it was not tested)."""
    n = s.factors["n_train"]
    ps = sorted(k[2] for k in cl if k[0] == n and k[1] == "scale" and k[2] < 1.0)
    p = s.factors["p_hidden"]
    if len(ps) < 2 or p not in (ps[0], ps[-1]):
        return ""
    return (f" (the {'smallest' if p == ps[0] else 'largest'} keep probability tried: "
            f"{'a smaller one' if p == ps[0] else 'a larger one below 1'} was not tested)")


def _loss_summary(comps, chosen, sizes):
    """A sentence on where the selected dropout networks are worse in test loss than the
    early-stopped baseline (final networks) while better in accuracy."""
    worse, better = [], []
    for n in sizes:
        s = chosen[n]
        if s is None:
            continue
        k = (n, "scale", s.factors["p_hidden"])
        v = comps[k, "final"]["loss"]["verdict"]
        (worse if v == "b better" else better if v == "a better" else []).append(str(n))
    out = []
    if worse:
        out.append("in test loss the final dropout network is *worse* than the early-stopped "
                   "baseline at " + ", ".join(worse) + " examples (it over-fits in loss while "
                   "gaining accuracy: its errors are made with high confidence)")
    if better:
        out.append("better also in test loss at " + ", ".join(better) + " examples")
    return ("; ".join(out)[0].upper() + "; ".join(out)[1:] + ". ") if out else ""


def _conclude(results, report, cl, sizes, chosen, comps, conv, mc):
    heads = []
    for n in sizes:
        s = chosen[n]
        if s is None:
            continue
        k = (n, "scale", s.factors["p_hidden"])
        ra, res = comps[k, "final"]["acc"], comps[k, "es"]["acc"]
        vs_final = paired(results.values(s, "test_accuracy"),
                          results.values(cl[n, "scale", 1.0], "test_accuracy"))
        g = _late_gain(results.curves(s, "full_accuracy"))
        rl, rles = comps[k, "final"]["loss"], comps[k, "es"]["loss"]
        heads.append(f"{n} examples, p = {fmt(s.factors['p_hidden'])}{_edge(cl, s)}: "
                     f"{_diff(ra)} final ({_verdict(ra)}), {_diff(res)} early-stopped "
                     f"({_verdict(res)}); against the final no-dropout network {_diff(vs_final)} "
                     f"({_sig(vs_final)}); in test loss (dropout - early-stopped baseline) "
                     f"{_diff(rl)} final ({_verdict(rl)}), {_diff(rles)} early-stopped "
                     f"({_verdict(rles)})"
                     + (f" - its training accuracy was still rising at the last epoch "
                        f"(+{fmt(g, 2)} over the last 20% of its {s.epochs} epochs)"
                        if g > 0.01 else ""))
    if heads:
        report.claim(
            "Dropout on the hidden units against early stopping without dropout (MNIST-1D, "
            "40-128-128-10 ReLU network, learning rate tuned per keep probability, keep "
            "probability chosen on validation loss): test accuracy of the dropout network "
            "minus that of the no-dropout network early-stopped at its lowest validation loss, "
            f"mean [95% CI] over {len(results.seeds)} seeds with fresh data (verdicts Holm-"
            "adjusted) - " + "; ".join(heads) + ". " + _loss_summary(comps, chosen, sizes)
            + "The early-stopped baseline stops on "
            "validation *loss*, lowest at epoch " + ", ".join(
                f"{fmt(_mean(results, cl[n, 'scale', 1.0], 'best_val_epoch'), 2)} ({n})"
                for n in sizes) + " on average; the final no-dropout network is "
            + _more_accurate(results, cl, sizes) + " (paired t, unadjusted). "
            + _convergence(results, cl, sizes, chosen)
            + " The learning rates and keep probabilities were selected on the best-epoch "
              "validation loss, the criterion of the early-stopped networks; the final-"
              "network differences come from the same selection, which was not made for "
              "them.")
    for n in sizes:
        base = cl[n, "scale", 1.0]
        b_es, b_fin = (_mean(results, base, "es_test_accuracy"),
                       _mean(results, base, "test_accuracy"))
        gap = _mean(results, base, "final_full_accuracy") - b_fin
        es_gain = paired(results.values(base, "test_accuracy"),
                         results.values(base, "es_test_accuracy"))
        l_fin, l_es = (_mean(results, base, "test_loss"), _mean(results, base, "es_test_loss"))
        text = (f"**{n} training examples.** Without dropout the network ends at training "
                f"accuracy {fmt(_mean(results, base, 'final_full_accuracy'), 3)} and test "
                f"accuracy {fmt(b_fin, 3)} (gap {fmt(gap, 3)}); early-stopped at epoch "
                f"{fmt(_mean(results, base, 'best_val_epoch'), 3)} on average, "
                f"{fmt(b_es, 3)}. ")
        text += (f"It over-fits in loss: final test loss {fmt(l_fin, 3)} against "
                 f"{fmt(l_es, 3)} early-stopped. " if l_fin > l_es else
                 f"Its final test loss {fmt(l_fin, 3)} is not above the early-stopped "
                 f"{fmt(l_es, 3)}. ")
        ahead = "ahead of" if es_gain["diff"] > 0 else "behind"
        shown = math.isfinite(es_gain["t_p"]) and es_gain["t_p"] < ALPHA
        text += (f"In accuracy the final network is {ahead}"
                 f" the early-stopped one by {fmt(abs(es_gain['diff']), 2)} "
                 f"(final - early-stopped: {_diff(es_gain)}; {_sig(es_gain)})"
                 + (": stopping at the lowest validation loss is not stopping at the highest "
                    "accuracy. " if shown and es_gain["diff"] > 0 else
                    ": early stopping on the loss also gave the more accurate network. "
                    if shown else ". "))
        bits = []
        for k in sorted((k for k in cl if k[0] == n and not (k[1] == "scale" and k[2] == 1.0)),
                        key=lambda k: (k[1] != "scale", -k[2])):
            ra, rl = comps[k, "final"]["acc"], comps[k, "final"]["loss"]
            bits.append(f"{_name(cl[k])}: accuracy {_diff(ra)} ({_verdict(ra)}), loss "
                        f"{_diff(rl)} ({_verdict(rl)})")
        if bits:
            text += ("Final dropout networks minus the early-stopped baseline (final metrics of "
                     "the dropout networks, early-stopped of the baseline; Holm-adjusted "
                     "verdicts): " + "; ".join(bits) + ".")
        over = []
        for k in sorted((k for k in cl if k[0] == n and k[2] < 1.0),
                        key=lambda k: (k[1] != "scale", -k[2])):
            r = paired(results.values(cl[k], "test_loss"), results.values(cl[k], "es_test_loss"))
            if math.isfinite(r["t_p"]) and r["t_p"] < ALPHA and r["diff"] > 0:
                over.append(f"{_name(cl[k])} ({fmt(_mean(results, cl[k], 'test_loss'), 3)} final "
                            f"vs {fmt(_mean(results, cl[k], 'es_test_loss'), 3)} early-stopped, "
                            f"training accuracy "
                            f"{fmt(_mean(results, cl[k], 'final_full_accuracy'), 3)})")
        if over:
            text += (" Dropout does not stop over-fitting in loss here: the final test loss is "
                     "significantly above the network's own early-stopped one (paired t, "
                     "unadjusted) for " + ", ".join(over) + ".")
        rising = []
        for k in sorted((k for k in cl if k[0] == n), key=lambda k: (k[1] != "scale", -k[2])):
            g = _late_gain(results.curves(cl[k], "full_accuracy"))
            if math.isfinite(g) and g > 0.01:
                rising.append(f"{_name(cl[k])} (+{fmt(g, 2)} over the last 20% of its "
                              f"{cl[k].epochs} epochs)")
        if rising:
            text += (" Not converged: training accuracy still rose by more than 0.01 for "
                     + ", ".join(rising) + "; their final metrics are those of a network "
                     "still training.")
        else:
            text += (" Every setting's training accuracy has flattened (at most 0.01 gained "
                     "over the last 20% of its epochs).")
        s = chosen[n]
        if s is not None:
            text += (f" Validation loss (tuning seeds) picks p = {fmt(s.factors['p_hidden'])}"
                     f"{_edge(cl, s)}.")
        report.conclusion(text)
    if conv is not None and conv["lrs"]:
        ratios = [li / ls for _, li, ls in conv["lrs"]]
        acc_rows = [r for k, r in conv["rows"] if k == "test_accuracy"]
        loss_rows = [r for k, r in conv["rows"] if k == "test_loss"]
        text = (f"Inverted vs weight scaling at p = {fmt(INVERTED_P)}, each with its own tuned "
                f"learning rate: selected rates inverted / scale = "
                + ", ".join(f"{fmt(x, 3)} ({n})" for x, (n, _, _) in
                            zip(ratios, conv["lrs"], strict=True))
                + f" (the reparametrisation predicts {fmt(INVERTED_P)}: a weight-scaled "
                "network with weights W is the inverted one with weights p W, so under Adam, "
                "whose steps hardly depend on the gradients' scale, the weight-scaled run "
                "takes steps p times smaller in the inverted network's coordinates and starts "
                "from an initialisation p times smaller - but only for the weights leaving "
                "dropped units: the first layer's weights (inputs are kept) and the biases are "
                "not reparametrised, so with one shared rate no ratio gives identical runs and "
                "the prediction is a ratio between p and 1). ")
        near = sum(1 for x in ratios if abs(math.log(x / INVERTED_P)) < abs(math.log(x)))
        text += (f"The selected ratio is nearer {fmt(INVERTED_P)} than 1 at {near} of "
                 f"{len(ratios)} sizes (the grid steps by a factor 2, and a rate chosen on "
                 f"{len(results.study.tuning.tune_seeds)} tuning seeds is itself noisy). "
                 "Final test accuracy, inverted - scale: "
                 + "; ".join(f"{r['name'].split(':')[0]}: {_diff(r)} "
                             f"({_verdict(r, 'inverted better', 'scale better')})"
                             for r in acc_rows) + "; final test loss, inverted - scale: "
                 + "; ".join(f"{r['name'].split(':')[0]}: {_diff(r)} "
                             f"({_verdict(r, 'inverted better', 'scale better')})"
                             for r in loss_rows)
                 + " ('inconclusive': neither a difference nor equivalence within the margin "
                   "is shown, not 'the same').")
        report.conclusion(text)
    if mc is not None:
        arr, ks = mc["arr"], mc["ks"]
        acc_k = arr["acc"].mean(axis=0)
        ws_acc = float(mc["ws_acc"].mean())
        reach = [k for k, a in zip(ks, acc_k, strict=True) if a >= ws_acc]
        tv_ws, tv_mc = arr["tv_ws"].mean(axis=0), arr["tv_mc"].mean(axis=0)
        pa = mc["paired_acc"]
        text = (f"Monte-Carlo averaging (p = {fmt(mc['p'])}, {mc['n']} training examples): one "
                f"thinned network has test accuracy {fmt(acc_k[0], 3)} against {fmt(ws_acc, 3)} "
                f"for weight scaling; ")
        text += (f"the mean accuracy of the average of k thinned networks first reaches "
                 f"that of weight scaling at k = {reach[0]}" if reach else
                 f"even {ks[-1]} thinned networks stay below weight scaling on average")
        verdict = ("not tested" if not math.isfinite(pa["t_p"]) else
                   "significant" if pa["t_p"] < ALPHA else "not significant")
        text += (f"; at k = {ks[-1]} the accuracy difference (k-average - weight scaling) "
                 f"is {_diff(pa)} "
                 f"({verdict}, "
                 f"paired t p = {fmt(pa['t_p'], 3)}); test loss (k-average - weight scaling) "
                 f"{_diff(mc['paired_loss'])} ({fmt(arr['loss'].mean(0)[-1], 3)} vs "
                 f"{fmt(float(mc['ws_loss'].mean()), 3)}; {_sig(mc['paired_loss'])}): "
                 + ("the k-average has the lower test loss. "
                    if mc["paired_loss"]["diff"] < 0 and mc["paired_loss"]["t_p"] < ALPHA else
                    "weight scaling has the lower loss. "
                    if mc["paired_loss"]["diff"] > 0 and mc["paired_loss"]["t_p"] < ALPHA else
                    "no difference in loss is shown. ")
                 + "Srivastava et al. (2014, Sec. 7.5) found on MNIST that about 50 sampled "
                   "networks match weight scaling's test error; Gal & Ghahramani (2016) read "
                   "the average of sampled thinned networks (Monte-Carlo dropout) as an "
                   "approximate Bayesian predictive distribution, of which weight scaling is a "
                   "cheaper approximation. ")
        text += (f"The distance between the k-average and weight scaling falls from "
                 f"{fmt(tv_ws[0], 3)} (k = 1) to {fmt(tv_ws[-1], 3)} (k = {ks[-1]}), while two "
                 f"independent {ks[-1]}-averages differ by {fmt(tv_mc[-1], 3)}: ")
        if tv_ws[-1] > 2 * tv_mc[-1]:
            text += ("weight scaling is *not* the ensemble average: the remaining gap is "
                     "larger than the Monte-Carlo noise, the approximation error of the rule "
                     "in this network")
        else:
            text += ("at this k the gap is no larger than the Monte-Carlo noise, so weight "
                     "scaling is as close to the ensemble average as this many samples can tell")
        text += (". This is what theory leads one to expect: the weight-scaling rule "
                 "(Hinton et al. 2012; Srivastava et al. 2014) gives the expected input of a "
                 "unit fed by dropped units exactly (linearity of expectation), so the network "
                 "output is the ensemble's mean only where everything after the dropped units "
                 "is linear (e.g. linear regression); with one dropped hidden layer feeding a "
                 "softmax it gives the renormalised *geometric* mean of the thinned networks' "
                 "predictions (Hinton et al. 2012; Baldi & Sadowski 2013), not their "
                 "arithmetic mean. Here the first dropped layer feeds a ReLU layer, so weight "
                 "scaling is not exactly the geometric mean either, and the k-average is the "
                 "*arithmetic* mean of predicted probabilities")
        report.conclusion(text + f". The retrained networks reproduce the stored runs (largest "
                                 f"validation-loss difference {fmt(max(mc['check']), 3)}). "
                                 f"The losses of this section are computed from the predicted "
                                 f"probabilities clipped at {EPS:g} (weight scaling "
                                 f"{fmt(float(mc['ws_loss'].mean()), 3)} here against the "
                                 f"stored final test loss "
                                 f"{fmt(mc['stored_loss'], 3)}).")
