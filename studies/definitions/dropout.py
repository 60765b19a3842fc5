"""Dropout on an over-fitting network: keep probabilities, test-time rules, Monte-Carlo averaging.

The notes train a dropout network by sampling a thinned network for every training example, and
predict with a single network whose outgoing weights are multiplied by the keep probability
``p`` (weight scaling), instead of averaging the predictions of the exponentially many thinned
networks. This study sets up a network that over-fits (600 MNIST-1D training examples, two
hidden layers of 256 ReLU units, ~78k parameters) and asks: how do test loss and accuracy
depend on the keep probability of the hidden units and of the input units; how do the training
curves change; does the "inverted" convention (scale by ``1/p`` while training, nothing at test
time) give the same networks; and how close is weight scaling to the average of ``k`` sampled
thinned networks as ``k`` grows?

The stored runs hold histories and summaries, not parameters: for the Monte-Carlo comparison the
analysis retrains the few networks it needs, deterministically (same data, seed, optimizer and
shuffling as the runner), and checks their validation-loss history against the stored one.
"""

from __future__ import annotations

import math

import numpy as np

from .. import datasets, stats
from ..analysis import (
    ALPHA,
    SIGNIFICANCE_HEADERS,
    errorbar_ci,
    log_axis,
    paired,
    sig_phrase,
    significance_rows,
)
from ..registry import register
from ..report import FRACTION, POSITIVE, band, fmt, fmt_ci
from ..runner import resolve_model
from ..spec import Setting, Study

HIDDEN_P = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
INPUT_P = (0.5, 0.6, 0.7, 0.8, 0.9)
INVERTED_P = (0.3, 0.5, 0.7, 0.9)
#: The combination Srivastava et al. (2014) recommend: inputs kept with 0.8, hidden with 0.5.
COMBINED = (0.8, 0.5)
#: Numbers of thinned networks averaged in the Monte-Carlo comparison.
MC_K = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MC_K_QUICK = (1, 2, 4, 8, 16)
#: Seed offset of the Monte-Carlo masks (distinct from every training seed's masks).
MC_SEED = 10_000
EPS = 1e-7


def _setting(quick, p_input, p_hidden, convention="scale"):
    return Setting(
        problem="mnist1d", problem_args={"n": 500 if quick else 1000},
        model={"hidden": [64, 64] if quick else [256, 256], "activation": "relu", "init": "he",
               "keep_prob": [p_input, p_hidden, p_hidden], "dropout": convention},
        optimizer="adam", hyper={"lr": 1e-3}, batch_size=32, epochs=8 if quick else 100,
        factors={"convention": convention, "p_input": p_input, "p_hidden": p_hidden})


@register("dropout")
def make(profile):
    quick = profile == "quick"
    hp = (0.5, 1.0) if quick else HIDDEN_P
    ip = (0.8,) if quick else INPUT_P
    inv = (0.5,) if quick else INVERTED_P
    settings = [_setting(quick, 1.0, p) for p in hp]
    settings += [_setting(quick, p, 1.0) for p in ip]
    settings.append(_setting(quick, *COMBINED))
    settings += [_setting(quick, 1.0, p, "inverted") for p in inv]
    return Study(
        name="dropout",
        title="Dropout: keep probability, test-time weight scaling and Monte-Carlo averaging",
        question="On a network that over-fits (few training examples, wide layers), how do test "
                 "loss and accuracy depend on the keep probability p of hidden and of input "
                 "units; does dropout change the training curves as expected; does the "
                 "inverted convention match the notes' weight scaling; and how close is weight "
                 "scaling to averaging k sampled thinned networks as k grows?",
        settings=settings,
        seeds=range(2 if quick else 5),
        analysis=analyse,
        notes="MNIST-1D with 1000 samples (600 train / 200 validation / 200 test), a "
              "40-256-256-10 ReLU network (He initialisation, ~78k parameters, so ~130 "
              "parameters per training example), softmax + cross-entropy, Adam (lr 1e-3) on "
              "mini-batches of 32 for 100 epochs, no early stopping: without dropout it fits "
              "the training set exactly and its validation loss climbs. `keep_prob` lists the "
              "keep probability of the inputs of each layer: [input units, hidden layer 1, "
              "hidden layer 2]; the hidden sweep drops both hidden layers with the same p. "
              "Convention `scale` is the notes' rule (masks while training, outgoing weights "
              "times p at test time); `inverted` multiplies kept units by 1/p while training "
              "and uses the weights unchanged at test time. The learning rate and the number "
              "of epochs are held fixed for every p (not re-tuned per p). The best keep "
              "probability is chosen on validation loss; test numbers are only reported.",
    )


