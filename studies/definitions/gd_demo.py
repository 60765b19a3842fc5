"""Example study: batch, mini-batch and stochastic gradient descent on XOR.

The notes distinguish the three by how often they update: after all training examples (batch),
after a subset (mini-batch) or after every example (stochastic). With the learning rate tuned on
validation data for each (its own tuning seeds), which reaches the lower loss at an equal
number of epochs (equal gradient evaluations; the early-stopped network's test loss), which
reaches the lower validation loss at an equal number of parameter
updates, and how many epochs, updates and measured seconds does each need to reach a target
validation accuracy?

The four clusters have a standard deviation of 0.5, so about 4.5% of the points lie across an
axis from their cluster's corner (the Bayes error, 2 Phi(-2) (1 - Phi(-2)) = 0.0445): the classes
overlap, the validation loss has a floor and a minimum, and "converged" means that minimum lies
inside the budget. With a smaller spread (0.25, an earlier version of this study) the data are
separable, and on separable data the training cross-entropy of gradient descent keeps falling
towards 0 without a minimum while the weights grow without bound (proved for linear predictors
with the logistic loss by Soudry et al. 2018, whose direction tends to the max-margin one; on
such data they also note that the validation loss can rise while the validation error falls),
so no budget converges and a loss ranking measures only how far along that path each method is.

It is also the small, complete example of a tuned study (:mod:`dlbasics.studies.spec`,
:mod:`dlbasics.studies.protocol`).
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np

from .. import stats
from ..analysis import load_note
from ..protocol import Axis, Tuning
from ..registry import register
from ..report import FRACTION, POSITIVE, fmt, fmt_ci
from ..spec import Setting, Study

METHODS = {"batch": None, "mini-batch": 16, "stochastic": 1}
#: One colour per method, in every figure.
COLORS = {"batch": "C0", "mini-batch": "C1", "stochastic": "C2"}
#: Standard deviation of the four clusters (overlapping classes: see the module docstring).
NOISE = 0.5
#: Bayes error of that XOR: a point is misclassified by the best rule when exactly one of its
#: coordinates crosses 0, 2 Phi(-1/NOISE) (1 - Phi(-1/NOISE)).
BAYES_ERROR = 2 * (0.5 * math.erfc(1 / NOISE / math.sqrt(2))) * (
    1 - 0.5 * math.erfc(1 / NOISE / math.sqrt(2)))
#: Validation accuracy whose first epoch the time-to-target comparisons use.
TARGET_ACCURACY = 0.9
#: A run whose final validation loss exceeds its own lowest one by this factor has not settled
#: at its rate (a noisy or rising end).
UNSETTLED = 1.5
#: Equivalence margin of the validation-loss comparisons, made on the logarithms: a ratio
#: within (1/r, r).
LOSS_RATIO = 1.1
#: Equivalence margin of the cost comparisons (updates, seconds, epochs to the target), also
#: made on the logarithms.
COST_RATIO = 1.5
#: Tuning seeds of the full profile (5: a rate unstable on some seeds shows in the mean).
TUNE_SEEDS = (0, 1, 2, 3, 4)
#: What the equal-epoch comparison and the headline compare: the test loss (10,000 points) of
#: the network of the epoch of lowest validation loss, the criterion the rates were tuned on.
#: With overlapping classes the validation loss passes a minimum and then rises (over-fitting),
#: so the final loss would favour whichever rate reaches its minimum just at the last epoch.
CLAIM_KEY = "es_test_loss"


def _sizes(quick):
    if quick:
        return {"n": 200, "epochs": 30, "lrs": [0.1, 1.0]}
    return {"n": 1000, "epochs": 1000, "lrs": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]}


def _build(quick):
    z = _sizes(quick)

    def build(f):
        return Setting(
            problem="xor", problem_args={"n": z["n"], "noise": NOISE},
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
                 "mini-batch (16) and stochastic gradient descent compare on an XOR with "
                 "overlapping classes in the test loss of the early-stopped network at equal "
                 "epochs, in validation loss at equal parameter updates, and in epochs, updates "
                 f"and measured seconds to reach {TARGET_ACCURACY:.0%} validation accuracy?",
        settings=(),
        seeds=range(10, 13) if quick else range(10, 20),
        tuning=Tuning(_build(quick), [{"method": m} for m in METHODS],
                      {"lr": Axis(z["lrs"], scale="log", high=30.0)},
                      tune_seeds=TUNE_SEEDS[:2] if quick else TUNE_SEEDS,
                      metric="best_val_loss"),
        timing_repeats=2 if quick else 3,
        analysis=analyse,
        notes=f"XOR as four Gaussian clusters of standard deviation {NOISE:g} around "
              f"(+-1, +-1): the classes overlap, and the best possible rule errs on "
              f"{BAYES_ERROR:.2%} of the points (test accuracy at most about "
              f"{1 - BAYES_ERROR:.3f}). A 2-8-1 tanh network with a sigmoid output and binary "
              "cross-entropy, plain SGD with a fixed learning rate, tuned per method on "
              f"{len(TUNE_SEEDS[:2] if quick else TUNE_SEEDS)} tuning seeds (lowest mean "
              "best-epoch validation loss, the early-stopping criterion; the equal-epoch "
              "comparison is of the early-stopped networks' test loss, and the report counts "
              "the seeds whose loss ends far above its minimum); every method sees "
              "each training example once per epoch, so an epoch costs the same number of "
              "gradient evaluations for all three, but "
              "batch makes 1 update per epoch, mini-batch ceil(n_train / 16) and stochastic "
              "n_train.",
    )


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def bayes_loss(noise, nodes=100):
    """Expected binary cross-entropy (nats) of the Bayes posterior on the XOR of four Gaussian
    clusters at ``(+-1, +-1)`` with standard deviation ``noise``: the lowest expected loss of
    any classifier on that distribution.

    Given a point, each coordinate came from the positive corner with probability
    ``u = sigmoid(2 x / noise^2)`` independently, so the posterior of the true label is
    ``u1 u2 + (1 - u1)(1 - u2)`` for the label of a same-sign corner; by symmetry the expectation
    over the corner ``(1, 1)`` is the expectation over all four (Gauss-Hermite quadrature).
    """
    from numpy.polynomial.hermite_e import hermegauss
    from scipy.special import expit

    if not (isinstance(noise, (int, float)) and noise > 0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a positive number, got {noise!r}")
    z, w = hermegauss(int(nodes))
    w = w / w.sum()
    x = 1.0 + noise * z
    u, v = expit(2 * x / noise**2), expit(-2 * x / noise**2)
    q = u[:, None] * u[None, :] + v[:, None] * v[None, :]
    return float(-(w[:, None] * w[None, :] * np.log(q)).sum())


def late_change(curves, frac=0.2):
    """Relative change of the geometric mean over seeds of positive ``(n_seeds, n_points)``
    curves between the point at ``1 - frac`` of the run and its last point (``+0.05``: 5%
    higher at the end)."""
    c = np.asarray(curves, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] < 2:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(c > 0, c, np.nan))
    i = int(round((1 - frac) * (c.shape[1] - 1)))
    d = logs[:, -1] - logs[:, i]
    d = d[np.isfinite(d)]
    return float(np.expm1(d.mean())) if d.size else math.nan


def flat_optimum(lrs, scores, within=1.05):
    """``(low, high)``: the smallest and largest learning rate whose mean tuning score is within
    a factor ``within`` of the best one (a wide range: the selection rests on small differences).
    """
    lrs, scores = np.asarray(lrs, dtype=float), np.asarray(scores, dtype=float)
    ok = np.isfinite(scores)
    if not ok.any():
        return math.nan, math.nan
    near = lrs[ok][scores[ok] <= within * scores[ok].min()]
    return float(near.min()), float(near.max())


def unsettled(results, best, factor=UNSETTLED):
    """``{method: number of report seeds whose final validation loss exceeds factor x their own
    lowest}`` (a noisy or rising end at the selected rate)."""
    out = {}
    for m, s in best.items():
        fin = results.values(s, "final_val_loss")
        low = results.values(s, "best_val_loss")
        ok = np.isfinite(fin) & np.isfinite(low)
        out[m] = int(np.sum(fin[ok] > factor * low[ok]))
    return out


def _n_val(results):
    """Validation points of the study's XOR draws (the split of ``datasets``)."""
    from ..datasets import TRAIN_SHARE

    n = results.settings[0].problem_args["n"]
    return n - int(round(TRAIN_SHARE * n))


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


