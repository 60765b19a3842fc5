"""The perceptron rule of the notes on separable data of varying margin, and on XOR.

The notes' rule, ``w <- w + y x`` on every mistake (:class:`dlbasics.models.Perceptron`), finds a
separating line when one exists: Novikoff's theorem bounds its total number of mistakes by
``(R / gamma)^2`` (``R`` the largest norm of an input augmented by a constant 1, ``gamma`` the
margin of the best separator, :func:`dlbasics.models.perceptron.mistake_bound`). On XOR no line
exists and the rule never stops making mistakes: the "shortcoming of the single-layer perceptron"
that motivates a hidden layer.

The perceptron runs are not MLP training runs: they are computed inside the analysis,
deterministically (data seed and visiting-order seed are the study seeds). The study's settings
are the multi-layer answer to XOR: small tanh networks trained by the runner, on the same XOR
data as the perceptron.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import datasets, stats
from ..registry import register
from ..report import FRACTION, POSITIVE, band, fmt, fmt_ci
from ..spec import Setting, Study

NOISE_XOR = 0.25


def _params(quick):
    """Sizes of the perceptron part (not settings: computed inside the analysis)."""
    if quick:
        return {"margins": (0.05, 0.2, 1.0), "n_blobs": 200, "n_xor": 200, "xor_epochs": 30,
                "max_epochs": 1000}
    return {"margins": (0.02, 0.05, 0.1, 0.2, 0.5, 1.0), "n_blobs": 400, "n_xor": 400,
            "xor_epochs": 100, "max_epochs": 5000}


@register("perceptron")
def make(profile):
    quick = profile == "quick"
    p = _params(quick)
    settings = [
        Setting(
            problem="xor", problem_args={"n": p["n_xor"], "noise": NOISE_XOR},
            model={"hidden": [h], "activation": "tanh"},
            optimizer="adam", hyper={"lr": 0.05}, batch_size=16,
            epochs=30 if quick else 100, metrics="running",
            factors={"hidden": h},
        )
        for h in ((2, 4) if quick else (2, 4, 8))
    ]
    margins = ", ".join(f"{m:g}" for m in p["margins"])
    return Study(
        name="perceptron",
        title="The perceptron rule: margins, Novikoff's bound and XOR",
        question="On linearly separable data, how many mistakes does the notes' perceptron "
                 "rule make before it separates the data, as the margin shrinks, and does the "
                 "total stay below Novikoff's bound (R / gamma)^2? On XOR, does it ever "
                 "converge, and what does one hidden layer change?",
        settings=settings,
        seeds=range(3 if quick else 10),
        analysis=analyse,
        notes=f"**Perceptron runs (computed in the analysis, not stored runs).** Two-class "
              f"blobs (`blobs`, n={p['n_blobs']}, 2-D) generated with margins {margins} around "
              f"a random line; for each margin and each study seed s, the data are drawn with "
              f"seed s and the perceptron (w = 0, b = 0, learning rate 1, a fresh random "
              f"visiting order per epoch from seed s) is trained on the training split until "
              f"an epoch without mistakes (at most {p['max_epochs']} epochs). The bound uses "
              f"R = max ||(x, 1)|| and the largest margin gamma of the augmented training data "
              f"(`max_margin_separator`). XOR (`xor`, n={p['n_xor']}, noise {NOISE_XOR}, data "
              f"seed 0 as the networks below) is run for {p['xor_epochs']} epochs with each "
              f"study seed as the visiting-order seed. Everything is deterministic.\n\n"
              f"**Networks (the stored runs).** 2-h-1 tanh networks, sigmoid output, binary "
              f"cross-entropy, Adam (lr 0.05), mini-batches of 16, on the same XOR data.",
    )


# ----------------------------------------------------------------------------------------------
# the perceptron runs
# ----------------------------------------------------------------------------------------------


def perceptron_path(X, y, seed, max_epochs):
    """Train :class:`dlbasics.models.Perceptron` epoch by epoch; record the line after every epoch.

    Stops after the first epoch without a mistake (as ``fit``) or after ``max_epochs``.

    Returns
    -------
    mistakes : list of int
        Mistakes made during each epoch.
    lines : list of (ndarray of shape (n_features,), float)
        ``(w, b)`` at the end of each epoch.
    """
    from ...models import Perceptron

    p = Perceptron(eta0=1.0, shuffle=True, random_state=int(seed))
    lines = []
    for _ in range(max_epochs):
        p.partial_fit(X, y, classes=[0.0, 1.0])
        lines.append((p.coef_[0].copy(), float(p.intercept_[0])))
        if p.mistakes_[-1] == 0:
            break
    return list(p.mistakes_), lines


def errors_of(X, y, w, b):
    """Training points on the wrong side of (or on) the line ``w . x + b = 0``."""
    s = np.where(y > 0.5, 1.0, -1.0)
    return int(np.sum(s * (X.astype(np.float64) @ w + b) <= 0))


def blobs_run(margin, seed, n, max_epochs):
    """One perceptron run on blobs of ``margin`` drawn with ``seed``: numbers and its path."""
    from ...models.perceptron import max_margin_separator

    ds = datasets.load("blobs", seed, n=n, margin=margin)
    X, y = ds.X_train.astype(np.float64), ds.y_train
    mistakes, lines = perceptron_path(X, y, seed, max_epochs)
    _, _, gamma = max_margin_separator(X, y)
    R = float(np.linalg.norm(np.c_[X, np.ones(len(X))], axis=1).max())
    return {
        "margin": margin, "seed": seed, "mistakes": mistakes, "lines": lines,
        "total": int(sum(mistakes)), "epochs": len(mistakes), "converged": mistakes[-1] == 0,
        "gamma": gamma, "R": R, "bound": (R / gamma) ** 2, "ds": ds,
    }


def xor_run(seed, n, epochs):
    """The perceptron on XOR (data seed 0) with visiting-order ``seed`` for ``epochs``."""
    ds = datasets.load("xor", 0, n=n, noise=NOISE_XOR)
    X, y = ds.X_train.astype(np.float64), ds.y_train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mistakes, lines = perceptron_path(X, y, seed, epochs)
    w, b = lines[-1]
    val = 1.0 - errors_of(ds.X_val, ds.y_val, w, b) / len(ds.y_val)
    test = 1.0 - errors_of(ds.X_test, ds.y_test, w, b) / len(ds.y_test)
    train_acc = [1.0 - errors_of(X, y, wi, bi) / len(y) for wi, bi in lines]
    return {"seed": seed, "mistakes": mistakes, "lines": lines, "ds": ds,
            "converged": mistakes[-1] == 0, "val_accuracy": val, "test_accuracy": test,
            "train_accuracy": train_acc}


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------


def _pick_epochs(n_epochs, k=4):
    """Up to ``k`` epochs 1..n spread geometrically (first and last included)."""
    if n_epochs <= k:
        return list(range(1, n_epochs + 1))
    e = np.unique(np.round(np.geomspace(1, n_epochs, k)).astype(int))
    return [int(v) for v in e]


def _draw_line(ax, X, y, w, b, title, true_line=None):
    from matplotlib.colors import ListedColormap

    pad = 0.4
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    xs = np.linspace(lo[0], hi[0], 200)
    ys = np.linspace(lo[1], hi[1], 200)
    XX, YY = np.meshgrid(xs, ys)
    side = (w[0] * XX + w[1] * YY + b) > 0
    cmap = ListedColormap(["#d1e5f0", "#fddbc7"])
    ax.imshow(side, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap=cmap,
              vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    if np.any(w != 0):
        ax.contour(xs, ys, w[0] * XX + w[1] * YY + b, levels=[0.0], colors="k", linewidths=2)
    if true_line is not None:
        tw, tb = true_line
        ax.contour(xs, ys, tw[0] * XX + tw[1] * YY + tb, levels=[0.0], colors="0.4",
                   linewidths=1.2, linestyles="--")
    wrong = np.where(y > 0.5, 1.0, -1.0) * (X @ w + b) <= 0
    for cls, c, m in ((0, "#2166ac", "o"), (1, "#b2182b", "^")):
        sel = (y > 0.5) == bool(cls)
        ax.scatter(X[sel & ~wrong, 0], X[sel & ~wrong, 1], s=14, c=c, marker=m,
                   edgecolors="k", linewidths=0.3)
        ax.scatter(X[sel & wrong, 0], X[sel & wrong, 1], s=40, c=c, marker=m,
                   edgecolors="gold", linewidths=1.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_xlabel("$x_1$ (standardised)")
    ax.set_ylabel("$x_2$ (standardised)")


def _boundaries_figure(report, blob, xor):
    eb = _pick_epochs(blob["epochs"])
    ex = _pick_epochs(len(xor["mistakes"]))
    ncols = max(len(eb), len(ex))
    with report.figure(
        "boundaries",
        f"The perceptron's line after several epochs. Top: blobs with margin "
        f"{blob['margin']:g} (data and order seed {blob['seed']}; dashed grey: the line the "
        f"data were generated around); bottom: XOR (order seed {xor['seed']}). Shading: the "
        f"side the line calls class 1 (red) or 0 (blue); circles class 0, triangles class 1; "
        f"points ringed in gold are on the wrong side after that epoch.",
        nrows=2, ncols=ncols, figsize=(4.0 * ncols, 7.6),
    ) as (_, axes):
        axes = np.asarray(axes).reshape(2, ncols)
        X, y = blob["ds"].X_train.astype(np.float64), blob["ds"].y_train
        true = (np.array(blob["ds"].info["w"]), blob["ds"].info["b"])
        for j, e in enumerate(eb):
            w, b = blob["lines"][e - 1]
            _draw_line(axes[0, j], X, y, w, b,
                       f"blobs, epoch {e}: {blob['mistakes'][e - 1]} mistakes\nin the epoch, "
                       f"{errors_of(X, y, w, b)} wrong after it", true)
        X, y = xor["ds"].X_train.astype(np.float64), xor["ds"].y_train
        for j, e in enumerate(ex):
            w, b = xor["lines"][e - 1]
            _draw_line(axes[1, j], X, y, w, b,
                       f"XOR, epoch {e}: {xor['mistakes'][e - 1]} mistakes\nin the epoch, "
                       f"{errors_of(X, y, w, b)} wrong after it")
        for row, used in ((0, len(eb)), (1, len(ex))):
            for j in range(used, ncols):
                axes[row, j].set_visible(False)


def _padded(runs, length):
    """``(n_runs, length)`` mistakes per epoch, zeros after convergence."""
    out = np.zeros((len(runs), length))
    for i, r in enumerate(runs):
        m = r["mistakes"][:length]
        out[i, : len(m)] = m
    return out


def _mistakes_figure(report, blobs, xors, margins):
    with report.figure(
        "mistakes",
        "Mistakes per epoch (mean and 95% CI over seeds). Left: blobs of each margin (a run "
        "that has converged counts 0); right: XOR, as a fraction of the training set.",
        ncols=2,
    ) as (_, (ax1, ax2)):
        longest = max(r["epochs"] for r in blobs)
        for m in margins:
            runs = [r for r in blobs if r["margin"] == m]
            length = max(r["epochs"] for r in runs)
            band(ax1, np.arange(1, length + 1), _padded(runs, length), f"margin {m:g}",
                 bounds=POSITIVE)
        ax1.set_xscale("log")
        ax1.set_yscale("symlog", linthresh=1)
        ax1.set_ylim(0, None)
        ax1.set_xlim(1, max(longest, 2))
        ax1.set_xlabel("epoch (log scale)")
        ax1.set_ylabel("mistakes in the epoch (symlog scale)")
        ax1.set_title("separable blobs")
        ax1.legend(title="margin (raw units)")
        n = len(xors[0]["ds"].y_train)
        length = len(xors[0]["mistakes"])
        band(ax2, np.arange(1, length + 1), _padded(xors, length) / n,
             "mistakes in the epoch / n", bounds=FRACTION)
        acc = np.array([r["train_accuracy"] for r in xors])
        band(ax2, np.arange(1, length + 1), 1.0 - acc, "wrong after the epoch / n",
             bounds=FRACTION)
        ax2.set_ylim(0, None)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("fraction of the training set")
        ax2.set_title(f"XOR ({n} training points)")
        ax2.legend()


def _bound_figure(report, blobs, margins):
    with report.figure(
        "bound",
        "Left: total mistakes of every run against its Novikoff bound (R / gamma)^2; the "
        "dashed line is mistakes = bound. Right: geometric mean of the total mistakes and of "
        "the bound against the mean measured margin gamma (95% CI over seeds, computed on "
        "the logarithms).",
        ncols=2,
    ) as (_, (ax1, ax2)):
        for i, m in enumerate(margins):
            runs = [r for r in blobs if r["margin"] == m]
            ax1.scatter([r["bound"] for r in runs], [r["total"] for r in runs], s=22,
                        color=f"C{i}", label=f"margin {m:g}", edgecolors="k", linewidths=0.3)
        lo = min(min(r["total"] for r in blobs), 1)
        hi = max(r["bound"] for r in blobs) * 1.5
        ax1.plot([lo, hi], [lo, hi], "k--", lw=1, label="mistakes = bound")
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        ax1.set_xlabel("Novikoff bound (R / gamma)^2")
        ax1.set_ylabel("total mistakes until convergence")
        ax1.legend(title="margin (raw units)")
        g, tot, bnd = [], [], []
        for m in margins:
            runs = [r for r in blobs if r["margin"] == m]
            g.append(np.mean([r["gamma"] for r in runs]))
            tot.append(stats.mean_ci(np.log([r["total"] for r in runs])))
            bnd.append(stats.mean_ci(np.log([r["bound"] for r in runs])))
        for cis, label, marker in ((tot, "total mistakes", "o"), (bnd, "bound", "s")):
            mean = np.exp([c.mean for c in cis])
            err = np.nan_to_num(np.array([[m - np.exp(c.lo), np.exp(c.hi) - m]
                                          for m, c in zip(mean, cis, strict=True)]).T)
            ax2.errorbar(g, mean, yerr=err, marker=marker, capsize=3, label=label)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("margin gamma of the augmented training data (log scale)")
        ax2.set_ylabel("mistakes (log scale)")
        ax2.legend()


def _mlp_figure(results, report, xor_val):
    with report.figure(
        "mlp_xor",
        "XOR with one hidden layer: validation accuracy of 2-h-1 tanh networks (mean and "
        "95% CI over seeds) against the perceptron's line after its last epoch (dashed, mean "
        "over order seeds).",
    ) as (_, ax):
        for s in results.settings:
            band(ax, results.epochs(s, "val_accuracy"), results.curves(s, "val_accuracy"),
                 f"2-{s.factors['hidden']}-1 network", bounds=FRACTION)
        ax.axhline(xor_val, color="k", ls="--", lw=1.2, label="perceptron (no hidden layer)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy")
        ax.set_ylim(0.0, 1.02)
        ax.legend(loc="lower right")


# ----------------------------------------------------------------------------------------------
# the analysis
# ----------------------------------------------------------------------------------------------


def analyse(results, report):
    p = _params(results.study.profile == "quick")
    seeds = results.seeds
    margins = p["margins"]
    blobs = [blobs_run(m, s, p["n_blobs"], p["max_epochs"]) for m in margins for s in seeds]
    xors = [xor_run(s, p["n_xor"], p["xor_epochs"]) for s in seeds]

    report.section("Separable data: mistakes and Novikoff's bound")
    _mistakes_figure(report, blobs, xors, margins)
    _bound_figure(report, blobs, margins)
    rows = []
    for m in margins:
        runs = [r for r in blobs if r["margin"] == m]
        ratio = [r["total"] / r["bound"] for r in runs]
        rows.append([fmt(m), fmt_ci([r["gamma"] for r in runs], bounds=POSITIVE),
                     fmt_ci([r["R"] for r in runs], bounds=POSITIVE),
                     fmt_ci([r["bound"] for r in runs], bounds=POSITIVE),
                     fmt_ci([r["total"] for r in runs], bounds=POSITIVE),
                     fmt_ci([r["epochs"] for r in runs], bounds=POSITIVE),
                     fmt(max(ratio)), f"{sum(r['converged'] for r in runs)}/{len(runs)}"])
    report.table(["margin (raw)", "gamma (augmented, standardised)", "R", "bound (R/gamma)^2",
                  "total mistakes", "epochs", "largest mistakes/bound", "converged"], rows,
                 caption=f"Perceptron on blobs, mean [95% CI] over {len(seeds)} seeds (data and "
                         f"visiting order). The last epoch is the first without a mistake.")

    report.section("XOR: no line separates it")
    blob = max((r for r in blobs if r["margin"] == margins[0]), key=lambda r: r["epochs"])
    _boundaries_figure(report, blob, xors[0])
    report.section("One hidden layer solves XOR")
    xor_val = float(np.mean([r["val_accuracy"] for r in xors]))
    _mlp_figure(results, report, xor_val)
    rows = [["perceptron (no hidden layer), last line", f"{p['xor_epochs']}",
             fmt_ci([r["val_accuracy"] for r in xors], bounds=FRACTION),
             fmt_ci([r["test_accuracy"] for r in xors], bounds=FRACTION)]]
    for s in results.settings:
        va = results.values(s, "final_val_accuracy")
        rows.append([f"2-{s.factors['hidden']}-1 tanh network", f"{s.epochs}",
                     fmt_ci(va, bounds=FRACTION),
                     fmt_ci(results.values(s, "test_accuracy"), bounds=FRACTION)])
    report.table(["model", "epochs", "final val acc", "test acc"], rows,
                 caption="XOR (data seed 0): the perceptron's last line against trained "
                         "networks with one hidden layer; mean [95% CI] over seeds.")

    # -- conclusions ------------------------------------------------------------------------
    n = len(blobs)
    conv = sum(r["converged"] for r in blobs)
    within = sum(r["total"] <= r["bound"] for r in blobs)
    worst = max(blobs, key=lambda r: r["total"] / r["bound"])
    ratios = np.array([r["total"] / r["bound"] for r in blobs])
    text = (f"**Separable data.** The perceptron separated the training data in {conv}/{n} "
            f"runs (at most {max(r['epochs'] for r in blobs)} epochs). Total mistakes stayed "
            f"within Novikoff's bound (R / gamma)^2 in {within}/{n} runs; the largest ratio "
            f"mistakes / bound was {fmt(worst['total'] / worst['bound'], 3)} (margin "
            f"{worst['margin']:g}, seed {worst['seed']}: {worst['total']} mistakes, bound "
            f"{fmt(worst['bound'], 4)}) and the median {fmt(float(np.median(ratios)), 3)}: the "
            f"bound is a worst case, loose by orders of magnitude on these data.")
    if within < n:
        text += (" **A run exceeded the bound, which the theorem forbids: a bug in the "
                 "perceptron or the bound.**")
    report.conclusion(text)
    means = {m: np.mean([r["total"] for r in blobs if r["margin"] == m]) for m in margins}
    gam = {m: np.mean([r["gamma"] for r in blobs if r["margin"] == m]) for m in margins}
    lg = np.log([r["gamma"] for r in blobs])
    slope_m = -np.polyfit(lg, np.log([r["total"] for r in blobs]), 1)[0]
    slope_b = -np.polyfit(lg, np.log([r["bound"] for r in blobs]), 1)[0]
    grows = means[margins[0]] > means[margins[-1]]
    report.conclusion(
        f"**Margin.** Mean total mistakes went from {fmt(means[margins[-1]], 3)} at the "
        f"largest margin (gamma {fmt(gam[margins[-1]], 3)}) to {fmt(means[margins[0]], 3)} at "
        f"the smallest (gamma {fmt(gam[margins[0]], 3)}): "
        + ("more mistakes for smaller margins, as the bound predicts. " if grows else
           "not more mistakes for smaller margins, against what the bound suggests. ")
        + f"A log-log fit over all runs gives mistakes ~ gamma^-{fmt(slope_m, 2)}, against "
        f"gamma^-{fmt(slope_b, 2)} for the bound itself (its R varies too): the mistakes grow "
        + ("more slowly than" if slope_m < slope_b else "at least as fast as")
        + " the bound as the margin shrinks.")
    xconv = sum(r["converged"] for r in xors)
    low = min(min(r["mistakes"]) for r in xors)
    ntr = len(xors[0]["ds"].y_train)
    best_acc = max(max(r["train_accuracy"]) for r in xors)
    text = (f"**XOR.** The perceptron converged in {xconv}/{len(xors)} runs of "
            f"{p['xor_epochs']} epochs; no epoch had fewer than {low} mistakes ({low / ntr:.0%} "
            f"of the {ntr} training points), and the best line it passed through classified "
            f"{best_acc:.1%} of the training set")
    text += (". No line separates XOR, so the rule never stops updating." if xconv == 0 else
             ". **A run converged on XOR, which no line can separate: this contradicts the "
             "theory and needs checking.**")
    report.conclusion(text)
    parts, accs = [], {}
    for s in results.settings:
        ci = stats.mean_ci(results.values(s, "test_accuracy"), bounds=FRACTION)
        if ci.n:
            parts.append(f"2-{s.factors['hidden']}-1: {ci.fmt(3)}")
            accs[s.factors["hidden"]] = ci.mean
    head = (f"**In short.** The perceptron separated {conv}/{n} separable data sets with "
            f"total mistakes within Novikoff's bound in {within}/{n} (largest mistakes/bound "
            f"{fmt(worst['total'] / worst['bound'], 3)}), and separated XOR in {xconv}/"
            f"{len(xors)} runs")
    if accs:
        h = max(accs, key=accs.get)
        head += f"; a 2-{h}-1 network reached mean test accuracy {accs[h]:.3f} on XOR"
    report.conclusions.insert(0, head + ".")
    if parts:
        report.conclusion(
            "**One hidden layer.** Networks with a hidden layer trained by gradient descent "
            "reach mean test accuracy (95% CI) " + "; ".join(parts) + f" on the same XOR "
            f"data, against a mean validation accuracy of {xor_val:.3f} for the perceptron's "
            f"last line." + _two_units(results)
        )


def _two_units(results):
    """A sentence on the seeds where the 2-2-1 network solved XOR (val accuracy >= 0.95)."""
    ss = [s for s in results.settings if s.factors.get("hidden") == 2]
    if not ss:
        return ""
    v = results.values(ss[0], "final_val_accuracy")
    v = v[np.isfinite(v)]
    ok = int(np.sum(v >= 0.95))
    if ok == len(v):
        return f" Two hidden units solved XOR (validation accuracy >= 0.95) on all {ok} seeds."
    rest = float(np.mean(v[v < 0.95]))
    return (f" Two hidden units, the fewest that can solve XOR, did so (validation accuracy >= "
            f"0.95) on only {ok}/{len(v)} seeds; the others stalled at a mean validation "
            f"accuracy of {rest:.3f} (a local minimum of the loss).")