# ----------------------------------------------------------------------------------------------
# analysis
# ----------------------------------------------------------------------------------------------


def _by(results, key, **factors):
    return sorted(results.select(**factors), key=lambda s: s.factors[key])


def _ci(results, s, key):
    return stats.mean_ci(results.values(s, key), bounds=FRACTION if "acc" in key else POSITIVE)


def analyse(results, report):
    hidden = _by(results, "p_hidden", convention="scale", p_input=1.0)
    inputs = _by(results, "p_input", convention="scale", p_hidden=1.0)
    inverted = _by(results, "p_hidden", convention="inverted")
    base = next((s for s in hidden if s.factors["p_hidden"] == 1.0), None)
    if base is None or not results.counts(base)["ok"]:
        report.conclusion("The no-dropout baseline has no completed run: nothing to compare.")
        return
    best_h = stats.best_of_grid(results, [s for s in hidden if s.factors["p_hidden"] < 1])[0]
    best_i = stats.best_of_grid(results, [s for s in inputs if s.factors["p_input"] < 1])[0]
    acc_h = stats.best_of_grid(results, [s for s in hidden if s.factors["p_hidden"] < 1],
                               key="final_val_accuracy", mode="max")[0]
    _sweeps(results, report, hidden, inputs)
    tests = _sweep_tests(results, report, base, hidden, inputs)
    _curves(results, report, base, best_h, best_i, acc_h)
    conv = _conventions(results, report, hidden, inverted)
    mc = _monte_carlo(results, report, best_h) if best_h is not None else None
    _conclude(results, report, base, best_h, best_i, tests, conv, mc)


def _sweeps(results, report, hidden, inputs):
    cap = ("Final test and training loss (top) and accuracy (bottom) after "
           f"{hidden[0].epochs} epochs against the keep probability p of the hidden units "
           "(left; inputs kept) and of the input units (right; hidden units kept); mean and 95% "
           f"CI over {len(results.seeds)} seeds. p = 1 is no dropout. The gap between the "
           "training and test curves is the over-fitting.")
    with report.figure("keep_prob", cap, nrows=2, ncols=2, figsize=(13, 8.4)) as (fig, axes):
        for col, (ss, key, what) in enumerate(((hidden, "p_hidden", "hidden units"),
                                               (inputs, "p_input", "input units"))):
            ps = [s.factors[key] for s in ss]
            for row, metric in enumerate(("loss", "accuracy")):
                ax = axes[row, col]
                for k, lab, style, color in ((f"test_{metric}", "test", "-o", "#d62728"),
                                             (f"final_val_{metric}", "validation", "-s",
                                              "#ff7f0e"),
                                             (f"final_full_{metric}", "training", "--^",
                                              "#1f77b4")):
                    errorbar_ci(ax, ps, [_ci(results, s, k) for s in ss], fmt=style, ms=5,
                                color=color, label=lab)
                ax.set_xlabel(f"keep probability p of the {what}")
                ax.set_ylabel(metric)
                if metric == "loss":
                    ax.set_ylim(bottom=0)
            axes[0, col].set_title(f"dropout on the {what}")
        axes[0, 0].legend()