def _small(r):
    """A significant difference that the TOST also puts within the equivalence margin."""
    return (r["verdict"] in ("a better", "b better") and math.isfinite(r["tost_p_holm"])
            and r["tost_p_holm"] < stats.ALPHA)


def _words(r, a, b, ratio=LOSS_RATIO):
    v = r["verdict"]
    if v.startswith("equivalent"):
        return f"equivalent within x{ratio:g}"
    w = {"a better": f"{a} lower", "b better": f"{b} lower"}.get(v, v)
    return w + (f", and within x{ratio:g} (TOST): a small difference" if _small(r) else "")


def _sure_text(r, sure):
    """`` (certain on k/n seeds)`` of a cost verdict when the evaluation grid leaves it open."""
    ca, cb, nn = sure
    k = ca if r["verdict"] == "a better" else cb if r["verdict"] == "b better" else nn
    return f" (certain on {k}/{nn} seeds)" if k < nn else ""


def resolution(ttt, upe):
    """Bounds of the costs to the target that the evaluation grid allows.

    Evaluations come once per epoch, so a run that first reached the target at epoch ``e``
    reached it after more than ``e - 1`` and at most ``e`` epochs' cost. Returns ``{method:
    {"first": seeds that reached it at their first evaluation after epoch 0, "step": updates
    between two evaluations}}``.
    """
    return {m: {"first": int(np.sum(t["epochs"] == 1)), "step": upe[m]} for m, t in ttt.items()}