def _sweep_tests(results, report, base, hidden, inputs):
    """Paired tests of every dropout setting against no dropout, on the same seeds."""
    rows = []
    out = {}
    cands = [s for s in hidden + inputs if s is not base]
    cands += [s for s in results.select(convention="scale")
              if s.factors["p_input"] < 1 and s.factors["p_hidden"] < 1]
    for key in ("test_loss", "test_accuracy"):
        pairs = [(f"{_name(s)} - no dropout",
                  paired(results.values(s, key), results.values(base, key)))
                 for s in cands]
        r, adj = significance_rows(pairs)
        rows.append((key, r))
        out[key] = {s.label: (p, a) for s, (_, p), a in zip(cands, pairs, adj, strict=True)}
    table = []
    for s in [base] + cands:
        table.append([_name(s), fmt_ci(results.values(s, "final_val_loss"), bounds=POSITIVE),
                      fmt_ci(results.values(s, "test_loss"), bounds=POSITIVE),
                      fmt_ci(results.values(s, "test_accuracy"), bounds=FRACTION),
                      fmt_ci(results.values(s, "final_full_accuracy"), bounds=FRACTION),
                      fmt_ci(results.values(s, "final_full_accuracy")
                             - results.values(s, "test_accuracy"))])
    report.section("Keep probability")
    report.table(["setting", "final val loss", "test loss", "test acc", "train acc",
                  "train - test acc"], table,
                 caption=f"Every scale-convention setting after {base.epochs} epochs, mean "
                         f"[95% CI] over {len(results.seeds)} seeds (p_in: inputs, p_h: hidden "
                         f"units).")
    for key, r in rows:
        report.table(SIGNIFICANCE_HEADERS, r,
                     caption=f"Paired differences in {key.replace('_', ' ')} against no "
                             f"dropout on the same seeds (negative: lower than without "
                             f"dropout), Holm-corrected over {len(r)} comparisons.")
    return out


def _name(s):
    f = s.factors
    return f"p_in={fmt(f['p_input'])}, p_h={fmt(f['p_hidden'])}" + (
        " (inverted)" if f["convention"] == "inverted" else "")


def _curves(results, report, base, best_h, best_i, acc_h):
    shown = [(base, "no dropout", "#1f77b4")]
    if best_h is not None:
        shown.append((best_h, f"hidden p={fmt(best_h.factors['p_hidden'])}", "#d62728"))
    if acc_h is not None and acc_h is not best_h:
        shown.append((acc_h, f"hidden p={fmt(acc_h.factors['p_hidden'])}", "#9467bd"))
    if best_i is not None:
        shown.append((best_i, f"input p={fmt(best_i.factors['p_input'])}", "#2ca02c"))
    cap = ("Training curves with and without dropout (the hidden keep probability best on "
           "validation loss and the one best on validation accuracy, and the input keep "
           "probability best on validation loss): training-set loss and accuracy of the "
           "test-mode network (dashed) and validation (solid), mean and 95% CI over seeds.")
    with report.figure("curves", cap, ncols=2, figsize=(13, 4.6)) as (fig, (ax1, ax2)):
        for s, lab, color in shown:
            x = results.epochs(s)
            band(ax1, x, results.curves(s, "full_loss"), f"{lab}, training", color=color,
                 linestyle="--", bounds=POSITIVE)
            band(ax1, x, results.curves(s, "val_loss"), f"{lab}, validation", color=color,
                 bounds=POSITIVE)
            band(ax2, x, results.curves(s, "full_accuracy"), f"{lab}, training", color=color,
                 linestyle="--", bounds=FRACTION)
            band(ax2, x, results.curves(s, "val_accuracy"), f"{lab}, validation", color=color,
                 bounds=FRACTION)
        ax1.set_ylabel("cross-entropy loss (log)")
        log_axis(ax1, "y")
        ax2.set_ylabel("accuracy")
        for ax in (ax1, ax2):
            ax.set_xlabel("epoch")
        ax1.legend(fontsize=7.5)


def _conventions(results, report, hidden, inverted):
    """Weight scaling vs the inverted convention at the same p, paired on seeds."""
    if not inverted:
        return None
    scale = {s.factors["p_hidden"]: s for s in hidden}
    pairs_l, pairs_a, ps = [], [], []
    for s in inverted:
        p = s.factors["p_hidden"]
        if p in scale:
            ps.append(p)
            pairs_l.append((f"p={fmt(p)}: inverted - scale",
                            paired(results.values(s, "test_loss"),
                                         results.values(scale[p], "test_loss"))))
            pairs_a.append((f"p={fmt(p)}: inverted - scale",
                            paired(results.values(s, "test_accuracy"),
                                         results.values(scale[p], "test_accuracy"))))
    cap = ("The two conventions at the same hidden keep probability: test loss and accuracy "
           "(mean and 95% CI over seeds). 'scale': the notes' rule, weights times p at test "
           "time; 'inverted': units times 1/p while training.")
    with report.figure("conventions", cap, ncols=2, figsize=(12, 4.4)) as (fig, (ax1, ax2)):
        for ss, lab, style, color in ((hidden, "scale (weights x p at test)", "-o", "#d62728"),
                                      (inverted, "inverted (units / p in training)", "--s",
                                       "#1f77b4")):
            ps_ = [s.factors["p_hidden"] for s in ss]
            errorbar_ci(ax1, ps_, [_ci(results, s, "test_loss") for s in ss], fmt=style,
                        color=color, label=lab)
            errorbar_ci(ax2, ps_, [_ci(results, s, "test_accuracy") for s in ss], fmt=style,
                        color=color, label=lab)
        for ax, ylab in ((ax1, "test loss"), (ax2, "test accuracy")):
            ax.set_xlabel("keep probability p of the hidden units")
            ax.set_ylabel(ylab)
        ax1.legend()
    rows_l, adj_l = significance_rows(pairs_l)
    rows_a, adj_a = significance_rows(pairs_a)
    report.section("Weight scaling vs the inverted convention")
    report.table(SIGNIFICANCE_HEADERS, rows_l,
                 caption="Test loss, inverted minus scale, paired on seeds (Holm over the p "
                         "values).")
    report.table(SIGNIFICANCE_HEADERS, rows_a,
                 caption="Test accuracy, inverted minus scale, paired on seeds.")
    return {"ps": ps, "loss": list(zip(pairs_l, adj_l, strict=True)),
            "acc": list(zip(pairs_a, adj_a, strict=True))}


# -- Monte-Carlo averaging over thinned networks -----------------------------------------------