def certain(upper_a, upper_b, ep_a, ep_b):
    """``(a_fewer, b_fewer, n)``: seeds on which the evaluation grid makes the order of two
    costs certain (``a``'s cost at most its upper bound, below ``b``'s lower bound, the cost of
    ``b``'s previous evaluation; and the reverse), of ``n`` seeds where both reached the target.
    """
    ua, ub = np.asarray(upper_a, float), np.asarray(upper_b, float)
    ea, eb = np.asarray(ep_a, float), np.asarray(ep_b, float)
    ok = np.isfinite(ua) & np.isfinite(ub) & np.isfinite(ea) & np.isfinite(eb)
    with np.errstate(divide="ignore", invalid="ignore"):
        la = np.where(ea > 0, ua * (ea - 1) / ea, 0.0)
        lb = np.where(eb > 0, ub * (eb - 1) / eb, 0.0)
    return (int(np.sum(ok & (ua <= lb))), int(np.sum(ok & (ub <= la))), int(ok.sum()))


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
    change = {m: late_change(results.curves(s, "val_loss")) for m, s in best.items()}
    flat += (" Change of the geometric-mean validation loss over the last 20% of the epochs: "
             + ", ".join(f"{m} {v:+.1%}" for m, v in change.items()) + "; "
             + (("rising (over-fitting or a noisy end, which the early-stopped networks "
                 "avoid): " + ", ".join(m for m, v in change.items() if v > 0.02) + ".")
                if any(v > 0.02 for v in change.values()) else
                "none rises or falls by more than 2%."))
    span = max(float(np.nanmax(np.nanmean(results.curves(s, "val_loss"), axis=0)))
               / float(np.nanmin(np.nanmean(results.curves(s, "val_loss"), axis=0)))
               for s in best.values())
    with report.figure(
        "curves",
        f"Validation loss of each method at its tuned learning rate (geometric mean and 95% CI "
        f"of the mean log over {n} report seeds, each with its own data), per epoch (equal "
        f"gradient evaluations) and per parameter update; log loss axes (each mean curve spans "
        f"a factor of up to {fmt(span, 2)} between its start and its lowest point, and the "
        f"differences between methods near the floor are small). Dotted: the lowest expected "
        f"loss of any classifier on this distribution (the Bayes posterior's cross-entropy, "
        f"{fmt(bayes_loss(NOISE), 3)}); a validation set of {_n_val(results)} points can "
        f"fall below it by chance. Evaluations are made once per epoch: per update, the "
        f"points lie " + ", ".join(f"{updates_per_epoch(results, s)} apart for {m}"
                                   for m, s in best.items())
        + " (straight segments between them are not measurements)." + flat, ncols=2,
    ) as (_, (ax1, ax2)):
        for m, s in best.items():
            label = f"{m} (lr={fmt(s.factors['lr'], 3)})"
            log_band(ax1, results.epochs(s), results.curves(s, "val_loss"), label, COLORS[m])
            upd = np.nanmean(results.curves(s, "updates"), axis=0)
            log_band(ax2, np.r_[0.5, upd], results.curves(s, "val_loss"), label, COLORS[m])
        for ax in (ax1, ax2):
            ax.axhline(bayes_loss(NOISE), color="#555555", linestyle=":", linewidth=1.2,
                       label="Bayes posterior's loss")
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
    flats = {}
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
                flats[m] = flat_optimum(lrs, [float(np.mean(v)) for v in vals])
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
                     fmt_ci(results.values(s, "best_val_epoch"), bounds=POSITIVE),
                     fmt_ci(results.values(s, "es_test_loss"), bounds=POSITIVE),
                     fmt_ci(results.values(s, "es_test_accuracy"), bounds=FRACTION),
                     f"{t['reached']}/{n}", fmt_ci(t["epochs"], bounds=POSITIVE),
                     fmt_ci(t["updates"], bounds=POSITIVE), fmt_ci(secs[m], bounds=POSITIVE)])
    report.table(["method", "tuned lr", "updates per epoch", "final val loss",
                  "best val epoch", "test loss (early-stopped)", "test acc (early-stopped)",
                  "reached target", "epochs to target",
                  "updates to target", "measured seconds to target"], rows,
                 caption=f"Each method at its tuned learning rate on {n} report seeds (mean "
                         f"[95% CI]); costs of the first epoch with validation accuracy >= "
                         f"{TARGET_ACCURACY:.0%}, over the seeds that reached it; seconds = "
                         f"that epoch count x the median seconds per epoch measured in the "
                         f"timing pass (each setting trained alone).")

    loads = {}
    if results.timing is not None:
        loads = {m: stats.seconds_per_epoch(results.timing, s)["load"] for m, s in best.items()}
        loads = {m: v for m, v in loads.items() if math.isfinite(v)}
    uneven = load_note(loads, os.cpu_count() or 1)
    if uneven:
        report.text(uneven)

    # -- paired comparisons -----------------------------------------------------------------------
    names = list(best)
    margin = math.log(LOSS_RATIO)
    at_epochs = stats.compare(
        [(f"{a} / {b}", np.log(results.values(best[a], CLAIM_KEY)),
          np.log(results.values(best[b], CLAIM_KEY)))
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
        prow.append([f"equal epochs ({best[a].epochs}), early-stopped test loss", r["name"],
                     r["n"], _ratio(r),
                     fmt(r["p_holm"], 3), fmt(r["tost_p_holm"], 3), _words(r, a, b)])
    for r, (_, _, _, budget, ua, ub) in zip(at_updates, comparable, strict=True):
        a, b = r["name"].split(" / ")
        ea = ua // max(1, updates_per_epoch(results, best[a]))
        eb = ub // max(1, updates_per_epoch(results, best[b]))
        prow.append([f"equal updates (<= {budget}: epochs {ea} and {eb})", r["name"],
                     r["n"], _ratio(r), fmt(r["p_holm"], 3), fmt(r["tost_p_holm"], 3),
                     _words(r, a, b)])
    report.table(["compared at", "ratio of losses", "pairs", "ratio [95% CI]",
                  "Holm p", f"Holm p (TOST, within x{LOSS_RATIO:g})", "verdict"], prow,
                 caption="Paired comparisons over the report seeds (same seed: same data, "
                         "initialisation and visiting order) on the logarithms of the losses "
                         "(equal epochs: the early-stopped networks' test loss; equal updates: "
                         "the validation loss at that point): ratio = geometric mean of the "
                         "per-seed ratios (below 1: the first is lower). "
                         "Equal updates: both at the last evaluation within the total updates "
                         "of the method with fewer updates per epoch. Holm-corrected within "
                         "each row group; equivalence only through the TOST with the margin.")
    upe = {m: max(1, updates_per_epoch(results, best[m])) for m in names}
    res = resolution(ttt, upe)
    upper = {"updates": {m: ttt[m]["updates"] for m in names}, "measured seconds": secs,
             "epochs": {m: ttt[m]["epochs"] for m in names}}
    sure = {}
    crow = []
    for key, rs in cost.items():
        for r in rs:
            a, b = r["name"].split(" / ")
            ca, cb, nn = certain(upper[key][a], upper[key][b], ttt[a]["epochs"],
                                 ttt[b]["epochs"])
            sure[key, a, b] = (ca, cb, nn)
            v = {"a better": f"{a} fewer", "b better": f"{b} fewer"}.get(
                r["verdict"], f"equivalent within x{COST_RATIO:g}"
                if r["verdict"].startswith("equivalent") else r["verdict"])
            k = ca if r["verdict"] == "a better" else cb if r["verdict"] == "b better" else nn
            if k < nn:
                v += f" (certain on {k}/{nn} seeds)"
            elif r["verdict"].startswith("equivalent") and any(
                    res[m]["first"] and res[m]["step"] > 1 for m in (a, b)):
                v += " (of upper bounds, not resolved below one epoch)"
            crow.append([key, r["name"], r["n"], _ratio(r), fmt(r["p_holm"], 3),
                         fmt(r["tost_p_holm"], 3), v])
    report.table(["cost to target", "ratio", "pairs", "ratio [95% CI]", "Holm p",
                  f"Holm p (TOST, within x{COST_RATIO:g})", "verdict"], crow,
                 caption=f"Cost to reach {TARGET_ACCURACY:.0%} validation accuracy, as ratios "
                         f"(geometric mean of the per-seed ratios; paired t-test on the "
                         f"logarithms over the seeds where both reached it; Holm within each "
                         f"cost). Validation accuracy is evaluated once per epoch, so each cost "
                         f"is an upper bound, known to within one epoch's cost ("
                         + ", ".join(f"{m}: {res[m]['step']} update"
                                     + ("s" if res[m]["step"] != 1 else "") for m in names)
                         + "); seeds that reached the target at their first evaluation: "
                         + ", ".join(f"{m} {res[m]['first']}/{n}" for m in names)
                         + ". 'Certain on k/n seeds': on the other seeds the grid allows either "
                           "order (the winner's bound is not below the loser's previous "
                           "evaluation), so the verdict there rests on the bounds.")

    # -- conclusions from the numbers -------------------------------------------------------------
    means = {}
    for m, s in best.items():
        v = results.values(s, CLAIM_KEY)
        v = v[np.isfinite(v) & (v > 0)]
        means[m] = float(np.exp(np.mean(np.log(v)))) if v.size else math.nan
    order = sorted(means, key=lambda m: (not np.isfinite(means[m]), means[m]))
    winner = order[0]
    text = (f"**Equal epochs.** Within {best[winner].epochs} epochs (the same gradient "
            f"evaluations for all), the geometric mean test loss of the early-stopped network "
            f"(the epoch of lowest validation loss) was lowest for "
            f"**{winner}** ({fmt(means[winner], 3)}; " + ", ".join(
                f"{m} {fmt(means[m], 3)}" for m in order[1:]) + ").")
    for r in at_epochs:
        a, b = r["name"].split(" / ")
        text += (f" {a} / {b}: {_ratio(r)} ({_words(r, a, b)}, Holm p = "
                 f"{fmt(r['p_holm'], 3)}).")
    text += (f" The lowest expected loss of any classifier on this distribution is "
             f"{fmt(bayes_loss(NOISE), 3)} (the Bayes posterior's); the early-stopped test "
             f"losses are " + ", ".join(f"{m} {fmt(means[m] / bayes_loss(NOISE), 3)}"
                                        for m in order) + " times that.")
    high = unsettled(results, best)
    if any(high.values()):
        text += (f" Report seeds whose final validation loss exceeded their own lowest by more "
                 f"than a factor {UNSETTLED:g} (a noisy or rising end, which early stopping "
                 f"hides): "
                 + ", ".join(f"{m} {k}/{n}" for m, k in high.items())
                 + " (at the learning rate chosen on the tuning seeds).")
    else:
        text += (f" No report seed of any method ended with a validation loss more than "
                 f"{UNSETTLED:g} times its own lowest.")
    report.conclusion(text)
    text = "**Equal updates.**"
    for r, (_, _, _, budget, ua, ub) in zip(at_updates, comparable, strict=True):
        a, b = r["name"].split(" / ")
        text += (f" Within {budget} updates ({a} evaluated after {ua}, {b} after {ub}), "
                 f"validation loss {a} / {b}: {_ratio(r)} "
                 f"({_words(r, a, b)}, Holm p = {fmt(r['p_holm'], 3)})"
                 + (f" - {b} made {fmt(100 * (1 - ub / ua), 2)}% fewer updates, its last "
                    f"evaluation within the budget" if 0 < ub < 0.95 * ua else "") + ".")
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
                    f"{r['name']} = {_ratio(r)}" + _sure_text(r, sure[(key, *r["name"].split(
                        " / "))]) for r in sig) + "."
        coarse = [m for m in names if res[m]["first"] and res[m]["step"] > 1]
        if coarse:
            text += (" Evaluations come once per epoch, and " + ", ".join(
                f"{m} reached the target at its first evaluation on {res[m]['first']}/{n} "
                f"seeds (after {res[m]['step']} updates)" for m in coarse)
                + ": there the counts are upper bounds (anywhere from 1 update to one epoch), "
                "so an order in updates or seconds against them holds for certain only on the "
                "seeds counted as certain above; in epochs they cannot be resolved below 1.")
        if uneven:
            text += (" The seconds were measured under a load above the machine's cores "
                     "(see the note under the table): they are inflated, and their ratios "
                     "are not those of a quiet machine.")
        never = sorted(set(ttt) - set(reached))
        if never:
            text += f" Never reached by any report seed: {', '.join(never)}."
        report.conclusion(text)
    # the headline claim
    head = (f"On XOR with overlapping classes (Bayes error {BAYES_ERROR:.2%}) and tuned learning "
            f"rates ({n} report seeds), **{winner}** gradient descent reached the lowest "
            f"(geometric) mean early-stopped test loss at equal epochs")
    parts = []
    for other in order[1:]:
        r = next(r for r in at_epochs if set(r["name"].split(" / ")) == {winner, other})
        a, b = r["name"].split(" / ")
        sign = 1 if a == winner else -1
        lo, hi = sorted((math.exp(sign * r["lo"]), math.exp(sign * r["hi"])))
        verdict = (f"significant, Holm p = {fmt(r['p_holm'], 3)}"
                   + (f", and within x{LOSS_RATIO:g} by the TOST (Holm p = "
                      f"{fmt(r['tost_p_holm'], 3)}): a small difference" if _small(r) else "")
                   if r["verdict"] in ("a better", "b better") else
                   f"equivalent within x{LOSS_RATIO:g} (TOST, Holm p = "
                   f"{fmt(r['tost_p_holm'], 3)})" if r["verdict"].startswith("equivalent")
                   else r["verdict"])
        parts.append(f"{winner} / {other}: ratio {fmt(math.exp(sign * r['diff']), 3)}, 95% CI "
                     f"[{fmt(lo, 3)}, {fmt(hi, 3)}], {verdict}")
    if parts:
        head += " (" + "; ".join(parts) + ")"
    if reached:
        unsure = []
        for m in med["updates"]:
            if m == fu:
                continue
            key = ("updates", fu, m) if ("updates", fu, m) in sure else ("updates", m, fu)
            ca, cb, nn = sure[key]
            k = ca if key[1] == fu else cb
            if k < nn:
                unsure.append(f"{m} {k}/{nn}")
        head += (f", while **{fu}** had the fewest median parameter updates to reach "
                 f"{TARGET_ACCURACY:.0%} validation accuracy (median {fmt(med['updates'][fu], 3)}"
                 f" against " + ", ".join(f"{m} {fmt(v, 3)}" for m, v in med["updates"].items()
                                         if m != fu) + ")")
        if unsure:
            head += (" - but validation accuracy is evaluated once per epoch, so the other "
                     "methods' counts are upper bounds (their first evaluation after epoch 0 "
                     "comes after " + ", ".join(f"{res[m]['step']} updates for {m}"
                                                for m in names if m != fu)
                     + "), and the grid makes the order certain only on some seeds ("
                     + ", ".join(unsure) + "): fewer updates for " + fu + " is not established")
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
                       f"with a validation loss more than {UNSETTLED:g} times its own lowest on "
                       f"{k}/{n} report seeds (final test accuracy "
                       f"{fmt_ci(fin, bounds=FRACTION)}): the rate chosen on "
                       f"{len(results.study.tuning.tune_seeds) if results.study.tuning else 0}"
                       f" tuning seeds does not settle on every seed (its final networks "
                       f"pay for it, not the early-stopped ones of the claim)")
    wide = {m: f for m, f in flats.items() if math.isfinite(f[0]) and f[1] / f[0] > 3}
    if wide and any(high.values()):
        caveats.append(
            "the tuning optimum is flat - rates within 5% of the selected one's mean "
            f"{metric}: " + ", ".join(f"{m} {fmt(lo, 3)}-{fmt(hi, 3)}"
                                      for m, (lo, hi) in wide.items())
            + " - and a minimum over every epoch's evaluation favours rates whose noisy "
              "curves dip low by chance, so the selection does not penalise a noisy end; "
              "the early-stopped comparison is unaffected by that end, the final networks "
              "are not")
    done = (f"Convergence: the lowest validation loss came before the last 10% of the "
            f"{max(s.epochs for s in best.values())} epochs on " + ", ".join(
                f"{m} {n - k}/{n}" for m, k in late.items()) + " report seeds")
    if caveats:
        report.claim(("" if falling else done + ". ") + "Qualifications: "
                     + "; ".join(caveats) + ".")
    else:
        report.claim(done + f", and no report seed ended more than {UNSETTLED:g} times above "
                     f"its own lowest validation loss.")