def retrain(setting, seed):
    """Train the network of ``setting`` and ``seed`` again, as the runner did.

    Same data, initialisation, dropout masks, optimizer and shuffling, one Numba and one BLAS
    thread like a pool worker. Returns ``(model, history, dataset)``.
    """
    import numba
    from threadpoolctl import threadpool_limits

    from ...models import MLP, train
    from ...models.optimizers import make_optimizer

    ds = datasets.load(setting.problem, setting.data_seed_for(seed), **setting.problem_args)
    kw = resolve_model(setting.model, ds.n_features, ds.n_outputs, ds.task)
    if kw["loss"] != "cross_entropy":
        raise ValueError("retrain expects a softmax + cross-entropy classifier")
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            model = MLP(**kw, seed=seed)
            hist = train(model, ds.X_train, ds.y_train,
                         make_optimizer(setting.optimizer, **setting.hyper),
                         batch_size=setting.batch_size, epochs=setting.epochs, shuffle=True,
                         seed=seed, X_val=ds.X_val, y_val=ds.y_val, metrics=setting.metrics)
    finally:
        numba.set_num_threads(threads)
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
    cap = (f"Monte-Carlo averaging vs weight scaling on the test set, for the networks with "
           f"hidden keep probability p = {fmt(p)} (best on validation), retrained here: test "
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
        f"p = {fmt(p)} were retrained here with the runner's data, seed, optimizer, shuffling "
        f"and one thread; the largest difference between a retrained and the stored validation "
        f"loss history is {fmt(max(check), 3)} (0: bitwise the same run). Thinned network j "
        f"uses dropout-mask seed {MC_SEED} + j on every seed's network.")
    report.table(["k", "test acc", "test loss", "same class as weight scaling",
                  "TV to weight scaling", "TV to another k-average"], rows,
                 caption="Average of k thinned networks on the test set, mean [95% CI] over "
                         "seeds; TV: mean total-variation distance between predicted class "
                         "distributions.")
    return {"ks": ks, "arr": arr, "ws_acc": ws_acc, "ws_loss": ws_loss, "p": p, "check": check,
            "paired_acc": paired(arr["acc"][:, -1], ws_acc),
            "paired_loss": paired(arr["loss"][:, -1], ws_loss)}


# -- conclusion ---------------------------------------------------------------------------------


def _conclude(results, report, base, best_h, best_i, tests, conv, mc):
    b_acc = stats.mean_ci(results.values(base, "test_accuracy")).mean
    b_loss = stats.mean_ci(results.values(base, "test_loss")).mean
    b_gap = stats.mean_ci(results.values(base, "final_full_accuracy")
                          - results.values(base, "test_accuracy")).mean
    parts = []
    if best_h is not None:
        p, padj = tests["test_accuracy"][best_h.label]
        pl, padj_l = tests["test_loss"][best_h.label]
        h_acc = stats.mean_ci(results.values(best_h, "test_accuracy")).mean
        h_loss = stats.mean_ci(results.values(best_h, "test_loss")).mean
        parts.append(
            f"Dropout on the hidden units with p = {fmt(best_h.factors['p_hidden'])} (best on "
            f"validation loss) raised test accuracy from {fmt(b_acc, 3)} without dropout to "
            f"{fmt(h_acc, 3)} ({sig_phrase(padj)}) and changed the test loss from "
            f"{fmt(b_loss, 3)} to {fmt(h_loss, 3)} ({sig_phrase(padj_l)}).")
        if h_acc < b_acc:
            parts[-1] = parts[-1].replace("raised", "**lowered**")
    report.conclusion(" ".join(parts) or "No dropout setting completed.")
    text = (f"Without dropout the network over-fits: training accuracy exceeds test accuracy "
            f"by {fmt(b_gap, 3)}.")
    if best_i is not None:
        i_acc = stats.mean_ci(results.values(best_i, "test_accuracy")).mean
        _, padj = tests["test_accuracy"][best_i.label]
        text += (f" Input dropout alone did best on validation loss at p = "
                 f"{fmt(best_i.factors['p_input'])} (test accuracy {fmt(i_acc, 3)}; against no "
                 f"dropout {sig_phrase(padj)}).")
    hidden = _by(results, "p_hidden", convention="scale", p_input=1.0)
    by_acc = stats.best_of_grid(results, [s for s in hidden if s.factors["p_hidden"] < 1],
                                key="final_val_accuracy", mode="max")[0]
    if by_acc is not None and by_acc is not best_h:
        _, padj = tests["test_accuracy"][by_acc.label]
        text += (f" Chosen on validation accuracy instead, the hidden keep probability would be "
                 f"p = {fmt(by_acc.factors['p_hidden'])}, with test accuracy "
                 f"{fmt(stats.mean_ci(results.values(by_acc, 'test_accuracy')).mean, 3)} "
                 f"(against no dropout {sig_phrase(padj)}): validation loss rewards the "
                 f"calibration dropout brings more than the accuracy.")
    accs = {s.factors["p_hidden"]: stats.mean_ci(results.values(s, "test_accuracy")).mean
            for s in hidden}
    accs = {p: a for p, a in accs.items() if math.isfinite(a)}
    if accs:
        top = max(accs, key=accs.get)
        text += (f" Over the hidden sweep test accuracy peaks at p = {fmt(top)} "
                 f"({fmt(accs[top], 3)})")
        text += (", the p = 0.5 the dropout paper recommends for hidden units." if top == 0.5
                 else f"; the commonly recommended p = 0.5 gives {fmt(accs.get(0.5), 3)}.")
    report.conclusion(text)
    if conv is not None and conv["loss"]:
        sig = [name.split(":")[0] for (name, p), a in conv["acc"] + conv["loss"]
               if math.isfinite(a) and a < ALPHA]
        diffs = [p["diff"] for (_, p), _ in conv["acc"]]
        text = (f"The inverted convention vs the notes' weight scaling at p = "
                f"{', '.join(fmt(p) for p in conv['ps'])}: mean test-accuracy differences "
                f"(inverted - scale) {', '.join(fmt(d, 3) for d in diffs)}; ")
        text += (f"significant (Holm) at {', '.join(sorted(set(sig)))}." if sig else
                 "none significant after Holm correction.")
        text += (" Both conventions give the same expected activations; they are not the same "
                 "training run, because the 1/p factor changes the scale of the gradients and so "
                 "the effective step of Adam on the rescaled weights.")
        report.conclusion(text)
    if mc is not None:
        arr, ks = mc["arr"], mc["ks"]
        acc_k = arr["acc"].mean(axis=0)
        ws_acc = float(mc["ws_acc"].mean())
        reach = [k for k, a in zip(ks, acc_k, strict=True) if a >= ws_acc]
        tv_ws, tv_mc = arr["tv_ws"].mean(axis=0), arr["tv_mc"].mean(axis=0)
        text = (f"Monte-Carlo averaging (p = {fmt(mc['p'])}): one thinned network has test "
                f"accuracy {fmt(acc_k[0], 3)} against {fmt(ws_acc, 3)} for weight scaling; ")
        text += (f"the average of k thinned networks first matches weight scaling at k = "
                 f"{reach[0]}" if reach else
                 f"even {ks[-1]} thinned networks stay below weight scaling")
        pa = mc["paired_acc"]
        verdict = ("not tested" if not math.isfinite(pa["t_p"]) else
                   "significant" if pa["t_p"] < ALPHA else "not significant")
        text += (f"; at k = {ks[-1]} it has {fmt(acc_k[-1], 3)} (paired difference to weight "
                 f"scaling {fmt(pa['diff'], 3)}, t-test p = {fmt(pa['t_p'], 3)}, {verdict}); "
                 f"test loss {fmt(arr['loss'].mean(0)[-1], 3)} vs "
                 f"{fmt(float(mc['ws_loss'].mean()), 3)}. ")
        text += (f"The distance between the k-average and weight scaling falls from "
                 f"{fmt(tv_ws[0], 3)} (k = 1) to {fmt(tv_ws[-1], 3)} (k = {ks[-1]}), while two "
                 f"independent {ks[-1]}-averages differ by {fmt(tv_mc[-1], 3)}: ")
        if tv_ws[-1] > 2 * tv_mc[-1]:
            text += ("weight scaling is *not* the ensemble average - the remaining gap is the "
                     "approximation error of the rule in a nonlinear (ReLU, softmax) network, "
                     "not Monte-Carlo noise")
        else:
            text += ("at this k the gap is no larger than the Monte-Carlo noise, so weight "
                     "scaling is as close to the ensemble average as this many samples can tell")
        report.conclusion(text + f". The retrained networks reproduce the stored runs (largest "
                                 f"validation-loss difference {fmt(max(mc['check']), 3)}).")
